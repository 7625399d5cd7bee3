//! The states of a deployment, a domain type: the store records it, the
//! engine moves it, config, metrics and the API name it.

use serde::Serialize;

/// The life of a deployment.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    Queued,
    AwaitingApproval,
    Running,
    Succeeded,
    Failed,
    Rejected,
    Superseded,
    Interrupted,
}

impl Status {
    pub const ALL: [Status; 8] = [
        Status::Queued,
        Status::AwaitingApproval,
        Status::Running,
        Status::Succeeded,
        Status::Failed,
        Status::Rejected,
        Status::Superseded,
        Status::Interrupted,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Status::Queued => "queued",
            Status::AwaitingApproval => "awaiting_approval",
            Status::Running => "running",
            Status::Succeeded => "succeeded",
            Status::Failed => "failed",
            Status::Rejected => "rejected",
            Status::Superseded => "superseded",
            Status::Interrupted => "interrupted",
        }
    }

    pub fn parse(text: &str) -> Option<Status> {
        Status::ALL.into_iter().find(|s| s.as_str() == text)
    }

    /// A status no deployment leaves.
    pub fn is_final(self) -> bool {
        !matches!(
            self,
            Status::Queued | Status::AwaitingApproval | Status::Running
        )
    }
}
