use serde_json::{json, Value};

use super::checks::{ids_in_order, run_one, Pod};
use super::*;

const NOW: u32 = 33;

/// Runs check `id` at v1.`minor` on a pod given as `{metadata, spec}`; (reason, detail) or None.
fn check_at(id: &str, minor: u32, pod: Value) -> Option<(String, String)> {
    let null = Value::Null;
    let p = Pod {
        meta: pod.get("metadata").unwrap_or(&null),
        spec: pod.get("spec").unwrap_or(&null),
    };
    run_one(id, minor, &p)
        .expect("check exists at that version")
        .map(|f| (f.reason, f.detail))
}

fn check(id: &str, pod: Value) -> Option<(String, String)> {
    check_at(id, NOW, pod)
}

fn fails(id: &str, pod: Value, reason: &str, detail: &str) {
    assert_eq!(
        check(id, pod),
        Some((reason.to_string(), detail.to_string())),
        "{id}"
    );
}

fn spec(spec: Value) -> Value {
    json!({ "spec": spec })
}

fn containers_with(sc: &[(&str, Value)]) -> Value {
    let cs: Vec<Value> = sc
        .iter()
        .map(|(n, s)| json!({"name": n, "image": "i", "securityContext": s}))
        .collect();
    spec(json!({ "containers": cs }))
}

#[test]
fn checks_run_in_upstreams_order() {
    let ids = ids_in_order();
    let baseline: Vec<&str> = ids
        .iter()
        .filter(|(_, l)| *l == Level::Baseline)
        .map(|(i, _)| *i)
        .collect();
    let restricted: Vec<&str> = ids
        .iter()
        .filter(|(_, l)| *l == Level::Restricted)
        .map(|(i, _)| *i)
        .collect();
    // Baseline first, then restricted, each sorted bytewise by ID.
    assert_eq!(ids.len(), baseline.len() + restricted.len());
    assert!(ids[..baseline.len()]
        .iter()
        .all(|(_, l)| *l == Level::Baseline));
    let mut sorted = baseline.clone();
    sorted.sort();
    assert_eq!(baseline, sorted);
    let mut sorted = restricted.clone();
    sorted.sort();
    assert_eq!(restricted, sorted);
    assert_eq!(baseline.len(), 12);
    assert_eq!(restricted.len(), 7);
}

#[test]
fn privileged() {
    let pod = containers_with(&[
        ("a", json!({})),
        ("b", json!({"privileged": false})),
        ("d", json!({"privileged": true})),
        ("e", json!({"privileged": true})),
    ]);
    fails(
        "privileged",
        pod,
        "privileged",
        r#"containers "d", "e" must not set securityContext.privileged=true"#,
    );
    assert_eq!(
        check(
            "privileged",
            containers_with(&[("a", json!({"privileged": null}))])
        ),
        None
    );
}

#[test]
fn host_namespaces() {
    fails(
        "hostNamespaces",
        spec(json!({"hostNetwork": true, "hostIPC": true, "hostPID": true})),
        "host namespaces",
        "hostNetwork=true, hostPID=true, hostIPC=true",
    );
    assert_eq!(
        check("hostNamespaces", spec(json!({"hostNetwork": false}))),
        None
    );
}

#[test]
fn host_path_volumes() {
    fails(
        "hostPathVolumes",
        spec(json!({"volumes": [
            {"name": "a", "hostPath": {"path": "/"}},
            {"name": "b", "hostPath": {}},
            {"name": "c", "emptyDir": {}},
        ]})),
        "hostPath volumes",
        r#"volumes "a", "b""#,
    );
    fails(
        "hostPathVolumes",
        spec(json!({"volumes": [{"name": "a", "hostPath": {"path": "/"}}]})),
        "hostPath volumes",
        r#"volume "a""#,
    );
}

#[test]
fn host_ports() {
    let pod = spec(json!({"containers": [
        {"name": "a", "ports": [{"containerPort": 80}]},
        {"name": "b", "ports": [{"containerPort": 80, "hostPort": 10}, {"containerPort": 81, "hostPort": 20}]},
        {"name": "c", "ports": [{"containerPort": 80, "hostPort": 0}, {"containerPort": 81, "hostPort": 30}]},
    ]}));
    fails(
        "hostPorts",
        pod,
        "hostPort",
        r#"containers "b", "c" use hostPorts 10, 20, 30"#,
    );
    fails(
        "hostPorts",
        spec(json!({"containers": [{"name": "b", "ports": [{"hostPort": 20}]}]})),
        "hostPort",
        r#"container "b" uses hostPort 20"#,
    );
    // Upstream sorts the ports as strings.
    fails(
        "hostPorts",
        spec(
            json!({"containers": [{"name": "b", "ports": [{"hostPort": 8080}, {"hostPort": 10000}]}]}),
        ),
        "hostPort",
        r#"container "b" uses hostPorts 10000, 8080"#,
    );
}

