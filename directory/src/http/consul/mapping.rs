//! How Consul's model maps onto the directory's records, I/O-free: a registration with its
//! TTL check becomes a [`Registration`] whose lease is the check; a [`Record`] becomes
//! Consul's shapes with a check status computed from its lease.
//!
//! The check's state lives in two reserved meta keys of the record, so it replicates with
//! the record like everything else (no second store):
//! - [`CHECK_TTL_META`]: the check's TTL (`10s`); absent for an instance registered without
//!   a check (or through the directory's own API);
//! - [`STATUS_META`]: the status last set by register or `pass|warn|fail`.
//!
//! Lease = TTL + `DeregisterCriticalServiceAfter` (at least [`MIN_DEREGISTER_AFTER`] when
//! given, as Consul documents; 0 when absent). The check is critical once the TTL has passed
//! since the last renewal (`lease_expires_at - lease + TTL`), and the instance disappears
//! when the lease runs out.

use std::collections::BTreeMap;
use std::time::Duration;

use axum::http::StatusCode;
use directory_api::{ErrorCode, MAX_TTL};
use serde_json::Value;

use super::types::{CheckDefinition, ServiceDefinition};
use crate::http::error::ApiError;
use crate::registry::{
    Address, CHECK_TTL_META, CheckStatus, InstanceId, Meta, Record, Registration, STATUS_META,
    ServiceName, Subscriptions, Tags, Ttl,
};

/// Lease of an instance registered without a check (the longest lease the directory
/// allows): register again within it to keep the instance.
pub const NO_CHECK_LEASE: Duration = MAX_TTL;
/// Shortest `DeregisterCriticalServiceAfter` (Consul's documented minimum); shorter values
/// are raised to it.
pub const MIN_DEREGISTER_AFTER: Duration = Duration::from_secs(60);

/// A parsed registration: the key and what to store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConsulRegistration {
    /// The service (`Name`).
    pub service: ServiceName,
    /// The instance (`ID`, defaulting to `Name`).
    pub instance: InstanceId,
    /// What the registry stores.
    pub registration: Registration,
}

/// A 400 for a registration the subset cannot take.
pub fn unsupported(message: impl Into<String>) -> ApiError {
    ApiError::new(
        StatusCode::BAD_REQUEST,
        ErrorCode::ConsulUnsupported,
        message,
    )
}

/// Parses a register body. `default_host` stands in for an absent `Address`.
pub fn parse_registration(body: &[u8], default_host: &str) -> Result<ConsulRegistration, ApiError> {
    let value: Value = serde_json::from_slice(body).map_err(ApiError::invalid_json)?;
    let def: ServiceDefinition = serde_json::from_value(fold_keys(value)).map_err(|e| {
        unsupported(format!(
            "{e}; supported fields: Name, ID, Address, Port, Tags, Meta, Check/Checks (one TTL \
             check: TTL, DeregisterCriticalServiceAfter, Status, CheckID, Name, Notes), \
             ignored: Weights, EnableTagOverride, TaggedAddresses"
        ))
    })?;
    into_registration(def, default_host)
}

fn into_registration(
    def: ServiceDefinition,
    default_host: &str,
) -> Result<ConsulRegistration, ApiError> {
    if def.kind.as_deref().is_some_and(|k| !k.is_empty()) {
        return Err(unsupported("only plain services (no Kind) are supported"));
    }
    let name = def
        .name
        .ok_or_else(|| ApiError::invalid_json("Name is required"))?;
    let service = ServiceName::new(&name)?;
    let instance = InstanceId::new(def.id.as_deref().unwrap_or(&name))?;
    let check = single_check(def.check, def.checks)?;
    let plan = CheckPlan::new(check, &instance)?;
    let mut meta = def.meta.unwrap_or_default();
    if meta.keys().any(|k| k == CHECK_TTL_META || k == STATUS_META) {
        return Err(unsupported(format!(
            "meta keys {CHECK_TTL_META} and {STATUS_META} are reserved for the check's state"
        )));
    }
    plan.write_meta(&mut meta);
    let host = def
        .address
        .filter(|a| !a.is_empty())
        .unwrap_or_else(|| default_host.to_owned());
    let registration = Registration {
        address: address(&host, def.port)?,
        tags: Tags::new(def.tags.unwrap_or_default())?,
        meta: Meta::new(meta)?,
        ttl: plan.lease,
        fingerprint: None,
        subscriptions: Subscriptions::default(),
    };
    Ok(ConsulRegistration {
        service,
        instance,
        registration,
    })
}

fn single_check(
    check: Option<CheckDefinition>,
    checks: Option<Vec<CheckDefinition>>,
) -> Result<Option<CheckDefinition>, ApiError> {
    let mut all: Vec<CheckDefinition> = check
        .into_iter()
        .chain(checks.unwrap_or_default())
        .collect();
    if all.len() > 1 {
        return Err(unsupported(
            "at most one check (a TTL check) per service is supported",
        ));
    }
    Ok(all.pop())
}

