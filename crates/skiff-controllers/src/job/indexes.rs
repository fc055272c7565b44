//! Completion-index sets as the Job API writes them (`status.completedIndexes`,
//! `status.failedIndexes`, `successPolicy.rules[].succeededIndexes`): ascending intervals,
//! comma-separated, `a-b` for three or more consecutive indexes ("0-2,4,5,7").

use std::collections::BTreeSet;

/// A set of completion indexes below the Job's `completions`.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct IndexSet(BTreeSet<i32>);

impl IndexSet {
    /// Parses interval text, keeping indexes in `0..limit` (malformed parts are skipped,
    /// like upstream, so a bad status never stops the controller; the set is bounded by
    /// `limit`, which the API server caps).
    pub fn parse(text: &str, limit: i32) -> Self {
        let mut set = BTreeSet::new();
        for part in text.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let (first, last) = match part.split_once('-') {
                Some((a, b)) => (a.parse::<i32>(), b.parse::<i32>()),
                None => (part.parse::<i32>(), part.parse::<i32>()),
            };
            let (Ok(first), Ok(last)) = (first, last) else {
                continue;
            };
            for i in first.max(0)..=last.min(limit.saturating_sub(1)) {
                set.insert(i);
            }
        }
        IndexSet(set)
    }

    pub fn insert(&mut self, i: i32) {
        self.0.insert(i);
    }

    pub fn contains(&self, i: i32) -> bool {
        self.0.contains(&i)
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn iter(&self) -> impl Iterator<Item = i32> + '_ {
        self.0.iter().copied()
    }

    /// The interval text: runs of three or more as `a-b`, a run of two as `a,b`.
    pub fn to_text(&self) -> String {
        let mut out = String::new();
        let mut iter = self.0.iter().copied().peekable();
        while let Some(first) = iter.next() {
            let mut last = first;
            while iter.peek() == Some(&(last + 1)) {
                last += 1;
                iter.next();
            }
            if !out.is_empty() {
                out.push(',');
            }
            out.push_str(&first.to_string());
            if last > first {
                out.push(if last == first + 1 { ',' } else { '-' });
                out.push_str(&last.to_string());
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_intervals() {
        let s = IndexSet::parse("0-2,4,6,7,9-12", 100);
        assert_eq!(s.len(), 10);
        assert_eq!(s.to_text(), "0-2,4,6,7,9-12");
        let mut s = IndexSet::default();
        for i in [5, 1, 2, 3] {
            s.insert(i);
        }
        assert_eq!(s.to_text(), "1-3,5");
    }

    #[test]
    fn parse_bounds_by_completions_and_skips_garbage() {
        let s = IndexSet::parse("x,1-1000000000,-3", 4);
        assert_eq!(s.to_text(), "1-3");
        assert!(IndexSet::parse("", 4).is_empty());
    }
}
