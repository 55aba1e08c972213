//! A nats-server of its own for the tests that need one (`WFM_NATS_SERVER`).

use std::time::Duration;

use super::PATIENCE;

/// A nats-server with JetStream on a free port of 127.0.0.1, killed on drop.
pub struct Nats {
    child: std::process::Child,
    pub url: String,
    dir: std::path::PathBuf,
}

impl Nats {
    /// Starts one; panics if it cannot.
    pub async fn start() -> Nats {
        let binary =
            std::env::var("WFM_NATS_SERVER").expect("WFM_NATS_SERVER names the nats-server binary");
        let port = {
            let probe = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            probe.local_addr().unwrap().port()
        };
        let dir = std::env::temp_dir().join(format!("wfm-gw-nats-{}-{port}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let child = std::process::Command::new(binary)
            .args(["-js", "-sd"])
            .arg(&dir)
            .args(["-a", "127.0.0.1", "-p", &port.to_string()])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("start nats-server");
        let nats = Nats {
            child,
            url: format!("nats://127.0.0.1:{port}"),
            dir,
        };
        let deadline = tokio::time::Instant::now() + PATIENCE;
        while async_nats::connect(&nats.url).await.is_err() {
            assert!(
                tokio::time::Instant::now() < deadline,
                "nats-server never answered"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        nats
    }

    /// The `wfm_nodes` bucket, created if the replicas have not yet.
    pub async fn nodes(&self) -> async_nats::jetstream::kv::Store {
        let client = async_nats::connect(&self.url).await.unwrap();
        async_nats::jetstream::new(client)
            .create_key_value(async_nats::jetstream::kv::Config {
                bucket: "wfm_nodes".into(),
                history: 1,
                ..Default::default()
            })
            .await
            .unwrap()
    }
}

impl Drop for Nats {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
