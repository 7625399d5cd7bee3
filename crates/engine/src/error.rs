//! Why an engine call failed, in the few terms the deploy flows decide on
//! (unreachable, not found, refused, timed out), and bollard's errors turned
//! into them.

use bollard::errors::Error as BollardError;

/// Why an engine call failed, in the terms the deploy flow decides on.
#[derive(Debug, Clone, thiserror::Error)]
pub enum EngineError {
    /// The engine cannot be reached at all.
    #[error("cannot reach the Docker engine at {host}: {message}")]
    Unreachable { host: String, message: String },
    /// No such container or image (or, for a pull, no such tag).
    #[error("{0}")]
    NotFound(String),
    /// The engine refused: name in use, port taken, bad reference, …
    #[error("{0}")]
    Refused(String),
    /// A stream from the engine (a pull) went on too long or went silent.
    #[error("{0}")]
    TimedOut(String),
}

/// A bollard error as an [`EngineError`]; `host` names the engine for
/// [`EngineError::Unreachable`].
pub(crate) fn classify(host: &str, error: BollardError) -> EngineError {
    match error {
        BollardError::DockerResponseServerError {
            status_code: 404,
            message,
        } => EngineError::NotFound(message),
        BollardError::DockerResponseServerError { message, .. } => EngineError::Refused(message),
        BollardError::DockerStreamError { error } => EngineError::Refused(error),
        BollardError::SocketNotFoundError(_)
        | BollardError::HyperLegacyError { .. }
        | BollardError::IOError { .. }
        | BollardError::RequestTimeoutError => EngineError::Unreachable {
            host: host.to_string(),
            message: error.to_string(),
        },
        other => EngineError::Refused(other.to_string()),
    }
}

/// An error and its causes, `outer: inner: …`: hyper's own message for a
/// refused connection is just "client error (Connect)"; the cause says
/// "Connection refused".
pub(crate) fn with_causes(error: &dyn std::error::Error) -> String {
    let mut message = error.to_string();
    let mut cause = error.source();
    while let Some(inner) = cause {
        let text = inner.to_string();
        if !message.contains(&text) {
            message.push_str(": ");
            message.push_str(&text);
        }
        cause = inner.source();
    }
    message
}
