//! Which device transport carried an instruction: a label of the
//! registration metrics and of the refused-registration log line.

/// The transport a device instruction arrived over.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum TransportKind {
    /// HTTPS (the REST device API).
    #[default]
    Https,
    /// MQTT over TLS (port 8883).
    Mqtt,
    /// MQTT over WebSocket on the HTTPS port (`/$iothub/websocket`).
    MqttWs,
    /// AMQP 1.0 over TLS (port 5671).
    Amqp,
    /// AMQP over WebSocket on the HTTPS port (`/$iothub/websocket`,
    /// subprotocol `AMQPWSB10`).
    AmqpWs,
}

impl TransportKind {
    /// Every transport, in a stable order.
    pub const ALL: [TransportKind; 5] = [
        TransportKind::Https,
        TransportKind::Mqtt,
        TransportKind::MqttWs,
        TransportKind::Amqp,
        TransportKind::AmqpWs,
    ];

    /// The label value: `https`, `mqtt`, `mqtt-ws`, `amqp` or `amqp-ws`.
    pub fn as_str(self) -> &'static str {
        match self {
            TransportKind::Https => "https",
            TransportKind::Mqtt => "mqtt",
            TransportKind::MqttWs => "mqtt-ws",
            TransportKind::Amqp => "amqp",
            TransportKind::AmqpWs => "amqp-ws",
        }
    }

    /// Its place in [`TransportKind::ALL`].
    pub fn index(self) -> usize {
        self as usize
    }
}

impl std::fmt::Display for TransportKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}
