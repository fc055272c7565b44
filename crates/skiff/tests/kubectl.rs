//! The API server driven by the real kubectl (gcloud's dispatcher and the bundled 1.31–1.33),
//! over HTTPS with the generated kubeconfig's token. No root needed: no node agent runs here.

mod common;

use std::io::{BufRead, BufReader};
use std::process::Stdio;
use std::time::{Duration, Instant};

use common::cluster::Cluster;

fn jsonpath(c: &Cluster, kind_name: &str, path: &str) -> String {
    c.ok(&["get", kind_name, "-o", &format!("jsonpath={path}")])
}

#[test]
fn version_discovery_and_namespaces() {
    let c = Cluster::start();
    let version = c.ok(&["version"]);
    assert!(version.contains("Server Version: v1.33"), "{version}");
    let resources = c.ok(&["api-resources"]);
    for line in [
        "deployments",
        "replicasets",
        "pods",
        "services",
        "configmaps",
        "endpointslices",
        "leases",
    ] {
        assert!(
            resources.contains(line),
            "api-resources lacks {line}:\n{resources}"
        );
    }
    let deploy_line = resources
        .lines()
        .find(|l| l.starts_with("deployments "))
        .unwrap_or_default();
    for field in ["deploy", "apps/v1", "true", "Deployment"] {
        assert!(deploy_line.contains(field), "{deploy_line}");
    }
    let ns = c.ok(&["get", "namespaces"]);
    for name in ["default", "kube-system", "kube-public", "kube-node-lease"] {
        assert!(ns.contains(name), "{ns}");
    }
    assert!(ns.contains("Active"), "{ns}");
}

#[test]
fn apply_creates_then_updates() {
    let c = Cluster::start();
    let web = Cluster::manifest("web.yaml");
    assert!(c
        .ok(&["apply", "-f", &web])
        .contains("deployment.apps/web created"));
    assert!(c
        .ok(&["apply", "-f", &web])
        .contains("deployment.apps/web unchanged"));
    let v2 = Cluster::manifest("web-v2.yaml");
    assert!(c
        .ok(&["apply", "-f", &v2])
        .contains("deployment.apps/web configured"));
    assert_eq!(jsonpath(&c, "deployment/web", "{.spec.replicas}"), "4");
    assert_eq!(
        jsonpath(
            &c,
            "deployment/web",
            "{.spec.template.spec.containers[0].image}"
        ),
        "web:v2"
    );
    // Defaulting happened server-side.
    assert_eq!(
        jsonpath(
            &c,
            "deployment/web",
            "{.spec.strategy.rollingUpdate.maxSurge}"
        ),
        "25%"
    );
    assert_eq!(
        jsonpath(&c, "deployment/web", "{.metadata.generation}"),
        "2"
    );

    let wide = c.ok(&["get", "deploy", "-o", "wide"]);
    for column in [
        "NAME",
        "READY",
        "UP-TO-DATE",
        "AVAILABLE",
        "AGE",
        "CONTAINERS",
        "IMAGES",
        "SELECTOR",
    ] {
        assert!(wide.contains(column), "{wide}");
    }
    assert!(
        wide.contains("web:v2") && wide.contains("app=web"),
        "{wide}"
    );
    assert_eq!(
        c.ok(&["get", "deploy", "-l", "app=web", "-o", "name"])
            .trim(),
        "deployment.apps/web"
    );
    assert_eq!(
        c.ok(&["get", "deploy", "-l", "app!=web", "-o", "name"])
            .trim(),
        ""
    );
    let all = c.ok(&["get", "deploy", "-A"]);
    assert!(
        all.contains("NAMESPACE") && all.contains("default") && all.contains("web"),
        "{all}"
    );
    let json: serde_json::Value =
        serde_json::from_str(&c.ok(&["get", "deploy", "web", "-o", "json"])).expect("json");
    assert_eq!(json["kind"], "Deployment");
    assert!(
        json["metadata"]["uid"]
            .as_str()
            .is_some_and(|u| u.len() == 36),
        "{json}"
    );
    let yaml = c.ok(&["get", "deploy", "web", "-o", "yaml"]);
    assert!(
        yaml.contains("resourceVersion:") && yaml.contains("creationTimestamp:"),
        "{yaml}"
    );
    let described = c.ok(&["describe", "deployment", "web"]);
    for needle in [
        "Name:",
        "web",
        "Replicas:",
        "StrategyType:",
        "RollingUpdate",
        "web:v2",
    ] {
        assert!(
            described.contains(needle),
            "describe lacks {needle}:\n{described}"
        );
    }
}

#[test]
fn server_side_apply_records_the_manager() {
    let c = Cluster::start();
    let out = c.ok(&[
        "apply",
        "--server-side",
        "-f",
        &Cluster::manifest("settings.yaml"),
    ]);
    assert!(
        out.contains("configmap/settings serverside-applied"),
        "{out}"
    );
    let out = c.ok(&[
        "apply",
        "--server-side",
        "-f",
        &Cluster::manifest("settings-v2.yaml"),
    ]);
    assert!(
        out.contains("configmap/settings serverside-applied"),
        "{out}"
    );
    assert_eq!(jsonpath(&c, "configmap/settings", "{.data.size}"), "large");
    let managers = c.ok(&[
        "get",
        "configmap/settings",
        "--show-managed-fields",
        "-o",
        "jsonpath={.metadata.managedFields[*].manager}/{.metadata.managedFields[*].operation}",
    ]);
    assert!(
        managers.contains("kubectl") && managers.contains("Apply"),
        "{managers}"
    );
    // Another manager changing an applied field conflicts with the applier.
    c.ok(&[
        "patch",
        "configmap",
        "settings",
        "--type=merge",
        "-p",
        r#"{"data":{"color":"red"}}"#,
    ]);
    let err = c.fails(&[
        "apply",
        "--server-side",
        "-f",
        &Cluster::manifest("settings-v2.yaml"),
    ]);
    assert!(err.contains("conflict"), "{err}");
    let out = c.ok(&[
        "apply",
        "--server-side",
        "--force-conflicts",
        "-f",
        &Cluster::manifest("settings-v2.yaml"),
    ]);
    assert!(out.contains("serverside-applied"), "{out}");
    assert_eq!(jsonpath(&c, "configmap/settings", "{.data.color}"), "green");
}

