//! Client subcommands: talk to a running node over HTTP, print tables or JSON.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use clap::Args;
use serde_json::{Value, json};

use super::Command;

/// How to reach a node.
#[derive(Debug, Clone, Args)]
pub struct ClientArgs {
    /// The node to talk to: host:port or http://host:port.
    #[arg(long, env = "DIRECTORY_ADDR", default_value = "127.0.0.1:7700")]
    pub addr: String,
    /// Print the node's JSON response instead of a table [default: tables].
    #[arg(long, env = "DIRECTORY_JSON")]
    pub json: bool,
    /// Give up on a request after this long.
    #[arg(long, env = "DIRECTORY_CLIENT_TIMEOUT", default_value = "5s")]
    pub timeout: humantime::Duration,
}

impl ClientArgs {
    fn base_url(&self) -> String {
        let addr = self.addr.trim_end_matches('/');
        if addr.starts_with("http://") || addr.starts_with("https://") {
            addr.to_owned()
        } else {
            format!("http://{addr}")
        }
    }
}

/// Why a client command failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ClientError {
    /// The node did not answer (not running, wrong address, timeout).
    #[error(
        "cannot reach the directory node at {url}: {reason}. Is it running (`directory serve`)? Use --addr or DIRECTORY_ADDR to point elsewhere"
    )]
    Unreachable {
        /// The URL tried.
        url: String,
        /// What went wrong.
        reason: String,
    },
    /// The node refused the request.
    #[error("{code}: {message} (HTTP {status})")]
    Api {
        /// HTTP status.
        status: u16,
        /// Error code from the body.
        code: String,
        /// Message from the body.
        message: String,
    },
    /// A flag value is malformed.
    #[error("{0}")]
    Usage(String),
    /// The HTTP client could not be built.
    #[error("cannot build the HTTP client: {0}")]
    Client(#[from] reqwest::Error),
}

/// An HTTP client for plain-`http` use with reqwest's `rustls-no-provider` feature: it is
/// given a rustls configuration built on the ring provider explicitly, so building it never
/// panics and never installs a process-wide crypto provider.
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
        } => lookup(&client, &service, &tags, &meta).await,
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
            let mut body = json!({ "address": address, "tags": tags, "meta": parse_pairs(&meta)? });
            if let Some(ttl) = ttl {
                body["ttl"] = json!(ttl);
            }
            if let Some(f) = fingerprint {
                body["fingerprint"] = json!(f);
            }
            register(&client, &service, &instance, body).await
        }
        Command::Deregister {
            client,
            service,
            instance,
        } => deregister(&client, &service, &instance).await,
        Command::Members { client } => members(&client).await,
        Command::Serve(_) | Command::Keygen | Command::Acl(_) => {
            Err(ClientError::Usage("not a client command".into()))
        }
    }
}

async fn health(args: &ClientArgs) -> Result<(), ClientError> {
    let body = send(args, reqwest::Method::GET, "/v1/health", &[], None).await?;
    if args.json {
        return print_json(&body);
    }
    println!(
        "{} on node {} (version {})",
        text(&body["status"]),
        text(&body["node"]),
        text(&body["version"])
    );
    Ok(())
}

async fn services(args: &ClientArgs) -> Result<(), ClientError> {
    let body = send(args, reqwest::Method::GET, "/v1/services", &[], None).await?;
    if args.json {
        return print_json(&body);
    }
    let rows = body["services"]
        .as_array()
        .map(|list| {
            list.iter()
                .map(|s| vec![text(&s["service"]), s["instances"].to_string()])
                .collect::<Vec<_>>()
        })
        .unwrap_or_default();
    print!("{}", table(&["SERVICE", "INSTANCES"], &rows));
    Ok(())
}

async fn members(args: &ClientArgs) -> Result<(), ClientError> {
    let body = send(args, reqwest::Method::GET, "/v1/cluster/members", &[], None).await?;
    if args.json {
        return print_json(&body);
    }
    let rows: Vec<Vec<String>> = body["members"]
        .as_array()
        .map(|list| {
            list.iter()
                .map(|m| {
                    let name = text(&m["name"]);
                    let name = if m["local"] == Value::Bool(true) {
                        format!("{name} (local)")
                    } else {
                        name
                    };
                    vec![
                        name,
                        text(&m["address"]),
                        text(&m["state"]),
                        m["incarnation"].to_string(),
                        text(&m["last_change"]),
                    ]
                })
                .collect()
        })
        .unwrap_or_default();
    print!(
        "{}",
        table(
            &["NODE", "ADDRESS", "STATE", "INCARNATION", "LAST CHANGE"],
            &rows
        )
    );
    Ok(())
}

async fn lookup(
    args: &ClientArgs,
    service: &str,
    tags: &[String],
    meta: &[String],
) -> Result<(), ClientError> {
    let mut query: Vec<(&str, String)> = tags.iter().map(|t| ("tag", t.clone())).collect();
    for (k, v) in parse_pairs(meta)? {
        query.push(("meta", format!("{k}:{v}")));
    }
    let path = format!("/v1/services/{}", encode(service));
    let body = send(args, reqwest::Method::GET, &path, &query, None).await?;
    if args.json {
        return print_json(&body);
    }
    let rows: Vec<Vec<String>> = body["instances"]
        .as_array()
        .map(|list| list.iter().map(instance_row).collect())
        .unwrap_or_default();
    print!(
        "{}",
        table(
            &[
                "INSTANCE",
                "ADDRESS",
                "TAGS",
                "META",
                "OWNER",
                "LEASE EXPIRES"
            ],
            &rows
        )
    );
    Ok(())
}

