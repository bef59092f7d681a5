//! [`Client`]: the typed async client of the directory's HTTP API, with failover across
//! node URLs.
//!
//! Layout: `builder` — [`ClientBuilder`] (URLs, token, CAs, timeouts, TLS);
//! `error` — [`ClientError`]; `watch` — [`WatchStream`] (SSE parsing into
//! [`WatchEvent`](crate::WatchEvent)s); this file — the calls and the failover loop.

mod builder;
mod error;
mod watch;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use reqwest::Method;
use reqwest::header::{CONTENT_TYPE, HeaderValue};
use serde::de::DeserializeOwned;

pub use builder::{ClientBuilder, DEFAULT_CONNECT_TIMEOUT, DEFAULT_TIMEOUT};
pub use error::ClientError;
pub use watch::{RECONNECT_ATTEMPTS, WatchStream};

use crate::{
    ErrorBody, Health, InstanceId, MembersResponse, Record, Registration, ServiceName,
    ServiceResponse, ServicesResponse, Topic, TopicSubscribers, TopicsResponse,
};

/// A client of one directory cluster. Cheap to clone (one `Arc`); share it.
///
/// Every call tries the node that answered last, then the others in order: a transport
/// failure or a 5xx moves on to the next URL, any other answer is final. The error of the
/// last node tried is returned when none answers.
#[derive(Clone)]
pub struct Client(Arc<Inner>);

struct Inner {
    http: reqwest::Client,
    urls: Vec<reqwest::Url>,
    /// Index into `urls` of the node that answered last.
    preferred: AtomicUsize,
    token: Option<String>,
    timeout: Duration,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client")
            .field("urls", &self.urls().collect::<Vec<_>>())
            .finish_non_exhaustive()
    }
}

/// Lookup filters: every tag must be present and every meta pair must match.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct InstanceFilter {
    /// Tags that must all be present (`?tag=`).
    pub tags: Vec<String>,
    /// `(key, value)` pairs that must all match (`?meta=key:value`).
    pub meta: Vec<(String, String)>,
}

impl InstanceFilter {
    /// Also require `tag`.
    #[must_use]
    pub fn tag(mut self, tag: impl Into<String>) -> Self {
        self.tags.push(tag.into());
        self
    }

    /// Also require meta `key` to equal `value`.
    #[must_use]
    pub fn meta(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.meta.push((key.into(), value.into()));
        self
    }

    fn query(&self) -> impl Iterator<Item = (&'static str, String)> + '_ {
        let tags = self.tags.iter().map(|t| ("tag", t.clone()));
        let meta = self.meta.iter().map(|(k, v)| ("meta", format!("{k}:{v}")));
        tags.chain(meta)
    }
}

/// One request, replayable on each node.
struct Call {
    method: Method,
    path: String,
    query: Vec<(&'static str, String)>,
    body: Option<Vec<u8>>,
    /// `None`: no overall limit (watch streams).
    timeout: Option<Duration>,
    /// Sent as `Last-Event-ID` (a watch resuming after this change index).
    last_event_id: Option<u64>,
}

impl Call {
    fn new(method: Method, path: String) -> Self {
        Self {
            method,
            path,
            query: Vec::new(),
            body: None,
            timeout: None,
            last_event_id: None,
        }
    }
}

impl Client {
    /// A builder for a client of the nodes at `urls` (`http(s)://host:port` or `host:port`).
    pub fn builder<I, S>(urls: I) -> ClientBuilder
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        ClientBuilder::new(urls.into_iter().map(Into::into).collect())
    }

    /// A client of one node with the default options.
    pub fn new(url: &str) -> Result<Self, ClientError> {
        Self::builder([url]).build()
    }

    /// The node URLs, in failover order.
    pub fn urls(&self) -> impl Iterator<Item = &str> {
        self.0.urls.iter().map(reqwest::Url::as_str)
    }