#[test]
fn capabilities_baseline() {
    let pod = containers_with(&[
        ("a", json!({"capabilities": {"add": ["FOO", "BAR"]}})),
        ("b", json!({"capabilities": {"add": ["BAR", "BAZ"]}})),
        (
            "c",
            json!({"capabilities": {"add": ["NET_BIND_SERVICE", "CHOWN"]}}),
        ),
    ]);
    fails(
        "capabilities_baseline",
        pod,
        "non-default capabilities",
        r#"containers "a", "b" must not include "BAR", "BAZ", "FOO" in securityContext.capabilities.add"#,
    );
}

#[test]
fn capabilities_restricted() {
    let pod = containers_with(&[
        ("a", json!({"capabilities": {"add": ["FOO", "BAR"]}})),
        ("b", json!({"capabilities": {"add": ["BAR", "BAZ"]}})),
        (
            "c",
            json!({"capabilities": {"add": ["NET_BIND_SERVICE", "CHOWN"], "drop": ["ALL", "FOO"]}}),
        ),
    ]);
    fails(
        "capabilities_restricted",
        pod,
        "unrestricted capabilities",
        r#"containers "a", "b" must set securityContext.capabilities.drop=["ALL"]; containers "a", "b", "c" must not include "BAR", "BAZ", "CHOWN", "FOO" in securityContext.capabilities.add"#,
    );
    fails(
        "capabilities_restricted",
        spec(json!({"containers": [{"name": "a"}]})),
        "unrestricted capabilities",
        r#"container "a" must set securityContext.capabilities.drop=["ALL"]"#,
    );
    // Windows pods are exempt from v1.25 on, not before.
    let windows = spec(json!({"os": {"name": "windows"}, "containers": [{"name": "a"}]}));
    assert_eq!(check("capabilities_restricted", windows.clone()), None);
    assert!(check_at("capabilities_restricted", 24, windows).is_some());
}

#[test]
fn app_armor() {
    fails(
        "appArmorProfile",
        spec(json!({"securityContext": {"appArmorProfile": {"type": "Unconfined"}}})),
        "forbidden AppArmor profile",
        r#"pod must not set AppArmor profile type to "Unconfined""#,
    );
    fails(
        "appArmorProfile",
        spec(
            json!({"initContainers": [{"name": "bar", "securityContext": {"appArmorProfile": {"type": "Unconfined"}}}],
            "containers": [{"name": "foo", "securityContext": {"appArmorProfile": {"type": "RuntimeDefault"}}}]}),
        ),
        "forbidden AppArmor profile",
        r#"container "bar" must not set AppArmor profile type to "Unconfined""#,
    );
    let pod = json!({"metadata": {"annotations": {
        "container.apparmor.security.beta.kubernetes.io/": "bogus",
        "container.apparmor.security.beta.kubernetes.io/a": "",
        "container.apparmor.security.beta.kubernetes.io/b": "runtime/default",
        "container.apparmor.security.beta.kubernetes.io/c": "localhost/",
        "container.apparmor.security.beta.kubernetes.io/d": "localhost/foo",
        "container.apparmor.security.beta.kubernetes.io/e": "unconfined",
        "container.apparmor.security.beta.kubernetes.io/f": "unknown",
        "env": "prod",
    }}, "spec": {}});
    fails(
        "appArmorProfile",
        pod,
        "forbidden AppArmor profiles",
        concat!(
            r#"annotations must not set AppArmor profile type to "#,
            r#""container.apparmor.security.beta.kubernetes.io/="bogus"", "#,
            r#""container.apparmor.security.beta.kubernetes.io/e="unconfined"", "#,
            r#""container.apparmor.security.beta.kubernetes.io/f="unknown"""#
        ),
    );
    assert_eq!(
        check(
            "appArmorProfile",
            spec(
                json!({"securityContext": {"appArmorProfile": {"type": "Localhost", "localhostProfile": "p"}}})
            )
        ),
        None
    );
}

