//! `GET /v1/watch`: a Server-Sent Events stream of change events, resumable from a change
//! index (`Last-Event-ID` or `?index=`) through the registry's bounded history.

use std::collections::VecDeque;
use std::convert::Infallible;

use axum::extract::{RawQuery, State};
use axum::http::HeaderMap;
use axum::response::sse::{Event, KeepAlive, Sse};
use futures_util::{Stream, StreamExt};
use tokio_stream::wrappers::BroadcastStream;
use tokio_stream::wrappers::errors::BroadcastStreamRecvError;

use directory_api::{ErrorBody, ErrorCode, LAGGED_EVENT, Lagged, RESET_EVENT, Reset};

use super::AppState;
use super::error::ApiError;
use super::query::WatchQuery;
use crate::acl::Access;
use crate::registry::{ChangeEvent, Registry, Replay, ServiceName};

/// The header a reconnecting `EventSource` sends with the last `id` it saw.
const LAST_EVENT_ID: &str = "last-event-id";

/// Stream change events (`registered`, `updated`, `expired`, `deregistered`), resumable.
#[utoipa::path(
    get,
    path = "/v1/watch",
    params(
        ("service" = Option<String>, Query, description = "only events of this service"),
        ("index" = Option<u64>, Query, description = "resume: first replay the changes after this change index (from the node's bounded history), then stream; `Last-Event-ID` takes precedence"),
        ("Last-Event-ID" = Option<u64>, Header, description = "resume after this change index (what a reconnecting EventSource sends: the `id` of the last event it saw)"),
    ),
    responses(
        (status = 200, description = "text/event-stream. Each change is an event named after its type \
(`registered`, `updated`, `expired`, `deregistered`) whose `id` is its change index and whose data is a ChangeEvent. \
`lagged` (data Lagged) means this slow reader missed `missed` events the history no longer holds; \
`reset` (data Reset) comes first on a resumed watch whose index the history no longer reaches (or that is ahead of this node, e.g. after a restart). \
After either, re-read the state (it is at `index` or later); their `id` is that index and the stream continues after it. \
Keep-alive comments (`:`) keep idle connections open.",
         body = ChangeEvent, content_type = "text/event-stream"),
        (status = 400, description = "invalid service name, query or Last-Event-ID", body = ErrorBody),
        (status = 401, description = "unauthorized: no token where one is needed, or an unknown token", body = ErrorBody),
        (status = 403, description = "forbidden: the token may not read this service (or, unfiltered, any service)", body = ErrorBody),
    ),
    tag = "watch"
)]
pub async fn watch(
    State(state): State<AppState>,
    access: Access,
    headers: HeaderMap,
    RawQuery(raw): RawQuery,
) -> Result<Sse<impl Stream<Item = Result<Event, Infallible>>>, ApiError> {
    let query = WatchQuery::parse(raw.as_deref())?;
    let after = last_event_id(&headers)?.or(query.index);
    match &query.service {
        Some(service) => access.read(service.as_str())?,
        None => access.list()?,
    }
    let cursor = Cursor::start(state.registry().clone(), after, query.service, access);
    let events = futures_util::stream::unfold(cursor, |mut cursor| async move {
        let event = cursor.next().await?;
        Some((event, cursor))
    })
    .take_until(state.shutdown().clone().cancelled_owned())
    .take_until(state.acl_reloaded())
    .map(|item| Ok(to_sse(item)));
    Ok(Sse::new(events).keep_alive(KeepAlive::new().interval(state.config().sse_keep_alive)))
}

/// The `Last-Event-ID` header as a change index; absent or empty is `None`.
fn last_event_id(headers: &HeaderMap) -> Result<Option<u64>, ApiError> {
    let Some(value) = headers.get(LAST_EVENT_ID) else {
        return Ok(None);
    };
    let text = value.to_str().unwrap_or("\u{fffd}");
    if text.is_empty() {
        return Ok(None);
    }
    // At most 15 digits, as the document says (`^[0-9]{0,15}$`): below MAX_INDEX.
    match text.parse::<u64>() {
        Ok(index) if text.len() <= 15 && text.bytes().all(|b| b.is_ascii_digit()) => {
            Ok(Some(index))
        }
        _ => Err(ApiError::new(
            axum::http::StatusCode::BAD_REQUEST,
            ErrorCode::InvalidHeader,
            format!("Last-Event-ID {text:?} must be a change index of at most 15 digits"),
        )),
    }
}

/// One item of the stream before it becomes an SSE event.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Item {
    Change(ChangeEvent),
    Lagged(Lagged),
    Reset(Reset),
}

/// A watcher's position: the replayed and live events it still has to send, and the index
/// it has reached (`last`), so that an event is never sent twice or skipped silently.
struct Cursor {
    registry: Registry,
    live: BroadcastStream<ChangeEvent>,
    pending: VecDeque<Item>,
    /// Events at or below this index were sent, replayed or reported as a gap.
    last: u64,
    only: Option<ServiceName>,
    access: Access,
    _gauge: WatcherGauge,
}

impl Cursor {
    /// Subscribes after `after` (live only when `None`).
    fn start(
        registry: Registry,
        after: Option<u64>,
        only: Option<ServiceName>,
        access: Access,
    ) -> Self {
        let (replay, current, receiver) = registry.subscribe_after(after);
        let mut cursor = Self {
            registry,
            live: BroadcastStream::new(receiver),
            pending: VecDeque::new(),
            last: after.unwrap_or(current),
            only,
            access,
            _gauge: WatcherGauge::new(),
        };
        let requested = cursor.last;
        cursor.catch_up(replay, |current| {
            Item::Reset(Reset {
                index: current,
                requested,
            })
        });
        cursor
    }

