//! A UDP fault-injection proxy: drops, delays (hence reorders) and duplicates datagrams in
//! both directions between QUIC peers. Seeded; bounded by the test that owns it.

use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;
use tokio::net::UdpSocket;
use tokio::sync::Mutex;

/// Fault probabilities and delay range.
#[derive(Debug, Clone, Copy)]
pub struct Faults {
    pub drop: f64,
    pub duplicate: f64,
    pub max_delay: Duration,
}

/// Counters of what the proxy did.
#[derive(Debug, Default)]
pub struct Stats {
    pub forwarded: AtomicU64,
    pub dropped: AtomicU64,
    pub duplicated: AtomicU64,
}

/// A running proxy in front of `target`.
pub struct Proxy {
    pub addr: SocketAddr,
    pub stats: Arc<Stats>,
    shared: Arc<Shared>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

struct Shared {
    faults: parking_lot::Mutex<Faults>,
    target: parking_lot::Mutex<SocketAddr>,
    rng: Mutex<StdRng>,
    stats: Arc<Stats>,
}

impl Shared {
    /// Sends `data` to `to` through `sock` with faults applied.
    async fn forward(self: &Arc<Self>, sock: &Arc<UdpSocket>, data: Vec<u8>, to: SocketAddr) {
        let (drop, copies, delays) = {
            let faults = *self.faults.lock();
            let mut rng = self.rng.lock().await;
            let drop = rng.random_bool(faults.drop);
            let copies = if rng.random_bool(faults.duplicate) {
                2
            } else {
                1
            };
            let max = faults.max_delay.as_micros() as u64;
            let delays: Vec<u64> = (0..copies).map(|_| rng.random_range(0..=max)).collect();
            (drop, copies, delays)
        };
        if drop {
            self.stats.dropped.fetch_add(1, Ordering::Relaxed);
            return;
        }
        if copies > 1 {
            self.stats.duplicated.fetch_add(1, Ordering::Relaxed);
        }
        for d in delays {
            let sock = sock.clone();
            let data = data.clone();
            self.stats.forwarded.fetch_add(1, Ordering::Relaxed);
            if d == 0 {
                let _ = sock.send_to(&data, to).await;
            } else {
                tokio::spawn(async move {
                    tokio::time::sleep(Duration::from_micros(d)).await;
                    let _ = sock.send_to(&data, to).await;
                });
            }
        }
    }
}

impl Proxy {
    /// Starts a proxy on 127.0.0.1:0 forwarding to `target`.
    pub async fn start(target: SocketAddr, faults: Faults, seed: u64) -> Proxy {
        let front = Arc::new(UdpSocket::bind("127.0.0.1:0").await.unwrap());
        let addr = front.local_addr().unwrap();
        let stats = Arc::new(Stats::default());
        let shared = Arc::new(Shared {
            faults: parking_lot::Mutex::new(faults),
            target: parking_lot::Mutex::new(target),
            rng: Mutex::new(StdRng::seed_from_u64(seed)),
            stats: stats.clone(),
        });
        let shared2 = shared.clone();
        let task = tokio::spawn(async move {
            let shared = shared2;
            let mut upstreams: HashMap<SocketAddr, Arc<UdpSocket>> = HashMap::new();
            let mut buf = vec![0u8; 65_535];
            loop {
                let Ok((n, client)) = front.recv_from(&mut buf).await else {
                    return;
                };
                let up = match upstreams.get(&client) {
                    Some(up) => up.clone(),
                    None => {
                        let up = Arc::new(UdpSocket::bind("127.0.0.1:0").await.unwrap());
                        upstreams.insert(client, up.clone());
                        spawn_return_path(up.clone(), front.clone(), client, shared.clone());
                        up
                    }
                };
                let target = *shared.target.lock();
                shared.forward(&up, buf[..n].to_vec(), target).await;
            }
        });
        Proxy {
            addr,
            stats,
            shared,
            task,
        }
    }

    /// Forwards to `target` from now on (start the proxy first, then the peer that
    /// advertises the proxy's address).
    pub fn set_target(&self, target: SocketAddr) {
        *self.shared.target.lock() = target;
    }

    /// Changes the faults from now on (e.g. drop everything to simulate a silent death).
    pub fn set_faults(&self, faults: Faults) {
        *self.shared.faults.lock() = faults;
    }
}

fn spawn_return_path(
    up: Arc<UdpSocket>,
    front: Arc<UdpSocket>,
    client: SocketAddr,
    shared: Arc<Shared>,
) {
    tokio::spawn(async move {
        let mut buf = vec![0u8; 65_535];
        loop {
            let Ok((n, _)) = up.recv_from(&mut buf).await else {
                return;
            };
            shared.forward(&front, buf[..n].to_vec(), client).await;
        }
    });
}