#[test]
fn se_linux_options() {
    let pod = spec(json!({
    "securityContext": {"seLinuxOptions": {"type": "foo", "user": "u", "role": "r"}},
    "containers": [
        {"name": "a", "securityContext": {"seLinuxOptions": {}}},
        {"name": "b", "securityContext": {"seLinuxOptions": {"type": "container_t"}}},
        {"name": "e", "securityContext": {"seLinuxOptions": {"type": "bar"}}},
        {"name": "f", "securityContext": {"seLinuxOptions": {"user": "x"}}},
        {"name": "g", "securityContext": {"seLinuxOptions": {"role": "x"}}},
    ]}));
    fails(
        "seLinuxOptions",
        pod,
        "seLinuxOptions",
        r#"pod and containers "e", "f", "g" set forbidden securityContext.seLinuxOptions: types "bar", "foo"; user may not be set; role may not be set"#,
    );
    // container_engine_t is allowed from v1.31.
    let engine =
        spec(json!({"securityContext": {"seLinuxOptions": {"type": "container_engine_t"}}}));
    assert_eq!(check("seLinuxOptions", engine.clone()), None);
    assert_eq!(
        check_at("seLinuxOptions", 30, engine),
        Some((
            "seLinuxOptions".into(),
            r#"pod set forbidden securityContext.seLinuxOptions: type "container_engine_t""#.into()
        ))
    );
}

#[test]
fn proc_mount() {
    let pod = containers_with(&[
        ("a", json!({})),
        ("b", json!({"procMount": "Default"})),
        ("d", json!({"procMount": "Unmasked"})),
        ("e", json!({"procMount": "other"})),
    ]);
    fails(
        "procMount",
        pod.clone(),
        "procMount",
        r#"containers "d", "e" must not set securityContext.procMount to "Unmasked", "other""#,
    );
    // From v1.35 a pod in a user namespace may unmask /proc at baseline.
    let mut userns = pod;
    userns["spec"]["hostUsers"] = json!(false);
    assert!(check_at("procMount", 34, userns.clone()).is_some());
    assert_eq!(check_at("procMount", 35, userns.clone()), None);
    assert!(check_at("procMount_restricted", 35, userns).is_some());
}

#[test]
fn seccomp_baseline() {
    fails(
        "seccompProfile_baseline",
        spec(
            json!({"securityContext": {"seccompProfile": {"type": "Unconfined"}},
            "containers": [
                {"name": "a"},
                {"name": "b", "securityContext": {"seccompProfile": {"type": "RuntimeDefault"}}},
                {"name": "c", "securityContext": {"seccompProfile": {"type": "Unconfined"}}},
                {"name": "d", "securityContext": {"seccompProfile": {"type": "Unconfined"}}},
            ]}),
        ),
        "seccompProfile",
        r#"pod and containers "c", "d" must not set securityContext.seccompProfile.type to "Unconfined""#,
    );
    // Before v1.19 the annotations were checked instead.
    let annotated = json!({"metadata": {"annotations": {
        "seccomp.security.alpha.kubernetes.io/pod": "unconfined",
        "container.seccomp.security.alpha.kubernetes.io/a": "unconfined",
        "container.seccomp.security.alpha.kubernetes.io/b": "unknown",
        "container.seccomp.security.alpha.kubernetes.io/c": "runtime/default",
    }}, "spec": {"containers": [{"name": "a"}, {"name": "b"}, {"name": "c"}]}});
    assert_eq!(
        check_at("seccompProfile_baseline", 18, annotated.clone()),
        Some((
            "seccompProfile".into(),
            r#"forbidden annotations container.seccomp.security.alpha.kubernetes.io/a="unconfined", container.seccomp.security.alpha.kubernetes.io/b="unknown", seccomp.security.alpha.kubernetes.io/pod="unconfined""#.into()
        ))
    );
    assert_eq!(check("seccompProfile_baseline", annotated), None);
}

