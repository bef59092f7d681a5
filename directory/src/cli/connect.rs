//! How a client subcommand reaches the directory ([`ClientArgs`]: nodes, token, CA, output)
//! and what can go wrong on the way ([`ClientError`], with the remedy a user needs).

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use clap::Args;
use directory_api::{Client, ValidationError};

use super::output::Output;
/// How to reach the directory.
#[derive(Debug, Clone, Args)]
pub struct ClientArgs {
    /// The directory node(s) to talk to: host:port or http(s)://host:port; several,
    /// comma-separated, are tried in turn. (`--addr` is an older name for it.)
    #[arg(
        long = "node",
        alias = "addr",
        value_name = "URL",
        env = "DIRECTORY_ADDR",
        default_value = "127.0.0.1:7700",
        value_delimiter = ','
    )]
    pub node: Vec<String>,
    /// Output format: table for people, json or yaml (the API's own fields) for scripts.
    #[arg(
        short = 'o',
        long,
        env = "DIRECTORY_OUTPUT",
        value_enum,
        default_value_t = Output::Table
    )]
    pub output: Output,
    /// Same as `-o json` (kept for older scripts).
    #[arg(long, hide = true, env = "DIRECTORY_JSON")]
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
        let mut builder = Client::builder(self.node.iter().cloned()).timeout(self.timeout.into());
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

    /// The output format (`--json` stands for `-o json`).
    pub fn output(&self) -> Output {
        if self.json { Output::Json } else { self.output }
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
    /// The node closed the watch stream (it is shutting down). Remedy: watch again.
    #[error("the node closed the watch stream")]
    WatchEnded,
}

/// The API client's error, with the remedy a command-line user needs.
fn describe(error: &directory_api::ClientError) -> String {
    use directory_api::ClientError as E;
    let hint = "use --node or DIRECTORY_ADDR to point elsewhere";
    match error {
        // rustls reading a plain-HTTP answer as a TLS record.
        E::Tls { reason, .. } if reason.contains("InvalidContentType") => format!(
            "cannot reach the directory node: {error}; the node does not seem to speak TLS: use an http:// URL"
        ),
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
