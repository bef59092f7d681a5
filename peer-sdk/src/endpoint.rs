//! The public async API: [`Peer`], its [`PeerBuilder`], received [`Message`]s.

use crate::config::{PeerConfig, valid_name};
use crate::discovery::{Discovery, Registration, Timing};
use crate::driver::{Driver, DriverParts, Input, NeedInstances, SenderCheck};
use crate::error::{BroadcastError, SendError, StartError};
use crate::link::{self, LinkCtx};
use crate::proto::frame::{MAX_KEY_LEN, PROTOCOL_VERSION};
use crate::proto::{
    AppOutcome, Balancer, Core, DeadLetter, Delivery, Frame, InstanceInfo, LeastInFlight,
    NackAction, Outcome, SendRequest,
};
use crate::tls::{self, Fingerprint, Identity};
use bytes::Bytes;
use dashmap::DashMap;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::AtomicU64;
use std::time::Duration;
use tokio::sync::{Semaphore, broadcast, mpsc, oneshot};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

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
    directory_tls: Option<rustls::ClientConfig>,
}

impl std::fmt::Debug for PeerBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PeerBuilder")
            .field("cfg", &self.cfg)
            .finish_non_exhaustive()
    }
}

impl PeerBuilder {
    fn new(cfg: PeerConfig) -> Self {
        Self {
            cfg,
            listen: None,
            identity: None,
            statics: Vec::new(),
            balancer: None,
            directory_tls: None,
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

    /// rustls config for `https` directories (plain `http` needs none).
    pub fn directory_tls(mut self, config: rustls::ClientConfig) -> Self {
        self.directory_tls = Some(config);
        self
    }

    /// Changes any other knob.
    pub fn configure(mut self, f: impl FnOnce(&mut PeerConfig)) -> Self {
        f(&mut self.cfg);
        self
    }

    /// Binds QUIC, registers in the directory (if any) and starts the background tasks.
    pub async fn start(self) -> Result<Peer, StartError> {
        Peer::start(self).await
    }
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
    for (what, name) in [("service", &b.cfg.service), ("instance", instance)] {
        if !valid_name(name) {
            return Err(invalid(format!(
                "{what} name {name:?} must match [a-z0-9][a-z0-9._-]{{0,62}}"
            )));
        }
    }
    if b.cfg.window == 0 || b.cfg.max_payload == 0 || b.cfg.max_payload > u32::MAX as usize / 2 {
        return Err(invalid(
            "window and max_payload must be positive (max_payload below 2 GiB)",
        ));
    }
    if !(Duration::from_secs(1)..=Duration::from_secs(3600)).contains(&b.cfg.ttl) {
        return Err(invalid("ttl must be between 1s and 1h"));
    }
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

struct Inner {
    cfg: PeerConfig,
    instance: String,
    local_addr: SocketAddr,
    fingerprint: Fingerprint,
    inputs: mpsc::UnboundedSender<Input>,
    incoming: Arc<tokio::sync::Mutex<mpsc::UnboundedReceiver<Message>>>,
    dead_letters: broadcast::Sender<DeadLetter>,
    windows: DashMap<String, Arc<Semaphore>>,
    discovery: Option<(Arc<Discovery>, Registration)>,
    cancel: CancellationToken,
    driver: parking_lot::Mutex<Option<tokio::task::JoinHandle<()>>>,
}

impl Drop for Inner {
    fn drop(&mut self) {
        self.cancel.cancel();
    }
}

/// A running peer: registered, listening, sending and receiving. Cheap to clone.
#[derive(Clone)]
pub struct Peer {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Peer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Peer")
            .field("service", &self.inner.cfg.service)
            .field("instance", &self.inner.instance)
            .field("addr", &self.inner.local_addr)
            .finish()
    }
}

/// Options of one message.
#[derive(Debug, Clone, Default)]
pub struct SendOptions {
    /// Ordering key: same key to the same service is delivered in send order.
    pub key: Option<Bytes>,
    /// Deadline from now; default the configured one.
    pub deadline: Option<Duration>,
}

impl SendOptions {
    /// Options with an ordering key.
    pub fn ordered(key: impl Into<Bytes>) -> Self {
        Self {
            key: Some(key.into()),
            deadline: None,
        }
    }

    /// Sets the deadline.
    pub fn deadline(mut self, d: Duration) -> Self {
        self.deadline = Some(d);
        self
    }
}

/// Outcome of a broadcast for one instance.
#[derive(Debug)]
pub struct BroadcastOutcome {
    /// Instance name.
    pub instance: String,
    /// Address.
    pub addr: SocketAddr,
    /// Acked, or why not.
    pub result: Result<(), SendError>,
}

impl Peer {
    /// Starts building a peer of `service`.
    pub fn builder(service: impl Into<String>) -> PeerBuilder {
        PeerBuilder::new(PeerConfig::new(&service.into()))
    }

    /// Starts building a peer with test timings ([`PeerConfig::for_test`]).
    pub fn builder_for_test(service: impl Into<String>) -> PeerBuilder {
        PeerBuilder::new(PeerConfig::for_test(&service.into()))
    }

    async fn start(mut b: PeerBuilder) -> Result<Peer, StartError> {
        validate(&mut b)?;
        let identity = match b.identity.take() {
            Some(id) => id,
            None => Identity::generate()?,
        };
        let cfg = b.cfg.clone();
        let instance = cfg.instance.clone().unwrap_or_default();
        let (server, client) = quic_configs(&cfg, &identity)?;
        let endpoint =
            quinn::Endpoint::server(server, cfg.listen).map_err(|source| StartError::Bind {
                addr: cfg.listen,
                source,
            })?;
        let local_addr = endpoint.local_addr().map_err(|source| StartError::Bind {
            addr: cfg.listen,
            source,
        })?;
        let mut advertised = cfg.advertise.unwrap_or(local_addr);
        if advertised.ip().is_unspecified() {
            advertised.set_ip(std::net::Ipv4Addr::LOCALHOST.into());
        }
        let cancel = CancellationToken::new();
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
        let (inputs, rx) = mpsc::unbounded_channel();
        let (deliveries_tx, deliveries_rx) = mpsc::unbounded_channel();
        let (dead_letters, _) = broadcast::channel(cfg.dead_letter_capacity.max(1));
        let ctx = LinkCtx {
            inputs: inputs.clone(),
            tracker: TaskTracker::new(),
            writers: TaskTracker::new(),
            cancel: cancel.clone(),
            link_ids: Arc::new(AtomicU64::new(1)),
            max_frame: cfg.max_payload as u32 + FRAME_OVERHEAD,
            hello_timeout: cfg.connect_timeout,
            sender_check: sender_check(&cfg, discovery.as_ref().map(|d| d.0.clone())),
        };
        let mut core = Core::new(
            cfg.delivery.clone(),
            b.balancer
                .take()
                .unwrap_or_else(|| Box::new(LeastInFlight::default())),
        );
        seed_static_instances(&mut core, &b.statics);
        let hello = Frame::Hello {
            version: PROTOCOL_VERSION,
            session: rand::random(),
            service: cfg.service.clone(),
            instance: instance.clone(),
        }
        .to_bytes();
        let parts = DriverParts {
            core,
            endpoint: endpoint.clone(),
            client,
            ctx: ctx.clone(),
            deliveries: deliveries_tx,
            dead_letters: dead_letters.clone(),
            hello,
            connect_timeout: cfg.connect_timeout,
            drain_timeout: cfg.drain_timeout,
            on_need: need_instances(discovery.as_ref().map(|d| d.0.clone()), inputs.clone()),
        };
        link::spawn_accept_loop(&ctx, endpoint);
        let driver = tokio::spawn(Driver::new(parts).run(rx));
        tracing::info!(service = %cfg.service, %instance, addr = %local_addr, fingerprint = %identity.fingerprint(), "peer started");
        Ok(Peer {
            inner: Arc::new(Inner {
                cfg,
                instance,
                local_addr,
                fingerprint: identity.fingerprint(),
                inputs,
                incoming: Arc::new(tokio::sync::Mutex::new(deliveries_rx)),
                dead_letters,
                windows: DashMap::new(),
                discovery,
                cancel,
                driver: parking_lot::Mutex::new(Some(driver)),
            }),
        })
    }

    /// Bound QUIC address.
    pub fn local_addr(&self) -> SocketAddr {
        self.inner.local_addr
    }

    /// Fingerprint of this peer's certificate (published in the directory).
    pub fn fingerprint(&self) -> Fingerprint {
        self.inner.fingerprint
    }

    /// Service name.
    pub fn service(&self) -> &str {
        &self.inner.cfg.service
    }

    /// Instance name.
    pub fn instance(&self) -> &str {
        &self.inner.instance
    }

    /// This peer as an [`InstanceInfo`] (for static wiring).
    pub fn info(&self) -> InstanceInfo {
        InstanceInfo::new(
            &self.inner.cfg.service,
            &self.inner.instance,
            self.inner.local_addr,
            Some(self.inner.fingerprint.0),
        )
    }

    /// Whether the last directory request got an answer (`true` without a directory).
    pub fn directory_available(&self) -> bool {
        self.inner
            .discovery
            .as_ref()
            .is_none_or(|d| d.0.is_available())
    }

    /// Received messages. Several `Incoming`s share one queue (work distribution).
    pub fn incoming(&self) -> Incoming {
        Incoming {
            rx: self.inner.incoming.clone(),
        }
    }

    /// Dead letters from now on (the same ones `send` returns as errors).
    pub fn dead_letters(&self) -> DeadLetters {
        DeadLetters {
            rx: self.inner.dead_letters.subscribe(),
        }
    }

    /// Sends `payload` to one instance of `service`; resolves when a handler acked it.
    pub async fn send(&self, service: &str, payload: impl Into<Bytes>) -> Result<(), SendError> {
        self.send_with(service, payload, SendOptions::default())
            .await
    }

    /// Sends with an ordering key and/or a deadline.
    pub async fn send_with(
        &self,
        service: &str,
        payload: impl Into<Bytes>,
        opts: SendOptions,
    ) -> Result<(), SendError> {
        match self
            .submit(service, None, payload.into(), opts, false)
            .await?
        {
            Outcome::Acked | Outcome::Replied(_) => Ok(()),
            Outcome::DeadLettered(dl) => Err(SendError::DeadLettered(dl)),
        }
    }

    /// Sends a request and waits for the reply. Errors are those of `send`.
    pub async fn request(
        &self,
        service: &str,
        payload: impl Into<Bytes>,
    ) -> Result<Bytes, SendError> {
        self.request_with(service, payload, SendOptions::default())
            .await
    }

    /// Request with an ordering key and/or a deadline.
    pub async fn request_with(
        &self,
        service: &str,
        payload: impl Into<Bytes>,
        opts: SendOptions,
    ) -> Result<Bytes, SendError> {
        match self
            .submit(service, None, payload.into(), opts, true)
            .await?
        {
            Outcome::Replied(b) => Ok(b),
            Outcome::Acked => Ok(Bytes::new()),
            Outcome::DeadLettered(dl) => Err(SendError::DeadLettered(dl)),
        }
    }

    /// Sends `payload` to every instance of `service`; one outcome per instance.
    pub async fn broadcast(
        &self,
        service: &str,
        payload: impl Into<Bytes>,
    ) -> Result<Vec<BroadcastOutcome>, BroadcastError> {
        let payload = payload.into();
        if payload.len() > self.inner.cfg.max_payload {
            return Err(BroadcastError::PayloadTooLarge {
                size: payload.len(),
                max: self.inner.cfg.max_payload,
            });
        }
        let instances = self
            .instances(service)
            .await
            .map_err(|_| BroadcastError::ShutDown)?;
        if instances.is_empty() {
            return Err(BroadcastError::NoInstances(service.to_owned()));
        }
        let sends = instances.iter().map(|inst| {
            let payload = payload.clone();
            async move {
                let result = match self
                    .submit(
                        service,
                        Some(inst.clone()),
                        payload,
                        SendOptions::default(),
                        false,
                    )
                    .await
                {
                    Ok(Outcome::DeadLettered(dl)) => Err(SendError::DeadLettered(dl)),
                    Ok(_) => Ok(()),
                    Err(e) => Err(e),
                };
                BroadcastOutcome {
                    instance: inst.instance.clone(),
                    addr: inst.addr,
                    result,
                }
            }
        });
        Ok(futures_util::future::join_all(sends).await)
    }

    /// Current instances of `service`: the directory view (fetched if not cached) or the
    /// static ones.
    pub async fn instances(&self, service: &str) -> Result<Vec<Arc<InstanceInfo>>, SendError> {
        if let Some((d, _)) = &self.inner.discovery
            && let Ok(list) = d.resolve(service).await
        {
            d.watch(service.to_owned(), self.inner.inputs.clone());
            return Ok(list);
        }
        let (done, rx) = oneshot::channel();
        let query = Input::KnownInstances {
            service: service.to_owned(),
            done,
        };
        self.inner
            .inputs
            .send(query)
            .map_err(|_| SendError::ShutDown)?;
        rx.await.map_err(|_| SendError::ShutDown)
    }

    /// Messages to `service` accepted and not yet resolved (never more than the window).
    pub fn in_flight(&self, service: &str) -> usize {
        self.inner
            .windows
            .get(service)
            .map_or(0, |w| self.inner.cfg.window - w.available_permits())
    }

    fn window(&self, service: &str) -> Arc<Semaphore> {
        if let Some(w) = self.inner.windows.get(service) {
            return w.clone();
        }
        let window = self.inner.cfg.window;
        self.inner
            .windows
            .entry(service.to_owned())
            .or_insert_with(|| Arc::new(Semaphore::new(window)))
            .clone()
    }

    async fn submit(
        &self,
        service: &str,
        target: Option<Arc<InstanceInfo>>,
        payload: Bytes,
        opts: SendOptions,
        request: bool,
    ) -> Result<Outcome, SendError> {
        self.enqueue_inner(service, target, payload, opts, request)
            .await?
            .outcome()
            .await
    }

    /// Queues a message as soon as the window has room and returns without waiting for the
    /// ack: await the returned [`Pending`] for the outcome. Messages enqueued one after the
    /// other with the same key are delivered in that order (pipelining ordered sends).
    pub async fn enqueue(
        &self,
        service: &str,
        payload: impl Into<Bytes>,
        opts: SendOptions,
    ) -> Result<Pending, SendError> {
        self.enqueue_inner(service, None, payload.into(), opts, false)
            .await
    }

    /// Like [`Peer::enqueue`] for a request; the [`Pending`] resolves to the reply.
    pub async fn enqueue_request(
        &self,
        service: &str,
        payload: impl Into<Bytes>,
        opts: SendOptions,
    ) -> Result<Pending, SendError> {
        self.enqueue_inner(service, None, payload.into(), opts, true)
            .await
    }

    async fn enqueue_inner(
        &self,
        service: &str,
        target: Option<Arc<InstanceInfo>>,
        payload: Bytes,
        opts: SendOptions,
        request: bool,
    ) -> Result<Pending, SendError> {
        let max = self.inner.cfg.max_payload;
        if payload.len() > max {
            return Err(SendError::PayloadTooLarge {
                size: payload.len(),
                max,
            });
        }
        if let Some(k) = &opts.key
            && k.len() > MAX_KEY_LEN
        {
            return Err(SendError::KeyTooLong(k.len()));
        }
        let permit = self
            .window(service)
            .acquire_owned()
            .await
            .map_err(|_| SendError::ShutDown)?;
        let deadline = tokio::time::Instant::now().into_std()
            + opts.deadline.unwrap_or(self.inner.cfg.delivery.deadline);
        let req = SendRequest {
            service: service.to_owned(),
            target,
            key: opts.key,
            payload,
            request,
            deadline,
        };
        let (done, rx) = oneshot::channel();
        self.inner
            .inputs
            .send(Input::Send { req, done, permit })
            .map_err(|_| SendError::ShutDown)?;
        Ok(Pending { rx })
    }

    /// Deregisters, stops accepting sends, waits (up to the drain timeout) for in-flight
    /// messages and deliveries to settle, dead-letters what is left, closes connections.
    pub async fn shutdown(&self) {
        if let Some((d, reg)) = &self.inner.discovery {
            if let Err(e) = d.deregister(reg).await {
                tracing::warn!("deregistration failed: {e}");
            }
            d.stop().await;
        }
        let (done, rx) = oneshot::channel();
        if self.inner.inputs.send(Input::Shutdown { done }).is_ok() {
            let _ = rx.await;
        }
        let driver = self.inner.driver.lock().take();
        if let Some(driver) = driver {
            let _ = driver.await;
        }
        self.inner.cancel.cancel();
    }
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
    let d = Arc::new(Discovery::new(
        cfg.directories.clone(),
        timing,
        b.directory_tls.clone(),
        cancel.child_token(),
    )?);
    let reg = Registration {
        service: cfg.service.clone(),
        instance: instance.to_owned(),
        address: advertised.to_string(),
        tags: cfg.tags.clone(),
        meta: cfg.meta.clone(),
        ttl: humantime::format_duration(cfg.ttl).to_string(),
        fingerprint: fingerprint.to_string(),
    };
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
        Some(d) => d.watch(service, inputs.clone()),
        None => {
            tracing::warn!(%service, "no directory configured and no static instance for this service")
        }
    })
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

/// An enqueued message; resolves to the reply (requests) or an empty payload (acked
/// one-way messages), or the error. The window slot is freed when the outcome is known,
/// whether or not this is awaited.
#[derive(Debug)]
#[must_use = "the message is sent anyway; await this to learn its outcome"]
pub struct Pending {
    rx: oneshot::Receiver<Outcome>,
}

impl Pending {
    async fn outcome(self) -> Result<Outcome, SendError> {
        self.rx.await.map_err(|_| SendError::ShutDown)
    }
}

impl std::future::Future for Pending {
    type Output = Result<Bytes, SendError>;
    fn poll(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Self::Output> {
        std::pin::Pin::new(&mut self.rx).poll(cx).map(|r| match r {
            Ok(Outcome::Acked) => Ok(Bytes::new()),
            Ok(Outcome::Replied(b)) => Ok(b),
            Ok(Outcome::DeadLettered(dl)) => Err(SendError::DeadLettered(dl)),
            Err(_) => Err(SendError::ShutDown),
        })
    }
}

/// Received messages; see [`Peer::incoming`].
#[derive(Debug, Clone)]
pub struct Incoming {
    rx: Arc<tokio::sync::Mutex<mpsc::UnboundedReceiver<Message>>>,
}

impl Incoming {
    /// Next message; `None` after shutdown.
    pub async fn next(&mut self) -> Option<Message> {
        self.rx.lock().await.recv().await
    }
}

/// Dead letters; see [`Peer::dead_letters`].
#[derive(Debug)]
pub struct DeadLetters {
    rx: broadcast::Receiver<DeadLetter>,
}

impl DeadLetters {
    /// Next dead letter; `None` after shutdown. Letters missed by a slow reader are skipped
    /// (and logged with their count).
    pub async fn next(&mut self) -> Option<DeadLetter> {
        loop {
            match self.rx.recv().await {
                Ok(dl) => return Some(dl),
                Err(broadcast::error::RecvError::Lagged(n)) => {
                    tracing::warn!("dead letter reader missed {n} letters")
                }
                Err(broadcast::error::RecvError::Closed) => return None,
            }
        }
    }
}

/// How a handler refuses a message.
#[derive(Debug, Clone)]
pub enum Nack {
    /// Retry later, possibly on another instance.
    Retry(String),
    /// Give up: the sender dead-letters it with this reason.
    DeadLetter(String),
}

/// A received message. Settle it with [`Message::ack`], [`Message::reply`] or
/// [`Message::nack`]; dropping it unsettled counts as `nack(Retry)`.
pub struct Message {
    delivery: Delivery,
    settle: Option<mpsc::UnboundedSender<Input>>,
}

impl std::fmt::Debug for Message {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Message")
            .field("delivery", &self.delivery)
            .finish()
    }
}

impl Message {
    pub(crate) fn new(delivery: Delivery, settle: mpsc::UnboundedSender<Input>) -> Self {
        Self {
            delivery,
            settle: Some(settle),
        }
    }

