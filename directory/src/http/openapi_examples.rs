//! The examples of the OpenAPI document: a request (parameters and body) and a response for
//! every declared status of every operation. They are built from the API crate's types and
//! the server's own error constructors and access checks, so an example is what the server
//! would send; `directory/tests/openapi_contract.rs` checks each against its schema and
//! sends the request examples to a real router.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use serde::Serialize;
use serde_json::{Value, json};

use utoipa::Modify;
use utoipa::openapi::OpenApi;

use super::error::ApiError;
use super::openapi_constraints::patch_as_json;
use super::query::{SdQuery, ServicesQuery, WatchQuery, no_query};
use super::staleness::too_stale;
use crate::acl::{Access, Denied, RuleSet};
use crate::listener::DEFAULT_REQUEST_TIMEOUT;
use crate::registry::{
    Address, ChangeEvent, ChangeKind, DEFAULT_MAX_INSTANCES, DEFAULT_MAX_REGISTRY_BYTES,
    HeartbeatError, InstanceId, Meta, NodeName, NotDurable, Record, RegisterError, ServiceName,
    Tags, Ttl, ValidationError,
};
use directory_api::{
    GroupCount, GroupSubscribers, Health, LAGGED_EVENT, Lagged, MemberRow, MembersResponse,
    PatternSummary, RESET_EVENT, RegistryHealth, Reset, ServiceCount, ServiceResponse,
    ServicesResponse, Staleness, Subscription, Subscriptions, Topic, TopicPattern,
    TopicSubscribers, TopicsResponse,
};

/// The example service, instance and change index used throughout.
const SERVICE: &str = "orders";
const INSTANCE: &str = "orders-1";
const INDEX: u64 = 7;
/// The example topic, and the pattern the example instance subscribes to it with.
const TOPIC: &str = "orders.eu.created";
const PATTERN: &str = "orders.*.created";
/// The public id of the token in the 403 examples.
const TOKEN_ID: &str = "5c0e8a1f9b2d7e43";

/// Adds the examples to the document; runs after [`super::openapi_constraints::Constraints`],
/// which declares the middleware's answers.
pub struct Examples;

impl Modify for Examples {
    fn modify(&self, openapi: &mut OpenApi) {
        patch_as_json(openapi, add);
    }
}

/// Adds the examples to a document (as JSON) whose responses are already declared.
fn add(doc: &mut Value) {
    let Ok(record) = sample_record() else {
        return;
    };
    let Some(paths) = doc["paths"].as_object_mut() else {
        return;
    };
    for (path, item) in paths.iter_mut() {
        for (method, operation) in item.as_object_mut().into_iter().flatten() {
            add_request_examples(operation, &record);
            if let Some(responses) = operation.get_mut("responses") {
                add_response_examples(&Op { path, method }, &record, responses);
            }
        }
    }
}

/// Parameter examples by name (an array for a repeatable one) and the register body.
fn add_request_examples(operation: &mut Value, record: &Record) {
    let params = operation
        .get_mut("parameters")
        .and_then(Value::as_array_mut);
    for param in params.into_iter().flatten() {
        if let Some(example) = param["name"].as_str().and_then(parameter_example) {
            let repeated = param["schema"]["type"] == "array" && !example.is_array();
            param["example"] = if repeated { json!([example]) } else { example };
        }
    }
    let body = operation
        .pointer_mut("/requestBody/content/application~1json")
        .and_then(Value::as_object_mut);
    if let Some(body) = body {
        body.insert("example".into(), to_json(&record.registration()));
    }
}

/// One operation: its path template and lower-case method.
struct Op<'a> {
    path: &'a str,
    method: &'a str,
}

impl Op<'_> {
    fn is(&self, method: &str, path: &str) -> bool {
        self.method == method && self.path == path
    }
}

