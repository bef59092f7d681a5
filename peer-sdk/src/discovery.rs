//! Directory client: registration with the certificate fingerprint, lease renewal,
//! re-registration after a 404, failover between directory URLs, and cached lookups kept
//! fresh with blocking queries. The HTTP calls and failover are the API crate's
//! [`directory_api::Client`]; this module adds the peer's policies on top. When no directory
//! answers, the last known view stays in use (logged, and `peer_sdk_directory_available`
//! drops to 0).

use crate::config::PeerConfig;
use crate::error::DiscoveryError;
use crate::input::Input;
use crate::proto::InstanceInfo;
use crate::tls::Fingerprint;
use crate::topic::{Destination, is_topic_key, topic_key};
use dashmap::DashMap;
use directory_api::{
    Address, Client, ClientError, InstanceFilter, InstanceId, Meta, Record, ServiceName,
    Subscription, Subscriptions, Tags, Topic, TopicPattern, Ttl, ValidationError,
};

/// The topic index and each subscribed group with its instances.
type GroupsView = (u64, Vec<(ServiceName, Vec<Arc<InstanceInfo>>)>);
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// Pause between lookups after a failure, doubling up to [`MAX_RETRY_PAUSE`].
const MIN_RETRY_PAUSE: Duration = Duration::from_millis(100);
const MAX_RETRY_PAUSE: Duration = Duration::from_secs(5);

/// What this peer registers, under which key.
#[derive(Debug, Clone)]
pub(crate) struct Registration {
    pub(crate) service: ServiceName,
    pub(crate) instance: InstanceId,
    pub(crate) body: directory_api::Registration,
}

impl Registration {
    /// The registration of instance `instance` of `cfg.service`, reachable at `advertised`
    /// and pinned to `fingerprint`; an invalid tag, meta pair or TTL is refused here.
    pub(crate) fn new(
        cfg: &PeerConfig,
        instance: &str,
        advertised: SocketAddr,
        fingerprint: Fingerprint,
    ) -> Result<Self, directory_api::ValidationError> {
        Ok(Self {
            service: ServiceName::new(&cfg.service)?,
            instance: InstanceId::new(instance)?,
            body: directory_api::Registration {
                address: Address::new(&advertised.to_string())?,
                tags: Tags::new(cfg.tags.clone())?,
                meta: Meta::new(cfg.meta.clone())?,
                ttl: Ttl::from_duration(cfg.ttl)?,
                fingerprint: Some(fingerprint),
                subscriptions: subscriptions(&cfg.subscriptions)?,
            },
        })
    }
}

/// The validated subscriptions of `(pattern, group)` pairs.
fn subscriptions(pairs: &[(String, Option<String>)]) -> Result<Subscriptions, ValidationError> {
    let list = pairs
        .iter()
        .map(|(pattern, group)| {
            Ok(Subscription {
                pattern: TopicPattern::new(pattern)?,
                group: group.as_deref().map(ServiceName::new).transpose()?,
            })
        })
        .collect::<Result<Vec<_>, ValidationError>>()?;
    Subscriptions::new(list)
}

/// What the directory says about one destination key (see [`Destination`]).
#[derive(Debug, Clone, Default)]
struct View {
    /// Instances of the service, or of the group subscribed to the topic.
    instances: Vec<Arc<InstanceInfo>>,
    /// Topic keys only: the groups subscribed to the topic.
    groups: Vec<ServiceName>,
    index: u64,
}

impl View {
    fn same_content(&self, other: &View) -> bool {
        self.instances == other.instances && self.groups == other.groups
    }
}

/// Timing knobs of the client.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Timing {
    pub(crate) ttl: Duration,
    pub(crate) wait: Duration,
    pub(crate) timeout: Duration,
}

/// How to reach the directory: URLs (failover order), optional bearer token, and either a
/// ready rustls configuration or extra CA certificates (PEM) for `https`.
#[derive(Clone, Default)]
pub(crate) struct Access {
    pub(crate) urls: Vec<String>,
    pub(crate) token: Option<String>,
    pub(crate) tls: Option<rustls::ClientConfig>,
    pub(crate) ca_pems: Vec<Vec<u8>>,
}

/// The directory client shared by the peer's tasks.
pub(crate) struct Discovery {
    client: Client,
    timing: Timing,
    views: DashMap<String, View>,
    watching: DashMap<String, ()>,
    available: AtomicBool,
    tracker: TaskTracker,
    cancel: CancellationToken,
}

impl std::fmt::Debug for Discovery {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Discovery")
            .field("client", &self.client)
            .finish_non_exhaustive()
    }
}

