//! The NATS JetStream baseline of the durable benchmark: a `nats-server -js` child process
//! with file storage in a temporary directory, publishes awaited for their store ack, and a
//! pull consumer acking every message.

use async_nats::jetstream::{self, consumer, stream};
use bytes::Bytes;
use futures_util::StreamExt;
use std::collections::VecDeque;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// How long the server may take to write its ports file (bounded polling).
const START_TIMEOUT: Duration = Duration::from_secs(20);

/// A running `nats-server`, killed on drop, with its store in a temporary directory.
pub struct Server {
    child: Child,
    url: String,
    _dir: tempfile::TempDir,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Server {
    /// Starts `nats-server -js` on a free loopback port; `None` (with a note) when the
    /// binary is not installed (`apt-get install nats-server`).
    pub fn start() -> Option<Self> {
        let dir = tempfile::tempdir().unwrap();
        let spawned = Command::new("nats-server")
            .args(["-js", "-a", "127.0.0.1", "-p", "-1", "-sd"])
            .arg(dir.path().join("store"))
            .arg("--ports_file_dir")
            .arg(dir.path())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn();
        let child = match spawned {
            Ok(child) => child,
            Err(e) => {
                println!("JetStream baseline skipped: cannot run nats-server ({e})");
                return None;
            }
        };
        let ports = dir.path().join(format!("nats-server_{}.ports", child.id()));
        let mut server = Self {
            child,
            url: String::new(),
            _dir: dir,
        };
        server.url = client_url(&ports)?;
        Some(server)
    }

    /// Acked 100-byte messages per second through a fresh file-backed stream named
    /// `name`: the publisher keeps up to `window` publishes awaiting their store ack (the
    /// oldest quarter is awaited when full), and a pull consumer with `window` unacked
    /// messages at most acks each one. The clock stops when both sides are done.
    pub async fn throughput(&self, name: &str, window: usize, total: usize) -> f64 {
        let client = async_nats::connect(&self.url).await.unwrap();
        let js = jetstream::new(client);
        let stream = js
            .create_stream(stream::Config {
                name: name.to_owned(),
                subjects: vec![name.to_owned()],
                storage: stream::StorageType::File,
                ..Default::default()
            })
            .await
            .unwrap();
        let consumer: consumer::PullConsumer = stream
            .create_consumer(consumer::pull::Config {
                durable_name: Some("bench".to_owned()),
                ack_policy: consumer::AckPolicy::Explicit,
                max_ack_pending: window as i64,
                ..Default::default()
            })
            .await
            .unwrap();
        let t = Instant::now();
        let consumed = tokio::spawn(async move {
            let mut messages = consumer.messages().await.unwrap();
            for _ in 0..total {
                let m = messages.next().await.unwrap().unwrap();
                m.ack().await.unwrap();
            }
        });
        let payload = Bytes::from(vec![3u8; 100]);
        let mut acks = VecDeque::with_capacity(window);
        for _ in 0..total {
            if acks.len() >= window {
                for ack in acks.drain(..window / 4) {
                    let ack: jetstream::context::PublishAckFuture = ack;
                    ack.await.unwrap();
                }
            }
            acks.push_back(js.publish(name.to_owned(), payload.clone()).await.unwrap());
        }
        for ack in acks {
            ack.await.unwrap();
        }
        consumed.await.unwrap();
        let rate = total as f64 / t.elapsed().as_secs_f64();
        js.delete_stream(name).await.unwrap();
        rate
    }
}

/// Reads the client URL from the server's ports file, waiting for it to appear.
fn client_url(ports: &PathBuf) -> Option<String> {
    let started = Instant::now();
    while started.elapsed() < START_TIMEOUT {
        let url = std::fs::read_to_string(ports).ok().and_then(|s| {
            let v: serde_json::Value = serde_json::from_str(&s).ok()?;
            v["nats"][0].as_str().map(str::to_owned)
        });
        if url.is_some() {
            return url;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    println!("JetStream baseline skipped: nats-server wrote no ports file");
    None
}