    /// `GET /v1/health`: the node's name and version.
    pub async fn health(&self) -> Result<Health, ClientError> {
        self.json(self.call(Method::GET, "/v1/health".into())).await
    }

    /// `GET /v1/services`: every service with live instances and their counts.
    pub async fn services(&self) -> Result<ServicesResponse, ClientError> {
        self.json(self.call(Method::GET, "/v1/services".into()))
            .await
    }

    /// `GET /v1/cluster/members`: the cluster as the answering node sees it.
    pub async fn members(&self) -> Result<MembersResponse, ClientError> {
        self.json(self.call(Method::GET, "/v1/cluster/members".into()))
            .await
    }

    /// `GET /v1/services/{service}`: the live instances passing `filter` (an unknown service
    /// has none).
    pub async fn lookup(
        &self,
        service: &ServiceName,
        filter: &InstanceFilter,
    ) -> Result<ServiceResponse, ClientError> {
        let mut call = self.call(Method::GET, format!("/v1/services/{service}"));
        call.query.extend(filter.query());
        self.json(call).await
    }

    /// A blocking lookup: answers once the service's index exceeds `index` (see
    /// [`ServiceResponse::index`]) or after `wait` (the node caps it at its maximum, 5 minutes
    /// by default), whichever comes first.
    pub async fn lookup_after(
        &self,
        service: &ServiceName,
        filter: &InstanceFilter,
        index: u64,
        wait: Duration,
    ) -> Result<ServiceResponse, ClientError> {
        let mut call = self.call(Method::GET, format!("/v1/services/{service}"));
        call.query.extend(filter.query());
        push_blocking(&mut call, index, wait, self.0.timeout);
        self.json(call).await
    }

    /// `GET /v1/topics`: every subscribed topic pattern with its groups.
    pub async fn topics(&self) -> Result<TopicsResponse, ClientError> {
        self.json(self.call(Method::GET, "/v1/topics".into())).await
    }

    /// `GET /v1/topics/{topic}/subscribers`: the groups a message published on `topic` goes
    /// to, each with its live subscribed instances.
    pub async fn topic_subscribers(&self, topic: &Topic) -> Result<TopicSubscribers, ClientError> {
        self.json(self.call(Method::GET, topic_path(topic))).await
    }

    /// [`Self::topic_subscribers`] as a blocking query: answers when a subscription changed
    /// after `index`, or after `wait` (capped by the node) with the unchanged view.
    pub async fn topic_subscribers_after(
        &self,
        topic: &Topic,
        index: u64,
        wait: Duration,
    ) -> Result<TopicSubscribers, ClientError> {
        let mut call = self.call(Method::GET, topic_path(topic));
        push_blocking(&mut call, index, wait, self.0.timeout);
        self.json(call).await
    }

    /// `GET /v1/services/{service}/instances/{instance}`: one instance (an
    /// `instance_not_found` [`ClientError::Api`] if it is not registered).
    pub async fn instance(
        &self,
        service: &ServiceName,
        instance: &InstanceId,
    ) -> Result<Record, ClientError> {
        self.json(self.call(Method::GET, instance_path(service, instance)))
            .await
    }

    /// `PUT /v1/services/{service}/instances/{instance}`: registers (or replaces) an
    /// instance; it expires after its TTL unless [`heartbeat`](Self::heartbeat) renews it.
    pub async fn register(
        &self,
        service: &ServiceName,
        instance: &InstanceId,
        registration: &Registration,
    ) -> Result<Record, ClientError> {
        let mut call = self.call(Method::PUT, instance_path(service, instance));
        // Cannot fail: every field serializes to a string, a list or a string-keyed map.
        call.body = Some(serde_json::to_vec(registration).unwrap_or_default());
        self.json(call).await
    }

    /// `POST .../heartbeat`: renews the lease. An `instance_not_found` API error means the
    /// lease already ran out: register again.
    pub async fn heartbeat(
        &self,
        service: &ServiceName,
        instance: &InstanceId,
    ) -> Result<Record, ClientError> {
        let path = format!("{}/heartbeat", instance_path(service, instance));
        self.json(self.call(Method::POST, path)).await
    }

