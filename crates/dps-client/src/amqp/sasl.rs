//! The SASL layer of the AMQP transport, run by hand before fe2o3 takes
//! the stream: PLAIN for symmetric keys, and the custom `TPM` mechanism
//! whose challenges carry the service's encrypted key (docs/amqp.md §2).
//!
//! fe2o3's client knows ANONYMOUS, PLAIN and SCRAM only, and its SASL
//! profiles are synchronous: the TPM challenge needs the TPM (blocking
//! tool runs) between two frames. Both mechanisms share this one loop so
//! the device sees one behaviour. Frames are read exactly (size prefix,
//! then that many bytes): nothing after the outcome is consumed, so the
//! AMQP header exchange that follows starts on a clean stream.

use std::future::Future;

use fe2o3_amqp::frames::sasl::Frame;
use fe2o3_amqp::types::primitives::{Binary, Symbol};
use fe2o3_amqp::types::sasl::{SaslCode, SaslInit, SaslResponse};
use tokio::io::{AsyncRead, AsyncReadExt as _, AsyncWrite, AsyncWriteExt as _};

use crate::ClientError;

/// `AMQP` protocol id 3 (SASL), version 1.0.0.
pub(super) const SASL_HEADER: [u8; 8] = *b"AMQP\x03\x01\x00\x00";
/// SASL frames are exchanged before any frame size is agreed: the AMQP
/// minimum is 512 bytes; a generous cap keeps a broken peer from making us
/// buffer without bound.
const MAX_SASL_FRAME: usize = 64 * 1024;
/// SASL frame type (AMQP 1.0 §5.3.1).
const FRAME_TYPE_SASL: u8 = 0x01;

/// What the device proves during SASL.
pub(super) enum Mechanism<'a> {
    /// `PLAIN`: no authzid, the authcid and the SAS token as password.
    Plain {
        /// `{idScope}/registrations/{registrationId}`.
        username: &'a str,
        /// The registration SAS token.
        password: &'a str,
    },
    /// `TPM`: the EK with the ids, then the SRK, then the key segments.
    Tpm {
        /// The ID scope.
        scope: &'a str,
        /// The registration id.
        registration_id: &'a str,
        /// The EK's marshalled `TPM2B_PUBLIC`.
        endorsement_key: &'a [u8],
        /// The SRK's marshalled `TPM2B_PUBLIC`.
        storage_root_key: &'a [u8],
    },
}

impl Mechanism<'_> {
    fn name(&self) -> &'static str {
        match self {
            Mechanism::Plain { .. } => "PLAIN",
            Mechanism::Tpm { .. } => "TPM",
        }
    }

    fn initial_response(&self) -> Vec<u8> {
        let mut out = vec![0];
        match self {
            Mechanism::Plain { username, password } => {
                out.extend_from_slice(username.as_bytes());
                out.push(0);
                out.extend_from_slice(password.as_bytes());
            }
            Mechanism::Tpm {
                scope,
                registration_id,
                endorsement_key,
                ..
            } => {
                out.extend_from_slice(scope.as_bytes());
                out.push(0);
                out.extend_from_slice(registration_id.as_bytes());
                out.push(0);
                out.extend_from_slice(endorsement_key);
            }
        }
        out
    }
}

/// One step of the `TPM` mechanism, read from a challenge.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum TpmStep<'a> {
    /// A one-byte challenge: send the SRK.
    SendStorageRootKey,
    /// A segment of the encrypted key; `last` when the key is complete.
    Segment {
        /// The segment's bytes (after the control byte).
        bytes: &'a [u8],
        /// Whether this is the final segment.
        last: bool,
    },
}

/// Read a `TPM` challenge: one byte asks for the SRK; otherwise the first
/// byte is a control byte (bit 7: a key segment, bit 6: the last one).
pub(super) fn tpm_step(challenge: &[u8]) -> Result<TpmStep<'_>, ClientError> {
    match challenge {
        [] => Err(ClientError::protocol("an empty TPM SASL challenge")),
        [_] => Ok(TpmStep::SendStorageRootKey),
        [control, bytes @ ..] if control & 0x80 != 0 => Ok(TpmStep::Segment {
            bytes,
            last: control & 0xC0 == 0xC0,
        }),
        [control, ..] => Err(ClientError::protocol(format!(
            "a TPM SASL challenge with the unknown control byte {control:#04x}"
        ))),
    }
}

/// The error for a protocol header that is not the one sent: an HTTPS
/// listener answers `HTTP/1.1`, the likely mistake being the HTTPS port.
pub(super) fn unexpected_header(header: &[u8]) -> ClientError {
    if header.starts_with(b"HTTP/") {
        return ClientError::protocol(
            "the endpoint answered HTTP, not AMQP: point AMQP at the service's AMQP port \
             (5671 unless configured otherwise), or use AMQP over WebSocket on the HTTPS port",
        );
    }
    ClientError::protocol(format!(
        "the service answered the AMQP protocol header with {header:02x?}"
    ))
}