#[test]
fn create_generators_in_every_kubectl_version() {
    // 1.31 sends JSON; 1.32 and 1.33 send Kubernetes protobuf for typed creates.
    let c = Cluster::start();
    for (version, name) in [("1.31", "p131"), ("1.32", "p132"), ("1.33", "p133")] {
        let (code, out, err) = c.kubectl_version(
            version,
            &[
                "create",
                "deployment",
                name,
                "--image=web:v1",
                "--replicas=2",
                "--port=80",
            ],
        );
        assert_eq!(code, 0, "kubectl {version}: {out} {err}");
        assert!(
            out.contains(&format!("deployment.apps/{name} created")),
            "{out}"
        );
        assert_eq!(
            jsonpath(&c, &format!("deployment/{name}"), "{.spec.replicas}"),
            "2"
        );
        assert_eq!(
            jsonpath(
                &c,
                &format!("deployment/{name}"),
                "{.spec.template.spec.containers[0].ports[0].containerPort}"
            ),
            "80"
        );
        // Go's zero values in protobuf must not defeat defaulting.
        assert_eq!(
            jsonpath(
                &c,
                &format!("deployment/{name}"),
                "{.spec.template.spec.containers[0].imagePullPolicy}"
            ),
            "IfNotPresent"
        );
    }
    assert!(c
        .ok(&["create", "namespace", "team-a"])
        .contains("namespace/team-a created"));
    let out = c.ok(&[
        "create",
        "configmap",
        "cfg",
        "--from-literal=a=b",
        "-n",
        "team-a",
    ]);
    assert!(out.contains("configmap/cfg created"), "{out}");
    assert_eq!(
        c.ok(&[
            "get",
            "configmap/cfg",
            "-n",
            "team-a",
            "-o",
            "jsonpath={.data.a}"
        ]),
        "b"
    );
    let err = c.fails(&[
        "create",
        "configmap",
        "cfg",
        "--from-literal=a=b",
        "-n",
        "team-a",
    ]);
    assert!(err.contains("already exists"), "{err}");
}

#[test]
fn scale_label_annotate_set_image_and_edit() {
    let c = Cluster::start();
    c.ok(&["apply", "-f", &Cluster::manifest("web.yaml")]);
    assert!(c
        .ok(&["scale", "deployment", "web", "--replicas=9"])
        .contains("deployment.apps/web scaled"));
    assert_eq!(jsonpath(&c, "deployment/web", "{.spec.replicas}"), "9");
    // --current-replicas goes through GET + PUT of the scale subresource (no Content-Type).
    c.ok(&[
        "scale",
        "deployment",
        "web",
        "--current-replicas=9",
        "--replicas=4",
    ]);
    assert_eq!(jsonpath(&c, "deployment/web", "{.spec.replicas}"), "4");
    let err = c.fails(&[
        "scale",
        "deployment",
        "web",
        "--current-replicas=7",
        "--replicas=2",
    ]);
    assert!(err.contains("Expected replicas to be 7, was 4"), "{err}");

    assert!(c
        .ok(&["label", "deployment", "web", "tier=frontend"])
        .contains("labeled"));
    assert_eq!(
        jsonpath(&c, "deployment/web", "{.metadata.labels.tier}"),
        "frontend"
    );
    let err = c.fails(&["label", "deployment", "web", "tier=backend"]);
    assert!(err.contains("already has a value"), "{err}");
    c.ok(&["label", "deployment", "web", "tier-"]);
    assert_eq!(
        jsonpath(&c, "deployment/web", "{.metadata.labels.tier}"),
        ""
    );
    assert!(c
        .ok(&["annotate", "deployment", "web", "note=hello"])
        .contains("annotated"));
    assert_eq!(
        jsonpath(&c, "deployment/web", "{.metadata.annotations.note}"),
        "hello"
    );

    let out = c.ok(&["set", "image", "deployment/web", "web=web:v2"]);
    assert!(out.contains("deployment.apps/web image updated"), "{out}");
    assert_eq!(
        jsonpath(
            &c,
            "deployment/web",
            "{.spec.template.spec.containers[0].image}"
        ),
        "web:v2"
    );

    // kubectl edit through a scripted editor.
    let editor = c.dir.path().join("editor.sh");
    std::fs::write(
        &editor,
        "#!/bin/sh\nsed -i 's/replicas: 4/replicas: 6/' \"$1\"\n",
    )
    .expect("editor");
    let status = std::process::Command::new("chmod")
        .arg("+x")
        .arg(&editor)
        .status()
        .expect("chmod");
    assert!(status.success());
    let mut cmd = c.kubectl_command("kubectl", &["edit", "deployment", "web"]);
    cmd.env("KUBE_EDITOR", &editor);
    let out = cmd.output().expect("kubectl edit");
    assert!(
        out.status.success(),
        "edit: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("edited"));
    assert_eq!(jsonpath(&c, "deployment/web", "{.spec.replicas}"), "6");
}

#[test]
fn watch_streams_changes() {
    let c = Cluster::start();
    let mut child = c
        .kubectl_command(
            "kubectl",
            &["get", "configmaps", "-w", "--output-watch-events"],
        )
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("kubectl get -w");
    let stdout = child.stdout.take().expect("stdout");
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    // Give the watch time to start, then make changes.
    std::thread::sleep(Duration::from_millis(1500));
    c.ok(&["create", "configmap", "watched", "--from-literal=k=v"]);
    c.ok(&["label", "configmap", "watched", "x=y"]);
    c.ok(&["delete", "configmap", "watched"]);
    let mut seen = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(15);
    while Instant::now() < deadline && !seen.iter().any(|l: &String| l.starts_with("DELETED")) {
        if let Ok(line) = rx.recv_timeout(Duration::from_millis(200)) {
            seen.push(line);
        }
    }
    let _ = child.kill();
    let _ = child.wait();
    // Table rows: EVENT NAME DATA AGE.
    let watched: Vec<&String> = seen.iter().filter(|l| l.contains(" watched ")).collect();
    let kinds: Vec<&str> = watched
        .iter()
        .filter_map(|l| l.split_whitespace().next())
        .collect();
    assert_eq!(kinds, ["ADDED", "MODIFIED", "DELETED"], "{seen:?}");
}

#[test]
fn delete_waits_until_gone() {
    let c = Cluster::start();
    c.ok(&["apply", "-f", &Cluster::manifest("web.yaml")]);
    let out = c.ok(&["delete", "deployment", "web"]);
    assert!(out.contains("deployment.apps \"web\" deleted"), "{out}");
    let err = c.fails(&["get", "deployment", "web"]);
    assert!(
        err.contains("Error from server (NotFound): deployments.apps \"web\" not found"),
        "{err}"
    );
}

#[test]
fn bad_input_gets_statuses_kubectl_prints_well() {
    let c = Cluster::start();
    let err = c.fails(&["get", "deployment", "nope"]);
    assert!(
        err.contains("Error from server (NotFound): deployments.apps \"nope\" not found"),
        "{err}"
    );
    let err = c.fails(&["apply", "-f", &Cluster::manifest("typo.yaml")]);
    assert!(err.contains("unknown field \"spec.replicaz\""), "{err}");
    let err = c.fails(&["apply", "-f", &Cluster::manifest("no-selector.yaml")]);
    assert!(
        err.contains("is invalid") && err.contains("spec.selector: Required value"),
        "{err}"
    );
    assert!(c
        .fails(&["get", "deployment", "noselector"])
        .contains("NotFound"));

    // A wrong token is refused (the admin kubeconfig's client certificate swapped for it).
    let config = std::fs::read_to_string(c.kubeconfig()).expect("kubeconfig");
    let bad: String = config
        .lines()
        .map(|l| {
            if l.trim_start().starts_with("client-certificate-data:") {
                "    token: not-the-token".to_string()
            } else {
                l.to_string()
            }
        })
        .filter(|l| !l.trim_start().starts_with("client-key-data:"))
        .map(|l| l + "\n")
        .collect();
    assert!(bad.contains("token: not-the-token"), "{bad}");
    let bad_path = c.dir.path().join("bad-kubeconfig.yaml");
    std::fs::write(&bad_path, bad).expect("write");
    let mut cmd = c.kubectl_command("kubectl", &["get", "pods"]);
    cmd.env("KUBECONFIG", &bad_path);
    let out = cmd.output().expect("kubectl");
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("Unauthorized") || err.contains("provide credentials"),
        "{err}"
    );
}

