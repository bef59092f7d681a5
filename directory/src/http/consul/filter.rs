//! The supported subset of Consul's `filter=` expressions, I/O-free: a conjunction (`and`)
//! of clauses, each one of
//!
//! - `Selector == "value"`, `Selector != "value"`
//! - `Selector contains "value"`, `Selector not contains "value"`
//! - `"value" in Selector`, `"value" not in Selector`
//! - `Selector is empty`, `Selector is not empty`
//!
//! Selectors depend on the endpoint ([`Vocabulary`]). `or`, `not (...)`, parentheses,
//! `matches` and unknown selectors are refused with a message naming the subset.

use std::collections::BTreeMap;

use crate::http::ApiError;

/// Longest accepted expression, in bytes.
pub const MAX_FILTER_LEN: usize = 4096;

/// Which selector names an endpoint uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Vocabulary {
    /// `health/service`: `Service.ID`, `Service.Service`, `Service.Tags`, `Service.Address`,
    /// `Service.Port`, `Service.Meta`, `Service.Meta.<key>`, `Node.Node`, `Node.Address`.
    Health,
    /// `catalog/service(s)`: `ServiceID`, `ServiceName`, `ServiceTags`, `ServiceAddress`,
    /// `ServicePort`, `ServiceMeta`, `ServiceMeta.<key>`, `Node`, `Address`.
    Catalog,
}

/// What a filter looks at, one instance.
#[derive(Debug, Clone, Copy)]
pub struct Subject<'a> {
    /// Instance id.
    pub id: &'a str,
    /// Service name.
    pub name: &'a str,
    /// Tags.
    pub tags: &'a [String],
    /// Host.
    pub address: &'a str,
    /// Port.
    pub port: u16,
    /// Meta (reserved keys removed).
    pub meta: &'a BTreeMap<String, String>,
    /// Owning node.
    pub node: &'a str,
    /// Owning node's address.
    pub node_address: &'a str,
}

/// A parsed filter.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Filter(Vec<Clause>);

