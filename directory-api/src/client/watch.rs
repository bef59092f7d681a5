//! [`WatchStream`]: the Server-Sent Events of `GET /v1/watch` as typed [`WatchEvent`]s,
//! reconnecting with `Last-Event-ID` when the connection is lost.

use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use eventsource_stream::{Event, EventStreamError, Eventsource};
use futures_core::Stream;
use futures_util::StreamExt;

use super::{Call, Client, ClientError};
use crate::{ChangeEvent, ChangeKind, LAGGED_EVENT, Lagged, RESET_EVENT, Reset, WatchEvent};

/// Reconnections tried in a row before a watch gives up with
/// [`ClientError::WatchBroken`]; the waits between them double from
/// [`RECONNECT_FIRST_DELAY`] (0.1 + 0.2 + 0.4 + 0.8 + 1.6 s: a node restart fits).
pub const RECONNECT_ATTEMPTS: u32 = 5;
/// Wait before the first reconnection.
const RECONNECT_FIRST_DELAY: Duration = Duration::from_millis(100);

type Events = Pin<Box<dyn Stream<Item = Result<Event, EventStreamError<reqwest::Error>>> + Send>>;
type Inner = Pin<Box<dyn Stream<Item = Result<WatchEvent, ClientError>> + Send>>;

/// The changes a node streams, in order. Resumes after a lost connection (see
/// [`Client::watch`]); ends after yielding a [`ClientError::WatchBroken`] when it cannot.
pub struct WatchStream {
    inner: Inner,
}

impl std::fmt::Debug for WatchStream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WatchStream").finish_non_exhaustive()
    }
}

impl WatchStream {
    pub(super) fn new(
        client: Client,
        call: Call,
        url: String,
        response: reqwest::Response,
    ) -> Self {
        let state = Resuming {
            client,
            call,
            url,
            events: events(response),
            done: false,
        };
        let inner = futures_util::stream::unfold(state, |mut state| async move {
            let item = state.next().await?;
            Some((item, state))
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

fn events(response: reqwest::Response) -> Events {
    Box::pin(response.bytes_stream().eventsource())
}

/// A watch and where it is: the call that reopens it carries the last `id` seen.
struct Resuming {
    client: Client,
    call: Call,
    url: String,
    events: Events,
    done: bool,
}

impl Resuming {
    async fn next(&mut self) -> Option<Result<WatchEvent, ClientError>> {
        while !self.done {
            let lost = match self.events.next().await {
                Some(Ok(event)) => match self.take(&event) {
                    Ok(Some(item)) => return Some(Ok(item)),
                    Ok(None) => continue,
                    Err(e) => Err(e),
                },
                Some(Err(e)) => Ok(e.to_string()),
                None => Ok("the node closed the stream".to_owned()),
            };
            let reason = match lost {
                Ok(reason) => reason,
                Err(malformed) => {
                    self.done = true;
                    return Some(Err(malformed));
                }
            };
            if let Err(e) = self.reconnect(&reason).await {
                self.done = true;
                return Some(Err(e));
            }
        }
        None
    }

    /// Decodes `event` and remembers its `id` for a resume.
    fn take(&mut self, event: &Event) -> Result<Option<WatchEvent>, ClientError> {
        if let Ok(id) = event.id.parse::<u64>() {
            self.call.last_event_id = Some(id);
        }
        decode(&self.url, event)
    }

    /// Reopens the stream after the last id seen, [`RECONNECT_ATTEMPTS`] times at most.
    async fn reconnect(&mut self, reason: &str) -> Result<(), ClientError> {
        let mut delay = RECONNECT_FIRST_DELAY;
        let mut last = reason.to_owned();
        for _ in 0..RECONNECT_ATTEMPTS {
            tokio::time::sleep(delay).await;
            delay *= 2;
            match self.client.open_watch(&self.call).await {
                Ok((url, response)) => {
                    (self.url, self.events) = (url, events(response));
                    return Ok(());
                }
                Err(e) => {
                    let refused = !e.is_unavailable();
                    last = e.to_string();
                    // A refusal (4xx: the token lost its rights, ...) will not change.
                    if refused {
                        break;
                    }
                }
            }
        }
        Err(ClientError::WatchBroken {
            url: self.url.clone(),
            reason: format!("{reason}; could not resume: {last}"),
        })
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
    if event.event == RESET_EVENT {
        let reset: Reset = serde_json::from_str(&event.data).map_err(malformed)?;
        return Ok(Some(WatchEvent::Reset(reset)));
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
        let expected = Lagged {
            missed: 7,
            index: 0,
        };
        assert_eq!(lagged, Some(WatchEvent::Lagged(expected)));
        let reset = decode("u", &event("reset", r#"{"index":9,"requested":2}"#)).unwrap();
        let expected = Reset {
            index: 9,
            requested: 2,
        };
        assert_eq!(reset, Some(WatchEvent::Reset(expected)));
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