/// Run SASL with `mechanism` over `stream`. For `TPM`, `answer_key` gets
/// the whole encrypted key and returns the SAS token signed with the key the
/// TPM recovered from it.
pub(super) async fn negotiate<S, F, Fut>(
    stream: &mut S,
    hostname: &str,
    mechanism: Mechanism<'_>,
    answer_key: F,
) -> Result<(), ClientError>
where
    S: AsyncRead + AsyncWrite + Unpin,
    F: FnOnce(Vec<u8>) -> Fut,
    Fut: Future<Output = Result<String, ClientError>>,
{
    let mut answer_key = Some(answer_key);
    stream.write_all(&SASL_HEADER).await.map_err(io)?;
    stream.flush().await.map_err(io)?;
    let mut header = [0u8; 8];
    stream.read_exact(&mut header).await.map_err(io)?;
    if header != SASL_HEADER {
        return Err(unexpected_header(&header));
    }
    let Frame::Mechanisms(offered) = read_frame(stream).await? else {
        return Err(ClientError::protocol("expected sasl-mechanisms"));
    };
    let name = mechanism.name();
    if !offered
        .sasl_server_mechanisms
        .0
        .iter()
        .any(|m| m.as_str() == name)
    {
        return Err(ClientError::protocol(format!(
            "the service does not offer the SASL mechanism {name}"
        )));
    }
    let init = SaslInit {
        mechanism: Symbol::from(name),
        initial_response: Some(Binary::from(mechanism.initial_response())),
        hostname: Some(hostname.to_owned()),
    };
    write_frame(stream, &Frame::Init(init)).await?;
    let mut key = Vec::new();
    loop {
        match read_frame(stream).await? {
            Frame::Outcome(outcome) => {
                return match outcome.code {
                    SaslCode::Ok => Ok(()),
                    code => Err(refusal(code, name)),
                }
            }
            Frame::Challenge(challenge) => {
                let Mechanism::Tpm {
                    storage_root_key, ..
                } = &mechanism
                else {
                    return Err(ClientError::protocol("a SASL challenge during PLAIN"));
                };
                let mut response = vec![0u8];
                match tpm_step(&challenge.challenge)? {
                    TpmStep::SendStorageRootKey => response.extend_from_slice(storage_root_key),
                    TpmStep::Segment { bytes, last } => {
                        key.extend_from_slice(bytes);
                        if last {
                            let answer = answer_key.take().ok_or_else(|| {
                                ClientError::protocol("a second final TPM key segment")
                            })?;
                            let token = answer(std::mem::take(&mut key)).await?;
                            response.extend_from_slice(token.as_bytes());
                        }
                    }
                }
                let response = SaslResponse {
                    response: Binary::from(response),
                };
                write_frame(stream, &Frame::Response(response)).await?;
            }
            _ => return Err(ClientError::protocol("an unexpected SASL frame")),
        }
    }
}

/// A SASL outcome other than `ok`, as the error the other transports give.
fn refusal(code: SaslCode, mechanism: &str) -> ClientError {
    let message = format!("the service refused SASL {mechanism} ({code:?})");
    match code {
        SaslCode::Auth => ClientError::Authentication {
            status: 401,
            error_code: None,
            message,
        },
        // A transient system error (throttling): worth retrying later.
        SaslCode::SysTemp => ClientError::Service {
            status: 503,
            error_code: None,
            message,
        },
        _ => ClientError::Service {
            status: 500,
            error_code: None,
            message,
        },
    }
}

async fn read_frame<S: AsyncRead + Unpin>(stream: &mut S) -> Result<Frame, ClientError> {
    let mut size = [0u8; 4];
    stream.read_exact(&mut size).await.map_err(io)?;
    let size = u32::from_be_bytes(size) as usize;
    if !(8..=MAX_SASL_FRAME).contains(&size) {
        return Err(ClientError::protocol(format!(
            "a SASL frame of {size} bytes"
        )));
    }
    let mut frame = vec![0u8; size - 4];
    stream.read_exact(&mut frame).await.map_err(io)?;
    decode_frame(&frame)
}

/// A SASL frame after its size: data offset, type, two ignored bytes, body.
pub(super) fn decode_frame(frame: &[u8]) -> Result<Frame, ClientError> {
    let [doff, kind, _, _, ..] = frame else {
        return Err(ClientError::protocol("a truncated SASL frame"));
    };
    // The offset counts 4-byte words from the frame's start, size included.
    let body_start = (usize::from(*doff) * 4).saturating_sub(4);
    if *kind != FRAME_TYPE_SASL || *doff < 2 || body_start > frame.len() {
        return Err(ClientError::protocol(format!(
            "not a SASL frame (type {kind}, offset {doff})"
        )));
    }
    serde_amqp::from_slice(&frame[body_start..])
        .map_err(|e| ClientError::protocol(format!("an undecodable SASL frame: {e}")))
}