#[test]
fn state_survives_kill_9() {
    let mut c = Cluster::start();
    c.ok(&["create", "configmap", "durable", "--from-literal=k=v"]);
    let rv_before = jsonpath(&c, "configmap/durable", "{.metadata.resourceVersion}");
    c.crash_and_restart();
    assert_eq!(jsonpath(&c, "configmap/durable", "{.data.k}"), "v");
    c.ok(&["label", "configmap", "durable", "after=restart"]);
    let rv_after = jsonpath(&c, "configmap/durable", "{.metadata.resourceVersion}");
    let (a, b): (i64, i64) = (
        rv_before.parse().expect("rv"),
        rv_after.parse().expect("rv"),
    );
    assert!(
        b > a,
        "resourceVersion must keep growing across restarts: {a} -> {b}"
    );
}

#[test]
fn python_kubernetes_client_lists_creates_and_watches() {
    let c = Cluster::start();
    let script = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/python_client.py");
    let out = std::process::Command::new("python3")
        .arg(&script)
        .arg(c.kubeconfig())
        .output()
        .expect("python3");
    assert!(
        out.status.success(),
        "python client failed (CI installs it with pip install kubernetes):\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("python client ok"));
}

#[test]
fn more_of_the_acceptance_list() {
    let c = Cluster::start();
    let info = c.ok(&["cluster-info"]);
    assert!(
        info.contains(&format!("https://127.0.0.1:{}", c.port)),
        "{info}"
    );
    c.ok(&["apply", "-f", &Cluster::manifest("web.yaml")]);
    let out = c.ok(&[
        "expose",
        "deployment",
        "web",
        "--type=NodePort",
        "--port=80",
    ]);
    assert!(out.contains("service/web exposed"), "{out}");
    assert_eq!(jsonpath(&c, "service/web", "{.spec.selector.app}"), "web");
    assert_eq!(
        jsonpath(&c, "service/web", "{.spec.ports[0].targetPort}"),
        "80"
    );
    let svc = c.ok(&["describe", "svc", "web"]);
    assert!(svc.contains("NodePort") && svc.contains("app=web"), "{svc}");
    let all = c.ok(&["get", "all"]);
    assert!(
        all.contains("deployment.apps/web") && all.contains("service/web"),
        "{all}"
    );
    let labels = c.ok(&["get", "deploy", "--show-labels"]);
    assert!(
        labels.contains("LABELS") && labels.contains("app=web"),
        "{labels}"
    );
    c.ok(&["create", "configmap", "b-second"]);
    c.ok(&["create", "configmap", "a-first"]);
    let sorted = c.ok(&[
        "get",
        "configmaps",
        "--sort-by=.metadata.name",
        "-o",
        "name",
    ]);
    let names: Vec<&str> = sorted.lines().collect();
    let a = names.iter().position(|n| *n == "configmap/a-first");
    let b = names.iter().position(|n| *n == "configmap/b-second");
    assert!(a.is_some() && a < b, "{sorted}");

    // `get -w` shows a scale as it happens.
    let mut child = c
        .kubectl_command(
            "kubectl",
            &[
                "get",
                "deploy",
                "web",
                "-w",
                "-o",
                "jsonpath={.spec.replicas}{\"\\n\"}",
            ],
        )
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("kubectl get -w");
    let stdout = child.stdout.take().expect("stdout");
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    assert_eq!(
        rx.recv_timeout(Duration::from_secs(10)).ok().as_deref(),
        Some("3")
    );
    c.ok(&["scale", "deployment", "web", "--replicas=7"]);
    assert_eq!(
        rx.recv_timeout(Duration::from_secs(10)).ok().as_deref(),
        Some("7")
    );
    let _ = child.kill();
    let _ = child.wait();

    // delete -f, and wait --for=delete.
    let out = c.ok(&["delete", "-f", &Cluster::manifest("web.yaml")]);
    assert!(out.contains("deployment.apps \"web\" deleted"), "{out}");
    c.ok(&["create", "namespace", "doomed"]);
    c.ok(&["create", "configmap", "inside", "-n", "doomed"]);
    let out = c.ok(&["delete", "namespace", "doomed"]);
    assert!(out.contains("namespace \"doomed\" deleted"), "{out}");
    c.ok(&["wait", "--for=delete", "namespace/doomed", "--timeout=20s"]);
    assert!(c
        .fails(&["get", "namespace", "doomed"])
        .contains("NotFound"));
}

/// batch/v1 Jobs through kubectl: typed create (JSON from 1.31, protobuf from 1.32), the server's
/// generated selector, the Job table, strict `apply -f`, immutability and delete. No node agent:
/// the Job controller's pods stay Pending, nothing runs.
#[test]
fn jobs_create_get_apply_and_delete() {
    let c = Cluster::start_with("100.64.45.0/24".into(), &["--no-agent"]);
    for (version, name) in [
        ("1.31", "hello131"),
        ("1.32", "hello132"),
        ("1.33", "hello133"),
    ] {
        let (code, out, err) = c.kubectl_version(
            version,
            &["create", "job", name, "--image=busybox", "--", "echo", "hi"],
        );
        assert_eq!(code, 0, "kubectl {version}: {out} {err}");
        assert!(out.contains(&format!("job.batch/{name} created")), "{out}");
        let job = format!("job/{name}");
        let uid = jsonpath(&c, &job, "{.metadata.uid}");
        assert!(!uid.is_empty());
        assert_eq!(
            jsonpath(
                &c,
                &job,
                "{.spec.selector.matchLabels.batch\\.kubernetes\\.io/controller-uid}"
            ),
            uid
        );
        assert_eq!(
            jsonpath(&c, &job, "{.spec.template.metadata.labels.job-name}"),
            name
        );
        assert_eq!(
            jsonpath(&c, &job, "{.spec.template.spec.containers[0].command}"),
            "[\"echo\",\"hi\"]"
        );
    }
    let yaml = c.ok(&["get", "job", "hello133", "-o", "yaml"]);
    for line in [
        "apiVersion: batch/v1",
        "kind: Job",
        "backoffLimit: 6",
        "completionMode: NonIndexed",
        "completions: 1",
        "parallelism: 1",
        "manualSelector: false",
        "suspend: false",
        "podReplacementPolicy: TerminatingOrFailed",
        "restartPolicy: Never",
        "batch.kubernetes.io/controller-uid: ",
        "batch.kubernetes.io/job-name: hello133",
        "controller-uid: ",
        "job-name: hello133",
    ] {
        assert!(yaml.contains(line), "{line:?} not in\n{yaml}");
    }

    let table = c.ok(&["get", "jobs"]);
    let header: Vec<&str> = table
        .lines()
        .next()
        .unwrap_or_default()
        .split_whitespace()
        .collect();
    assert_eq!(
        header,
        ["NAME", "STATUS", "COMPLETIONS", "DURATION", "AGE"],
        "{table}"
    );
    let row: Vec<&str> = table
        .lines()
        .find(|l| l.starts_with("hello131 "))
        .unwrap_or_default()
        .split_whitespace()
        .collect();
    assert_eq!(row.get(1..3), Some(&["Running", "0/1"][..]), "{table}");
    let wide = c.ok(&["get", "jobs", "-o", "wide"]);
    for part in [
        "CONTAINERS",
        "IMAGES",
        "SELECTOR",
        "busybox",
        "batch.kubernetes.io/controller-uid=",
    ] {
        assert!(wide.contains(part), "{wide}");
    }
    assert!(c.ok(&["get", "all"]).contains("job.batch/hello131"));
    let resources = c.ok(&["api-resources", "--api-group=batch"]);
    assert!(
        resources.lines().any(|l| l.starts_with("jobs ")
            && l.contains("batch/v1")
            && l.contains("true")
            && l.contains("Job")),
        "{resources}"
    );

    // apply -f with strict validation: create, no-op, typo, invalid, immutable template.
    let manifest = Cluster::manifest("job.yaml");
    assert!(c
        .ok(&["apply", "-f", &manifest])
        .contains("job.batch/pi created"));
    assert!(c
        .ok(&["apply", "-f", &manifest])
        .contains("job.batch/pi unchanged"));
    assert_eq!(jsonpath(&c, "job/pi", "{.spec.backoffLimit}"), "2");
    assert_eq!(
        jsonpath(&c, "job/pi", "{.spec.template.metadata.labels.app}"),
        "pi"
    );
    let text = std::fs::read_to_string(&manifest).expect("manifest");
    let write = |name: &str, body: String| {
        let path = c.dir.path().join(name);
        std::fs::write(&path, body).expect("write manifest");
        path.to_string_lossy().into_owned()
    };
    let typo = write(
        "typo-job.yaml",
        text.replace("name: pi\n", "name: typo\n")
            .replace("backoffLimit:", "backofLimit:"),
    );
    let err = c.fails(&["apply", "-f", &typo]);
    assert!(err.contains("unknown field \"spec.backofLimit\""), "{err}");
    let always = write(
        "always-job.yaml",
        text.replace("name: pi\n", "name: always\n")
            .replace("restartPolicy: Never", "restartPolicy: Always"),
    );
    let err = c.fails(&["apply", "-f", &always]);
    assert!(
        err.contains("is invalid")
            && err.contains(
                "spec.template.spec.restartPolicy: Required value: valid values: \"OnFailure\", \"Never\""
            ),
        "{err}"
    );
    assert!(c.fails(&["get", "job", "always"]).contains("NotFound"));
    let changed = write("pi-v2.yaml", text.replace("perl:5.34", "perl:5.36"));
    let err = c.fails(&["apply", "-f", &changed]);
    assert!(
        err.contains("spec.template: Invalid value") && err.contains("field is immutable"),
        "{err}"
    );
    let out = c.ok(&["label", "job", "pi", "tier=batch"]);
    assert!(out.contains("job.batch/pi labeled"), "{out}");

    // kubectl delete sends propagationPolicy=Background: the Job goes at once.
    let out = c.ok(&["delete", "job", "hello131"]);
    assert!(out.contains("job.batch \"hello131\" deleted"), "{out}");
    assert!(c.fails(&["get", "job", "hello131"]).contains("NotFound"));
    let out = c.ok(&["delete", "-f", &manifest]);
    assert!(out.contains("job.batch \"pi\" deleted"), "{out}");
}

/// apps/v1 DaemonSets through kubectl: strict `apply -f` (1.31–1.33), the DaemonSet table,
/// `set image` and `rollout restart` (strategic patches bumping the generations), `rollout
/// status` against the status the DaemonSet controller writes, `get all`, immutability and
/// delete. No node agent and no nodes: the controller schedules nothing, nothing runs.
#[test]
fn daemonsets_apply_get_update_and_delete() {
    let c = Cluster::start_with("100.64.46.0/24".into(), &["--no-agent"]);
    let manifest = Cluster::manifest("daemonset.yaml");
    let text = std::fs::read_to_string(&manifest).expect("manifest");
    let write = |name: &str, body: String| {
        let path = c.dir.path().join(name);
        std::fs::write(&path, body).expect("write manifest");
        path.to_string_lossy().into_owned()
    };
    assert!(c
        .ok(&["apply", "-f", &manifest])
        .contains("daemonset.apps/node-agent created"));
    assert!(c
        .ok(&["apply", "-f", &manifest])
        .contains("daemonset.apps/node-agent unchanged"));
    for version in ["1.31", "1.32"] {
        let name = format!("agent{}", version.replace('.', ""));
        let path = write(&format!("{name}.yaml"), text.replace("node-agent", &name));
        let (code, out, err) = c.kubectl_version(version, &["apply", "-f", &path]);
        assert_eq!(code, 0, "kubectl {version}: {out} {err}");
        assert!(
            out.contains(&format!("daemonset.apps/{name} created")),
            "{out}"
        );
    }
    // Server-side apply of the same manifest: a no-op for the generations.
    let agent131 = c.dir.path().join("agent131.yaml");
    let agent131 = agent131.to_string_lossy();
    for _ in 0..2 {
        let out = c.ok(&["apply", "--server-side", "-f", &agent131]);
        assert!(
            out.contains("daemonset.apps/agent131 serverside-applied"),
            "{out}"
        );
    }
    assert_eq!(jsonpath(&c, "ds/agent131", "{.metadata.generation}"), "1");
    assert_eq!(
        jsonpath(
            &c,
            "ds/agent131",
            "{.metadata.annotations.deprecated\\.daemonset\\.template\\.generation}"
        ),
        "1"
    );
    // Server-side defaults and the template generation annotation.
    let ds = "ds/node-agent";
    assert_eq!(
        jsonpath(&c, ds, "{.spec.updateStrategy.rollingUpdate.maxSurge}"),
        "0"
    );
    assert_eq!(jsonpath(&c, ds, "{.spec.revisionHistoryLimit}"), "10");
    assert_eq!(
        jsonpath(&c, ds, "{.spec.template.spec.restartPolicy}"),
        "Always"
    );
    assert_eq!(jsonpath(&c, ds, "{.metadata.generation}"), "1");
    let yaml = c.ok(&["get", ds, "-o", "yaml"]);
    assert!(
        yaml.contains("deprecated.daemonset.template.generation: \"1\""),
        "{yaml}"
    );

    // The table, as upstream prints it.
    let table = c.ok(&["get", "ds"]);
    let header: Vec<&str> = table
        .lines()
        .next()
        .unwrap_or_default()
        .split_whitespace()
        .collect();
    assert_eq!(
        header,
        [
            "NAME",
            "DESIRED",
            "CURRENT",
            "READY",
            "UP-TO-DATE",
            "AVAILABLE",
            "NODE",
            "SELECTOR",
            "AGE"
        ],
        "{table}"
    );
    let row: Vec<&str> = table
        .lines()
        .find(|l| l.starts_with("node-agent "))
        .unwrap_or_default()
        .split_whitespace()
        .collect();
    assert_eq!(
        row.get(1..7),
        Some(&["0", "0", "0", "0", "0", "kubernetes.io/os=linux"][..]),
        "{table}"
    );
    let wide = c.ok(&["get", "daemonsets", "-o", "wide"]);
    for part in [
        "CONTAINERS",
        "IMAGES",
        "SELECTOR",
        "agent,logs",
        "busybox:1.36,busybox:1.36",
        "app=node-agent",
    ] {
        assert!(wide.contains(part), "{wide}");
    }
    let all = c.ok(&["get", "all"]);
    assert!(all.contains("daemonset.apps/node-agent"), "{all}");
    let resources = c.ok(&["api-resources", "--api-group=apps"]);
    assert!(
        resources.lines().any(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            f == ["daemonsets", "ds", "apps/v1", "true", "DaemonSet"]
        }),
        "{resources}"
    );
    let described = c.ok(&["describe", "ds", "node-agent"]);
    for needle in [
        "Selector:",
        "app=node-agent",
        "Node-Selector:",
        "kubernetes.io/os=linux",
        "Desired Number of Nodes Scheduled: 0",
        "busybox:1.36",
    ] {
        assert!(described.contains(needle), "{needle:?} not in\n{described}");
    }

    // set image and rollout restart: template changes bump both generations.
    let out = c.ok(&["set", "image", ds, "agent=busybox:1.37"]);
    assert!(
        out.contains("daemonset.apps/node-agent image updated"),
        "{out}"
    );
    assert_eq!(
        jsonpath(&c, ds, "{.spec.template.spec.containers[*].image}"),
        "busybox:1.37 busybox:1.36"
    );
    assert_eq!(jsonpath(&c, ds, "{.metadata.generation}"), "2");
    let out = c.ok(&["rollout", "restart", ds]);
    assert!(out.contains("daemonset.apps/node-agent restarted"), "{out}");
    assert!(!jsonpath(
        &c,
        ds,
        "{.spec.template.metadata.annotations.kubectl\\.kubernetes\\.io/restartedAt}"
    )
    .is_empty());
    assert_eq!(jsonpath(&c, ds, "{.metadata.generation}"), "3");
    assert_eq!(
        jsonpath(
            &c,
            ds,
            "{.metadata.annotations.deprecated\\.daemonset\\.template\\.generation}"
        ),
        "3"
    );
    // The controller observes generation 3 (no nodes: 0 desired), so the rollout is done.
    let out = c.ok(&["rollout", "status", ds, "--timeout=60s"]);
    assert!(
        out.contains("daemon set \"node-agent\" successfully rolled out"),
        "{out}"
    );
    assert_eq!(jsonpath(&c, ds, "{.status.observedGeneration}"), "3");
    // apply after the imperative changes: the manifest's image comes back.
    assert!(c
        .ok(&["apply", "-f", &manifest])
        .contains("daemonset.apps/node-agent configured"));
    assert_eq!(
        jsonpath(&c, ds, "{.spec.template.spec.containers[0].image}"),
        "busybox:1.36"
    );

    // Strict validation, upstream validation, immutability.
    let typo = write(
        "typo-ds.yaml",
        text.replace("name: node-agent\n", "name: typo\n")
            .replace("maxUnavailable:", "maxUnavailabel:"),
    );
    let err = c.fails(&["apply", "-f", &typo]);
    assert!(
        err.contains("unknown field \"spec.updateStrategy.rollingUpdate.maxUnavailabel\""),
        "{err}"
    );
    assert!(c.fails(&["get", "ds", "typo"]).contains("NotFound"));
    let never = write(
        "never-ds.yaml",
        text.replace("name: node-agent\n", "name: never\n").replace(
            "    spec:\n      nodeSelector",
            "    spec:\n      restartPolicy: Never\n      nodeSelector",
        ),
    );
    let err = c.fails(&["apply", "-f", &never]);
    assert!(
        err.contains("The DaemonSet \"never\" is invalid")
            && err.contains(
                "spec.template.spec.restartPolicy: Unsupported value: \"Never\": supported values: \"Always\""
            ),
        "{err}"
    );
    let moved = write(
        "moved-ds.yaml",
        text.replace("app: node-agent", "app: moved"),
    );
    let err = c.fails(&["apply", "-f", &moved]);
    assert!(
        err.contains("spec.selector: Invalid value") && err.contains("field is immutable"),
        "{err}"
    );

    // kubectl delete (Background): the DaemonSet goes at once.
    let out = c.ok(&["delete", "ds", "node-agent"]);
    assert!(
        out.contains("daemonset.apps \"node-agent\" deleted"),
        "{out}"
    );
    assert!(c.fails(&["get", "ds", "node-agent"]).contains("NotFound"));
    let out = c.ok(&["delete", "daemonset", "agent131", "agent132"]);
    assert!(out.contains("daemonset.apps \"agent132\" deleted"), "{out}");
    assert_eq!(c.ok(&["get", "ds", "-o", "name"]).trim(), "");
}

