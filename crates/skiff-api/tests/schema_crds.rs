//! Every CRD of the real-world bundles parses as a structural schema, and the bundles' example
//! custom objects prune (nothing unknown), default and validate cleanly against them.
//!
//! The bundles are the ones vendored for the install tests (`crates/skiff/tests/fixtures/bundles`).

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use serde::Deserialize;
use serde_json::Value;
use skiff_api::schema::Schema;

fn docs(path: &Path) -> Vec<Value> {
    let text = std::fs::read_to_string(path).unwrap();
    let mut out = Vec::new();
    for doc in serde_norway::Deserializer::from_str(&text) {
        let v = Value::deserialize(doc).unwrap();
        if v.is_object() {
            out.push(v);
        }
    }
    out
}

fn yaml_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(rd) = std::fs::read_dir(dir) else {
        return;
    };
    let mut entries: Vec<PathBuf> = rd.flatten().map(|e| e.path()).collect();
    entries.sort();
    for p in entries {
        if p.is_dir() {
            yaml_files(&p, out);
        } else if p.extension().is_some_and(|e| e == "yaml" || e == "yml") {
            out.push(p);
        }
    }
}

fn all_docs() -> Vec<(PathBuf, Value)> {
    let bundles = Path::new(env!("CARGO_MANIFEST_DIR")).join("../skiff/tests/fixtures/bundles");
    let mut files = Vec::new();
    yaml_files(&bundles, &mut files);
    assert!(!files.is_empty(), "no bundles under {}", bundles.display());
    let mut out = Vec::new();
    for f in files {
        for d in docs(&f) {
            if d.get("kind").and_then(Value::as_str) == Some("List") {
                for item in d["items"].as_array().cloned().unwrap_or_default() {
                    out.push((f.clone(), item));
                }
            } else {
                out.push((f.clone(), d));
            }
        }
    }
    out
}

#[test]
fn bundle_crds_are_structural_and_examples_validate() {
    let docs = all_docs();
    let started = std::time::Instant::now();
    // (group, kind, version) -> schema
    let mut schemas: HashMap<(String, String, String), Schema> = HashMap::new();
    let mut crds = 0;
    for (file, d) in &docs {
        if d["kind"] != "CustomResourceDefinition" {
            continue;
        }
        crds += 1;
        let info =
            skiff_api::resources::by_kind("apiextensions.k8s.io/v1", "CustomResourceDefinition")
                .unwrap();
        let mut d = d.clone();
        skiff_api::defaults::prepare_create(info, &mut d);
        skiff_api::defaults::apply_defaults(info, &mut d);
        let causes = skiff_api::validate::validation_causes(info, &d, None);
        assert!(causes.is_empty(), "{}: {causes:#?}", file.display());
        let group = d["spec"]["group"].as_str().unwrap().to_string();
        let kind = d["spec"]["names"]["kind"].as_str().unwrap().to_string();
        for v in d["spec"]["versions"].as_array().unwrap() {
            let raw = &v["schema"]["openAPIV3Schema"];
            let s = Schema::parse(raw)
                .unwrap_or_else(|c| panic!("{} {}: {c:#?}", file.display(), v["name"]));
            let name = v["name"].as_str().unwrap().to_string();
            schemas.insert((group.clone(), kind.clone(), name), s);
        }
    }
    assert_eq!(crds, 23, "CRDs in the bundles");
    let parsed = started.elapsed();
    let started = std::time::Instant::now();
    let mut examples = 0;
    for (file, d) in &docs {
        let Some((group, version)) = d["apiVersion"].as_str().and_then(|a| a.split_once('/'))
        else {
            continue;
        };
        let kind = d["kind"].as_str().unwrap_or("");
        let Some(schema) = schemas.get(&(group.into(), kind.into(), version.into())) else {
            continue;
        };
        examples += 1;
        let mut obj = d.clone();
        let pruned = schema.prune(&mut obj);
        assert!(pruned.is_empty(), "{} {kind}: {pruned:?}", file.display());
        schema.apply_defaults(&mut obj);
        let causes = schema.validate(&obj, None, None);
        assert!(causes.is_empty(), "{} {kind}: {causes:#?}", file.display());
    }
    eprintln!(
        "{crds} CRDs validated and parsed in {parsed:?}, {examples} example objects pruned, \
         defaulted and validated in {:?}",
        started.elapsed()
    );
    // ServiceMonitor, PrometheusRule, GatewayClass, Gateway, HTTPRoute at least.
    assert_eq!(examples, 26, "custom objects in the bundles");
}
