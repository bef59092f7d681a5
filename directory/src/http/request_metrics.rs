//! Per-request metrics with handles resolved once per (route, method, status) cell.
//!
//! Looking a metric up by name and labels on every request (the `metrics` macros) cost
//! several microseconds per request in the load benchmark; here each cell's handle is
//! registered on first use and reused, so a request costs two atomic updates.

use std::sync::OnceLock;
use std::time::Duration;

use axum::http::{Method, StatusCode};
use metrics::{Counter, Histogram};

/// Route templates, as static labels (labels never carry user input).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Route {
    Services,
    Service,
    Instance,
    Heartbeat,
    Watch,
    ClusterMembers,
    Health,
    Metrics,
    OpenApi,
    PrometheusSd,
    Topics,
    TopicSubscribers,
    Other,
}

impl Route {
    const ALL: [Route; 13] = [
        Route::Services,
        Route::Service,
        Route::Instance,
        Route::Heartbeat,
        Route::Watch,
        Route::ClusterMembers,
        Route::Health,
        Route::Metrics,
        Route::OpenApi,
        Route::PrometheusSd,
        Route::Topics,
        Route::TopicSubscribers,
        Route::Other,
    ];

    /// The route of a matched path template.
    pub fn from_template(template: &str) -> Self {
        Self::ALL
            .into_iter()
            .find(|r| r.label() == template)
            .unwrap_or(Route::Other)
    }

    fn label(self) -> &'static str {
        match self {
            Route::Services => "/v1/services",
            Route::Service => "/v1/services/{service}",
            Route::Instance => "/v1/services/{service}/instances/{instance}",
            Route::Heartbeat => "/v1/services/{service}/instances/{instance}/heartbeat",
            Route::Watch => "/v1/watch",
            Route::ClusterMembers => "/v1/cluster/members",
            Route::Health => "/v1/health",
            Route::Metrics => "/metrics",
            Route::OpenApi => "/openapi.json",
            Route::PrometheusSd => "/v1/sd/prometheus",
            Route::Topics => "/v1/topics",
            Route::TopicSubscribers => "/v1/topics/{topic}/subscribers",
            Route::Other => "other",
        }
    }
}

/// Request methods, as static labels.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MethodLabel {
    Get,
    Put,
    Post,
    Delete,
    Other,
}

impl MethodLabel {
    const COUNT: usize = 5;

    /// The label of `method`.
    pub fn of(method: &Method) -> Self {
        match *method {
            Method::GET => Self::Get,
            Method::PUT => Self::Put,
            Method::POST => Self::Post,
            Method::DELETE => Self::Delete,
            _ => Self::Other,
        }
    }

    fn label(self) -> &'static str {
        match self {
            Self::Get => "GET",
            Self::Put => "PUT",
            Self::Post => "POST",
            Self::Delete => "DELETE",
            Self::Other => "other",
        }
    }
}

/// Response statuses this API produces, as static labels; others fall into classes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StatusLabel(usize);

impl StatusLabel {
    const LABELS: [&'static str; 11] = [
        "200", "204", "400", "404", "405", "413", "500", "507", "2xx", "4xx", "5xx",
    ];

    /// The label of `status`.
    pub fn of(status: StatusCode) -> Self {
        let exact = Self::LABELS[..8].iter().position(|l| *l == status.as_str());
        Self(exact.unwrap_or(match status.as_u16() {
            s if s < 300 => 8,
            s if s < 500 => 9,
            _ => 10,
        }))
    }
}

/// Lazily registered handles of `directory_http_request_duration_seconds{route,method}` and
/// `directory_http_requests_total{route,method,status}`.
pub struct RequestMetrics {
    durations: Box<[OnceLock<Histogram>]>,
    requests: Box<[OnceLock<Counter>]>,
}

impl Default for RequestMetrics {
    fn default() -> Self {
        let cells = Route::ALL.len() * MethodLabel::COUNT;
        Self {
            durations: (0..cells).map(|_| OnceLock::new()).collect(),
            requests: (0..cells * StatusLabel::LABELS.len())
                .map(|_| OnceLock::new())
                .collect(),
        }
    }
}

impl RequestMetrics {
    /// Records one request.
    pub fn record(
        &self,
        route: Route,
        method: MethodLabel,
        status: StatusLabel,
        elapsed: Duration,
    ) {
        let cell = route as usize * MethodLabel::COUNT + method as usize;
        let (route, method) = (route.label(), method.label());
        // Indices are in range by construction: `cell < ALL.len() * COUNT` and
        // `status.0 < LABELS.len()`, matching the sizes allocated in `default()`.
        if let Some(slot) = self.durations.get(cell) {
            slot.get_or_init(|| {
                metrics::histogram!("directory_http_request_duration_seconds", "route" => route, "method" => method)
            })
            .record(elapsed);
        }
        let status_label = StatusLabel::LABELS[status.0];
        if let Some(slot) = self
            .requests
            .get(cell * StatusLabel::LABELS.len() + status.0)
        {
            slot.get_or_init(|| {
                metrics::counter!("directory_http_requests_total", "route" => route, "method" => method, "status" => status_label)
            })
            .increment(1);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_cover_the_api() {
        assert_eq!(
            Route::from_template("/v1/services/{service}"),
            Route::Service
        );
        assert_eq!(Route::from_template("/nope"), Route::Other);
        assert_eq!(
            StatusLabel::LABELS[StatusLabel::of(StatusCode::INSUFFICIENT_STORAGE).0],
            "507"
        );
        assert_eq!(
            StatusLabel::LABELS[StatusLabel::of(StatusCode::CREATED).0],
            "2xx"
        );
        assert_eq!(
            StatusLabel::LABELS[StatusLabel::of(StatusCode::CONFLICT).0],
            "4xx"
        );
        assert_eq!(
            StatusLabel::LABELS[StatusLabel::of(StatusCode::BAD_GATEWAY).0],
            "5xx"
        );
        assert_eq!(MethodLabel::of(&Method::PATCH), MethodLabel::Other);
    }
}
