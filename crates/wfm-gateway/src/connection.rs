//! One MediaBar WebSocket session: a single task that reads requests, writes the outbound
//! queue, pings, and enforces the connection's limits.
//!
//! One task serves both directions through one `select!`: reads and writes are polled
//! together by [`Session::poll_io`], so a client that stops reading never blocks the pings
//! or the timers, and no second task or channel per connection costs memory. Where the
//! connection is in its life (open, closing with a deadline) is one [`Lifecycle`]; it is
//! closed when [`Session::serve`] returns.
//!
//! Requests are answered in order. While a bind waits for the manager, or while the client
//! leaves too many replies unread, the session stops reading, which pushes back on the
//! client through TCP instead of queueing without bound.

use std::future::poll_fn;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};

use axum::body::Bytes;
use axum::extract::ws::{CloseFrame, Message, Utf8Bytes, WebSocket};
use futures_util::{Sink, Stream};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use wfm_telemetry::{KeyValue, SpanKind};

use crate::client::{Binding, ClientShared};
use crate::delivery::CommandReply;
use crate::errors::{CloseReason, GatewayError, UnboundReason};
use crate::limits::RequestLimiter;
use crate::outbound::Item;
use crate::protocol::{self, Request, ResourceData};
use crate::settings::GatewayConfig;
use crate::timers::{Expired, Limits, Phase, Timers};
use crate::upstream::{CommandOrder, Upstream, unix_now};

/// What the gateway's connections share.
pub(crate) struct Hub {
    /// The settings.
    pub(crate) config: Arc<GatewayConfig>,
    /// The manager side.
    pub(crate) upstream: Arc<Upstream>,
    /// Cancelled when the gateway closes its connections (after the drain delay).
    pub(crate) shutdown: CancellationToken,
    /// Cancelled as soon as shutdown begins: readiness turns false.
    pub(crate) draining: CancellationToken,
    next_id: AtomicU64,
}

impl Hub {
    /// A hub over `upstream`.
    pub(crate) fn new(
        config: Arc<GatewayConfig>,
        upstream: Arc<Upstream>,
        shutdown: CancellationToken,
        draining: CancellationToken,
    ) -> Self {
        Self {
            config,
            upstream,
            shutdown,
            draining,
            next_id: AtomicU64::new(1),
        }
    }
}

/// Serves one upgraded WebSocket until either side closes it.
pub(crate) async fn run(mut socket: WebSocket, hub: Arc<Hub>) {
    let stats = &hub.config.stats;
    stats.connections_total.inc();
    let _open = stats.connections.track();
    let conn = Arc::new(ClientShared::new(
        hub.next_id.fetch_add(1, Ordering::Relaxed),
        Arc::clone(stats),
    ));
    hub.upstream.register(&conn);
    tracing::debug!(connection = conn.id, "client connected");
    let mut session = Session::new(&hub, Arc::clone(&conn));
    let end = session.serve(&mut socket).await;
    let conflated = conn.lock().out.conflated();
    tracing::debug!(
        connection = conn.id,
        reason = end,
        conflated,
        "client disconnected"
    );
    // The binding is released whatever ended the connection, so that the agent can bind
    // again at once after a reload.
    let binding = conn.update(|s| {
        let id = s.binding.id();
        s.set_binding(Binding::Unbound);
        id
    });
    if let Some(binding_id) = binding {
        hub.upstream.unbind(binding_id);
    }
    hub.upstream.deregister(conn.id);
}

/// How long a connection whose read side broke stays open after its close frame.
const LINGER: std::time::Duration = std::time::Duration::from_secs(1);

/// What one poll of the socket produced.
enum Io {
    Message(Message),
    Ended,
    Failed(axum::Error),
}