impl Discovery {
    pub(crate) fn new(
        access: Access,
        timing: Timing,
        cancel: CancellationToken,
    ) -> Result<Self, DiscoveryError> {
        if access.urls.is_empty() {
            return Err(DiscoveryError::NoDirectory);
        }
        let mut builder = Client::builder(access.urls)
            .timeout(timing.timeout)
            .connect_timeout(timing.timeout);
        if let Some(token) = access.token {
            builder = builder.bearer_token(token);
        }
        for pem in access.ca_pems {
            builder = builder.ca_pem(pem);
        }
        if let Some(tls) = access.tls {
            builder = builder.tls_config(tls);
        }
        let client = builder
            .build()
            .map_err(|e| DiscoveryError::Client(e.to_string()))?;
        Ok(Self {
            client,
            timing,
            views: DashMap::new(),
            watching: DashMap::new(),
            available: AtomicBool::new(true),
            tracker: TaskTracker::new(),
            cancel,
        })
    }

    fn set_available(&self, up: bool) {
        if self.available.swap(up, Ordering::Relaxed) != up {
            if up {
                tracing::info!("directory reachable again");
            } else {
                tracing::warn!("no directory answers; working from the last known view");
            }
        }
        metrics::gauge!(crate::metrics::DIRECTORY_AVAILABLE).set(if up { 1.0 } else { 0.0 });
    }

    /// Whether the last directory request got an answer.
    pub(crate) fn is_available(&self) -> bool {
        self.available.load(Ordering::Relaxed)
    }

    /// Notes whether a directory answered and turns the client's error into ours.
    fn observe<T>(&self, result: Result<T, ClientError>) -> Result<T, DiscoveryError> {
        match result {
            Ok(value) => {
                self.set_available(true);
                Ok(value)
            }
            Err(e) => {
                self.set_available(!e.is_unavailable());
                Err(discovery_error(e))
            }
        }
    }

    /// Registers (or re-registers) this peer.
    pub(crate) async fn register(&self, reg: &Registration) -> Result<(), DiscoveryError> {
        let result = self
            .client
            .register(&reg.service, &reg.instance, &reg.body)
            .await;
        self.observe(result).map(|_| ())
    }

    /// Renews the lease; re-registers when the directory no longer knows us.
    pub(crate) async fn heartbeat(&self, reg: &Registration) -> Result<(), DiscoveryError> {
        let result = self.client.heartbeat(&reg.service, &reg.instance).await;
        match result {
            Err(e) if e.status() == Some(404) => {
                self.set_available(true);
                tracing::info!("lease unknown to the directory; registering again");
                metrics::counter!(crate::metrics::REREGISTRATIONS_TOTAL).increment(1);
                self.register(reg).await
            }
            other => self.observe(other).map(|_| ()),
        }
    }

    /// Removes this peer's registration (idempotent).
    pub(crate) async fn deregister(&self, reg: &Registration) -> Result<(), DiscoveryError> {
        let result = self.client.deregister(&reg.service, &reg.instance).await;
        self.observe(result)
    }

    /// Starts the lease renewal task (every third of the TTL).
    pub(crate) fn spawn_lease(self: &Arc<Self>, reg: Registration) {
        let me = self.clone();
        let period = (self.timing.ttl / 3).max(Duration::from_millis(100));
        self.tracker.spawn(async move {
            let mut tick = tokio::time::interval(period);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            tick.tick().await;
            loop {
                tokio::select! {
                    _ = me.cancel.cancelled() => return,
                    _ = tick.tick() => {}
                }
                if let Err(e) = me.heartbeat(&reg).await {
                    tracing::warn!("lease renewal failed: {e}");
                }
            }
        });
    }

    /// One lookup of destination `key`; with `index`, a blocking query that returns when
    /// the view changes past it.
    async fn lookup(&self, key: &str, index: Option<u64>) -> Result<View, DiscoveryError> {
        let destination =
            Destination::parse(key).map_err(|e| DiscoveryError::Client(e.to_string()))?;
        match destination {
            Destination::Service(service) => self.lookup_service(&service, index).await,
            Destination::Group { topic, group } => {
                let mut view = self.lookup_topic(&topic, index).await?;
                view.1.retain(|(g, _)| *g == group);
                let instances = view.1.pop().map(|(_, list)| list).unwrap_or_default();
                Ok(View {
                    instances,
                    groups: Vec::new(),
                    index: view.0,
                })
            }
            Destination::Topic(topic) => {
                let (index, groups) = self.lookup_topic(&topic, index).await?;
                Ok(View {
                    instances: Vec::new(),
                    groups: groups.into_iter().map(|(g, _)| g).collect(),
                    index,
                })
            }
        }
    }

