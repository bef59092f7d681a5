//! The constraints the server enforces on path, query and header parameters, written into
//! the OpenAPI document in one place (utoipa's parameter attributes cannot describe array
//! items), from the same constants the parsers use: name patterns, `minLength: 1` on every
//! query value, item counts, index bounds, the duration form. Also declares the answers the
//! middleware can give on any route (500 `internal` from a caught panic, 503
//! `request_timeout` on the routes that are not long polls) and gives every response a
//! description (OpenAPI requires one).

use serde_json::{Value, json};
use utoipa::Modify;
use utoipa::openapi::OpenApi;

use axum::http::Request;

use super::limits::is_long_poll;
use super::query::{MAX_INDEX, WAIT_PATTERN};
use crate::registry::{MAX_META_KEYS, MAX_TAGS, MAX_VALUE_LEN};
use directory_api::{
    LAGGED_EVENT, MAX_META_KEY_LEN, MAX_NAME_LEN, MAX_SUBSCRIPTIONS, MAX_TOPIC_LEN, RESET_EVENT,
};

/// Routes of the native API whose parameters follow these rules (the Consul subset has its
/// own).
const NATIVE_PREFIXES: &[&str] = &["/v1/services", "/v1/watch", "/v1/sd/", "/v1/topics"];
/// A value without control characters (what `char::is_control` refuses).
const NO_CONTROL: &str = "[^\\x00-\\x1f\\x7f-\\x9f]";

/// Adds the parameter constraints and missing response descriptions to the document.
pub struct Constraints;

impl Modify for Constraints {
    fn modify(&self, openapi: &mut OpenApi) {
        patch_as_json(openapi, patch);
    }
}

/// Applies `change` to the document as JSON (utoipa's types cannot express every keyword
/// the patches add, such as array item schemas of parameters).
pub(super) fn patch_as_json(openapi: &mut OpenApi, change: fn(&mut Value)) {
    let Ok(mut doc) = serde_json::to_value(&*openapi) else {
        return;
    };
    change(&mut doc);
    // The patched document is the same type with more schema keywords: it reads back.
    if let Ok(patched) = serde_json::from_value(doc) {
        *openapi = patched;
    }
}

fn patch(doc: &mut Value) {
    constrain_register_body(&mut doc["components"]["schemas"]["RegisterBody"]["properties"]);
    constrain_subscription(&mut doc["components"]["schemas"]["Subscription"]["properties"]);
    watch_events(&mut doc["paths"]["/v1/watch"]["get"]["responses"]["200"]);
    let Some(paths) = doc["paths"].as_object_mut() else {
        return;
    };
    for (path, item) in paths.iter_mut() {
        let native = NATIVE_PREFIXES.iter().any(|p| path.starts_with(p));
        for (method, operation) in item.as_object_mut().into_iter().flatten() {
            middleware_responses(path, method, operation);
            if native {
                for param in operation["parameters"].as_array_mut().into_iter().flatten() {
                    constrain(param);
                }
            }
            describe_responses(operation);
        }
    }
}

/// The schema of one parameter, by name and place.
fn constrain(param: &mut Value) {
    let (name, place) = (param["name"].as_str(), param["in"].as_str());
    let schema = match (name, place) {
        (Some("service" | "instance"), Some("path")) => name_schema(),
        (Some("topic"), Some("path")) => {
            json!({"type": "string", "maxLength": MAX_TOPIC_LEN, "pattern": TOPIC_PATTERN})
        }
        (Some("service"), Some("query")) => name_schema(),
        (Some("index"), Some("query")) => {
            json!({"type": "integer", "format": "int64", "minimum": 0, "maximum": MAX_INDEX})
        }
        (Some("wait" | "max_stale"), Some("query")) => {
            json!({"type": "string", "pattern": WAIT_PATTERN})
        }
        (Some("tag"), Some("query")) => {
            json!({"type": "array", "maxItems": MAX_TAGS, "items": tag_schema()})
        }
        (Some("meta"), Some("query")) => json!({
            "type": "array", "maxItems": MAX_META_KEYS,
            "items": {"type": "string",
                      "pattern": format!("^[A-Za-z0-9._-]{{1,{MAX_META_KEY_LEN}}}:{NO_CONTROL}{{0,{MAX_VALUE_LEN}}}$")}
        }),
        (Some("Last-Event-ID"), Some("header")) => {
            json!({"type": "string", "pattern": "^[0-9]{0,15}$"})
        }
        _ => return,
    };
    let repeated = param["schema"]["type"] == "array" && schema["type"] != "array";
    param["schema"] = if repeated {
        json!({"type": "array", "items": schema})
    } else {
        schema
    };
}

