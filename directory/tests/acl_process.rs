//! Access control through the real binary: tokens created with `directory acl token
//! create`, a node started with `--acl-file`, every route tried with every kind of caller,
//! SIGHUP reloads and the audit log.

mod process_support;

use std::path::Path;
use std::time::Duration;

use anyhow::{Context, Result};
use process_support::{BIN, LogLines, send_signal, serve_command, spawn_capturing, wait_for_log};
use reqwest::Method;
use serde_json::{Value, json};
use tokio::process::{Child, Command};
use tokio::time::Instant;

/// A token as printed by `directory acl token create`.
#[derive(Clone)]
struct Token {
    id: String,
    secret: String,
}

/// Creates a token in `file` through the CLI.
async fn create_token(file: &Path, name: &str, rules: &[&str]) -> Result<Token> {
    let mut cmd = Command::new(BIN);
    cmd.args(["acl", "token", "create", "--name", name, "--acl-file"])
        .arg(file);
    for rule in rules {
        cmd.args(["--rule", rule]);
    }
    let out = process_support::output_within(&mut cmd, process_support::ONE_SHOT_LIMIT).await?;
    anyhow::ensure!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout)?;
    let field = |name: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(name))
            .map(|v| v.trim().to_owned())
            .with_context(|| format!("no {name} in {text}"))
    };
    Ok(Token {
        id: field("id:")?,
        secret: field("secret:")?,
    })
}

/// A node started with `--acl-file`, its base URL and its captured log.
struct Node {
    child: Child,
    base: String,
    log: LogLines,
}

async fn start_node(acl_file: &Path) -> Result<Node> {
    let mut cmd = serve_command(&["--log-filter", "info", "--acl-file"]);
    cmd.arg(acl_file);
    let (child, addrs, log) = spawn_capturing(cmd, &["http_addr"], Duration::from_secs(20)).await?;
    Ok(Node {
        child,
        base: format!("http://{}", addrs[0]),
        log,
    })
}

fn client() -> reqwest::Client {
    directory::cli::http_client(Duration::from_secs(10)).expect("client builds")
}

