//! `directory acl ...`: manage the tokens of an ACL file (offline: edits the file; send the
//! nodes SIGHUP afterwards).

use std::path::{Path, PathBuf};

use anyhow::Context;
use clap::Subcommand;

use crate::acl::{AclFile, Rule};

/// ACL subcommands.
#[derive(Debug, Subcommand)]
pub enum AclCommand {
    /// Manage tokens.
    #[command(subcommand)]
    Token(TokenCommand),
    /// Print the short hash of an ACL file (first 16 hex digits of its SHA-256): what each
    /// node reports as `acl_hash` in `directory members`, to spot nodes running another
    /// version of the file.
    Hash {
        /// The ACL file.
        #[arg(long, env = "DIRECTORY_ACL_FILE")]
        acl_file: PathBuf,
    },
}

/// Token subcommands.
#[derive(Debug, Subcommand)]
pub enum TokenCommand {
    /// Create a token, add it to the file (created if missing) and print its secret. The
    /// secret is shown only this once: the file keeps its SHA-256.
    Create {
        /// The ACL file.
        #[arg(long, env = "DIRECTORY_ACL_FILE")]
        acl_file: PathBuf,
        /// What the token is for (shown in `acl token list`).
        #[arg(long)]
        name: String,
        /// A rule (repeatable): read:PATTERN, write:PATTERN, subscribe:PATTERN,
        /// publish:PATTERN or operator, where PATTERN is a service name (a topic for
        /// subscribe and publish), a prefix ending in * or *.
        #[arg(long = "rule", required = true)]
        rules: Vec<Rule>,
    },
    /// List the tokens of the file (ids, names, rules; never secrets).
    List {
        /// The ACL file.
        #[arg(long, env = "DIRECTORY_ACL_FILE")]
        acl_file: PathBuf,
    },
    /// Remove a token by its public id.
    Delete {
        /// The ACL file.
        #[arg(long, env = "DIRECTORY_ACL_FILE")]
        acl_file: PathBuf,
        /// The token's public id.
        #[arg(long)]
        id: String,
    },
}

/// Runs an ACL subcommand.
pub(super) fn run(command: AclCommand) -> anyhow::Result<()> {
    match command {
        AclCommand::Hash { acl_file } => {
            let (_, hash) = AclFile::load(&acl_file)?;
            println!("{}", hex::encode(crate::acl::short(&hash)));
        }
        AclCommand::Token(TokenCommand::Create {
            acl_file,
            name,
            rules,
        }) => create(&acl_file, &name, rules)?,
        AclCommand::Token(TokenCommand::List { acl_file }) => {
            let (file, _) = AclFile::load(&acl_file)?;
            let anonymous: Vec<String> = file.anonymous.iter().map(Rule::to_string).collect();
            println!("anonymous: {}", rules_text(&anonymous));
            println!("{:<16}  {:<24}  RULES", "ID", "NAME");
            for t in &file.tokens {
                let rules: Vec<String> = t.rules.iter().map(Rule::to_string).collect();
                println!("{:<16}  {:<24}  {}", t.id, t.name, rules_text(&rules));
            }
        }
        AclCommand::Token(TokenCommand::Delete { acl_file, id }) => {
            let (mut file, _) = AclFile::load(&acl_file)?;
            let before = file.tokens.len();
            file.tokens.retain(|t| t.id != id);
            anyhow::ensure!(
                file.tokens.len() < before,
                "no token with id {id} in {}",
                acl_file.display()
            );
            file.save(&acl_file)?;
            println!("deleted token {id}; send the nodes SIGHUP to apply");
        }
    }
    Ok(())
}

fn rules_text(rules: &[String]) -> String {
    if rules.is_empty() {
        "(none)".into()
    } else {
        rules.join(" ")
    }
}

/// Adds a token to `path` (a missing file starts empty) and prints its id and secret.
fn create(path: &Path, name: &str, rules: Vec<Rule>) -> anyhow::Result<()> {
    let mut file = if path.exists() {
        AclFile::load(path)?.0
    } else {
        AclFile::default()
    };
    let (entry, secret) = file.create_token(name, rules);
    file.save(path)
        .with_context(|| "the token was not created".to_owned())?;
    println!("id:     {}", entry.id);
    println!("secret: {secret}");
    eprintln!(
        "The secret is shown only now ({} keeps its SHA-256). Send the nodes SIGHUP to apply.",
        path.display()
    );
    Ok(())
}
