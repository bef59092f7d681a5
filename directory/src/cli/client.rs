//! Client subcommands: talk to running nodes through the API crate's [`Client`], print
//! tables, JSON or YAML (see `output`).

use std::collections::BTreeMap;

use directory_api::{
    Address, Fingerprint, InstanceFilter, InstanceId, MembersResponse, Meta, Record, Registration,
    ServiceName, Subscription, Subscriptions, Tags, Topic, Ttl,
};
use serde::Serialize;

use super::Command;
use super::connect::{ClientArgs, ClientError};
use super::keep_alive::{self, Lease};
use super::output::table;

pub(super) async fn run(command: Command) -> Result<(), ClientError> {
    match command {
        Command::Services { client } => services(&client).await,
        Command::Health { client } => health(&client).await,
        Command::Topics { client, topic } => {
            let topic = topic.as_deref().map(Topic::new).transpose()?;
            super::topics::run(&client, topic.as_ref()).await
        }
        Command::Lookup {
            client,
            service,
            tags,
            meta,
        } => {
            let filter = InstanceFilter {
                tags,
                meta: parse_pairs(&meta)?.into_iter().collect(),
            };
            lookup(&client, &ServiceName::new(&service)?, &filter).await
        }
        Command::Register {
            client,
            service,
            instance,
            address,
            tags,
            meta,
            ttl,
            fingerprint,
            subscriptions,
            keep_alive,
        } => {
            let registration = Registration {
                address: Address::new(&address)?,
                tags: Tags::new(tags)?,
                meta: Meta::new(parse_pairs(&meta)?)?,
                ttl: ttl
                    .as_deref()
                    .map(Ttl::parse)
                    .transpose()?
                    .unwrap_or_default(),
                fingerprint: fingerprint.as_deref().map(Fingerprint::parse).transpose()?,
                subscriptions: Subscriptions::new(
                    subscriptions
                        .iter()
                        .map(|s| Subscription::parse(s))
                        .collect::<Result<_, _>>()?,
                )?,
            };
            let key = (ServiceName::new(&service)?, InstanceId::new(&instance)?);
            register(&client, &key, &registration, keep_alive).await
        }
        Command::Heartbeat {
            client,
            service,
            instance,
        } => {
            let key = (ServiceName::new(&service)?, InstanceId::new(&instance)?);
            heartbeat(&client, &key).await
        }
        Command::Watch { client, service } => {
            let service = service.as_deref().map(ServiceName::new).transpose()?;
            super::watch::run(&client, service.as_ref()).await
        }
        Command::Deregister {
            client,
            service,
            instance,
        } => {
            let key = (ServiceName::new(&service)?, InstanceId::new(&instance)?);
            deregister(&client, &key).await
        }
        Command::Members { client } => members(&client).await,
        Command::Serve(_) | Command::Keygen | Command::Acl(_) | Command::Completions { .. } => {
            Err(ClientError::Usage("not a client command".into()))
        }
    }
}

async fn health(args: &ClientArgs) -> Result<(), ClientError> {
    let health = args.client()?.health().await?;
    args.output().print(&health, |h| {
        format!("{} on node {} (version {})\n", h.status, h.node, h.version)
    })
}

async fn services(args: &ClientArgs) -> Result<(), ClientError> {
    let list = args.client()?.services().await?;
    args.output().print(&list, |list| {
        let rows: Vec<Vec<String>> = list
            .services
            .iter()
            .map(|s| vec![s.service.to_string(), s.instances.to_string()])
            .collect();
        table(&["SERVICE", "INSTANCES"], &rows)
    })
}

async fn members(args: &ClientArgs) -> Result<(), ClientError> {
    let list = args.client()?.members().await?;
    args.output().print(&list, members_table)
}

fn members_table(list: &MembersResponse) -> String {
    let rows: Vec<Vec<String>> = list
        .members
        .iter()
        .map(|m| {
            let local = if m.local { " (local)" } else { "" };
            vec![
                format!("{}{local}", m.name),
                m.address.clone().unwrap_or_default(),
                m.state.clone(),
                m.incarnation.to_string(),
                m.last_change.clone(),
            ]
        })
        .collect();
    let headers = ["NODE", "ADDRESS", "STATE", "INCARNATION", "LAST CHANGE"];
    table(&headers, &rows)
}

async fn lookup(
    args: &ClientArgs,
    service: &ServiceName,
    filter: &InstanceFilter,
) -> Result<(), ClientError> {
    let view = args.client()?.lookup(service, filter).await?;
    args.output().print(&view, |view| {
        let rows: Vec<Vec<String>> = view.instances.iter().map(|r| instance_row(r)).collect();
        let headers = [
            "INSTANCE",
            "ADDRESS",
            "TAGS",
            "META",
            "OWNER",
            "LEASE EXPIRES",
        ];
        table(&headers, &rows)
    })
}

fn instance_row(r: &Record) -> Vec<String> {
    let tags: Vec<&str> = r.tags.iter().collect();
    let meta: Vec<String> = r.meta.iter().map(|(k, v)| format!("{k}={v}")).collect();
    vec![
        r.instance.to_string(),
        r.address.to_string(),
        tags.join(","),
        meta.join(","),
        r.owner.to_string(),
        rfc3339(r.lease_expires_at),
    ]
}

