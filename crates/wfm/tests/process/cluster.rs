//! A cluster of real processes for the cluster tests: `wfm manager` replicas in cluster
//! mode and `wfm gateway`s, each a child on free loopback ports, logging into a directory
//! under the target dir (printed at start, kept for diagnosis). Around them, the two
//! parties the tests play: an Interaction Processor ([`Ip`]) that keeps a model of each
//! session's CTI state and repairs gaps with snapshots, and MediaBar clients
//! ([`MediaBar`]) on real WebSockets that keep the view state they were sent.

use std::collections::BTreeMap;
use std::fs::File;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures_util::{SinkExt as _, StreamExt as _};
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;
use tonic::transport::{Channel, Endpoint};
use tonic::{Code, Status};
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;
use wfm_proto::v1 as pb;
use wfm_proto::v1::workflow_manager_client::WorkflowManagerClient;

use super::{Reaper, free_port, wfm};

/// The signing key every process of a test cluster shares.
pub const KEY: &str = "0123456789abcdef0123456789abcdef-test-key";
/// The replicas' lease: short, so that a dead replica's sessions move within a test.
pub const LEASE_TTL_MS: u64 = 1500;
/// The metadata key of a gap's expected sequence.
const EXPECTED_SEQUENCE: &str = "wfm-expected-sequence";

/// A gRPC client of one replica.
pub type Client = WorkflowManagerClient<Channel>;

