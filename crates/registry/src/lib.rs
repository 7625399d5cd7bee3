//! Image references and registry access, shared by the daemon and every
//! deployer plugin, so that a reference is split and normalized by one set of
//! rules (Docker's) wherever wharf meets one.
//!
//! - [`reference`]: the parser and normalizer of Docker image references
//!   (`nginx`, `localhost:5000/acme/web:v1@sha256:…`), fuzzed under `fuzz/`.
//! - [`auth`]: registry credentials from the Docker client's config file
//!   (`docker login`'s `auths` entries), for pulls and registry queries.
//! - [`client`]: a registry client for polling (every page of `tags/list`,
//!   manifest digests by `HEAD`, basic auth and the Bearer token challenge
//!   with those credentials), beside the credentials it uses.
//! - [`choose`]: which tag polling deploys (the highest semver above the
//!   current one; a digest watch for the other tags), pure functions.

// Tests may slice strings they wrote themselves (clippy.toml allows the
// other panicking forms in tests).
#![cfg_attr(test, allow(clippy::string_slice))]

pub mod auth;
pub mod choose;
pub mod client;
pub mod reference;
