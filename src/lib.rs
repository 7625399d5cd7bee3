//! wharf: a push-to-deploy daemon.
//!
//! A CI job pushes an image and calls one secret URL; wharf matches the image
//! to projects and the tag to stages, records a deployment durably, and runs
//! it through a deployer plugin. The modules, in the order a push meets them:
//!
//! - [`api`]: the Rocket app — the webhook route (secret check, body limit),
//!   the admin API, `/healthz`, `/metrics`; request logging without secrets.
//! - [`dashboard`]: the web dashboard at `/` (sessions, pages, live events),
//!   embedded in the binary.
//! - [`webhook`]: payload formats → pushes ([`webhook::payload`]), signatures
//!   ([`webhook::signature`]), matching pushes to stages ([`webhook::matching`]).
//! - [`reference`]: Docker image references, parsed and normalized like Docker
//!   (the `wharf-registry` crate's, re-exported under its old path).
//! - [`config`]: `wharf.toml` (figment layers), `settings.toml` (secrets),
//!   project files and the live [`config::catalog::Catalog`] snapshot.
//! - [`deploy`]: the SQLite store (history and queue), the engine (one worker
//!   per stage, recovery, shutdown) and notifications.
//! - [`plugins`]: the deployer plugins compiled in; each lives in its own
//!   crate under `plugins/` and speaks only `wharf-plugin-api`.
//! - [`proxy`]: `wharf proxy`, the route proxy (its own process) that
//!   keeps a stage's address while its container is replaced, and the
//!   daemon's client for it.
//! - [`daemon`]: `wharf serve`, wiring all of the above; [`cli`]: the rest of
//!   the command line.

// Tests may slice strings they wrote themselves (clippy.toml allows the
// other panicking forms in tests).
#![cfg_attr(test, allow(clippy::string_slice))]

pub mod api;
pub mod cli;
pub mod config;
pub mod daemon;
pub mod dashboard;
pub mod deploy;
pub mod metrics;
pub mod plugins;
pub mod poll;
pub mod proxy;
pub use wharf_registry::reference;
pub mod webhook;
