//! A three-node NATS JetStream cluster in child processes, for the cluster benchmarks.
//!
//! Each node is the `nats-server` that `WFM_NATS_SERVER` names, on free loopback ports
//! (never the well-known 4222, which may be a shared server), with its own store directory
//! under the system temp dir. Every node is killed and the store removed on drop, so a
//! failed run leaves nothing behind.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use async_nats::jetstream;

/// The variable naming the `nats-server` binary.
pub const SERVER_ENV: &str = "WFM_NATS_SERVER";

/// How long a node may take to accept connections, and the cluster to elect a JetStream
/// meta leader that can place an R3 stream: generous for a loaded machine, yet bounded.
const START_DEADLINE: Duration = Duration::from_secs(30);

/// Why the cluster could not start or answer.
#[derive(Debug, thiserror::Error)]
pub enum NatsError {
    /// `WFM_NATS_SERVER` is not set.
    #[error("{SERVER_ENV} is not set")]
    NotConfigured,
    /// A node could not be started.
    #[error("cannot start {binary}: {source}")]
    Spawn {
        /// The binary.
        binary: String,
        /// The failure.
        source: std::io::Error,
    },
    /// A file or directory of the cluster could not be made.
    #[error("cannot prepare {path}: {source}")]
    Io {
        /// The path.
        path: String,
        /// The failure.
        source: std::io::Error,
    },
    /// A node exited.
    #[error("nats-server {name} exited ({status}); its log ends:\n{log}")]
    Exited {
        /// The node.
        name: String,
        /// How it exited.
        status: String,
        /// The end of its log.
        log: String,
    },
    /// The cluster did not become ready in time.
    #[error("the NATS cluster was not ready within {START_DEADLINE:?}: {0}")]
    NotReady(String),
    /// A JetStream request failed.
    #[error("JetStream: {0}")]
    JetStream(String),
}

/// The `nats-server` binary, if `WFM_NATS_SERVER` names one.
pub fn configured_binary() -> Option<PathBuf> {
    std::env::var_os(SERVER_ENV)
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
}

/// One node of the cluster.
pub struct Node {
    /// Its server name.
    pub name: String,
    /// Its client port.
    pub client_port: u16,
    /// Its monitoring port (`/jsz`, `/varz`).
    pub monitor_port: u16,
    log: PathBuf,
    child: Child,
}

impl Node {
    /// Its process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Its client URL.
    pub fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.client_port)
    }

    fn log_tail(&self) -> String {
        let log = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = log.lines().collect();
        lines[lines.len().saturating_sub(20)..].join("\n")
    }

    fn check_running(&mut self) -> Result<(), NatsError> {
        match self.child.try_wait() {
            Ok(Some(status)) => Err(NatsError::Exited {
                name: self.name.clone(),
                status: status.to_string(),
                log: self.log_tail(),
            }),
            _ => Ok(()),
        }
    }
}

/// A routed three-node JetStream cluster; every node killed and the store removed on drop.
pub struct NatsCluster {
    /// The nodes.
    pub nodes: Vec<Node>,
    dir: PathBuf,
}

/// A free loopback port other than NATS's well-known one.
fn free_port() -> Result<u16, NatsError> {
    loop {
        let listener =
            std::net::TcpListener::bind("127.0.0.1:0").map_err(|source| NatsError::Io {
                path: "127.0.0.1:0".into(),
                source,
            })?;
        let port = listener
            .local_addr()
            .map_err(|source| NatsError::Io {
                path: "127.0.0.1:0".into(),
                source,
            })?
            .port();
        if port != 4222 {
            return Ok(port);
        }
    }
}

fn io_error(path: &Path) -> impl FnOnce(std::io::Error) -> NatsError + '_ {
    move |source| NatsError::Io {
        path: path.display().to_string(),
        source,
    }
}

