//! [`WatchStream`]: the Server-Sent Events of `GET /v1/watch` as typed [`WatchEvent`]s.

use std::pin::Pin;
use std::task::{Context, Poll};

use eventsource_stream::{Event, Eventsource};
use futures_core::Stream;
use futures_util::StreamExt;

use super::ClientError;
use crate::{ChangeEvent, ChangeKind, LAGGED_EVENT, Lagged, WatchEvent};

type Inner = Pin<Box<dyn Stream<Item = Result<WatchEvent, ClientError>> + Send>>;

/// The changes a node streams, in order. Ends after yielding a
/// [`ClientError::WatchBroken`] when the connection is lost or an event is malformed.
pub struct WatchStream {
    inner: Inner,
}

impl std::fmt::Debug for WatchStream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WatchStream").finish_non_exhaustive()
    }
}

impl WatchStream {
    pub(super) fn new(url: String, response: reqwest::Response) -> Self {
        let mut broken = false;
        let inner = response
            .bytes_stream()
            .eventsource()
            .filter_map(move |item| {
                let out = match item {
                    Ok(event) => decode(&url, &event).transpose(),
                    Err(e) => Some(Err(ClientError::WatchBroken {
                        url: url.clone(),
                        reason: e.to_string(),
                    })),
                };
                std::future::ready(out)
            })
            // Nothing after the first error: the stream is not resumable.
            .take_while(move |item| {
                let go = !broken;
                broken |= item.is_err();
                std::future::ready(go)
            });
        Self {
            inner: Box::pin(inner),
        }
    }
}

impl Stream for WatchStream {
    type Item = Result<WatchEvent, ClientError>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        self.inner.as_mut().poll_next(cx)
    }
}

/// One SSE event as a [`WatchEvent`]; `None` for event names this version does not know
/// (a newer server may add some).
fn decode(url: &str, event: &Event) -> Result<Option<WatchEvent>, ClientError> {
    let malformed = |e: serde_json::Error| ClientError::WatchBroken {
        url: url.to_owned(),
        reason: format!("malformed {:?} event: {e}", event.event),
    };
    if event.event == LAGGED_EVENT {
        let lagged: Lagged = serde_json::from_str(&event.data).map_err(malformed)?;
        return Ok(Some(WatchEvent::Lagged(lagged)));
    }
    let known = serde_json::from_value::<ChangeKind>(serde_json::Value::from(event.event.as_str()));
    if known.is_err() {
        return Ok(None);
    }
    let change: ChangeEvent = serde_json::from_str(&event.data).map_err(malformed)?;
    Ok(Some(WatchEvent::Change(change)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(name: &str, data: &str) -> Event {
        Event {
            event: name.into(),
            data: data.into(),
            ..Event::default()
        }
    }

    #[test]
    fn events_decode_by_name_and_unknown_names_are_skipped() {
        let lagged = decode("u", &event("lagged", r#"{"missed":7}"#)).unwrap();
        assert_eq!(lagged, Some(WatchEvent::Lagged(Lagged { missed: 7 })));
        let gone = r#"{"type":"expired","service":"s","instance":"i","index":4,"record":null}"#;
        let Some(WatchEvent::Change(change)) = decode("u", &event("expired", gone)).unwrap() else {
            panic!("not a change");
        };
        assert_eq!((change.kind, change.index), (ChangeKind::Expired, 4));
        assert_eq!(decode("u", &event("future_kind", "{}")).unwrap(), None);
        assert!(matches!(
            decode("u", &event("registered", "{not json")),
            Err(ClientError::WatchBroken { .. })
        ));
    }
}
