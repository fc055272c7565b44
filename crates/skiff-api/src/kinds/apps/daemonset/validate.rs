//! apps/v1 DaemonSet validation (upstream `ValidateDaemonSet`, `ValidateDaemonSetUpdate`,
//! `ValidateDaemonSetStatusUpdate` and the strategy's selector immutability), in upstream's
//! cause order and with its value formatting (Go `%#v` of the internal structs, because
//! kubectl prints the messages verbatim).

use serde_json::{Map, Value};

use crate::validate::{
    go_label_selector, label_selector, label_selector_matches, non_negative, pod_spec,
    template_labels, Errs,
};

const PERCENT_MSG: &str = "a valid percent string must be a numeric string followed by an ending '%' (e.g. '1%',  or '93%', regex used for validation is '[0-9]+%')";

/// Validates a DaemonSet (`old` = the stored one on updates, main and status writes alike:
/// main writes keep the stored status, status writes keep the stored spec).
pub(crate) fn daemon_set(e: &mut Errs, obj: &Map<String, Value>, old: Option<&Value>) {
    let empty = Value::Object(Map::new());
    let spec = obj.get("spec").filter(|s| s.is_object()).unwrap_or(&empty);
    spec_fields(e, spec);
    let Some(old) = old else {
        return;
    };
    // The apps/v1 strategy keeps the selector as created.
    let old_sel = old.pointer("/spec/selector").filter(|s| !s.is_null());
    let new_sel = spec.get("selector").filter(|s| !s.is_null());
    if new_sel.map(semantic) != old_sel.map(semantic) {
        let shown = new_sel.map_or_else(|| "null".to_string(), go_label_selector);
        e.invalid_omit("spec.selector", &format!("{shown}: field is immutable"));
    }
    status(e, obj.get("status"), old.get("status"));
}

/// A selector as `apiequality.Semantic` compares it: empty and missing lists/maps are equal.
fn semantic(sel: &Value) -> Value {
    let mut out = sel.clone();
    if let Some(m) = out.as_object_mut() {
        m.retain(|_, v| match v {
            Value::Null => false,
            Value::Object(o) => !o.is_empty(),
            Value::Array(a) => !a.is_empty(),
            _ => true,
        });
    }
    out
}

/// `ValidateDaemonSetSpec`.
fn spec_fields(e: &mut Errs, spec: &Value) {
    let selector = spec.get("selector").filter(|s| !s.is_null());
    let template = spec.get("template").filter(|t| !t.is_null());
    let label_map = template
        .and_then(|t| t.pointer("/metadata/labels"))
        .and_then(Value::as_object);
    let labels = label_map.cloned().unwrap_or_default();
    let mut sel_errs = Errs::default();
    if let Some(sel) = selector {
        label_selector(&mut sel_errs, sel, "spec.selector");
    }
    // A missing selector selects nothing (labels.Nothing()), so it never matches the template;
    // an unparsable one skips the check.
    let parses = sel_errs.0.is_empty();
    e.0.extend(sel_errs.0);
    let matches = selector.is_some_and(|sel| label_selector_matches(sel, &labels));
    if parses && !matches {
        let msg = "`selector` does not match template `labels`";
        match label_map {
            Some(_) => e.invalid("spec.template.metadata.labels", &Value::Object(labels), msg),
            // Go prints a nil map this way.
            None => e.invalid_omit(
                "spec.template.metadata.labels",
                &format!("map[string]string(nil): {msg}"),
            ),
        }
    }
    if let Some(sel) = selector {
        let count = |key: &str| -> usize {
            match sel.get(key) {
                Some(Value::Object(m)) => m.len(),
                Some(Value::Array(a)) => a.len(),
                _ => 0,
            }
        };
        if count("matchLabels") + count("matchExpressions") == 0 {
            e.invalid_omit(
                "spec.selector",
                &format!(
                    "{}: empty selector is invalid for daemonset",
                    go_label_selector(sel)
                ),
            );
        }
    }
    let t = template.unwrap_or(&Value::Null);
    template_labels(e, t, "spec.template");
    pod_spec(e, t.get("spec"), "spec.template.spec");
    let rp = t
        .pointer("/spec/restartPolicy")
        .and_then(Value::as_str)
        .unwrap_or("");
    if rp != "Always" {
        e.not_supported("spec.template.spec.restartPolicy", rp, &["Always"]);
    }
    if t.pointer("/spec/activeDeadlineSeconds")
        .is_some_and(|v| !v.is_null())
    {
        e.forbidden(
            "spec.template.spec.activeDeadlineSeconds",
            "activeDeadlineSeconds in DaemonSet is not Supported",
        );
    }
    non_negative(e, spec, "minReadySeconds", "spec.minReadySeconds");
    update_strategy(e, spec.get("updateStrategy"));
    non_negative(e, spec, "revisionHistoryLimit", "spec.revisionHistoryLimit");
}

