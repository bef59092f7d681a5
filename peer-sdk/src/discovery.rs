//! Directory client: registration with the certificate fingerprint, lease renewal,
//! re-registration after a 404, failover between directory URLs, and cached lookups kept
//! fresh with blocking queries. When no directory answers, the last known view stays in
//! use (logged, and `peer_sdk_directory_available` drops to 0).

use crate::driver::Input;
use crate::error::DiscoveryError;
use crate::proto::InstanceInfo;
use crate::tls::Fingerprint;
use dashmap::DashMap;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// Pause between lookups after a failure, doubling up to [`MAX_RETRY_PAUSE`].
const MIN_RETRY_PAUSE: Duration = Duration::from_millis(100);
const MAX_RETRY_PAUSE: Duration = Duration::from_secs(5);

/// What this peer registers.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct Registration {
    #[serde(skip)]
    pub(crate) service: String,
    #[serde(skip)]
    pub(crate) instance: String,
    pub(crate) address: String,
    pub(crate) tags: Vec<String>,
    pub(crate) meta: BTreeMap<String, String>,
    pub(crate) ttl: String,
    pub(crate) fingerprint: String,
}

/// One instance record as the directory returns it (fields we use).
#[derive(Debug, Clone, Deserialize)]
struct Record {
    service: String,
    instance: String,
    address: String,
    #[serde(default)]
    fingerprint: Option<String>,
}

#[derive(Debug, Deserialize)]
struct ServiceView {
    index: u64,
    instances: Vec<Record>,
}

#[derive(Debug, Deserialize)]
struct ErrorBody {
    error: ErrorDetail,
}

#[derive(Debug, Deserialize)]
struct ErrorDetail {
    code: String,
    message: String,
}

#[derive(Debug, Clone, Default)]
struct View {
    instances: Vec<Arc<InstanceInfo>>,
    index: u64,
}

/// Timing knobs of the client.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Timing {
    pub(crate) ttl: Duration,
    pub(crate) wait: Duration,
    pub(crate) timeout: Duration,
}

/// The directory client shared by the peer's tasks.
pub(crate) struct Discovery {
    client: reqwest::Client,
    urls: Vec<String>,
    preferred: AtomicUsize,
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
            .field("urls", &self.urls)
            .finish_non_exhaustive()
    }
}

fn default_tls() -> Result<rustls::ClientConfig, DiscoveryError> {
    // Plain-http directories need no roots; https ones need `PeerBuilder::directory_tls`.
    let builder = rustls::ClientConfig::builder_with_provider(crate::tls::provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| DiscoveryError::Client(e.to_string()))?;
    Ok(builder
        .with_root_certificates(rustls::RootCertStore::empty())
        .with_no_client_auth())
}

