//! Helpers shared by the top-level examples and end-to-end tests.
//!
//! # Layout
//! - [`init_logging`]: a tracing subscriber for examples (`RUST_LOG` overrides the default).
//! - [`start_directory`]: a single directory node on an ephemeral loopback port.
//! - [`Latencies`]: a latency histogram with a one-line summary.
//! - [`wait_until`]: polls a condition with a bound, instead of sleeping in tests.
//! - [`DirectoryAccess`]: the example peers' directory options (URLs, `--token`, `--ca`).

use std::future::Future;
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;

pub use peer_sdk::cli::DirectoryAccess;

/// Installs a human-readable tracing subscriber; `default` applies when `RUST_LOG` is unset.
/// Calling it twice is harmless (the second call is ignored).
pub fn init_logging(default: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    // Colours only for a person at a terminal: never escape codes in a file or a pipe.
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stdout());
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_target(false)
        .with_ansi(ansi)
        .try_init();
}

/// Starts one directory node with its defaults, but on `127.0.0.1:0`.
pub async fn start_directory() -> anyhow::Result<directory::Server> {
    let config = directory::Config {
        http_addr: "127.0.0.1:0".parse()?,
        ..directory::Config::default()
    };
    Ok(directory::Server::start(config).await?)
}

/// The base URL of a node's HTTP API.
pub fn url_of(server: &directory::Server) -> String {
    format!("http://{}", server.http_addr())
}

/// Latencies in microseconds, 1 µs to 60 s at three significant digits.
pub struct Latencies(Histogram<u64>);

impl Default for Latencies {
    fn default() -> Self {
        // Bounds are constants within hdrhistogram's documented range: cannot fail.
        Self(Histogram::new_with_bounds(1, 60_000_000, 3).expect("valid histogram bounds"))
    }
}

impl std::fmt::Debug for Latencies {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Latencies({} samples: {})", self.len(), self.summary())
    }
}

impl Latencies {
    /// Records one latency (saturating at the upper bound).
    pub fn record(&mut self, latency: Duration) {
        let micros = u64::try_from(latency.as_micros()).unwrap_or(u64::MAX);
        self.0.saturating_record(micros.max(1));
    }

    /// Adds every sample of `other`.
    pub fn merge(&mut self, other: &Latencies) {
        // Same bounds on both sides, so adding cannot fail.
        let _ = self.0.add(&other.0);
    }

    /// How many samples were recorded.
    pub fn len(&self) -> u64 {
        self.0.len()
    }

    /// Whether nothing was recorded.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The latency at quantile `q` (0.0..=1.0).
    pub fn quantile(&self, q: f64) -> Duration {
        Duration::from_micros(self.0.value_at_quantile(q))
    }

    /// `p50 … p90 … p99 … max …` in readable units.
    pub fn summary(&self) -> String {
        let q = |q| humanize(self.quantile(q));
        format!(
            "p50 {} · p90 {} · p99 {} · max {}",
            q(0.5),
            q(0.9),
            q(0.99),
            humanize(Duration::from_micros(self.0.max()))
        )
    }
}

fn humanize(d: Duration) -> String {
    match d.as_micros() {
        us if us < 1_000 => format!("{us} µs"),
        us if us < 1_000_000 => format!("{:.2} ms", us as f64 / 1e3),
        us => format!("{:.2} s", us as f64 / 1e6),
    }
}

/// Polls `condition` every 20 ms until it holds or `limit` passes; returns whether it held.
pub async fn wait_until<F, Fut>(limit: Duration, mut condition: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let start = Instant::now();
    loop {
        if condition().await {
            return true;
        }
        if start.elapsed() >= limit {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
