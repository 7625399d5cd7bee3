//! Deployments: the durable store (history and queue), the engine that runs
//! them one at a time per stage, and the notifications sent when they end.

pub mod engine;
pub mod notify;
pub mod status;
pub mod store;
