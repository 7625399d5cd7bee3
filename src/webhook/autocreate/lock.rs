//! One lock per repository for auto-creation.
//!
//! Creating a project may pull its image (up to two minutes), so one lock
//! for all of them would make every other new image wait behind that pull.
//! A lock per repository keeps the guarantee that matters (one project per
//! new image, however many pushes of it arrive at once) without that wait.
//! An entry lives only while someone holds or waits for its lock, so the map
//! does not grow with every repository ever pushed.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use tokio::sync::OwnedMutexGuard;

/// The locks of the repositories being auto-created now.
#[derive(Default)]
pub(super) struct RepoLocks {
    entries: Mutex<HashMap<String, Entry>>,
}

struct Entry {
    lock: Arc<tokio::sync::Mutex<()>>,
    /// Holders and waiters: the entry goes when the last of them is done.
    users: usize,
}

/// Holds a repository's lock until dropped. It also counts as a user while
/// it waits, so a waiter that is cancelled (the push's request went away)
/// leaves no entry behind.
pub(super) struct RepoGuard<'a> {
    locks: &'a RepoLocks,
    repository: String,
    _held: Option<OwnedMutexGuard<()>>,
}

impl RepoLocks {
    /// Wait for, and take, the lock of `repository`.
    pub(super) async fn lock(&self, repository: &str) -> RepoGuard<'_> {
        let lock = {
            let mut entries = self.entries();
            let entry = entries
                .entry(repository.to_string())
                .or_insert_with(|| Entry {
                    lock: Arc::default(),
                    users: 0,
                });
            entry.users += 1;
            entry.lock.clone()
        };
        let mut guard = RepoGuard {
            locks: self,
            repository: repository.to_string(),
            _held: None,
        };
        guard._held = Some(lock.lock_owned().await);
        guard
    }

    /// The map is only touched for a moment, never across an await; a
    /// panic elsewhere leaves it consistent, so poisoning is ignored.
    fn entries(&self) -> MutexGuard<'_, HashMap<String, Entry>> {
        self.entries.lock().unwrap_or_else(PoisonError::into_inner)
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.entries().len()
    }
}

impl Drop for RepoGuard<'_> {
    fn drop(&mut self) {
        self._held = None;
        let mut entries = self.locks.entries();
        if let Some(entry) = entries.get_mut(&self.repository) {
            entry.users = entry.users.saturating_sub(1);
            if entry.users == 0 {
                entries.remove(&self.repository);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    const SOON: Duration = Duration::from_millis(100);

    #[tokio::test]
    async fn other_repositories_do_not_wait_and_the_same_one_does() {
        let locks = RepoLocks::default();
        let web = locks.lock("docker.io/acme/web").await;
        // Another repository: taken at once while web is held.
        let api = tokio::time::timeout(SOON, locks.lock("docker.io/acme/api"))
            .await
            .expect("another repository does not wait");
        // The same repository waits for the holder.
        assert!(tokio::time::timeout(SOON, locks.lock("docker.io/acme/web"))
            .await
            .is_err());
        drop(web);
        let again = tokio::time::timeout(SOON, locks.lock("docker.io/acme/web"))
            .await
            .expect("free once the holder is done");
        drop(again);
        drop(api);
        assert_eq!(locks.len(), 0, "no entry outlives its users");
    }

    #[tokio::test]
    async fn a_cancelled_waiter_leaves_no_entry() {
        let locks = RepoLocks::default();
        let held = locks.lock("r").await;
        assert!(tokio::time::timeout(SOON, locks.lock("r")).await.is_err());
        assert_eq!(locks.len(), 1);
        drop(held);
        assert_eq!(locks.len(), 0);
    }
}