/// One request with an optional token; returns the status and the JSON body (or Null).
async fn call(
    node: &Node,
    method: Method,
    path: &str,
    token: Option<&str>,
    body: Option<Value>,
) -> (u16, Value) {
    let mut request = client().request(method, format!("{}{path}", node.base));
    if let Some(secret) = token {
        request = request.bearer_auth(secret);
    }
    if let Some(body) = body {
        request = request.json(&body);
    }
    let response = request.send().await.expect("the node answers");
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

/// Everything observable about the store, read with the root token.
async fn store(node: &Node, root: &Token) -> Value {
    let (_, catalog) = call(node, Method::GET, "/v1/services", Some(&root.secret), None).await;
    let (_, billing) = call(
        node,
        Method::GET,
        "/v1/services/billing",
        Some(&root.secret),
        None,
    )
    .await;
    json!([catalog, billing])
}

fn register_body(address: &str) -> Value {
    json!({"address": address, "ttl": "5m"})
}

struct Callers {
    root: Token,
    writer: Token,
    reader: Token,
    other: Token,
    operator: Token,
}

async fn callers(file: &Path) -> Result<Callers> {
    Ok(Callers {
        root: create_token(file, "root", &["write:*", "operator"]).await?,
        writer: create_token(file, "billing peer", &["write:billing"]).await?,
        reader: create_token(file, "dashboards", &["read:*"]).await?,
        other: create_token(file, "orders peer", &["write:orders"]).await?,
        operator: create_token(file, "ops", &["operator"]).await?,
    })
}

/// Every caller of the matrix with the status it must get for a read of `billing`,
/// a write of `billing`, the catalog and the operator endpoints.
fn matrix(c: &Callers) -> Vec<(&'static str, Option<String>, [u16; 4])> {
    vec![
        ("no token", None, [401, 401, 401, 401]),
        (
            "wrong token",
            Some("dirtok_wrong".into()),
            [401, 401, 401, 401],
        ),
        (
            "read-only token",
            Some(c.reader.secret.clone()),
            [200, 403, 200, 403],
        ),
        (
            "token for another service",
            Some(c.other.secret.clone()),
            [403, 403, 200, 403],
        ),
        (
            "operator token",
            Some(c.operator.secret.clone()),
            [403, 403, 403, 200],
        ),
        (
            "billing token",
            Some(c.writer.secret.clone()),
            [200, 200, 200, 403],
        ),
    ]
}

#[tokio::test]
async fn every_route_enforces_the_token_rules_and_refusals_change_nothing() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let file = dir.path().join("acl.json");
    let c = callers(&file).await?;
    let node = start_node(&file).await?;
    let instance = "/v1/services/billing/instances/b1";
    let (status, _) = call(
        &node,
        Method::PUT,
        instance,
        Some(&c.writer.secret),
        Some(register_body("127.0.0.1:7000")),
    )
    .await;
    assert_eq!(status, 200);
    let (status, _) = call(
        &node,
        Method::PUT,
        "/v1/services/orders/instances/o1",
        Some(&c.other.secret),
        Some(register_body("127.0.0.1:7001")),
    )
    .await;
    assert_eq!(status, 200);

    for (who, token, [read, write, catalog, operator]) in matrix(&c) {
        let token = token.as_deref();
        let before = store(&node, &c.root).await;
        let writes = [
            (
                Method::PUT,
                instance.to_owned(),
                Some(register_body("127.0.0.1:6666")),
            ),
            (Method::POST, format!("{instance}/heartbeat"), None),
        ];
        for (method, path, body) in writes {
            let (status, body) = call(&node, method.clone(), &path, token, body).await;
            assert_eq!(status, write, "{who}: {method} {path}: {body}");
            if status != 200 {
                assert_eq!(
                    body["error"]["code"],
                    if write == 401 {
                        "unauthorized"
                    } else {
                        "forbidden"
                    },
                    "{who}"
                );
                assert_eq!(
                    store(&node, &c.root).await,
                    before,
                    "{who}: a refused {method} changed the store"
                );
            }
        }
        let reads = [
            instance.to_owned(),
            "/v1/services/billing".to_owned(),
            "/v1/services/billing?index=1&wait=100ms".to_owned(),
        ];
        for path in reads {
            let (status, body) = call(&node, Method::GET, &path, token, None).await;
            assert_eq!(status, read, "{who}: GET {path}: {body}");
        }
        let watch = client().get(format!("{}/v1/watch?service=billing", node.base));
        let watch = match token {
            Some(t) => watch.bearer_auth(t),
            None => watch,
        };
        assert_eq!(watch.send().await?.status().as_u16(), read, "{who}: watch");
        let (status, _) = call(&node, Method::GET, "/v1/services", token, None).await;
        assert_eq!(status, catalog, "{who}: catalog");
        for path in ["/v1/cluster/members", "/metrics"] {
            let response = client().get(format!("{}{path}", node.base));
            let response = match token {
                Some(t) => response.bearer_auth(t),
                None => response,
            };
            assert_eq!(
                response.send().await?.status().as_u16(),
                operator,
                "{who}: {path}"
            );
        }
        let (status, _) = call(&node, Method::GET, "/v1/health", token, None).await;
        assert_eq!(status, 200, "{who}: health is always open");
        // Deregistration last: the one allowed caller removes the instance.
        let (status, _) = call(&node, Method::DELETE, instance, token, None).await;
        assert_eq!(
            status,
            if write == 200 { 204 } else { write },
            "{who}: DELETE"
        );
        if write != 200 {
            assert_eq!(
                store(&node, &c.root).await,
                before,
                "{who}: a refused DELETE changed the store"
            );
        }
    }
    Ok(())
}