fn instance_row(r: &Value) -> Vec<String> {
    let tags: Vec<String> = r["tags"]
        .as_array()
        .into_iter()
        .flatten()
        .map(text)
        .collect();
    let meta: Vec<String> = r["meta"]
        .as_object()
        .into_iter()
        .flatten()
        .map(|(k, v)| format!("{k}={}", text(v)))
        .collect();
    vec![
        text(&r["instance"]),
        text(&r["address"]),
        tags.join(","),
        meta.join(","),
        text(&r["owner"]),
        text(&r["lease_expires_at"]),
    ]
}

async fn register(
    args: &ClientArgs,
    service: &str,
    instance: &str,
    body: Value,
) -> Result<(), ClientError> {
    let path = format!(
        "/v1/services/{}/instances/{}",
        encode(service),
        encode(instance)
    );
    let record = send(args, reqwest::Method::PUT, &path, &[], Some(body)).await?;
    if args.json {
        return print_json(&record);
    }
    println!(
        "registered {}/{} at {} (ttl {}, index {}, lease expires {})",
        text(&record["service"]),
        text(&record["instance"]),
        text(&record["address"]),
        text(&record["ttl"]),
        record["index"],
        text(&record["lease_expires_at"]),
    );
    Ok(())
}

async fn deregister(args: &ClientArgs, service: &str, instance: &str) -> Result<(), ClientError> {
    let path = format!(
        "/v1/services/{}/instances/{}",
        encode(service),
        encode(instance)
    );
    send(args, reqwest::Method::DELETE, &path, &[], None).await?;
    if args.json {
        return print_json(
            &json!({ "service": service, "instance": instance, "deregistered": true }),
        );
    }
    println!("deregistered {service}/{instance}");
    Ok(())
}

/// Sends one request; returns the JSON body (`null` for 204) or the node's error.
async fn send(
    args: &ClientArgs,
    method: reqwest::Method,
    path: &str,
    query: &[(&str, String)],
    body: Option<Value>,
) -> Result<Value, ClientError> {
    let client = http_client(args.timeout.into())?;
    let mut url = format!("{}{path}", args.base_url());
    if !query.is_empty() {
        let mut q = form_urlencoded::Serializer::new(String::new());
        for (k, v) in query {
            q.append_pair(k, v);
        }
        url = format!("{url}?{}", q.finish());
    }
    let mut request = client.request(method, &url);
    if let Some(body) = body {
        request = request.json(&body);
    }
    let unreachable = |e: reqwest::Error| ClientError::Unreachable {
        url: url.clone(),
        reason: root_cause(&e),
    };
    let response = request.send().await.map_err(unreachable)?;
    let status = response.status();
    let bytes = response.bytes().await.map_err(unreachable)?;
    let value: Value = if bytes.is_empty() {
        Value::Null
    } else {
        serde_json::from_slice(&bytes)
            .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into_owned()))
    };
    if status.is_success() {
        return Ok(value);
    }
    Err(ClientError::Api {
        status: status.as_u16(),
        code: value["error"]["code"]
            .as_str()
            .unwrap_or("http_error")
            .to_owned(),
        message: value["error"]["message"]
            .as_str()
            .map_or_else(|| value.to_string(), str::to_owned),
    })
}

fn root_cause(e: &(dyn std::error::Error + 'static)) -> String {
    let mut cause = e;
    while let Some(next) = cause.source() {
        cause = next;
    }
    if e.to_string().contains("timed out") || cause.to_string().contains("timed out") {
        return "timed out".into();
    }
    cause.to_string()
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

fn encode(segment: &str) -> String {
    form_urlencoded::byte_serialize(segment.as_bytes())
        .collect::<String>()
        .replace('+', "%20")
}

fn text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Null => String::new(),
        other => other.to_string(),
    }
}

fn print_json(v: &Value) -> Result<(), ClientError> {
    println!(
        "{}",
        serde_json::to_string_pretty(v).unwrap_or_else(|_| v.to_string())
    );
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

    #[test]
    fn tables_align_columns() {
        let t = table(&["A", "LONGER"], &[vec!["xyz".into(), "1".into()]]);
        assert_eq!(t, "A    LONGER\nxyz  1\n");
    }

    #[test]
    fn addresses_get_a_scheme_when_missing() {
        let mut a = ClientArgs {
            addr: "127.0.0.1:1".into(),
            json: false,
            timeout: Duration::from_secs(1).into(),
        };
        assert_eq!(a.base_url(), "http://127.0.0.1:1");
        a.addr = "http://h:2/".into();
        assert_eq!(a.base_url(), "http://h:2");
    }

    #[test]
    fn meta_flags_must_be_key_value() {
        assert_eq!(parse_pairs(&["a=b=c".into()]).unwrap()["a"], "b=c");
        assert!(parse_pairs(&["nope".into()]).is_err());
    }

    #[test]
    fn the_http_client_builds_without_a_process_wide_provider() {
        assert!(http_client(Duration::from_secs(1)).is_ok());
    }
}