    /// The groups subscribed to `topic` with their instances, and the topic index.
    async fn lookup_topic(
        &self,
        topic: &Topic,
        index: Option<u64>,
    ) -> Result<GroupsView, DiscoveryError> {
        let result = match index {
            Some(i) => {
                let wait = self.timing.wait;
                self.client.topic_subscribers_after(topic, i, wait).await
            }
            None => self.client.topic_subscribers(topic).await,
        };
        let view = self.observe(result)?;
        let groups = view
            .groups
            .into_iter()
            .map(|g| {
                (
                    g.group,
                    g.instances.iter().filter_map(|r| to_instance(r)).collect(),
                )
            })
            .collect();
        Ok((view.index, groups))
    }

    /// Groups subscribed to `topic`: the cached view (kept fresh by a blocking watch once
    /// asked for), or one lookup when there is none yet.
    pub(crate) async fn topic_groups(
        self: &Arc<Self>,
        topic: &Topic,
        inputs: &mpsc::UnboundedSender<Input>,
    ) -> Result<Vec<ServiceName>, DiscoveryError> {
        let key = topic_key(topic);
        if let Some(v) = self.views.get(&key) {
            return Ok(v.groups.clone());
        }
        let view = self.lookup(&key, None).await?;
        let groups = view.groups.clone();
        self.views.insert(key.clone(), view);
        self.watch(key, inputs.clone());
        Ok(groups)
    }

    async fn lookup_service(
        &self,
        service: &ServiceName,
        index: Option<u64>,
    ) -> Result<View, DiscoveryError> {
        let filter = InstanceFilter::default();
        let result = match index {
            Some(i) => {
                let wait = self.timing.wait;
                self.client.lookup_after(service, &filter, i, wait).await
            }
            None => self.client.lookup(service, &filter).await,
        };
        let view = self.observe(result)?;
        Ok(View {
            instances: view
                .instances
                .iter()
                .filter_map(|r| to_instance(r))
                .collect(),
            groups: Vec::new(),
            index: view.index,
        })
    }

    /// Instances of `service`: the cached view, or one lookup when there is none yet.
    pub(crate) async fn resolve(
        &self,
        service: &str,
    ) -> Result<Vec<Arc<InstanceInfo>>, DiscoveryError> {
        if let Some(v) = self.views.get(service) {
            return Ok(v.instances.clone());
        }
        self.refresh(service).await
    }

    /// A fresh (non-blocking) lookup that also updates the cache.
    pub(crate) async fn refresh(
        &self,
        service: &str,
    ) -> Result<Vec<Arc<InstanceInfo>>, DiscoveryError> {
        let view = self.lookup(service, None).await?;
        let list = view.instances.clone();
        self.views.insert(service.to_owned(), view);
        Ok(list)
    }

    /// Keeps `service`'s view fresh with blocking queries, pushing every change to the driver.
    pub(crate) fn watch(self: &Arc<Self>, service: String, inputs: mpsc::UnboundedSender<Input>) {
        if self.watching.insert(service.clone(), ()).is_some() {
            return;
        }
        let me = self.clone();
        self.tracker.spawn(async move {
            tokio::select! {
                _ = me.cancel.cancelled() => {}
                _ = me.watch_loop(&service, &inputs) => {}
            }
        });
    }

    async fn watch_loop(&self, service: &str, inputs: &mpsc::UnboundedSender<Input>) {
        let mut index: Option<u64> = None;
        let mut known: Option<View> = None;
        // A topic key only keeps the publisher's group list fresh: no messages go to it.
        let feeds_core = !is_topic_key(service);
        let mut pause = MIN_RETRY_PAUSE;
        loop {
            match self.lookup(service, index).await {
                Ok(view) => {
                    pause = MIN_RETRY_PAUSE;
                    // An index that went backwards means another directory node or a restart:
                    // start over from its current state.
                    index = Some(if index.is_some_and(|i| view.index < i) {
                        0
                    } else {
                        view.index
                    });
                    if !known.as_ref().is_some_and(|k| k.same_content(&view)) {
                        known = Some(view.clone());
                        let list = view.instances.clone();
                        self.views.insert(service.to_owned(), view);
                        if !feeds_core {
                            continue;
                        }
                        let update = Input::Instances {
                            service: service.to_owned(),
                            list,
                        };
                        if inputs.send(update).is_err() {
                            return;
                        }
                    }
                }
                Err(e) => {
                    tracing::debug!(%service, "lookup failed, keeping the last view: {e}");
                    tokio::time::sleep(pause).await;
                    pause = (pause * 2).min(MAX_RETRY_PAUSE);
                }
            }
        }
    }

    /// Stops every background task.
    pub(crate) async fn stop(&self) {
        self.cancel.cancel();
        self.tracker.close();
        self.tracker.wait().await;
    }
}