/// `host` and `port` as a directory address (IPv6 hosts get their brackets).
fn address(host: &str, port: Option<u32>) -> Result<Address, ApiError> {
    let port = port
        .filter(|p| (1..=65535).contains(p))
        .ok_or_else(|| unsupported("Port must be 1-65535: the directory stores host:port"))?;
    let text = if host.contains(':') && !host.starts_with('[') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    };
    Ok(Address::new(&text)?)
}

/// What a registration's check turns into.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct CheckPlan {
    /// The check's TTL; `None` without a check.
    ttl: Option<Duration>,
    status: CheckStatus,
    lease: Ttl,
}

impl CheckPlan {
    fn new(check: Option<CheckDefinition>, instance: &InstanceId) -> Result<Self, ApiError> {
        let Some(check) = check else {
            return Ok(Self {
                ttl: None,
                status: CheckStatus::Passing,
                lease: lease(NO_CHECK_LEASE)?,
            });
        };
        let expected = format!("service:{instance}");
        let check_id = check.checkid.as_ref().or(check.id.as_ref());
        if check_id.is_some_and(|id| *id != expected) {
            return Err(unsupported(format!(
                "CheckID must be {expected:?} (or absent)"
            )));
        }
        let ttl = check
            .ttl
            .as_deref()
            .ok_or_else(|| unsupported("only TTL checks are supported: give Check.TTL"))?;
        let ttl = duration("TTL", ttl)?;
        let after = check
            .deregistercriticalserviceafter
            .as_deref()
            .map(|d| duration("DeregisterCriticalServiceAfter", d))
            .transpose()?
            .map_or(Duration::ZERO, |d| d.max(MIN_DEREGISTER_AFTER));
        let status = match check.status.as_deref() {
            None | Some("") => CheckStatus::Critical,
            Some(s) => CheckStatus::parse(s).ok_or_else(|| {
                ApiError::invalid_json(format!("Status {s:?} must be passing, warning or critical"))
            })?,
        };
        Ok(Self {
            ttl: Some(ttl),
            status,
            lease: lease(ttl + after)?,
        })
    }

    fn write_meta(&self, meta: &mut BTreeMap<String, String>) {
        if let Some(ttl) = self.ttl {
            meta.insert(
                CHECK_TTL_META.into(),
                humantime::format_duration(ttl).to_string(),
            );
            meta.insert(STATUS_META.into(), self.status.as_str().into());
        }
    }
}

fn duration(field: &str, text: &str) -> Result<Duration, ApiError> {
    humantime::parse_duration(text).map_err(|_| {
        ApiError::invalid_json(format!("{field} {text:?} must be a duration like 10s"))
    })
}

fn lease(d: Duration) -> Result<Ttl, ApiError> {
    Ttl::from_duration(d).map_err(|_| {
        unsupported(format!(
            "TTL + DeregisterCriticalServiceAfter is {}, outside the directory's lease range 1s..=1h",
            humantime::format_duration(d)
        ))
    })
}

/// Lower-cases and strips `_` from the keys of the body and of its checks (not of `Meta`,
/// whose keys are data), the way Consul's agent accepts them.
fn fold_keys(value: Value) -> Value {
    let Value::Object(map) = value else {
        return value;
    };
    let folded = map.into_iter().map(|(k, v)| {
        let key = fold(&k);
        let v = match key.as_str() {
            "check" => fold_keys(v),
            "checks" => match v {
                Value::Array(items) => Value::Array(items.into_iter().map(fold_keys).collect()),
                other => other,
            },
            _ => v,
        };
        (key, v)
    });
    Value::Object(folded.collect())
}

fn fold(key: &str) -> String {
    key.chars()
        .filter(|c| *c != '_')
        .flat_map(char::to_lowercase)
        .collect()
}

/// The registration of `record` with its check status set to `status`.
pub fn with_status(record: &Record, status: CheckStatus) -> Result<Registration, ApiError> {
    let mut meta: BTreeMap<String, String> = record
        .meta
        .iter()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect();
    meta.insert(STATUS_META.into(), status.as_str().into());
    let mut registration = record.registration();
    registration.meta = Meta::new(meta)?;
    Ok(registration)
}

