//! The OpenAPI document as a contract: every operation has examples, each example is valid
//! against its schema, the request examples sent to a real router get answers shaped like
//! the response examples, and every status a route answers with is declared for it.

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::{Body, to_bytes};
use axum::http::{Request, StatusCode};
use directory::Config;
use directory::acl::{Acl, AclFile};
use directory::gossip::ClusterContact;
use directory::http::{ApiDoc, AppState, router};
use directory::registry::{Address, InstanceId, Registration, Registry, ServiceName};
use futures_util::StreamExt;
use serde_json::{Map, Value, json};
use tokio_util::sync::CancellationToken;
use tower::ServiceExt;
use utoipa::OpenApi;

/// One operation of the document.
struct Operation {
    method: String,
    path: String,
    spec: Value,
}

impl Operation {
    fn name(&self) -> String {
        format!("{} {}", self.method.to_uppercase(), self.path)
    }

    fn declares(&self, status: StatusCode) -> bool {
        self.spec["responses"]
            .get(status.as_str())
            .is_some_and(Value::is_object)
    }
}

fn document() -> Value {
    serde_json::to_value(ApiDoc::openapi()).unwrap()
}

/// Every operation, writes first and deletions last (the order the example requests are
/// sent in: register, then read, then deregister).
fn operations(doc: &Value) -> Vec<Operation> {
    let mut ops: Vec<Operation> = doc["paths"]
        .as_object()
        .unwrap()
        .iter()
        .flat_map(|(path, item)| {
            item.as_object()
                .unwrap()
                .iter()
                .map(|(method, spec)| Operation {
                    method: method.clone(),
                    path: path.clone(),
                    spec: spec.clone(),
                })
        })
        .collect();
    let rank = |op: &Operation| match op.method.as_str() {
        "put" => 0,
        "delete" => 2,
        _ => 1,
    };
    ops.sort_by_key(|op| (rank(op), op.path.clone()));
    ops
}

/// The examples of one media type: `example`, or the values of `examples`.
fn examples(content: &Value) -> Vec<Value> {
    let mut out: Vec<Value> = content.get("example").cloned().into_iter().collect();
    for named in content["examples"]
        .as_object()
        .into_iter()
        .flat_map(Map::values)
    {
        out.push(named["value"].clone());
    }
    out
}

