//! The protocol header and the SASL layer, done here rather than in fe2o3
//! (docs/amqp.md §2, §8): X.509 devices skip SASL, a TPM challenge needs
//! the pipeline (async), and the credential must stay with the connection.
//!
//! SASL only collects credentials; the pipeline judges them on every request,
//! so a wrong key is refused with the same Azure code as over HTTPS. The one
//! exception is TPM, whose challenge is made here by the pipeline's register
//! (the HTTPS 401 path) and sent in segments.

use bytes::{Buf, BufMut, Bytes, BytesMut};
use fe2o3_amqp::frames::sasl::{Frame, FrameCodec};
use fe2o3_amqp::types::primitives::{Array, Binary, Symbol};
use fe2o3_amqp::types::sasl::{SaslChallenge, SaslCode, SaslMechanisms, SaslOutcome};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio_util::codec::{Decoder as _, Encoder as _};

use super::AmqpIo;
use crate::device::body;
use crate::pipeline::{DeviceRequest, Pipeline, RegisterAnswer};

/// `AMQP 0 1.0.0`: AMQP without a security layer.
pub(crate) const AMQP_HEADER: [u8; 8] = *b"AMQP\x00\x01\x00\x00";
/// `AMQP 3 1.0.0`: SASL.
pub(crate) const SASL_HEADER: [u8; 8] = *b"AMQP\x03\x01\x00\x00";
/// Largest SASL frame read: a TPM init carries the endorsement key.
const MAX_SASL_FRAME: usize = 4096;
/// Nonce bytes per TPM challenge frame: SASL frames travel before any
/// max-frame-size is agreed, so each stays under AMQP's 512-byte minimum.
const TPM_SEGMENT: usize = 400;
/// The mechanisms offered.
const MECHANISMS: [&str; 4] = ["PLAIN", "TPM", "EXTERNAL", "ANONYMOUS"];

/// Who the device said it is during SASL.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) enum SaslIdentity {
    /// No SASL (X.509 devices), EXTERNAL or ANONYMOUS: the TLS client chain,
    /// if any, is the credential.
    #[default]
    None,
    /// PLAIN or TPM: the device named itself and gave a SAS token.
    Token {
        /// The ID scope it named.
        id_scope: String,
        /// The registration id it named.
        registration_id: String,
        /// Its SAS token.
        token: String,
    },
}

/// A finished negotiation: the identity and the bytes already read past it.
#[derive(Debug)]
pub(crate) struct Negotiated {
    pub(crate) identity: SaslIdentity,
    pub(crate) leftover: Bytes,
}

