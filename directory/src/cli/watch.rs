//! `directory watch [SERVICE]`: prints every change as the node streams it, until Ctrl-C.

use directory_api::{ChangeEvent, ServiceName, WatchEvent};
use futures_util::StreamExt;
use serde::Serialize;

use super::connect::{ClientArgs, ClientError};

/// One printed item: a change as the API sends it, or a note that events were missed.
#[derive(Serialize)]
#[serde(untagged)]
enum Item<'a> {
    Change(&'a ChangeEvent),
    Lagged {
        #[serde(rename = "type")]
        kind: &'static str,
        missed: u64,
    },
}

/// Streams the changes of `service` (or of every service) to stdout. Returns on Ctrl-C or
/// SIGTERM (success) or when the stream breaks (the error says why).
pub(super) async fn run(
    args: &ClientArgs,
    service: Option<&ServiceName>,
) -> Result<(), ClientError> {
    let stop = crate::server::shutdown_signal();
    tokio::pin!(stop);
    let client = args.client()?;
    let mut stream = client.watch(service).await?;
    let scope = service.map_or("every service".to_owned(), |s| format!("service {s}"));
    eprintln!("watching {scope}; Ctrl-C to stop");
    loop {
        let event = tokio::select! {
            () = &mut stop => return Ok(()),
            event = stream.next() => event,
        };
        match event {
            Some(Ok(event)) => print_event(args, &event)?,
            Some(Err(e)) => return Err(e.into()),
            None => return Err(ClientError::WatchEnded),
        }
    }
}

fn print_event(args: &ClientArgs, event: &WatchEvent) -> Result<(), ClientError> {
    let item = match event {
        WatchEvent::Change(change) => Item::Change(change),
        WatchEvent::Lagged(lagged) => Item::Lagged {
            kind: directory_api::LAGGED_EVENT,
            missed: lagged.missed,
        },
        // A newer API crate may stream kinds this command cannot show yet.
        _ => {
            eprintln!("note: skipped an event this version cannot show: {event:?}");
            return Ok(());
        }
    };
    args.output().print_item(&item, line)
}

/// The table form: `INDEX  TYPE  SERVICE/INSTANCE  ADDRESS` (`-` once removed).
fn line(item: &Item<'_>) -> String {
    match item {
        Item::Change(c) => {
            let address = c
                .record
                .as_ref()
                .map_or("-".to_owned(), |r| r.address.to_string());
            let (index, kind) = (c.index, c.kind.as_str());
            format!(
                "{index:>6}  {kind:<12}  {}/{}  {address}",
                c.service, c.instance
            )
        }
        Item::Lagged { missed, .. } => {
            format!("lagged: missed {missed} event(s); run `directory lookup` to catch up")
        }
    }
}

#[cfg(test)]
mod tests {
    use directory_api::{ChangeKind, InstanceId};

    use super::*;

    #[test]
    fn a_removal_prints_a_dash_for_its_address() {
        let change = ChangeEvent {
            kind: ChangeKind::Deregistered,
            service: ServiceName::new("orders").unwrap(),
            instance: InstanceId::new("orders-2").unwrap(),
            index: 3,
            record: None,
        };
        assert_eq!(
            line(&Item::Change(&change)),
            "     3  deregistered  orders/orders-2  -"
        );
        let json = serde_json::to_string(&Item::Lagged {
            kind: "lagged",
            missed: 4,
        })
        .unwrap();
        assert_eq!(json, r#"{"type":"lagged","missed":4}"#);
    }
}