/// What a timer tick decided.
enum Tick {
    Continue,
    Stop(&'static str),
}

/// What the binding is doing, for the clocks.
fn phase(binding: &Binding) -> Phase {
    match binding {
        Binding::Unbound => Phase::Unbound,
        Binding::Pending { .. } => Phase::Binding,
        Binding::Bound { .. } => Phase::Bound,
    }
}

/// Where a connection is in its life; it is closed once [`Session::serve`] returns.
#[derive(Debug)]
enum Lifecycle {
    /// Reading requests and writing replies and events.
    Open,
    /// Closing: `frame` (until sent) goes out once the queue ahead of it has drained, then
    /// the client's close is awaited (`read`, unless the read side broke); the connection
    /// ends at `deadline` at the latest.
    Closing {
        frame: Option<CloseFrame>,
        deadline: Instant,
        read: bool,
    },
    /// The client closed: tungstenite answers, and reading on lets the handshake finish.
    PeerClosed { deadline: Instant },
}

impl Lifecycle {
    fn deadline(&self) -> Option<Instant> {
        match self {
            Lifecycle::Open => None,
            Lifecycle::Closing { deadline, .. } | Lifecycle::PeerClosed { deadline } => {
                Some(*deadline)
            }
        }
    }

    /// Our close frame is out: nothing more is written.
    fn close_sent(&self) -> bool {
        matches!(self, Lifecycle::Closing { frame: None, .. })
    }

    /// Whether queued messages may still be written.
    fn writing(&self) -> bool {
        matches!(
            self,
            Lifecycle::Open | Lifecycle::Closing { frame: Some(_), .. }
        )
    }
}

struct Session<'a> {
    hub: &'a Hub,
    conn: Arc<ClientShared>,
    bucket: RequestLimiter,
    /// Bind attempts: a reference guesser, or a client stuck in a bind loop, is slowed.
    binds: RequestLimiter,
    timers: Timers,
    lifecycle: Lifecycle,
    unflushed: bool,
}

impl<'a> Session<'a> {
    fn new(hub: &'a Hub, conn: Arc<ClientShared>) -> Self {
        let now = Instant::now();
        let config = &hub.config;
        Self {
            hub,
            conn,
            bucket: RequestLimiter::new(config.request_burst, config.request_rate),
            binds: RequestLimiter::per_minute(config.max_binds_per_minute),
            timers: Timers::new(Limits::of(config), now),
            lifecycle: Lifecycle::Open,
            unflushed: false,
        }
    }

    fn config(&self) -> &GatewayConfig {
        &self.hub.config
    }

