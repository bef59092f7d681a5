//! Building and starting a [`Peer`]: the [`PeerBuilder`] knobs, config validation, the
//! QUIC endpoint, directory registration, and the driver and link tasks.

use crate::config::{PeerConfig, StoreConfig};
use crate::discovery::{Access, Discovery, Registration, Timing};
use crate::driver::{Driver, DriverParts};
use crate::error::StartError;
use crate::input::{Input, NeedInstances, SenderCheck};
use crate::link::{self, LinkCtx};
use crate::peer::{Inner, Peer};
use crate::proto::frame::PROTOCOL_VERSION;
use crate::proto::{Balancer, Cause, Core, Frame, InstanceInfo, LeastInFlight};
use crate::quota::Quota;
use crate::received::DeadLetterQueue;
use crate::store::{Committer, IdentityRecord, PeerState, Store, WallClock};
use crate::tls::{self, Fingerprint, Identity};
use bytes::Bytes;
use dashmap::DashMap;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::AtomicU64;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

// The entry points live here, beside what they build, so `peer` never imports `builder`.
impl Peer {
    /// Starts building a peer of `service`.
    pub fn builder(service: impl Into<String>) -> PeerBuilder {
        PeerBuilder::new(PeerConfig::new(&service.into()))
    }

    /// Starts building a peer with test timings ([`PeerConfig::for_test`]).
    pub fn builder_for_test(service: impl Into<String>) -> PeerBuilder {
        PeerBuilder::new(PeerConfig::for_test(&service.into()))
    }
}

/// Room for frame headers on top of the maximum payload.
const FRAME_OVERHEAD: u32 = 2048;

/// Builds and starts a [`Peer`]. Every setter has a documented default in [`PeerConfig`].
#[must_use]
pub struct PeerBuilder {
    cfg: PeerConfig,
    listen: Option<String>,
    identity: Option<Identity>,
    statics: Vec<InstanceInfo>,
    balancer: Option<Box<dyn Balancer>>,
    /// Token, CAs and TLS for the directory (its URLs live in `cfg.directories`).
    directory: Access,
}

impl std::fmt::Debug for PeerBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PeerBuilder")
            .field("cfg", &self.cfg)
            .finish_non_exhaustive()
    }
}

impl PeerBuilder {
    pub(crate) fn new(cfg: PeerConfig) -> Self {
        Self {
            cfg,
            listen: None,
            identity: None,
            statics: Vec::new(),
            balancer: None,
            directory: Access::default(),
        }
    }

    /// Directory base URLs (`http://host:port`), tried in order with failover.
    pub fn directory<I, S>(mut self, urls: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.cfg.directories = urls.into_iter().map(Into::into).collect();
        self
    }

    /// QUIC listen address, e.g. `"0.0.0.0:0"`. Default `127.0.0.1:0`.
    pub fn listen(mut self, addr: impl Into<String>) -> Self {
        self.listen = Some(addr.into());
        self
    }

    /// Address to publish instead of the bound one (e.g. behind NAT).
    pub fn advertise(mut self, addr: SocketAddr) -> Self {
        self.cfg.advertise = Some(addr);
        self
    }

    /// Instance name. Default `<service>-<random hex>`.
    pub fn instance(mut self, name: impl Into<String>) -> Self {
        self.cfg.instance = Some(name.into());
        self
    }

    /// Tags published in the directory.
    pub fn tags<I, S>(mut self, tags: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.cfg.tags = tags.into_iter().map(Into::into).collect();
        self
    }

    /// Subscribes to topics matching `pattern` (`orders.*.created`, `orders.>`) for this
    /// peer's service as consumer group: every message published on a matching topic
    /// reaches one instance of the service. Validated at start.
    pub fn subscribe(mut self, pattern: impl Into<String>) -> Self {
        self.cfg.subscriptions.push((pattern.into(), None));
        self
    }

    /// Subscribes to topics matching `pattern` for consumer group `group`: instances of any
    /// service subscribed for the same group share its messages. Validated at start.
    pub fn subscribe_group(mut self, pattern: impl Into<String>, group: impl Into<String>) -> Self {
        self.cfg
            .subscriptions
            .push((pattern.into(), Some(group.into())));
        self
    }

