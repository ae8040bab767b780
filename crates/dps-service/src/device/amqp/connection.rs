//! One AMQP connection, from the protocol header to close: SASL (ours),
//! the open (fe2o3's acceptor, under our frame-size cap and idle timeout),
//! one session, the device's two links, and the requests on them — each a
//! pipeline call whose answer becomes a reply message or a rejection.
//! Any protocol violation or limit closes this connection and nothing else.

use std::sync::Arc;
use std::time::Duration;

use fe2o3_amqp::acceptor::{
    ConnectionAcceptor, LinkAcceptor, LinkEndpoint, ListenerConnectionHandle,
    ListenerSessionHandle, SessionAcceptor,
};
use fe2o3_amqp::link::delivery::DeliveryInfo;
use fe2o3_amqp::link::receiver::CreditMode;
use fe2o3_amqp::link::{Receiver, RecvError, Sender};
use fe2o3_amqp::types::definitions::{AmqpError, ConnectionError, Error as AmqpErrorBody};
use fe2o3_amqp::types::messaging::{Body, MessageId, TargetArchetype};
use fe2o3_amqp::types::performatives::Attach;
use fe2o3_amqp::types::primitives::{Symbol, Value};
use tokio::sync::mpsc;
use tokio::time::Instant;

use super::requests::{self, Operation};
use super::sasl::{self, SaslIdentity};
use super::stream::FrameGuard;
use super::{AmqpEndpoint, AmqpIo};
use crate::device::mqtt::registry::{evicted, Registered};
use crate::device::mqtt::requests::InFlight;
use crate::listener::{stopped, ConnectionInfo};
use crate::pipeline::{DeviceCredentials, DeviceRequest, TransportKind};
use crate::respond::WireAnswer;

/// The api-version of a link that names none (the SDKs' own).
const DEFAULT_API_VERSION: &str = "2019-03-31";
/// How long a reply may wait for link credit and the device's disposition.
const REPLY_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a polite close may take.
const CLOSE_TIMEOUT: Duration = Duration::from_secs(2);

/// Why a connection ended (logged at debug level; never sent).
#[derive(Debug, thiserror::Error)]
enum End {
    #[error("closed by the device")]
    Closed,
    #[error("opening failed: {0}")]
    Open(String),
    #[error("protocol violation: {0}")]
    Violation(String),
    #[error("replaced by a newer connection of the device")]
    Replaced,
    #[error("no authenticated request before the SASL deadline")]
    Unverified,
    #[error("server shutdown")]
    Shutdown,
}

/// A pipeline answer on its way back to the connection.
struct Done {
    delivery: DeliveryInfo,
    correlation_id: Option<MessageId>,
    answer: WireAnswer,
}

/// Serve one connection (TLS stream or WebSocket bridge) until it ends.
pub(crate) async fn run<S: AmqpIo>(
    mut stream: S,
    info: ConnectionInfo,
    transport: TransportKind,
    endpoint: Arc<AmqpEndpoint>,
) {
    let template = DeviceRequest {
        id_scope: String::new(),
        registration_id: String::new(),
        api_version: DEFAULT_API_VERSION.to_owned(),
        credentials: DeviceCredentials {
            sas_token: None,
            client_chain: info.client_chain.clone(),
        },
        peer: info.peer.ip(),
        transport,
    };
    let limits = &endpoint.limits;
    let acceptor = ConnectionAcceptor::builder()
        .container_id("dps")
        .max_frame_size(u32::try_from(limits.max_frame_bytes).unwrap_or(u32::MAX))
        .channel_max(1u16)
        .idle_time_out(u32::try_from(limits.idle_timeout.as_millis()).unwrap_or(u32::MAX))
        .build();
    let opened = tokio::time::timeout(limits.sasl_timeout, async {
        let negotiated = sasl::negotiate(&mut stream, &endpoint.pipeline, &template)
            .await
            .map_err(|e| End::Open(e.to_string()))?;
        let io = FrameGuard::new(negotiated.leftover, stream, limits.max_frame_bytes);
        let connection = acceptor
            .accept(io)
            .await
            .map_err(|e| End::Open(format!("AMQP open: {e}")))?;
        Ok::<_, End>((negotiated.identity, connection))
    })
    .await;
    let (identity, mut connection) = match opened {
        Ok(Ok(opened)) => opened,
        Ok(Err(end)) => return log_end(&info, &end),
        Err(_) => return log_end(&info, &End::Open("SASL and open deadline".to_owned())),
    };
    let mut state = Connection {
        endpoint: endpoint.clone(),
        identity,
        template,
        request: None,
        registered: None,
        links: 0,
        in_flight: InFlight::new(limits.max_in_flight, limits.max_throttled_replies),
    };
    let end = state.serve(&mut connection).await;
    let error = match &end {
        End::Violation(reason) => Some(AmqpErrorBody::new(
            ConnectionError::FramingError,
            Some(reason.clone()),
            None,
        )),
        End::Replaced => Some(AmqpErrorBody::new(
            AmqpError::ResourceLimitExceeded,
            Some("A newer connection of this device replaced this one.".to_owned()),
            None,
        )),
        _ => None,
    };
    let close = async {
        match error {
            Some(error) => connection.close_with_error(error).await,
            None => connection.close().await,
        }
    };
    let _ = tokio::time::timeout(CLOSE_TIMEOUT, close).await;
    log_end(&info, &end);
}