#[tokio::test]
async fn lookups_catalog_and_watch_show_only_what_the_token_may_read() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let file = dir.path().join("acl.json");
    let c = callers(&file).await?;
    let node = start_node(&file).await?;
    for service in ["billing", "orders"] {
        let path = format!("/v1/services/{service}/instances/{service}-1");
        let (status, _) = call(
            &node,
            Method::PUT,
            &path,
            Some(&c.root.secret),
            Some(register_body("127.0.0.1:7000")),
        )
        .await;
        assert_eq!(status, 200);
    }
    let names = |body: &Value| -> Vec<String> {
        body["services"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| s["service"].as_str().unwrap().to_owned())
            .collect()
    };
    let (_, catalog) = call(
        &node,
        Method::GET,
        "/v1/services",
        Some(&c.writer.secret),
        None,
    )
    .await;
    assert_eq!(names(&catalog), ["billing"]);
    let (_, catalog) = call(
        &node,
        Method::GET,
        "/v1/services",
        Some(&c.reader.secret),
        None,
    )
    .await;
    assert_eq!(names(&catalog), ["billing", "orders"]);

    // An unfiltered watch with the billing token: the orders event is not shown.
    let mut watch = client()
        .get(format!("{}/v1/watch", node.base))
        .bearer_auth(&c.writer.secret)
        .send()
        .await?;
    assert_eq!(watch.status().as_u16(), 200);
    for service in ["orders", "billing"] {
        let path = format!("/v1/services/{service}/instances/{service}-2");
        call(
            &node,
            Method::PUT,
            &path,
            Some(&c.root.secret),
            Some(register_body("127.0.0.1:7002")),
        )
        .await;
    }
    let first = first_event(&mut watch).await?;
    assert_eq!(first["service"], "billing", "{first}");

    // A blocking query with a read token wakes on a change of its service.
    let (_, now) = call(
        &node,
        Method::GET,
        "/v1/services/billing",
        Some(&c.reader.secret),
        None,
    )
    .await;
    let index = now["index"].as_u64().unwrap();
    let blocked = {
        let url = format!("{}/v1/services/billing?index={index}&wait=20s", node.base);
        let secret = c.reader.secret.clone();
        tokio::spawn(async move {
            client()
                .get(url)
                .bearer_auth(secret)
                .send()
                .await
                .map(|r| r.status().as_u16())
        })
    };
    tokio::time::sleep(Duration::from_millis(200)).await;
    call(
        &node,
        Method::PUT,
        "/v1/services/billing/instances/billing-3",
        Some(&c.writer.secret),
        Some(register_body("127.0.0.1:7003")),
    )
    .await;
    let status = tokio::time::timeout(Duration::from_secs(10), blocked).await???;
    assert_eq!(status, 200);
    Ok(())
}

/// The data of the first change event on an SSE stream.
async fn first_event(watch: &mut reqwest::Response) -> Result<Value> {
    let mut buffer = String::new();
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let chunk = tokio::time::timeout_at(deadline, watch.chunk())
            .await?
            .context("stream ended")?;
        buffer.push_str(std::str::from_utf8(&chunk.context("stream ended")?)?);
        if let Some(data) = buffer.lines().find_map(|l| l.strip_prefix("data: ")) {
            return Ok(serde_json::from_str(data)?);
        }
    }
}

#[tokio::test]
async fn the_hijack_is_refused_and_writes_are_audited_without_secrets() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let file = dir.path().join("acl.json");
    let c = callers(&file).await?;
    let node = start_node(&file).await?;
    let victim = "/v1/services/billing/instances/billing-1";
    let genuine = json!({"address": "127.0.0.1:7000", "ttl": "5m", "fingerprint": "ab".repeat(32)});
    let (status, _) = call(
        &node,
        Method::PUT,
        victim,
        Some(&c.writer.secret),
        Some(genuine),
    )
    .await;
    assert_eq!(status, 200);
    let before = store(&node, &c.root).await;
    let impostor =
        json!({"address": "127.0.0.1:6666", "ttl": "5m", "fingerprint": "cd".repeat(32)});
    let (status, body) = call(
        &node,
        Method::PUT,
        victim,
        Some(&c.other.secret),
        Some(impostor),
    )
    .await;
    assert_eq!(status, 403, "{body}");
    let (status, _) = call(&node, Method::DELETE, victim, Some(&c.other.secret), None).await;
    assert_eq!(status, 403);
    assert_eq!(
        store(&node, &c.root).await,
        before,
        "the impostor changed nothing"
    );
    let (_, record) = call(&node, Method::GET, victim, Some(&c.reader.secret), None).await;
    assert_eq!(record["address"], "127.0.0.1:7000");

    let limit = Duration::from_secs(5);
    let allowed = wait_for_log(
        &node.log,
        &["directory::audit", &c.writer.id, "PUT", victim, "200"],
        limit,
    )
    .await?;
    let refused = wait_for_log(
        &node.log,
        &["directory::audit", &c.other.id, "DELETE", "403"],
        limit,
    )
    .await?;
    assert!(allowed.contains("\"status\":200") && refused.contains("\"status\":403"));
    let lines = node.log.lock().unwrap().clone();
    for token in [&c.root, &c.writer, &c.reader, &c.other, &c.operator] {
        assert!(
            lines.iter().all(|l| !l.contains(&token.secret)),
            "a secret was logged"
        );
    }
    Ok(())
}

