//! `peer listen SERVICE` and `peer subscribe PATTERN`: registers (with the subscription),
//! acks every delivery (replies to requests with their own payload), and writes one JSON
//! line per delivery to the log file or stdout.

use crate::args::{ListenArgs, ListenOptions, SubscribeArgs};
use crate::common;
use crate::json::{self, DeliveryLine};
use anyhow::Context;
use peer_sdk::Message;
use std::io::Write;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

/// Where delivery lines go. Each line is one `write` (no user-space buffer), so a line
/// that was written survives a SIGKILL of this process.
type Sink = Arc<parking_lot::Mutex<Box<dyn Write + Send>>>;

fn open_sink(args: &ListenOptions) -> anyhow::Result<Sink> {
    let out: Box<dyn Write + Send> = match &args.log {
        Some(path) => Box::new(
            std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(path)
                .with_context(|| format!("opening {}", path.display()))?,
        ),
        None => Box::new(std::io::stdout()),
    };
    Ok(Arc::new(parking_lot::Mutex::new(out)))
}

/// `peer listen`: runs until Ctrl-C / SIGTERM, then deregisters and drains.
pub async fn run(args: ListenArgs) -> anyhow::Result<ExitCode> {
    let peer = common::start_peer(&args.service, &args.options.peer, 1).await?;
    serve(peer, &args.options).await
}

/// `peer subscribe`: as `listen`, registered with one subscription.
pub async fn subscribe(args: SubscribeArgs) -> anyhow::Result<ExitCode> {
    let subscription = (args.pattern, args.group);
    let peer = common::start_subscriber(&args.service, &args.options.peer, subscription).await?;
    serve(peer, &args.options).await
}

async fn serve(peer: peer_sdk::Peer, args: &ListenOptions) -> anyhow::Result<ExitCode> {
    let sink = open_sink(args)?;
    eprintln!(
        "listening: service={} instance={} addr={}",
        peer.service(),
        peer.instance(),
        peer.local_addr()
    );
    let mut inbox = peer.incoming();
    let handling = Handling {
        sink,
        receiver: peer.instance().to_owned(),
        takes: args.handle_time,
        signal_every: args.progress_every,
    };
    loop {
        let msg = tokio::select! {
            _ = common::shutdown_signal() => break,
            m = inbox.next() => match m { Some(m) => m, None => break },
        };
        handling.start(msg)?;
    }
    peer.shutdown().await;
    Ok(ExitCode::SUCCESS)
}

/// How each delivery is handled.
#[derive(Clone)]
struct Handling {
    sink: Sink,
    receiver: String,
    takes: Duration,
    signal_every: Option<Duration>,
}

impl Handling {
    /// Logs the delivery, then settles it (at once, or after `takes` in a task).
    fn start(&self, msg: Message) -> anyhow::Result<()> {
        let line = json::line(&DeliveryLine::new(&msg, &self.receiver)) + "\n";
        self.sink
            .lock()
            .write_all(line.as_bytes())
            .context("writing the delivery log")?;
        if self.takes.is_zero() {
            settle(msg);
            return Ok(());
        }
        let (takes, every) = (self.takes, self.signal_every);
        tokio::spawn(async move {
            let done = tokio::time::Instant::now() + takes;
            while let Some(every) = every.filter(|_| tokio::time::Instant::now() < done) {
                let left = done.saturating_duration_since(tokio::time::Instant::now());
                tokio::time::sleep(every.min(left)).await;
                msg.in_progress();
            }
            tokio::time::sleep_until(done).await;
            settle(msg);
        });
        Ok(())
    }
}

/// Acks a message; a request gets its own payload back.
fn settle(msg: Message) {
    if msg.is_request() {
        let echo = msg.payload().clone();
        msg.reply(echo);
    } else {
        msg.ack();
    }
}