#[derive(Debug, Clone, PartialEq, Eq)]
enum Field {
    Id,
    Name,
    Tags,
    Address,
    Port,
    MetaMap,
    Meta(String),
    Node,
    NodeAddress,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Test {
    Equals(String),
    Contains(String),
    Empty,
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Clause {
    field: Field,
    test: Test,
    negated: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Token {
    Word(String),
    Quoted(String),
    Eq,
    Ne,
}

const SUBSET: &str = "supported filter subset: clauses joined by `and`, each `Selector == \"v\"`, \
`!=`, `contains`, `not contains`, `\"v\" in Selector`, `\"v\" not in Selector`, `is empty`, \
`is not empty`";

fn refuse(what: impl std::fmt::Display) -> ApiError {
    ApiError::invalid_query(format!("filter: {what}; {SUBSET}"))
}

impl Filter {
    /// Parses `text` for an endpoint using `vocabulary`.
    pub fn parse(text: &str, vocabulary: Vocabulary) -> Result<Self, ApiError> {
        if text.len() > MAX_FILTER_LEN {
            return Err(refuse(format!("longer than {MAX_FILTER_LEN} bytes")));
        }
        let tokens = tokenize(text)?;
        let mut clauses = Vec::new();
        for part in tokens.split(|t| matches!(t, Token::Word(w) if w == "and")) {
            clauses.push(clause(part, vocabulary)?);
        }
        Ok(Self(clauses))
    }

    /// Whether `subject` passes every clause.
    pub fn matches(&self, subject: &Subject<'_>) -> bool {
        self.0.iter().all(|c| c.matches(subject))
    }
}

fn tokenize(text: &str) -> Result<Vec<Token>, ApiError> {
    let mut tokens = Vec::new();
    let mut chars = text.chars().peekable();
    while let Some(&c) = chars.peek() {
        match c {
            c if c.is_whitespace() => {
                chars.next();
            }
            '"' | '`' => {
                chars.next();
                tokens.push(Token::Quoted(quoted(&mut chars, c)?));
            }
            '=' | '!' => {
                chars.next();
                if chars.next() != Some('=') {
                    return Err(refuse(format!("unexpected {c:?}")));
                }
                tokens.push(if c == '=' { Token::Eq } else { Token::Ne });
            }
            c if c.is_alphanumeric() || matches!(c, '.' | '_' | '-') => {
                let mut word = String::new();
                while let Some(&c) = chars
                    .peek()
                    .filter(|c| c.is_alphanumeric() || matches!(c, '.' | '_' | '-'))
                {
                    word.push(c);
                    chars.next();
                }
                tokens.push(Token::Word(word));
            }
            other => return Err(refuse(format!("unsupported character {other:?}"))),
        }
    }
    Ok(tokens)
}

fn quoted(
    chars: &mut std::iter::Peekable<std::str::Chars<'_>>,
    end: char,
) -> Result<String, ApiError> {
    let mut out = String::new();
    while let Some(c) = chars.next() {
        match c {
            '\\' if end == '"' => {
                out.push(chars.next().ok_or_else(|| refuse("unterminated string"))?)
            }
            c if c == end => return Ok(out),
            c => out.push(c),
        }
    }
    Err(refuse("unterminated string"))
}

fn clause(tokens: &[Token], vocabulary: Vocabulary) -> Result<Clause, ApiError> {
    use Token::{Eq, Ne, Quoted, Word};
    let word = |w: &str| Word(w.to_owned());
    let (field, test, negated) = match tokens {
        [Word(s), Eq, v] => (s, Test::Equals(value(v)?), false),
        [Word(s), Ne, v] => (s, Test::Equals(value(v)?), true),
        [Word(s), c, v] if *c == word("contains") => (s, Test::Contains(value(v)?), false),
        [Word(s), n, c, v] if *n == word("not") && *c == word("contains") => {
            (s, Test::Contains(value(v)?), true)
        }
        [Quoted(v), i, Word(s)] if *i == word("in") => (s, Test::Contains(v.clone()), false),
        [Quoted(v), n, i, Word(s)] if *n == word("not") && *i == word("in") => {
            (s, Test::Contains(v.clone()), true)
        }
        [Word(s), i, e] if *i == word("is") && *e == word("empty") => (s, Test::Empty, false),
        [Word(s), i, n, e] if *i == word("is") && *n == word("not") && *e == word("empty") => {
            (s, Test::Empty, true)
        }
        [] => return Err(refuse("empty clause")),
        _ => return Err(refuse(format!("unsupported clause `{}`", render(tokens)))),
    };
    let field = selector(field, vocabulary)?;
    check_applies(&field, &test)?;
    Ok(Clause {
        field,
        test,
        negated,
    })
}

fn value(token: &Token) -> Result<String, ApiError> {
    match token {
        Token::Quoted(v) | Token::Word(v) => Ok(v.clone()),
        _ => Err(refuse("expected a value")),
    }
}

fn render(tokens: &[Token]) -> String {
    let parts: Vec<String> = tokens
        .iter()
        .map(|t| match t {
            Token::Word(w) => w.clone(),
            Token::Quoted(q) => format!("{q:?}"),
            Token::Eq => "==".into(),
            Token::Ne => "!=".into(),
        })
        .collect();
    parts.join(" ")
}

fn selector(name: &str, vocabulary: Vocabulary) -> Result<Field, ApiError> {
    let (prefix, names): (&str, [&str; 8]) = match vocabulary {
        Vocabulary::Health => (
            "Service.Meta.",
            [
                "Service.ID",
                "Service.Service",
                "Service.Tags",
                "Service.Address",
                "Service.Port",
                "Service.Meta",
                "Node.Node",
                "Node.Address",
            ],
        ),
        Vocabulary::Catalog => (
            "ServiceMeta.",
            [
                "ServiceID",
                "ServiceName",
                "ServiceTags",
                "ServiceAddress",
                "ServicePort",
                "ServiceMeta",
                "Node",
                "Address",
            ],
        ),
    };
    if let Some(key) = name.strip_prefix(prefix).filter(|k| !k.is_empty()) {
        return Ok(Field::Meta(key.to_owned()));
    }
    let fields = [
        Field::Id,
        Field::Name,
        Field::Tags,
        Field::Address,
        Field::Port,
        Field::MetaMap,
        Field::Node,
        Field::NodeAddress,
    ];
    names
        .iter()
        .position(|n| *n == name)
        .map(|i| fields[i].clone())
        .ok_or_else(|| {
            refuse(format!(
                "unsupported selector {name:?} (supported here: {}, {prefix}<key>)",
                names.join(", ")
            ))
        })
}

fn check_applies(field: &Field, test: &Test) -> Result<(), ApiError> {
    match (field, test) {
        (Field::Tags | Field::MetaMap, Test::Equals(_)) => Err(refuse(
            "== and != need a single-valued selector, not a list or map",
        )),
        _ => Ok(()),
    }
}

impl Clause {
    fn matches(&self, s: &Subject<'_>) -> bool {
        self.negated != self.holds(s)
    }

    fn holds(&self, s: &Subject<'_>) -> bool {
        let port = s.port.to_string();
        let text = match &self.field {
            Field::Tags => return self.on_list(s.tags),
            Field::MetaMap => return self.on_map(s.meta),
            Field::Id => s.id,
            Field::Name => s.name,
            Field::Address => s.address,
            Field::Port => &port,
            Field::Meta(key) => s.meta.get(key).map_or("", String::as_str),
            Field::Node => s.node,
            Field::NodeAddress => s.node_address,
        };
        match &self.test {
            Test::Equals(v) => text == v,
            Test::Contains(v) => text.contains(v.as_str()),
            Test::Empty => text.is_empty(),
        }
    }

    fn on_list(&self, list: &[String]) -> bool {
        match &self.test {
            Test::Contains(v) => list.iter().any(|t| t == v),
            Test::Empty => list.is_empty(),
            Test::Equals(_) => false,
        }
    }

    fn on_map(&self, map: &BTreeMap<String, String>) -> bool {
        match &self.test {
            Test::Contains(k) => map.contains_key(k),
            Test::Empty => map.is_empty(),
            Test::Equals(_) => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn subject<'a>(tags: &'a [String], meta: &'a BTreeMap<String, String>) -> Subject<'a> {
        Subject {
            id: "web-1",
            name: "web",
            tags,
            address: "10.0.0.1",
            port: 8080,
            meta,
            node: "n1",
            node_address: "10.0.0.254",
        }
    }

    fn eval(expr: &str, vocabulary: Vocabulary) -> bool {
        let tags = vec!["primary".to_string(), "v2".to_string()];
        let meta = BTreeMap::from([("env".to_string(), "prod".to_string())]);
        Filter::parse(expr, vocabulary)
            .unwrap_or_else(|e| panic!("{expr}: {e:?}"))
            .matches(&subject(&tags, &meta))
    }

    #[test]
    fn the_supported_clauses_evaluate_like_consuls() {
        use Vocabulary::{Catalog, Health};
        for (expr, vocabulary, expected) in [
            (r#"Service.Tags contains "primary""#, Health, true),
            (r#"Service.Tags contains "x""#, Health, false),
            (r#""v2" in Service.Tags"#, Health, true),
            (r#""v2" not in Service.Tags"#, Health, false),
            (r#"Service.Meta.env == "prod""#, Health, true),
            (r#"Service.Meta.env != "prod""#, Health, false),
            (r#"Service.Meta.missing == """#, Health, true),
            (r#"Service.Meta contains "env""#, Health, true),
            (r#"Service.Port == 8080 and Node.Node == n1"#, Health, true),
            (
                r#"Service.Tags contains "primary" and Service.Meta.env == "dev""#,
                Health,
                false,
            ),
            (r#"Service.Address contains "10.0""#, Health, true),
            ("Service.Tags is not empty", Health, true),
            ("Service.Meta is empty", Health, false),
            (
                r#"ServiceTags contains "v2" and ServiceMeta.env == `prod`"#,
                Catalog,
                true,
            ),
            (
                r#"ServiceName == "web" and Address == "10.0.0.254""#,
                Catalog,
                true,
            ),
            (r#"ServiceID not contains "web""#, Catalog, false),
        ] {
            assert_eq!(eval(expr, vocabulary), expected, "{expr}");
        }
    }

    #[test]
    fn expressions_outside_the_subset_are_a_400_naming_it() {
        for expr in [
            r#"Service.Tags contains "a" or Service.Tags contains "b""#,
            r#"not (Service.Meta.env == "prod")"#,
            r#"Service.Meta.env matches "p.*""#,
            r#"(Service.Port == 1)"#,
            r#"Service.Bogus == "x""#,
            r#"ServiceName == "web""#,
            r#"Service.Tags == "x""#,
            r#"Service.ID == "unterminated"#,
            "Service.ID =",
            "and",
            "",
        ] {
            let err = Filter::parse(expr, Vocabulary::Health).unwrap_err();
            assert_eq!(
                (err.status().as_u16(), err.code()),
                (400, "invalid_query"),
                "{expr}"
            );
        }
        assert!(Filter::parse(&"a".repeat(MAX_FILTER_LEN + 1), Vocabulary::Health).is_err());
    }
}