#[tokio::test]
async fn sighup_reloads_the_rules_and_a_bad_file_keeps_the_old_ones() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let file = dir.path().join("acl.json");
    let c = callers(&file).await?;
    let node = start_node(&file).await?;
    let billing = "/v1/services/billing";
    assert_eq!(call(&node, Method::GET, billing, None, None).await.0, 401);
    let hash_of = |members: &Value| {
        members["members"][0]["acl_hash"]
            .as_str()
            .map(str::to_owned)
    };
    let (_, members) = call(
        &node,
        Method::GET,
        "/v1/cluster/members",
        Some(&c.operator.secret),
        None,
    )
    .await;
    assert_eq!(hash_of(&members), Some(file_hash(&file).await?));
    let mut watch = client()
        .get(format!("{}/v1/watch", node.base))
        .bearer_auth(&c.reader.secret)
        .send()
        .await?;

    // Open billing to anonymous readers and revoke the orders token.
    let mut acl: Value = serde_json::from_str(&std::fs::read_to_string(&file)?)?;
    acl["anonymous"] = json!(["read:billing"]);
    acl["tokens"]
        .as_array_mut()
        .unwrap()
        .retain(|t| t["id"] != c.other.id.as_str());
    std::fs::write(&file, serde_json::to_string_pretty(&acl)?)?;
    send_signal(&node.child, "HUP").await?;
    wait_for_log(&node.log, &["ACL file reloaded"], Duration::from_secs(5)).await?;
    assert_eq!(call(&node, Method::GET, billing, None, None).await.0, 200);
    assert_eq!(
        call(&node, Method::GET, "/v1/services/orders", None, None)
            .await
            .0,
        401
    );
    let (status, body) = call(&node, Method::GET, billing, Some(&c.other.secret), None).await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (401, Some("unauthorized")),
        "revoked"
    );
    let (_, members) = call(
        &node,
        Method::GET,
        "/v1/cluster/members",
        Some(&c.operator.secret),
        None,
    )
    .await;
    assert_eq!(hash_of(&members), Some(file_hash(&file).await?));
    let ended = tokio::time::timeout(Duration::from_secs(5), async {
        while let Ok(Some(_)) = watch.chunk().await {}
    });
    ended
        .await
        .context("an open watch stream ends at a reload")?;

    // A broken file: the node says why and keeps the rules it had.
    std::fs::write(&file, "{\"anonymous\": [\"read:*\"], \"tokens\": 7}")?;
    send_signal(&node.child, "HUP").await?;
    wait_for_log(
        &node.log,
        &["NOT reloaded", "invalid ACL file"],
        Duration::from_secs(5),
    )
    .await?;
    assert_eq!(call(&node, Method::GET, billing, None, None).await.0, 200);
    assert_eq!(
        call(&node, Method::GET, "/v1/services/orders", None, None)
            .await
            .0,
        401
    );
    assert_eq!(
        call(&node, Method::GET, billing, Some(&c.reader.secret), None)
            .await
            .0,
        200
    );
    Ok(())
}

/// `directory acl hash --acl-file FILE`.
async fn file_hash(file: &Path) -> Result<String> {
    let mut cmd = Command::new(BIN);
    cmd.args(["acl", "hash", "--acl-file"]).arg(file);
    let out = process_support::output_within(&mut cmd, process_support::ONE_SHOT_LIMIT).await?;
    anyhow::ensure!(out.status.success());
    Ok(String::from_utf8(out.stdout)?.trim().to_owned())
}

#[tokio::test]
async fn a_bad_acl_file_stops_the_start_and_no_file_warns_that_the_api_is_open() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let file = dir.path().join("acl.json");
    std::fs::write(&file, "{\"tokens\": [{\"id\": \"x\"}]}")?;
    let mut cmd = serve_command(&["--acl-file"]);
    cmd.arg(&file);
    // Bounded: a regression that accepted the bad file would otherwise serve forever.
    let out = process_support::output_within(&mut cmd, process_support::ONE_SHOT_LIMIT).await?;
    assert!(!out.status.success());
    let stderr = String::from_utf8(out.stderr)?;
    assert!(
        stderr.contains("invalid ACL file") && stderr.contains("acl.json"),
        "{stderr}"
    );

    let (mut child, _, log) =
        spawn_capturing(serve_command(&[]), &["http_addr"], Duration::from_secs(20)).await?;
    wait_for_log(&log, &["WARN", "API is OPEN"], Duration::from_secs(5)).await?;
    child.kill().await?;
    Ok(())
}

