//! Why a registry request failed, as the poller needs to tell cases apart:
//! back off on [`RegistryError::RateLimited`] for the delay it carries, show
//! the rest as the stage's `poll_error`. Messages never hold a credential or
//! a token.

use std::time::Duration;

use crate::reference::ReferenceError;

/// A failed registry request.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RegistryError {
    /// The HTTP client could not be built (the TLS backend failed).
    #[error("cannot start the registry client: {why}")]
    Setup { why: String },

    /// The repository or tag asked for is not a valid reference.
    #[error(transparent)]
    Reference(#[from] ReferenceError),

    /// A URL would use plain `http://` to a host that is neither loopback
    /// nor in `insecure_registries`.
    #[error("refusing plain HTTP to {host}: it is not a loopback address and not listed in insecure_registries")]
    InsecureRefused { host: String },

    /// No connection (refused, DNS, TLS handshake).
    #[error("registry {host} is unreachable: {why}")]
    Unreachable { host: String, why: String },

    /// The connection or the answer took longer than the client's timeout.
    #[error("registry {host} did not answer within {timeout:?}")]
    Timeout { host: String, timeout: Duration },

    /// The registry refused the credentials, or wants some and there are
    /// none (or only a scheme wharf does not speak).
    #[error("registry {host} refused access to {repository}: {why}")]
    Unauthorized {
        host: String,
        repository: String,
        why: String,
    },

    /// `403`: authenticated, but not allowed.
    #[error("registry {host} denies access to {repository}")]
    Denied { host: String, repository: String },

    /// `404`: no such repository or tag.
    #[error("registry {host} has no {what}")]
    NotFound { host: String, what: String },

    /// `429`: slow down, for `retry_after` when the registry said how long.
    #[error("registry {host} is rate-limiting wharf{}", retry_after.map(|d| format!(" (retry after {}s)", d.as_secs())).unwrap_or_default())]
    RateLimited {
        host: String,
        retry_after: Option<Duration>,
    },

    /// Any other unexpected status, with the registry's own error message
    /// when it sent one (distribution's `{"errors":[{"message":…}]}`).
    #[error("registry {host} answered {status} to {what}{}", message.as_deref().map(|m| format!(": {m}")).unwrap_or_default())]
    Status {
        host: String,
        status: u16,
        what: String,
        message: Option<String>,
    },

    /// The token server (the challenge's realm) failed.
    #[error("token server {realm} failed: {why}")]
    Token { realm: String, why: String },

    /// An answer is larger than wharf reads.
    #[error("registry {host} sent more than {limit} bytes for {what}")]
    TooLarge {
        host: String,
        what: String,
        limit: usize,
    },

    /// An answer that does not follow the distribution API.
    #[error("registry {host} sent a malformed {what}: {why}")]
    Malformed {
        host: String,
        what: String,
        why: String,
    },
}

impl RegistryError {
    /// How long the registry asked wharf to wait, for a rate limit.
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            RegistryError::RateLimited { retry_after, .. } => *retry_after,
            _ => None,
        }
    }
}