/// The API client's error in the SDK's terms: no usable answer, or a refusal with a code.
fn discovery_error(e: ClientError) -> DiscoveryError {
    match e {
        ClientError::Api {
            url,
            status,
            code,
            message,
        } => DiscoveryError::Rejected {
            url,
            status,
            code: code.to_string(),
            message,
        },
        ClientError::NoUrl => DiscoveryError::NoDirectory,
        other => DiscoveryError::Unavailable {
            last: other.to_string(),
        },
    }
}

/// Turns a record into an instance; records with an unusable address are skipped.
fn to_instance(r: &Record) -> Option<Arc<InstanceInfo>> {
    let Ok(addr) = r.address.as_str().parse::<SocketAddr>() else {
        tracing::warn!(service = %r.service, instance = %r.instance, address = %r.address, "skipping instance with a non-IP address");
        return None;
    };
    let fingerprint = r.fingerprint.map(|f| f.0);
    Some(Arc::new(InstanceInfo::new(
        r.service.as_str(),
        r.instance.as_str(),
        addr,
        fingerprint,
    )))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::SystemTime;

    fn record(address: &str, fingerprint: Option<Fingerprint>) -> Record {
        let mut reg = directory_api::Registration::new(Address::new(address).unwrap());
        reg.fingerprint = fingerprint;
        Record {
            service: "s".parse().unwrap(),
            instance: "i".parse().unwrap(),
            address: reg.address,
            tags: reg.tags,
            meta: reg.meta,
            ttl: reg.ttl,
            fingerprint: reg.fingerprint,
            subscriptions: reg.subscriptions,
            owner: "n".parse().unwrap(),
            index: 1,
            registered_at: SystemTime::UNIX_EPOCH,
            lease_expires_at: SystemTime::UNIX_EPOCH,
        }
    }

    #[test]
    fn records_become_instances_and_bad_addresses_are_skipped() {
        let fp: Fingerprint = "ab".repeat(32).parse().unwrap();
        let inst = to_instance(&record("127.0.0.1:7000", Some(fp))).unwrap();
        assert_eq!(inst.fingerprint, Some(fp.0));
        assert_eq!(inst.addr, "127.0.0.1:7000".parse().unwrap());
        assert!(to_instance(&record("host:7000", None)).is_none());
    }

    #[test]
    fn registration_serializes_to_the_contract_body() {
        let mut cfg = PeerConfig::new("s");
        cfg.tags = vec!["v2".into()];
        cfg.meta = [("zone".to_owned(), "a".to_owned())].into();
        cfg.ttl = Duration::from_secs(10);
        let fp = Fingerprint([0; 32]);
        let reg = Registration::new(&cfg, "i", "127.0.0.1:1".parse().unwrap(), fp).unwrap();
        assert_eq!((reg.service.as_str(), reg.instance.as_str()), ("s", "i"));
        let v = serde_json::to_value(&reg.body).unwrap();
        assert_eq!(
            v,
            serde_json::json!({"address":"127.0.0.1:1","tags":["v2"],"meta":{"zone":"a"},"ttl":"10s","fingerprint":"00".repeat(32)})
        );
        cfg.meta = [("a:b".to_owned(), "c".to_owned())].into();
        let bad = Registration::new(&cfg, "i", "127.0.0.1:1".parse().unwrap(), fp);
        assert!(bad.is_err(), "invalid meta is refused before any request");
    }

    #[test]
    fn only_an_api_refusal_is_rejected_everything_else_is_unavailable() {
        let refused = ClientError::Refused { url: "u".into() };
        assert!(matches!(
            discovery_error(refused),
            DiscoveryError::Unavailable { .. }
        ));
        let api = ClientError::Api {
            url: "u".into(),
            status: 507,
            code: directory_api::ErrorCode::CapacityFull,
            message: "m".into(),
        };
        assert!(matches!(
            discovery_error(api),
            DiscoveryError::Rejected { status: 507, ref code, .. } if code == "capacity_full"
        ));
    }

    #[test]
    fn building_the_client_installs_no_process_wide_provider() {
        let access = Access {
            urls: vec!["http://127.0.0.1:1/".into()],
            token: Some("t".into()),
            ..Access::default()
        };
        let timing = Timing {
            ttl: Duration::from_secs(1),
            wait: Duration::from_secs(1),
            timeout: Duration::from_secs(1),
        };
        let d = Discovery::new(access, timing, CancellationToken::new()).unwrap();
        assert_eq!(d.client.urls().collect::<Vec<_>>(), ["http://127.0.0.1:1/"]);
        assert!(rustls::crypto::CryptoProvider::get_default().is_none());
        let none = Discovery::new(Access::default(), timing, CancellationToken::new());
        assert!(matches!(none, Err(DiscoveryError::NoDirectory)));
    }
}
