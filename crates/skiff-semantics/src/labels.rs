//! Label matching as `k8s.io/apimachinery/pkg/labels` evaluates it: equality selectors (Service
//! `spec.selector`, `nodeSelector`), `metav1.LabelSelector` (typed and as JSON), node selector
//! requirements (with `Gt`/`Lt`) and parsed selector requirements.
//!
//! Upstream rules kept here once: `NotIn` and `!=` also match objects without the key; `Gt`/`Lt`
//! compare integers and never match a missing or non-integer label; a `LabelSelector` with no
//! terms matches everything (callers that treat an empty selector as "nothing" check
//! [`label_selector_is_empty`] themselves).

use std::collections::{BTreeMap, BTreeSet};

use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use serde_json::{Map, Value};

/// Read access to an object's labels.
pub trait Labels {
    fn label(&self, key: &str) -> Option<&str>;
}

impl Labels for BTreeMap<String, String> {
    fn label(&self, key: &str) -> Option<&str> {
        self.get(key).map(String::as_str)
    }
}

/// Labels as JSON (`metadata.labels`); a non-string value counts as absent.
impl Labels for Map<String, Value> {
    fn label(&self, key: &str) -> Option<&str> {
        self.get(key).and_then(Value::as_str)
    }
}

/// No labels at all (`metadata.labels` unset).
impl<L: Labels> Labels for Option<&L> {
    fn label(&self, key: &str) -> Option<&str> {
        self.and_then(|l| l.label(key))
    }
}

/// A set-based operator of a selector expression.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Operator {
    In,
    NotIn,
    Exists,
    DoesNotExist,
    Gt,
    Lt,
}

impl Operator {
    /// The operators of `metav1.LabelSelectorRequirement`.
    pub fn label_selector(op: &str) -> Option<Self> {
        match op {
            "In" => Some(Self::In),
            "NotIn" => Some(Self::NotIn),
            "Exists" => Some(Self::Exists),
            "DoesNotExist" => Some(Self::DoesNotExist),
            _ => None,
        }
    }

    /// The operators of `core/v1.NodeSelectorRequirement` (adds `Gt`, `Lt`).
    pub fn node_selector(op: &str) -> Option<Self> {
        match op {
            "Gt" => Some(Self::Gt),
            "Lt" => Some(Self::Lt),
            op => Self::label_selector(op),
        }
    }

    /// Whether a label `value` (None: the key is absent) satisfies `op values`. `Gt`/`Lt` need
    /// exactly one integer value.
    pub fn matches<S: AsRef<str>>(self, value: Option<&str>, values: &[S]) -> bool {
        let contains = |v: &str| values.iter().any(|x| x.as_ref() == v);
        match self {
            Self::In => value.is_some_and(contains),
            Self::NotIn => !value.is_some_and(contains),
            Self::Exists => value.is_some(),
            Self::DoesNotExist => value.is_none(),
            Self::Gt | Self::Lt => {
                let (Some(v), [bound]) = (value, values) else {
                    return false;
                };
                match (v.parse::<i64>(), bound.as_ref().parse::<i64>()) {
                    (Ok(v), Ok(b)) if self == Self::Gt => v > b,
                    (Ok(v), Ok(b)) => v < b,
                    _ => false,
                }
            }
        }
    }
}

/// An equality selector (`map[string]string`): every pair is present. Empty matches everything.
pub fn matches_set(selector: &BTreeMap<String, String>, labels: &impl Labels) -> bool {
    selector
        .iter()
        .all(|(k, v)| labels.label(k) == Some(v.as_str()))
}

/// Whether a `metav1.LabelSelector` has no terms.
pub fn label_selector_is_empty(s: &LabelSelector) -> bool {
    s.match_labels.as_ref().is_none_or(|m| m.is_empty())
        && s.match_expressions.as_ref().is_none_or(|e| e.is_empty())
}

