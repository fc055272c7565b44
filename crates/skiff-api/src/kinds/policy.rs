//! The policy group.

pub(crate) mod poddisruptionbudget;
