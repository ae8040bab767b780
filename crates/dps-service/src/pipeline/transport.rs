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
}

impl TransportKind {
    /// Every transport, in a stable order.
    pub const ALL: [TransportKind; 3] = [
        TransportKind::Https,
        TransportKind::Mqtt,
        TransportKind::MqttWs,
    ];

    /// The label value: `https`, `mqtt` or `mqtt-ws`.
    pub fn as_str(self) -> &'static str {
        match self {
            TransportKind::Https => "https",
            TransportKind::Mqtt => "mqtt",
            TransportKind::MqttWs => "mqtt-ws",
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
