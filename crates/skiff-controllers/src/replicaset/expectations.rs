//! ControllerExpectations (UID-tracking flavour): what a ReplicaSet is waiting to see in its pod
//! watch after its own creates/deletes, so a lagging cache never makes it create or delete twice.
//!
//! Keyed by the ReplicaSet's uid (not ns/name) so a deleted-and-recreated ReplicaSet never
//! inherits its predecessor's pending expectations.

use std::collections::{HashMap, HashSet};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Unsatisfied expectations older than this are ignored (upstream `ExpectationsTimeout`).
pub const EXPECTATIONS_TIMEOUT: Duration = Duration::from_secs(300);

#[derive(Debug)]
struct Record {
    /// Creations still expected to show up in the watch.
    adds: i64,
    /// Keys (`ns/name`) of pods whose deletion we still expect to observe.
    deletes: HashSet<String>,
    /// When the expectations were set.
    since: Instant,
}

/// Per-controller expectations.
#[derive(Debug, Default)]
pub struct Expectations {
    records: Mutex<HashMap<String, Record>>,
}

impl Expectations {
    fn with<R>(&self, f: impl FnOnce(&mut HashMap<String, Record>) -> R) -> R {
        // A poisoned lock only means another thread panicked mid-update; the map is still usable.
        let mut guard = match self.records.lock() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        };
        f(&mut guard)
    }

    /// Expects `n` pod creations (replaces any previous record, like upstream SetExpectations).
    pub fn expect_creations(&self, owner: &str, n: usize) {
        self.with(|m| {
            m.insert(
                owner.to_string(),
                Record {
                    adds: n as i64,
                    deletes: HashSet::new(),
                    since: Instant::now(),
                },
            );
        });
    }

    /// Expects the deletion of these pods (keys `ns/name`).
    pub fn expect_deletions(&self, owner: &str, keys: impl IntoIterator<Item = String>) {
        self.with(|m| {
            m.insert(
                owner.to_string(),
                Record {
                    adds: 0,
                    deletes: keys.into_iter().collect(),
                    since: Instant::now(),
                },
            );
        });
    }

    /// A pod created by `owner` was observed (or one creation will never happen).
    pub fn creation_observed(&self, owner: &str) {
        self.lower_creations(owner, 1);
    }

    /// Lowers the expected creations by `n`.
    pub fn lower_creations(&self, owner: &str, n: usize) {
        self.with(|m| {
            if let Some(r) = m.get_mut(owner) {
                r.adds -= n as i64;
            }
        });
    }

    /// The deletion of pod `key` owned by `owner` was observed (or failed).
    pub fn deletion_observed(&self, owner: &str, key: &str) {
        self.with(|m| {
            if let Some(r) = m.get_mut(owner) {
                r.deletes.remove(key);
            }
        });
    }

    /// Whether `owner` may act on what its cache shows.
    pub fn satisfied(&self, owner: &str) -> bool {
        self.satisfied_at(owner, Instant::now())
    }

    /// [`Self::satisfied`] at a given instant (testable).
    pub fn satisfied_at(&self, owner: &str, now: Instant) -> bool {
        self.with(|m| match m.get(owner) {
            None => true,
            Some(r) => {
                (r.adds <= 0 && r.deletes.is_empty())
                    || now.saturating_duration_since(r.since) > EXPECTATIONS_TIMEOUT
            }
        })
    }

    /// Forgets `owner` (it was deleted).
    pub fn forget(&self, owner: &str) {
        self.with(|m| {
            m.remove(owner);
        });
    }

    /// Pod keys whose deletion `owner` still waits for.
    pub fn pending_deletions(&self) -> Vec<(String, String)> {
        self.with(|m| {
            m.iter()
                .flat_map(|(o, r)| r.deletes.iter().map(move |k| (o.clone(), k.clone())))
                .collect()
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn absent_is_satisfied() {
        let e = Expectations::default();
        assert!(e.satisfied("a"));
    }

    #[test]
    fn creations_must_be_observed() {
        let e = Expectations::default();
        e.expect_creations("a", 2);
        assert!(!e.satisfied("a"));
        e.creation_observed("a");
        assert!(!e.satisfied("a"));
        e.creation_observed("a");
        assert!(e.satisfied("a"));
        // Extra observations (pods created by others) keep it satisfied.
        e.creation_observed("a");
        assert!(e.satisfied("a"));
        assert!(e.satisfied("b"));
    }

    #[test]
    fn lowering_for_skipped_creations() {
        let e = Expectations::default();
        e.expect_creations("a", 7);
        e.creation_observed("a");
        e.lower_creations("a", 6);
        assert!(e.satisfied("a"));
    }

    #[test]
    fn deletions_are_tracked_by_key() {
        let e = Expectations::default();
        e.expect_deletions("a", ["ns/p1".to_string(), "ns/p2".to_string()]);
        assert!(!e.satisfied("a"));
        e.deletion_observed("a", "ns/other");
        assert!(!e.satisfied("a"));
        e.deletion_observed("a", "ns/p1");
        e.deletion_observed("a", "ns/p1");
        assert!(!e.satisfied("a"));
        e.deletion_observed("a", "ns/p2");
        assert!(e.satisfied("a"));
    }

    #[test]
    fn expire_after_timeout() {
        let e = Expectations::default();
        e.expect_creations("a", 1);
        let now = Instant::now();
        assert!(!e.satisfied_at("a", now));
        assert!(e.satisfied_at("a", now + EXPECTATIONS_TIMEOUT + Duration::from_secs(1)));
        e.forget("a");
        assert!(e.satisfied_at("a", now));
    }
}