/// batch/v1 CronJobs through kubectl: `create cronjob` (JSON from 1.31, protobuf from 1.32),
/// the server's defaults, the CronJob table, strict `apply -f` with upstream's schedule and
/// time zone errors, `create job --from=cronjob/…`, `patch` to suspend, `get all`, `describe`
/// and delete. No node agent: Jobs the CronJob controller starts never run.
#[test]
fn cronjobs_create_get_apply_and_delete() {
    let c = Cluster::start_with("100.64.47.0/24".into(), &["--no-agent"]);
    for (version, name) in [
        ("1.31", "hello131"),
        ("1.32", "hello132"),
        ("1.33", "hello133"),
    ] {
        let (code, out, err) = c.kubectl_version(
            version,
            &[
                "create",
                "cronjob",
                name,
                "--image=busybox",
                "--schedule=*/1 * * * *",
                "--",
                "date",
            ],
        );
        assert_eq!(code, 0, "kubectl {version}: {out} {err}");
        assert!(
            out.contains(&format!("cronjob.batch/{name} created")),
            "{out}"
        );
        let cj = format!("cronjob/{name}");
        assert_eq!(jsonpath(&c, &cj, "{.spec.schedule}"), "*/1 * * * *");
        assert_eq!(
            jsonpath(
                &c,
                &cj,
                "{.spec.jobTemplate.spec.template.spec.containers[0].command}"
            ),
            "[\"date\"]"
        );
    }
    let yaml = c.ok(&["get", "cronjob", "hello133", "-o", "yaml"]);
    for line in [
        "apiVersion: batch/v1",
        "kind: CronJob",
        "concurrencyPolicy: Allow",
        "failedJobsHistoryLimit: 1",
        "successfulJobsHistoryLimit: 3",
        "suspend: false",
        "restartPolicy: OnFailure",
        "schedule: '*/1 * * * *'",
    ] {
        assert!(yaml.contains(line), "{line:?} not in\n{yaml}");
    }

    let manifest = Cluster::manifest("cronjob.yaml");
    assert!(c
        .ok(&["apply", "-f", &manifest])
        .contains("cronjob.batch/nightly created"));
    assert!(c
        .ok(&["apply", "-f", &manifest])
        .contains("cronjob.batch/nightly unchanged"));
    assert_eq!(
        jsonpath(&c, "cj/nightly", "{.spec.concurrencyPolicy}"),
        "Forbid"
    );
    assert_eq!(
        jsonpath(&c, "cj/nightly", "{.spec.successfulJobsHistoryLimit}"),
        "2"
    );

    // The table, as upstream prints it (the controller may already have scheduled hello*).
    let table = c.ok(&["get", "cronjobs"]);
    let header: Vec<&str> = table
        .lines()
        .next()
        .unwrap_or_default()
        .split_whitespace()
        .collect();
    assert_eq!(
        header,
        ["NAME", "SCHEDULE", "TIMEZONE", "SUSPEND", "ACTIVE", "LAST", "SCHEDULE", "AGE"],
        "{table}"
    );
    let row = |table: &str, name: &str| -> Vec<String> {
        table
            .lines()
            .find(|l| l.starts_with(&format!("{name} ")))
            .unwrap_or_default()
            .split_whitespace()
            .map(str::to_string)
            .collect()
    };
    assert_eq!(
        row(&table, "nightly").get(1..9),
        Some(&["0", "3", "*", "*", "*", "Europe/Berlin", "False", "0"].map(String::from)[..]),
        "{table}"
    );
    assert_eq!(
        row(&table, "nightly").get(9).map(String::as_str),
        Some("<none>")
    );
    assert_eq!(
        row(&table, "hello131").get(1..8),
        Some(&["*/1", "*", "*", "*", "*", "<none>", "False"].map(String::from)[..]),
        "{table}"
    );
    let wide = c.ok(&["get", "cj", "-o", "wide"]);
    for part in ["CONTAINERS", "IMAGES", "SELECTOR", "report", "busybox:1.36"] {
        assert!(wide.contains(part), "{wide}");
    }
    let resources = c.ok(&["api-resources", "--api-group=batch"]);
    assert!(
        resources.lines().any(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            f == ["cronjobs", "cj", "batch/v1", "true", "CronJob"]
        }),
        "{resources}"
    );

    // Strict field validation and upstream's CronJob validation, nothing stored.
    let text = std::fs::read_to_string(&manifest).expect("manifest");
    let write = |name: &str, body: String| {
        let path = c.dir.path().join(name);
        std::fs::write(&path, body).expect("write manifest");
        path.to_string_lossy().into_owned()
    };
    let renamed = |name: &str| text.replace("name: nightly\n", &format!("name: {name}\n"));
    let typo = write(
        "typo-cj.yaml",
        renamed("typo").replace("concurrencyPolicy:", "concurencyPolicy:"),
    );
    let err = c.fails(&["apply", "-f", &typo]);
    assert!(
        err.contains("unknown field \"spec.concurencyPolicy\""),
        "{err}"
    );
    let sunday7 = write(
        "sunday7-cj.yaml",
        renamed("sunday7").replace("\"0 3 * * *\"", "\"0 3 * * 7\""),
    );
    let err = c.fails(&["apply", "-f", &sunday7]);
    assert!(
        err.contains("The CronJob \"sunday7\" is invalid")
            && err.contains(
                "spec.schedule: Invalid value: \"0 3 * * 7\": end of range (7) above maximum (6): 7"
            ),
        "{err}"
    );
    let tz = write(
        "tz-cj.yaml",
        renamed("tz").replace("\"0 3 * * *\"", "\"CRON_TZ=UTC 0 3 * * *\""),
    );
    let err = c.fails(&["apply", "-f", &tz]);
    assert!(
        err.contains("cannot use TZ or CRON_TZ in schedule, use timeZone field instead"),
        "{err}"
    );
    let atlantis = write(
        "atlantis-cj.yaml",
        renamed("atlantis").replace("Europe/Berlin", "Europe/Atlantis"),
    );
    let err = c.fails(&["apply", "-f", &atlantis]);
    assert!(
        err.contains(
            "spec.timeZone: Invalid value: \"Europe/Atlantis\": unknown time zone Europe/Atlantis"
        ),
        "{err}"
    );
    let always = write(
        "always-cj.yaml",
        renamed("always").replace("restartPolicy: OnFailure", "restartPolicy: Always"),
    );
    let err = c.fails(&["apply", "-f", &always]);
    assert!(
        err.contains("spec.jobTemplate.spec.template.spec.restartPolicy: Required value: valid values: \"OnFailure\", \"Never\""),
        "{err}"
    );
    let long_name = "n".repeat(53);
    let long = write("long-cj.yaml", renamed(&long_name));
    let err = c.fails(&["apply", "-f", &long]);
    assert!(
        err.contains("metadata.name: Invalid value")
            && err.contains("must be no more than 52 characters"),
        "{err}"
    );
    let names = c.ok(&["get", "cj", "-o", "name"]);
    for gone in ["typo", "sunday7", "tz", "atlantis", "always"] {
        assert!(
            !names.contains(&format!("cronjob.batch/{gone}\n")),
            "{names}"
        );
    }

    // `kubectl create job --from=cronjob/…` (typed client: JSON from 1.31, protobuf from 1.33):
    // the Job comes from the template, owned by the CronJob.
    for (version, name) in [("1.31", "manual131"), ("1.33", "manual133")] {
        let (code, out, err) =
            c.kubectl_version(version, &["create", "job", name, "--from=cronjob/nightly"]);
        assert_eq!(code, 0, "kubectl {version}: {out} {err}");
        assert!(out.contains(&format!("job.batch/{name} created")), "{out}");
        let job = format!("job/{name}");
        assert_eq!(
            jsonpath(
                &c,
                &job,
                "{.metadata.annotations.cronjob\\.kubernetes\\.io/instantiate}"
            ),
            "manual"
        );
        assert_eq!(
            jsonpath(
                &c,
                &job,
                "{.metadata.ownerReferences[0].kind}/{.metadata.ownerReferences[0].name}"
            ),
            "CronJob/nightly"
        );
        assert_eq!(
            jsonpath(&c, &job, "{.metadata.ownerReferences[0].uid}"),
            jsonpath(&c, "cj/nightly", "{.metadata.uid}")
        );
        assert_eq!(jsonpath(&c, &job, "{.spec.backoffLimit}"), "1");
        assert_eq!(jsonpath(&c, &job, "{.metadata.labels.app}"), "nightly");
        assert_eq!(
            jsonpath(&c, &job, "{.spec.template.metadata.labels.job-name}"),
            name
        );
    }

    // `kubectl patch` (strategic merge) suspends it: a spec change, generation 2.
    let out = c.ok(&[
        "patch",
        "cronjob",
        "nightly",
        "-p",
        r#"{"spec":{"suspend":true}}"#,
    ]);
    assert!(out.contains("cronjob.batch/nightly patched"), "{out}");
    assert_eq!(jsonpath(&c, "cj/nightly", "{.spec.suspend}"), "true");
    assert_eq!(jsonpath(&c, "cj/nightly", "{.metadata.generation}"), "2");
    let table = c.ok(&["get", "cj", "nightly"]);
    assert_eq!(
        row(&table, "nightly").get(7).map(String::as_str),
        Some("True"),
        "{table}"
    );
    let out = c.ok(&["set", "image", "cronjob/nightly", "report=busybox:1.37"]);
    assert!(out.contains("cronjob.batch/nightly image updated"), "{out}");
    assert_eq!(
        jsonpath(
            &c,
            "cj/nightly",
            "{.spec.jobTemplate.spec.template.spec.containers[0].image}"
        ),
        "busybox:1.37"
    );

    let all = c.ok(&["get", "all"]);
    for needle in [
        "cronjob.batch/nightly",
        "cronjob.batch/hello131",
        "job.batch/manual131",
    ] {
        assert!(all.contains(needle), "{needle} not in\n{all}");
    }
    let described = c.ok(&["describe", "cronjob", "nightly"]);
    for needle in [
        "Schedule:",
        "0 3 * * *",
        "Concurrency Policy:",
        "Forbid",
        "Suspend:",
        "True",
        "busybox:1.37",
    ] {
        assert!(described.contains(needle), "{needle:?} not in\n{described}");
    }

    // kubectl delete sends Background: the CronJob goes at once.
    let out = c.ok(&["delete", "cronjob", "hello131"]);
    assert!(out.contains("cronjob.batch \"hello131\" deleted"), "{out}");
    assert!(c.fails(&["get", "cj", "hello131"]).contains("NotFound"));
    let out = c.ok(&["delete", "-f", &manifest]);
    assert!(out.contains("cronjob.batch \"nightly\" deleted"), "{out}");
    let out = c.ok(&["delete", "cj", "hello132", "hello133"]);
    assert!(out.contains("cronjob.batch \"hello133\" deleted"), "{out}");
    assert_eq!(c.ok(&["get", "cj", "-o", "name"]).trim(), "");
}

