//! HorizontalPodAutoscaler on a real cluster (root): `kubectl autoscale` creates an HPA for a
//! Deployment whose busybox containers burn CPU (capped by a CPU limit); the controller reads
//! their usage from the computed metrics.k8s.io API, scales the Deployment up to its maximum,
//! `kubectl get hpa` prints the targets, and once the pods stop burning it scales back down
//! under a short scale-down window set on the object.

mod common;

use std::time::{Duration, Instant};

use common::cluster::{build_web_images, Cluster};

const BURN: &str = r#"apiVersion: apps/v1
kind: Deployment
metadata:
  name: burn
spec:
  replicas: 1
  selector:
    matchLabels:
      app: burn
  template:
    metadata:
      labels:
        app: burn
    spec:
      terminationGracePeriodSeconds: 1
      containers:
      - name: burn
        image: web:v1
        command: ["sh", "-c", "while :; do if [ -f /ctl/stop ]; then sleep 1; fi; done"]
        resources:
          requests:
            cpu: 50m
          limits:
            cpu: 100m
        volumeMounts:
        - name: ctl
          mountPath: /ctl
      volumes:
      - name: ctl
        emptyDir: {}
"#;

fn replicas(c: &Cluster) -> String {
    c.ok(&[
        "get",
        "deployment",
        "burn",
        "-o",
        "jsonpath={.spec.replicas}",
    ])
}

fn wait_replicas(c: &Cluster, want: &str, timeout: Duration) {
    let deadline = Instant::now() + timeout;
    loop {
        let got = replicas(c);
        if got == want {
            return;
        }
        if Instant::now() > deadline {
            let hpa = c.kubectl(&["get", "hpa", "burn", "-o", "yaml"]).1;
            let top = c.kubectl(&["top", "pods"]).1;
            panic!("replicas stayed {got}, wanted {want}\n{hpa}\n{top}");
        }
        std::thread::sleep(Duration::from_secs(1));
    }
}

#[test]
fn kubectl_autoscale_scales_a_cpu_burning_deployment_up_and_down() {
    if !nix::unistd::geteuid().is_root() {
        eprintln!("skipped: needs root");
        return;
    }
    let c = Cluster::start_with(
        "100.64.44.0/24".into(),
        &["--horizontal-pod-autoscaler-sync-period", "2s"],
    );
    build_web_images(&c);
    let path = c.dir.path().join("burn.yaml");
    std::fs::write(&path, BURN).expect("manifest");
    c.ok(&["apply", "-f", &path.to_string_lossy()]);
    c.ok(&["rollout", "status", "deployment/burn", "--timeout=120s"]);

    // Discovery serves both versions, v2 preferred.
    let versions = c.ok(&["api-versions"]);
    assert!(
        versions.contains("autoscaling/v1") && versions.contains("autoscaling/v2"),
        "{versions}"
    );

    // kubectl before 1.33 creates autoscaling/v1 objects: served by conversion (server-side dry
    // run: defaults, validation and the response in v1).
    let (code, out, err) = c.kubectl_version(
        "1.29",
        &[
            "autoscale",
            "deployment",
            "burn",
            "--name",
            "burn-old",
            "--cpu-percent=70",
            "--max=2",
            "--dry-run=server",
            "-o",
            "jsonpath={.apiVersion} {.spec.targetCPUUtilizationPercentage} {.spec.minReplicas}",
        ],
    );
    assert_eq!((code, out.as_str()), (0, "autoscaling/v1 70 1"), "{err}");
    let out = c.ok(&[
        "autoscale",
        "deployment",
        "burn",
        "--cpu-percent=50",
        "--min=1",
        "--max=3",
    ]);
    assert!(
        out.contains("horizontalpodautoscaler.autoscaling/burn autoscaled"),
        "{out}"
    );
    // A short scale-down window for the test (the default is 300 s).
    c.ok(&[
        "patch",
        "hpa",
        "burn",
        "--type=merge",
        "-p",
        r#"{"spec":{"behavior":{"scaleDown":{"stabilizationWindowSeconds":5}}}}"#,
    ]);
    let v2 = c.ok(&["get", "horizontalpodautoscalers.v2.autoscaling", "burn", "-o", "jsonpath={.spec.metrics[0].resource.target.averageUtilization} {.spec.behavior.scaleDown.policies[0].type}"]);
    assert_eq!(v2, "50 Percent");
    let v1 = c.ok(&[
        "get",
        "horizontalpodautoscalers.v1.autoscaling",
        "burn",
        "-o",
        "jsonpath={.apiVersion} {.spec.targetCPUUtilizationPercentage}",
    ]);
    assert_eq!(v1, "autoscaling/v1 50");

    // ~100m used of 50m requested: 200% against 50% → the maximum.
    wait_replicas(&c, "3", Duration::from_secs(120));
    let table = c.eventually(&["get", "hpa"], "cpu: ", Duration::from_secs(30));
    eprintln!("kubectl get hpa:\n{table}");
    for col in [
        "NAME",
        "REFERENCE",
        "TARGETS",
        "MINPODS",
        "MAXPODS",
        "REPLICAS",
        "AGE",
    ] {
        assert!(table.contains(col), "{table}");
    }
    assert!(table.contains("Deployment/burn"), "{table}");
    assert!(table.contains("/50%"), "{table}");
    let events = c.ok(&[
        "get",
        "events",
        "--field-selector",
        "involvedObject.kind=HorizontalPodAutoscaler",
    ]);
    assert!(events.contains("SuccessfulRescale"), "{events}");
    assert!(
        events.contains("cpu resource utilization (percentage of request) above target"),
        "{events}"
    );

    let describe = c.ok(&["describe", "hpa", "burn"]);
    for needle in [
        "Reference:",
        "Deployment/burn",
        "Min replicas:",
        "ScalingActive",
        "SuccessfulRescale",
    ] {
        assert!(describe.contains(needle), "{needle} in\n{describe}");
    }

    // Stop burning in every pod: back to one replica after the 5 s window.
    c.ok(&["rollout", "status", "deployment/burn", "--timeout=120s"]);
    let pods = c.ok(&[
        "get",
        "pods",
        "-l",
        "app=burn",
        "-o",
        "jsonpath={.items[*].metadata.name}",
    ]);
    for pod in pods.split_whitespace() {
        c.ok(&["exec", pod, "--", "touch", "/ctl/stop"]);
    }
    wait_replicas(&c, "1", Duration::from_secs(120));
    let status = c.ok(&[
        "get",
        "hpa",
        "burn",
        "-o",
        "jsonpath={.status.conditions[?(@.type==\"ScalingActive\")].reason}",
    ]);
    assert_eq!(status, "ValidMetricFound");
    c.ok(&["delete", "hpa", "burn"]);
    c.ok(&["delete", "deployment", "burn"]);
}