/// The record's meta as Consul clients see it: without the reserved keys.
pub fn user_meta(record: &Record) -> BTreeMap<String, String> {
    record
        .meta
        .iter()
        .filter(|(k, _)| *k != CHECK_TTL_META && *k != STATUS_META)
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect()
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::time::SystemTime;

    use super::*;
    use crate::registry::{has_check, status_at};

    fn parse(body: serde_json::Value) -> Result<ConsulRegistration, ApiError> {
        parse_registration(body.to_string().as_bytes(), "10.0.0.9")
    }

    fn record(reg: &ConsulRegistration, renewed: SystemTime) -> Arc<Record> {
        Arc::new(Record {
            service: reg.service.clone(),
            instance: reg.instance.clone(),
            address: reg.registration.address.clone(),
            tags: reg.registration.tags.clone(),
            meta: reg.registration.meta.clone(),
            ttl: reg.registration.ttl,
            fingerprint: None,
            subscriptions: Default::default(),
            owner: "n1".parse().unwrap(),
            index: 1,
            registered_at: renewed,
            lease_expires_at: renewed + reg.registration.ttl.duration(),
        })
    }

    #[test]
    fn a_ttl_check_becomes_the_lease_and_starts_critical_like_consul() {
        let reg = parse(serde_json::json!({
            "name": "web", "id": "web-1", "port": 80, "tags": ["v1"], "meta": {"Zone": "a"},
            "checks": [{"ttl": "10s"}]
        }))
        .unwrap();
        assert_eq!(
            (reg.service.as_str(), reg.instance.as_str()),
            ("web", "web-1")
        );
        assert_eq!(reg.registration.address.as_str(), "10.0.0.9:80");
        assert_eq!(reg.registration.ttl.duration(), Duration::from_secs(10));
        let rec = record(&reg, SystemTime::now());
        assert_eq!(status_at(&rec, SystemTime::now()).0, CheckStatus::Critical);
        assert_eq!(
            user_meta(&rec),
            BTreeMap::from([("Zone".into(), "a".into())])
        );
    }

    #[test]
    fn deregister_critical_after_extends_the_lease_with_consuls_one_minute_minimum() {
        let reg = parse(serde_json::json!({
            "Name": "web", "Port": 80, "Address": "2001:db8::1",
            "Check": {"TTL": "10s", "Status": "passing", "DeregisterCriticalServiceAfter": "5s"}
        }))
        .unwrap();
        assert_eq!(reg.instance.as_str(), "web");
        assert_eq!(reg.registration.address.as_str(), "[2001:db8::1]:80");
        assert_eq!(reg.registration.ttl.duration(), Duration::from_secs(70));
        let renewed = SystemTime::now();
        let rec = record(&reg, renewed);
        assert_eq!(
            status_at(&rec, renewed + Duration::from_secs(9)).0,
            CheckStatus::Passing
        );
        let late = status_at(&rec, renewed + Duration::from_secs(11));
        assert_eq!(late, (CheckStatus::Critical, "TTL expired"));
        let warned = with_status(&rec, CheckStatus::Warning).unwrap();
        assert_eq!(warned.meta.get(STATUS_META), Some("warning"));
    }

    #[test]
    fn a_registration_without_a_check_gets_the_default_lease_and_passes() {
        let reg = parse(serde_json::json!({"Name": "db", "Port": 5432})).unwrap();
        assert_eq!(reg.registration.ttl.duration(), NO_CHECK_LEASE);
        let rec = record(&reg, SystemTime::now());
        assert!(!has_check(&rec));
        assert_eq!(status_at(&rec, SystemTime::now()).0, CheckStatus::Passing);
    }

    #[test]
    fn registrations_outside_the_subset_are_refused_with_a_reason() {
        let cases = [
            (serde_json::json!({"Name": "web"}), "consul_unsupported"),
            (
                serde_json::json!({"Name": "web", "Port": 1, "Check": {"HTTP": "http://x", "Interval": "10s"}}),
                "consul_unsupported",
            ),
            (
                serde_json::json!({"Name": "web", "Port": 1, "Checks": [{"TTL": "1s"}, {"TTL": "2s"}]}),
                "consul_unsupported",
            ),
            (
                serde_json::json!({"Name": "web", "Port": 1, "Connect": {}}),
                "consul_unsupported",
            ),
            (
                serde_json::json!({"Name": "web", "Port": 1, "Kind": "connect-proxy"}),
                "consul_unsupported",
            ),
            (
                serde_json::json!({"Name": "web", "Port": 1, "Meta": {"consul-check-ttl": "1s"}}),
                "consul_unsupported",
            ),
            (
                serde_json::json!({"Name": "web", "Port": 1, "Check": {"TTL": "1h"}, "DeregisterCriticalServiceAfter": "1m"}),
                "consul_unsupported",
            ),
            (
                serde_json::json!({"Name": "web", "Port": 1, "Check": {"TTL": "1h", "DeregisterCriticalServiceAfter": "1m"}}),
                "consul_unsupported",
            ),
            (
                serde_json::json!({"Name": "web", "Port": 1, "Check": {"TTL": "soon"}}),
                "invalid_json",
            ),
            (
                serde_json::json!({"Name": "Web", "Port": 1}),
                "invalid_service_name",
            ),
            (
                serde_json::json!({"Name": "web", "ID": "web:1", "Port": 1}),
                "invalid_instance_id",
            ),
            (serde_json::json!({"Port": 1}), "invalid_json"),
            (
                serde_json::json!({"Name": "web", "Port": 1, "Check": {"TTL": "5s", "CheckID": "mine"}}),
                "consul_unsupported",
            ),
        ];
        for (body, code) in cases {
            let err = parse(body.clone()).unwrap_err();
            assert_eq!((err.code(), err.status().as_u16()), (code, 400), "{body}");
        }
        assert_eq!(
            parse_registration(b"{", "h").unwrap_err().code(),
            "invalid_json"
        );
    }
}