impl NatsCluster {
    /// Starts three routed nodes of `binary` with JetStream and waits until an R3 stream
    /// can be placed.
    pub async fn start(binary: &Path) -> Result<NatsCluster, NatsError> {
        const SIZE: usize = 3;
        static NEXT: AtomicU32 = AtomicU32::new(0);
        let name = format!(
            "wfm-bench-nats-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        );
        let dir = std::env::temp_dir().join(&name);
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).map_err(io_error(&dir))?;
        let mut cluster = NatsCluster {
            nodes: Vec::with_capacity(SIZE),
            dir,
        };
        let route_ports = (0..SIZE)
            .map(|_| free_port())
            .collect::<Result<Vec<_>, _>>()?;
        for (i, own) in route_ports.iter().enumerate() {
            let node_name = format!("n{i}");
            let store = cluster.dir.join(&node_name);
            std::fs::create_dir_all(&store).map_err(io_error(&store))?;
            let routes: Vec<String> = route_ports
                .iter()
                .filter(|port| *port != own)
                .map(|port| format!("nats://127.0.0.1:{port}"))
                .collect();
            let (client_port, monitor_port) = (free_port()?, free_port()?);
            let log = cluster.dir.join(format!("{node_name}.log"));
            let file = File::create(&log).map_err(io_error(&log))?;
            let stderr = file.try_clone().map_err(io_error(&log))?;
            let child = Command::new(binary)
                .args(["-js", "-sd"])
                .arg(&store)
                .args(["-a", "127.0.0.1", "-p", &client_port.to_string()])
                .args(["-m", &monitor_port.to_string(), "--name", &node_name])
                .args(["--cluster", &format!("nats://127.0.0.1:{own}")])
                .args(["--cluster_name", &name, "--routes", &routes.join(",")])
                .stdin(Stdio::null())
                .stdout(file)
                .stderr(stderr)
                .spawn()
                .map_err(|source| NatsError::Spawn {
                    binary: binary.display().to_string(),
                    source,
                })?;
            cluster.nodes.push(Node {
                name: node_name,
                client_port,
                monitor_port,
                log,
                child,
            });
        }
        cluster.ready_by(Instant::now() + START_DEADLINE).await?;
        Ok(cluster)
    }

    /// The client URLs of every node, comma-separated, as `--nats-url` takes them.
    pub fn urls(&self) -> String {
        self.nodes
            .iter()
            .map(Node::url)
            .collect::<Vec<_>>()
            .join(",")
    }

    /// A JetStream context on the cluster.
    pub async fn jetstream(&self) -> Result<jetstream::Context, NatsError> {
        let urls = self.urls();
        let addresses: Vec<&str> = urls.split(',').collect();
        let client = async_nats::ConnectOptions::new()
            .connection_timeout(Duration::from_secs(2))
            .connect(addresses.as_slice())
            .await
            .map_err(|e| NatsError::JetStream(e.to_string()))?;
        Ok(jetstream::new(client))
    }

    /// Bytes and messages held by stream `name` (per copy: JetStream reports one replica's
    /// state).
    pub async fn stream_state(&self, name: &str) -> Result<(u64, u64), NatsError> {
        let context = self.jetstream().await?;
        let mut stream = context
            .get_stream(name)
            .await
            .map_err(|e| NatsError::JetStream(format!("{name}: {e}")))?;
        let info = stream
            .info()
            .await
            .map_err(|e| NatsError::JetStream(format!("{name}: {e}")))?;
        Ok((info.state.bytes, info.state.messages))
    }

    /// Waits until every node accepts connections and an R3 stream can be created: only
    /// then is there a meta leader that knows all three peers, which R3 buckets need.
    async fn ready_by(&mut self, deadline: Instant) -> Result<(), NatsError> {
        for i in 0..self.nodes.len() {
            loop {
                self.nodes[i].check_running()?;
                let port = self.nodes[i].client_port;
                if tokio::net::TcpStream::connect(("127.0.0.1", port))
                    .await
                    .is_ok()
                {
                    break;
                }
                if Instant::now() > deadline {
                    return Err(NatsError::NotReady(format!(
                        "node {} does not accept connections",
                        self.nodes[i].name
                    )));
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
        let mut context = self.jetstream().await?;
        // Until a meta leader is elected a request waits its whole timeout: poll often.
        context.set_timeout(Duration::from_millis(500));
        let config = jetstream::stream::Config {
            name: "wfm_bench_probe".into(),
            subjects: vec!["wfm.bench.probe".into()],
            num_replicas: self.nodes.len(),
            ..Default::default()
        };
        loop {
            let problem = match context.create_stream(config.clone()).await {
                Ok(_) => match context.delete_stream(&config.name).await {
                    Ok(_) => return Ok(()),
                    Err(e) => e.to_string(),
                },
                Err(e) => e.to_string(),
            };
            for node in &mut self.nodes {
                node.check_running()?;
            }
            if Instant::now() > deadline {
                return Err(NatsError::NotReady(problem));
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

impl Drop for NatsCluster {
    fn drop(&mut self) {
        for node in &mut self.nodes {
            let _ = node.child.kill();
            let _ = node.child.wait();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
