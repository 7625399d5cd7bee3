//! What the poller last found for each polled stage, for the admin API and
//! `wharf status`: the error of the last poll (`poll_error`), if it failed.

use std::collections::HashMap;
use std::sync::{Mutex, PoisonError};

/// A project's stage, as the poller keys it.
pub type StageKey = (String, String);

/// Shared between the poller (writer) and the admin API (reader).
#[derive(Debug, Default)]
pub struct PollStatus {
    errors: Mutex<HashMap<StageKey, String>>,
}

impl PollStatus {
    /// The last poll of the stage failed with `message` (or succeeded, with
    /// `None`). Returns whether this changed what was shown, so the poller
    /// logs an error once per change, not once per poll.
    pub fn set(&self, key: &StageKey, message: Option<String>) -> bool {
        let mut errors = self.errors.lock().unwrap_or_else(PoisonError::into_inner);
        match message {
            Some(message) => errors.insert(key.clone(), message.clone()).as_ref() != Some(&message),
            None => errors.remove(key).is_some(),
        }
    }

    /// The stage's `poll_error`: why its last poll failed, if it did.
    pub fn error(&self, project: &str, stage: &str) -> Option<String> {
        self.errors
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(&(project.to_string(), stage.to_string()))
            .cloned()
    }

    /// Forget stages that no longer poll (removed, or `poll` taken out).
    pub fn retain(&self, keep: impl Fn(&StageKey) -> bool) {
        self.errors
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .retain(|key, _| keep(key));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_error_is_news_once() {
        let status = PollStatus::default();
        let key = ("web".to_string(), "prod".to_string());
        assert!(status.set(&key, Some("down".into())));
        assert!(!status.set(&key, Some("down".into())));
        assert_eq!(status.error("web", "prod").as_deref(), Some("down"));
        assert!(status.set(&key, Some("401".into())));
        assert!(status.set(&key, None));
        assert!(!status.set(&key, None));
        assert_eq!(status.error("web", "prod"), None);
    }
}