#[test]
fn seccomp_restricted() {
    fails(
        "seccompProfile_restricted",
        spec(json!({"containers": [{"name": "a"}, {"name": "b"}]})),
        "seccompProfile",
        r#"pod or containers "a", "b" must set securityContext.seccompProfile.type to "RuntimeDefault" or "Localhost""#,
    );
    assert_eq!(
        check(
            "seccompProfile_restricted",
            spec(
                json!({"securityContext": {"seccompProfile": {"type": "RuntimeDefault"}},
                "containers": [{"name": "a"}]})
            )
        ),
        None
    );
    fails(
        "seccompProfile_restricted",
        spec(
            json!({"securityContext": {"seccompProfile": {"type": "Unconfined"}},
            "containers": [{"name": "a"}]}),
        ),
        "seccompProfile",
        r#"pod must not set securityContext.seccompProfile.type to "Unconfined""#,
    );
}

#[test]
fn sysctls_by_version() {
    let pod =
        |name: &str| spec(json!({"securityContext": {"sysctls": [{"name": name, "value": "1"}]}}));
    for (name, since) in [
        ("kernel.shm_rmid_forced", 0),
        ("net.ipv4.ip_local_reserved_ports", 27),
        ("net.ipv4.tcp_keepalive_time", 29),
        ("net.ipv4.tcp_fin_timeout", 29),
        ("net.ipv4.tcp_keepalive_intvl", 29),
        ("net.ipv4.tcp_keepalive_probes", 29),
        ("net.ipv4.tcp_rmem", 32),
        ("net.ipv4.tcp_wmem", 32),
        ("net.ipv4.tcp_notsent_lowat", 37),
    ] {
        assert_eq!(check_at("sysctls", 40, pod(name)), None, "{name}");
        if since > 0 {
            assert_eq!(
                check_at("sysctls", since - 1, pod(name)),
                Some(("forbidden sysctls".into(), name.into())),
                "{name} before v1.{since}"
            );
        }
    }
    fails(
        "sysctls",
        spec(json!({"securityContext": {"sysctls": [
            {"name": "a", "value": "1"}, {"name": "kernel.shm_rmid_forced", "value": "1"}, {"name": "b", "value": "1"}]}})),
        "forbidden sysctls",
        "a, b",
    );
}

#[test]
fn windows_host_process() {
    fails(
        "windowsHostProcess",
        spec(
            json!({"securityContext": {"windowsOptions": {"hostProcess": true}},
            "containers": [
                {"name": "a", "securityContext": {"windowsOptions": {"hostProcess": false}}},
                {"name": "e", "securityContext": {"windowsOptions": {"hostProcess": true}}},
                {"name": "f", "securityContext": {"windowsOptions": {"hostProcess": true}}},
            ]}),
        ),
        "hostProcess",
        r#"pod and containers "e", "f" must not set securityContext.windowsOptions.hostProcess=true"#,
    );
}

#[test]
fn host_probes_from_1_34() {
    let pod = spec(json!({"containers": [
        {"name": "a", "livenessProbe": {"httpGet": {"host": "localhost", "port": 80}},
            "readinessProbe": {"tcpSocket": {"host": "127.0.0.1", "port": 80}},
            "lifecycle": {"preStop": {"httpGet": {"host": "::1", "port": 80}}}},
        {"name": "b", "startupProbe": {"httpGet": {"host": "", "port": 80}}},
    ]}));
    assert_eq!(
        check_at("hostProbesAndHostLifecycle", 34, pod),
        Some((
            "probe or lifecycle host".into(),
            r#"container "a" uses probe or lifecycle hosts "127.0.0.1", "::1", "localhost""#.into()
        ))
    );
    assert!(run_one_missing("hostProbesAndHostLifecycle", 33));
}

fn run_one_missing(id: &str, minor: u32) -> bool {
    let null = Value::Null;
    run_one(
        id,
        minor,
        &Pod {
            meta: &null,
            spec: &null,
        },
    )
    .is_none()
}

#[test]
fn allow_privilege_escalation() {
    let pod = containers_with(&[
        ("a", Value::Null),
        ("b", json!({"allowPrivilegeEscalation": null})),
        ("c", json!({"allowPrivilegeEscalation": true})),
        ("d", json!({"allowPrivilegeEscalation": false})),
    ]);
    fails(
        "allowPrivilegeEscalation",
        pod,
        "allowPrivilegeEscalation != false",
        r#"containers "a", "b", "c" must set securityContext.allowPrivilegeEscalation=false"#,
    );
    let windows = spec(json!({"os": {"name": "windows"}, "containers": [{"name": "a"}]}));
    assert_eq!(check("allowPrivilegeEscalation", windows), None);
    assert!(run_one_missing("allowPrivilegeEscalation", 7));
}

