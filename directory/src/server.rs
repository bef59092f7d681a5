//! Starting and stopping a directory node.
//!
//! Start-up is one sequence of tasks under one [`CancellationToken`] and one [`TaskTracker`]:
//! bind the HTTP listener, spawn the lease reaper, the metrics upkeep and the HTTP server.
//! Shutdown cancels the token (long requests end, the listener stops accepting), then waits
//! for every task. Further subsystems (gossip) slot in as more tracked tasks.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use metrics_exporter_prometheus::PrometheusHandle;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::Config;
use crate::acl::{Acl, AclFileError};
use crate::dns::{DnsServer, DnsStartError};
use crate::gossip::{Gossip, GossipStartError};
use crate::http::{self, AppState};
use crate::listener::{HttpListener, TlsAcceptor, TlsError, raise_fd_limit};
use crate::metrics::prometheus_handle;
use crate::persist::{DataDir, Loaded, PersistError, Writer};
use crate::registry::{Journal, Now, Registry, RulesError};

/// How often histogram upkeep runs (drains and compacts the recorder's buffers).
const METRICS_UPKEEP_INTERVAL: Duration = Duration::from_secs(5);

/// Why a node could not start. Nothing keeps running after a failed start.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StartError {
    /// The configuration breaks a documented constraint (today: the tombstone retention
    /// must exceed the longest lease plus the lease grace). Remedy: see the message.
    #[error("invalid configuration: {0}")]
    Config(#[from] RulesError),
    /// The HTTP address could not be bound (in use, not local, no permission).
    /// Remedy: pick another `http_addr` or port 0.
    #[error("cannot listen for HTTP on {addr}: {source}")]
    BindHttp {
        /// The address asked for.
        addr: SocketAddr,
        /// The OS error.
        source: std::io::Error,
    },
    /// The gossip layer could not start (gossip address in use, missing advertise
    /// address, bad settings). Remedy: see the message.
    #[error("cannot start gossip: {0}")]
    Gossip(#[from] GossipStartError),
    /// The ACL file cannot be read or is invalid. Remedy: see the message (file, line).
    #[error("{0}")]
    Acl(#[from] AclFileError),
    /// The TLS certificate, key or client CA cannot be used. Remedy: see the message.
    #[error("{0}")]
    Tls(#[from] TlsError),
    /// The DNS listeners could not be bound. Remedy: see the message.
    #[error("{0}")]
    Dns(#[from] DnsStartError),
    /// The data directory cannot be used (locked, foreign or corrupt file, I/O error).
    /// Remedy: see the message.
    #[error("{0}")]
    DataDir(#[from] PersistError),
}

/// A running directory node. Dropping it without [`Server::shutdown`] cancels its tasks
/// without waiting for them.
pub struct Server {
    http_addr: SocketAddr,
    dns_addr: Option<SocketAddr>,
    registry: Registry,
    gossip: Option<Arc<Gossip>>,
    acl: Option<Arc<Acl>>,
    tls: Option<Arc<TlsAcceptor>>,
    writer: Option<Writer>,
    cancel: CancellationToken,
    tracker: TaskTracker,
}

impl Server {
    /// Binds the listeners and starts every task of a node.
    pub async fn start(config: Config) -> Result<Self, StartError> {
        config.registry.validate()?;
        let config = Arc::new(config);
        let acl = load_acl(&config)?;
        let tls = match &config.tls {
            Some(files) => Some(Arc::new(TlsAcceptor::load(files.clone())?)),
            None => None,
        };
        raise_fd_limit(config.http_limits.max_connections.get());
        let listener = bind_http(config.http_addr).await?;
        let http_addr = listener
            .local_addr()
            .map_err(|source| StartError::BindHttp {
                addr: config.http_addr,
                source,
            })?;
        let (writes_tx, writes_rx) = match &config.cluster {
            Some(_) => {
                let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
                (Some(tx), Some(rx))
            }
            None => (None, None),
        };
        let (journal, writer, loaded) = open_data_dir(&config)?;
        let registry = Registry::with_hooks(config.registry.clone(), writes_tx, journal);
        if let Some(loaded) = loaded {
            restore(&registry, loaded);
        }
        let gossip = match (&config.cluster, writes_rx) {
            (Some(settings), Some(writes_rx)) => {
                let gossip = Gossip::start(settings.clone(), registry.clone(), writes_rx).await?;
                tracing::info!(gossip_addr = %gossip.local_addr(), advertise = %gossip.advertise_addr(), "gossip started");
                Some(Arc::new(gossip))
            }
            _ => None,
        };
        if let Some(gossip) = &gossip {
            gossip
                .set_acl_hash(acl.as_ref().map(|a| a.short_hash()))
                .await;
        }
        let cancel = CancellationToken::new();
        let tracker = TaskTracker::new();
        let metrics = prometheus_handle();
        let dns = match &config.dns {
            Some(dns) => Some(DnsServer::bind(dns, registry.clone(), acl.clone()).await?),
            None => None,
        };
        let dns_addr = dns.as_ref().map(DnsServer::local_addr);
        if let Some(dns) = dns {
            tracker.spawn(dns.run(cancel.clone()));
        }

        tracker.spawn(run_reaper(registry.clone(), cancel.clone()));
        tracker.spawn(run_metrics_upkeep(metrics.clone(), cancel.clone()));
        let state = AppState::new(registry.clone(), config.clone(), metrics, cancel.clone())
            .with_gossip(gossip.clone())
            .with_acl(acl.clone());
        let http = HttpListener {
            listener,
            tls: tls.clone(),
            limits: config.http_limits.clone(),
            grace: config.shutdown_grace,
        };
        tracker.spawn(http.serve(http::router(state), cancel.clone()));
        tracker.close();

        tracing::info!(http_addr = %http_addr, node = %config.registry.node, tls = tls.is_some(), "directory node listening");
        if let (Some(addr), Some(dns)) = (dns_addr, &config.dns) {
            tracing::info!(dns_addr = %addr, domain = %dns.domain, "DNS listening (UDP and TCP)");
        }
        // After the address line, which scripts and tests read first.
        match &acl {
            Some(acl) => tracing::info!(
                file = %acl.path().display(),
                acl_hash = %acl.file_hash(),
                "ACL file loaded"
            ),
            None => tracing::warn!(
                "the HTTP API is OPEN: no --acl-file, so anyone who can reach it may register, \
                 replace and delete any service"
            ),
        }
        Ok(Self {
            http_addr,
            dns_addr,
            registry,
            gossip,
            acl,
            tls,
            writer,
            cancel,
            tracker,
        })
    }

    /// The bound HTTP address (the real port when configured with port 0).
    pub fn http_addr(&self) -> SocketAddr {
        self.http_addr
    }

    /// The bound DNS address (UDP and TCP), when the DNS interface is on.
    pub fn dns_addr(&self) -> Option<SocketAddr> {
        self.dns_addr
    }

    /// This node's registry.
    pub fn registry(&self) -> &Registry {
        &self.registry
    }

    /// The bound gossip address (UDP and TCP), when clustering is enabled.
    pub fn gossip_addr(&self) -> Option<SocketAddr> {
        self.gossip.as_ref().map(|g| g.local_addr())
    }

    /// The gossip layer (membership, counters), when clustering is enabled.
    pub fn gossip(&self) -> Option<&Gossip> {
        self.gossip.as_deref()
    }

    /// The enforced ACL, when started with an ACL file.
    pub fn acl(&self) -> Option<&Acl> {
        self.acl.as_deref()
    }

    /// Reloads what can change without a restart (the ACL file, the TLS certificate, key
    /// and client CA, the gossip keyring file); what SIGHUP does. What fails to load is logged and the previous
    /// version stays in force.
    pub async fn reload(&self) {
        reload_acl(self.acl.as_deref());
        if let Some(gossip) = &self.gossip {
            reload_keyring(gossip);
            gossip
                .set_acl_hash(self.acl.as_ref().map(|a| a.short_hash()))
                .await;
        }
        if let Some(tls) = &self.tls {
            match tls.reload() {
                Ok(()) => {
                    tracing::info!(cert = %tls.files().cert.display(), "TLS certificate reloaded")
                }
                Err(e) => {
                    tracing::error!(error = %e, "TLS certificate NOT reloaded; the previous one stays in use")
                }
            }
        }
    }

    /// A token that, when cancelled, shuts the node down (e.g. from a signal handler).
    pub fn cancellation_token(&self) -> CancellationToken {
        self.cancel.clone()
    }

    /// Resolves once shutdown has been requested through the token.
    pub async fn cancelled(&self) {
        self.cancel.cancelled().await;
    }

    /// Graceful shutdown: stops accepting, ends blocking queries and watch streams, lets
    /// in-flight requests finish (up to `shutdown_grace`) and waits for every task.
    pub async fn shutdown(mut self) {
        if let Some(gossip) = &self.gossip {
            // Leave first, so members list this node as "left" rather than dead.
            gossip.shutdown().await;
        }
        self.cancel.cancel();
        self.tracker.wait().await;
        self.registry.close_journal();
        if let Some(writer) = self.writer.take() {
            let _ = tokio::task::spawn_blocking(move || writer.stop()).await;
        }
        tracing::info!("directory node stopped");
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.cancel.cancel();
        // The writer thread finishes what was journaled, then exits.
        self.registry.close_journal();
    }
}

type Persistence = (Option<Journal>, Option<Writer>, Option<Loaded>);

/// Opens the data directory, if one is configured: reads it back and starts its writer.
fn open_data_dir(config: &Config) -> Result<Persistence, StartError> {
    let Some(dir) = &config.data_dir else {
        return Ok((None, None, None));
    };
    let data_dir = DataDir::open(dir)?;
    let loaded = data_dir.load(SystemTime::now())?;
    let (journal, writer) = data_dir.start_writer()?;
    tracing::info!(file = %data_dir.path().display(), entries = loaded.entries.len(), "data directory opened");
    Ok((Some(journal), Some(writer), Some(loaded)))
}

fn restore(registry: &Registry, loaded: Loaded) {
    let stats = registry.restore(loaded.entries, loaded.index, loaded.clock, Now::current());
    tracing::info!(
        live = stats.live,
        tombstones = stats.tombstones,
        skipped = stats.skipped,
        refused = stats.refused,
        "registry restored from the data directory"
    );
}

/// Loads the ACL file if one is configured.
fn load_acl(config: &Config) -> Result<Option<Arc<Acl>>, StartError> {
    let Some(path) = &config.acl_file else {
        return Ok(None);
    };
    Ok(Some(Arc::new(Acl::load(path)?)))
}

fn reload_keyring(gossip: &Gossip) {
    match gossip.reload_keyring() {
        Ok(Some(keys)) => tracing::info!(
            primary_key = %keys.primary_id(),
            keys = keys.len(),
            "gossip keyring reloaded"
        ),
        Ok(None) => {}
        Err(e) => {
            tracing::error!(error = %e, "gossip keyring NOT reloaded; the previous keys stay in force")
        }
    }
}

fn reload_acl(acl: Option<&Acl>) {
    let Some(acl) = acl else { return };
    match acl.reload() {
        Ok(hash) => tracing::info!(
            file = %acl.path().display(),
            acl_hash = %hex::encode(crate::acl::short(&hash)),
            "ACL file reloaded"
        ),
        Err(e) => {
            tracing::error!(error = %e, "ACL file NOT reloaded; the previous rules stay in force")
        }
    }
}

async fn bind_http(addr: SocketAddr) -> Result<TcpListener, StartError> {
    TcpListener::bind(addr)
        .await
        .map_err(|source| StartError::BindHttp { addr, source })
}

async fn run_reaper(registry: Registry, cancel: CancellationToken) {
    registry.run_reaper(cancel).await;
}

async fn run_metrics_upkeep(handle: PrometheusHandle, cancel: CancellationToken) {
    let mut tick = tokio::time::interval(METRICS_UPKEEP_INTERVAL);
    loop {
        tokio::select! {
            biased;
            () = cancel.cancelled() => return,
            _ = tick.tick() => handle.run_upkeep(),
        }
    }
}

/// Resolves on Ctrl-C (SIGINT) or, on Unix, SIGTERM. The handlers are installed when this
/// function is called (not when the future is first polled), so call it before announcing
/// readiness: a signal arriving in between is then not lost to the default action. If a
/// handler cannot be installed, that signal is ignored and an error is logged. Must be
/// called within a tokio runtime.
pub fn shutdown_signal() -> impl std::future::Future<Output = ()> + Send + 'static {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        let install = |kind: SignalKind, name: &'static str| {
            signal(kind)
                .map_err(|e| tracing::error!(error = %e, "cannot listen for {name}"))
                .ok()
        };
        let interrupt = install(SignalKind::interrupt(), "Ctrl-C");
        let terminate = install(SignalKind::terminate(), "SIGTERM");
        async move {
            let wait = |s: Option<tokio::signal::unix::Signal>| async move {
                match s {
                    Some(mut s) => {
                        s.recv().await;
                    }
                    None => std::future::pending::<()>().await,
                }
            };
            tokio::select! {
                () = wait(interrupt) => tracing::info!("Ctrl-C received; shutting down"),
                () = wait(terminate) => tracing::info!("SIGTERM received; shutting down"),
            }
        }
    }
    #[cfg(not(unix))]
    async {
        if let Err(e) = tokio::signal::ctrl_c().await {
            tracing::error!(error = %e, "cannot listen for Ctrl-C");
            std::future::pending::<()>().await;
        }
        tracing::info!("Ctrl-C received; shutting down");
    }
}