#[test]
fn operation_ids_are_unique() {
    // OpenAPI requires it; client generators name methods after them.
    let doc = document();
    let mut seen = std::collections::BTreeMap::new();
    for op in operations(&doc) {
        let id = op.spec["operationId"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        if let Some(other) = seen.insert(id.clone(), op.name()) {
            panic!("operationId {id:?} on both {other} and {}", op.name());
        }
    }
}

#[test]
fn every_operation_has_request_and_response_examples() {
    let doc = document();
    let mut missing = Vec::new();
    for op in operations(&doc) {
        for param in op.spec["parameters"].as_array().into_iter().flatten() {
            if param.get("example").is_none() {
                missing.push(format!("{}: parameter {}", op.name(), param["name"]));
            }
        }
        for (media, content) in op.spec["requestBody"]["content"]
            .as_object()
            .into_iter()
            .flatten()
        {
            if examples(content).is_empty() {
                missing.push(format!("{}: request body {media}", op.name()));
            }
        }
        for (status, response) in op.spec["responses"].as_object().unwrap() {
            for (media, content) in response["content"].as_object().into_iter().flatten() {
                if examples(content).is_empty() {
                    missing.push(format!("{}: response {status} {media}", op.name()));
                }
            }
        }
    }
    assert!(missing.is_empty(), "examples missing: {missing:#?}");
}

#[test]
fn every_example_is_valid_against_its_schema() {
    let doc = document();
    let mut invalid = Vec::new();
    let mut checked = 0;
    let mut check = |what: String, value: &Value, schema: &Value| {
        checked += 1;
        if let Err(e) = validate(&doc, value, schema) {
            invalid.push(format!("{what}: {e}"));
        }
    };
    for op in operations(&doc) {
        for param in op.spec["parameters"].as_array().into_iter().flatten() {
            if let Some(example) = param.get("example") {
                let what = format!("{}: parameter {}", op.name(), param["name"]);
                check(what, example, &param["schema"]);
            }
        }
        let bodies = op.spec["requestBody"]["content"].as_object().cloned();
        for (media, content) in bodies.into_iter().flatten() {
            for example in examples(&content) {
                check(
                    format!("{}: request {media}", op.name()),
                    &example,
                    &content["schema"],
                );
            }
        }
        for (status, response) in op.spec["responses"].as_object().unwrap() {
            for (media, content) in response["content"].as_object().into_iter().flatten() {
                for example in examples(content) {
                    let what = format!("{}: {status} {media}", op.name());
                    check(what, &example, &content["schema"]);
                }
            }
        }
    }
    assert!(invalid.is_empty(), "invalid examples: {invalid:#?}");
    assert!(checked > 60, "only {checked} examples checked");
}

/// Validates `value` against `schema`: the JSON Schema keywords this document uses (an
/// unknown keyword is an error, so a new one cannot pass unchecked).
fn validate(doc: &Value, value: &Value, schema: &Value) -> Result<(), String> {
    let Some(keywords) = schema.as_object() else {
        return match schema {
            Value::Bool(true) => Ok(()),
            _ => Err(format!("schema {schema} is not an object")),
        };
    };
    for (keyword, rule) in keywords {
        check_keyword(doc, value, keyword, rule, schema)
            .map_err(|e| format!("{keyword}: {e} (value {value})"))?;
    }
    Ok(())
}

fn check_keyword(
    doc: &Value,
    value: &Value,
    keyword: &str,
    rule: &Value,
    schema: &Value,
) -> Result<(), String> {
    let ok = |holds: bool| {
        if holds {
            Ok(())
        } else {
            Err("fails".to_owned())
        }
    };
    let len = |v: &Value| v.as_str().map(|s| s.chars().count() as u64);
    let limit = || rule.as_u64().unwrap();
    match keyword {
        "description" | "title" | "format" | "example" | "examples" | "default"
        | "contentMediaType" | "deprecated" => Ok(()),
        "$ref" => {
            let name = rule
                .as_str()
                .unwrap()
                .trim_start_matches("#/components/schemas/");
            validate(doc, value, &doc["components"]["schemas"][name])
        }
        "type" => {
            let types: Vec<&str> = match rule {
                Value::Array(many) => many.iter().filter_map(Value::as_str).collect(),
                one => vec![one.as_str().unwrap()],
            };
            ok(types.iter().any(|t| has_type(value, t)))
        }
        "enum" => ok(rule.as_array().unwrap().contains(value)),
        "properties" => {
            let (Some(object), Some(properties)) = (value.as_object(), rule.as_object()) else {
                return Ok(());
            };
            for (name, property) in properties {
                if let Some(field) = object.get(name) {
                    validate(doc, field, property).map_err(|e| format!("{name}: {e}"))?;
                }
            }
            Ok(())
        }
        "required" => {
            let Some(object) = value.as_object() else {
                return Ok(());
            };
            let absent: Vec<&Value> = rule
                .as_array()
                .unwrap()
                .iter()
                .filter(|name| !object.contains_key(name.as_str().unwrap()))
                .collect();
            ok(absent.is_empty()).map_err(|_| format!("missing {absent:?}"))
        }
        "additionalProperties" => {
            let Some(object) = value.as_object() else {
                return Ok(());
            };
            let declared = schema["properties"].as_object();
            for (name, field) in object {
                if declared.is_some_and(|d| d.contains_key(name)) {
                    continue;
                }
                validate(doc, field, rule).map_err(|e| format!("{name}: {e}"))?;
            }
            Ok(())
        }
        "propertyNames" => value.as_object().map_or(Ok(()), |object| {
            object
                .keys()
                .try_for_each(|name| validate(doc, &json!(name), rule))
        }),
        "maxProperties" => ok(value.as_object().is_none_or(|o| o.len() as u64 <= limit())),
        "items" => value.as_array().map_or(Ok(()), |items| {
            items.iter().try_for_each(|item| validate(doc, item, rule))
        }),
        "maxItems" => ok(value.as_array().is_none_or(|a| a.len() as u64 <= limit())),
        "minItems" => ok(value.as_array().is_none_or(|a| a.len() as u64 >= limit())),
        "minLength" => ok(len(value).is_none_or(|n| n >= limit())),
        "maxLength" => ok(len(value).is_none_or(|n| n <= limit())),
        "pattern" => {
            let pattern = regex::Regex::new(rule.as_str().unwrap()).map_err(|e| e.to_string())?;
            ok(value.as_str().is_none_or(|s| pattern.is_match(s)))
        }
        "minimum" => ok(value.as_f64().is_none_or(|n| n >= rule.as_f64().unwrap())),
        "maximum" => ok(value.as_f64().is_none_or(|n| n <= rule.as_f64().unwrap())),
        "oneOf" | "anyOf" => {
            let passing = rule
                .as_array()
                .unwrap()
                .iter()
                .filter(|s| validate(doc, value, s).is_ok())
                .count();
            ok(passing == 1 || (keyword == "anyOf" && passing > 1))
        }
        "allOf" => rule
            .as_array()
            .unwrap()
            .iter()
            .try_for_each(|s| validate(doc, value, s)),
        // A string holding JSON: validate the JSON it holds.
        "contentSchema" => value.as_str().map_or(Ok(()), |text| {
            let inner: Value = serde_json::from_str(text).map_err(|e| e.to_string())?;
            validate(doc, &inner, rule)
        }),
        other => Err(format!("unsupported keyword {other}")),
    }
}

fn has_type(value: &Value, name: &str) -> bool {
    match name {
        "object" => value.is_object(),
        "array" => value.is_array(),
        "string" => value.is_string(),
        "integer" => value.is_i64() || value.is_u64(),
        "number" => value.is_number(),
        "boolean" => value.is_boolean(),
        "null" => value.is_null(),
        _ => false,
    }
}

#[test]
fn the_validator_refuses_what_the_schemas_refuse() {
    let doc = document();
    let record = json!({"$ref": "#/components/schemas/Record"});
    let body = json!({"$ref": "#/components/schemas/RegisterBody"});
    assert!(validate(&doc, &json!({"service": "orders"}), &record).is_err());
    assert!(validate(&doc, &json!({"address": "no port"}), &body).is_err());
    assert!(
        validate(
            &doc,
            &json!({"address": "10.0.0.5:7000", "ttl": "2h"}),
            &body
        )
        .is_err()
    );
    assert!(
        validate(
            &doc,
            &json!({"address": "10.0.0.5:7000", "ttl": "10s"}),
            &body
        )
        .is_ok()
    );
}

fn app_with(config: Config, acl: Option<Acl>) -> (Router, Registry) {
    let registry = Registry::new(config.registry.clone());
    // The process-wide recorder, as a node uses: `/metrics` then renders what is recorded.
    let state = AppState::new(
        registry.clone(),
        Arc::new(config),
        directory::prometheus_handle(),
        CancellationToken::new(),
    )
    .with_acl(acl.map(Arc::new));
    (router(state), registry)
}

/// A config whose blocking queries end at once (the examples' `index` may not be passed).
fn quick_config() -> Config {
    let mut config = Config::for_test();
    config.max_wait = Duration::from_millis(20);
    config
}

/// The example request of `op`: path and query parameters from their examples, the body
/// example, plus `extra` query text and `headers`.
fn example_request(op: &Operation, extra: &str, headers: &[(&str, &str)]) -> Request<Body> {
    let mut path = op.path.clone();
    let mut query: Vec<(String, String)> = form_urlencoded::parse(extra.as_bytes())
        .into_owned()
        .collect();
    let mut builder = Request::builder().method(op.method.to_uppercase().as_str());
    for param in op.spec["parameters"].as_array().into_iter().flatten() {
        let (name, example) = (param["name"].as_str().unwrap(), &param["example"]);
        let values: Vec<String> = match example {
            Value::Array(items) => items.iter().map(plain).collect(),
            one => vec![plain(one)],
        };
        match param["in"].as_str().unwrap() {
            "path" => path = path.replace(&format!("{{{name}}}"), &values[0]),
            "query" => query.extend(values.into_iter().map(|v| (name.to_owned(), v))),
            "header" => builder = builder.header(name, &values[0]),
            other => panic!("parameter in {other}"),
        }
    }
    for (name, value) in headers {
        builder = builder.header(*name, *value);
    }
    let query = form_urlencoded::Serializer::new(String::new())
        .extend_pairs(query)
        .finish();
    let uri = if query.is_empty() {
        path
    } else {
        format!("{path}?{query}")
    };
    let body = &op.spec["requestBody"]["content"]["application/json"]["example"];
    let body = if body.is_null() {
        Body::empty()
    } else {
        Body::from(body.to_string())
    };
    builder.uri(uri).body(body).unwrap()
}

/// A parameter example as it goes on the wire (strings unquoted).
fn plain(value: &Value) -> String {
    value
        .as_str()
        .map_or_else(|| value.to_string(), str::to_owned)
}

/// The status and body of an answer; a watch stream is read up to its first event.
async fn answer(app: &Router, request: Request<Body>) -> (StatusCode, String, Vec<u8>) {
    let response = app.clone().oneshot(request).await.unwrap();
    let status = response.status();
    let media = response
        .headers()
        .get("content-type")
        .map(|v| v.to_str().unwrap().to_owned())
        .unwrap_or_default();
    let body = if media.starts_with("text/event-stream") {
        first_event(response.into_body()).await
    } else {
        to_bytes(response.into_body(), 4 << 20)
            .await
            .unwrap()
            .to_vec()
    };
    (status, media, body)
}

/// The stream up to its first event (keep-alive comments skipped), within 5 s.
async fn first_event(body: Body) -> Vec<u8> {
    let mut stream = body.into_data_stream();
    let mut seen = Vec::new();
    let read = async {
        while let Some(chunk) = stream.next().await {
            seen.extend_from_slice(&chunk.unwrap());
            let text = String::from_utf8_lossy(&seen);
            if text.contains("data:") && text.contains("\n\n") {
                break;
            }
        }
    };
    tokio::time::timeout(Duration::from_secs(5), read)
        .await
        .expect("a first event within 5 s");
    seen
}

/// One SSE event in the document's form: `{"event","id","data"}`.
fn parse_event(bytes: &[u8]) -> Value {
    let mut event = Map::new();
    for line in String::from_utf8_lossy(bytes).lines() {
        if let Some((field, value)) = line.split_once(':')
            && ["event", "id", "data"].contains(&field)
        {
            event.insert(field.into(), json!(value.trim_start()));
        }
    }
    Value::Object(event)
}

/// Whether `example` claims nothing `actual` lacks: same JSON types, every key of an
/// example object present in the answer (arrays: first items compared).
fn same_shape(example: &Value, actual: &Value, at: &str) -> Result<(), String> {
    match (example, actual) {
        (Value::Object(e), Value::Object(a)) => e.iter().try_for_each(|(key, value)| {
            let inner = a
                .get(key)
                .ok_or_else(|| format!("{at}.{key}: in the example, not in the answer"))?;
            same_shape(value, inner, &format!("{at}.{key}"))
        }),
        (Value::Array(e), Value::Array(a)) => match (e.first(), a.first()) {
            (Some(e), Some(a)) => same_shape(e, a, &format!("{at}[0]")),
            _ => Ok(()),
        },
        // A nullable field (the schemas say which): `null` in one, a value in the other.
        (Value::Null, _) | (_, Value::Null) => Ok(()),
        (e, a) if std::mem::discriminant(e) == std::mem::discriminant(a) => Ok(()),
        (Value::Number(_), Value::Number(_)) => Ok(()),
        _ => Err(format!("{at}: example {example}, answer {actual}")),
    }
}

/// Compares an answer with the operation's example for its status.
fn compare(op: &Operation, status: StatusCode, media: &str, body: &[u8]) -> Result<(), String> {
    let declared = &op.spec["responses"][status.as_str()];
    let Some(contents) = declared["content"].as_object() else {
        return match body.is_empty() {
            true => Ok(()),
            false => Err(format!(
                "{status}: declared without content, answered a body"
            )),
        };
    };
    let media = media.split(';').next().unwrap_or_default();
    let content = &contents
        .get(media)
        .ok_or_else(|| format!("{status}: answered {media}, declared {contents:?}"))?;
    let actual = match media {
        "application/json" => serde_json::from_slice(body).map_err(|e| e.to_string())?,
        "text/event-stream" => parse_event(body),
        _ => json!(String::from_utf8_lossy(body)),
    };
    let examples = examples(content);
    let fits = examples.iter().any(|example| match (media, example) {
        ("text/plain", Value::String(text)) => text
            .lines()
            .filter(|l| l.starts_with('#'))
            .all(|l| actual.as_str().unwrap().contains(l)),
        ("text/event-stream", _) => {
            same_shape(example, &actual, "").is_ok()
                && same_shape(&data_of(example), &data_of(&actual), "").is_ok()
        }
        _ => same_shape(example, &actual, "").is_ok(),
    });
    match fits {
        true => Ok(()),
        false => Err(format!(
            "{status}: answer {actual} fits none of {examples:?}"
        )),
    }
}

fn data_of(event: &Value) -> Value {
    serde_json::from_str(event["data"].as_str().unwrap_or("null")).unwrap_or(Value::Null)
}

#[tokio::test]
async fn the_request_examples_get_the_answers_the_examples_show() {
    let doc = document();
    let (app, registry) = app_with(quick_config(), None);
    let mut failures = Vec::new();
    for op in operations(&doc) {
        let (status, media, body) = answer(&app, example_request(&op, "", &[])).await;
        if !status.is_success() {
            failures.push(format!(
                "{}: {status} {}",
                op.name(),
                String::from_utf8_lossy(&body)
            ));
            continue;
        }
        if let Err(e) = compare(&op, status, &media, &body) {
            failures.push(format!("{}: {e}", op.name()));
        }
    }
    assert!(failures.is_empty(), "{failures:#?}");
    assert!(
        registry.is_empty(),
        "the DELETE example removed the PUT example's instance"
    );
}

/// An ACL file with a token that may do everything and one that may do nothing.
fn acl_file(dir: &tempfile::TempDir) -> (Acl, String, String) {
    let path = dir.path().join("acl.json");
    let mut file = AclFile::default();
    let rules = ["write:*", "read:*", "operator"].map(|r| r.parse().unwrap());
    let (_, all) = file.create_token("all", rules.to_vec());
    let (_, none) = file.create_token("none", Vec::new());
    file.save(&path).unwrap();
    (Acl::load(&path).unwrap(), all, none)
}

/// Sends `request` and checks that the operation declares the answer's status, and that the
/// answer's body fits the example of that status.
async fn expect_declared(app: &Router, op: &Operation, request: Request<Body>) -> StatusCode {
    let (status, media, body) = answer(app, request).await;
    assert!(
        op.declares(status),
        "{} answered {status}, not declared: {}",
        op.name(),
        String::from_utf8_lossy(&body)
    );
    if let Err(e) = compare(op, status, &media, &body) {
        panic!("{}: {e}", op.name());
    }
    status
}

#[tokio::test]
async fn every_status_a_route_answers_with_is_declared() {
    let doc = document();
    let dir = tempfile::tempdir().unwrap();
    let (acl, all, none) = acl_file(&dir);
    let (app, _) = app_with(quick_config(), Some(acl));
    let bearer = |secret: &str| format!("Bearer {secret}");
    let (all, none) = (bearer(&all), bearer(&none));
    let mut seen = std::collections::BTreeSet::new();
    for op in operations(&doc) {
        for (extra, token) in [
            ("", Some(all.as_str())),
            ("colour=red", Some(all.as_str())),
            ("", None),
            ("", Some("Bearer dirtok_unknown")),
            ("", Some("Basic dXNlcjpwYXNz")),
            ("", Some(none.as_str())),
        ] {
            let headers: Vec<(&str, &str)> =
                token.map(|t| ("authorization", t)).into_iter().collect();
            let request = example_request(&op, extra, &headers);
            seen.insert(expect_declared(&app, &op, request).await.as_u16());
        }
    }
    let reads = |op: &&Operation| op.path.contains("{instance}") && op.method != "delete";
    for op in operations(&doc)
        .iter()
        .filter(|op| op.method != "put")
        .filter(reads)
    {
        let request = example_request(op, "", &[("authorization", all.as_str())]);
        seen.insert(expect_declared(&app, op, request).await.as_u16());
    }
    // 400, 401, 403 on every route that takes a token; 404 once the DELETE example ran.
    let expected = [200, 204, 400, 401, 403, 404];
    assert!(expected.iter().all(|s| seen.contains(s)), "seen {seen:?}");
}

fn operation(doc: &Value, method: &str, path: &str) -> Operation {
    operations(doc)
        .into_iter()
        .find(|op| op.method == method && op.path == path)
        .unwrap()
}

#[tokio::test]
async fn limits_answer_with_declared_statuses() {
    let doc = document();
    let register = operation(&doc, "put", "/v1/services/{service}/instances/{instance}");
    let mut config = quick_config();
    config.body_limit = 128;
    config.registry.max_instances = 1;
    let (app, registry) = app_with(config, None);
    // 413: a body over the limit.
    let mut big = example_request(&register, "", &[]);
    *big.body_mut() = Body::from(format!("{{\"address\":\"{}:1\"}}", "a".repeat(200)));
    assert_eq!(
        expect_declared(&app, &register, big).await,
        StatusCode::PAYLOAD_TOO_LARGE
    );
    // 507: a second instance on a node that holds one.
    registry
        .register(
            &ServiceName::new("other").unwrap(),
            &InstanceId::new("other-1").unwrap(),
            Registration::new(Address::new("10.0.0.9:1").unwrap()),
            tokio::time::Instant::now(),
        )
        .unwrap();
    let full = example_request(&register, "", &[]);
    assert_eq!(
        expect_declared(&app, &register, full).await,
        StatusCode::INSUFFICIENT_STORAGE
    );
}

#[tokio::test]
async fn a_slow_body_and_a_stale_node_answer_with_declared_statuses() {
    let doc = document();
    let register = operation(&doc, "put", "/v1/services/{service}/instances/{instance}");
    let mut config = quick_config();
    config.http_limits.request_timeout = Duration::from_millis(50);
    let registry = Registry::new(config.registry.clone());
    let started = tokio::time::Instant::now()
        .checked_sub(Duration::from_secs(60))
        .unwrap_or_else(tokio::time::Instant::now);
    let state = AppState::new(
        registry,
        Arc::new(config),
        directory::prometheus_handle(),
        CancellationToken::new(),
    )
    .with_contact(Arc::new(ClusterContact::clustered(started)));
    let app = router(state);
    // 503 request_timeout: a body that never ends.
    let mut slow = example_request(&register, "", &[]);
    *slow.body_mut() = Body::from_stream(futures_util::stream::pending::<
        Result<Vec<u8>, std::io::Error>,
    >());
    assert_eq!(
        expect_declared(&app, &register, slow).await,
        StatusCode::SERVICE_UNAVAILABLE
    );
    // 503 too_stale on every operation taking max_stale (the node never heard from a peer).
    let doc_ops = operations(&doc);
    let stale: Vec<&Operation> = doc_ops
        .iter()
        .filter(|op| {
            op.spec["parameters"]
                .as_array()
                .is_some_and(|ps| ps.iter().any(|p| p["name"] == "max_stale"))
        })
        .collect();
    assert!(stale.len() >= 3);
    for op in stale {
        let request = example_request(op, "", &[]);
        let status = expect_declared(&app, op, request).await;
        assert!(
            status == StatusCode::SERVICE_UNAVAILABLE,
            "{}: {status}",
            op.name()
        );
    }
}
