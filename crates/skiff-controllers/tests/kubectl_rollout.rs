//! The real kubectl against the in-process cluster (API server + controllers + fake nodes):
//! `rollout status|history|undo|restart|pause|resume`, `wait --for=condition=Available`,
//! `scale`, pod self-healing and cascading delete, as a user sees them.

mod common;

use std::path::{Path, PathBuf};
use std::time::Duration;

struct Kubectl {
    kubeconfig: PathBuf,
    home: tempfile::TempDir,
}

impl Kubectl {
    fn new(kubeconfig: &Path) -> Self {
        Kubectl {
            kubeconfig: kubeconfig.to_path_buf(),
            home: tempfile::tempdir().expect("home"),
        }
    }

    async fn run(&self, args: &[&str]) -> (i32, String, String) {
        let mut cmd = tokio::process::Command::new("kubectl");
        cmd.args(args)
            .env("KUBECONFIG", &self.kubeconfig)
            .env("HOME", self.home.path())
            .env("CLOUDSDK_CONFIG", self.home.path().join("gcloud"))
            .stdin(std::process::Stdio::null());
        let out = cmd.output().await.expect("run kubectl");
        (
            out.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    }

    async fn ok(&self, args: &[&str]) -> String {
        let (code, out, err) = self.run(args).await;
        assert_eq!(
            code, 0,
            "kubectl {args:?} failed\nstdout: {out}\nstderr: {err}"
        );
        out
    }
}

fn manifest(name: &str) -> String {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../skiff/tests/manifests")
        .join(name)
        .to_string_lossy()
        .into_owned()
}

async fn ready_pods(k: &Kubectl) -> usize {
    let out = k
        .ok(&["get", "pods", "-l", "app=web", "-o", "jsonpath={range .items[*]}{.status.conditions[?(@.type==\"Ready\")].status}{\" \"}{.metadata.deletionTimestamp}{\"\\n\"}{end}"])
        .await;
    out.lines().filter(|l| l.trim() == "True").count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubectl_rollout_lifecycle() {
    let c = common::TestCluster::start().await;
    let _n1 = c.add_node("n1").await;
    let _n2 = c.add_node("n2").await;
    let k = Kubectl::new(&c.kubeconfig);

    k.ok(&["apply", "-f", &manifest("web.yaml")]).await;
    let out = k
        .ok(&["rollout", "status", "deployment/web", "--timeout=60s"])
        .await;
    assert!(out.contains("successfully rolled out"), "{out}");
    k.ok(&[
        "wait",
        "--for=condition=Available",
        "deployment/web",
        "--timeout=30s",
    ])
    .await;
    let wide = k.ok(&["get", "deploy", "web"]).await;
    assert!(wide.contains("3/3"), "{wide}");

    k.ok(&["set", "image", "deployment/web", "web=web:v2"])
        .await;
    let out = k
        .ok(&["rollout", "status", "deployment/web", "--timeout=60s"])
        .await;
    assert!(out.contains("successfully rolled out"), "{out}");
    let rs = k.ok(&["get", "rs", "-l", "app=web", "-o", "jsonpath={range .items[*]}{.metadata.annotations.deployment\\.kubernetes\\.io/revision}={.spec.replicas} {end}"]).await;
    let mut pairs: Vec<&str> = rs.split_whitespace().collect();
    pairs.sort();
    assert_eq!(pairs, ["1=0", "2=3"], "{rs}");

    let history = k.ok(&["rollout", "history", "deployment/web"]).await;
    assert!(
        history.contains("REVISION") && history.contains('1') && history.contains('2'),
        "{history}"
    );

    let out = k.ok(&["rollout", "undo", "deployment/web"]).await;
    assert!(out.contains("rolled back"), "{out}");
    k.ok(&["rollout", "status", "deployment/web", "--timeout=60s"])
        .await;
    let image = k
        .ok(&[
            "get",
            "deploy",
            "web",
            "-o",
            "jsonpath={.spec.template.spec.containers[0].image}",
        ])
        .await;
    assert_eq!(image, "web:v1");
    let revision = k
        .ok(&[
            "get",
            "deploy",
            "web",
            "-o",
            "jsonpath={.metadata.annotations.deployment\\.kubernetes\\.io/revision}",
        ])
        .await;
    assert_eq!(revision, "3");

    k.ok(&["rollout", "pause", "deployment/web"]).await;
    k.ok(&["set", "image", "deployment/web", "web=web:v3"])
        .await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let rs_count = k
        .ok(&["get", "rs", "-l", "app=web", "-o", "name"])
        .await
        .lines()
        .count();
    assert_eq!(rs_count, 2, "a paused deployment makes no new ReplicaSet");
    k.ok(&["rollout", "resume", "deployment/web"]).await;
    k.ok(&["rollout", "status", "deployment/web", "--timeout=60s"])
        .await;
    let out = k.ok(&["rollout", "restart", "deployment/web"]).await;
    assert!(out.contains("restarted"), "{out}");
    k.ok(&["rollout", "status", "deployment/web", "--timeout=60s"])
        .await;

    // Scale and self-heal.
    k.ok(&["scale", "deployment", "web", "--replicas=9"]).await;
    c.wait_for("9 ready pods", Duration::from_secs(60), || async {
        ready_pods(&k).await == 9
    })
    .await;
    let names = k.ok(&["get", "pods", "-l", "app=web", "-o", "name"]).await;
    let victims: Vec<&str> = names.lines().take(3).collect();
    let mut args = vec!["delete"];
    args.extend(victims.iter().copied());
    args.push("--wait=false");
    k.ok(&args).await;
    c.wait_for("9 ready pods again", Duration::from_secs(60), || async {
        ready_pods(&k).await == 9
    })
    .await;

    // Cascading delete.
    k.ok(&["delete", "deployment", "web"]).await;
    c.wait_for(
        "ReplicaSets and pods gone",
        Duration::from_secs(60),
        || async {
            let rs = k.ok(&["get", "rs", "-l", "app=web", "-o", "name"]).await;
            let pods = k.ok(&["get", "pods", "-l", "app=web", "-o", "name"]).await;
            rs.trim().is_empty() && pods.trim().is_empty()
        },
    )
    .await;
}