fn log_end(info: &ConnectionInfo, end: &End) {
    if !matches!(end, End::Closed) {
        tracing::debug!(peer = %info.peer, reason = %end, "AMQP connection closed");
    }
}

struct Connection {
    endpoint: Arc<AmqpEndpoint>,
    identity: SaslIdentity,
    template: DeviceRequest,
    /// The device the links named (set by the first attach).
    request: Option<DeviceRequest>,
    registered: Option<Registered>,
    links: usize,
    in_flight: InFlight,
}

impl Connection {
    async fn serve(&mut self, connection: &mut ListenerConnectionHandle) -> End {
        let mut session: Option<ListenerSessionHandle> = None;
        let mut receiver: Option<Receiver> = None;
        let mut sender: Option<Sender> = None;
        let capacity = self.endpoint.limits.max_in_flight.max(1);
        let (done_tx, mut done_rx) = mpsc::channel::<Done>(capacity);
        let mut shutdown = self.endpoint.shutdown.clone();
        let mut last_activity = Instant::now();
        loop {
            // A connection whose device has not yet been authenticated by a
            // request, with nothing in flight, gets the SASL deadline, not the
            // idle timeout: failed credentials hold no connection for long.
            let unverified_idle = self.registered.is_none() && self.in_flight.is_empty();
            let idle = tokio::time::sleep_until(last_activity + self.endpoint.limits.sasl_timeout);
            tokio::select! {
                incoming = connection.next_incoming_session() => {
                    last_activity = Instant::now();
                    let Some(incoming) = incoming else { return End::Closed };
                    if session.is_some() {
                        return End::Violation("a second session".to_owned());
                    }
                    match SessionAcceptor::new().accept_incoming_session(incoming, connection).await {
                        Ok(accepted) => session = Some(accepted),
                        Err(e) => return End::Violation(format!("begin: {e}")),
                    }
                }
                attach = next_attach(&mut session) => {
                    last_activity = Instant::now();
                    let Some(attach) = attach else { return End::Closed };
                    let Some(session) = session.as_mut() else { return End::Closed };
                    match self.attach(attach, session).await {
                        Ok(LinkEndpoint::Receiver(link)) if receiver.is_none() => receiver = Some(link),
                        Ok(LinkEndpoint::Sender(link)) if sender.is_none() => sender = Some(link),
                        Ok(_) => return End::Violation("a second link of one direction".to_owned()),
                        Err(end) => return end,
                    }
                }
                delivery = next_delivery(&mut receiver) => match delivery {
                    Ok(delivery) => {
                        last_activity = Instant::now();
                        let Some(link) = receiver.as_ref() else { return End::Closed };
                        if let Err(end) = self.on_delivery(delivery, link, &done_tx).await {
                            return end;
                        }
                    }
                    // The device detached its sender (it is done): dropping
                    // ours answers with a detach; the connection stays for
                    // the device's own close.
                    Err(RecvError::LinkStateError(_)) => receiver = None,
                    Err(e) => return End::Violation(format!("transfer: {e}")),
                },
                () = sender_detached(&mut sender) => sender = None,
                Some(done) = done_rx.recv() => {
                    last_activity = Instant::now();
                    self.in_flight.finished();
                    // Without its link a request can no longer be settled.
                    let Some(link) = receiver.as_ref() else { continue };
                    if let Err(end) = self.finish(done, link, sender.as_mut()).await {
                        return end;
                    }
                }
                _ = idle, if unverified_idle => return End::Unverified,
                _ = evicted(&mut self.registered) => return End::Replaced,
                _ = stopped(&mut shutdown) => return End::Shutdown,
            }
        }
    }