/// `ValidateDaemonSetUpdateStrategy` (after defaulting, so `type` is set).
fn update_strategy(e: &mut Errs, strategy: Option<&Value>) {
    let null = Value::Null;
    let strategy = strategy.unwrap_or(&null);
    let ty = strategy.get("type").and_then(Value::as_str).unwrap_or("");
    let ru = strategy.get("rollingUpdate").filter(|v| !v.is_null());
    match ty {
        "OnDelete" => {}
        "RollingUpdate" => match ru {
            None => e.required("spec.updateStrategy.rollingUpdate", ""),
            Some(ru) => rolling_update(e, ru),
        },
        _ => {
            // Upstream passes the internal struct itself; Go prints a set pointer as its
            // address, which a client cannot rely on, so any stand-in address does.
            let ptr = if ru.is_some() { "0xc000000000" } else { "nil" };
            let shown = format!(
                "apps.DaemonSetUpdateStrategy{{Type:{ty:?}, RollingUpdate:(*apps.RollingUpdateDaemonSet)({ptr})}}"
            );
            e.push(
                "FieldValueNotSupported",
                "spec.updateStrategy",
                format!(
                    "Unsupported value: {shown}: supported values: \"RollingUpdate\", \"OnDelete\""
                ),
            );
        }
    }
}

/// An intstr.IntOrString as JSON gives it: Int(n), Str(s), or neither (a JSON type that is
/// not one; upstream fails decoding, here it is an invalid value).
enum IntStr<'a> {
    Int(i64),
    Str(&'a str),
    Other,
}

fn int_str(v: Option<&Value>) -> IntStr<'_> {
    match v {
        None | Some(Value::Null) => IntStr::Int(0),
        Some(Value::Number(n)) => n.as_i64().map_or(IntStr::Other, IntStr::Int),
        Some(Value::String(s)) => IntStr::Str(s),
        Some(_) => IntStr::Other,
    }
}

/// `%#v` of an intstr.IntOrString value (its `String` method has a pointer receiver).
fn go_int_str(v: &IntStr) -> String {
    match v {
        IntStr::Int(n) => format!("intstr.IntOrString{{Type:0, IntVal:{n}, StrVal:\"\"}}"),
        IntStr::Str(s) => format!("intstr.IntOrString{{Type:1, IntVal:0, StrVal:{s:?}}}"),
        IntStr::Other => "intstr.IntOrString{Type:2, IntVal:0, StrVal:\"\"}".into(),
    }
}

/// The percentage of a valid `N%` string.
fn percent(s: &str) -> Option<i64> {
    let digits = s.strip_suffix('%')?;
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

/// `getIntOrPercentValue`: the percentage, the int, or a string's `Atoi` (0 when not a number).
fn int_or_percent_value(v: &IntStr) -> i64 {
    match v {
        IntStr::Int(n) => *n,
        IntStr::Str(s) => percent(s).or_else(|| s.parse().ok()).unwrap_or(0),
        IntStr::Other => 0,
    }
}

/// `ValidateRollingUpdateDaemonSet`.
fn rolling_update(e: &mut Errs, ru: &Value) {
    let base = "spec.updateStrategy.rollingUpdate";
    let unavailable = int_str(ru.get("maxUnavailable"));
    let surge = int_str(ru.get("maxSurge"));
    for (key, v) in [("maxUnavailable", &unavailable), ("maxSurge", &surge)] {
        let field = format!("{base}.{key}");
        match v {
            IntStr::Str(s) if percent(s).is_none() => {
                e.invalid_omit(&field, &format!("{}: {PERCENT_MSG}", go_int_str(v)));
            }
            IntStr::Str(_) => {}
            IntStr::Int(n) if *n < 0 => {
                e.invalid(
                    &field,
                    &Value::from(*n),
                    "must be greater than or equal to 0",
                );
            }
            IntStr::Int(_) => {}
            IntStr::Other => e.invalid_omit(
                &field,
                &format!(
                    "{}: must be an integer or percentage (e.g '5%%')",
                    go_int_str(v)
                ),
            ),
        }
    }
    for (key, v) in [("maxUnavailable", &unavailable), ("maxSurge", &surge)] {
        if let IntStr::Str(s) = v {
            if percent(s).is_some_and(|p| p > 100) {
                e.invalid_omit(
                    &format!("{base}.{key}"),
                    &format!("{}: must not be greater than 100%", go_int_str(v)),
                );
            }
        }
    }
    let has_unavailable = int_or_percent_value(&unavailable) != 0;
    let has_surge = int_or_percent_value(&surge) != 0;
    if has_unavailable && has_surge {
        e.invalid_omit(
            &format!("{base}.maxSurge"),
            &format!(
                "{}: may not be set when maxUnavailable is non-zero",
                go_int_str(&surge)
            ),
        );
    } else if !has_unavailable && !has_surge {
        e.required(
            &format!("{base}.maxUnavailable"),
            "cannot be 0 when maxSurge is 0",
        );
    }
}

/// `validateDaemonSetStatus` and the collision count rule of `ValidateDaemonSetStatusUpdate`.
fn status(e: &mut Errs, new: Option<&Value>, old: Option<&Value>) {
    let null = Value::Null;
    let new = new.unwrap_or(&null);
    for key in [
        "currentNumberScheduled",
        "numberMisscheduled",
        "desiredNumberScheduled",
        "numberReady",
        "observedGeneration",
        "updatedNumberScheduled",
        "numberAvailable",
        "numberUnavailable",
        "collisionCount",
    ] {
        non_negative(e, new, key, &format!("status.{key}"));
    }
    let count = |s: Option<&Value>| {
        s.and_then(|s| s.get("collisionCount"))
            .and_then(Value::as_i64)
    };
    if let Some(before) = count(old) {
        let now = count(Some(new));
        if now.is_none_or(|n| n < before) {
            e.invalid(
                "status.collisionCount",
                &Value::from(now.unwrap_or(0)),
                "cannot be decremented",
            );
        }
    }
}