    /// One metadata entry published in the directory.
    pub fn meta(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.cfg.meta.insert(key.into(), value.into());
        self
    }

    /// Uses this identity instead of generating one.
    pub fn identity(mut self, identity: Identity) -> Self {
        self.identity = Some(identity);
        self
    }

    /// Adds a known instance without the directory (tests, fixed topologies). Its
    /// `fingerprint` is pinned like a directory one; instances without one are not dialed.
    pub fn static_instance(mut self, instance: InstanceInfo) -> Self {
        self.statics.push(instance);
        self
    }

    /// Instance selection policy. Default [`LeastInFlight`].
    pub fn balancer(mut self, balancer: impl Balancer + 'static) -> Self {
        self.balancer = Some(Box::new(balancer));
        self
    }

    /// rustls config for `https` directories (plain `http` needs none). Replaces the
    /// configuration built from [`directory_ca_pem`](Self::directory_ca_pem) and the
    /// system's roots.
    pub fn directory_tls(mut self, config: rustls::ClientConfig) -> Self {
        self.directory.tls = Some(config);
        self
    }

    /// Bearer token sent to the directory with every request (for directories with ACLs).
    pub fn directory_token(mut self, token: impl Into<String>) -> Self {
        self.directory.token = Some(token.into());
        self
    }

    /// Also trusts the CA certificate(s) in `pem` for `https` directories, beside the
    /// system's roots (repeatable).
    pub fn directory_ca_pem(mut self, pem: impl Into<Vec<u8>>) -> Self {
        self.directory.ca_pems.push(pem.into());
        self
    }

    /// Makes the peer durable with a store in directory `path` (created if missing), with
    /// the default quota ([`StoreConfig::new`]): accepted messages are persisted before
    /// `send` reports acceptance and resume after a restart; the key pair, instance name
    /// and session persist (so receivers recognise retries after a restart); a receiver
    /// records handled messages before acking them; dead letters are kept on disk.
    pub fn store(mut self, path: impl Into<std::path::PathBuf>) -> Self {
        self.cfg.store = Some(StoreConfig::new(path));
        self
    }

    /// [`PeerBuilder::store`] with every store knob (quota, behaviour when full, retention).
    pub fn store_config(mut self, store: StoreConfig) -> Self {
        self.cfg.store = Some(store);
        self
    }

    /// Changes any other knob.
    pub fn configure(mut self, f: impl FnOnce(&mut PeerConfig)) -> Self {
        f(&mut self.cfg);
        self
    }

    /// Binds QUIC, registers in the directory (if any) and starts the background tasks.
    /// Describes the SDK's metrics to the installed recorder first ([`crate::describe_metrics`]).
    pub async fn start(self) -> Result<Peer, StartError> {
        crate::describe_metrics();
        start(self).await
    }
}