    /// Count this connection under its device (evicting the oldest over the
    /// cap), once.
    fn register(&mut self, request: &DeviceRequest) {
        if self.registered.is_none() {
            self.registered = Some(
                self.endpoint
                    .registry
                    .register(&request.id_scope, &request.registration_id),
            );
        }
    }

    /// Check an attach against the device of this connection and accept it.
    async fn attach(
        &mut self,
        attach: Attach,
        session: &mut ListenerSessionHandle,
    ) -> Result<LinkEndpoint, End> {
        self.links += 1;
        if self.links > self.endpoint.limits.max_links {
            return Err(End::Violation(format!(
                "more than {} links",
                self.endpoint.limits.max_links
            )));
        }
        // The device's address: the source of its receiver, the target of its sender.
        let address = match attach.role {
            fe2o3_amqp::types::definitions::Role::Receiver => {
                attach.source.as_ref().and_then(|s| s.address.clone())
            }
            fe2o3_amqp::types::definitions::Role::Sender => match attach.target.as_deref() {
                Some(TargetArchetype::Target(target)) => target.address.clone(),
                #[allow(unreachable_patterns)]
                _ => None,
            },
        };
        let address = address.unwrap_or_default();
        let Some((id_scope, registration_id)) = sasl::split_address(&address) else {
            return Err(End::Violation(format!("link address {address:?}")));
        };
        if let SaslIdentity::Token {
            id_scope: sasl_scope,
            registration_id: sasl_id,
            ..
        } = &self.identity
        {
            if !sasl_scope.eq_ignore_ascii_case(id_scope)
                || !sasl_id.eq_ignore_ascii_case(registration_id)
            {
                return Err(End::Violation(
                    "link address differs from the SASL identity".to_owned(),
                ));
            }
        }
        match &self.request {
            Some(request)
                if !(request.id_scope.eq_ignore_ascii_case(id_scope)
                    && request
                        .registration_id
                        .eq_ignore_ascii_case(registration_id)) =>
            {
                return Err(End::Violation("links name two devices".to_owned()));
            }
            Some(_) => {}
            None => {
                let api_version = attach
                    .properties
                    .as_ref()
                    .and_then(|p| p.get(&Symbol::from("com.microsoft:api-version")))
                    .and_then(|v| match v {
                        Value::String(s) => Some(s.clone()),
                        _ => None,
                    })
                    .unwrap_or_else(|| DEFAULT_API_VERSION.to_owned());
                let mut request = DeviceRequest {
                    id_scope: id_scope.to_owned(),
                    registration_id: registration_id.to_owned(),
                    api_version,
                    ..self.template.clone()
                };
                if let SaslIdentity::Token { token, .. } = &self.identity {
                    request.credentials.sas_token = Some(token.clone());
                }
                // As MQTT at CONNECT: credentials that pass count the
                // connection under its device at once; failing ones leave it
                // unverified (its requests are refused by the pipeline, and
                // it is closed when idle past the SASL deadline).
                match self.endpoint.pipeline.authenticate_device(&request).await {
                    Ok(()) => self.register(&request),
                    Err(err) => tracing::debug!(
                        peer = %request.peer,
                        status = err.code.0,
                        "AMQP connection unverified"
                    ),
                }
                self.request = Some(request);
            }
        }
        let limits = &self.endpoint.limits;
        let acceptor = LinkAcceptor::builder()
            .max_message_size(limits.max_frame_bytes as u64)
            .build();
        let mut link = acceptor
            .accept_incoming_attach(attach, session)
            .await
            .map_err(|e| End::Violation(format!("attach: {e}")))?;
        if let LinkEndpoint::Receiver(receiver) = &mut link {
            // Credit bounds what a device may send ahead of our answers.
            let credit = u32::try_from(limits.max_in_flight.saturating_mul(2)).unwrap_or(u32::MAX);
            receiver.set_credit_mode(CreditMode::Auto(credit));
            receiver
                .set_credit(credit)
                .await
                .map_err(|e| End::Violation(format!("flow: {e}")))?;
        }
        Ok(link)
    }

