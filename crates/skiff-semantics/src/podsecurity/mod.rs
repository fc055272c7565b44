//! The Pod Security Standards (upstream `k8s.io/pod-security-admission`): the policy levels and
//! versions read from a namespace's `pod-security.kubernetes.io/*` labels ([`Policy::from_labels`]),
//! and the evaluation of a pod (or pod template) against one level and version ([`evaluate`]),
//! with upstream's check order and exact reason and detail texts. Pure functions of JSON objects;
//! the API server's `PodSecurity` admission plugin applies them.

mod checks;

use std::fmt;

use serde_json::{Map, Value};

/// Namespace label keys (and the audit annotation prefix).
pub mod labels {
    pub const PREFIX: &str = "pod-security.kubernetes.io/";
    pub const ENFORCE: &str = "pod-security.kubernetes.io/enforce";
    pub const ENFORCE_VERSION: &str = "pod-security.kubernetes.io/enforce-version";
    pub const AUDIT: &str = "pod-security.kubernetes.io/audit";
    pub const AUDIT_VERSION: &str = "pod-security.kubernetes.io/audit-version";
    pub const WARN: &str = "pod-security.kubernetes.io/warn";
    pub const WARN_VERSION: &str = "pod-security.kubernetes.io/warn-version";
}

/// A Pod Security Standards level, least to most restrictive.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Level {
    Privileged,
    Baseline,
    Restricted,
}

impl Level {
    pub fn as_str(self) -> &'static str {
        match self {
            Level::Privileged => "privileged",
            Level::Baseline => "baseline",
            Level::Restricted => "restricted",
        }
    }

    pub fn parse(s: &str) -> Option<Level> {
        match s {
            "privileged" => Some(Level::Privileged),
            "baseline" => Some(Level::Baseline),
            "restricted" => Some(Level::Restricted),
            _ => None,
        }
    }
}

impl fmt::Display for Level {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A policy version: `latest` or `v1.<minor>`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Version {
    Latest,
    V1(u32),
}

impl Version {
    /// `latest`, or `v1.x` with x a decimal without leading zeros (upstream's
    /// `^v1\.([0-9]|[1-9][0-9]*)$`).
    pub fn parse(s: &str) -> Option<Version> {
        if s == "latest" {
            return Some(Version::Latest);
        }
        let minor = s.strip_prefix("v1.")?;
        let digits_only = !minor.is_empty() && minor.bytes().all(|b| b.is_ascii_digit());
        if !digits_only || (minor.len() > 1 && minor.starts_with('0')) {
            return None;
        }
        minor.parse().ok().map(Version::V1)
    }

    /// The minor version whose checks apply, given the newest one this server knows.
    fn effective_minor(self, max_minor: u32) -> u32 {
        match self {
            Version::Latest => max_minor,
            Version::V1(m) => m.min(max_minor),
        }
    }
}

impl fmt::Display for Version {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Version::Latest => f.write_str("latest"),
            Version::V1(m) => write!(f, "v1.{m}"),
        }
    }
}

/// A level at a version, printed `restricted:latest`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct LevelVersion {
    pub level: Level,
    pub version: Version,
}

impl LevelVersion {
    pub const PRIVILEGED: LevelVersion = LevelVersion {
        level: Level::Privileged,
        version: Version::Latest,
    };
}

impl fmt::Display for LevelVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.level, self.version)
    }
}

/// The three modes of a namespace's policy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Policy {
    pub enforce: LevelVersion,
    pub audit: LevelVersion,
    pub warn: LevelVersion,
}

/// An invalid policy label; rendered as a field error on `metadata.labels[<label>]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LabelError {
    pub label: &'static str,
    pub value: String,
    /// Upstream's detail: `must be one of privileged, baseline, restricted` or
    /// `must be "latest" or "v1.x"`.
    pub message: &'static str,
}

impl LabelError {
    /// The field path, e.g. `metadata.labels[pod-security.kubernetes.io/enforce]`.
    pub fn field(&self) -> String {
        format!("metadata.labels[{}]", self.label)
    }
}

const LEVEL_MESSAGE: &str = "must be one of privileged, baseline, restricted";
const VERSION_MESSAGE: &str = "must be \"latest\" or \"v1.x\"";

