//! The CEL environment of admission: `matchConditions` of webhooks and policies, and the
//! variables (`object`, `oldObject`, `request`, `params`, `namespaceObject`, `authorizer`)
//! their expressions see.
//!
//! Interface skeleton: the bodies are filled in on the `i14-cel` branch.

use std::sync::Arc;

use serde_json::{Map, Value};

use crate::auth::UserInfo;
use crate::AppState;

/// The outcome of a list of `matchConditions`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Matched {
    /// Every condition is true.
    Yes,
    /// This condition (by name) is false.
    No(String),
}

/// Evaluates `conds` (`[{name, expression}]`) with `vars` (`object`, `oldObject`, `request`, …)
/// and `authorizer` checks for `user`. Err = an expression failed to compile or evaluate (the
/// caller applies its failure policy).
pub(crate) fn match_conditions(
    _st: &AppState,
    _user: &Arc<UserInfo>,
    conds: &[Value],
    _vars: &Map<String, Value>,
) -> Result<Matched, String> {
    if conds.is_empty() {
        Ok(Matched::Yes)
    } else {
        Err("matchConditions are not wired yet".to_string())
    }
}
