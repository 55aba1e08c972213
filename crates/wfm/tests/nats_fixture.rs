//! The NATS fixtures the cluster tests stand on: a single node serves a KV bucket, and a
//! three-node cluster keeps an R3 bucket readable and writable while one node is down,
//! then takes the node back with what it missed.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod process;

use std::future::Future;
use std::time::{Duration, Instant};

use async_nats::jetstream::{self, kv};
use process::nats::{NatsCluster, NatsServer};

/// Losing a stream's leader costs an election, during which writes fail; the manager
/// retries them too, so the fixture's promise is "within a bound", not "at once".
const FAILOVER: Duration = Duration::from_secs(20);

/// Runs `attempt` until it yields `Some`, failing the test after `bound`.
async fn within<T, F, Fut>(bound: Duration, what: &str, mut attempt: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<Option<T>, String>>,
{
    let deadline = Instant::now() + bound;
    loop {
        let outcome = attempt().await;
        if let Ok(Some(value)) = outcome {
            return value;
        }
        assert!(
            Instant::now() < deadline,
            "{what} within {bound:?}: {outcome:?}",
            outcome = outcome.err()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
#[ignore = "needs nats-server: set WFM_NATS_SERVER"]
async fn a_single_node_serves_a_key_value_bucket() {
    let server = NatsServer::single().await;
    assert_ne!(server.url(), "nats://127.0.0.1:4222");
    let jetstream = jetstream::new(server.connect().await);
    let bucket = jetstream
        .create_key_value(kv::Config {
            bucket: "single".into(),
            ..Default::default()
        })
        .await
        .unwrap();
    bucket.put("k", "v1".into()).await.unwrap();
    assert_eq!(bucket.get("k").await.unwrap().as_deref(), Some(&b"v1"[..]));
}

#[tokio::test]
#[ignore = "needs nats-server: set WFM_NATS_SERVER"]
async fn a_three_node_cluster_keeps_an_r3_bucket_through_the_loss_of_one_node() {
    let mut cluster = NatsCluster::three().await;
    assert_eq!(cluster.urls().split(',').count(), 3);
    let jetstream = jetstream::new(cluster.connect().await);
    let bucket = jetstream
        .create_key_value(kv::Config {
            bucket: "replicated".into(),
            num_replicas: 3,
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(bucket.status().await.unwrap().info.config.num_replicas, 3);
    bucket.put("before", "1".into()).await.unwrap();

    // The client may have been connected to the killed node, and the bucket's leader may
    // have been on it: both recover, the first by reconnecting, the second by election.
    cluster.kill(0);
    within(FAILOVER, "a put with one node down", || {
        let bucket = bucket.clone();
        async move {
            bucket
                .put("during", "2".into())
                .await
                .map(Some)
                .map_err(|e| e.to_string())
        }
    })
    .await;
    for (key, value) in [("before", &b"1"[..]), ("during", &b"2"[..])] {
        let read = bucket.get(key).await.unwrap();
        assert_eq!(read.as_deref(), Some(value), "{key}");
    }

    // The restarted node, asked alone, serves what was written while it was down: it
    // rejoined on its own store and caught up.
    cluster.restart(0).await;
    let alone = jetstream::new(async_nats::connect(cluster.url(0)).await.unwrap());
    let rejoined = alone.get_key_value("replicated").await.unwrap();
    let caught_up = within(FAILOVER, "the restarted node serving the bucket", || {
        let rejoined = rejoined.clone();
        async move { rejoined.get("during").await.map_err(|e| e.to_string()) }
    })
    .await;
    assert_eq!(&caught_up[..], b"2");
    bucket.put("after", "3".into()).await.unwrap();
    assert_eq!(
        bucket.get("after").await.unwrap().as_deref(),
        Some(&b"3"[..])
    );
}