/// Why the negotiation failed (logged; the peer gets a SASL outcome or a
/// protocol header when there is one to send).
#[derive(Debug, thiserror::Error)]
pub(crate) enum SaslError {
    /// The connection failed or closed.
    #[error("connection error: {0}")]
    Io(#[from] std::io::Error),
    /// The device broke the protocol.
    #[error("protocol violation: {0}")]
    Protocol(String),
    /// The credentials were refused (TPM only).
    #[error("authentication refused: {0}")]
    Refused(String),
}

/// Read the protocol header and, for SASL, run the exchange. `template`
/// carries the connection's peer, transport and client chain (TPM asks the
/// pipeline for its challenge with them).
pub(crate) async fn negotiate<S: AmqpIo>(
    stream: &mut S,
    pipeline: &Pipeline,
    template: &DeviceRequest,
) -> Result<Negotiated, SaslError> {
    let mut header = [0u8; 8];
    stream.read_exact(&mut header).await?;
    if header == AMQP_HEADER {
        return Ok(Negotiated {
            identity: SaslIdentity::None,
            leftover: Bytes::copy_from_slice(&header),
        });
    }
    if header != SASL_HEADER {
        // AMQP 2.3: answer with the header we support, then close.
        stream.write_all(&SASL_HEADER).await?;
        let _ = stream.flush().await;
        return Err(SaslError::Protocol(format!(
            "unsupported protocol header {header:02x?}"
        )));
    }
    stream.write_all(&SASL_HEADER).await?;
    let mut io = SaslIo {
        stream,
        buf: BytesMut::with_capacity(1024),
    };
    let mechanisms = SaslMechanisms {
        sasl_server_mechanisms: Array::from(
            MECHANISMS
                .iter()
                .map(|m| Symbol::from(*m))
                .collect::<Vec<_>>(),
        ),
    };
    io.send(Frame::Mechanisms(mechanisms)).await?;
    let Frame::Init(init) = io.receive().await? else {
        return Err(io.fail("the first SASL frame is not sasl-init").await);
    };
    let response = init
        .initial_response
        .map(Binary::into_vec)
        .unwrap_or_default();
    let identity = match init.mechanism.as_str() {
        "PLAIN" => match plain(&response) {
            Some(identity) => identity,
            None => {
                return Err(io
                    .refuse(
                        SaslCode::Auth,
                        "PLAIN user is not {idScope}/registrations/{id}",
                    )
                    .await)
            }
        },
        "TPM" => tpm(&mut io, &response, pipeline, template).await?,
        "EXTERNAL" | "ANONYMOUS" => SaslIdentity::None,
        other => {
            let reason = format!("unknown SASL mechanism {other:?}");
            return Err(io.refuse(SaslCode::Auth, &reason).await);
        }
    };
    io.send(Frame::Outcome(SaslOutcome {
        code: SaslCode::Ok,
        additional_data: None,
    }))
    .await?;
    Ok(Negotiated {
        identity,
        leftover: io.buf.freeze(),
    })
}

/// `\0{idScope}/registrations/{registrationId}\0{token}` (authzid ignored).
fn plain(response: &[u8]) -> Option<SaslIdentity> {
    let mut parts = response.splitn(3, |b| *b == 0);
    let _authzid = parts.next()?;
    let user = std::str::from_utf8(parts.next()?).ok()?;
    let token = std::str::from_utf8(parts.next()?).ok()?;
    let (id_scope, registration_id) = split_address(user)?;
    Some(SaslIdentity::Token {
        id_scope: id_scope.to_owned(),
        registration_id: registration_id.to_owned(),
        token: token.to_owned(),
    })
}

/// `{idScope}/registrations/{registrationId}`, both non-empty.
pub(crate) fn split_address(address: &str) -> Option<(&str, &str)> {
    let (id_scope, registration_id) = address.split_once("/registrations/")?;
    let ok = |s: &str| !s.is_empty() && !s.contains('/');
    (ok(id_scope) && ok(registration_id)).then_some((id_scope, registration_id))
}

/// The TPM exchange of docs/amqp.md §2.1.
async fn tpm<S: AmqpIo>(
    io: &mut SaslIo<'_, S>,
    init: &[u8],
    pipeline: &Pipeline,
    template: &DeviceRequest,
) -> Result<SaslIdentity, SaslError> {
    // `\0 idScope \0 registrationId \0 EK` (the EK may hold zero bytes).
    let mut parts = init.splitn(4, |b| *b == 0);
    let fields = (parts.next(), parts.next(), parts.next(), parts.next());
    let (Some([]), Some(scope), Some(id), Some(ek)) = fields else {
        return Err(io.refuse(SaslCode::Auth, "malformed TPM sasl-init").await);
    };
    let (Ok(id_scope), Ok(registration_id)) = (std::str::from_utf8(scope), std::str::from_utf8(id))
    else {
        return Err(io.refuse(SaslCode::Auth, "TPM names are not UTF-8").await);
    };
    if id_scope.is_empty() || registration_id.is_empty() || ek.is_empty() {
        return Err(io.refuse(SaslCode::Auth, "malformed TPM sasl-init").await);
    }
    let (id_scope, registration_id) = (id_scope.to_owned(), registration_id.to_owned());
    io.challenge(vec![0]).await?;
    let srk = io.response().await?;
    let Some((0, srk)) = srk.split_first().map(|(b, rest)| (*b, rest)) else {
        return Err(io
            .refuse(SaslCode::Auth, "malformed TPM storage root key")
            .await);
    };
    let key = match tpm_challenge(pipeline, template, &id_scope, &registration_id, ek, srk).await {
        Ok(key) => key,
        Err((code, reason)) => return Err(io.refuse(code, &reason).await),
    };
    let segments: Vec<&[u8]> = key.chunks(TPM_SEGMENT).collect();
    for (index, segment) in segments.iter().enumerate() {
        let last = index + 1 == segments.len();
        // Bit 7: a segment; bit 6: the last; bits 0-1: the sequence number.
        let control = 0x80 | if last { 0x40 } else { 0 } | (index & 0x03) as u8;
        let mut frame = Vec::with_capacity(segment.len() + 1);
        frame.push(control);
        frame.extend_from_slice(segment);
        io.challenge(frame).await?;
        let answer = io.response().await?;
        if last {
            let token = match answer.split_first() {
                Some((0, token)) => std::str::from_utf8(token).ok(),
                _ => None,
            };
            let Some(token) = token.filter(|t| !t.is_empty()) else {
                return Err(io.refuse(SaslCode::Auth, "malformed TPM token").await);
            };
            return Ok(SaslIdentity::Token {
                id_scope,
                registration_id,
                token: token.to_owned(),
            });
        }
    }
    Err(io.refuse(SaslCode::Sys, "empty TPM challenge").await)
}

/// The pipeline's challenge for this TPM, as bytes; the SASL code and
/// reason when there is none.
async fn tpm_challenge(
    pipeline: &Pipeline,
    template: &DeviceRequest,
    id_scope: &str,
    registration_id: &str,
    ek: &[u8],
    srk: &[u8],
) -> Result<Vec<u8>, (SaslCode, String)> {
    use base64::Engine as _;
    let b64 = base64::engine::general_purpose::STANDARD;
    let mut tpm = serde_json::json!({ "endorsementKey": b64.encode(ek) });
    if !srk.is_empty() {
        tpm["storageRootKey"] = b64.encode(srk).into();
    }
    let json = serde_json::json!({ "registrationId": registration_id, "tpm": tpm }).to_string();
    let request = DeviceRequest {
        id_scope: id_scope.to_owned(),
        registration_id: registration_id.to_owned(),
        ..template.clone()
    };
    let refused = |err: crate::respond::ApiError| {
        let status = err.code.http_status();
        let code = if status == 429 || status >= 500 {
            SaslCode::SysTemp
        } else {
            SaslCode::Auth
        };
        (code, format!("TPM challenge refused with {}", err.code.0))
    };
    let body = body::registration_request(registration_id, json.as_bytes()).map_err(refused)?;
    match pipeline.register(&request, body).await.map_err(refused)? {
        RegisterAnswer::TpmChallenge { authentication_key } => b64
            .decode(authentication_key)
            .map_err(|_| (SaslCode::Sys, "challenge is not base64".to_owned())),
        _ => Err((
            SaslCode::Auth,
            "no TPM challenge for this device".to_owned(),
        )),
    }
}

/// SASL frames over the raw stream (framing by hand, bodies by fe2o3).
struct SaslIo<'a, S> {
    stream: &'a mut S,
    buf: BytesMut,
}