#[test]
fn restricted_volume_types() {
    let mut vols = vec![];
    for (i, k) in [
        "emptyDir",
        "secret",
        "persistentVolumeClaim",
        "downwardAPI",
        "configMap",
        "projected",
        "csi",
        "ephemeral",
        "image",
    ]
    .iter()
    .enumerate()
    {
        vols.push(json!({"name": format!("a{i}"), k.to_string(): {}}));
    }
    vols.push(json!({"name": "b1", "hostPath": {"path": "/"}}));
    vols.push(json!({"name": "b2", "nfs": {"server": "x", "path": "/"}}));
    vols.push(json!({"name": "b3", "hostPath": {"path": "/x"}}));
    vols.push(json!({"name": "c1", "somethingNew": {}}));
    fails(
        "restrictedVolumes",
        spec(json!({ "volumes": vols })),
        "restricted volume types",
        r#"volumes "b1", "b2", "b3", "c1" use restricted volume types "hostPath", "nfs", "unknown""#,
    );
    fails(
        "restrictedVolumes",
        spec(json!({"volumes": [{"name": "g", "gitRepo": {"repository": "r"}}]})),
        "restricted volume types",
        r#"volume "g" uses restricted volume type "gitRepo""#,
    );
}

#[test]
fn run_as_non_root() {
    fails(
        "runAsNonRoot",
        spec(json!({"containers": [{"name": "a"}, {"name": "b"}]})),
        "runAsNonRoot != true",
        r#"pod or containers "a", "b" must set securityContext.runAsNonRoot=true"#,
    );
    fails(
        "runAsNonRoot",
        spec(
            json!({"securityContext": {"runAsNonRoot": true}, "containers": [
                {"name": "a"},
                {"name": "b", "securityContext": {"runAsNonRoot": true}},
                {"name": "c", "securityContext": {"runAsNonRoot": false}},
                {"name": "d", "securityContext": {"runAsNonRoot": false}},
            ]}),
        ),
        "runAsNonRoot != true",
        r#"containers "c", "d" must not set securityContext.runAsNonRoot=false"#,
    );
    // The explicit false wins over the implicit containers.
    fails(
        "runAsNonRoot",
        spec(json!({"securityContext": {"runAsNonRoot": false}, "containers": [{"name": "a"}]})),
        "runAsNonRoot != true",
        "pod must not set securityContext.runAsNonRoot=false",
    );
    let userns = spec(json!({"hostUsers": false, "containers": [{"name": "a"}]}));
    assert!(check_at("runAsNonRoot", 34, userns.clone()).is_some());
    assert_eq!(check_at("runAsNonRoot", 35, userns), None);
}

#[test]
fn run_as_user() {
    fails(
        "runAsUser",
        spec(json!({"securityContext": {"runAsUser": 0}, "containers": [
            {"name": "a", "securityContext": {"runAsUser": 1000}},
            {"name": "c", "securityContext": {"runAsUser": 0}},
            {"name": "d", "securityContext": {"runAsUser": 0}},
        ]})),
        "runAsUser=0",
        r#"pod and containers "c", "d" must not set runAsUser=0"#,
    );
    assert!(run_one_missing("runAsUser", 22));
}

#[test]
fn ephemeral_and_init_containers_are_checked_in_order() {
    fails(
        "privileged",
        spec(json!({
            "containers": [{"name": "c", "securityContext": {"privileged": true}}],
            "initContainers": [{"name": "i", "securityContext": {"privileged": true}}],
            "ephemeralContainers": [{"name": "e", "securityContext": {"privileged": true}}],
        })),
        "privileged",
        r#"containers "i", "c", "e" must not set securityContext.privileged=true"#,
    );
}

fn lv(level: Level, version: Version) -> LevelVersion {
    LevelVersion { level, version }
}