async fn start(mut b: PeerBuilder) -> Result<Peer, StartError> {
    let durable = open_store(&mut b)?;
    validate(&mut b)?;
    let identity = match b.identity.take() {
        Some(id) => id,
        None => Identity::generate()?,
    };
    let cfg = b.cfg.clone();
    // `validate` filled in the instance name, so the default is never used.
    let instance = cfg.instance.clone().unwrap_or_default();
    if let Some((store, state)) = &durable
        && (state.identity.is_none() || state.instance.as_deref() != Some(&instance))
    {
        store.save_identity(&identity_record(&identity), &instance)?;
    }
    let (endpoint, client, local_addr) = bind(&cfg, &identity)?;
    let cancel = CancellationToken::new();
    let advertised = advertised_addr(&cfg, local_addr);
    let discovery = match start_discovery(
        &b,
        &cfg,
        &instance,
        advertised,
        identity.fingerprint(),
        &cancel,
    )
    .await
    {
        Ok(d) => d,
        Err(e) => {
            endpoint.close(quinn::VarInt::from(0u32), b"start failed");
            return Err(e);
        }
    };
    let directory = discovery.as_ref().map(|d| d.0.clone());
    let (inputs, rx) = mpsc::unbounded_channel();
    let (deliveries_tx, deliveries_rx) = mpsc::unbounded_channel();
    let dead_letters = Arc::new(DeadLetterQueue::new(cfg.dead_letter_capacity));
    let ctx = link_ctx(&cfg, inputs.clone(), &cancel, directory.clone());
    let mut core = new_core(&cfg, b.balancer.take(), &b.statics);
    let session = durable
        .as_ref()
        .map_or_else(rand::random, |(_, s)| s.session);
    let store = match durable {
        Some((store, state)) => Some(start_store(&cfg, &mut core, &store, state, &inputs)?),
        None => None,
    };
    let quota = store.as_ref().map(|(_, q)| q.clone());
    let parts = DriverParts {
        core,
        store,
        endpoint: endpoint.clone(),
        client,
        ctx: ctx.clone(),
        deliveries: deliveries_tx,
        dead_letters: dead_letters.clone(),
        hello: hello_frame(&cfg, &instance, session),
        connect_timeout: cfg.connect_timeout,
        drain_timeout: cfg.drain_timeout,
        on_need: need_instances(directory, inputs.clone()),
    };
    link::spawn_accept_loop(&ctx, endpoint);
    let driver = tokio::spawn(Driver::new(parts).run(rx));
    tracing::info!(service = %cfg.service, %instance, addr = %local_addr, fingerprint = %identity.fingerprint(), "peer started");
    Ok(Peer::from_inner(Inner {
        cfg,
        instance,
        local_addr,
        fingerprint: identity.fingerprint(),
        inputs,
        incoming: Arc::new(tokio::sync::Mutex::new(deliveries_rx)),
        dead_letters,
        quota,
        windows: DashMap::new(),
        discovery,
        cancel,
        driver: parking_lot::Mutex::new(Some(driver)),
    }))
}

/// Opens the configured store (if any) and takes the persisted identity and instance name
/// unless the builder sets them.
fn open_store(b: &mut PeerBuilder) -> Result<Option<(Store, PeerState)>, StartError> {
    let Some(sc) = &b.cfg.store else {
        return Ok(None);
    };
    let store = Store::open_with_cache(&sc.path, sc.cache_bytes)?;
    let state = store.start_peer(
        b.identity.as_ref().map(identity_record),
        b.cfg.instance.clone(),
    )?;
    if b.identity.is_none()
        && let Some(rec) = &state.identity
    {
        b.identity = Some(Identity::from_pem(&rec.cert, &rec.key)?);
    }
    if b.cfg.instance.is_none() {
        b.cfg.instance = state.instance.clone();
    }
    Ok(Some((store, state)))
}

fn identity_record(identity: &Identity) -> IdentityRecord {
    let (cert, key) = identity.to_pem();
    IdentityRecord {
        cert: cert.into_bytes(),
        key: key.into_bytes(),
    }
}

/// Durable peers: resumes the core from the store and starts the committer and the quota.
fn start_store(
    cfg: &PeerConfig,
    core: &mut Core,
    store: &Store,
    state: PeerState,
    inputs: &mpsc::UnboundedSender<Input>,
) -> Result<(Committer, Arc<Quota>), StartError> {
    // `open_store` returned a state only because a store is configured.
    let sc = cfg
        .store
        .clone()
        .unwrap_or_else(|| StoreConfig::new(store.path()));
    core.handle_restore(state.next_id, state.services, state.floors);
    let inputs = inputs.clone();
    let clock = WallClock::now(tokio::time::Instant::now().into_std());
    let committer = Committer::start(store, clock, sc.completed_retention, move |r| {
        let _ = inputs.send(Input::Store(r));
    })?;
    let quota = Quota::new(sc.quota_bytes, state.used_bytes, sc.when_full);
    Ok((committer, Arc::new(quota)))
}

fn invalid(msg: impl Into<String>) -> StartError {
    StartError::InvalidConfig(msg.into())
}

