//! The individual Pod Security checks, each with the policy versions where its rule changed.
//! [`CHECKS`] lists them in upstream's evaluation order (baseline IDs sorted, then restricted IDs
//! sorted), which fixes the order of reasons in every message.

use std::collections::BTreeSet;

use serde_json::Value;

use super::{Failure, Level};

/// What a check reads: the pod's (or template's) metadata and spec.
pub(super) struct Pod<'a> {
    pub meta: &'a Value,
    pub spec: &'a Value,
}

type CheckFn = fn(&Pod<'_>) -> Option<Failure>;

/// One revision of a check, in force from `since` (a v1 minor) until the next revision.
struct Revision {
    since: u32,
    run: CheckFn,
    /// Baseline checks this restricted revision replaces.
    overrides: &'static [&'static str],
}

struct Check {
    id: &'static str,
    level: Level,
    revisions: &'static [Revision],
}

const fn rev(since: u32, run: CheckFn) -> Revision {
    Revision {
        since,
        run,
        overrides: &[],
    }
}

const fn rev_over(since: u32, run: CheckFn, overrides: &'static [&'static str]) -> Revision {
    Revision {
        since,
        run,
        overrides,
    }
}

use Level::{Baseline, Restricted};

static CHECKS: &[Check] = &[
    // Baseline, by ID.
    Check {
        id: "appArmorProfile",
        level: Baseline,
        revisions: &[rev(0, app_armor_profile)],
    },
    Check {
        id: "capabilities_baseline",
        level: Baseline,
        revisions: &[rev(0, capabilities_baseline)],
    },
    Check {
        id: "hostNamespaces",
        level: Baseline,
        revisions: &[rev(0, host_namespaces)],
    },
    Check {
        id: "hostPathVolumes",
        level: Baseline,
        revisions: &[rev(0, host_path_volumes)],
    },
    Check {
        id: "hostPorts",
        level: Baseline,
        revisions: &[rev(0, host_ports)],
    },
    Check {
        id: "hostProbesAndHostLifecycle",
        level: Baseline,
        revisions: &[rev(34, host_probes_and_lifecycle)],
    },
    Check {
        id: "privileged",
        level: Baseline,
        revisions: &[rev(0, privileged)],
    },
    Check {
        id: "procMount",
        level: Baseline,
        revisions: &[rev(0, proc_mount), rev(35, proc_mount_unless_user_ns)],
    },
    Check {
        id: "seLinuxOptions",
        level: Baseline,
        revisions: &[rev(0, se_linux_options_1_0), rev(31, se_linux_options_1_31)],
    },
    Check {
        id: "seccompProfile_baseline",
        level: Baseline,
        revisions: &[
            rev(0, seccomp_annotations),
            rev(19, seccomp_profile_baseline),
        ],
    },
    Check {
        id: "sysctls",
        level: Baseline,
        revisions: &[
            rev(0, sysctls_1_0),
            rev(27, sysctls_1_27),
            rev(29, sysctls_1_29),
            rev(32, sysctls_1_32),
            rev(37, sysctls_1_37),
        ],
    },
    Check {
        id: "windowsHostProcess",
        level: Baseline,
        revisions: &[rev(0, windows_host_process)],
    },
    // Restricted, by ID.
    Check {
        id: "allowPrivilegeEscalation",
        level: Restricted,
        revisions: &[
            rev(8, allow_privilege_escalation),
            rev(25, allow_privilege_escalation_unless_windows),
        ],
    },
    Check {
        id: "capabilities_restricted",
        level: Restricted,
        revisions: &[
            rev_over(22, capabilities_restricted, &["capabilities_baseline"]),
            rev_over(
                25,
                capabilities_restricted_unless_windows,
                &["capabilities_baseline"],
            ),
        ],
    },
    Check {
        id: "procMount_restricted",
        level: Restricted,
        revisions: &[rev_over(35, proc_mount, &["procMount"])],
    },
    Check {
        id: "restrictedVolumes",
        level: Restricted,
        revisions: &[rev_over(0, restricted_volumes, &["hostPathVolumes"])],
    },
    Check {
        id: "runAsNonRoot",
        level: Restricted,
        revisions: &[
            rev(0, run_as_non_root),
            rev(35, run_as_non_root_unless_user_ns),
        ],
    },
    Check {
        id: "runAsUser",
        level: Restricted,
        revisions: &[rev(23, run_as_user), rev(35, run_as_user_unless_user_ns)],
    },
    Check {
        id: "seccompProfile_restricted",
        level: Restricted,
        revisions: &[
            rev_over(19, seccomp_profile_restricted, &["seccompProfile_baseline"]),
            rev_over(
                25,
                seccomp_profile_restricted_unless_windows,
                &["seccompProfile_baseline"],
            ),
        ],
    },
];