    /// A request arrived: into the pipeline, or rejected at once.
    async fn on_delivery(
        &mut self,
        delivery: fe2o3_amqp::link::delivery::Delivery<Body<Value>>,
        link: &Receiver,
        done: &mpsc::Sender<Done>,
    ) -> Result<(), End> {
        let Some(request) = self.request.clone() else {
            return Err(End::Violation("a transfer before any attach".to_owned()));
        };
        let (info, message) = delivery.into_parts();
        let read = requests::read(message);
        let retry_after = self.endpoint.retry_after_seconds;
        let operation: Operation = match read.instruction {
            Ok(operation) => operation,
            Err(err) => {
                let error = requests::rejection(&err.to_wire());
                return reject(link, info, error).await;
            }
        };
        match self.in_flight.admit(retry_after) {
            Err(reason) => return Err(End::Violation(reason)),
            Ok(Some(answer)) => return reject(link, info, requests::rejection(&answer)).await,
            Ok(None) => {}
        }
        let endpoint = self.endpoint.clone();
        let done = done.clone();
        tokio::spawn(async move {
            let answer = requests::answer(
                &endpoint.pipeline,
                &request,
                operation,
                read.body,
                retry_after,
            )
            .await;
            // The connection may be gone; the work is done either way.
            let _ = done
                .send(Done {
                    delivery: info,
                    correlation_id: read.correlation_id,
                    answer,
                })
                .await;
        });
        Ok(())
    }

    /// Settle a request with its answer: accepted and a reply, or rejected.
    async fn finish(
        &mut self,
        done: Done,
        link: &Receiver,
        sender: Option<&mut Sender>,
    ) -> Result<(), End> {
        let answer = done.answer;
        if answer.status >= 300 {
            return reject(link, done.delivery, requests::rejection(&answer)).await;
        }
        // A success means the pipeline authenticated the device.
        if let Some(request) = self.request.clone() {
            self.register(&request);
        }
        link.accept(done.delivery)
            .await
            .map_err(|e| End::Violation(format!("disposition: {e}")))?;
        let Some(sender) = sender else {
            // No reply link: the device asked without listening.
            return Ok(());
        };
        let reply = requests::reply(&answer, done.correlation_id);
        match tokio::time::timeout(REPLY_TIMEOUT, sender.send(reply)).await {
            Ok(Ok(_)) => Ok(()),
            Ok(Err(e)) => Err(End::Violation(format!("reply: {e}"))),
            Err(_) => Err(End::Violation("reply not settled in time".to_owned())),
        }
    }
}

async fn reject(link: &Receiver, info: DeliveryInfo, error: AmqpErrorBody) -> Result<(), End> {
    link.reject(info, error)
        .await
        .map_err(|e| End::Violation(format!("disposition: {e}")))
}

/// The next attach of the session; never while there is no session.
async fn next_attach(session: &mut Option<ListenerSessionHandle>) -> Option<Attach> {
    match session {
        Some(session) => session.next_incoming_attach().await,
        None => std::future::pending().await,
    }
}

/// Resolves when the device detaches its receiver link (our sender);
/// never while there is none.
async fn sender_detached(sender: &mut Option<Sender>) {
    match sender {
        Some(sender) => {
            let _ = sender.on_detach().await;
        }
        None => std::future::pending().await,
    }
}

/// The next request; never while the device has no sender link.
async fn next_delivery(
    receiver: &mut Option<Receiver>,
) -> Result<fe2o3_amqp::link::delivery::Delivery<Body<Value>>, RecvError> {
    match receiver {
        Some(receiver) => receiver.recv::<Body<Value>>().await,
        None => std::future::pending().await,
    }
}