    async fn serve(&mut self, socket: &mut WebSocket) -> &'static str {
        let conn = Arc::clone(&self.conn);
        let shutdown = self.hub.shutdown.clone();
        let timer = tokio::time::sleep_until(Instant::now());
        tokio::pin!(timer);
        loop {
            let (reading, deadline) = {
                let state = conn.lock();
                if state.out.controls() > 4 * self.config().max_pending_replies {
                    return "too many unread replies";
                }
                let phase = phase(&state.binding);
                self.timers.observe(phase, Instant::now());
                let open = matches!(self.lifecycle, Lifecycle::Open);
                let reading = phase != Phase::Binding
                    && open
                    && state.out.controls() < self.config().max_pending_replies;
                let mut deadline = self.timers.deadline(phase, open);
                if let Some(until) = self.lifecycle.deadline() {
                    deadline = deadline.min(until);
                }
                (reading, deadline)
            };
            timer.as_mut().reset(deadline);
            tokio::select! {
                biased;
                () = shutdown.cancelled(), if matches!(self.lifecycle, Lifecycle::Open) => {
                    self.shut_down();
                }
                () = &mut timer => {
                    if let Tick::Stop(reason) = self.tick() {
                        return reason;
                    }
                }
                io = poll_fn(|cx| self.poll_io(cx, socket, reading)) => match io {
                    Io::Message(message) => self.on_message(message),
                    Io::Ended => return "closed",
                    Io::Failed(error) => {
                        if let Some(reason) = self.on_error(error) {
                            return reason;
                        }
                    }
                },
                () = conn.wake.notified() => {}
            }
        }
    }

    fn tick(&mut self) -> Tick {
        let now = Instant::now();
        if self.lifecycle.deadline().is_some_and(|until| now >= until) {
            return Tick::Stop("close handshake timed out");
        }
        let binding = self.conn.lock().binding.clone();
        match self.timers.tick(now, phase(&binding)) {
            Some(Expired::Pong) => return Tick::Stop("ping not answered"),
            Some(Expired::Idle) => self.begin_close(CloseReason::IdleTimeout),
            Some(Expired::Bind) => {
                if let Binding::Pending { binding_id, .. } = binding {
                    self.hub.upstream.cancel_bind(binding_id);
                }
            }
            None => {}
        }
        Tick::Continue
    }

    fn begin_close(&mut self, reason: CloseReason) {
        if !matches!(self.lifecycle, Lifecycle::Open) {
            return;
        }
        tracing::debug!(
            connection = self.conn.id,
            code = reason.code(),
            reason = reason.text(),
            "closing"
        );
        self.lifecycle = Lifecycle::Closing {
            frame: Some(CloseFrame {
                code: reason.code(),
                reason: Utf8Bytes::from_static(reason.text()),
            }),
            deadline: Instant::now() + self.config().shutdown_grace,
            read: true,
        };
    }

    /// Gateway shutdown: release the binding, tell the client, and say goodbye.
    fn shut_down(&mut self) {
        let binding = self.conn.lock().binding.clone();
        if let Some(binding_id) = binding.id() {
            self.hub.upstream.unbind(binding_id);
        }
        self.conn.update(|s| {
            match &s.binding {
                Binding::Bound { session, .. } => {
                    let event =
                        protocol::resource_unbound(&session.id, UnboundReason::ServerShutdown);
                    s.push_control(event);
                }
                Binding::Pending { request_id, .. } => {
                    let response = protocol::failure(
                        request_id,
                        "bindResource",
                        &GatewayError::ServiceUnavailable,
                    );
                    s.push_control(response);
                }
                Binding::Unbound => {}
            }
            s.set_binding(Binding::Unbound);
        });
        self.begin_close(CloseReason::ServerShutdown);
    }

    /// Writes what is queued (pings first, the close frame last), then reads one message.
    fn poll_io(&mut self, cx: &mut Context<'_>, socket: &mut WebSocket, reading: bool) -> Poll<Io> {
        if self.lifecycle.writing() {
            loop {
                match Pin::new(&mut *socket).poll_ready(cx) {
                    Poll::Ready(Ok(())) => {}
                    Poll::Ready(Err(error)) => return Poll::Ready(Io::Failed(error)),
                    Poll::Pending => break,
                }
                // A state event's send is a span of its update's trace, if it has one.
                let mut sent_state = None;
                let message = if self.timers.take_ping() {
                    Message::Ping(Bytes::new())
                } else if let Some(item) = self.conn.lock().pop() {
                    Message::Text(match item {
                        Item::Control(text) => text.into(),
                        Item::State(queued) => {
                            let span = self.hub.config.tracer.child_span(
                                "wfm.gateway.websocket_send",
                                SpanKind::Producer,
                                &queued.state.trace,
                                || {
                                    vec![
                                        KeyValue::new("wfm.session_id", queued.session.id.clone()),
                                        KeyValue::new("wfm.target", queued.state.target.clone()),
                                        KeyValue::new("wfm.connection", self.conn.id as i64),
                                    ]
                                },
                            );
                            sent_state = Some((queued.state.received, span));
                            protocol::state_event(&queued.session, &queued.state).into()
                        }
                    })
                } else if let Lifecycle::Closing { frame, .. } = &mut self.lifecycle
                    && let Some(frame) = frame.take()
                {
                    Message::Close(Some(frame))
                } else {
                    break;
                };
                if let Err(error) = Pin::new(&mut *socket).start_send(message) {
                    return Poll::Ready(Io::Failed(error));
                }
                if let Some((received, span)) = sent_state {
                    let stats = &self.hub.config.stats;
                    stats.events_sent.inc();
                    stats.event_to_write.observe(received.elapsed());
                    drop(span);
                }
                self.unflushed = true;
                if self.lifecycle.close_sent() {
                    break;
                }
            }
        }
        if self.unflushed {
            match Pin::new(&mut *socket).poll_flush(cx) {
                Poll::Ready(Ok(())) => self.unflushed = false,
                Poll::Ready(Err(_)) if !self.lifecycle.writing() => {
                    return Poll::Ready(Io::Ended);
                }
                Poll::Ready(Err(error)) => return Poll::Ready(Io::Failed(error)),
                Poll::Pending => {}
            }
        }
        // After our close frame, keep reading for the client's.
        let read = match self.lifecycle {
            Lifecycle::Open => reading,
            Lifecycle::Closing {
                frame: None, read, ..
            } => read,
            Lifecycle::Closing { frame: Some(_), .. } => false,
            Lifecycle::PeerClosed { .. } => true,
        };
        if read {
            match Pin::new(&mut *socket).poll_next(cx) {
                Poll::Ready(Some(Ok(message))) => return Poll::Ready(Io::Message(message)),
                Poll::Ready(Some(Err(error))) => return Poll::Ready(Io::Failed(error)),
                Poll::Ready(None) => return Poll::Ready(Io::Ended),
                Poll::Pending => {}
            }
        }
        Poll::Pending
    }

    /// A read or write failed: a size or protocol violation gets a reason before the
    /// close; anything else means the peer is gone.
    fn on_error(&mut self, error: axum::Error) -> Option<&'static str> {
        let inner = error.into_inner();
        let reason = match inner.downcast_ref::<tungstenite::Error>() {
            Some(tungstenite::Error::Capacity(_)) => CloseReason::MessageTooLarge,
            Some(tungstenite::Error::Utf8(_)) => CloseReason::InvalidUtf8,
            Some(tungstenite::Error::Protocol(_)) => CloseReason::ProtocolError,
            _ => {
                tracing::debug!(connection = self.conn.id, error = %inner, "websocket failed");
                return Some("connection lost");
            }
        };
        if !matches!(self.lifecycle, Lifecycle::Open) {
            return Some("failed while closing");
        }
        if reason == CloseReason::MessageTooLarge {
            let error = GatewayError::FrameTooLarge(self.config().max_frame_size);
            self.conn
                .update(|s| s.push_control(protocol::core_error(None, &error)));
        }
        self.begin_close(reason);
        // A bad UTF-8 frame was read whole, so reading on completes the close handshake.
        // After the others the reader is lost mid-frame: the client's unread bytes would turn
        // our close into a TCP reset that can destroy the close frame before the client reads
        // it, so the socket lingers a moment, unread, instead.
        if reason != CloseReason::InvalidUtf8
            && let Lifecycle::Closing { deadline, read, .. } = &mut self.lifecycle
        {
            *read = false;
            *deadline = Instant::now() + LINGER.min(self.hub.config.shutdown_grace);
        }
        None
    }

    fn on_message(&mut self, message: Message) {
        let now = Instant::now();
        // Any frame proves the client alive, not only a pong.
        self.timers.heard();
        match message {
            Message::Text(text) => {
                self.timers.requested(now);
                if text.len() > self.config().max_message_size {
                    self.refuse_large();
                } else {
                    self.on_text(text.as_str(), now);
                }
            }
            Message::Binary(data) => {
                self.timers.requested(now);
                let error = if !self.bucket.try_take() {
                    self.rate_limited()
                } else if data.len() > self.config().max_message_size {
                    GatewayError::MessageTooLarge(self.config().max_message_size)
                } else {
                    GatewayError::BinaryFrame
                };
                self.conn
                    .update(|s| s.push_control(protocol::core_error(None, &error)));
            }
            Message::Ping(_) | Message::Pong(_) => {}
            Message::Close(_) => {
                let deadline = self
                    .lifecycle
                    .deadline()
                    .unwrap_or(now + self.hub.config.shutdown_grace);
                self.lifecycle = Lifecycle::PeerClosed { deadline };
            }
        }
    }

    /// A message over the soft limit is not even parsed.
    fn refuse_large(&mut self) {
        let error = if self.bucket.try_take() {
            GatewayError::MessageTooLarge(self.config().max_message_size)
        } else {
            self.rate_limited()
        };
        self.conn
            .update(|s| s.push_control(protocol::core_error(None, &error)));
    }

    fn rate_limited(&self) -> GatewayError {
        GatewayError::RateLimited {
            burst: self.config().request_burst,
            rate: self.config().request_rate,
        }
    }

    fn on_text(&mut self, text: &str, now: Instant) {
        let parsed = protocol::parse(text);
        if !self.bucket.try_take() {
            let error = self.rate_limited();
            let reply = match &parsed {
                Ok(envelope) => envelope.refusal(&error),
                Err(malformed) => protocol::core_error(malformed.request_id.as_deref(), &error),
            };
            self.conn.update(|s| s.push_control(reply));
            return;
        }
        let reply = match parsed {
            Err(malformed) => {
                protocol::core_error(malformed.request_id.as_deref(), &malformed.error)
            }
            Ok(protocol::Envelope {
                request_id,
                name,
                resource,
                request,
            }) => match (request, resource) {
                (Err(error), resource) => {
                    protocol::refusal(&request_id, &name, resource.as_ref(), &error)
                }
                (
                    Ok(Request::Command {
                        capability,
                        target,
                        arguments,
                    }),
                    Some(address),
                ) => {
                    // The echo is the name as cut for echoes: it must not grow with the frame.
                    let reply = CommandReply {
                        request_id,
                        address,
                        request: name,
                    };
                    let order = CommandOrder {
                        capability,
                        target,
                        arguments,
                    };
                    match self.command(reply.clone(), order) {
                        Ok(()) => return,
                        Err(error) => protocol::refusal(
                            &reply.request_id,
                            &reply.request,
                            Some(&reply.address),
                            &error,
                        ),
                    }
                }
                (Ok(request), _) => match self.handle(&request_id, request, now) {
                    Some(reply) => reply,
                    None => return,
                },
            },
        };
        self.conn.update(|s| s.push_control(reply));
    }

    /// Sends a bound client's command for its session; the answer comes later, through the
    /// upstream. `Err` is the answer when it cannot be sent.
    fn command(&mut self, reply: CommandReply, order: CommandOrder) -> Result<(), GatewayError> {
        let Binding::Bound {
            binding_id,
            session,
        } = self.conn.lock().binding.clone()
        else {
            return Err(GatewayError::NotBound);
        };
        if reply.address.resource_id != session.id {
            return Err(GatewayError::NotBound);
        }
        self.hub
            .upstream
            .command(&self.conn, binding_id, reply, order)
    }

    /// Handles a valid request; returns the reply, or `None` when the reply comes later
    /// (a bind, answered when the manager has answered) or was queued already.
    fn handle(&mut self, request_id: &str, request: Request, now: Instant) -> Option<String> {
        let name = request.name();
        let fail = |error: GatewayError| Some(protocol::failure(request_id, name, &error));
        match request {
            Request::GetServices => match self.hub.upstream.service() {
                (Some(info), available) => Some(protocol::services(request_id, &info, available)),
                (None, _) => fail(GatewayError::ServiceUnavailable),
            },
            Request::Bind {
                reference,
                takeover,
            } => {
                if self.conn.lock().binding != Binding::Unbound {
                    return fail(GatewayError::ConnectionAlreadyBound);
                }
                if !self.binds.try_take() {
                    self.config().stats.binds_refused.inc();
                    return fail(GatewayError::BindsLimited(
                        self.config().max_binds_per_minute,
                    ));
                }
                let claims = match self.config().signing_key.verify(&reference, unix_now()) {
                    Ok(claims) => claims,
                    Err(error) => {
                        tracing::debug!(connection = self.conn.id, %error, "reference refused");
                        return fail(GatewayError::Unauthorized);
                    }
                };
                // Pending before the command leaves, so that the answer finds it waiting.
                let binding_id = self.hub.upstream.next_binding_id();
                self.conn.update(|s| {
                    s.set_binding(Binding::Pending {
                        binding_id,
                        request_id: request_id.to_string(),
                    });
                });
                match self.hub.upstream.bind(
                    &self.conn,
                    binding_id,
                    reference,
                    claims.session_id,
                    takeover,
                ) {
                    Ok(()) => {
                        self.timers.bind_sent(now);
                        None
                    }
                    Err(error) => {
                        self.conn.update(|s| s.set_binding(Binding::Unbound));
                        fail(error)
                    }
                }
            }
            // Answered by `command`; a coreRequest never parses into one.
            Request::Command { .. } => fail(GatewayError::UnknownRequest(name.to_string())),
            Request::Unbind { resource } => {
                let Binding::Bound {
                    binding_id,
                    session,
                } = self.conn.lock().binding.clone()
                else {
                    return fail(GatewayError::NotBound);
                };
                if let Some(resource) = resource
                    && resource != session.id
                    && !self.hub.upstream.is_reference(binding_id, &resource)
                {
                    return fail(GatewayError::NotBound);
                }
                self.hub.upstream.unbind(binding_id);
                self.conn.update(|s| {
                    let reply = if s.binding.id() == Some(binding_id) {
                        s.set_binding(Binding::Unbound);
                        protocol::success(request_id, name, &ResourceData::session(&session.id))
                    } else {
                        // The binding ended on its own meanwhile; its event is already queued.
                        protocol::failure(request_id, name, &GatewayError::NotBound)
                    };
                    s.push_control(reply);
                });
                None
            }
        }
    }
}