/// Whether `labels` satisfy a `metav1.LabelSelector` (no terms: everything). An expression with
/// an unknown operator matches nothing; [`Selector::from_label_selector`] rejects it instead.
pub fn label_selector_matches(s: &LabelSelector, labels: &impl Labels) -> bool {
    s.match_labels
        .iter()
        .flatten()
        .all(|(k, v)| labels.label(k) == Some(v.as_str()))
        && s.match_expressions.iter().flatten().all(|r| {
            let values = r.values.as_deref().unwrap_or_default();
            Operator::label_selector(&r.operator)
                .is_some_and(|op| op.matches(labels.label(&r.key), values))
        })
}

/// [`label_selector_matches`] for a selector held as JSON (the API server's objects). Non-string
/// entries of `values` are ignored; a non-string `matchLabels` value matches only an absent label.
pub fn label_selector_matches_json(sel: &Value, labels: &impl Labels) -> bool {
    let ml_ok = sel
        .get("matchLabels")
        .and_then(Value::as_object)
        .is_none_or(|ml| ml.iter().all(|(k, v)| labels.label(k) == v.as_str()));
    ml_ok
        && sel
            .get("matchExpressions")
            .and_then(Value::as_array)
            .is_none_or(|exprs| {
                exprs.iter().all(|x| {
                    let key = x.get("key").and_then(Value::as_str).unwrap_or("");
                    let values: Vec<&str> = x
                        .get("values")
                        .and_then(Value::as_array)
                        .map(|a| a.iter().filter_map(Value::as_str).collect())
                        .unwrap_or_default();
                    x.get("operator")
                        .and_then(Value::as_str)
                        .and_then(Operator::label_selector)
                        .is_some_and(|op| op.matches(labels.label(key), &values))
                })
            })
}

/// One ANDed term of a parsed label selector (`labels.Requirement`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Requirement {
    Eq(String, String),
    NotEq(String, String),
    In(String, BTreeSet<String>),
    NotIn(String, BTreeSet<String>),
    Exists(String),
    DoesNotExist(String),
    Gt(String, i64),
    Lt(String, i64),
}

impl Requirement {
    pub fn key(&self) -> &str {
        match self {
            Self::Eq(k, _)
            | Self::NotEq(k, _)
            | Self::In(k, _)
            | Self::NotIn(k, _)
            | Self::Exists(k)
            | Self::DoesNotExist(k)
            | Self::Gt(k, _)
            | Self::Lt(k, _) => k,
        }
    }

    pub fn matches(&self, labels: &impl Labels) -> bool {
        let got = labels.label(self.key());
        fn set(vs: &BTreeSet<String>) -> Vec<&str> {
            vs.iter().map(String::as_str).collect()
        }
        let int = |n: &i64| [n.to_string()];
        match self {
            Self::Eq(_, v) => got == Some(v.as_str()),
            Self::NotEq(_, v) => got != Some(v.as_str()),
            Self::In(_, vs) => Operator::In.matches(got, &set(vs)),
            Self::NotIn(_, vs) => Operator::NotIn.matches(got, &set(vs)),
            Self::Exists(_) => Operator::Exists.matches::<&str>(got, &[]),
            Self::DoesNotExist(_) => Operator::DoesNotExist.matches::<&str>(got, &[]),
            Self::Gt(_, n) => Operator::Gt.matches(got, &int(n)),
            Self::Lt(_, n) => Operator::Lt.matches(got, &int(n)),
        }
    }
}

/// Why a `metav1.LabelSelector` cannot become a [`Selector`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SelectorError {
    #[error("invalid label selector operator {operator:?} for key {key:?}")]
    Operator { key: String, operator: String },
    #[error("label selector operator {operator:?} for key {key:?} has the wrong number of values")]
    Values { key: String, operator: String },
}

/// A label selector: requirements ANDed (none: everything).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Selector {
    requirements: Vec<Requirement>,
}

impl Selector {
    pub fn new(requirements: Vec<Requirement>) -> Self {
        Self { requirements }
    }

    pub fn requirements(&self) -> &[Requirement] {
        &self.requirements
    }