async fn register(
    args: &ClientArgs,
    (service, instance): &(ServiceName, InstanceId),
    registration: &Registration,
    keep_alive: bool,
) -> Result<(), ClientError> {
    let client = args.client()?;
    let record = client.register(service, instance, registration).await?;
    args.output()
        .print(&record, |r| record_line("registered", r))?;
    if !keep_alive {
        return Ok(());
    }
    let lease = Lease {
        client: &client,
        service,
        instance,
        registration,
    };
    keep_alive::hold(&lease).await?;
    print_deregistered(args, service, instance)
}

async fn heartbeat(
    args: &ClientArgs,
    (service, instance): &(ServiceName, InstanceId),
) -> Result<(), ClientError> {
    let record = args.client()?.heartbeat(service, instance).await?;
    args.output().print(&record, |r| record_line("renewed", r))
}

/// `registered orders/orders-1 at 127.0.0.1:7000 (ttl 30s, index 1, lease expires ...)`.
fn record_line(verb: &str, record: &Record) -> String {
    format!(
        "{verb} {}/{} at {} (ttl {}, index {}, lease expires {})\n",
        record.service,
        record.instance,
        record.address,
        record.ttl,
        record.index,
        rfc3339(record.lease_expires_at),
    )
}

/// What `deregister -o json|yaml` prints.
#[derive(Serialize)]
struct Deregistered<'a> {
    service: &'a ServiceName,
    instance: &'a InstanceId,
    deregistered: bool,
}

async fn deregister(
    args: &ClientArgs,
    (service, instance): &(ServiceName, InstanceId),
) -> Result<(), ClientError> {
    args.client()?.deregister(service, instance).await?;
    print_deregistered(args, service, instance)
}

fn print_deregistered(
    args: &ClientArgs,
    service: &ServiceName,
    instance: &InstanceId,
) -> Result<(), ClientError> {
    let done = Deregistered {
        service,
        instance,
        deregistered: true,
    };
    args.output().print(&done, |d| {
        format!("deregistered {}/{}\n", d.service, d.instance)
    })
}

/// Parses `key=value` flags.
fn parse_pairs(pairs: &[String]) -> Result<BTreeMap<String, String>, ClientError> {
    pairs
        .iter()
        .map(|p| {
            p.split_once('=')
                .map(|(k, v)| (k.to_owned(), v.to_owned()))
                .ok_or_else(|| {
                    ClientError::Usage(format!("--meta {p:?} must be written key=value"))
                })
        })
        .collect()
}

/// A timestamp as the API writes it (RFC 3339 UTC, milliseconds).
fn rfc3339(t: std::time::SystemTime) -> String {
    humantime::format_rfc3339_millis(t).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    use crate::cli::Cli;
    use crate::cli::connect::http_client;
    use crate::cli::output::Output;
    use std::time::Duration;

    fn client_args(argv: &[&str]) -> ClientArgs {
        let cli = Cli::try_parse_from(argv).unwrap();
        match cli.command {
            Some(Command::Services { client }) => client,
            other => panic!("not services: {other:?}"),
        }
    }

    #[test]
    fn several_addresses_token_and_ca_reach_the_client() {
        let args = client_args(&[
            "directory",
            "services",
            "--node",
            "127.0.0.1:1,https://h:2/",
            "--token",
            "t",
        ]);
        assert_eq!(args.node, ["127.0.0.1:1", "https://h:2/"]);
        assert_eq!(args.token.as_deref(), Some("t"));
        let client = args.client().unwrap();
        let urls: Vec<&str> = client.urls().collect();
        assert_eq!(urls, ["http://127.0.0.1:1/", "https://h:2/"]);
        let missing_ca = client_args(&["directory", "services", "--ca", "/nonexistent/ca.pem"]);
        let err = missing_ca.client().unwrap_err();
        assert!(matches!(err, ClientError::Ca { .. }), "{err}");
    }

    #[test]
    fn the_old_addr_flag_and_json_flag_still_work() {
        let args = client_args(&["directory", "services", "--addr", "h:1", "--json"]);
        assert_eq!(args.node, ["h:1"]);
        assert_eq!(args.output(), Output::Json);
        let args = client_args(&["directory", "services", "-o", "yaml"]);
        assert_eq!(args.output(), Output::Yaml);
    }

    #[test]
    fn meta_flags_must_be_key_value() {
        assert_eq!(parse_pairs(&["a=b=c".into()]).unwrap()["a"], "b=c");
        assert!(parse_pairs(&["nope".into()]).is_err());
    }

    #[test]
    fn invalid_arguments_name_their_code() {
        let err = ClientError::from(Address::new("no-port").unwrap_err());
        assert!(err.to_string().starts_with("invalid_address: "), "{err}");
    }

    #[test]
    fn transport_failures_say_the_node_cannot_be_reached_and_how_to_fix_it() {
        let refused = directory_api::ClientError::Refused {
            url: "http://127.0.0.1:1/v1/health".into(),
        };
        let text = ClientError::from(refused).to_string();
        assert!(
            text.starts_with("cannot reach the directory node"),
            "{text}"
        );
        assert!(text.contains("--node"), "{text}");
        let tls = directory_api::ClientError::Tls {
            url: "https://h:1".into(),
            reason: "invalid peer certificate: UnknownIssuer".into(),
        };
        assert!(ClientError::from(tls).to_string().contains("--ca"));
    }

    #[test]
    fn the_http_client_builds_without_a_process_wide_provider() {
        assert!(http_client(Duration::from_secs(1)).is_ok());
        assert!(rustls::crypto::CryptoProvider::get_default().is_none());
    }
}
