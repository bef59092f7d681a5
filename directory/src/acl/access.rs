//! What one request may do: who made it and the rules that apply to it.

use std::sync::Arc;

use super::rules::RuleSet;

/// The rights of one request, decided once from its token (see [`super::Acl::authenticate`]).
#[derive(Debug, Clone)]
pub struct Access {
    subject: Subject,
    rules: Arc<RuleSet>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Subject {
    /// No ACL file: everything is allowed.
    Open,
    /// ACLs on, no token: the anonymous rules apply.
    Anonymous,
    /// ACLs on, a known token with this public id.
    Token(Arc<str>),
}

/// Why a request is refused. Nothing was changed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Denied {
    /// The request has no token and the anonymous rules do not allow it. Remedy: send a
    /// token (`Authorization: Bearer <secret>` or `X-Directory-Token`). HTTP 401.
    #[error(
        "{0} needs a token: send Authorization: Bearer <secret> or X-Directory-Token: <secret>"
    )]
    TokenRequired(String),
    /// The token is not in the node's ACL file (mistyped, deleted, or the file differs
    /// between nodes). HTTP 401.
    #[error("unknown token: it is not in this node's ACL file")]
    UnknownToken,
    /// The named header is present but holds no usable token (e.g. `Authorization: Basic`,
    /// an empty value). Remedy: send `Bearer <secret>`. HTTP 401.
    #[error("malformed {0} header: expected a token secret (Authorization: Bearer <secret>)")]
    Malformed(&'static str),
    /// The token is known but its rules do not allow this. HTTP 403.
    #[error("token {token} may not {what}")]
    Forbidden {
        /// The token's public id.
        token: String,
        /// What was refused, e.g. `write service orders`.
        what: String,
    },
}

impl Access {
    /// Everything allowed: a node without an ACL file.
    pub fn open() -> Self {
        Self {
            subject: Subject::Open,
            rules: Arc::new(RuleSet::everything()),
        }
    }

    /// A request without a token, under the anonymous `rules`.
    pub fn anonymous(rules: Arc<RuleSet>) -> Self {
        Self {
            subject: Subject::Anonymous,
            rules,
        }
    }

    /// A request carrying the token with public `id` and its `rules`.
    pub fn token(id: Arc<str>, rules: Arc<RuleSet>) -> Self {
        Self {
            subject: Subject::Token(id),
            rules,
        }
    }

    /// The token's public id, if the request carried a known token.
    pub fn token_id(&self) -> Option<&str> {
        match &self.subject {
            Subject::Token(id) => Some(id),
            _ => None,
        }
    }

    /// Whether ACLs are enforced for this request (false without an ACL file).
    pub fn is_enforced(&self) -> bool {
        self.subject != Subject::Open
    }

    /// Whether `service` may be read; used to filter lists and streams.
    pub fn can_read(&self, service: &str) -> bool {
        self.rules.can_read(service)
    }

    /// Allows reading `service` (lookup, blocking query, one instance, a filtered watch).
    pub fn read(&self, service: &str) -> Result<(), Denied> {
        self.allow(self.rules.can_read(service), || {
            format!("read service {service}")
        })
    }

    /// Allows writing `service` (register, heartbeat, deregister).
    pub fn write(&self, service: &str) -> Result<(), Denied> {
        self.allow(self.rules.can_write(service), || {
            format!("write service {service}")
        })
    }

    /// Allows registering a subscription to topic pattern `pattern`.
    pub fn subscribe(&self, pattern: &str) -> Result<(), Denied> {
        self.allow(self.rules.can_subscribe(pattern), || {
            format!("subscribe to topic pattern {pattern}")
        })
    }

    /// Allows reading the subscribers of `topic` (to publish on it).
    pub fn publish(&self, topic: &str) -> Result<(), Denied> {
        self.allow(self.rules.can_publish(topic), || {
            format!("publish on topic {topic}")
        })
    }

    /// Allows the topic listing: any topic rule, or operator.
    pub fn list_topics(&self) -> Result<(), Denied> {
        let allowed = self.rules.any_topic() || self.rules.is_operator();
        self.allow(allowed, || "list topics".into())
    }

    /// Allows cluster operations (members, metrics).
    pub fn operator(&self) -> Result<(), Denied> {
        self.allow(self.rules.is_operator(), || "use operator endpoints".into())
    }

    /// Allows listing what the request may read (catalog, unfiltered watch): refused when
    /// it may read nothing at all, filtered by [`Self::can_read`] otherwise.
    pub fn list(&self) -> Result<(), Denied> {
        self.allow(self.rules.reads_any(), || "read any service".into())
    }

    /// Allows what any known token may do (the OpenAPI document); anonymous requests need
    /// at least one anonymous rule.
    pub fn any(&self) -> Result<(), Denied> {
        let allowed = !matches!(self.subject, Subject::Anonymous) || !self.rules.is_empty();
        self.allow(allowed, || "read the API document".into())
    }

    fn allow(&self, allowed: bool, what: impl FnOnce() -> String) -> Result<(), Denied> {
        if allowed {
            return Ok(());
        }
        Err(match &self.subject {
            Subject::Token(id) => Denied::Forbidden {
                token: id.to_string(),
                what: what(),
            },
            Subject::Anonymous | Subject::Open => Denied::TokenRequired(what()),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rules(list: &[&str]) -> Arc<RuleSet> {
        Arc::new(RuleSet::new(
            list.iter().map(|r| r.parse().unwrap()).collect(),
        ))
    }

    #[test]
    fn an_anonymous_refusal_asks_for_a_token_and_a_token_refusal_names_it() {
        let anonymous = Access::anonymous(rules(&[]));
        assert!(matches!(anonymous.read("a"), Err(Denied::TokenRequired(_))));
        assert!(anonymous.any().is_err() && anonymous.list().is_err());
        let token = Access::token("00ff".into(), rules(&["read:a"]));
        assert!(token.read("a").is_ok() && token.list().is_ok() && token.any().is_ok());
        let err = token.write("a").unwrap_err();
        assert_eq!(err.to_string(), "token 00ff may not write service a");
        assert!(matches!(token.operator(), Err(Denied::Forbidden { .. })));
    }

    #[test]
    fn an_open_node_allows_everything_and_enforces_nothing() {
        let open = Access::open();
        assert!(!open.is_enforced() && open.token_id().is_none());
        assert!(open.write("x").is_ok() && open.operator().is_ok() && open.list().is_ok());
    }
}
