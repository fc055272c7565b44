//! The documented install YAML of well-known projects (tests/fixtures/bundles, see SOURCES.md
//! there) applied with the real kubectl, server-side and client-side, the way their docs say:
//! every object must be accepted, as upstream accepts it. The API server runs without a node
//! agent: this is about the API (CRDs, webhooks and policies, aggregation, RBAC, built-in kinds),
//! not about running the projects' images.

mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use common::cluster::Cluster;
use serde_json::Value;

/// Upstream's limit on the total size of an object's annotations; client-side apply stores the
/// whole object in one (`kubectl.kubernetes.io/last-applied-configuration`).
const ANNOTATIONS_LIMIT: usize = 256 * 1024;

/// (project dir, namespace its docs apply it into, if its objects carry none).
const PROJECTS: &[(&str, Option<&str>)] = &[
    ("argo-cd", Some("argocd")),
    ("kube-prometheus", None),
    ("ingress-nginx", None),
    ("metrics-server", None),
    ("local-path-provisioner", None),
    ("guestbook", Some("guestbook")),
    ("podinfo", Some("podinfo")),
    ("gateway-api", Some("gateway-example")),
    ("flannel", None),
];

fn bundles() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/bundles")
}

/// One object of a bundle file.
struct Obj {
    /// What `kubectl apply -o name` prints for it: `kind.group/name` (lowercase kind).
    id: String,
    /// Size of the annotation client-side apply would add (the object as compact JSON).
    last_applied_len: usize,
}

fn yaml_files(dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .map(|d| d.filter_map(Result::ok).map(|e| e.path()).collect())
        .unwrap_or_default();
    files.retain(|p| p.is_file() && p.extension().is_some_and(|e| e == "yaml" || e == "yml"));
    files.sort();
    files
}

fn objects_of(files: &[PathBuf]) -> Vec<Obj> {
    let mut out = Vec::new();
    for f in files {
        let text = std::fs::read_to_string(f).expect("read bundle");
        for doc in serde_norway::Deserializer::from_str(&text) {
            let v: Value = serde::Deserialize::deserialize(doc).expect("bundle YAML");
            if v.is_null() {
                continue;
            }
            let items = if v["kind"].as_str().is_some_and(|k| k.ends_with("List")) {
                v["items"].as_array().cloned().unwrap_or_default()
            } else {
                vec![v]
            };
            for o in items {
                let kind = o["kind"].as_str().unwrap_or("").to_string();
                let api_version = o["apiVersion"].as_str().unwrap_or("");
                let group = api_version.rsplit_once('/').map_or("", |(g, _)| g);
                let name = o["metadata"]["name"].as_str().unwrap_or("");
                let lower = kind.to_lowercase();
                let id = if group.is_empty() {
                    format!("{lower}/{name}")
                } else {
                    format!("{lower}.{group}/{name}")
                };
                let last_applied_len = serde_json::to_vec(&o).map_or(0, |b| b.len());
                out.push(Obj {
                    id,
                    last_applied_len,
                });
            }
        }
    }
    out
}

/// `kubectl apply [-n ns] -f file… -o name`; the objects it accepted (one line each) and stderr.
fn apply(
    c: &Cluster,
    ns: Option<&str>,
    extra: &[&str],
    files: &[PathBuf],
) -> (Vec<String>, String) {
    let mut args: Vec<String> = vec!["apply".into(), "-o".into(), "name".into()];
    args.extend(extra.iter().map(|s| s.to_string()));
    if let Some(ns) = ns {
        args.extend(["-n".into(), ns.to_string()]);
    }
    for f in files {
        args.extend(["-f".into(), f.to_string_lossy().into_owned()]);
    }
    let refs: Vec<&str> = args.iter().map(String::as_str).collect();
    let (_, out, err) = c.kubectl(&refs);
    (
        out.lines()
            .map(|l| l.trim().to_string())
            .filter(|l| !l.is_empty())
            .collect(),
        err,
    )
}

fn count(ids: impl IntoIterator<Item = String>) -> BTreeMap<String, usize> {
    let mut m = BTreeMap::new();
    for id in ids {
        *m.entry(id).or_default() += 1;
    }
    m
}