/// Tags and meta of a registration, as `Tags::new` and `Meta::new` check them.
fn constrain_register_body(properties: &mut Value) {
    if !properties.is_object() {
        return;
    }
    properties["tags"]["maxItems"] = json!(MAX_TAGS);
    properties["tags"]["items"] = tag_schema();
    properties["meta"]["maxProperties"] = json!(MAX_META_KEYS);
    properties["meta"]["propertyNames"] = json!({
        "type": "string", "pattern": format!("^[A-Za-z0-9._-]{{1,{MAX_META_KEY_LEN}}}$")
    });
    properties["meta"]["additionalProperties"] = json!({
        "type": "string", "maxLength": MAX_VALUE_LEN, "pattern": format!("^{NO_CONTROL}*$")
    });
    properties["fingerprint"]["pattern"] = json!("^[0-9a-fA-F]{64}$");
    properties["address"]["pattern"] = json!(ADDRESS_PATTERN);
    // host <= 253 characters (Address::new) + ':' + a port of at least one digit
    properties["address"]["maxLength"] = json!(255);
    properties["ttl"]["pattern"] = json!(TTL_PATTERN);
    properties["subscriptions"]["maxItems"] = json!(MAX_SUBSCRIPTIONS);
}

/// A subscription's pattern and group, as `TopicPattern::new` and `ServiceName::new` check
/// them.
fn constrain_subscription(properties: &mut Value) {
    if !properties.is_object() {
        return;
    }
    properties["pattern"]["maxLength"] = json!(MAX_TOPIC_LEN);
    properties["pattern"]["pattern"] = json!(TOPIC_PATTERN_PATTERN);
    // `null` is accepted as absent (serde's `Option`): the group is then the service.
    let mut group = name_schema();
    group["type"] = json!(["string", "null"]);
    group["description"] = json!(
        "Consumer group, a service name; absent or null: the subscribing instance's service."
    );
    properties["group"] = group;
}

/// A topic: dot-separated tokens `[a-z0-9_-]{1,63}` (`Topic::new`; at most 255 bytes).
const TOPIC_PATTERN: &str = "^[a-z0-9_-]{1,63}([.][a-z0-9_-]{1,63})*$";

/// A subscription pattern: tokens as a topic's or `*`, and optionally a final `>`
/// (`TopicPattern::new`; at most 255 bytes).
const TOPIC_PATTERN_PATTERN: &str =
    "^(([a-z0-9_-]{1,63}|[*])([.]([a-z0-9_-]{1,63}|[*]))*([.]>)?|>)$";

/// The addresses the document promises `Address::new` accepts: an IPv4 address or a DNS name
/// whose first label starts with a letter, then a port 1-65535 without leading zeros. The
/// server accepts a little more (bracketed IPv6, names starting with a digit, ports with
/// leading zeros); the document says so in the field's description, and stays a subset so a
/// schema-valid request is never refused.
const ADDRESS_PATTERN: &str = concat!(
    "^(((25[0-5]|2[0-4][0-9]|1[0-9]{2}|[1-9]?[0-9])\\.){3}(25[0-5]|2[0-4][0-9]|1[0-9]{2}|[1-9]?[0-9])",
    "|[A-Za-z]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?(\\.[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*)",
    ":([1-9][0-9]{0,3}|[1-5][0-9]{4}|6[0-4][0-9]{3}|65[0-4][0-9]{2}|655[0-2][0-9]|6553[0-5])$"
);

/// Lease lengths between `MIN_TTL` (1s) and `MAX_TTL` (1h) in one unit; the server also
/// accepts compound forms such as `1m 30s` (see the field's description).
const TTL_PATTERN: &str =
    "^(([1-9][0-9]{0,2}|[12][0-9]{3}|3[0-5][0-9]{2}|3600)s|([1-9]|[1-5][0-9]|60)m|1h)$";