    /// Upstream `LabelSelectorAsSelector`: `In`/`NotIn` need values, `Exists`/`DoesNotExist`
    /// take none, other operators are errors.
    pub fn from_label_selector(s: &LabelSelector) -> Result<Self, SelectorError> {
        let mut requirements = Vec::new();
        for (k, v) in s.match_labels.iter().flatten() {
            requirements.push(Requirement::Eq(k.clone(), v.clone()));
        }
        for e in s.match_expressions.iter().flatten() {
            let values: BTreeSet<String> = e.values.iter().flatten().cloned().collect();
            let bad_values = || SelectorError::Values {
                key: e.key.clone(),
                operator: e.operator.clone(),
            };
            let key = e.key.clone();
            requirements.push(match Operator::label_selector(&e.operator) {
                Some(Operator::In) if !values.is_empty() => Requirement::In(key, values),
                Some(Operator::NotIn) if !values.is_empty() => Requirement::NotIn(key, values),
                Some(Operator::Exists) if values.is_empty() => Requirement::Exists(key),
                Some(Operator::DoesNotExist) if values.is_empty() => Requirement::DoesNotExist(key),
                Some(_) => return Err(bad_values()),
                None => {
                    return Err(SelectorError::Operator {
                        key,
                        operator: e.operator.clone(),
                    })
                }
            });
        }
        Ok(Self { requirements })
    }

    pub fn is_empty(&self) -> bool {
        self.requirements.is_empty()
    }

    /// Whether `labels` satisfy every requirement.
    pub fn matches(&self, labels: &impl Labels) -> bool {
        self.requirements.iter().all(|r| r.matches(labels))
    }
}

#[cfg(test)]
mod tests {
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelectorRequirement;
    use serde_json::json;

    use super::*;

    fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn expr(key: &str, op: &str, values: &[&str]) -> LabelSelectorRequirement {
        LabelSelectorRequirement {
            key: key.into(),
            operator: op.into(),
            values: (!values.is_empty()).then(|| values.iter().map(|v| v.to_string()).collect()),
        }
    }

    fn sel(exprs: Vec<LabelSelectorRequirement>) -> LabelSelector {
        LabelSelector {
            match_labels: None,
            match_expressions: Some(exprs),
        }
    }

    #[test]
    fn operator_in() {
        let s = sel(vec![expr("tier", "In", &["web", "api"])]);
        assert!(label_selector_matches(&s, &labels(&[("tier", "api")])));
        assert!(!label_selector_matches(&s, &labels(&[("tier", "db")])));
        assert!(!label_selector_matches(&s, &labels(&[])));
    }

    #[test]
    fn operator_not_in_matches_missing_key() {
        let s = sel(vec![expr("tier", "NotIn", &["db"])]);
        assert!(label_selector_matches(&s, &labels(&[("tier", "web")])));
        assert!(label_selector_matches(&s, &labels(&[])));
        assert!(!label_selector_matches(&s, &labels(&[("tier", "db")])));
    }

    #[test]
    fn operator_exists_and_does_not_exist() {
        let exists = sel(vec![expr("canary", "Exists", &[])]);
        let absent = sel(vec![expr("canary", "DoesNotExist", &[])]);
        let with = labels(&[("canary", "")]);
        let without = labels(&[("app", "x")]);
        assert!(label_selector_matches(&exists, &with));
        assert!(!label_selector_matches(&exists, &without));
        assert!(!label_selector_matches(&absent, &with));
        assert!(label_selector_matches(&absent, &without));
    }

    #[test]
    fn operator_gt_lt_need_one_integer() {
        let v = |op: &str, label: Option<&str>, values: &[&str]| {
            Operator::node_selector(op).is_some_and(|o| o.matches(label, values))
        };
        assert!(v("Gt", Some("5"), &["4"]));
        assert!(!v("Gt", Some("4"), &["4"]));
        assert!(v("Lt", Some("3"), &["4"]));
        assert!(!v("Lt", Some("x"), &["4"]));
        assert!(!v("Gt", None, &["4"]));
        assert!(!v("Gt", Some("5"), &["4", "6"]));
        // LabelSelector has no Gt/Lt.
        assert!(Operator::label_selector("Gt").is_none());
    }

