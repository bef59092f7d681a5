//! [`ClientError`]: why a call to the directory failed, told apart the way a user has to act
//! on it.

use std::error::Error as _;

use crate::ErrorCode;

/// Longest piece of an unexpected body quoted in an error.
const SNIPPET_CHARS: usize = 60;

/// Why a call failed. Nothing is changed on the directory unless the variant says so.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ClientError {
    /// A node URL is not `http(s)://host:port` (or `host:port`). Remedy: fix the URL.
    #[error("invalid directory URL {url:?}: {reason}")]
    InvalidUrl {
        /// The URL as given.
        url: String,
        /// What is wrong with it.
        reason: String,
    },
    /// The client has no node URL to talk to. Remedy: give at least one.
    #[error("no directory URL given")]
    NoUrl,
    /// A CA certificate is not valid PEM, or the TLS configuration could not be built.
    #[error("invalid TLS configuration: {0}")]
    TlsConfig(String),
    /// Nothing listens at the URL (connection refused). Remedy: start the node or fix the
    /// address.
    #[error("connection refused by {url} (is the node running?)")]
    Refused {
        /// The URL tried.
        url: String,
    },
    /// The node did not answer in time. The request may or may not have been applied.
    #[error("{url} did not answer in time")]
    Timeout {
        /// The URL tried.
        url: String,
    },
    /// The TLS handshake failed, typically an unknown certificate authority (give its CA
    /// with the client's CA option) or a name mismatch.
    #[error("TLS handshake with {url} failed: {reason}")]
    Tls {
        /// The URL tried.
        url: String,
        /// rustls's explanation.
        reason: String,
    },
    /// Another transport failure (DNS, reset connection, ...).
    #[error("cannot reach {url}: {reason}")]
    Connect {
        /// The URL tried.
        url: String,
        /// The root cause.
        reason: String,
    },
    /// Something answered that is not a directory node (an HTML page, a proxy, another
    /// service): its answer has neither the API's shape nor its error shape. Remedy: check
    /// the URL and port.
    #[error(
        "{url} is not a directory node (HTTP {status}, {content_type}, body starts {snippet:?})"
    )]
    NotADirectory {
        /// The URL tried.
        url: String,
        /// HTTP status of the answer.
        status: u16,
        /// Its content type, or `no content type`.
        content_type: String,
        /// The start of the body, control characters replaced; never the whole body.
        snippet: String,
    },
    /// The directory refused the request with an API error. Nothing was changed.
    #[error("{code}: {message} (HTTP {status} from {url})")]
    Api {
        /// The URL tried.
        url: String,
        /// HTTP status.
        status: u16,
        /// The stable error code.
        code: ErrorCode,
        /// The node's explanation.
        message: String,
    },
    /// The watch stream broke off (connection lost or malformed events). Remedy: watch
    /// again, after a lookup to resynchronise.
    #[error("watch stream from {url} ended: {reason}")]
    WatchBroken {
        /// The URL of the stream.
        url: String,
        /// What happened.
        reason: String,
    },
}

impl ClientError {
    /// The API error code, if the directory answered with one.
    pub fn code(&self) -> Option<&ErrorCode> {
        match self {
            Self::Api { code, .. } => Some(code),
            _ => None,
        }
    }

    /// The HTTP status, if a server answered.
    pub fn status(&self) -> Option<u16> {
        match self {
            Self::Api { status, .. } | Self::NotADirectory { status, .. } => Some(*status),
            _ => None,
        }
    }

    /// Whether no usable directory answered (transport failure or a 5xx): a reason to try
    /// another node or later, and to keep working from the last known view.
    pub fn is_unavailable(&self) -> bool {
        match self {
            Self::Refused { .. }
            | Self::Timeout { .. }
            | Self::Tls { .. }
            | Self::Connect { .. }
            | Self::WatchBroken { .. } => true,
            Self::Api { status, .. } | Self::NotADirectory { status, .. } => *status >= 500,
            _ => false,
        }
    }

    /// Classifies a reqwest failure on `url`.
    pub(crate) fn transport(url: &str, error: &reqwest::Error) -> Self {
        let url = url.to_owned();
        if error.is_timeout() {
            return Self::Timeout { url };
        }
        let mut cause: Option<&(dyn std::error::Error + 'static)> = error.source();
        while let Some(err) = cause {
            if let Some(tls) = err.downcast_ref::<rustls::Error>() {
                return Self::Tls {
                    url,
                    reason: tls.to_string(),
                };
            }
            if let Some(found) = err
                .downcast_ref::<std::io::Error>()
                .and_then(|io| Self::from_io(&url, io))
            {
                return found;
            }
            cause = err.source();
        }
        Self::Connect {
            url,
            reason: root_cause(error),
        }
    }

    /// An io error that is a refusal, a timeout or wraps a rustls error. io errors nest
    /// (hyper wraps tokio-rustls's), and `io::Error::source()` skips its payload, so the
    /// payloads are walked here.
    fn from_io(url: &str, io: &std::io::Error) -> Option<Self> {
        let url = url.to_owned();
        let mut io = io;
        loop {
            match io.kind() {
                std::io::ErrorKind::ConnectionRefused => return Some(Self::Refused { url }),
                std::io::ErrorKind::TimedOut => return Some(Self::Timeout { url }),
                _ => {}
            }
            let payload = io.get_ref()?;
            if let Some(tls) = payload.downcast_ref::<rustls::Error>() {
                let reason = tls.to_string();
                return Some(Self::Tls { url, reason });
            }
            io = payload.downcast_ref::<std::io::Error>()?;
        }
    }

    /// The error for a response that is not what the API sends.
    pub(crate) fn not_a_directory(
        url: &str,
        status: u16,
        content_type: Option<&str>,
        body: &[u8],
    ) -> Self {
        Self::NotADirectory {
            url: url.to_owned(),
            status,
            content_type: content_type.unwrap_or("no content type").to_owned(),
            snippet: snippet(body),
        }
    }
}

fn root_cause(error: &(dyn std::error::Error + 'static)) -> String {
    let mut cause = error;
    while let Some(next) = cause.source() {
        cause = next;
    }
    cause.to_string()
}

/// The first [`SNIPPET_CHARS`] characters of `body`, control characters as spaces.
fn snippet(body: &[u8]) -> String {
    let text = String::from_utf8_lossy(body);
    let mut out: String = text
        .chars()
        .take(SNIPPET_CHARS)
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    if text.chars().nth(SNIPPET_CHARS).is_some() {
        out.push('…');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_foreign_body_is_quoted_short_and_on_one_line() {
        let page = format!("<html>\n<body>{}</body></html>", "x".repeat(10_000));
        let err =
            ClientError::not_a_directory("http://h:1", 200, Some("text/html"), page.as_bytes());
        let text = err.to_string();
        assert!(text.contains("not a directory node"), "{text}");
        assert!(text.contains("text/html"), "{text}");
        assert!(
            text.len() < 300,
            "the whole body must not be printed: {text}"
        );
        assert!(!text.contains('\n'), "{text}");
    }

    #[test]
    fn only_transport_failures_and_server_errors_count_as_unavailable() {
        let api = |status| ClientError::Api {
            url: String::new(),
            status,
            code: ErrorCode::Internal,
            message: String::new(),
        };
        assert!(api(503).is_unavailable());
        assert!(!api(404).is_unavailable());
        assert!(ClientError::Refused { url: String::new() }.is_unavailable());
        assert!(!ClientError::NoUrl.is_unavailable());
    }
}
