//! RBAC through the real kubectl: a `kubectl auth can-i` matrix for the admin, a user bound to
//! `view` in one namespace, a ServiceAccount bound to `edit`, and a node identity (RBAC alone
//! grants nodes nothing beyond what every user has; the Node authorizer decides the rest),
//! with upstream's answers; `--list`; Forbidden messages byte for byte through kubectl;
//! escalation prevention; ClusterRole aggregation by the controller; the Python client.
//! No root needed: no node agent runs here.

mod common;

use std::time::Duration;

use common::cluster::Cluster;

/// `kubectl auth can-i` → (answer line, exit code).
fn can_i(c: &Cluster, args: &[&str]) -> (String, i32) {
    let mut all = vec!["auth", "can-i"];
    all.extend_from_slice(args);
    let (code, out, _) = c.kubectl(&all);
    (out.trim().to_string(), code)
}

fn expect(c: &Cluster, who: &[&str], rows: &[(&str, bool)]) {
    for (query, want) in rows {
        let mut args: Vec<&str> = query.split_whitespace().collect();
        args.extend_from_slice(who);
        let (answer, code) = can_i(c, &args);
        let (text, exit) = if *want { ("yes", 0) } else { ("no", 1) };
        // A denial may carry an authorizer's reason: `no - <reason>`.
        let verdict = answer.split(" - ").next().unwrap_or_default();
        assert!(
            verdict == text && code == exit,
            "kubectl auth can-i {query} {who:?}: got {answer:?} (exit {code}), upstream answers {text}"
        );
    }
}

#[test]
fn can_i_matrix_forbidden_messages_and_escalation() {
    let c = Cluster::start();
    c.ok(&["create", "namespace", "dev"]);
    c.ok(&["create", "namespace", "prod"]);
    c.ok(&[
        "create",
        "rolebinding",
        "alice-view",
        "--clusterrole=view",
        "--user=alice",
        "-n",
        "dev",
    ]);
    c.ok(&["create", "serviceaccount", "builder", "-n", "dev"]);
    c.ok(&[
        "create",
        "rolebinding",
        "builder-edit",
        "--clusterrole=edit",
        "--serviceaccount=dev:builder",
        "-n",
        "dev",
    ]);

    // The admin (system:masters).
    expect(
        &c,
        &[],
        &[
            ("* *", true),
            ("create pods -n dev", true),
            ("delete nodes", true),
            ("escalate clusterroles", true),
            ("get /logs", true),
        ],
    );

    // A user bound to view in dev.
    let alice = ["--as", "alice"];
    expect(
        &c,
        &alice,
        &[
            ("list pods -n dev", true),
            ("get deployments.apps -n dev", true),
            ("watch configmaps -n dev", true),
            ("get pods --subresource=log -n dev", true),
            ("get namespaces/dev -n dev", true),
            ("get namespaces/prod -n prod", false),
            ("list pods -n prod", false),
            ("list pods -A", false),
            ("get secrets -n dev", false),
            ("create deployments.apps -n dev", false),
            ("create pods --subresource=exec -n dev", false),
            ("list namespaces", false),
            ("create selfsubjectaccessreviews.authorization.k8s.io", true),
            ("get /healthz", true),
            ("get /version", true),
            ("get /metrics", false),
        ],
    );

    // A ServiceAccount bound to edit in dev.
    let sa = ["--as", "system:serviceaccount:dev:builder"];
    expect(
        &c,
        &sa,
        &[
            ("create deployments.apps -n dev", true),
            ("get secrets -n dev", true),
            ("create serviceaccounts --subresource=token -n dev", true),
            ("delete pods -n dev", true),
            ("create roles.rbac.authorization.k8s.io -n dev", false),
            (
                "create rolebindings.rbac.authorization.k8s.io -n dev",
                false,
            ),
            ("get resourcequotas -n dev", true),
            ("create resourcequotas -n dev", false),
            ("list pods -n prod", false),
            ("get nodes", false),
        ],
    );

    // A node: RBAC binds system:node to nobody; only what every user has.
    let node = ["--as", "system:node:n1", "--as-group", "system:nodes"];
    expect(
        &c,
        &node,
        &[
            ("get secrets -n dev", false),
            ("list secrets -A", false),
            ("delete namespaces", false),
            (
                "create clusterrolebindings.rbac.authorization.k8s.io",
                false,
            ),
            ("create selfsubjectrulesreviews.authorization.k8s.io", true),
        ],
    );

    // --list: the rules of alice in dev.
    let list = c.ok(&["auth", "can-i", "--list", "-n", "dev", "--as", "alice"]);
    let header = list.lines().next().unwrap_or_default();
    assert_eq!(
        header.split_whitespace().collect::<Vec<_>>(),
        [
            "Resources",
            "Non-Resource",
            "URLs",
            "Resource",
            "Names",
            "Verbs"
        ],
        "{list}"
    );
    let row = |name: &str| {
        list.lines()
            .find(|l| l.split_whitespace().next() == Some(name))
            .map(|l| l.split_whitespace().collect::<Vec<_>>().join(" "))
            .unwrap_or_default()
    };
    assert_eq!(row("pods"), "pods [] [] [get list watch]", "{list}");
    assert_eq!(
        row("deployments.apps"),
        "deployments.apps [] [] [get list watch]",
        "{list}"
    );
    assert_eq!(
        row("selfsubjectaccessreviews.authorization.k8s.io"),
        "selfsubjectaccessreviews.authorization.k8s.io [] [] [create]",
        "{list}"
    );
    assert!(
        list.lines()
            .any(|l| l.split_whitespace().collect::<Vec<_>>() == ["[/healthz]", "[]", "[get]"]),
        "{list}"
    );
    assert!(!list.contains("secrets "), "{list}");

    // Forbidden messages, byte for byte through kubectl.
    let err = c.fails(&["get", "secrets", "-n", "dev", "--as", "alice"]);
    assert_eq!(
        err.trim(),
        r#"Error from server (Forbidden): secrets is forbidden: User "alice" cannot list resource "secrets" in API group "" in the namespace "dev""#
    );
    let err = c.fails(&["get", "nodes", "--as", "alice"]);
    assert_eq!(
        err.trim(),
        r#"Error from server (Forbidden): nodes is forbidden: User "alice" cannot list resource "nodes" in API group "" at the cluster scope"#
    );
    let err = c.fails(&["delete", "pod", "web", "-n", "dev", "--as", "alice"]);
    assert_eq!(
        err.trim(),
        r#"Error from server (Forbidden): pods "web" is forbidden: User "alice" cannot delete resource "pods" in API group "" in the namespace "dev""#
    );

    // Escalation: bob administers dev but cannot grant what he does not hold.
    c.ok(&[
        "create",
        "rolebinding",
        "bob-admin",
        "--clusterrole=admin",
        "--user=bob",
        "-n",
        "dev",
    ]);
    c.ok(&[
        "create",
        "role",
        "pod-reader",
        "--verb=get,list",
        "--resource=pods",
        "-n",
        "dev",
        "--as",
        "bob",
    ]);
    let err = c.fails(&[
        "create",
        "role",
        "node-reader",
        "--verb=get",
        "--resource=nodes",
        "-n",
        "dev",
        "--as",
        "bob",
    ]);
    assert!(
        err.contains("roles.rbac.authorization.k8s.io \"node-reader\" is forbidden: user \"bob\" (groups=[\"system:authenticated\"]) is attempting to grant RBAC permissions not currently held:\n{APIGroups:[\"\"], Resources:[\"nodes\"], Verbs:[\"get\"]}"),
        "{err}"
    );
    let err = c.fails(&[
        "create",
        "rolebinding",
        "carol-admin",
        "--clusterrole=cluster-admin",
        "--user=carol",
        "-n",
        "dev",
        "--as",
        "bob",
    ]);
    assert!(
        err.contains("rolebindings.rbac.authorization.k8s.io \"carol-admin\" is forbidden: user \"bob\" (groups=[\"system:authenticated\"]) is attempting to grant RBAC permissions not currently held:"),
        "{err}"
    );
    c.ok(&[
        "create",
        "rolebinding",
        "carol-view",
        "--clusterrole=view",
        "--user=carol",
        "-n",
        "dev",
        "--as",
        "bob",
    ]);
    expect(&c, &["--as", "carol"], &[("list pods -n dev", true)]);

    // Revocation.
    c.ok(&["delete", "rolebinding", "alice-view", "-n", "dev"]);
    expect(&c, &alice, &[("list pods -n dev", false)]);
}