#[test]
fn rbac_objects_create_print_and_keep_their_role_ref() {
    let c = Cluster::start();
    c.ok(&[
        "create",
        "role",
        "pod-reader",
        "--verb=get,list",
        "--resource=pods",
    ]);
    c.ok(&[
        "create",
        "rolebinding",
        "read-pods",
        "--role=pod-reader",
        "--user=alice",
        "--group=dev",
        "--serviceaccount=default:robot",
    ]);
    c.ok(&[
        "create",
        "clusterrole",
        "health",
        "--verb=get",
        "--non-resource-url=/healthz",
    ]);
    c.ok(&[
        "create",
        "clusterrolebinding",
        "health",
        "--clusterrole=health",
        "--group=system:authenticated",
    ]);
    let wide = c.ok(&["get", "rolebinding", "read-pods", "-o", "wide"]);
    let row = wide.lines().nth(1).unwrap_or_default();
    for cell in [
        "read-pods",
        "Role/pod-reader",
        "alice",
        "dev",
        "default:robot",
    ] {
        assert!(row.contains(cell), "{cell} missing from {wide}");
    }
    assert!(c.ok(&["get", "clusterroles"]).contains("CREATED AT"));
    assert_eq!(
        jsonpath(&c, "clusterrolebinding/health", "{.subjects[0].apiGroup}"),
        "rbac.authorization.k8s.io"
    );
    // roleRef is immutable, as upstream.
    let err = c.fails(&[
        "patch",
        "rolebinding",
        "read-pods",
        "--type=merge",
        "-p",
        r#"{"roleRef":{"name":"other"}}"#,
    ]);
    assert!(err.contains("cannot change roleRef"), "{err}");
}