    #[test]
    fn match_labels_and_expressions_are_anded_and_empty_matches_all() {
        let s = LabelSelector {
            match_labels: Some(labels(&[("app", "web")])),
            match_expressions: Some(vec![expr("tier", "In", &["fe"])]),
        };
        assert!(label_selector_matches(
            &s,
            &labels(&[("app", "web"), ("tier", "fe")])
        ));
        assert!(!label_selector_matches(&s, &labels(&[("app", "web")])));
        let empty = LabelSelector::default();
        assert!(label_selector_is_empty(&empty));
        assert!(label_selector_matches(
            &empty,
            &None::<&BTreeMap<String, String>>
        ));
        assert!(!label_selector_matches(
            &s,
            &None::<&BTreeMap<String, String>>
        ));
    }

    #[test]
    fn unknown_operator_matches_nothing_but_strict_form_rejects_it() {
        let s = sel(vec![expr("a", "Equals", &["b"])]);
        assert!(!label_selector_matches(&s, &labels(&[("a", "b")])));
        assert!(matches!(
            Selector::from_label_selector(&s),
            Err(SelectorError::Operator { .. })
        ));
        let no_values = sel(vec![expr("a", "In", &[])]);
        assert!(matches!(
            Selector::from_label_selector(&no_values),
            Err(SelectorError::Values { .. })
        ));
        let values_on_exists = sel(vec![expr("a", "Exists", &["x"])]);
        assert!(Selector::from_label_selector(&values_on_exists).is_err());
    }

    #[test]
    fn strict_selector_agrees_with_lenient_matching() {
        let s = LabelSelector {
            match_labels: Some(labels(&[("app", "web")])),
            match_expressions: Some(vec![
                expr("tier", "NotIn", &["db"]),
                expr("canary", "DoesNotExist", &[]),
            ]),
        };
        let parsed = Selector::from_label_selector(&s).expect("valid");
        for l in [
            labels(&[("app", "web")]),
            labels(&[("app", "web"), ("tier", "db")]),
            labels(&[("app", "web"), ("canary", "1")]),
            labels(&[("app", "api")]),
        ] {
            assert_eq!(parsed.matches(&l), label_selector_matches(&s, &l), "{l:?}");
        }
        assert!(Selector::default().matches(&labels(&[])));
    }

    #[test]
    fn requirements_not_eq_and_integer_bounds() {
        let l = labels(&[("n", "7")]);
        assert!(Requirement::NotEq("n".into(), "8".into()).matches(&l));
        assert!(Requirement::NotEq("m".into(), "8".into()).matches(&l));
        assert!(!Requirement::NotEq("n".into(), "7".into()).matches(&l));
        assert!(Requirement::Gt("n".into(), 6).matches(&l));
        assert!(!Requirement::Lt("n".into(), 7).matches(&l));
        assert!(!Requirement::Gt("m".into(), 0).matches(&l));
    }

    #[test]
    fn json_selector_and_json_labels() {
        let s = json!({"matchLabels": {"app": "web"},
            "matchExpressions": [{"key": "tier", "operator": "In", "values": ["fe", 3]}]});
        let ok = json!({"app": "web", "tier": "fe"});
        let bad = json!({"app": "web", "tier": "3"});
        let ok = ok.as_object().expect("object");
        let bad = bad.as_object().expect("object");
        assert!(label_selector_matches_json(&s, ok));
        assert!(!label_selector_matches_json(&s, bad));
        let unknown =
            json!({"matchExpressions": [{"key": "a", "operator": "Gt", "values": ["1"]}]});
        assert!(!label_selector_matches_json(
            &unknown,
            &json!({"a": "2"}).as_object().cloned().expect("o")
        ));
        assert!(label_selector_matches_json(&json!({}), ok));
    }

    #[test]
    fn equality_set_selector() {
        let sel = labels(&[("app", "web")]);
        assert!(matches_set(&sel, &labels(&[("app", "web"), ("x", "y")])));
        assert!(!matches_set(&sel, &labels(&[("app", "api")])));
        assert!(!matches_set(&sel, &None::<&BTreeMap<String, String>>));
        assert!(matches_set(&BTreeMap::new(), &labels(&[])));
    }
}
