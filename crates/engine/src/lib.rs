//! The one crate that speaks bollard (the Docker Engine API), for the
//! deployers that drive Docker engines (docker, swarm). Everything else uses
//! the small types here, so an upgrade of bollard (whose option and model
//! types change between releases) touches this crate only, and no bollard
//! type appears in its public API.
//!
//! bollard 0.21 speaks API 1.53 by default; [`Engine::connect`] negotiates
//! down to what the engine offers, and every call here sticks to what API
//! 1.41 (Docker 20.10, Debian 12's engine) already has: one network at
//! creation (others are joined with a separate call), no multi-platform
//! image options.
//!
//! - [`hosts`]: which engines a stage deploys to (`[hosts]` in `wharf.toml`,
//!   `host`/`hosts` in a project's table), checked when the file loads.
//! - `connect`: the connection ([`Engine`]): the local engine, `tcp://` with
//!   TLS client certificates, `unix://`, `ssh://`; API version negotiation.
//! - `containers`, `images`: the calls the docker deployer makes
//!   (inspect, create, start, stop, rename, remove, tail; pull within
//!   [`PullLimits`], list, remove images).
//! - [`swarm`]: services, tasks and nodes, for the swarm deployer.
//! - [`rollout`]: one deployment across several engines, all or nothing.
//! - [`values`]: the env values and labels a table hands to the engine.
//! - Registry credentials come from `wharf-registry`'s `auth` module;
//!   their conversion to bollard's form is this crate's (`credentials`).

// Tests may slice strings they wrote themselves (clippy.toml allows the
// other panicking forms in tests).
#![cfg_attr(test, allow(clippy::string_slice))]

mod connect;
mod containers;
mod credentials;
mod error;
pub mod hosts;
mod images;
pub mod rollout;
pub mod swarm;
pub mod values;

pub use connect::{Engine, Machine};
pub use containers::{ContainerInfo, ContainerSpec, HealthState};
pub use error::EngineError;
pub use images::{ImageEntry, ImageInfo, PullEvent, PullLimits};
