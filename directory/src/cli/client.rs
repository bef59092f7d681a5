//! Client subcommands: talk to running nodes through the API crate's [`Client`], print
//! tables or JSON.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use clap::Args;
use directory_api::{
    Address, Client, Fingerprint, InstanceFilter, InstanceId, Meta, Record, Registration,
    ServiceName, Tags, Ttl, ValidationError,
};
use serde::Serialize;

use super::Command;

/// How to reach the directory.
#[derive(Debug, Clone, Args)]
pub struct ClientArgs {
    /// The node(s) to talk to: host:port or http(s)://host:port; several, comma-separated,
    /// are tried in turn.
    #[arg(
        long,
        env = "DIRECTORY_ADDR",
        default_value = "127.0.0.1:7700",
        value_delimiter = ','
    )]
    pub addr: Vec<String>,
    /// Print the node's JSON response instead of a table [default: tables].
    #[arg(long, env = "DIRECTORY_JSON")]
    pub json: bool,
    /// Give up on a request after this long.
    #[arg(long, env = "DIRECTORY_CLIENT_TIMEOUT", default_value = "5s")]
    pub timeout: humantime::Duration,
    /// Bearer token sent with every request, for directories with ACLs.
    #[arg(long, env = "DIRECTORY_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
    /// PEM file of a certificate authority to trust for https nodes (beside the system's).
    #[arg(long, env = "DIRECTORY_CA")]
    pub ca: Option<PathBuf>,
}

impl ClientArgs {
    /// The API client these options describe.
    pub fn client(&self) -> Result<Client, ClientError> {
        let mut builder = Client::builder(self.addr.iter().cloned()).timeout(self.timeout.into());
        if let Some(token) = &self.token {
            builder = builder.bearer_token(token.clone());
        }
        if let Some(path) = &self.ca {
            let pem = std::fs::read(path).map_err(|e| ClientError::Ca {
                path: path.clone(),
                reason: e.to_string(),
            })?;
            builder = builder.ca_pem(pem);
        }
        Ok(builder.build()?)
    }
}

/// Why a client command failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ClientError {
    /// No node answered, or the call failed: see the API client's error.
    #[error("{}", describe(.0))]
    Directory(#[from] directory_api::ClientError),
    /// An argument is not a valid name, address, TTL, label or fingerprint.
    #[error("{}: {}", .0.code(), .0)]
    Invalid(#[from] ValidationError),
    /// The CA file could not be read.
    #[error("cannot read the CA file {}: {reason}", path.display())]
    Ca {
        /// The file.
        path: PathBuf,
        /// Why.
        reason: String,
    },
    /// A flag value is malformed.
    #[error("{0}")]
    Usage(String),
}

/// The API client's error, with the remedy a command-line user needs.
fn describe(error: &directory_api::ClientError) -> String {
    use directory_api::ClientError as E;
    let hint = "use --addr or DIRECTORY_ADDR to point elsewhere";
    match error {
        E::Tls { .. } => format!(
            "cannot reach the directory node: {error}; use --ca or DIRECTORY_CA to trust its certificate authority"
        ),
        E::NotADirectory { .. } => format!("{error}; {hint}"),
        e if e.is_unavailable() => format!("cannot reach the directory node: {error}; {hint}"),
        _ => error.to_string(),
    }
}

/// An HTTP client for plain-`http` use with reqwest's `rustls-no-provider` feature (tests
/// and benchmarks that send hand-made requests): it is given a rustls configuration built
/// on the ring provider explicitly, so building it never panics and never installs a
/// process-wide crypto provider.
pub fn http_client(timeout: Duration) -> Result<reqwest::Client, reqwest::Error> {
    let builder = reqwest::Client::builder().timeout(timeout).no_proxy();
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    match rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
    {
        Ok(tls) => {
            let tls = tls
                .with_root_certificates(rustls::RootCertStore::empty())
                .with_no_client_auth();
            builder.tls_backend_preconfigured(tls).build()
        }
        // ring supports the default protocol versions; if that ever changed, building
        // fails with reqwest's own error instead of panicking.
        Err(_) => builder.build(),
    }
}

pub(super) async fn run(command: Command) -> Result<(), ClientError> {
    match command {
        Command::Services { client } => services(&client).await,
        Command::Health { client } => health(&client).await,
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
            };
            let key = (ServiceName::new(&service)?, InstanceId::new(&instance)?);
            register(&client, &key, &registration).await
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
        Command::Serve(_) | Command::Keygen | Command::Acl(_) => {
            Err(ClientError::Usage("not a client command".into()))
        }
    }
}