/// A kubeconfig next to the admin one whose user is a bearer token.
fn token_kubeconfig(c: &Cluster, name: &str, token: &str) -> String {
    let text = std::fs::read_to_string(c.kubeconfig()).expect("kubeconfig");
    let mut out = String::new();
    for line in text.lines() {
        let t = line.trim_start();
        if t.starts_with("client-certificate-data:") {
            out.push_str(&format!("    token: {token}\n"));
        } else if !t.starts_with("client-key-data:") {
            out.push_str(line);
            out.push('\n');
        }
    }
    let path = c.data_dir().join(name);
    std::fs::write(&path, out).expect("write kubeconfig");
    path.to_string_lossy().into_owned()
}

fn token_claims(token: &str) -> serde_json::Value {
    use base64::Engine;
    let part = token.split('.').nth(1).expect("a JWT");
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(part)
        .expect("base64url");
    serde_json::from_slice(&bytes).expect("claims")
}

#[test]
fn service_accounts_tokens_and_the_pod_volume() {
    let cidr = format!("100.64.{}.0/24", 40 + std::process::id() % 20);
    let c = Cluster::start_with(cidr, &["--no-agent"]);
    // Every namespace gets `default` and the root CA.
    c.ok(&["create", "namespace", "team-a"]);
    c.eventually(
        &["get", "sa", "-n", "team-a"],
        "default",
        Duration::from_secs(20),
    );
    let ca = std::fs::read_to_string(c.data_dir().join("server/tls/ca.crt")).expect("ca");
    c.eventually(
        &[
            "get",
            "configmap",
            "kube-root-ca.crt",
            "-n",
            "team-a",
            "-o",
            "jsonpath={.data.ca\\.crt}",
        ],
        ca.trim(),
        Duration::from_secs(20),
    );

    // kubectl create token: the token authenticates as the ServiceAccount.
    c.ok(&["create", "serviceaccount", "robot", "-n", "team-a"]);
    let token = c
        .ok(&[
            "create",
            "token",
            "robot",
            "-n",
            "team-a",
            "--duration",
            "15m",
        ])
        .trim()
        .to_string();
    let claims = token_claims(&token);
    assert_eq!(claims["sub"], "system:serviceaccount:team-a:robot");
    assert_eq!(
        claims["exp"].as_i64().unwrap() - claims["iat"].as_i64().unwrap(),
        900
    );
    let kc = token_kubeconfig(&c, "robot.kubeconfig", &token);
    let who = c.ok(&["--kubeconfig", &kc, "auth", "whoami"]);
    assert!(who.contains("system:serviceaccount:team-a:robot"), "{who}");
    assert!(who.contains("system:serviceaccounts:team-a"), "{who}");

    // A pod gets the kube-api-access volume mounted in its container.
    c.ok(&[
        "run",
        "runner",
        "-n",
        "team-a",
        "--image=busybox",
        "--overrides",
        r#"{"spec":{"serviceAccountName":"robot"}}"#,
    ]);
    let vol = c.ok(&[
        "get",
        "pod",
        "runner",
        "-n",
        "team-a",
        "-o",
        "jsonpath={.spec.volumes[0].name} {.spec.volumes[0].projected.sources[0].serviceAccountToken.expirationSeconds} {.spec.containers[0].volumeMounts[0].mountPath}",
    ]);
    let parts: Vec<&str> = vol.split(' ').collect();
    assert!(parts[0].starts_with("kube-api-access-"), "{vol}");
    assert_eq!(parts[1], "3607", "{vol}");
    assert_eq!(
        parts[2], "/var/run/secrets/kubernetes.io/serviceaccount",
        "{vol}"
    );

    // A token bound to the pod dies with it.
    let bound = c
        .ok(&[
            "create",
            "token",
            "robot",
            "-n",
            "team-a",
            "--bound-object-kind",
            "Pod",
            "--bound-object-name",
            "runner",
        ])
        .trim()
        .to_string();
    assert_eq!(
        token_claims(&bound)["kubernetes.io"]["pod"]["name"],
        "runner"
    );
    let kc = token_kubeconfig(&c, "bound.kubeconfig", &bound);
    let who = c.ok(&["--kubeconfig", &kc, "auth", "whoami"]);
    assert!(
        who.contains("authentication.kubernetes.io/pod-name"),
        "{who}"
    );
    c.ok(&[
        "delete",
        "pod",
        "runner",
        "-n",
        "team-a",
        "--grace-period=0",
        "--force",
    ]);
    let err = c.fails(&["--kubeconfig", &kc, "auth", "whoami"]);
    assert!(err.contains("Unauthorized"), "{err}");

    // A pod naming a missing ServiceAccount is refused in upstream's words.
    let err = c.fails(&[
        "run",
        "lost",
        "-n",
        "team-a",
        "--image=busybox",
        "--overrides",
        r#"{"spec":{"serviceAccountName":"ghost"}}"#,
    ]);
    assert!(
        err.contains("pods \"lost\" is forbidden: error looking up service account team-a/ghost: serviceaccount \"ghost\" not found"),
        "{err}"
    );
}

#[test]
fn kubectl_get_componentstatuses() {
    let c = Cluster::start();
    let (code, out, err) = c.kubectl(&["get", "cs"]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(
        err.contains("Warning: v1 ComponentStatus is deprecated in v1.19+"),
        "{err}"
    );
    let rows: Vec<Vec<&str>> = out
        .lines()
        .map(|l| l.split_whitespace().collect())
        .collect();
    assert_eq!(rows[0], ["NAME", "STATUS", "MESSAGE", "ERROR"], "{out}");
    for name in ["scheduler", "controller-manager", "etcd-0"] {
        assert!(
            rows.iter().any(|r| r[..] == [name, "Healthy", "ok"]),
            "{name}: {out}"
        );
    }
    let (code, out, err) = c.kubectl(&[
        "get",
        "componentstatus",
        "etcd-0",
        "-o",
        "jsonpath={.conditions[0].status}",
    ]);
    assert_eq!((code, out.as_str()), (0, "True"), "{err}");
}
