//! The parts of a deployer's table that go to the engine as written, for
//! containers (docker) and services (swarm) alike: environment values and
//! the operator's own labels.

use std::collections::BTreeMap;

use serde::Deserialize;

/// A TOML value an operator may reasonably write for an environment value or
/// a size: `PORT = 8080` is as good as `PORT = "8080"`.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum Scalar {
    Text(String),
    Integer(i64),
    Float(f64),
    Bool(bool),
}

impl Scalar {
    /// The value as an environment variable holds it.
    pub fn to_text(&self) -> String {
        match self {
            Scalar::Text(text) => text.clone(),
            Scalar::Integer(n) => n.to_string(),
            Scalar::Float(x) => x.to_string(),
            Scalar::Bool(b) => b.to_string(),
        }
    }
}

/// An `env` table as the engine takes it: every key a variable name, every
/// value as text.
///
/// # Errors
/// The first key that is not a variable name, as `env: '…': …`.
pub fn environment(raw: &BTreeMap<String, Scalar>) -> Result<BTreeMap<String, String>, String> {
    raw.iter()
        .map(|(key, value)| {
            if key.is_empty() || key.contains('=') || key.contains('\0') {
                Err(format!(
                    "env: '{key}' is not a variable name (no '=', not empty)"
                ))
            } else {
                Ok((key.clone(), value.to_text()))
            }
        })
        .collect()
}

/// An operator's own `labels`: `wharf.*` is reserved for the labels wharf
/// sets itself.
///
/// # Errors
/// The first reserved key, as `labels: '…': …`.
pub fn own_labels(labels: &BTreeMap<String, String>) -> Result<(), String> {
    match labels.keys().find(|k| k.starts_with("wharf.")) {
        Some(key) => Err(format!(
            "labels: '{key}': wharf.* labels are set by wharf itself"
        )),
        None => Ok(()),
    }
}
