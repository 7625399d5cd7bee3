//! Registry credentials (read by `wharf-registry`'s `auth` module from the
//! Docker config file) in the form bollard sends them to the engine.

use bollard::auth::DockerCredentials;
use wharf_registry::auth::Credentials;

/// Registry credentials in bollard's form. A function, not a `From`: both
/// types are foreign to this crate, and bollard stays out of
/// `wharf-registry`.
pub(crate) fn docker_credentials(credentials: &Credentials) -> DockerCredentials {
    DockerCredentials {
        username: credentials.username.clone(),
        password: credentials.password.clone(),
        identitytoken: credentials.identity_token.clone(),
        serveraddress: Some(credentials.server.clone()),
        ..Default::default()
    }
}