#[test]
fn a_privileged_pod_against_restricted_latest() {
    let pod = json!({"metadata": {"name": "x"}, "spec": {"containers": [
        {"name": "c", "image": "nginx", "securityContext": {"privileged": true}}]}});
    let e = evaluate(
        lv(Level::Restricted, Version::Latest),
        NOW,
        &pod["metadata"],
        &pod["spec"],
    );
    assert_eq!(
        e.forbidden_detail(),
        concat!(
            r#"privileged (container "c" must not set securityContext.privileged=true), "#,
            r#"allowPrivilegeEscalation != false (container "c" must set securityContext.allowPrivilegeEscalation=false), "#,
            r#"unrestricted capabilities (container "c" must set securityContext.capabilities.drop=["ALL"]), "#,
            r#"runAsNonRoot != true (pod or container "c" must set securityContext.runAsNonRoot=true), "#,
            r#"seccompProfile (pod or container "c" must set securityContext.seccompProfile.type to "RuntimeDefault" or "Localhost")"#
        )
    );
    assert_eq!(
        e.forbidden_reason(),
        "privileged, allowPrivilegeEscalation != false, unrestricted capabilities, runAsNonRoot != true, seccompProfile"
    );
    let b = evaluate(
        lv(Level::Baseline, Version::Latest),
        NOW,
        &pod["metadata"],
        &pod["spec"],
    );
    assert_eq!(
        b.forbidden_detail(),
        r#"privileged (container "c" must not set securityContext.privileged=true)"#
    );
    assert!(evaluate(
        LevelVersion::PRIVILEGED,
        NOW,
        &pod["metadata"],
        &pod["spec"]
    )
    .allowed());
}

#[test]
fn restricted_overrides_baseline_checks_by_version() {
    // A hostPath volume and an added capability: restricted reports them through its own
    // checks (which replace the baseline ones) once those exist.
    let pod = json!({"spec": {"volumes": [{"name": "h", "hostPath": {"path": "/"}}],
        "containers": [{"name": "c", "securityContext": {
            "capabilities": {"add": ["SYS_ADMIN"], "drop": ["ALL"]},
            "allowPrivilegeEscalation": false, "runAsNonRoot": true,
            "seccompProfile": {"type": "RuntimeDefault"}}}]}});
    let at = |v| {
        evaluate(
            lv(Level::Restricted, Version::V1(v)),
            NOW,
            &Value::Null,
            &pod["spec"],
        )
        .forbidden_reason()
    };
    assert_eq!(at(33), "unrestricted capabilities, restricted volume types");
    assert_eq!(at(21), "non-default capabilities, restricted volume types");
    // v1.7: no allowPrivilegeEscalation check yet; seccomp from annotations only.
    assert_eq!(at(7), "non-default capabilities, restricted volume types");
}

#[test]
fn a_compliant_pod_passes_restricted() {
    let pod = json!({"spec": {
        "securityContext": {"runAsNonRoot": true, "seccompProfile": {"type": "RuntimeDefault"}},
        "volumes": [{"name": "t", "projected": {"sources": []}}, {"name": "d", "emptyDir": {}}],
        "containers": [{"name": "c", "image": "nginx", "ports": [{"containerPort": 8080}],
            "securityContext": {"allowPrivilegeEscalation": false,
                "capabilities": {"drop": ["ALL"], "add": ["NET_BIND_SERVICE"]}}}]}});
    for v in [
        Version::Latest,
        Version::V1(0),
        Version::V1(25),
        Version::V1(99),
    ] {
        let e = evaluate(lv(Level::Restricted, v), NOW, &Value::Null, &pod["spec"]);
        assert!(e.allowed(), "{v}: {}", e.forbidden_detail());
    }
}

fn labels(v: Value) -> serde_json::Map<String, Value> {
    v.as_object().cloned().unwrap_or_default()
}

#[test]
fn policy_from_labels() {
    let (p, errs) = Policy::from_labels(None);
    assert_eq!(p, Policy::default());
    assert!(p.fully_privileged());
    assert!(errs.is_empty());

    // Enforce stricter than warn: warn follows enforce (level and version).
    let l = labels(json!({"pod-security.kubernetes.io/enforce": "baseline",
        "pod-security.kubernetes.io/enforce-version": "v1.25"}));
    let (p, errs) = Policy::from_labels(Some(&l));
    assert!(errs.is_empty());
    assert_eq!(p.enforce.to_string(), "baseline:v1.25");
    assert_eq!(p.warn.to_string(), "baseline:v1.25");
    assert_eq!(p.audit.to_string(), "privileged:latest");

    // An explicit warn label is kept.
    let l = labels(json!({"pod-security.kubernetes.io/enforce": "baseline",
        "pod-security.kubernetes.io/warn": "restricted"}));
    let (p, _) = Policy::from_labels(Some(&l));
    assert_eq!(p.warn.to_string(), "restricted:latest");
    let l = labels(json!({"pod-security.kubernetes.io/enforce": "restricted",
        "pod-security.kubernetes.io/warn": "privileged"}));
    assert_eq!(
        Policy::from_labels(Some(&l)).0.warn.to_string(),
        "privileged:latest"
    );
}