impl Discovery {
    pub(crate) fn new(
        urls: Vec<String>,
        timing: Timing,
        tls: Option<rustls::ClientConfig>,
        cancel: CancellationToken,
    ) -> Result<Self, DiscoveryError> {
        if urls.is_empty() {
            return Err(DiscoveryError::NoDirectory);
        }
        let client = reqwest::Client::builder()
            .tls_backend_preconfigured(match tls {
                Some(t) => t,
                None => default_tls()?,
            })
            .connect_timeout(timing.timeout)
            .build()
            .map_err(|e| DiscoveryError::Client(e.to_string()))?;
        let urls = urls
            .into_iter()
            .map(|u| u.trim_end_matches('/').to_owned())
            .collect();
        Ok(Self {
            client,
            urls,
            preferred: AtomicUsize::new(0),
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
        metrics::gauge!("peer_sdk_directory_available").set(if up { 1.0 } else { 0.0 });
    }

    /// Whether the last directory request got an answer.
    pub(crate) fn is_available(&self) -> bool {
        self.available.load(Ordering::Relaxed)
    }

    /// Sends one request with failover: connection errors and 5xx move to the next URL.
    async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<&Registration>,
        timeout: Duration,
    ) -> Result<reqwest::Response, DiscoveryError> {
        let n = self.urls.len();
        let start = self.preferred.load(Ordering::Relaxed);
        let mut last = String::new();
        for i in 0..n {
            let idx = (start + i) % n;
            let url = format!("{}{path}", self.urls[idx]);
            let mut req = self.client.request(method.clone(), &url).timeout(timeout);
            if let Some(body) = body {
                req = req.json(body);
            }
            match req.send().await {
                Ok(resp) if resp.status().is_server_error() => {
                    last = format!("{url}: {}", resp.status())
                }
                Ok(resp) => {
                    self.preferred.store(idx, Ordering::Relaxed);
                    self.set_available(true);
                    return Ok(resp);
                }
                Err(e) => last = format!("{url}: {e}"),
            }
        }
        self.set_available(false);
        Err(DiscoveryError::Unavailable { last })
    }

    async fn rejected(url: String, resp: reqwest::Response) -> DiscoveryError {
        let status = resp.status().as_u16();
        let (code, message) = match resp.json::<ErrorBody>().await {
            Ok(b) => (b.error.code, b.error.message),
            Err(_) => ("unknown".into(), "unparseable error body".into()),
        };
        DiscoveryError::Rejected {
            url,
            status,
            code,
            message,
        }
    }

    fn instance_path(reg: &Registration) -> String {
        format!("/v1/services/{}/instances/{}", reg.service, reg.instance)
    }

    /// Registers (or re-registers) this peer.
    pub(crate) async fn register(&self, reg: &Registration) -> Result<(), DiscoveryError> {
        let path = Self::instance_path(reg);
        let resp = self
            .call(reqwest::Method::PUT, &path, Some(reg), self.timing.timeout)
            .await?;
        if resp.status().is_success() {
            return Ok(());
        }
        Err(Self::rejected(path, resp).await)
    }

    /// Renews the lease; re-registers when the directory no longer knows us.
    pub(crate) async fn heartbeat(&self, reg: &Registration) -> Result<(), DiscoveryError> {
        let path = format!("{}/heartbeat", Self::instance_path(reg));
        let resp = self
            .call(reqwest::Method::POST, &path, None, self.timing.timeout)
            .await?;
        match resp.status().as_u16() {
            200..=299 => Ok(()),
            404 => {
                tracing::info!("lease unknown to the directory; registering again");
                metrics::counter!("peer_sdk_reregistrations_total").increment(1);
                self.register(reg).await
            }
            _ => Err(Self::rejected(path, resp).await),
        }
    }

    /// Removes this peer's registration (idempotent).
    pub(crate) async fn deregister(&self, reg: &Registration) -> Result<(), DiscoveryError> {
        let path = Self::instance_path(reg);
        let resp = self
            .call(reqwest::Method::DELETE, &path, None, self.timing.timeout)
            .await?;
        if resp.status().is_success() {
            return Ok(());
        }
        Err(Self::rejected(path, resp).await)
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

    /// One lookup; with `index`, a blocking query that returns when the view changes past it.
    async fn lookup(&self, service: &str, index: Option<u64>) -> Result<View, DiscoveryError> {
        let (path, timeout) = match index {
            Some(i) => {
                let wait = humantime::format_duration(self.timing.wait);
                (
                    format!("/v1/services/{service}?index={i}&wait={wait}"),
                    self.timing.wait + self.timing.timeout,
                )
            }
            None => (format!("/v1/services/{service}"), self.timing.timeout),
        };
        let resp = self
            .call(reqwest::Method::GET, &path, None, timeout)
            .await?;
        if !resp.status().is_success() {
            return Err(Self::rejected(path, resp).await);
        }
        let view: ServiceView = resp.json().await.map_err(|e| DiscoveryError::Unavailable {
            last: e.to_string(),
        })?;
        Ok(View {
            instances: view.instances.into_iter().filter_map(to_instance).collect(),
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
        let mut known: Option<Vec<Arc<InstanceInfo>>> = None;
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
                    if known.as_ref() != Some(&view.instances) {
                        known = Some(view.instances.clone());
                        let list = view.instances.clone();
                        self.views.insert(service.to_owned(), view);
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

/// Turns a record into an instance; records with an unusable address are skipped.
fn to_instance(r: Record) -> Option<Arc<InstanceInfo>> {
    let addr: SocketAddr = match r.address.parse() {
        Ok(a) => a,
        Err(_) => {
            tracing::warn!(service = %r.service, instance = %r.instance, address = %r.address, "skipping instance with a non-IP address");
            return None;
        }
    };
    let fingerprint = r
        .fingerprint
        .as_deref()
        .and_then(|f| f.parse::<Fingerprint>().ok())
        .map(|f| f.0);
    Some(Arc::new(InstanceInfo::new(
        &r.service,
        &r.instance,
        addr,
        fingerprint,
    )))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_become_instances_and_bad_addresses_are_skipped() {
        let fp = "ab".repeat(32);
        let good = Record {
            service: "s".into(),
            instance: "i".into(),
            address: "127.0.0.1:7000".into(),
            fingerprint: Some(fp.clone()),
        };
        let inst = to_instance(good).unwrap();
        assert_eq!(inst.fingerprint, Some(fp.parse::<Fingerprint>().unwrap().0));
        let bad = Record {
            service: "s".into(),
            instance: "i".into(),
            address: "host:7000".into(),
            fingerprint: None,
        };
        assert!(to_instance(bad).is_none());
    }

    #[test]
    fn registration_serializes_to_the_contract_body() {
        let reg = Registration {
            service: "s".into(),
            instance: "i".into(),
            address: "127.0.0.1:1".into(),
            tags: vec!["v2".into()],
            meta: [("zone".to_owned(), "a".to_owned())].into(),
            ttl: "10s".into(),
            fingerprint: "00".repeat(32),
        };
        let v = serde_json::to_value(&reg).unwrap();
        assert_eq!(
            v,
            serde_json::json!({"address":"127.0.0.1:1","tags":["v2"],"meta":{"zone":"a"},"ttl":"10s","fingerprint":"00".repeat(32)})
        );
    }

    #[test]
    fn building_the_client_installs_no_process_wide_provider() {
        let d = Discovery::new(
            vec!["http://127.0.0.1:1/".into()],
            Timing {
                ttl: Duration::from_secs(1),
                wait: Duration::from_secs(1),
                timeout: Duration::from_secs(1),
            },
            None,
            CancellationToken::new(),
        )
        .unwrap();
        assert_eq!(d.urls, vec!["http://127.0.0.1:1".to_owned()]);
        assert!(rustls::crypto::CryptoProvider::get_default().is_none());
    }
}