/// The revision of `check` in force at `minor`, if the check exists there yet.
fn revision(check: &Check, minor: u32) -> Option<&Revision> {
    check.revisions.iter().rev().find(|r| r.since <= minor)
}

/// Runs the checks of `level` (restricted includes the baseline checks it does not override)
/// at `minor`, returning the failures in order.
pub(super) fn run(level: Level, minor: u32, pod: &Pod<'_>) -> Vec<Failure> {
    let overridden: Vec<&str> = if level == Restricted {
        CHECKS
            .iter()
            .filter(|c| c.level == Restricted)
            .filter_map(|c| revision(c, minor))
            .flat_map(|r| r.overrides.iter().copied())
            .collect()
    } else {
        Vec::new()
    };
    CHECKS
        .iter()
        .filter(|c| c.level <= level && !overridden.contains(&c.id))
        .filter_map(|c| revision(c, minor))
        .filter_map(|r| (r.run)(pod))
        .collect()
}

// ---- helpers ---------------------------------------------------------------------------------

/// A present, non-null field (Go's non-nil pointer).
fn field<'a>(v: &'a Value, key: &str) -> Option<&'a Value> {
    v.get(key).filter(|x| !x.is_null())
}

fn str_of<'a>(v: &'a Value, key: &str) -> &'a str {
    v.get(key).and_then(Value::as_str).unwrap_or("")
}

fn bool_of(v: &Value, key: &str) -> Option<bool> {
    v.get(key).and_then(Value::as_bool)
}

fn array<'a>(v: &'a Value, key: &str) -> &'a [Value] {
    v.get(key)
        .and_then(Value::as_array)
        .map_or(&[], Vec::as_slice)
}

/// Init containers, containers, then ephemeral containers (upstream's visit order).
fn containers(spec: &Value) -> impl Iterator<Item = &Value> {
    ["initContainers", "containers", "ephemeralContainers"]
        .into_iter()
        .flat_map(move |k| array(spec, k).iter())
}

fn name(c: &Value) -> String {
    str_of(c, "name").to_string()
}

fn sc(c: &Value) -> Option<&Value> {
    field(c, "securityContext")
}

fn pluralize<'a>(singular: &'a str, plural: &'a str, n: usize) -> &'a str {
    if n == 1 {
        singular
    } else {
        plural
    }
}

/// `"a", "b"` (no escaping, as upstream's joinQuote).
fn join_quote<S: AsRef<str>>(items: impl IntoIterator<Item = S>) -> String {
    let items: Vec<String> = items
        .into_iter()
        .map(|s| format!("\"{}\"", s.as_ref()))
        .collect();
    items.join(", ")
}

/// `container "a"` / `containers "a", "b"`.
fn containers_phrase(names: &[String]) -> String {
    format!(
        "{} {}",
        pluralize("container", "containers", names.len()),
        join_quote(names)
    )
}