    /// `DELETE`: removes an instance (succeeds if it is already gone).
    pub async fn deregister(
        &self,
        service: &ServiceName,
        instance: &InstanceId,
    ) -> Result<(), ClientError> {
        let call = self.call(Method::DELETE, instance_path(service, instance));
        let (url, response) = self.send(&call).await?;
        success(&url, response).await.map(|_| ())
    }

    /// `GET /v1/watch`: a stream of changes (of `service` only, if given). When the
    /// connection is lost or the node closes the stream, it reconnects (failing over like
    /// every call) with `Last-Event-ID`, so the node replays the changes in between; when
    /// the node cannot, the stream yields [`WatchEvent::Reset`](crate::WatchEvent::Reset)
    /// (re-read, then carry on). After [`RECONNECT_ATTEMPTS`] failed reconnections in a row,
    /// or a refusal (4xx), it yields [`ClientError::WatchBroken`] and ends. Change indexes are
    /// per node: a resume answered by another node than the one that streamed may replay
    /// from that node's history instead.
    pub async fn watch(&self, service: Option<&ServiceName>) -> Result<WatchStream, ClientError> {
        self.watch_after(service, None).await
    }

    /// [`Self::watch`] resuming after change index `after` (`?index=`): first the changes
    /// since then (or a [`WatchEvent::Reset`](crate::WatchEvent::Reset) when the node's
    /// history no longer reaches back), then live ones.
    pub async fn watch_after(
        &self,
        service: Option<&ServiceName>,
        after: Option<u64>,
    ) -> Result<WatchStream, ClientError> {
        let mut call = Call::new(Method::GET, "/v1/watch".into());
        if let Some(service) = service {
            call.query.push(("service", service.to_string()));
        }
        if let Some(after) = after {
            call.query.push(("index", after.to_string()));
        }
        let (url, response) = self.open_watch(&call).await?;
        Ok(WatchStream::new(self.clone(), call, url, response))
    }

    /// Opens (or reopens) a watch stream.
    async fn open_watch(&self, call: &Call) -> Result<(String, reqwest::Response), ClientError> {
        let (url, response) = self.send(call).await?;
        Ok((url.clone(), success(&url, response).await?))
    }

    fn call(&self, method: Method, path: String) -> Call {
        let mut call = Call::new(method, path);
        call.timeout = Some(self.0.timeout);
        call
    }

    async fn json<T: DeserializeOwned>(&self, call: Call) -> Result<T, ClientError> {
        let (url, response) = self.send(&call).await?;
        let response = success(&url, response).await?;
        let (status, content_type) = (response.status().as_u16(), content_type(&response));
        let body = body(&url, response).await?;
        serde_json::from_slice(&body)
            .map_err(|_| ClientError::not_a_directory(&url, status, content_type.as_deref(), &body))
    }

    /// Sends `call` to the preferred node, then to the others on a transport failure or 5xx.
    async fn send(&self, call: &Call) -> Result<(String, reqwest::Response), ClientError> {
        let urls = &self.0.urls;
        let start = self.0.preferred.load(Ordering::Relaxed);
        let mut last = ClientError::NoUrl;
        for i in 0..urls.len() {
            let idx = (start + i) % urls.len();
            let url = target(&urls[idx], call);
            match self.request(&url, call).send().await {
                Ok(response) if response.status().is_server_error() => {
                    last = refusal(url.as_str(), response).await;
                }
                Ok(response) => {
                    self.0.preferred.store(idx, Ordering::Relaxed);
                    return Ok((url.to_string(), response));
                }
                Err(e) => last = ClientError::transport(url.as_str(), &e),
            }
        }
        Err(last)
    }