#[test]
fn invalid_labels_fail_closed_for_enforce_and_open_for_warn_and_audit() {
    let l = labels(json!({
        "pod-security.kubernetes.io/warn": "bogus",
        "pod-security.kubernetes.io/enforce": "strict",
        "pod-security.kubernetes.io/audit": "x",
        "pod-security.kubernetes.io/enforce-version": "v1.05",
        "pod-security.kubernetes.io/warn-version": "1.20",
    }));
    let (p, errs) = Policy::from_labels(Some(&l));
    assert_eq!(p.enforce.to_string(), "restricted:latest");
    assert_eq!(p.audit.to_string(), "privileged:latest");
    assert_eq!(p.warn.to_string(), "privileged:latest");
    let rendered: Vec<String> = errs
        .iter()
        .map(|e| format!("{}: {:?}: {}", e.field(), e.value, e.message))
        .collect();
    assert_eq!(
        rendered,
        vec![
            r#"metadata.labels[pod-security.kubernetes.io/enforce]: "strict": must be one of privileged, baseline, restricted"#,
            r#"metadata.labels[pod-security.kubernetes.io/enforce-version]: "v1.05": must be "latest" or "v1.x""#,
            r#"metadata.labels[pod-security.kubernetes.io/audit]: "x": must be one of privileged, baseline, restricted"#,
            r#"metadata.labels[pod-security.kubernetes.io/warn]: "bogus": must be one of privileged, baseline, restricted"#,
            r#"metadata.labels[pod-security.kubernetes.io/warn-version]: "1.20": must be "latest" or "v1.x""#,
        ]
    );
}

#[test]
fn versions_parse_like_upstream() {
    assert_eq!(Version::parse("latest"), Some(Version::Latest));
    assert_eq!(Version::parse("v1.0"), Some(Version::V1(0)));
    assert_eq!(Version::parse("v1.33"), Some(Version::V1(33)));
    for bad in [
        "", "v1.", "v1.01", "v2.1", "1.2", "v1.2.3", "v1.-1", "Latest", "v1.+2",
    ] {
        assert_eq!(Version::parse(bad), None, "{bad}");
    }
    assert_eq!(Version::V1(7).to_string(), "v1.7");
}

#[test]
fn significant_updates() {
    let pod = json!({"spec": {"containers": [{"name": "c", "image": "a"}],
        "initContainers": [{"name": "i", "image": "b"}]}});
    let mut relabeled = pod.clone();
    relabeled["metadata"] = json!({"labels": {"x": "y"}});
    relabeled["spec"]["containers"][0]["securityContext"] = json!({"privileged": true});
    // Only images and container counts matter (other spec fields are immutable upstream).
    assert!(!significant_pod_update(&relabeled, &pod));
    let mut image = pod.clone();
    image["spec"]["containers"][0]["image"] = json!("z");
    assert!(significant_pod_update(&image, &pod));
    let mut eph = pod.clone();
    eph["spec"]["ephemeralContainers"] = json!([{"name": "dbg", "image": "busybox"}]);
    assert!(significant_pod_update(&eph, &pod));
    assert!(!significant_pod_update(&eph, &eph.clone()));
}

#[test]
fn pod_templates_by_kind() {
    let d = json!({"spec": {"template": {"metadata": {"labels": {"a": "b"}}, "spec": {"hostPID": true}}}});
    let (m, s) = pod_template("apps", "Deployment", &d).unwrap();
    assert_eq!(m["labels"]["a"], "b");
    assert_eq!(s["hostPID"], true);
    let cj = json!({"spec": {"jobTemplate": {"spec": {"template": {"spec": {"hostIPC": true}}}}}});
    assert_eq!(
        pod_template("batch", "CronJob", &cj).unwrap().1["hostIPC"],
        true
    );
    assert!(pod_template("", "ReplicationController", &json!({"spec": {}})).is_none());
    assert!(pod_template("", "ConfigMap", &json!({})).is_none());
    assert!(has_pod_spec("apps", "StatefulSet"));
    assert!(!has_pod_spec("", "Service"));
}