/// Go's `%q` of a string: escapes quotes, backslashes and control characters.
fn go_quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for ch in s.chars() {
        match ch {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            '\r' => out.push_str("\\r"),
            '\u{7}' => out.push_str("\\a"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            '\u{b}' => out.push_str("\\v"),
            c if (c as u32) < 0x20 || c as u32 == 0x7f => {
                out.push_str(&format!("\\x{:02x}", c as u32))
            }
            c if c.is_control() => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

fn fail(reason: &str, detail: String) -> Option<Failure> {
    Some(Failure {
        reason: reason.to_string(),
        detail,
    })
}

fn is_windows(pod: &Pod<'_>) -> bool {
    pod.spec
        .pointer("/os/name")
        .and_then(Value::as_str)
        .is_some_and(|n| n == "windows")
}

/// `hostUsers: false`: the pod runs in a user namespace (relaxes some checks from v1.35).
fn in_user_namespace(pod: &Pod<'_>) -> bool {
    bool_of(pod.spec, "hostUsers") == Some(false)
}

// ---- baseline --------------------------------------------------------------------------------

const APPARMOR_ANNOTATION_PREFIX: &str = "container.apparmor.security.beta.kubernetes.io/";

fn app_armor_profile(pod: &Pod<'_>) -> Option<Failure> {
    let allowed = |t: &str| t == "RuntimeDefault" || t == "Localhost";
    let mut setters = Vec::new();
    let mut bad_values = BTreeSet::new();
    if let Some(p) = pod_sc(pod).and_then(|s| field(s, "appArmorProfile")) {
        let t = str_of(p, "type");
        if !allowed(t) {
            setters.push("pod".to_string());
            bad_values.insert(t.to_string());
        }
    }
    let mut bad = Vec::new();
    for c in containers(pod.spec) {
        if let Some(p) = sc(c).and_then(|s| field(s, "appArmorProfile")) {
            let t = str_of(p, "type");
            if !allowed(t) {
                bad.push(name(c));
                bad_values.insert(t.to_string());
            }
        }
    }
    if !bad.is_empty() {
        setters.push(containers_phrase(&bad));
    }
    let mut annotations: Vec<String> = pod
        .meta
        .get("annotations")
        .and_then(Value::as_object)
        .into_iter()
        .flatten()
        .filter(|(k, _)| k.starts_with(APPARMOR_ANNOTATION_PREFIX))
        .map(|(k, v)| (k, v.as_str().unwrap_or("")))
        .filter(|(_, v)| !(v.is_empty() || *v == "runtime/default" || v.starts_with("localhost/")))
        .map(|(k, v)| format!("{k}={}", go_quote(v)))
        .collect();
    let mut values: Vec<String> = bad_values.into_iter().collect();
    if !annotations.is_empty() {
        annotations.sort();
        setters.push(pluralize("annotation", "annotations", annotations.len()).to_string());
        values.extend(annotations);
    }
    if setters.is_empty() {
        return None;
    }
    fail(
        pluralize(
            "forbidden AppArmor profile",
            "forbidden AppArmor profiles",
            values.len(),
        ),
        format!(
            "{} must not set AppArmor profile type to {}",
            setters.join(" and "),
            join_quote(&values)
        ),
    )
}

const DEFAULT_CAPABILITIES: &[&str] = &[
    "AUDIT_WRITE",
    "CHOWN",
    "DAC_OVERRIDE",
    "FOWNER",
    "FSETID",
    "KILL",
    "MKNOD",
    "NET_BIND_SERVICE",
    "SETFCAP",
    "SETGID",
    "SETPCAP",
    "SETUID",
    "SYS_CHROOT",
];

fn added_capabilities(c: &Value) -> Option<&[Value]> {
    sc(c)
        .and_then(|s| field(s, "capabilities"))
        .map(|caps| array(caps, "add"))
}

fn capabilities_baseline(pod: &Pod<'_>) -> Option<Failure> {
    let mut bad = Vec::new();
    let mut caps = BTreeSet::new();
    for c in containers(pod.spec) {
        let Some(add) = added_capabilities(c) else {
            continue;
        };
        let mut valid = true;
        for cap in add.iter().map(|v| v.as_str().unwrap_or("")) {
            if !DEFAULT_CAPABILITIES.contains(&cap) {
                valid = false;
                caps.insert(cap.to_string());
            }
        }
        if !valid {
            bad.push(name(c));
        }
    }
    if bad.is_empty() {
        return None;
    }
    fail(
        "non-default capabilities",
        format!(
            "{} must not include {} in securityContext.capabilities.add",
            containers_phrase(&bad),
            join_quote(&caps)
        ),
    )
}

fn host_namespaces(pod: &Pod<'_>) -> Option<Failure> {
    let set: Vec<&str> = [
        ("hostNetwork", "hostNetwork=true"),
        ("hostPID", "hostPID=true"),
        ("hostIPC", "hostIPC=true"),
    ]
    .into_iter()
    .filter(|(k, _)| bool_of(pod.spec, k) == Some(true))
    .map(|(_, text)| text)
    .collect();
    if set.is_empty() {
        return None;
    }
    fail("host namespaces", set.join(", "))
}

fn host_path_volumes(pod: &Pod<'_>) -> Option<Failure> {
    let bad: Vec<String> = array(pod.spec, "volumes")
        .iter()
        .filter(|v| field(v, "hostPath").is_some())
        .map(name)
        .collect();
    if bad.is_empty() {
        return None;
    }
    fail(
        "hostPath volumes",
        format!(
            "{} {}",
            pluralize("volume", "volumes", bad.len()),
            join_quote(&bad)
        ),
    )
}

fn host_ports(pod: &Pod<'_>) -> Option<Failure> {
    let mut bad = Vec::new();
    // Sorted as strings, like upstream's string set.
    let mut ports = BTreeSet::new();
    for c in containers(pod.spec) {
        let mut valid = true;
        for p in array(c, "ports") {
            let hp = p.get("hostPort").and_then(Value::as_i64).unwrap_or(0);
            if hp != 0 {
                valid = false;
                ports.insert(hp.to_string());
            }
        }
        if !valid {
            bad.push(name(c));
        }
    }
    if bad.is_empty() {
        return None;
    }
    fail(
        "hostPort",
        format!(
            "{} {} {} {}",
            containers_phrase(&bad),
            pluralize("uses", "use", bad.len()),
            pluralize("hostPort", "hostPorts", ports.len()),
            ports.into_iter().collect::<Vec<_>>().join(", ")
        ),
    )
}

/// Hosts named by a probe's or lifecycle handler's httpGet / tcpSocket.
fn handler_hosts(handler: Option<&Value>) -> Vec<String> {
    let Some(h) = handler.filter(|h| !h.is_null()) else {
        return Vec::new();
    };
    ["httpGet", "tcpSocket"]
        .into_iter()
        .filter_map(|k| field(h, k))
        .map(|a| str_of(a, "host"))
        .filter(|host| !host.is_empty())
        .map(str::to_string)
        .collect()
}

fn host_probes_and_lifecycle(pod: &Pod<'_>) -> Option<Failure> {
    let mut bad = BTreeSet::new();
    let mut hosts = BTreeSet::new();
    for c in containers(pod.spec) {
        let handlers = [
            c.get("livenessProbe"),
            c.get("readinessProbe"),
            c.get("startupProbe"),
            c.pointer("/lifecycle/postStart"),
            c.pointer("/lifecycle/preStop"),
        ];
        for h in handlers {
            let found = handler_hosts(h);
            if !found.is_empty() {
                bad.insert(name(c));
                hosts.extend(found);
            }
        }
    }
    if bad.is_empty() {
        return None;
    }
    fail(
        "probe or lifecycle host",
        format!(
            "{} {} {} {} {}",
            pluralize("container", "containers", bad.len()),
            join_quote(&bad),
            pluralize("uses", "use", bad.len()),
            pluralize(
                "probe or lifecycle host",
                "probe or lifecycle hosts",
                hosts.len()
            ),
            join_quote(&hosts)
        ),
    )
}

fn privileged(pod: &Pod<'_>) -> Option<Failure> {
    let bad: Vec<String> = containers(pod.spec)
        .filter(|c| sc(c).and_then(|s| bool_of(s, "privileged")) == Some(true))
        .map(name)
        .collect();
    if bad.is_empty() {
        return None;
    }
    fail(
        "privileged",
        format!(
            "{} must not set securityContext.privileged=true",
            containers_phrase(&bad)
        ),
    )
}

fn proc_mount(pod: &Pod<'_>) -> Option<Failure> {
    let mut bad = Vec::new();
    let mut types = BTreeSet::new();
    for c in containers(pod.spec) {
        let Some(pm) = sc(c).and_then(|s| field(s, "procMount")) else {
            continue;
        };
        let pm = pm.as_str().unwrap_or("");
        if pm != "Default" {
            bad.push(name(c));
            types.insert(pm.to_string());
        }
    }
    if bad.is_empty() {
        return None;
    }
    fail(
        "procMount",
        format!(
            "{} must not set securityContext.procMount to {}",
            containers_phrase(&bad),
            join_quote(&types)
        ),
    )
}

fn proc_mount_unless_user_ns(pod: &Pod<'_>) -> Option<Failure> {
    if in_user_namespace(pod) {
        return None;
    }
    proc_mount(pod)
}

const SELINUX_TYPES_1_0: &[&str] = &["", "container_t", "container_init_t", "container_kvm_t"];
const SELINUX_TYPES_1_31: &[&str] = &[
    "",
    "container_t",
    "container_init_t",
    "container_kvm_t",
    "container_engine_t",
];

fn se_linux_options_1_0(pod: &Pod<'_>) -> Option<Failure> {
    se_linux_options(pod, SELINUX_TYPES_1_0)
}

fn se_linux_options_1_31(pod: &Pod<'_>) -> Option<Failure> {
    se_linux_options(pod, SELINUX_TYPES_1_31)
}

fn se_linux_options(pod: &Pod<'_>, allowed: &[&str]) -> Option<Failure> {
    let mut bad_types = BTreeSet::new();
    let (mut set_user, mut set_role) = (false, false);
    let mut valid = |opts: &Value| {
        let mut ok = true;
        let t = str_of(opts, "type");
        if !allowed.contains(&t) {
            ok = false;
            bad_types.insert(t.to_string());
        }
        if !str_of(opts, "user").is_empty() {
            ok = false;
            set_user = true;
        }
        if !str_of(opts, "role").is_empty() {
            ok = false;
            set_role = true;
        }
        ok
    };
    let mut setters = Vec::new();
    if let Some(o) = pod_sc(pod).and_then(|s| field(s, "seLinuxOptions")) {
        if !valid(o) {
            setters.push("pod".to_string());
        }
    }
    let mut bad = Vec::new();
    for c in containers(pod.spec) {
        if let Some(o) = sc(c).and_then(|s| field(s, "seLinuxOptions")) {
            if !valid(o) {
                bad.push(name(c));
            }
        }
    }
    if !bad.is_empty() {
        setters.push(containers_phrase(&bad));
    }
    if setters.is_empty() {
        return None;
    }
    let mut data = Vec::new();
    if !bad_types.is_empty() {
        data.push(format!(
            "{} {}",
            pluralize("type", "types", bad_types.len()),
            join_quote(&bad_types)
        ));
    }
    if set_user {
        data.push("user may not be set".to_string());
    }
    if set_role {
        data.push("role may not be set".to_string());
    }
    fail(
        "seLinuxOptions",
        format!(
            "{} set forbidden securityContext.seLinuxOptions: {}",
            setters.join(" and "),
            data.join("; ")
        ),
    )
}

const SECCOMP_POD_ANNOTATION: &str = "seccomp.security.alpha.kubernetes.io/pod";
const SECCOMP_CONTAINER_ANNOTATION_PREFIX: &str = "container.seccomp.security.alpha.kubernetes.io/";

/// Before v1.19 seccomp was set by annotations.
fn seccomp_annotations(pod: &Pod<'_>) -> Option<Failure> {
    let valid =
        |v: &str| v == "runtime/default" || v == "docker/default" || v.starts_with("localhost/");
    let annotation = |k: &str| {
        pod.meta
            .get("annotations")
            .and_then(|a| a.get(k))
            .map(|v| v.as_str().unwrap_or(""))
    };
    let mut forbidden = BTreeSet::new();
    if let Some(v) = annotation(SECCOMP_POD_ANNOTATION) {
        if !valid(v) {
            forbidden.insert(format!("{SECCOMP_POD_ANNOTATION}={}", go_quote(v)));
        }
    }
    for c in containers(pod.spec) {
        let key = format!("{SECCOMP_CONTAINER_ANNOTATION_PREFIX}{}", str_of(c, "name"));
        if let Some(v) = annotation(&key) {
            if !valid(v) {
                forbidden.insert(format!("{key}={}", go_quote(v)));
            }
        }
    }
    if forbidden.is_empty() {
        return None;
    }
    fail(
        "seccompProfile",
        format!(
            "forbidden {} {}",
            pluralize("annotation", "annotations", forbidden.len()),
            forbidden.into_iter().collect::<Vec<_>>().join(", ")
        ),
    )
}

fn seccomp_type(sc: Option<&Value>) -> Option<&str> {
    sc.and_then(|s| field(s, "seccompProfile"))
        .map(|p| str_of(p, "type"))
}

fn valid_seccomp(t: &str) -> bool {
    t == "Localhost" || t == "RuntimeDefault"
}

/// Shared by the baseline and restricted seccomp checks; `required` adds the restricted rule
/// that every container must end up with a profile.
fn seccomp_profile(pod: &Pod<'_>, required: bool) -> Option<Failure> {
    let mut setters = Vec::new();
    let mut bad_values = BTreeSet::new();
    let mut pod_set = false;
    if let Some(t) = seccomp_type(pod_sc(pod)) {
        if valid_seccomp(t) {
            pod_set = true;
        } else {
            setters.push("pod".to_string());
            bad_values.insert(t.to_string());
        }
    }
    let (mut explicit, mut implicit) = (Vec::new(), Vec::new());
    for c in containers(pod.spec) {
        match seccomp_type(sc(c)) {
            Some(t) if !valid_seccomp(t) => {
                explicit.push(name(c));
                bad_values.insert(t.to_string());
            }
            Some(_) => {}
            None if !pod_set => implicit.push(name(c)),
            None => {}
        }
    }
    if !explicit.is_empty() {
        setters.push(containers_phrase(&explicit));
    }
    if !setters.is_empty() {
        return fail(
            "seccompProfile",
            format!(
                "{} must not set securityContext.seccompProfile.type to {}",
                setters.join(" and "),
                join_quote(&bad_values)
            ),
        );
    }
    if required && !implicit.is_empty() {
        return fail(
            "seccompProfile",
            format!(
                "pod or {} must set securityContext.seccompProfile.type to \"RuntimeDefault\" or \"Localhost\"",
                containers_phrase(&implicit)
            ),
        );
    }
    None
}

fn seccomp_profile_baseline(pod: &Pod<'_>) -> Option<Failure> {
    seccomp_profile(pod, false)
}

const SYSCTLS_1_0: &[&str] = &[
    "kernel.shm_rmid_forced",
    "net.ipv4.ip_local_port_range",
    "net.ipv4.tcp_syncookies",
    "net.ipv4.ping_group_range",
    "net.ipv4.ip_unprivileged_port_start",
];
const SYSCTLS_1_27: &[&str] = &["net.ipv4.ip_local_reserved_ports"];
const SYSCTLS_1_29: &[&str] = &[
    "net.ipv4.tcp_keepalive_time",
    "net.ipv4.tcp_fin_timeout",
    "net.ipv4.tcp_keepalive_intvl",
    "net.ipv4.tcp_keepalive_probes",
];
const SYSCTLS_1_32: &[&str] = &["net.ipv4.tcp_rmem", "net.ipv4.tcp_wmem"];
const SYSCTLS_1_37: &[&str] = &[
    "net.ipv4.tcp_slow_start_after_idle",
    "net.ipv4.tcp_notsent_lowat",
];

/// The safe sysctls allowed at a version are every list up to it.
fn sysctls(pod: &Pod<'_>, allowed: &[&[&str]]) -> Option<Failure> {
    let bad: Vec<&str> = pod_sc(pod)
        .map(|s| array(s, "sysctls"))
        .unwrap_or(&[])
        .iter()
        .map(|s| str_of(s, "name"))
        .filter(|n| !allowed.iter().any(|set| set.contains(n)))
        .collect();
    if bad.is_empty() {
        return None;
    }
    fail("forbidden sysctls", bad.join(", "))
}

fn sysctls_1_0(pod: &Pod<'_>) -> Option<Failure> {
    sysctls(pod, &[SYSCTLS_1_0])
}

fn sysctls_1_27(pod: &Pod<'_>) -> Option<Failure> {
    sysctls(pod, &[SYSCTLS_1_0, SYSCTLS_1_27])
}

fn sysctls_1_29(pod: &Pod<'_>) -> Option<Failure> {
    sysctls(pod, &[SYSCTLS_1_0, SYSCTLS_1_27, SYSCTLS_1_29])
}

fn sysctls_1_32(pod: &Pod<'_>) -> Option<Failure> {
    sysctls(
        pod,
        &[SYSCTLS_1_0, SYSCTLS_1_27, SYSCTLS_1_29, SYSCTLS_1_32],
    )
}

fn sysctls_1_37(pod: &Pod<'_>) -> Option<Failure> {
    sysctls(
        pod,
        &[
            SYSCTLS_1_0,
            SYSCTLS_1_27,
            SYSCTLS_1_29,
            SYSCTLS_1_32,
            SYSCTLS_1_37,
        ],
    )
}

fn windows_host_process(pod: &Pod<'_>) -> Option<Failure> {
    let host_process = |s: Option<&Value>| {
        s.and_then(|s| s.pointer("/windowsOptions/hostProcess"))
            .and_then(Value::as_bool)
            == Some(true)
    };
    let mut setters = Vec::new();
    if host_process(pod_sc(pod)) {
        setters.push("pod".to_string());
    }
    let bad: Vec<String> = containers(pod.spec)
        .filter(|c| host_process(sc(c)))
        .map(name)
        .collect();
    if !bad.is_empty() {
        setters.push(containers_phrase(&bad));
    }
    if setters.is_empty() {
        return None;
    }
    fail(
        "hostProcess",
        format!(
            "{} must not set securityContext.windowsOptions.hostProcess=true",
            setters.join(" and ")
        ),
    )
}

fn pod_sc<'a>(pod: &Pod<'a>) -> Option<&'a Value> {
    field(pod.spec, "securityContext")
}

// ---- restricted ------------------------------------------------------------------------------

fn allow_privilege_escalation(pod: &Pod<'_>) -> Option<Failure> {
    let bad: Vec<String> = containers(pod.spec)
        .filter(|c| sc(c).and_then(|s| bool_of(s, "allowPrivilegeEscalation")) != Some(false))
        .map(name)
        .collect();
    if bad.is_empty() {
        return None;
    }
    fail(
        "allowPrivilegeEscalation != false",
        format!(
            "{} must set securityContext.allowPrivilegeEscalation=false",
            containers_phrase(&bad)
        ),
    )
}

/// From v1.25 Windows pods (`spec.os.name: windows`) are exempt from the Linux-only rules.
fn allow_privilege_escalation_unless_windows(pod: &Pod<'_>) -> Option<Failure> {
    if is_windows(pod) {
        return None;
    }
    allow_privilege_escalation(pod)
}

fn capabilities_restricted(pod: &Pod<'_>) -> Option<Failure> {
    let (mut missing_drop, mut adding) = (Vec::new(), Vec::new());
    let mut forbidden = BTreeSet::new();
    for c in containers(pod.spec) {
        let Some(caps) = sc(c).and_then(|s| field(s, "capabilities")) else {
            missing_drop.push(name(c));
            continue;
        };
        if !array(caps, "drop")
            .iter()
            .any(|d| d.as_str() == Some("ALL"))
        {
            missing_drop.push(name(c));
        }
        let mut added_forbidden = false;
        for cap in array(caps, "add").iter().map(|v| v.as_str().unwrap_or("")) {
            if cap != "NET_BIND_SERVICE" {
                added_forbidden = true;
                forbidden.insert(cap.to_string());
            }
        }
        if added_forbidden {
            adding.push(name(c));
        }
    }
    let mut details = Vec::new();
    if !missing_drop.is_empty() {
        details.push(format!(
            "{} must set securityContext.capabilities.drop=[\"ALL\"]",
            containers_phrase(&missing_drop)
        ));
    }
    if !adding.is_empty() {
        details.push(format!(
            "{} must not include {} in securityContext.capabilities.add",
            containers_phrase(&adding),
            join_quote(&forbidden)
        ));
    }
    if details.is_empty() {
        return None;
    }
    fail("unrestricted capabilities", details.join("; "))
}

fn capabilities_restricted_unless_windows(pod: &Pod<'_>) -> Option<Failure> {
    if is_windows(pod) {
        return None;
    }
    capabilities_restricted(pod)
}

/// Volume sources the restricted level allows.
const ALLOWED_VOLUMES: &[&str] = &[
    "configMap",
    "csi",
    "downwardAPI",
    "emptyDir",
    "ephemeral",
    "image",
    "persistentVolumeClaim",
    "projected",
    "secret",
];

/// The other inline volume sources, in the order upstream names the first one found.
const RESTRICTED_VOLUMES: &[&str] = &[
    "hostPath",
    "gcePersistentDisk",
    "awsElasticBlockStore",
    "gitRepo",
    "nfs",
    "iscsi",
    "glusterfs",
    "rbd",
    "flexVolume",
    "cinder",
    "cephfs",
    "flocker",
    "fc",
    "azureFile",
    "vsphereVolume",
    "quobyte",
    "azureDisk",
    "photonPersistentDisk",
    "portworxVolume",
    "scaleIO",
    "storageos",
];

fn restricted_volumes(pod: &Pod<'_>) -> Option<Failure> {
    let mut bad = Vec::new();
    let mut types = BTreeSet::new();
    for v in array(pod.spec, "volumes") {
        if ALLOWED_VOLUMES.iter().any(|k| field(v, k).is_some()) {
            continue;
        }
        bad.push(name(v));
        let t = RESTRICTED_VOLUMES
            .iter()
            .find(|k| field(v, k).is_some())
            .copied()
            .unwrap_or("unknown");
        types.insert(t);
    }
    if bad.is_empty() {
        return None;
    }
    fail(
        "restricted volume types",
        format!(
            "{} {} {} {} {}",
            pluralize("volume", "volumes", bad.len()),
            join_quote(&bad),
            pluralize("uses", "use", bad.len()),
            pluralize(
                "restricted volume type",
                "restricted volume types",
                types.len()
            ),
            join_quote(&types)
        ),
    )
}

fn run_as_non_root(pod: &Pod<'_>) -> Option<Failure> {
    let mut setters = Vec::new();
    let mut pod_non_root = false;
    match pod_sc(pod).and_then(|s| bool_of(s, "runAsNonRoot")) {
        Some(false) => setters.push("pod".to_string()),
        Some(true) => pod_non_root = true,
        None => {}
    }
    let (mut explicit, mut implicit) = (Vec::new(), Vec::new());
    for c in containers(pod.spec) {
        match sc(c).and_then(|s| bool_of(s, "runAsNonRoot")) {
            Some(false) => explicit.push(name(c)),
            Some(true) => {}
            None if !pod_non_root => implicit.push(name(c)),
            None => {}
        }
    }
    if !explicit.is_empty() {
        setters.push(containers_phrase(&explicit));
    }
    if !setters.is_empty() {
        return fail(
            "runAsNonRoot != true",
            format!(
                "{} must not set securityContext.runAsNonRoot=false",
                setters.join(" and ")
            ),
        );
    }
    if !implicit.is_empty() {
        return fail(
            "runAsNonRoot != true",
            format!(
                "pod or {} must set securityContext.runAsNonRoot=true",
                containers_phrase(&implicit)
            ),
        );
    }
    None
}

fn run_as_non_root_unless_user_ns(pod: &Pod<'_>) -> Option<Failure> {
    if in_user_namespace(pod) {
        return None;
    }
    run_as_non_root(pod)
}

fn run_as_user(pod: &Pod<'_>) -> Option<Failure> {
    let is_root =
        |s: Option<&Value>| s.and_then(|s| s.get("runAsUser")).and_then(Value::as_i64) == Some(0);
    let mut setters = Vec::new();
    if is_root(pod_sc(pod)) {
        setters.push("pod".to_string());
    }
    let bad: Vec<String> = containers(pod.spec)
        .filter(|c| is_root(sc(c)))
        .map(name)
        .collect();
    if !bad.is_empty() {
        setters.push(containers_phrase(&bad));
    }
    if setters.is_empty() {
        return None;
    }
    fail(
        "runAsUser=0",
        format!("{} must not set runAsUser=0", setters.join(" and ")),
    )
}

fn run_as_user_unless_user_ns(pod: &Pod<'_>) -> Option<Failure> {
    if in_user_namespace(pod) {
        return None;
    }
    run_as_user(pod)
}

fn seccomp_profile_restricted(pod: &Pod<'_>) -> Option<Failure> {
    seccomp_profile(pod, true)
}

fn seccomp_profile_restricted_unless_windows(pod: &Pod<'_>) -> Option<Failure> {
    if is_windows(pod) {
        return None;
    }
    seccomp_profile(pod, true)
}

#[cfg(test)]
pub(super) fn ids_in_order() -> Vec<(&'static str, Level)> {
    CHECKS.iter().map(|c| (c.id, c.level)).collect()
}

/// Runs one check by ID at `minor` (None when the check does not exist at that version).
#[cfg(test)]
pub(super) fn run_one(id: &str, minor: u32, pod: &Pod<'_>) -> Option<Option<Failure>> {
    let check = CHECKS.iter().find(|c| c.id == id)?;
    revision(check, minor).map(|r| (r.run)(pod))
}