#[test]
fn aggregation_controller_and_python_client() {
    let c = Cluster::start();
    c.ok(&["create", "namespace", "dev"]);
    c.ok(&[
        "create",
        "rolebinding",
        "alice-view",
        "--clusterrole=view",
        "--user=alice",
        "-n",
        "dev",
    ]);
    // A role labelled to aggregate into view: alice gains it through the controller.
    let (answer, _) = can_i(
        &c,
        &[
            "list",
            "leases.coordination.k8s.io",
            "-n",
            "dev",
            "--as",
            "alice",
        ],
    );
    assert_eq!(answer, "no");
    let manifest = c.dir.path().join("lease-viewer.yaml");
    std::fs::write(
        &manifest,
        "apiVersion: rbac.authorization.k8s.io/v1\nkind: ClusterRole\nmetadata:\n  name: lease-viewer\n  labels:\n    rbac.authorization.k8s.io/aggregate-to-view: \"true\"\nrules:\n- apiGroups: [\"coordination.k8s.io\"]\n  resources: [\"leases\"]\n  verbs: [\"get\", \"list\"]\n",
    )
    .unwrap();
    c.ok(&["apply", "-f", manifest.to_str().unwrap()]);
    c.eventually(
        &[
            "get",
            "clusterrole",
            "view",
            "-o",
            "jsonpath={.rules[*].resources}",
        ],
        "leases",
        Duration::from_secs(30),
    );
    // edit and admin aggregate view's labelled roles too (edit takes view's inputs).
    c.eventually(
        &[
            "get",
            "clusterrole",
            "admin",
            "-o",
            "jsonpath={.rules[*].resources}",
        ],
        "leases",
        Duration::from_secs(30),
    );
    let (answer, _) = can_i(
        &c,
        &[
            "list",
            "leases.coordination.k8s.io",
            "-n",
            "dev",
            "--as",
            "alice",
        ],
    );
    assert_eq!(answer, "yes");
    c.ok(&["delete", "clusterrole", "lease-viewer"]);
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        let (answer, _) = can_i(
            &c,
            &[
                "list",
                "leases.coordination.k8s.io",
                "-n",
                "dev",
                "--as",
                "alice",
            ],
        );
        if answer == "no" {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "aggregated rule not removed"
        );
        std::thread::sleep(Duration::from_millis(200));
    }

    let script = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/rbac_python.py");
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
    assert!(String::from_utf8_lossy(&out.stdout).contains("python rbac ok"));
}