    fn request(&self, url: &reqwest::Url, call: &Call) -> reqwest::RequestBuilder {
        let mut request = self.0.http.request(call.method.clone(), url.clone());
        if let Some(timeout) = call.timeout {
            request = request.timeout(timeout);
        }
        if let Some(token) = &self.0.token {
            request = request.bearer_auth(token);
        }
        if let Some(id) = call.last_event_id {
            request = request.header("last-event-id", id.to_string());
        }
        if let Some(body) = &call.body {
            request = request
                .header(CONTENT_TYPE, HeaderValue::from_static("application/json"))
                .body(body.clone());
        }
        request
    }
}

fn topic_path(topic: &Topic) -> String {
    // Validated topics are `[a-z0-9_.-]`: nothing to escape.
    format!("/v1/topics/{topic}/subscribers")
}

/// Makes `call` a blocking query after `index` waiting at most `wait`, its timeout the
/// client's plus the wait.
fn push_blocking(call: &mut Call, index: u64, wait: Duration, timeout: Duration) {
    call.query.push(("index", index.to_string()));
    // The node takes a whole number of ms, s, m or h.
    call.query.push((
        "wait",
        format!("{}ms", wait.as_millis().min(999_999_999_999)),
    ));
    call.timeout = Some(timeout + wait);
}

fn instance_path(service: &ServiceName, instance: &InstanceId) -> String {
    // Validated names are `[a-z0-9._-]`: nothing to escape.
    format!("/v1/services/{service}/instances/{instance}")
}

/// `base` + the call's path and query.
fn target(base: &reqwest::Url, call: &Call) -> reqwest::Url {
    let mut url = base.clone();
    let path = format!("{}{}", base.path().trim_end_matches('/'), call.path);
    url.set_path(&path);
    if !call.query.is_empty() {
        url.query_pairs_mut().extend_pairs(&call.query);
    }
    url
}

/// The response if it is a success, else the error its body describes.
async fn success(url: &str, response: reqwest::Response) -> Result<reqwest::Response, ClientError> {
    if response.status().is_success() {
        Ok(response)
    } else {
        Err(refusal(url, response).await)
    }
}

/// The error a non-success answer stands for: the API's error body, or proof that something
/// other than a directory node answered.
async fn refusal(url: &str, response: reqwest::Response) -> ClientError {
    let status = response.status().as_u16();
    let content_type = content_type(&response);
    let body = match body(url, response).await {
        Ok(body) => body,
        Err(e) => return e,
    };
    match serde_json::from_slice::<ErrorBody>(&body) {
        Ok(e) => ClientError::Api {
            url: url.to_owned(),
            status,
            code: e.error.code,
            message: e.error.message,
        },
        Err(_) => ClientError::not_a_directory(url, status, content_type.as_deref(), &body),
    }
}

fn content_type(response: &reqwest::Response) -> Option<String> {
    let value = response.headers().get(CONTENT_TYPE)?;
    value.to_str().ok().map(str::to_owned)
}

async fn body(url: &str, response: reqwest::Response) -> Result<bytes::Bytes, ClientError> {
    response
        .bytes()
        .await
        .map_err(|e| ClientError::transport(url, &e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn filters_and_blocking_parameters_become_the_query_string() {
        let base = reqwest::Url::parse("http://h:1/").unwrap();
        let mut call = Call::new(Method::GET, "/v1/services/orders".into());
        let filter = InstanceFilter::default().tag("a b").meta("zone", "eu:1");
        call.query.extend(filter.query());
        call.query.push(("index", "7".into()));
        assert_eq!(
            target(&base, &call).as_str(),
            "http://h:1/v1/services/orders?tag=a+b&meta=zone%3Aeu%3A1&index=7"
        );
        let prefixed = reqwest::Url::parse("https://h/dir").unwrap();
        assert_eq!(
            target(&prefixed, &Call::new(Method::GET, "/v1/health".into())).as_str(),
            "https://h/dir/v1/health"
        );
    }
}