fn add_response_examples(op: &Op<'_>, record: &Record, responses: &mut Value) {
    for (status, response) in responses.as_object_mut().into_iter().flatten() {
        let contents = response.get_mut("content").and_then(Value::as_object_mut);
        for (media, content) in contents.into_iter().flatten() {
            let examples = match status.parse::<u16>() {
                Ok(200) if media == "text/event-stream" => watch_events(record),
                Ok(200) => success(op, record).into_iter().collect(),
                Ok(code) => errors(op, code, record),
                Err(_) => Vec::new(),
            };
            insert(content, examples);
        }
    }
}

/// One example as `example`, several as named `examples`.
fn insert(content: &mut Value, examples: Vec<(String, Value)>) {
    match <[_; 1]>::try_from(examples) {
        Ok([(_, value)]) => content["example"] = value,
        Err(many) if !many.is_empty() => {
            let named: serde_json::Map<_, _> = many
                .into_iter()
                .map(|(name, value)| (name.clone(), json!({"summary": name, "value": value})))
                .collect();
            content["examples"] = Value::Object(named);
        }
        Err(_) => {}
    }
}

/// The value of a parameter in the example requests.
fn parameter_example(name: &str) -> Option<Value> {
    Some(match name {
        "service" => json!(SERVICE),
        "instance" => json!(INSTANCE),
        "tag" => json!(["v2"]),
        "meta" => json!(["zone:eu-1"]),
        // Resume after the change before the example's: the answer is at `INDEX`.
        "index" => json!(INDEX - 1),
        "Last-Event-ID" => json!((INDEX - 1).to_string()),
        "wait" => json!("30s"),
        "max_stale" => json!("2s"),
        "topic" => json!(TOPIC),
        _ => return None,
    })
}

/// The instance every example shows.
fn sample_record() -> Result<Record, ValidationError> {
    // 2026-11-29T12:00:00Z: a fixed time, so the document does not change between builds.
    let registered_at = SystemTime::UNIX_EPOCH + Duration::from_secs(1_796_040_000);
    let ttl = Ttl::parse("10s")?;
    Ok(Record {
        service: ServiceName::new(SERVICE)?,
        instance: InstanceId::new(INSTANCE)?,
        address: Address::new("10.0.0.5:7000")?,
        tags: Tags::new(vec!["v2".into()])?,
        meta: Meta::new(BTreeMap::from([("zone".into(), "eu-1".into())]))?,
        ttl,
        fingerprint: None,
        subscriptions: Subscriptions::default(),
        owner: NodeName::new("directory-1")?,
        index: INDEX,
        registered_at,
        lease_expires_at: registered_at + ttl.duration(),
    })
}

fn to_json(value: &impl Serialize) -> Value {
    serde_json::to_value(value).unwrap_or(Value::Null)
}

fn staleness() -> Staleness {
    Staleness {
        last_contact_ms: 120,
        isolated: false,
    }
}

/// The 200 answer of an operation.
fn success(op: &Op<'_>, record: &Record) -> Option<(String, Value)> {
    let instance = "/v1/services/{service}/instances/{instance}";
    let value = match (op.method, op.path) {
        (_, p) if p.starts_with(instance) => to_json(record),
        ("get", "/v1/services") => to_json(&ServicesResponse {
            index: INDEX,
            services: vec![ServiceCount {
                service: record.service.clone(),
                instances: 1,
            }],
            staleness: Some(staleness()),
        }),
        ("get", "/v1/services/{service}") => to_json(&ServiceResponse {
            service: record.service.clone(),
            index: INDEX,
            instances: vec![Arc::new(record.clone())],
            staleness: Some(staleness()),
        }),
        ("get", "/v1/sd/prometheus") => to_json(&[super::prometheus_sd::target_group(record)]),
        ("get", "/v1/cluster/members") => to_json(&members(record)),
        ("get", "/v1/health") => to_json(&health()),
        ("get", "/metrics") => json!(metrics_example()),
        ("get", "/v1/topics") => to_json(&topics(record)),
        ("get", "/v1/topics/{topic}/subscribers") => to_json(&subscribers(record).ok()?),
        ("get", "/openapi.json") => json!({
            "openapi": "3.1.0",
            "info": {"title": "directory", "version": env!("CARGO_PKG_VERSION")},
            "paths": {"/v1/health": {"get": {"operationId": "health"}}}
        }),
        _ => return None,
    };
    Some(("ok".into(), value))
}

