//! MQTT 3.1.1 from a device: the byte stream decoded with the server's codec
//! (`rumqttc`'s `mqttbytes::v4`, at the server's default packet limit), then
//! what the server does with each packet that needs no I/O — the CONNECT
//! username and password grammar, the request topic, the register body, the
//! SUBSCRIBE filters — and the answers it writes (PUBACK, SUBACK, UNSUBACK,
//! the reply PUBLISH), re-read as a client would read them.
//!
//! Invariants: nothing panics; every packet the server writes decodes back
//! to itself (a reply a client cannot read is a broken reply); the reply
//! topic carries the request's `$rid` unchanged.
#![no_main]

use bytes::{Bytes, BytesMut};
use dps_attestation::sas::SasToken;
use dps_fuzz::topics::{self, Request};
use dps_model::DeviceRegistrationRequest;
use libfuzzer_sys::fuzz_target;
use rumqttc::mqttbytes::v4::{Packet, PubAck, Publish, SubAck, SubscribeReasonCode, UnsubAck};
use rumqttc::mqttbytes::QoS;

/// The server's default `device.mqtt.max_packet_bytes` (96 KiB body + 2 KiB).
const MAX_PACKET_BYTES: usize = 96 * 1024 + 2048;

/// Write `packet` as the server does (no size limit) and read it back as a
/// client does; the two must agree.
fn written_reads_back(packet: Packet) {
    let mut out = BytesMut::new();
    packet
        .write(&mut out, usize::MAX)
        .expect("the server's packet encodes");
    let read = Packet::read(&mut out, usize::MAX).expect("the server's packet decodes");
    assert_eq!(
        read, packet,
        "a packet the server writes reads back differently"
    );
    assert!(out.is_empty(), "bytes left after the server's packet");
}

fuzz_target!(|data: &[u8]| {
    let mut buf = BytesMut::from(data);
    // At most 64 packets per input: the loop ends at the first error anyway.
    for _ in 0..64 {
        let Ok(packet) = Packet::read(&mut buf, MAX_PACKET_BYTES) else {
            return;
        };
        match packet {
            Packet::Connect(connect) => {
                if let Some(login) = connect.login {
                    let _ = topics::parse_username(&login.username);
                    let _ = SasToken::parse(&login.password);
                }
            }
            Packet::Publish(publish) => {
                let Some(request) = topics::parse_request_topic(&publish.topic) else {
                    continue;
                };
                if let Request::Register { .. } = request {
                    let _ = DeviceRegistrationRequest::from_json(&publish.payload);
                }
                if publish.qos == QoS::AtLeastOnce {
                    written_reads_back(Packet::PubAck(PubAck::new(publish.pkid)));
                }
                for (status, retry_after) in [(202, Some(3)), (200, None), (429, Some(60))] {
                    let topic = topics::reply_topic(status, request.rid(), retry_after);
                    let reply =
                        Publish::from_bytes(topic, QoS::AtMostOnce, Bytes::from_static(b"{}"));
                    written_reads_back(Packet::Publish(reply));
                }
            }
            Packet::Subscribe(subscribe) => {
                let codes = subscribe
                    .filters
                    .iter()
                    .map(|filter| {
                        if topics::is_reply_filter(&filter.path) {
                            SubscribeReasonCode::Success(QoS::AtLeastOnce)
                        } else {
                            SubscribeReasonCode::Failure
                        }
                    })
                    .collect();
                written_reads_back(Packet::SubAck(SubAck::new(subscribe.pkid, codes)));
            }
            Packet::Unsubscribe(unsubscribe) => {
                written_reads_back(Packet::UnsubAck(UnsubAck::new(unsubscribe.pkid)));
            }
            _ => {}
        }
    }
});