impl Default for Policy {
    /// No labels: privileged:latest in every mode (upstream's default configuration).
    fn default() -> Self {
        Policy {
            enforce: LevelVersion::PRIVILEGED,
            audit: LevelVersion::PRIVILEGED,
            warn: LevelVersion::PRIVILEGED,
        }
    }
}

impl Policy {
    /// The policy a namespace's labels select, and the labels that were invalid. An invalid
    /// enforce level fails closed (restricted), invalid audit and warn levels fail open
    /// (privileged), an invalid version means `latest`; an explicit enforce level stricter than
    /// the warn level also warns at it unless a warn label is set, as upstream.
    pub fn from_labels(labels: Option<&Map<String, Value>>) -> (Policy, Vec<LabelError>) {
        let mut p = Policy::default();
        let mut errs = Vec::new();
        let Some(labels) = labels else {
            return (p, errs);
        };
        let get = |k: &str| labels.get(k).map(|v| v.as_str().unwrap_or(""));
        let level = |key: &'static str, invalid: Level, errs: &mut Vec<LabelError>| {
            get(key).map(|v| {
                Level::parse(v).ok_or_else(|| {
                    errs.push(LabelError {
                        label: key,
                        value: v.to_string(),
                        message: LEVEL_MESSAGE,
                    });
                    invalid
                })
            })
        };
        let enforce_level = level(labels::ENFORCE, Level::Restricted, &mut errs);
        let audit_level = level(labels::AUDIT, Level::Privileged, &mut errs);
        let warn_level = level(labels::WARN, Level::Privileged, &mut errs);
        let version = |key: &'static str, errs: &mut Vec<LabelError>| {
            get(key).map(|v| {
                Version::parse(v).unwrap_or_else(|| {
                    errs.push(LabelError {
                        label: key,
                        value: v.to_string(),
                        message: VERSION_MESSAGE,
                    });
                    Version::Latest
                })
            })
        };
        let enforce_version = version(labels::ENFORCE_VERSION, &mut errs);
        let audit_version = version(labels::AUDIT_VERSION, &mut errs);
        let warn_version = version(labels::WARN_VERSION, &mut errs);
        // Upstream reports the errors in label order enforce, enforce-version, audit, ...
        errs.sort_by_key(|e| label_rank(e.label));

        let pick = |l: Option<Result<Level, Level>>| l.map(|r| r.unwrap_or_else(|x| x));
        if let Some(l) = pick(enforce_level) {
            p.enforce.level = l;
        }
        if let Some(v) = enforce_version {
            p.enforce.version = v;
        }
        if let Some(l) = pick(audit_level) {
            p.audit.level = l;
        }
        if let Some(v) = audit_version {
            p.audit.version = v;
        }
        if let Some(l) = pick(warn_level) {
            p.warn.level = l;
        }
        if let Some(v) = warn_version {
            p.warn.version = v;
        }
        let enforce_explicit = matches!(enforce_level, Some(Ok(_)));
        if warn_level.is_none() && enforce_explicit && p.enforce.level > p.warn.level {
            p.warn.level = p.enforce.level;
            if warn_version.is_none() {
                p.warn.version = p.enforce.version;
            }
        }
        (p, errs)
    }

    /// Every mode privileged: nothing to evaluate.
    pub fn fully_privileged(&self) -> bool {
        self.enforce.level == Level::Privileged
            && self.audit.level == Level::Privileged
            && self.warn.level == Level::Privileged
    }
}

fn label_rank(label: &str) -> usize {
    [
        labels::ENFORCE,
        labels::ENFORCE_VERSION,
        labels::AUDIT,
        labels::AUDIT_VERSION,
        labels::WARN,
        labels::WARN_VERSION,
    ]
    .iter()
    .position(|l| *l == label)
    .unwrap_or(usize::MAX)
}

/// One failed check: a short reason and, optionally, the specific values at fault.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    pub reason: String,
    pub detail: String,
}

/// The failed checks of one evaluation, in upstream's order.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Evaluation {
    pub failures: Vec<Failure>,
}

impl Evaluation {
    pub fn allowed(&self) -> bool {
        self.failures.is_empty()
    }