    /// Payload.
    pub fn payload(&self) -> &Bytes {
        &self.delivery.payload
    }

    /// Ordering key, if the sender gave one.
    pub fn key(&self) -> Option<&Bytes> {
        self.delivery.key.as_ref()
    }

    /// Sender's service.
    pub fn from_service(&self) -> &str {
        &self.delivery.from_service
    }

    /// Sender's instance.
    pub fn from_instance(&self) -> &str {
        &self.delivery.from_instance
    }

    /// Attempt number of this delivery (1 = first try).
    pub fn attempt(&self) -> u32 {
        self.delivery.attempt
    }

    /// Whether the sender waits for a reply.
    pub fn is_request(&self) -> bool {
        self.delivery.request
    }

    /// Sender-unique message id.
    pub fn id(&self) -> u64 {
        self.delivery.token.id
    }

    fn settle(mut self, outcome: AppOutcome) {
        if let Some(tx) = self.settle.take() {
            let _ = tx.send(Input::Settle {
                token: self.delivery.token,
                outcome,
            });
        }
    }

    /// Processed. On a request this replies with an empty payload.
    pub fn ack(self) {
        self.settle(AppOutcome::Ack);
    }

    /// Processed, with a response (for requests; on a one-way message it is an ack).
    pub fn reply(self, payload: impl Into<Bytes>) {
        self.settle(AppOutcome::Reply(payload.into()));
    }

    /// Refuses the message.
    pub fn nack(self, nack: Nack) {
        let outcome = match nack {
            Nack::Retry(r) => AppOutcome::Nack(NackAction::Retry, r),
            Nack::DeadLetter(r) => AppOutcome::Nack(NackAction::DeadLetter, r),
        };
        self.settle(outcome);
    }
}

impl Drop for Message {
    fn drop(&mut self) {
        if let Some(tx) = self.settle.take() {
            let outcome = AppOutcome::Nack(NackAction::Retry, "handler dropped the message".into());
            let _ = tx.send(Input::Settle {
                token: self.delivery.token,
                outcome,
            });
        }
    }
}