fn validate(b: &mut PeerBuilder) -> Result<(), StartError> {
    if let Some(listen) = &b.listen {
        b.cfg.listen = listen
            .parse()
            .map_err(|_| invalid(format!("listen address {listen:?} is not ip:port")))?;
    }
    let instance = b
        .cfg
        .instance
        .get_or_insert_with(|| format!("{}-{:08x}", b.cfg.service, rand::random::<u32>()));
    directory_api::ServiceName::new(&b.cfg.service).map_err(|e| invalid(e.to_string()))?;
    directory_api::InstanceId::new(instance).map_err(|e| invalid(e.to_string()))?;
    if b.cfg.window == 0 || b.cfg.max_payload == 0 || b.cfg.max_payload > u32::MAX as usize / 2 {
        return Err(invalid(
            "window and max_payload must be positive (max_payload below 2 GiB)",
        ));
    }
    directory_api::Ttl::from_duration(b.cfg.ttl).map_err(|e| invalid(e.to_string()))?;
    for url in &b.cfg.directories {
        if !(url.starts_with("http://") || url.starts_with("https://")) {
            return Err(invalid(format!(
                "directory URL {url:?} must start with http:// or https://"
            )));
        }
    }
    Ok(())
}

fn transport(cfg: &PeerConfig) -> Arc<quinn::TransportConfig> {
    let mut t = quinn::TransportConfig::default();
    t.keep_alive_interval(Some(cfg.keep_alive));
    t.max_idle_timeout(quinn::IdleTimeout::try_from(cfg.idle_timeout).ok());
    t.stream_receive_window(quinn::VarInt::from_u32(8 * 1024 * 1024));
    t.receive_window(quinn::VarInt::from_u32(16 * 1024 * 1024));
    t.send_window(16 * 1024 * 1024);
    // The protocol uses one bidirectional stream per connection; a few more are allowed,
    // unidirectional ones are not.
    t.max_concurrent_bidi_streams(quinn::VarInt::from_u32(8));
    t.max_concurrent_uni_streams(quinn::VarInt::from_u32(0));
    Arc::new(t)
}

fn quic_configs(
    cfg: &PeerConfig,
    id: &Identity,
) -> Result<(quinn::ServerConfig, quinn::ClientConfig), StartError> {
    let tls_err =
        |e: &dyn std::fmt::Display| StartError::Identity(crate::IdentityError::Tls(e.to_string()));
    let server_tls = quinn::crypto::rustls::QuicServerConfig::try_from(tls::server_config(id)?)
        .map_err(|e| tls_err(&e))?;
    let client_tls = quinn::crypto::rustls::QuicClientConfig::try_from(tls::client_config(id)?)
        .map_err(|e| tls_err(&e))?;
    let mut server = quinn::ServerConfig::with_crypto(Arc::new(server_tls));
    server.transport_config(transport(cfg));
    let mut client = quinn::ClientConfig::new(Arc::new(client_tls));
    client.transport_config(transport(cfg));
    Ok((server, client))
}

/// Binds the QUIC endpoint; returns it, the client config for dialing and the bound address.
fn bind(
    cfg: &PeerConfig,
    identity: &Identity,
) -> Result<(quinn::Endpoint, quinn::ClientConfig, SocketAddr), StartError> {
    let (server, client) = quic_configs(cfg, identity)?;
    let bind_err = |source| StartError::Bind {
        addr: cfg.listen,
        source,
    };
    let endpoint = quinn::Endpoint::server(server, cfg.listen).map_err(bind_err)?;
    let local_addr = endpoint.local_addr().map_err(bind_err)?;
    Ok((endpoint, client, local_addr))
}

/// The address published in the directory: the configured one or the bound one, with an
/// unspecified IP replaced by loopback.
fn advertised_addr(cfg: &PeerConfig, local_addr: SocketAddr) -> SocketAddr {
    let mut advertised = cfg.advertise.unwrap_or(local_addr);
    if advertised.ip().is_unspecified() {
        advertised.set_ip(std::net::Ipv4Addr::LOCALHOST.into());
    }
    advertised
}

fn link_ctx(
    cfg: &PeerConfig,
    inputs: mpsc::UnboundedSender<Input>,
    cancel: &CancellationToken,
    directory: Option<Arc<Discovery>>,
) -> LinkCtx {
    LinkCtx {
        inputs,
        tracker: TaskTracker::new(),
        writers: TaskTracker::new(),
        cancel: cancel.clone(),
        link_ids: Arc::new(AtomicU64::new(1)),
        max_frame: cfg.max_payload as u32 + FRAME_OVERHEAD,
        hello_timeout: cfg.connect_timeout,
        sender_check: sender_check(cfg, directory),
    }
}

