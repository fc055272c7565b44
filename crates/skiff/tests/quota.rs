//! Resource quotas and limit ranges seen through the real kubectl on a real server (the
//! controllers run as `system:kube-controller-manager`, so this also proves the
//! resourcequota-controller's RBAC): `kubectl create quota`, the controller's usage in
//! `kubectl get quota`, upstream's Forbidden message for the pod and the ConfigMap over the
//! quota, and a LimitRange's defaults on `kubectl run`.

mod common;

use std::time::Duration;

use common::cluster::Cluster;

const WAIT: Duration = Duration::from_secs(30);

#[test]
fn quota_and_limit_range_with_kubectl() {
    let c = Cluster::start();
    c.ok(&["create", "namespace", "governed"]);
    c.ok(&[
        "create",
        "quota",
        "objects",
        "-n",
        "governed",
        "--hard=pods=1,count/configmaps=3",
    ]);
    // The namespace's kube-root-ca.crt ConfigMap already counts.
    let out = c.eventually(
        &["get", "quota", "objects", "-n", "governed"],
        "count/configmaps: 1/3, pods: 0/1",
        WAIT,
    );
    assert!(out.starts_with("NAME"), "{out}");
    assert!(out.contains("REQUEST") && out.contains("LIMIT"), "{out}");

    c.ok(&["create", "configmap", "a", "-n", "governed"]);
    c.ok(&["create", "configmap", "b", "-n", "governed"]);
    let err = c.fails(&["create", "configmap", "c", "-n", "governed"]);
    assert!(
        err.contains(r#"configmaps "c" is forbidden: exceeded quota: objects, requested: count/configmaps=1, used: count/configmaps=3, limited: count/configmaps=3"#),
        "{err}"
    );

    let dir = tempfile::tempdir().unwrap();
    let lr = dir.path().join("limits.yaml");
    std::fs::write(
        &lr,
        "apiVersion: v1\nkind: LimitRange\nmetadata:\n  name: limits\nspec:\n  limits:\n  - type: Container\n    defaultRequest:\n      cpu: 250m\n    max:\n      cpu: '1'\n",
    )
    .unwrap();
    c.ok(&["apply", "-n", "governed", "-f", lr.to_str().unwrap()]);
    c.ok(&["run", "p1", "-n", "governed", "--image=busybox"]);
    let cpu = c.ok(&[
        "get",
        "pod",
        "p1",
        "-n",
        "governed",
        "-o",
        "jsonpath={.spec.containers[0].resources.requests.cpu}/{.spec.containers[0].resources.limits.cpu}",
    ]);
    // defaultRequest from the item, default (the limit) from max.
    assert_eq!(cpu, "250m/1");
    let err = c.fails(&["run", "p2", "-n", "governed", "--image=busybox"]);
    assert!(
        err.contains(r#"pods "p2" is forbidden: exceeded quota: objects, requested: pods=1, used: pods=1, limited: pods=1"#),
        "{err}"
    );
    c.eventually(
        &["get", "quota", "objects", "-n", "governed"],
        "count/configmaps: 3/3, pods: 1/1",
        WAIT,
    );
}