/// One Server-Sent Event of the stream: its name, its `id` (a change index) and its data,
/// JSON of a change, `lagged` or `reset`.
fn watch_events(response: &mut Value) {
    let stream = &mut response["content"]["text/event-stream"];
    if stream.is_object() {
        stream["schema"] = json!({
            "type": "object",
            "required": ["data"],
            "properties": {
                "event": {"type": "string", "enum": [
                    "registered", "updated", "expired", "deregistered", LAGGED_EVENT, RESET_EVENT
                ]},
                "id": {"type": "string", "pattern": "^[0-9]+$"},
                "data": {
                    "type": "string",
                    "contentMediaType": "application/json",
                    "contentSchema": {"anyOf": [
                        {"$ref": "#/components/schemas/ChangeEvent"},
                        {"$ref": "#/components/schemas/Lagged"},
                        {"$ref": "#/components/schemas/Reset"}
                    ]}
                }
            }
        });
    }
}

fn tag_schema() -> Value {
    json!({"type": "string", "minLength": 1, "maxLength": MAX_VALUE_LEN,
           "pattern": format!("^{NO_CONTROL}*$")})
}

fn name_schema() -> Value {
    json!({
        "type": "string", "minLength": 1, "maxLength": MAX_NAME_LEN,
        "pattern": format!("^[a-z0-9][a-z0-9._-]{{0,{}}}$", MAX_NAME_LEN - 1)
    })
}

/// The answers of the router's middleware (`http::router`), whatever the handler: 500 from
/// the panic catcher, and 503 `request_timeout` where `limits::request_timeout` applies.
fn middleware_responses(path: &str, method: &str, operation: &mut Value) {
    let responses = &mut operation["responses"];
    if !responses.is_object() {
        return;
    }
    declare(
        responses,
        "500",
        "internal: the node failed (details in its log)",
    );
    let request = Request::builder()
        .method(method.to_ascii_uppercase().as_str())
        .uri(path)
        .body(axum::body::Body::empty());
    if request.is_ok_and(|r| !is_long_poll(&r)) {
        declare(
            responses,
            "503",
            "request_timeout: the request took longer than the node's request timeout",
        );
    }
}

/// Declares an error answer with `description`, or adds it to the one already declared.
fn declare(responses: &mut Value, status: &str, description: &str) {
    let response = &mut responses[status];
    match response["description"].as_str() {
        Some(existing) => response["description"] = json!(format!("{existing}; {description}")),
        None => {
            *response = json!({
                "description": description,
                "content": {"application/json": {
                    "schema": {"$ref": "#/components/schemas/ErrorBody"}
                }}
            });
        }
    }
}

/// OpenAPI requires a description on every response.
fn describe_responses(operation: &mut Value) {
    for (status, response) in operation["responses"].as_object_mut().into_iter().flatten() {
        if response.get("description").is_none() {
            response["description"] = json!(match status.as_str() {
                "200" => "OK",
                "204" => "no content",
                _ => "see the error body",
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn native_parameters_get_the_server_s_constraints_and_responses_a_description() {
        let mut doc = json!({"paths": {
            "/v1/services/{service}": {"get": {
                "parameters": [
                    {"name": "service", "in": "path", "schema": {"type": "string"}},
                    {"name": "tag", "in": "query", "schema": {"type": "array", "items": {"type": "string"}}},
                    {"name": "wait", "in": "query", "schema": {"type": "string"}}
                ],
                "responses": {"200": {}}
            }},
            "/v1/catalog/service/{service}": {"get": {
                "parameters": [{"name": "service", "in": "path", "schema": {"type": "string"}}],
                "responses": {"200": {"description": "kept"}}
            }}
        }});
        patch(&mut doc);
        let lookup = &doc["paths"]["/v1/services/{service}"]["get"];
        assert_eq!(lookup["parameters"][0]["schema"]["maxLength"], 63);
        assert_eq!(lookup["parameters"][1]["schema"]["items"]["minLength"], 1);
        assert_eq!(lookup["parameters"][2]["schema"]["pattern"], WAIT_PATTERN);
        assert_eq!(lookup["responses"]["200"]["description"], "OK");
        let consul = &doc["paths"]["/v1/catalog/service/{service}"]["get"];
        assert_eq!(consul["parameters"][0]["schema"], json!({"type": "string"}));
        assert_eq!(consul["responses"]["200"]["description"], "kept");
    }
}
