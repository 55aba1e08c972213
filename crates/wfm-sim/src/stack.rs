//! The whole stack in one process: a workflow manager and a gateway on loopback, sharing a
//! signing key. `wfm-sim check` uses it when no stack is given, and `wfm up` runs on it.

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use wfm_gateway::GatewayConfig;
use wfm_manager::ManagerConfig;
use wfm_profiles::ProfileSet;
use wfm_reference::SigningKey;

/// Why the stack could not start.
#[derive(Debug, thiserror::Error)]
pub enum StackError {
    /// A listener could not bind.
    #[error("cannot listen on {address}: {source}")]
    Listen {
        /// The address.
        address: SocketAddr,
        /// Why.
        source: std::io::Error,
    },
    /// The profile file is invalid.
    #[error("invalid profile file:\n{0}")]
    Profiles(#[from] wfm_profiles::LoadError),
    /// No signing key could be generated.
    #[error(transparent)]
    Key(#[from] wfm_reference::ReferenceError),
    /// The gateway configuration is invalid.
    #[error(transparent)]
    Gateway(#[from] wfm_gateway::SettingsError),
    /// The gateway never reached the manager.
    #[error("the gateway at {0} did not become ready within {READY_TIMEOUT:?}")]
    NotReady(SocketAddr),
}

/// How long `start` waits for the gateway to reach the manager.
const READY_TIMEOUT: Duration = Duration::from_secs(10);

/// Where to listen, and the options both services share.
#[derive(Debug, Clone)]
pub struct StackOptions<'a> {
    /// The manager's gRPC address (port 0 picks a free one).
    pub manager: SocketAddr,
    /// The gateway's HTTP/WebSocket address.
    pub gateway: SocketAddr,
    /// A profile file for the manager, watched for changes.
    pub profiles: Option<&'a Path>,
    /// Profiles as text, `(origin, text)`, when there is no file: an embedded set.
    pub profile_text: Option<(&'a str, &'a str)>,
    /// Demo mode: the sessions the gateway's demo page lists.
    pub demo: Option<wfm_gateway::DemoDirectory>,
}

/// Whether the gateway's `/readyz` answers 200.
async fn ready(gateway: SocketAddr) -> bool {
    let Ok(mut stream) = tokio::net::TcpStream::connect(gateway).await else {
        return false;
    };
    let request = format!("GET /readyz HTTP/1.1\r\nHost: {gateway}\r\nConnection: close\r\n\r\n");
    if stream.write_all(request.as_bytes()).await.is_err() {
        return false;
    }
    let mut status = [0u8; 12];
    stream.read_exact(&mut status).await.is_ok() && status.ends_with(b" 200")
}

/// A running manager and gateway.
pub struct Stack {
    /// The manager's gRPC URL.
    pub manager_url: String,
    /// The gateway's HTTP address.
    pub gateway_addr: SocketAddr,
    manager_stop: CancellationToken,
    gateway_stop: CancellationToken,
    manager_task: JoinHandle<()>,
    gateway_task: JoinHandle<()>,
}

impl Stack {
    /// Starts both services with a fresh signing key.
    pub async fn start(options: StackOptions<'_>) -> Result<Stack, StackError> {
        let bind = |address: SocketAddr| async move {
            TcpListener::bind(address)
                .await
                .map_err(|source| StackError::Listen { address, source })
        };
        let manager_listener = bind(options.manager).await?;
        let gateway_listener = bind(options.gateway).await?;
        let manager_addr = manager_listener
            .local_addr()
            .map_err(|source| StackError::Listen {
                address: options.manager,
                source,
            })?;
        let gateway_addr = gateway_listener
            .local_addr()
            .map_err(|source| StackError::Listen {
                address: options.gateway,
                source,
            })?;

        let key = SigningKey::generate()?;
        let mut manager = ManagerConfig::new(key.clone());
        if let Some(path) = options.profiles {
            manager.profiles = ProfileSet::load(path)?;
            manager.profiles_path = Some(path.to_path_buf());
        } else if let Some((origin, text)) = options.profile_text {
            manager.profiles = ProfileSet::parse(origin, text)?;
        }
        let manager_url = format!("http://{manager_addr}");
        let mut gateway = GatewayConfig::new(manager_url.clone(), key);
        gateway.demo = options.demo;
        // A local stack's clients all come from loopback (the simulator's thousands among
        // them): a per-address share would cap the whole stack at it.
        gateway.max_connections_per_address = 0;
        gateway.validate()?;

        let manager_stop = CancellationToken::new();
        let token = manager_stop.clone();
        let manager_task = tokio::spawn(async move {
            if let Err(error) = wfm_manager::serve(manager_listener, manager, token).await {
                tracing::error!(%error, "workflow manager stopped");
            }
        });
        let gateway_stop = CancellationToken::new();
        let token = gateway_stop.clone();
        let gateway_task = tokio::spawn(async move {
            if let Err(error) = wfm_gateway::serve(gateway_listener, gateway, token).await {
                tracing::error!(%error, "gateway stopped");
            }
        });
        let stack = Stack {
            manager_url,
            gateway_addr,
            manager_stop,
            gateway_stop,
            manager_task,
            gateway_task,
        };
        // Clients binding before the gateway's upstream is up would be refused.
        let deadline = tokio::time::Instant::now() + READY_TIMEOUT;
        while !ready(gateway_addr).await {
            if tokio::time::Instant::now() >= deadline {
                stack.stop().await;
                return Err(StackError::NotReady(gateway_addr));
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        Ok(stack)
    }

    /// The MediaBar WebSocket URL.
    pub fn mediabar_url(&self) -> String {
        format!("ws://{}{}", self.gateway_addr, wfm_gateway::MEDIABAR_PATH)
    }

    /// Stops the gateway (its clients are told), then the manager, and waits for both.
    pub async fn stop(self) {
        self.gateway_stop.cancel();
        let _ = self.gateway_task.await;
        self.manager_stop.cancel();
        let _ = self.manager_task.await;
    }
}