/// `GET /v1/topics`: the example instance's service subscribes to [`PATTERN`].
fn topics(record: &Record) -> TopicsResponse {
    TopicsResponse {
        index: INDEX,
        patterns: TopicPattern::new(PATTERN)
            .map(|pattern| PatternSummary {
                pattern,
                groups: vec![GroupCount {
                    group: record.service.clone(),
                    instances: 1,
                }],
            })
            .into_iter()
            .collect(),
    }
}

/// `GET /v1/topics/{topic}/subscribers`: the example instance, subscribed for its service.
fn subscribers(record: &Record) -> Result<TopicSubscribers, ValidationError> {
    let mut subscribed = record.clone();
    subscribed.subscriptions =
        Subscriptions::new(vec![Subscription::new(TopicPattern::new(PATTERN)?)])?;
    Ok(TopicSubscribers {
        topic: Topic::new(TOPIC)?,
        index: INDEX,
        groups: vec![GroupSubscribers {
            group: record.service.clone(),
            instances: vec![Arc::new(subscribed)],
        }],
    })
}

/// One series of `GET /metrics`, with its HELP text from the metrics table.
fn metrics_example() -> String {
    let name = "directory_instances";
    let help = crate::metrics::help(name).unwrap_or_default();
    format!("# HELP {name} {help}\n# TYPE {name} gauge\n{name} 1\n")
}

fn members(record: &Record) -> MembersResponse {
    let row = |name: &str, address: &str, state: &str, local: bool| MemberRow {
        name: name.into(),
        address: Some(address.into()),
        state: state.into(),
        incarnation: 0,
        generation: 1_796_040_000_000,
        last_change: "2026-11-29T12:00:00.000Z".into(),
        local,
        acl_hash: None,
    };
    MembersResponse {
        node: record.owner.to_string(),
        members: vec![
            row(record.owner.as_str(), "10.0.0.1:7946", "alive", true),
            row("directory-2", "10.0.0.2:7946", "suspect", false),
        ],
    }
}

fn health() -> Health {
    Health {
        status: "ok".into(),
        node: "directory-1".into(),
        version: env!("CARGO_PKG_VERSION").into(),
        registry: Some(RegistryHealth {
            instances: 1,
            max_instances: DEFAULT_MAX_INSTANCES as u64,
            bytes: 412,
            max_bytes: DEFAULT_MAX_REGISTRY_BYTES as u64,
            refused_replicated_entries: 0,
        }),
    }
}

/// One Server-Sent Event of `GET /v1/watch` as the stream's schema describes it.
fn sse(event: &str, id: u64, data: &impl Serialize) -> Value {
    let data = serde_json::to_string(data).unwrap_or_default();
    json!({"event": event, "id": id.to_string(), "data": data})
}

fn watch_events(record: &Record) -> Vec<(String, Value)> {
    let change = |kind: ChangeKind, index: u64, with_record: bool| ChangeEvent {
        kind,
        service: record.service.clone(),
        instance: record.instance.clone(),
        index,
        record: with_record.then(|| Arc::new(record.clone())),
    };
    let registered = change(ChangeKind::Registered, INDEX, true);
    let deregistered = change(ChangeKind::Deregistered, INDEX + 1, false);
    let lagged = Lagged {
        missed: 3,
        index: INDEX + 4,
    };
    let reset = Reset {
        index: INDEX + 4,
        requested: 2,
    };
    vec![
        ("registered".into(), sse("registered", INDEX, &registered)),
        (
            "deregistered".into(),
            sse("deregistered", INDEX + 1, &deregistered),
        ),
        (
            LAGGED_EVENT.into(),
            sse(LAGGED_EVENT, lagged.index, &lagged),
        ),
        (RESET_EVENT.into(), sse(RESET_EVENT, reset.index, &reset)),
    ]
}