    /// The next item this watcher may see; `None` when the registry is gone.
    async fn next(&mut self) -> Option<Item> {
        loop {
            if let Some(item) = self.pending.pop_front() {
                if self.visible(&item) {
                    return Some(item);
                }
                continue;
            }
            match self.live.next().await? {
                Ok(event) => self.push_change(event),
                Err(BroadcastStreamRecvError::Lagged(missed)) => {
                    let replay = self.registry.changes_since(self.last);
                    self.catch_up(replay, |index| Item::Lagged(Lagged { missed, index }));
                }
            }
        }
    }

    /// Queues replayed events, or the gap item `gap(current)` when the history fell short.
    fn catch_up(&mut self, replay: Replay, gap: impl FnOnce(u64) -> Item) {
        match replay {
            Replay::Events(events) => events.into_iter().for_each(|e| self.push_change(e)),
            Replay::Gap { current } => {
                self.last = current;
                self.pending.push_back(gap(current));
            }
        }
    }

    /// Queues a change unless it is at or below what the watcher already has.
    fn push_change(&mut self, event: ChangeEvent) {
        if event.index > self.last {
            self.last = event.index;
            self.pending.push_back(Item::Change(event));
        }
    }

    /// Whether the watcher asked for this item and may read it (gaps are always shown).
    fn visible(&self, item: &Item) -> bool {
        match item {
            Item::Change(event) => {
                self.only.as_ref().is_none_or(|s| *s == event.service)
                    && self.access.can_read(event.service.as_str())
            }
            Item::Lagged(_) | Item::Reset(_) => true,
        }
    }
}

fn to_sse(item: Item) -> Event {
    let (name, index, data) = match &item {
        Item::Change(e) => (e.kind.as_str(), e.index, serde_json::to_string(e)),
        Item::Lagged(l) => (LAGGED_EVENT, l.index, serde_json::to_string(l)),
        Item::Reset(r) => (RESET_EVENT, r.index, serde_json::to_string(r)),
    };
    // These types serialize infallibly (strings, numbers and string maps only).
    let data = data.unwrap_or_default();
    Event::default()
        .event(name)
        .id(index.to_string())
        .data(data)
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
    use crate::registry::{Address, Registration, RegistryConfig};

    fn registry(history: usize) -> Registry {
        let mut config = RegistryConfig::for_test();
        config.event_buffer = std::num::NonZeroUsize::new(history).unwrap();
        Registry::new(config)
    }

    fn register(registry: &Registry, service: &str, instance: &str) {
        let registration = Registration::new(Address::new("h:1").unwrap());
        let (s, i) = (service.parse().unwrap(), instance.parse().unwrap());
        registry
            .register(&s, &i, registration, tokio::time::Instant::now())
            .unwrap();
    }

    fn indexes(items: &[Item]) -> Vec<u64> {
        items
            .iter()
            .map(|i| match i {
                Item::Change(e) => e.index,
                other => panic!("not a change: {other:?}"),
            })
            .collect()
    }

    async fn take(cursor: &mut Cursor, n: usize) -> Vec<Item> {
        let mut out = Vec::new();
        for _ in 0..n {
            out.push(cursor.next().await.unwrap());
        }
        out
    }

    #[tokio::test]
    async fn a_resumed_watch_replays_the_gap_then_streams_live_without_repeats() {
        let r = registry(16);
        for i in 0..5 {
            register(&r, "s", &format!("i{i}"));
        }
        let mut cursor = Cursor::start(r.clone(), Some(2), None, Access::open());
        register(&r, "s", "i5");
        assert_eq!(indexes(&take(&mut cursor, 4).await), [3, 4, 5, 6]);
    }

    #[tokio::test]
    async fn a_resume_point_older_than_the_history_gets_a_reset_with_the_current_index() {
        let r = registry(2);
        for i in 0..5 {
            register(&r, "s", &format!("i{i}"));
        }
        let mut cursor = Cursor::start(r.clone(), Some(1), None, Access::open());
        register(&r, "s", "i5");
        let items = take(&mut cursor, 2).await;
        assert_eq!(
            items[0],
            Item::Reset(Reset {
                index: 5,
                requested: 1
            })
        );
        assert_eq!(indexes(&items[1..]), [6]);
    }

    #[tokio::test]
    async fn a_lagging_watcher_gets_lagged_with_the_current_index_then_only_newer_events() {
        let mut config = RegistryConfig::for_test();
        config.event_buffer = std::num::NonZeroUsize::new(4).unwrap();
        let r = Registry::new(config);
        let mut cursor = Cursor::start(r.clone(), None, None, Access::open());
        for i in 0..6 {
            register(&r, "s", &format!("i{i}"));
        }
        // The broadcast buffer (4) overflowed and so did the history (4): a gap.
        let first = cursor.next().await.unwrap();
        assert!(
            matches!(first, Item::Lagged(Lagged { index: 6, .. })),
            "{first:?}"
        );
        register(&r, "s", "i6");
        assert_eq!(indexes(&take(&mut cursor, 1).await), [7]);
    }

    #[test]
    fn gap_events_carry_the_index_as_their_id() {
        let text = format!(
            "{:?}",
            to_sse(Item::Lagged(Lagged {
                missed: 7,
                index: 9
            }))
        );
        assert!(
            text.contains(LAGGED_EVENT) && text.contains("missed") && text.contains('9'),
            "{text}"
        );
    }
}