/// The bytes of a SASL frame, size prefix included.
pub(super) fn encode_frame(frame: &Frame) -> Result<Vec<u8>, ClientError> {
    let body = serde_amqp::to_vec(frame)
        .map_err(|e| ClientError::protocol(format!("encoding a SASL frame: {e}")))?;
    let size = u32::try_from(body.len() + 8)
        .map_err(|_| ClientError::protocol("an oversized SASL frame"))?;
    let mut out = Vec::with_capacity(body.len() + 8);
    out.extend_from_slice(&size.to_be_bytes());
    out.extend_from_slice(&[2, FRAME_TYPE_SASL, 0, 0]);
    out.extend_from_slice(&body);
    Ok(out)
}

async fn write_frame<S: AsyncWrite + Unpin>(
    stream: &mut S,
    frame: &Frame,
) -> Result<(), ClientError> {
    stream.write_all(&encode_frame(frame)?).await.map_err(io)?;
    stream.flush().await.map_err(io)
}

fn io(error: std::io::Error) -> ClientError {
    ClientError::protocol(format!("SASL: {error}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use fe2o3_amqp::types::sasl::{SaslChallenge, SaslMechanisms};
    use proptest::prelude::*;

    #[test]
    fn tpm_challenges_read_as_the_node_sdk_reads_them() {
        assert_eq!(tpm_step(&[0]).unwrap(), TpmStep::SendStorageRootKey);
        assert_eq!(
            tpm_step(&[0x81, 1, 2]).unwrap(),
            TpmStep::Segment {
                bytes: &[1, 2],
                last: false
            }
        );
        assert_eq!(
            tpm_step(&[0xC2, 3]).unwrap(),
            TpmStep::Segment {
                bytes: &[3],
                last: true
            }
        );
        assert!(tpm_step(&[0x40, 1]).is_err());
        assert!(tpm_step(&[]).is_err());
    }

    #[test]
    fn an_http_answer_to_the_header_names_the_amqp_port() {
        let http = unexpected_header(b"HTTP/1.1").to_string();
        assert!(http.contains("answered HTTP, not AMQP"), "{http}");
        assert!(http.contains("5671"), "{http}");
        let other = unexpected_header(b"AMQP\x00\x01\x00\x00").to_string();
        assert!(other.contains("protocol header"), "{other}");
    }

    #[test]
    fn plain_initial_response_has_no_authzid() {
        let plain = Mechanism::Plain {
            username: "0ne/registrations/dev",
            password: "SharedAccessSignature sr=x",
        };
        assert_eq!(
            plain.initial_response(),
            b"\0\x30ne/registrations/dev\0SharedAccessSignature sr=x".to_vec()
        );
        let tpm = Mechanism::Tpm {
            scope: "s",
            registration_id: "r",
            endorsement_key: &[9, 9],
            storage_root_key: &[],
        };
        assert_eq!(tpm.initial_response(), vec![0, b's', 0, b'r', 0, 9, 9]);
    }

    #[test]
    fn frames_round_trip() {
        let frame = Frame::Challenge(SaslChallenge {
            challenge: Binary::from(vec![0xC0, 1, 2, 3]),
        });
        let bytes = encode_frame(&frame).unwrap();
        assert_eq!(
            bytes.len(),
            u32::from_be_bytes(bytes[..4].try_into().unwrap()) as usize
        );
        match decode_frame(&bytes[4..]).unwrap() {
            Frame::Challenge(c) => assert_eq!(c.challenge.as_ref(), &[0xC0, 1, 2, 3]),
            other => panic!("{other:?}"),
        }
        let offered = Frame::Mechanisms(SaslMechanisms {
            sasl_server_mechanisms: vec![Symbol::from("PLAIN"), Symbol::from("TPM")].into(),
        });
        let bytes = encode_frame(&offered).unwrap();
        assert!(matches!(
            decode_frame(&bytes[4..]).unwrap(),
            Frame::Mechanisms(_)
        ));
    }

    proptest! {
        #[test]
        fn any_bytes_decode_or_fail_without_panicking(bytes in proptest::collection::vec(any::<u8>(), 0..300)) {
            let _ = decode_frame(&bytes);
        }

        #[test]
        fn any_challenge_reads_or_fails_without_panicking(bytes in proptest::collection::vec(any::<u8>(), 0..64)) {
            let _ = tpm_step(&bytes);
        }
    }
}