/// Applies every project; returns (accepted, total) after asserting each project's outcome.
fn apply_all(c: &Cluster, server_side: bool) -> (usize, usize) {
    let mode: &[&str] = if server_side { &["--server-side"] } else { &[] };
    let (mut accepted_all, mut total_all) = (0, 0);
    let mut report = String::new();
    for (project, ns) in PROJECTS {
        let dir = bundles().join(project);
        if let Some(ns) = ns {
            c.ok(&["create", "namespace", ns]);
        }
        let mut expected = Vec::new();
        let mut accepted = Vec::new();
        let mut errors = String::new();
        // The CRDs first, server-side as the projects' docs say (some are too large for
        // client-side apply's annotation), then wait until they are served.
        let setup = yaml_files(&dir.join("setup"));
        if !setup.is_empty() {
            let objs = objects_of(&setup);
            expected.extend(objs.iter().map(|o| o.id.clone()));
            let (ok, err) = apply(c, None, &["--server-side"], &setup);
            accepted.extend(ok);
            errors.push_str(&err);
            c.ok(&[
                "wait",
                "--for=condition=Established",
                "crd",
                "--all",
                "--timeout=30s",
            ]);
        }
        let files = yaml_files(&dir);
        let objs = objects_of(&files);
        for o in &objs {
            let too_large = !server_side && o.last_applied_len > ANNOTATIONS_LIMIT;
            if !too_large {
                expected.push(o.id.clone());
            }
        }
        let (ok, err) = apply(c, *ns, mode, &files);
        accepted.extend(ok);
        errors.push_str(&err);
        // `-o name` prints `kind.group/name` per object.
        let accepted: Vec<String> = accepted
            .into_iter()
            .map(|l| l.split_whitespace().next().unwrap_or_default().to_string())
            .collect();
        let got = count(accepted);
        let want = count(expected.clone());
        let missing: Vec<(&String, usize)> = want
            .iter()
            .filter(|(k, n)| got.get(*k) != Some(*n))
            .map(|(k, n)| (k, *n))
            .collect();
        let unexpected: Vec<&String> = got.keys().filter(|k| !want.contains_key(*k)).collect();
        assert!(
            missing.is_empty() && unexpected.is_empty(),
            "{project} ({}): refused or short (id, expected count) {missing:?}, accepted unexpectedly {unexpected:?}\nkubectl said:\n{errors}",
            if server_side { "server-side" } else { "client-side" }
        );
        // What kubectl refused is exactly, client-side, the objects too large for the
        // last-applied annotation — with upstream's reason.
        for o in &objs {
            if !server_side && o.last_applied_len > ANNOTATIONS_LIMIT {
                assert!(
                    errors.contains("Too long: may not be more than 262144 bytes")
                        || errors.contains("Too long: must have at most 262144 bytes"),
                    "{project}: {} refused for another reason:\n{errors}",
                    o.id
                );
            }
        }
        let total = objs.len() + objects_of(&setup).len();
        let accepted_count: usize = got.values().sum();
        report.push_str(&format!("{project} {accepted_count}/{total}\n"));
        accepted_all += accepted_count;
        total_all += total;
    }
    eprintln!(
        "{} apply: {accepted_all}/{total_all} objects accepted\n{report}",
        if server_side {
            "server-side"
        } else {
            "client-side"
        }
    );
    (accepted_all, total_all)
}

