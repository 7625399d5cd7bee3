//! Dashboard sessions, kept in memory only: a restart signs everyone out,
//! which is the safe direction.
//!
//! A session id is 256 random bits, sent to the browser in an `HttpOnly`
//! cookie; the admin token itself never leaves the sign-in request. Each
//! session remembers a hash of the admin token it was opened with, so that
//! rotating or editing the token ends every session at once. Each also has
//! its own CSRF token, which every state-changing form must carry.

use std::collections::{HashMap, VecDeque};
use std::net::IpAddr;
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::config::settings::new_admin_token;

/// A session unused this long ends.
pub const IDLE_LIMIT: Duration = Duration::from_secs(12 * 60 * 60);
/// Failed sign-ins allowed per client address per [`ATTEMPT_WINDOW`].
pub const MAX_FAILED_ATTEMPTS: usize = 5;
pub const ATTEMPT_WINDOW: Duration = Duration::from_secs(60);
/// More sessions than this: the least recently used ones end first, so a
/// flood of sign-ins cannot grow memory without bound.
const MAX_SESSIONS: usize = 1024;
/// Client addresses remembered for rate limiting, bounded for the same reason.
const MAX_TRACKED_CLIENTS: usize = 4096;

struct Session {
    csrf: String,
    token_hash: [u8; 32],
    last_seen: Instant,
}

/// What a valid session gives a request.
#[derive(Debug, Clone)]
pub struct Active {
    pub id: String,
    pub csrf: String,
}

/// All sessions and recent failed sign-ins.
#[derive(Default)]
pub struct Sessions {
    sessions: Mutex<HashMap<String, Session>>,
    failures: Mutex<HashMap<IpAddr, VecDeque<Instant>>>,
}

fn hash(token: &str) -> [u8; 32] {
    Sha256::digest(token.as_bytes()).into()
}

fn locked<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|p| p.into_inner())
}

/// Constant-time equality of two strings (for the CSRF token).
pub fn same(a: &str, b: &str) -> bool {
    let (a, b) = (Sha256::digest(a.as_bytes()), Sha256::digest(b.as_bytes()));
    a.ct_eq(&b).into()
}

impl Sessions {
    /// Open a session for someone who presented `admin_token` (already
    /// checked by the caller). Returns its id and CSRF token.
    pub fn open(&self, admin_token: &str) -> Active {
        let active = Active {
            id: new_admin_token(),
            csrf: new_admin_token(),
        };
        let mut sessions = locked(&self.sessions);
        let now = Instant::now();
        sessions.retain(|_, s| now.duration_since(s.last_seen) < IDLE_LIMIT);
        while sessions.len() >= MAX_SESSIONS {
            let oldest = sessions
                .iter()
                .min_by_key(|(_, s)| s.last_seen)
                .map(|(id, _)| id.clone());
            match oldest {
                Some(id) => sessions.remove(&id),
                None => break,
            };
        }
        sessions.insert(
            active.id.clone(),
            Session {
                csrf: active.csrf.clone(),
                token_hash: hash(admin_token),
                last_seen: now,
            },
        );
        active
    }

    /// The session `id` names, if it is still valid for the admin token now
    /// in force; using it keeps it alive. An expired session, or one opened
    /// with another admin token, is removed.
    pub fn check(&self, id: &str, admin_token: &str) -> Option<Active> {
        self.check_at(id, admin_token, Instant::now())
    }

    fn check_at(&self, id: &str, admin_token: &str, now: Instant) -> Option<Active> {
        let mut sessions = locked(&self.sessions);
        let session = sessions.get_mut(id)?;
        let current: bool = session.token_hash.ct_eq(&hash(admin_token)).into();
        if !current || now.duration_since(session.last_seen) >= IDLE_LIMIT {
            sessions.remove(id);
            return None;
        }
        session.last_seen = now;
        Some(Active {
            id: id.to_string(),
            csrf: session.csrf.clone(),
        })
    }

    /// End a session (sign-out).
    pub fn end(&self, id: &str) {
        locked(&self.sessions).remove(id);
    }

    /// Whether `client` may try to sign in now.
    pub fn may_try(&self, client: IpAddr) -> bool {
        self.may_try_at(client, Instant::now())
    }

    fn may_try_at(&self, client: IpAddr, now: Instant) -> bool {
        let mut failures = locked(&self.failures);
        let Some(times) = failures.get_mut(&client) else {
            return true;
        };
        while times
            .front()
            .is_some_and(|t| now.duration_since(*t) >= ATTEMPT_WINDOW)
        {
            times.pop_front();
        }
        times.len() < MAX_FAILED_ATTEMPTS
    }

    /// Count a failed sign-in of `client`.
    pub fn failed(&self, client: IpAddr) {
        self.failed_at(client, Instant::now());
    }

    fn failed_at(&self, client: IpAddr, now: Instant) {
        let mut failures = locked(&self.failures);
        if failures.len() >= MAX_TRACKED_CLIENTS && !failures.contains_key(&client) {
            failures.retain(|_, times| {
                times
                    .back()
                    .is_some_and(|t| now.duration_since(*t) < ATTEMPT_WINDOW)
            });
        }
        let times = failures.entry(client).or_default();
        times.push_back(now);
        while times.len() > MAX_FAILED_ATTEMPTS {
            times.pop_front();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_session_is_valid_only_for_the_token_it_was_opened_with() {
        let sessions = Sessions::default();
        let active = sessions.open("token-a");
        assert_eq!(
            sessions.check(&active.id, "token-a").unwrap().csrf,
            active.csrf
        );
        assert!(sessions.check(&active.id, "token-b").is_none());
        // Ended for good, even if the old token came back.
        assert!(sessions.check(&active.id, "token-a").is_none());
    }

    #[test]
    fn sign_out_and_idleness_end_a_session() {
        let sessions = Sessions::default();
        let a = sessions.open("t");
        sessions.end(&a.id);
        assert!(sessions.check(&a.id, "t").is_none());
        let b = sessions.open("t");
        let later = Instant::now() + IDLE_LIMIT;
        assert!(sessions.check_at(&b.id, "t", later).is_none());
        assert!(sessions.check("no-such-id", "t").is_none());
    }

    #[test]
    fn failed_sign_ins_are_limited_per_client_and_window() {
        let sessions = Sessions::default();
        let (a, b): (IpAddr, IpAddr) = ("10.0.0.1".parse().unwrap(), "10.0.0.2".parse().unwrap());
        let start = Instant::now();
        for _ in 0..MAX_FAILED_ATTEMPTS {
            assert!(sessions.may_try_at(a, start));
            sessions.failed_at(a, start);
        }
        assert!(!sessions.may_try_at(a, start));
        assert!(sessions.may_try_at(b, start));
        assert!(sessions.may_try_at(a, start + ATTEMPT_WINDOW));
    }

    #[test]
    fn ids_and_csrf_tokens_are_distinct_and_long() {
        let sessions = Sessions::default();
        let (a, b) = (sessions.open("t"), sessions.open("t"));
        assert_ne!(a.id, b.id);
        assert_ne!(a.id, a.csrf);
        assert_eq!(a.id.len(), 64);
        assert!(same(&a.csrf, &a.csrf.clone()) && !same(&a.csrf, &b.csrf));
    }
}