    /// `host namespaces, privileged` (the per-pod text of namespace label warnings).
    pub fn forbidden_reason(&self) -> String {
        self.failures
            .iter()
            .map(|f| f.reason.as_str())
            .collect::<Vec<_>>()
            .join(", ")
    }

    /// `host namespaces (hostNetwork=true), privileged (container "c" must not set ...)`.
    pub fn forbidden_detail(&self) -> String {
        self.failures
            .iter()
            .map(|f| {
                if f.detail.is_empty() {
                    f.reason.clone()
                } else {
                    format!("{} ({})", f.reason, f.detail)
                }
            })
            .collect::<Vec<_>>()
            .join(", ")
    }
}

/// Evaluates a pod's metadata and spec (or a pod template's) against `lv`. `max_minor` is the
/// newest policy version this server implements (its Kubernetes minor): `latest` and newer pins
/// evaluate as that version, as upstream's evaluator caps them at its emulated version.
pub fn evaluate(lv: LevelVersion, max_minor: u32, meta: &Value, spec: &Value) -> Evaluation {
    if lv.level == Level::Privileged {
        return Evaluation::default();
    }
    let minor = lv.version.effective_minor(max_minor);
    let pod = checks::Pod { meta, spec };
    Evaluation {
        failures: checks::run(lv.level, minor, &pod),
    }
}

/// Whether a pod update changes what the policy looks at: the number of (init) containers, an
/// image, or an ephemeral container (added, or its image changed). Other pod updates (labels,
/// annotations, status) are admitted without evaluation, as upstream.
pub fn significant_pod_update(new: &Value, old: &Value) -> bool {
    let list = |pod: &Value, key: &str| -> Vec<Value> {
        pod.pointer(&format!("/spec/{key}"))
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default()
    };
    let image = |c: &Value| c.get("image").cloned().unwrap_or(Value::Null);
    for key in ["containers", "initContainers"] {
        let (n, o) = (list(new, key), list(old, key));
        if n.len() != o.len() || n.iter().zip(&o).any(|(a, b)| image(a) != image(b)) {
            return true;
        }
    }
    let old_eph = list(old, "ephemeralContainers");
    list(new, "ephemeralContainers").iter().any(|c| {
        match old_eph.iter().find(|o| o.get("name") == c.get("name")) {
            None => true,
            Some(o) => image(o) != image(c),
        }
    })
}

/// The pod metadata and spec of an object that embeds one (a Pod, or a workload's pod
/// template), by kind; `None` when the kind has none or this object carries none.
pub fn pod_template<'a>(group: &str, kind: &str, obj: &'a Value) -> Option<(&'a Value, &'a Value)> {
    static NULL: Value = Value::Null;
    let template = |path: &str| obj.pointer(path).filter(|t| !t.is_null());
    let t = match (group, kind) {
        ("", "Pod") => {
            return Some((
                obj.get("metadata").unwrap_or(&NULL),
                obj.get("spec").unwrap_or(&NULL),
            ))
        }
        // Templates behind a pointer upstream: absent means nothing to check.
        ("", "PodTemplate") => template("/template")?,
        ("", "ReplicationController") => template("/spec/template")?,
        ("batch", "CronJob") => template("/spec/jobTemplate/spec/template").unwrap_or(&NULL),
        ("apps", "ReplicaSet" | "Deployment" | "StatefulSet" | "DaemonSet") | ("batch", "Job") => {
            template("/spec/template").unwrap_or(&NULL)
        }
        _ => return None,
    };
    Some((
        t.get("metadata").unwrap_or(&NULL),
        t.get("spec").unwrap_or(&NULL),
    ))
}

/// Whether `kind` embeds a pod spec the policy applies to (warn and audit only, for workloads).
pub fn has_pod_spec(group: &str, kind: &str) -> bool {
    matches!(
        (group, kind),
        ("", "Pod" | "PodTemplate" | "ReplicationController")
            | (
                "apps",
                "ReplicaSet" | "Deployment" | "StatefulSet" | "DaemonSet"
            )
            | ("batch", "Job" | "CronJob")
    )
}

#[cfg(test)]
mod tests;