/// A directory for one test's logs, under the target dir.
pub fn log_dir(test: &str) -> PathBuf {
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(format!(
        "cluster-{test}-{}-{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    ));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    eprintln!("logs of {test} in {}", dir.display());
    dir
}

fn log_file(path: &PathBuf) -> (Stdio, Stdio) {
    let file = File::options()
        .create(true)
        .append(true)
        .open(path)
        .unwrap();
    (file.try_clone().unwrap().into(), file.into())
}

/// One `wfm manager` replica in cluster mode.
pub struct Replica {
    /// Its node id.
    pub node: String,
    /// Its gRPC port.
    pub port: u16,
    metrics_port: u16,
    nats_url: String,
    nats_replicas: usize,
    log: PathBuf,
    profiles: Option<PathBuf>,
    child: Option<Reaper>,
}

impl Replica {
    /// A replica `node` on fresh ports, not started.
    pub fn new(node: &str, nats_url: &str, nats_replicas: usize, dir: &std::path::Path) -> Self {
        Replica {
            node: node.to_string(),
            port: free_port(),
            metrics_port: free_port(),
            nats_url: nats_url.to_string(),
            nats_replicas,
            log: dir.join(format!("manager-{node}.log")),
            profiles: None,
            child: None,
        }
    }

    /// The same replica, running on the profile file at `path`.
    pub fn with_profiles(mut self, path: PathBuf) -> Self {
        self.profiles = Some(path);
        self
    }

    /// Its gRPC URL.
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Its process id.
    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("running").0.id()
    }

    /// Starts the process (again, with the same node id and ports).
    pub fn spawn(&mut self) {
        assert!(self.child.is_none(), "{} is running", self.node);
        let (out, err) = log_file(&self.log);
        let mut command = wfm("manager");
        if let Some(profiles) = &self.profiles {
            command.arg("--profiles").arg(profiles);
        }
        let child = command
            .args(["--nats-url", &self.nats_url])
            .args(["--node-id", &self.node])
            .args(["--advertise-url", &self.url()])
            .args(["--listen", &format!("127.0.0.1:{}", self.port)])
            .args([
                "--metrics-listen",
                &format!("127.0.0.1:{}", self.metrics_port),
            ])
            .args(["--lease-ttl-ms", &LEASE_TTL_MS.to_string()])
            .args(["--nats-replicas", &self.nats_replicas.to_string()])
            .args(["--signing-key", KEY])
            .args(["--drain-delay-ms", "0"])
            .args(["--shutdown-grace-secs", "10"])
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .spawn()
            .expect("start wfm manager");
        self.child = Some(Reaper(child));
    }

    /// Waits until its gRPC health says SERVING.
    pub async fn ready_by(&mut self, deadline: Instant) {
        loop {
            if let Some(child) = self.child.as_mut()
                && let Some(status) = child.0.try_wait().unwrap()
            {
                panic!(
                    "manager {} exited ({status}); see {}",
                    self.node,
                    self.log.display()
                );
            }
            if health(&self.url()).await == Some(ServingStatus::Serving) {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "manager {} never served; see {}",
                self.node,
                self.log.display()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// SIGKILL: a crash.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.0.kill();
            let _ = child.0.wait();
        }
    }

    /// SIGTERM, then waits for a successful exit.
    pub async fn terminate(&mut self) {
        let mut child = self.child.take().expect("running");
        child.terminate();
        let exit = child
            .exit_by(Instant::now() + Duration::from_secs(15), "manager")
            .await;
        assert!(exit.success(), "manager {} exited with {exit}", self.node);
    }

    /// Sends `signal` (`STOP`, `CONT`) to the process.
    pub fn signal(&self, signal: &str) {
        let status = Command::new("kill")
            .args([&format!("-{signal}"), &self.pid().to_string()])
            .status()
            .unwrap();
        assert!(status.success(), "kill -{signal}");
    }

    /// A client of it.
    pub fn client(&self) -> Client {
        client(&self.url())
    }

    /// Its Prometheus exposition.
    pub async fn metrics(&self) -> String {
        http_get(self.metrics_port, "/metrics").await
    }

    /// The value of the sample `name` (no labels), 0 when absent.
    pub async fn metric(&self, name: &str) -> f64 {
        sample(&self.metrics().await, name)
    }
}

/// The value of the unlabelled sample `name` in an exposition, 0 when absent.
pub fn sample(exposition: &str, name: &str) -> f64 {
    exposition
        .lines()
        .filter(|l| !l.starts_with('#'))
        .find_map(|line| {
            let (key, value) = line.split_once(' ')?;
            (key == name).then(|| value.trim().parse().ok()).flatten()
        })
        .unwrap_or(0.0)
}

async fn http_get(port: u16, path: &str) -> String {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let Ok(mut stream) = tokio::net::TcpStream::connect(("127.0.0.1", port)).await else {
        return String::new();
    };
    let request = format!("GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n");
    if stream.write_all(request.as_bytes()).await.is_err() {
        return String::new();
    }
    let mut response = String::new();
    let _ = stream.read_to_string(&mut response).await;
    response
        .split_once("\r\n\r\n")
        .map(|(_, body)| body.to_string())
        .unwrap_or_default()
}

async fn health(url: &str) -> Option<ServingStatus> {
    let channel = Endpoint::from_shared(url.to_string())
        .ok()?
        .connect_timeout(Duration::from_millis(500))
        .timeout(Duration::from_secs(1))
        .connect()
        .await
        .ok()?;
    let response = HealthClient::new(channel)
        .check(HealthCheckRequest {
            service: "wfm.v1.WorkflowManager".into(),
        })
        .await
        .ok()?;
    Some(response.into_inner().status())
}

/// A lazily connecting client of `url`, with a deadline on every call.
pub fn client(url: &str) -> Client {
    let channel = Endpoint::from_shared(url.to_string())
        .unwrap()
        .connect_timeout(Duration::from_secs(1))
        .timeout(Duration::from_secs(5))
        .connect_lazy();
    WorkflowManagerClient::new(channel)
}

/// One `wfm gateway`.
pub struct Gateway {
    /// Its WebSocket port.
    pub port: u16,
    log: PathBuf,
    _child: Reaper,
}

impl Gateway {
    /// Starts a gateway in front of `managers`, discovering replicas in `nats_url`, and
    /// waits until it is ready.
    pub async fn start(managers: &[String], nats_url: &str, dir: &std::path::Path) -> Gateway {
        let port = free_port();
        let log = dir.join(format!("gateway-{port}.log"));
        let (out, err) = log_file(&log);
        let child = wfm("gateway")
            .args(["--listen", &format!("127.0.0.1:{port}")])
            .args(["--manager-url", &managers.join(",")])
            .args(["--nats-url", nats_url])
            .args(["--signing-key", KEY])
            .args(["--reconnect-max-ms", "200"])
            .args(["--max-connections", "10000"])
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .spawn()
            .expect("start wfm gateway");
        let mut gateway = Gateway {
            port,
            log,
            _child: Reaper(child),
        };
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Some(status) = gateway._child.0.try_wait().unwrap() {
                panic!("gateway exited ({status}); see {}", gateway.log.display());
            }
            let ready = http_get_status(port, "/readyz").await == Some(200);
            if ready {
                return gateway;
            }
            assert!(
                Instant::now() < deadline,
                "gateway never ready; see {}",
                gateway.log.display()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

async fn http_get_status(port: u16, path: &str) -> Option<u16> {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let mut stream = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .ok()?;
    let request = format!("GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await.ok()?;
    let mut response = String::new();
    stream.read_to_string(&mut response).await.ok()?;
    response.split_whitespace().nth(1)?.parse().ok()
}

/// Starts `count` replicas `r0`, `r1`... on `nats_url` and waits until each serves.
pub async fn replicas(
    count: usize,
    nats_url: &str,
    nats_replicas: usize,
    dir: &std::path::Path,
) -> Vec<Replica> {
    let replicas = (0..count)
        .map(|i| Replica::new(&format!("r{i}"), nats_url, nats_replicas, dir))
        .collect();
    start_all(replicas).await
}

/// Starts `replicas` and waits until each serves.
pub async fn start_all(mut replicas: Vec<Replica>) -> Vec<Replica> {
    // One at a time: the first creates the buckets.
    for replica in &mut replicas {
        replica.spawn();
        replica
            .ready_by(Instant::now() + Duration::from_secs(30))
            .await;
    }
    replicas
}

// ---------------------------------------------------------------------------------------
// The Interaction Processor

/// What the IP knows of one session: the agent state it last reported, at which sequence.
#[derive(Debug, Clone)]
pub struct Model {
    /// The session id.
    pub id: String,
    /// The replica it was created at (its first owner).
    pub home: usize,
    /// Its resource reference.
    pub reference: String,
    /// The last sequence the IP had acknowledged.
    pub sequence: u64,
    /// Updates made so far.
    pub steps: u64,
    /// The voice channel's state.
    pub state: pb::AgentState,
    /// Its not-ready reason.
    pub reason: String,
}

impl Model {
    fn channel(&self) -> pb::Channel {
        pb::Channel {
            channel_id: "voice".into(),
            media: pb::Media::Voice.into(),
            state: self.state.into(),
            reason: self.reason.clone(),
            ..Default::default()
        }
    }

    /// Advances the model one step: not ready with a fresh reason, then ready, and so on.
    fn advance(&mut self) {
        self.steps += 1;
        if self.steps % 2 == 1 {
            self.state = pb::AgentState::NotReady;
            self.reason = format!("r{}", self.steps);
        } else {
            self.state = pb::AgentState::Ready;
            self.reason = String::new();
        }
    }
}

/// The Interaction Processor: one client per replica, retrying refused calls at the next.
pub struct Ip {
    clients: Vec<Client>,
    /// Gaps seen (and repaired with a snapshot).
    pub gaps: AtomicU64,
    /// Sessions created again after `NOT_FOUND`.
    pub recreations: AtomicU64,
    /// Calls retried after `UNAVAILABLE` or a transport error.
    pub retries: AtomicU64,
}

/// How long one update may keep being retried before the test fails.
const RETRY_FOR: Duration = Duration::from_secs(30);

/// Refused as unavailable, or lost to the transport (a replica going away sends GOAWAY,
/// which fails calls in flight with INTERNAL): the call is to be made again elsewhere.
fn retryable(status: &Status) -> bool {
    matches!(
        status.code(),
        Code::Unavailable | Code::Unknown | Code::DeadlineExceeded | Code::Cancelled
    ) || std::error::Error::source(status).is_some()
}

fn expected_sequence(status: &Status) -> Option<u64> {
    status
        .metadata()
        .get(EXPECTED_SEQUENCE)?
        .to_str()
        .ok()?
        .parse()
        .ok()
}

fn create_request(id: &str, channels: Vec<pb::Channel>) -> pb::CreateSessionRequest {
    pb::CreateSessionRequest {
        session_id: id.into(),
        agent_id: format!("agent-{id}"),
        channels,
        ..Default::default()
    }
}

impl Ip {
    /// An IP talking to `urls`.
    pub fn new(urls: &[String]) -> Arc<Ip> {
        Arc::new(Ip {
            clients: urls.iter().map(|u| client(u)).collect(),
            gaps: AtomicU64::new(0),
            recreations: AtomicU64::new(0),
            retries: AtomicU64::new(0),
        })
    }

    /// A client of replica `index`.
    pub fn client(&self, index: usize) -> Client {
        self.clients[index % self.clients.len()].clone()
    }

    /// Creates session `id` at replica `home`, which then owns it.
    pub async fn create(&self, id: &str, home: usize) -> Model {
        let mut model = Model {
            id: id.to_string(),
            home,
            reference: String::new(),
            sequence: 0,
            steps: 0,
            state: pb::AgentState::Ready,
            reason: String::new(),
        };
        let created = self
            .client(home)
            .create_session(create_request(id, vec![model.channel()]))
            .await
            .unwrap_or_else(|e| panic!("create {id}: {e}"))
            .into_inner();
        model.reference = created.resource_reference;
        model.sequence = created.next_sequence - 1;
        model
    }

    /// Reports the model's next step, starting at its home replica and moving on to the
    /// next after `UNAVAILABLE`; a gap is repaired with a snapshot of the whole model at
    /// the expected sequence, a lost session is created again.
    pub async fn step(&self, model: &mut Model) {
        model.advance();
        let mut sequence = model.sequence + 1;
        let mut snapshot = false;
        let deadline = Instant::now() + RETRY_FOR;
        let mut attempt = 0;
        loop {
            let kind = if snapshot {
                pb::cti_update::Kind::Snapshot(pb::Snapshot {
                    channels: vec![model.channel()],
                    interactions: vec![],
                })
            } else {
                pb::cti_update::Kind::Channel(model.channel())
            };
            let request = pb::ApplyUpdateRequest {
                session_id: model.id.clone(),
                sequence,
                update: Some(pb::CtiUpdate { kind: Some(kind) }),
            };
            let status = match self
                .client(model.home + attempt)
                .apply_update(request)
                .await
            {
                Ok(_) => {
                    model.sequence = sequence;
                    return;
                }
                Err(status) => status,
            };
            assert!(
                Instant::now() < deadline,
                "update {sequence} of {} still refused after {RETRY_FOR:?}: {status:?}",
                model.id
            );
            match status.code() {
                Code::FailedPrecondition if expected_sequence(&status).is_some() => {
                    self.gaps.fetch_add(1, Ordering::Relaxed);
                    sequence = expected_sequence(&status).unwrap_or(sequence);
                    snapshot = true;
                }
                Code::NotFound => {
                    self.recreations.fetch_add(1, Ordering::Relaxed);
                    let created = self
                        .client(model.home + attempt)
                        .create_session(create_request(&model.id, vec![model.channel()]))
                        .await;
                    if let Ok(created) = created {
                        model.sequence = created.into_inner().next_sequence - 1;
                        return;
                    }
                    attempt += 1;
                }
                _ if retryable(&status) => {
                    self.retries.fetch_add(1, Ordering::Relaxed);
                    attempt += 1;
                    tokio::time::sleep(Duration::from_millis(20 * attempt.min(10) as u64)).await;
                }
                _ => panic!("update {sequence} of {} refused: {status:?}", model.id),
            }
        }
    }

    /// Reports the model's next step at `client` once, with no repair.
    pub async fn try_step(&self, model: &mut Model, client: &mut Client) -> Result<(), Status> {
        model.advance();
        let request = pb::ApplyUpdateRequest {
            session_id: model.id.clone(),
            sequence: model.sequence + 1,
            update: Some(pb::CtiUpdate {
                kind: Some(pb::cti_update::Kind::Channel(model.channel())),
            }),
        };
        client.apply_update(request).await?;
        model.sequence += 1;
        Ok(())
    }

    /// `GetSession` at any replica, retried while the cluster answers `UNAVAILABLE`.
    pub async fn get(&self, id: &str) -> Result<pb::GetSessionResponse, Status> {
        let deadline = Instant::now() + RETRY_FOR;
        let mut attempt = 0;
        loop {
            let request = pb::GetSessionRequest {
                session_id: id.into(),
            };
            match self.client(attempt).get_session(request).await {
                Ok(response) => return Ok(response.into_inner()),
                Err(status) if retryable(&status) && Instant::now() < deadline => {
                    attempt += 1;
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                Err(status) => return Err(status),
            }
        }
    }
}

/// A load of sessions, each stepped every `period` by its own task until stopped.
pub struct Load {
    stop: Arc<tokio_util::sync::CancellationToken>,
    tasks: Vec<tokio::task::JoinHandle<Model>>,
}

impl Load {
    /// Starts stepping each of `models` every `period` (first steps spread over it).
    pub fn start(ip: &Arc<Ip>, models: Vec<Model>, period: Duration) -> Load {
        let stop = Arc::new(tokio_util::sync::CancellationToken::new());
        let count = models.len().max(1) as u32;
        let tasks = models
            .into_iter()
            .enumerate()
            .map(|(i, mut model)| {
                let (ip, stop) = (Arc::clone(ip), Arc::clone(&stop));
                let offset = period * (i as u32) / count;
                tokio::spawn(async move {
                    tokio::select! {
                        () = stop.cancelled() => return model,
                        () = tokio::time::sleep(offset) => {}
                    }
                    while !stop.is_cancelled() {
                        ip.step(&mut model).await;
                        tokio::select! {
                            () = stop.cancelled() => {}
                            () = tokio::time::sleep(period) => {}
                        }
                    }
                    model
                })
            })
            .collect();
        Load { stop, tasks }
    }

    /// Stops the load once each session's current step is done; returns the models.
    pub async fn stop(self) -> Vec<Model> {
        self.stop.cancel();
        let mut models = Vec::with_capacity(self.tasks.len());
        for task in self.tasks {
            models.push(task.await.expect("a load task panicked"));
        }
        models
    }
}

/// A view state as `target → enabled capabilities`, in order.
pub type View = BTreeMap<String, Vec<String>>;

/// The view GetSession reports.
pub fn view_of(session: &pb::GetSessionResponse) -> View {
    session
        .view_state
        .iter()
        .map(|event| {
            let enabled = event
                .capabilities
                .iter()
                .filter(|c| c.enabled)
                .map(|c| c.name.clone())
                .collect();
            (event.target.clone(), enabled)
        })
        .collect()
}

/// Why GetSession's state of `model`'s session is not what the IP reported last, if it is not.
pub fn state_mismatch(model: &Model, session: &pb::GetSessionResponse) -> Option<String> {
    let channel = session
        .state
        .as_ref()
        .and_then(|s| s.channels.iter().find(|c| c.channel_id == "voice"));
    let (state, reason) = channel.map_or((None, ""), |c| (Some(c.state()), c.reason.as_str()));
    let found = (state, reason, session.last_sequence);
    let expected = (Some(model.state), model.reason.as_str(), model.sequence);
    (found != expected).then(|| {
        format!(
            "session {}: the manager has {found:?}, the IP reported {expected:?} last",
            model.id
        )
    })
}

// ---------------------------------------------------------------------------------------
// MediaBar clients

/// What one MediaBar client has been told.
#[derive(Debug, Default)]
pub struct Seen {
    /// The view state, as events built it.
    pub view: View,
    /// When each `service.available` arrived.
    pub available: Vec<Instant>,
    /// When each `service.unavailable` arrived.
    pub unavailable: Vec<Instant>,
    /// The reasons of the `resourceUnbound` events.
    pub unbound: Vec<String>,
    /// When the last state event arrived.
    pub last_event: Option<Instant>,
    /// Every state event, rendered `target: enabled...`.
    pub events: Vec<String>,
    /// The connection ended.
    pub ended: bool,
}

type WsStream =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// A WebSocket MediaBar client of a gateway.
pub struct MediaBar {
    /// What it has been told since it bound.
    pub seen: Arc<Mutex<Seen>>,
    sink: futures_util::stream::SplitSink<WsStream, Message>,
    responses: tokio::sync::mpsc::UnboundedReceiver<Value>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for MediaBar {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn apply_frame(seen: &mut Seen, frame: &Value) {
    let now = Instant::now();
    match frame["messageType"].as_str() {
        Some("resourceEvent") => {
            let event = &frame["event"];
            let target = event["target"].as_str().unwrap_or_default().to_string();
            let enabled: Vec<String> = event["data"]
                .as_array()
                .into_iter()
                .flatten()
                .filter(|c| c["type"] == "enabled")
                .filter_map(|c| c["name"].as_str().map(str::to_string))
                .collect();
            seen.events.push(format!("{target}: {}", enabled.join(" ")));
            if event["context"]["state"] == "ended" {
                seen.view.remove(&target);
            } else {
                seen.view.insert(target, enabled);
            }
            seen.last_event = Some(now);
        }
        Some("serviceEvent") => match frame["event"].as_str() {
            Some("service.available") => seen.available.push(now),
            Some("service.unavailable") => seen.unavailable.push(now),
            _ => {}
        },
        Some("coreEvent") if frame["event"] == "resourceUnbound" => {
            let reason = frame["data"]["reason"].as_str().unwrap_or_default();
            seen.unbound.push(reason.to_string());
        }
        _ => {}
    }
}

impl MediaBar {
    /// Connects to the gateway on `port`.
    pub async fn connect(port: u16) -> MediaBar {
        let url = format!("ws://127.0.0.1:{port}/mediabar/v1");
        let (stream, _) = tokio::time::timeout(
            Duration::from_secs(10),
            tokio_tungstenite::connect_async(url),
        )
        .await
        .expect("the gateway accepts a WebSocket in time")
        .expect("the gateway accepts a WebSocket");
        let (sink, mut source) = stream.split();
        let seen = Arc::new(Mutex::new(Seen::default()));
        let (responses_tx, responses) = tokio::sync::mpsc::unbounded_channel();
        let shared = Arc::clone(&seen);
        let task = tokio::spawn(async move {
            while let Some(message) = source.next().await {
                let Ok(Message::Text(text)) = message else {
                    if message.is_err() {
                        break;
                    }
                    continue;
                };
                let Ok(frame) = serde_json::from_str::<Value>(text.as_str()) else {
                    continue;
                };
                if frame["messageType"] == "coreResponse" {
                    let _ = responses_tx.send(frame);
                    continue;
                }
                apply_frame(&mut shared.lock().unwrap(), &frame);
            }
            shared.lock().unwrap().ended = true;
        });
        MediaBar {
            seen,
            sink,
            responses,
            task,
        }
    }

    /// Sends `bindResource` and returns the response.
    pub async fn bind(&mut self, reference: &str, takeover: bool) -> Value {
        let request = json!({"messageType": "coreRequest", "requestId": "bind",
            "request": "bindResource",
            "data": {"serviceId": "WorkflowManager", "resourceId": reference, "takeover": takeover}});
        self.sink
            .send(Message::text(request.to_string()))
            .await
            .unwrap();
        tokio::time::timeout(Duration::from_secs(20), self.responses.recv())
            .await
            .expect("a bind response in time")
            .expect("the connection stays open")
    }

    /// Connects and binds `reference`, which must succeed.
    pub async fn bound(port: u16, reference: &str) -> MediaBar {
        let mut client = MediaBar::connect(port).await;
        let response = client.bind(reference, false).await;
        assert_eq!(response["result"], "success", "{response}");
        client
    }

    /// The view it holds now.
    pub fn view(&self) -> View {
        self.seen.lock().unwrap().view.clone()
    }
}

/// Polls until every session's GetSession state is its model's and every client's view is
/// GetSession's view, failing after `within` with the sessions that still differ.
pub async fn settle(ip: &Ip, models: &[Model], clients: &[MediaBar], within: Duration) {
    let deadline = Instant::now() + within;
    let mut pending: Vec<usize> = (0..models.len()).collect();
    loop {
        let mut still = Vec::new();
        let mut last_problem = String::new();
        // GetSession of every pending session, 32 at a time.
        let fetched: Vec<(usize, Result<pb::GetSessionResponse, Status>)> =
            futures_util::stream::iter(pending.iter().copied())
                .map(|i| async move { (i, ip.get(&models[i].id).await) })
                .buffered(32)
                .collect()
                .await;
        for (i, fetched) in fetched {
            let model = &models[i];
            let session = match fetched {
                Ok(session) => session,
                Err(status) => {
                    last_problem = format!("{}: {status:?}", model.id);
                    still.push(i);
                    continue;
                }
            };
            if let Some(problem) = state_mismatch(model, &session) {
                last_problem = problem;
                still.push(i);
                continue;
            }
            if let Some(client) = clients.get(i) {
                let (expected, seen) = (view_of(&session), client.view());
                if expected != seen {
                    last_problem = format!(
                        "{}: client sees {seen:?}, GetSession says {expected:?}",
                        model.id
                    );
                    still.push(i);
                }
            }
        }
        if still.is_empty() {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{} sessions did not settle within {within:?}; the last: {last_problem}",
            still.len()
        );
        pending = still;
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Prints `p50` and `p99` of `samples` as `failover p50=.. p99=..`.
pub fn print_percentiles(what: &str, mut samples: Vec<Duration>, of: usize) {
    samples.sort();
    let at = |q: f64| {
        samples
            .get(((samples.len() as f64 - 1.0) * q).round() as usize)
            .copied()
            .unwrap_or_default()
    };
    println!(
        "{what} p50={:?} p99={:?} max={:?} (measured {} of {of} affected clients)",
        at(0.5),
        at(0.99),
        samples.last().copied().unwrap_or_default(),
        samples.len()
    );
}