/// The error answers an operation gives with `status`, each named after its code.
fn errors(op: &Op<'_>, status: u16, record: &Record) -> Vec<(String, Value)> {
    let candidates: Vec<ApiError> = match status {
        400 => bad_request(op).into_iter().collect(),
        401 => vec![
            Denied::UnknownToken.into(),
            Denied::Malformed("Authorization").into(),
        ],
        403 => forbidden(op).into_iter().collect(),
        404 => vec![not_found(op, record)],
        413 => vec![ApiError::payload_too_large()],
        500 => vec![ApiError::internal_unlogged()],
        503 => unavailable(op),
        507 => vec![
            RegisterError::CapacityFull {
                max: DEFAULT_MAX_INSTANCES,
            }
            .into(),
            RegisterError::BytesFull {
                max_bytes: DEFAULT_MAX_REGISTRY_BYTES,
                used_bytes: DEFAULT_MAX_REGISTRY_BYTES - 100,
                entry_bytes: 412,
            }
            .into(),
        ],
        _ => Vec::new(),
    };
    candidates
        .into_iter()
        .map(|e| (e.code().to_owned(), to_json(&e.body())))
        .collect()
}

/// What the operation answers to a request it cannot parse: a bad address in a body, a bad
/// name in a path, else an unknown query parameter (through the route's own parser).
/// (`None` if the parser accepted it: the operation then has no 400 example, and the
/// document's example test fails.)
fn bad_request(op: &Op<'_>) -> Option<ApiError> {
    if op.method == "put" {
        return Address::new("10.0.0.5").err().map(ApiError::from);
    }
    if op.path.contains("{service}") {
        return ServiceName::new("Orders").err().map(ApiError::from);
    }
    let raw = Some("colour=red");
    let outcome = match op.path {
        "/v1/services" | "/v1/topics" | "/v1/topics/{topic}/subscribers" => {
            ServicesQuery::parse(raw).map(drop)
        }
        "/v1/watch" => WatchQuery::parse(raw).map(drop),
        "/v1/sd/prometheus" => SdQuery::parse(raw).map(drop),
        _ => no_query(raw),
    };
    outcome.err()
}

/// The 404 of a heartbeat (the registry's error) or of a read (the handler's).
fn not_found(op: &Op<'_>, record: &Record) -> ApiError {
    let (service, instance) = (record.service.clone(), record.instance.clone());
    if op.method == "post" {
        return HeartbeatError::NotFound { service, instance }.into();
    }
    ApiError::instance_not_found(service.as_str(), instance.as_str())
}

/// The refusal of a token with no rules, by the check the handler makes.
fn forbidden(op: &Op<'_>) -> Option<ApiError> {
    let access = Access::token(TOKEN_ID.into(), Arc::new(RuleSet::new(Vec::new())));
    let check = match (op.method, op.path) {
        ("get", "/v1/cluster/members" | "/metrics") => access.operator(),
        ("get", "/v1/services" | "/v1/sd/prometheus" | "/v1/watch") => access.list(),
        ("get", "/v1/topics") => access.list_topics(),
        ("get", "/v1/topics/{topic}/subscribers") => access.publish(TOPIC),
        ("get", _) => access.read(SERVICE),
        _ => access.write(SERVICE),
    };
    check.err().map(ApiError::from)
}

/// The 503 answers: a request over the time limit, a stale node (`max_stale`), a write not
/// on disk.
fn unavailable(op: &Op<'_>) -> Vec<ApiError> {
    let mut out = vec![ApiError::request_timeout(DEFAULT_REQUEST_TIMEOUT)];
    if op.method == "get"
        && (op.path.starts_with("/v1/services") || op.path.starts_with("/v1/topics"))
    {
        let stale = Staleness {
            last_contact_ms: 9_000,
            isolated: true,
        };
        out.push(too_stale(&stale, Duration::from_secs(2)));
    }
    if op.is("put", "/v1/services/{service}/instances/{instance}")
        || op.is("delete", "/v1/services/{service}/instances/{instance}")
    {
        let failing = NotDurable::Failing("No space left on device (os error 28)".into());
        out.push(ApiError::not_durable(&failing));
    }
    out
}