async fn health(args: &ClientArgs) -> Result<(), ClientError> {
    let health = args.client()?.health().await?;
    if args.json {
        return print_json(&health);
    }
    println!(
        "{} on node {} (version {})",
        health.status, health.node, health.version
    );
    Ok(())
}

async fn services(args: &ClientArgs) -> Result<(), ClientError> {
    let list = args.client()?.services().await?;
    if args.json {
        return print_json(&list);
    }
    let rows: Vec<Vec<String>> = list
        .services
        .iter()
        .map(|s| vec![s.service.to_string(), s.instances.to_string()])
        .collect();
    print!("{}", table(&["SERVICE", "INSTANCES"], &rows));
    Ok(())
}

async fn members(args: &ClientArgs) -> Result<(), ClientError> {
    let list = args.client()?.members().await?;
    if args.json {
        return print_json(&list);
    }
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
    print!("{}", table(&headers, &rows));
    Ok(())
}

async fn lookup(
    args: &ClientArgs,
    service: &ServiceName,
    filter: &InstanceFilter,
) -> Result<(), ClientError> {
    let view = args.client()?.lookup(service, filter).await?;
    if args.json {
        return print_json(&view);
    }
    let rows: Vec<Vec<String>> = view.instances.iter().map(|r| instance_row(r)).collect();
    let headers = [
        "INSTANCE",
        "ADDRESS",
        "TAGS",
        "META",
        "OWNER",
        "LEASE EXPIRES",
    ];
    print!("{}", table(&headers, &rows));
    Ok(())
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
) -> Result<(), ClientError> {
    let record = args
        .client()?
        .register(service, instance, registration)
        .await?;
    if args.json {
        return print_json(&record);
    }
    println!(
        "registered {}/{} at {} (ttl {}, index {}, lease expires {})",
        record.service,
        record.instance,
        record.address,
        record.ttl,
        record.index,
        rfc3339(record.lease_expires_at),
    );
    Ok(())
}

/// What `deregister --json` prints.
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
    if args.json {
        return print_json(&Deregistered {
            service,
            instance,
            deregistered: true,
        });
    }
    println!("deregistered {service}/{instance}");
    Ok(())
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

fn print_json(value: &impl Serialize) -> Result<(), ClientError> {
    let text = serde_json::to_string_pretty(value)
        .map_err(|e| ClientError::Usage(format!("cannot render JSON: {e}")))?;
    println!("{text}");
    Ok(())
}

/// Left-aligned columns separated by two spaces.
fn table(headers: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = headers.iter().map(|h| h.len()).collect();
    for row in rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let mut out = String::new();
    let header: Vec<String> = headers.iter().map(|h| (*h).to_owned()).collect();
    for row in std::iter::once(&header).chain(rows) {
        let cells: Vec<String> = row
            .iter()
            .zip(&widths)
            .map(|(c, w)| format!("{c:<w$}"))
            .collect();
        out.push_str(cells.join("  ").trim_end());
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    use crate::cli::Cli;

    fn client_args(argv: &[&str]) -> ClientArgs {
        let cli = Cli::try_parse_from(argv).unwrap();
        match cli.command {
            Some(Command::Services { client }) => client,
            other => panic!("not services: {other:?}"),
        }
    }

    #[test]
    fn tables_align_columns() {
        let t = table(&["A", "LONGER"], &[vec!["xyz".into(), "1".into()]]);
        assert_eq!(t, "A    LONGER\nxyz  1\n");
    }

    #[test]
    fn several_addresses_token_and_ca_reach_the_client() {
        let args = client_args(&[
            "directory",
            "services",
            "--addr",
            "127.0.0.1:1,https://h:2/",
            "--token",
            "t",
        ]);
        assert_eq!(args.addr, ["127.0.0.1:1", "https://h:2/"]);
        assert_eq!(args.token.as_deref(), Some("t"));
        let client = args.client().unwrap();
        let urls: Vec<&str> = client.urls().collect();
        assert_eq!(urls, ["http://127.0.0.1:1/", "https://h:2/"]);
        let missing_ca = client_args(&["directory", "services", "--ca", "/nonexistent/ca.pem"]);
        let err = missing_ca.client().unwrap_err();
        assert!(matches!(err, ClientError::Ca { .. }), "{err}");
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
        assert!(text.contains("--addr"), "{text}");
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
