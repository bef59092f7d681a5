//! An SDK peer with a scoped token (`write:billing`) registers its own service on a
//! directory with ACLs and is refused another's.

use std::time::Duration;

use anyhow::Result;
use directory::acl::AclFile;
use peer_sdk::Peer;

#[tokio::test]
async fn a_peer_with_a_scoped_token_registers_its_service_and_no_other() -> Result<()> {
    let dir = std::env::temp_dir().join(format!("acl-sdk-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let path = dir.join("acl.json");
    let mut file = AclFile::default();
    let (_, billing) = file.create_token("billing", vec!["write:billing".parse()?]);
    file.save(&path)?;
    let config = directory::Config {
        http_addr: "127.0.0.1:0".parse()?,
        acl_file: Some(path),
        ..directory::Config::default()
    };
    let node = directory::Server::start(config).await?;
    let url = format!("http://{}", node.http_addr());

    let own = Peer::builder("billing")
        .directory([url.clone()])
        .directory_token(billing.clone())
        .start()
        .await?;
    let (_, listed) = node.registry().services();
    assert_eq!(listed.len(), 1, "billing is registered");
    let other = tokio::time::timeout(
        Duration::from_secs(20),
        Peer::builder("orders")
            .directory([url])
            .directory_token(billing)
            .start(),
    )
    .await?;
    let err = other.err().map(|e| e.to_string()).unwrap_or_default();
    assert!(
        err.contains("forbidden") || err.contains("403"),
        "orders was not refused: {err:?}"
    );
    let (_, listed) = node.registry().services();
    assert_eq!(listed.len(), 1, "nothing registered for orders");
    own.shutdown().await;
    node.shutdown().await;
    std::fs::remove_dir_all(&dir)?;
    Ok(())
}