fn new_core(
    cfg: &PeerConfig,
    balancer: Option<Box<dyn Balancer>>,
    statics: &[InstanceInfo],
) -> Core {
    let balancer = balancer.unwrap_or_else(|| Box::new(LeastInFlight::default()));
    let mut delivery = cfg.delivery.clone();
    if cfg.store.is_some() {
        delivery.durable = true;
        delivery.memory_window = cfg.window;
    }
    let mut core = Core::new(delivery, balancer);
    seed_static_instances(&mut core, statics);
    core
}

/// The hello frame this peer opens every stream with. `session` is random per start, or
/// the store's (so that retries after a restart keep their dedup key).
fn hello_frame(cfg: &PeerConfig, instance: &str, session: u64) -> Bytes {
    Frame::Hello {
        version: PROTOCOL_VERSION,
        session,
        service: cfg.service.clone(),
        instance: instance.to_owned(),
    }
    .to_bytes()
}

async fn start_discovery(
    b: &PeerBuilder,
    cfg: &PeerConfig,
    instance: &str,
    advertised: SocketAddr,
    fingerprint: Fingerprint,
    cancel: &CancellationToken,
) -> Result<Option<(Arc<Discovery>, Registration)>, StartError> {
    if cfg.directories.is_empty() {
        return Ok(None);
    }
    let timing = Timing {
        ttl: cfg.ttl,
        wait: cfg.lookup_wait,
        timeout: cfg.http_timeout,
    };
    let reg = Registration::new(cfg, instance, advertised, fingerprint)
        .map_err(|e| invalid(e.to_string()))?;
    let access = Access {
        urls: cfg.directories.clone(),
        ..b.directory.clone()
    };
    let d = Arc::new(Discovery::new(access, timing, cancel.child_token())?);
    d.register(&reg).await?;
    d.spawn_lease(reg.clone());
    Ok(Some((d, reg)))
}

fn seed_static_instances(core: &mut Core, statics: &[InstanceInfo]) {
    let mut by_service: HashMap<String, Vec<Arc<InstanceInfo>>> = HashMap::new();
    for s in statics {
        by_service
            .entry(s.service.clone())
            .or_default()
            .push(Arc::new(s.clone()));
    }
    let now = tokio::time::Instant::now().into_std();
    for (service, list) in by_service {
        core.handle_instances(now, &service, list);
    }
}

fn need_instances(
    discovery: Option<Arc<Discovery>>,
    inputs: mpsc::UnboundedSender<Input>,
) -> NeedInstances {
    Box::new(move |service| match &discovery {
        Some(d) => {
            report_lookup_failure(d, &service, &inputs);
            d.watch(service, inputs.clone());
        }
        None => {
            tracing::warn!(%service, "no directory configured and no static instance for this service")
        }
    })
}

/// Looks `service` up once and tells the driver if no directory answered, so messages
/// waiting for its instances can say why (the watch alone keeps the last view silently).
fn report_lookup_failure(d: &Arc<Discovery>, service: &str, inputs: &mpsc::UnboundedSender<Input>) {
    let (d, service, inputs) = (d.clone(), service.to_owned(), inputs.clone());
    tokio::spawn(async move {
        let detail = match d.refresh(&service).await {
            Err(e @ crate::DiscoveryError::Unavailable { .. }) => e.to_string(),
            _ => return,
        };
        let cause = Cause::DirectoryUnreachable { detail };
        let _ = inputs.send(Input::LookupFailed { service, cause });
    });
}

fn sender_check(cfg: &PeerConfig, discovery: Option<Arc<Discovery>>) -> Option<SenderCheck> {
    if !cfg.verify_senders {
        return None;
    }
    let check: SenderCheck = Arc::new(move |service, instance, fp| {
        let discovery = discovery.clone();
        Box::pin(async move {
            let Some(d) = discovery else { return false };
            let matches = |list: &[Arc<InstanceInfo>]| {
                list.iter()
                    .any(|i| i.instance == instance && i.fingerprint == Some(fp.0))
            };
            if d.resolve(&service).await.is_ok_and(|l| matches(&l)) {
                return true;
            }
            d.refresh(&service).await.is_ok_and(|l| matches(&l))
        })
    });
    Some(check)
}
