//! Command-line options for programs that embed a peer (feature `cli`): how a peer reaches
//! the directory — its base URLs, its ACL token and the CA that signed an `https`
//! directory's certificate. The `peer` tool and the examples flatten [`DirectoryAccess`]
//! into their arguments. The names and environment variables are the `directory` CLI's
//! (`--token`/`DIRECTORY_TOKEN`, `--ca`/`DIRECTORY_CA`), so one environment serves both.

use std::path::PathBuf;

use crate::PeerBuilder;
use anyhow::Context;

/// How a peer reaches the directory (`#[command(flatten)]` it into a program's options).
#[derive(Debug, Clone, clap::Args)]
pub struct DirectoryAccess {
    /// Directory base URLs, tried in order (repeat the flag or separate with commas);
    /// `https://` URLs need the node's CA (`--ca`) unless the system already trusts it.
    #[arg(
        long,
        env = "PEER_DIRECTORY",
        value_delimiter = ',',
        default_value = "http://127.0.0.1:7700"
    )]
    pub directory: Vec<String>,
    /// Bearer token sent with every directory request, for directories with ACLs
    /// (default: none, the anonymous rules apply).
    #[arg(long, env = "DIRECTORY_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
    /// PEM file of a certificate authority to trust for `https` directories, beside the
    /// system's roots (default: the system's roots only).
    #[arg(long, env = "DIRECTORY_CA")]
    pub ca: Option<PathBuf>,
}

impl DirectoryAccess {
    /// `builder` pointed at these URLs, with the token and the CA if given. Fails, changing
    /// nothing, when the CA file cannot be read.
    pub fn apply(&self, builder: PeerBuilder) -> anyhow::Result<PeerBuilder> {
        let mut builder = builder.directory(self.directory.clone());
        if let Some(token) = &self.token {
            builder = builder.directory_token(token.clone());
        }
        if let Some(path) = &self.ca {
            let pem = std::fs::read(path)
                .with_context(|| format!("reading the CA file {} (--ca)", path.display()))?;
            builder = builder.directory_ca_pem(pem);
        }
        Ok(builder)
    }
}