impl<S: AmqpIo> SaslIo<'_, S> {
    async fn send(&mut self, frame: Frame) -> Result<(), SaslError> {
        let mut out = BytesMut::with_capacity(256);
        out.put_u32(0);
        FrameCodec {}
            .encode(frame, &mut out)
            .map_err(|e| SaslError::Protocol(format!("encoding a SASL frame: {e}")))?;
        let size = u32::try_from(out.len()).unwrap_or(u32::MAX);
        out[..4].copy_from_slice(&size.to_be_bytes());
        self.stream.write_all(&out).await?;
        self.stream.flush().await?;
        Ok(())
    }

    async fn receive(&mut self) -> Result<Frame, SaslError> {
        loop {
            if self.buf.len() >= 4 {
                let size = u32::from_be_bytes([self.buf[0], self.buf[1], self.buf[2], self.buf[3]]);
                let size = usize::try_from(size).unwrap_or(usize::MAX);
                if !(8..=MAX_SASL_FRAME).contains(&size) {
                    return Err(SaslError::Protocol(format!("SASL frame size {size}")));
                }
                if self.buf.len() >= size {
                    let mut frame = self.buf.split_to(size);
                    frame.advance(4);
                    // `frame` holds at least the 4-byte frame header here.
                    return match (FrameCodec {}).decode(&mut frame) {
                        Ok(Some(frame)) => Ok(frame),
                        Ok(None) => Err(SaslError::Protocol("empty SASL frame".to_owned())),
                        Err(e) => Err(SaslError::Protocol(format!("malformed SASL frame: {e}"))),
                    };
                }
            }
            if self.stream.read_buf(&mut self.buf).await? == 0 {
                return Err(SaslError::Io(std::io::ErrorKind::UnexpectedEof.into()));
            }
        }
    }

    async fn challenge(&mut self, bytes: Vec<u8>) -> Result<(), SaslError> {
        self.send(Frame::Challenge(SaslChallenge {
            challenge: Binary::from(bytes),
        }))
        .await
    }

    async fn response(&mut self) -> Result<Vec<u8>, SaslError> {
        match self.receive().await? {
            Frame::Response(response) => Ok(response.response.into_vec()),
            _ => Err(self.fail("expected a sasl-response").await),
        }
    }

    /// Send the outcome `code` and give the error to end with.
    async fn refuse(&mut self, code: SaslCode, reason: &str) -> SaslError {
        let _ = self
            .send(Frame::Outcome(SaslOutcome {
                code,
                additional_data: None,
            }))
            .await;
        SaslError::Refused(reason.to_owned())
    }

    /// A protocol violation: outcome `sys-perm`, then the error.
    async fn fail(&mut self, reason: &str) -> SaslError {
        let _ = self.refuse(SaslCode::SysPerm, reason).await;
        SaslError::Protocol(reason.to_owned())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn plain_names_the_device_and_carries_the_token() {
        let identity = plain(b"\x000ne00000001/registrations/dev-1\x00SharedAccessSignature sr=x");
        assert_eq!(
            identity,
            Some(SaslIdentity::Token {
                id_scope: "0ne00000001".to_owned(),
                registration_id: "dev-1".to_owned(),
                token: "SharedAccessSignature sr=x".to_owned(),
            })
        );
        assert_eq!(plain(b"\x00dev-1\x00token"), None);
        assert_eq!(plain(b"\x00/registrations/x\x00token"), None);
        assert_eq!(plain(b""), None);
    }

    proptest! {
        // Every SASL frame body a device sends is decoded here.
        #[test]
        fn arbitrary_frames_never_panic_the_decoder(body in proptest::collection::vec(any::<u8>(), 4..300)) {
            let mut frame = BytesMut::from(&body[..]);
            let _ = FrameCodec {}.decode(&mut frame);
            let _ = plain(&body);
        }
    }
}
