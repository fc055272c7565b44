//! CRD `x-kubernetes-validations` rules evaluated with skiff-cel: the
//! [`skiff_api::schema::RuleEngine`] the CRD write path hands to `Schema::validate`.
//!
//! A rule sees `self` (the value at its schema node) and, on updates where an old value
//! exists, `oldSelf`. Rules that read `oldSelf` are transition rules: without an old value
//! they are skipped, unless `optionalOldSelf` is set (then `oldSelf` is null). Compiled rules
//! are cached by text.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use serde_json::Value;
use skiff_api::schema::{Rule, RuleEngine, RuleOutcome};
use skiff_cel::{Activation, Program};

/// Most distinct rules kept compiled.
const CACHE_MAX: usize = 4096;

const RULE_VARIABLES: &[&str] = &["self", "oldSelf"];

/// The CEL [`RuleEngine`].
#[derive(Default)]
pub(crate) struct CelRules {
    cache: Mutex<HashMap<String, Arc<Result<Program, String>>>>,
}

impl CelRules {
    pub(crate) fn new() -> Self {
        CelRules::default()
    }

    fn compiled(&self, expr: &str) -> Arc<Result<Program, String>> {
        let mut cache = match self.cache.lock() {
            Ok(c) => c,
            Err(p) => p.into_inner(),
        };
        if let Some(p) = cache.get(expr) {
            return p.clone();
        }
        let p = Arc::new(
            skiff_cel::compile(expr, RULE_VARIABLES)
                .map_err(|e| format!("compilation failed: {e}")),
        );
        if cache.len() >= CACHE_MAX {
            cache.clear();
        }
        cache.insert(expr.to_string(), p.clone());
        p
    }
}

impl RuleEngine for CelRules {
    fn check(&self, rule: &Rule, self_value: &Value, old_self: Option<&Value>) -> RuleOutcome {
        let program = self.compiled(&rule.rule);
        let p = match program.as_ref() {
            Ok(p) => p,
            Err(e) => return RuleOutcome::Error(e.clone()),
        };
        let transition = p.references("oldSelf");
        if transition && old_self.is_none() && !rule.optional_old_self {
            return RuleOutcome::Pass;
        }
        let mut act = Activation::new();
        act.json("self", self_value);
        act.json("oldSelf", old_self.unwrap_or(&Value::Null));
        match p.eval_bool(&act) {
            Ok(true) => RuleOutcome::Pass,
            Ok(false) => RuleOutcome::Fail(self.message(rule, &act)),
            Err(e) => RuleOutcome::Error(e.to_string()),
        }
    }
}

impl CelRules {
    /// messageExpression's result when it yields a non-empty single-line string, else
    /// message, else upstream's `failed rule: <rule>`.
    fn message(&self, rule: &Rule, act: &Activation) -> String {
        if let Some(me) = &rule.message_expression {
            if let Ok(p) = self.compiled(me).as_ref() {
                if let Ok(m) = p.eval_string(act) {
                    if !m.trim().is_empty() && !m.contains('\n') {
                        return m;
                    }
                }
            }
        }
        rule.message
            .clone()
            .unwrap_or_else(|| format!("failed rule: {}", rule.rule))
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn rule(r: &str) -> Rule {
        Rule {
            rule: r.to_string(),
            message: None,
            message_expression: None,
            reason: None,
            field_path: None,
            optional_old_self: false,
        }
    }

    #[test]
    fn self_and_old_self_rules() {
        let e = CelRules::new();
        let v = json!({"replicas": 3, "max": 5});
        assert_eq!(
            e.check(&rule("self.replicas <= self.max"), &v, None),
            RuleOutcome::Pass
        );
        assert_eq!(
            e.check(&rule("self.replicas > self.max"), &v, None),
            RuleOutcome::Fail("failed rule: self.replicas > self.max".into())
        );
        let mut r = rule("self.replicas > 5");
        r.message = Some("too few".into());
        assert_eq!(e.check(&r, &v, None), RuleOutcome::Fail("too few".into()));
        r.message_expression = Some("'replicas is ' + string(self.replicas)".into());
        assert_eq!(
            e.check(&r, &v, None),
            RuleOutcome::Fail("replicas is 3".into())
        );
        // Transition rules: skipped without an old value, checked with one.
        let t = rule("self.replicas >= oldSelf.replicas");
        assert_eq!(e.check(&t, &v, None), RuleOutcome::Pass);
        assert!(matches!(
            e.check(&t, &v, Some(&json!({"replicas": 4}))),
            RuleOutcome::Fail(_)
        ));
        let mut o = rule("oldSelf == null || self.replicas >= oldSelf.replicas");
        o.optional_old_self = true;
        assert_eq!(e.check(&o, &v, None), RuleOutcome::Pass);
        assert!(
            matches!(e.check(&rule("self.nope == 1"), &v, None), RuleOutcome::Error(m) if m == "no such key: nope")
        );
        assert!(
            matches!(e.check(&rule("self +"), &v, None), RuleOutcome::Error(m) if m.starts_with("compilation failed"))
        );
        // Strings and lists as `self`.
        assert_eq!(
            e.check(&rule("self.matches('^[a-z]+$')"), &json!("abc"), None),
            RuleOutcome::Pass
        );
        assert_eq!(
            e.check(
                &rule("self.all(x, x > 0) && self.isSorted()"),
                &json!([1, 2]),
                None
            ),
            RuleOutcome::Pass
        );
    }
}
