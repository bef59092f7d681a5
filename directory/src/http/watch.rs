//! `GET /v1/watch`: a Server-Sent Events stream of change events.

use std::convert::Infallible;

use axum::extract::{RawQuery, State};
use axum::response::sse::{Event, KeepAlive, Sse};
use futures_util::{Stream, StreamExt};
use tokio_stream::wrappers::BroadcastStream;
use tokio_stream::wrappers::errors::BroadcastStreamRecvError;

use directory_api::{ErrorBody, LAGGED_EVENT, Lagged};

use super::AppState;
use super::error::ApiError;
use super::query::WatchQuery;
use crate::acl::Access;
use crate::registry::{ChangeEvent, ServiceName};

/// Stream change events (`registered`, `updated`, `expired`, `deregistered`).
#[utoipa::path(
    get,
    path = "/v1/watch",
    params(("service" = Option<String>, Query, description = "only events of this service")),
    responses(
        (status = 200, description = "text/event-stream; event name = change type, data = ChangeEvent JSON, id = change index. \
          A `lagged` event with data {\"missed\":N} means events were dropped for a slow reader: resynchronise with a lookup.",
         body = ChangeEvent, content_type = "text/event-stream"),
        (status = 400, description = "invalid service name or query", body = ErrorBody),
        (status = 401, description = "unauthorized: no token where one is needed, or an unknown token", body = ErrorBody),
        (status = 403, description = "forbidden: the token may not read this service (or, unfiltered, any service)", body = ErrorBody),
    ),
    tag = "watch"
)]
pub async fn watch(
    State(state): State<AppState>,
    access: Access,
    RawQuery(raw): RawQuery,
) -> Result<Sse<impl Stream<Item = Result<Event, Infallible>>>, ApiError> {
    let query = WatchQuery::parse(raw.as_deref())?;
    match &query.service {
        Some(service) => access.read(service.as_str())?,
        None => access.list()?,
    }
    let gauge = WatcherGauge::new();
    let events = BroadcastStream::new(state.registry().subscribe())
        .take_until(state.shutdown().clone().cancelled_owned())
        .take_until(state.acl_reloaded())
        .filter_map(move |item| {
            let _alive = &gauge; // dropped with the stream, when the client goes away
            let visible = item
                .as_ref()
                .map_or(true, |e| access.can_read(e.service.as_str()));
            std::future::ready(to_sse(item, query.service.as_ref()).filter(|_| visible))
        })
        .map(Ok);
    Ok(Sse::new(events).keep_alive(KeepAlive::new().interval(state.config().sse_keep_alive)))
}

fn to_sse(
    item: Result<ChangeEvent, BroadcastStreamRecvError>,
    only: Option<&ServiceName>,
) -> Option<Event> {
    match item {
        Ok(event) if only.is_none_or(|s| *s == event.service) => {
            let data = serde_json::to_string(&event).ok()?;
            Some(
                Event::default()
                    .event(event.kind.as_str())
                    .id(event.index.to_string())
                    .data(data),
            )
        }
        Ok(_) => None,
        Err(BroadcastStreamRecvError::Lagged(missed)) => {
            let data = serde_json::to_string(&Lagged { missed }).ok()?;
            Some(Event::default().event(LAGGED_EVENT).data(data))
        }
    }
}

/// Counts open watch streams in the `directory_watchers` gauge while alive.
struct WatcherGauge;

impl WatcherGauge {
    fn new() -> Self {
        metrics::gauge!("directory_watchers").increment(1);
        Self
    }
}

impl Drop for WatcherGauge {
    fn drop(&mut self) {
        metrics::gauge!("directory_watchers").decrement(1);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_lagging_watcher_is_told_how_many_events_it_missed() {
        let event = to_sse(Err(BroadcastStreamRecvError::Lagged(7)), None).unwrap();
        let text = format!("{event:?}");
        assert!(
            text.contains(LAGGED_EVENT) && text.contains("missed") && text.contains('7'),
            "{text}"
        );
    }
}