/// A cluster node with an ACL file; returns it with its gossip address.
async fn start_cluster_node(
    acl_file: &Path,
    key: &str,
    join: Option<&str>,
) -> Result<(Node, String)> {
    let mut cmd = serve_command(&[
        "--log-filter",
        "info",
        "--gossip-addr",
        "127.0.0.1:0",
        "--acl-file",
    ]);
    cmd.arg(acl_file).env("DIRECTORY_CLUSTER_KEY", key);
    if let Some(seed) = join {
        cmd.args(["--join", seed]);
    }
    let (child, addrs, log) =
        spawn_capturing(cmd, &["http_addr", "gossip_addr"], Duration::from_secs(20)).await?;
    let node = Node {
        child,
        base: format!("http://{}", addrs[0]),
        log,
    };
    Ok((node, addrs[1].clone()))
}

/// The `acl_hash` of every member as `node` sees them, by gossip address.
async fn acl_hashes(node: &Node, operator: &Token) -> Vec<(String, Option<String>)> {
    let (_, members) = call(
        node,
        Method::GET,
        "/v1/cluster/members",
        Some(&operator.secret),
        None,
    )
    .await;
    members["members"]
        .as_array()
        .map(|rows| {
            rows.iter()
                .map(|m| {
                    (
                        m["address"].as_str().unwrap_or_default().to_owned(),
                        m["acl_hash"].as_str().map(str::to_owned),
                    )
                })
                .collect()
        })
        .unwrap_or_default()
}

#[tokio::test]
async fn every_node_sees_which_members_enforce_another_acl_file() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let (file_a, file_b) = (dir.path().join("a.json"), dir.path().join("b.json"));
    let operator = create_token(&file_a, "ops", &["operator"]).await?;
    std::fs::copy(&file_a, &file_b)?;
    create_token(&file_b, "extra", &["read:*"]).await?; // b now differs
    let key = directory::gossip::ClusterKey::generate().to_base64();
    let (a, gossip_a) = start_cluster_node(&file_a, &key, None).await?;
    let (b, gossip_b) = start_cluster_node(&file_b, &key, Some(&gossip_a)).await?;
    let (hash_a, hash_b) = (file_hash(&file_a).await?, file_hash(&file_b).await?);
    assert_ne!(hash_a, hash_b);

    let expected = |b_hash: &str| {
        vec![
            (gossip_a.clone(), Some(hash_a.clone())),
            (gossip_b.clone(), Some(b_hash.to_owned())),
        ]
    };
    let seen_by_a = |want: Vec<(String, Option<String>)>| {
        let a = &a;
        let operator = &operator;
        async move {
            let mut want = want;
            want.sort();
            let deadline = Instant::now() + Duration::from_secs(20);
            loop {
                let mut got = acl_hashes(a, operator).await;
                got.sort();
                if got == want {
                    return Ok(());
                }
                anyhow::ensure!(
                    Instant::now() < deadline,
                    "node a sees {got:?}, expected {want:?}"
                );
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    };
    seen_by_a(expected(&hash_b)).await?;

    // Fix the drift: b gets a's file, SIGHUP, and a sees b agree.
    std::fs::copy(&file_a, &file_b)?;
    send_signal(&b.child, "HUP").await?;
    seen_by_a(expected(&hash_a)).await?;
    Ok(())
}

#[tokio::test]
async fn consul_writes_with_consul_tokens_are_audited_without_secrets() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let file = dir.path().join("acl.json");
    let c = callers(&file).await?;
    let node = start_node(&file).await?;
    let register = "/v1/agent/service/register";
    let body = json!({"Name": "billing", "ID": "billing-1", "Port": 7000}).to_string();
    let by_header = client()
        .put(format!("{}{register}", node.base))
        .header("x-consul-token", &c.writer.secret)
        .body(body.clone())
        .send()
        .await?;
    assert_eq!(by_header.status().as_u16(), 200);
    let by_query = client()
        .put(format!("{}{register}?token={}", node.base, c.other.secret))
        .body(body)
        .send()
        .await?;
    assert_eq!(
        by_query.status().as_u16(),
        403,
        "orders' token may not write billing"
    );

    let limit = Duration::from_secs(5);
    wait_for_log(
        &node.log,
        &["directory::audit", &c.writer.id, "PUT", register, "200"],
        limit,
    )
    .await?;
    wait_for_log(
        &node.log,
        &["directory::audit", &c.other.id, "PUT", register, "403"],
        limit,
    )
    .await?;
    let lines = node.log.lock().unwrap().clone();
    for token in [&c.writer, &c.other] {
        assert!(
            lines.iter().all(|l| !l.contains(&token.secret)),
            "a secret was logged"
        );
    }
    Ok(())
}