/// The custom objects were defaulted and pruned by their CRDs' schemas, printed with their
/// printer columns and grouped by their categories, and the gateway-api's admission policy
/// guards its CRDs.
fn check_custom_objects(c: &Cluster) {
    let ns = "gateway-example";
    let get = |path: &str| {
        c.ok(&[
            "get",
            "-n",
            ns,
            "httproute",
            "http-app-1",
            "-o",
            &format!("jsonpath={path}"),
        ])
    };
    // Defaults from the schema: parentRefs' group/kind and backendRefs' weight.
    assert_eq!(get("{.spec.parentRefs[0].kind}"), "Gateway");
    assert_eq!(
        get("{.spec.parentRefs[0].group}"),
        "gateway.networking.k8s.io"
    );
    assert_eq!(get("{.spec.rules[0].backendRefs[0].weight}"), "1");
    // Printer columns and categories.
    let table = c.ok(&["get", "-n", ns, "httproute"]);
    assert!(
        table.starts_with("NAME") && table.contains("HOSTNAMES"),
        "{table}"
    );
    assert!(table.contains("[\"foo.com\"]"), "{table}");
    let category = c.ok(&["get", "-n", ns, "gateway-api", "-o", "name"]);
    for id in [
        "gateway.gateway.networking.k8s.io/my-gateway",
        "httproute.gateway.networking.k8s.io/http-app-1",
    ] {
        assert!(category.contains(id), "{category}");
    }
    // Unknown fields: refused by strict validation, pruned when validation is off.
    let route = r#"{"apiVersion": "gateway.networking.k8s.io/v1", "kind": "HTTPRoute",
        "metadata": {"name": "pruned"}, "spec": {"bogus": 1, "hostnames": ["bar.com"]}}"#;
    let file = c.dir.path().join("route.json");
    std::fs::write(&file, route).expect("write route");
    let file = file.to_string_lossy().into_owned();
    let err = c.fails(&["create", "-n", ns, "-f", &file]);
    assert!(err.contains("unknown field \"spec.bogus\""), "{err}");
    c.ok(&["create", "-n", ns, "--validate=false", "-f", &file]);
    let spec = c.ok(&[
        "get",
        "-n",
        ns,
        "httproute",
        "pruned",
        "-o",
        "jsonpath={.spec}",
    ]);
    assert!(
        !spec.contains("bogus") && spec.contains("bar.com"),
        "{spec}"
    );
    // The project's ValidatingAdmissionPolicy refuses to re-install its pre-release CRDs.
    let crd = bundles().join("gateway-api/setup/gateway.networking.k8s.io_gatewayclasses.yaml");
    let err = c.fails(&["apply", "--server-side", "-f", &crd.to_string_lossy()]);
    assert!(
        err.contains("Installing CRDs with version before v1.5.0 is prohibited by default"),
        "{err}"
    );
}

#[test]
fn install_bundles_apply_server_side() {
    let c = Cluster::start_with(
        format!("100.64.{}.0/24", 100 + std::process::id() % 20),
        // The local-path-provisioner bundle brings its own `local-path` StorageClass (another
        // provisioner), as on k3s, whose docs say to disable the built-in one first.
        &["--no-agent", "--disable-default-storage-class"],
    );
    let (accepted, total) = apply_all(&c, true);
    assert!(accepted > 200, "{accepted}/{total}");
    check_custom_objects(&c);
    // Deleting a CRD removes its objects first.
    c.ok(&[
        "delete",
        "crd",
        "httproutes.gateway.networking.k8s.io",
        "--timeout=60s",
    ]);
    let (code, _, err) = c.kubectl(&["get", "-n", "gateway-example", "httproutes"]);
    assert_ne!(code, 0, "httproutes still served");
    // kubectl's discovery cache (6 h) still lists the kind, so it lists and gets the 404, as
    // against upstream; with a cold cache it no longer knows the type.
    assert!(
        err.contains("the server doesn't have a resource type")
            || err.contains("the server could not find the requested resource"),
        "{err}"
    );
}

#[test]
fn install_bundles_apply_client_side() {
    let c = Cluster::start_with(
        format!("100.64.{}.0/24", 120 + std::process::id() % 20),
        &["--no-agent", "--disable-default-storage-class"],
    );
    let (accepted, total) = apply_all(&c, false);
    assert!(accepted > 200, "{accepted}/{total}");
    // A second client-side apply of the same files is a three-way merge of every object
    // (strategic merge for built-in kinds, merge patch for custom ones): nothing is refused.
    let (ok, err) = apply(
        &c,
        Some("gateway-example"),
        &[],
        &[bundles().join("gateway-api/basic-http.yaml")],
    );
    assert_eq!(ok.len(), 3, "{ok:?}\n{err}");
}
