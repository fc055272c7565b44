//! Event recorder against a real API server: the ReplicaSet controller's SuccessfulCreate
//! events as `kubectl describe` lists them, and aggregation of repeats.

mod common;

use std::time::Duration;

use k8s_openapi::api::apps::v1::ReplicaSet;
use k8s_openapi::api::core::v1::{Event, ObjectReference};
use kube::api::{Api, ListParams, PostParams};
use serde_json::json;
use skiff_client::events::{EventType, Recorder};

const WAIT: Duration = Duration::from_secs(30);

#[tokio::test]
async fn replicaset_records_successful_create() {
    let c = common::TestCluster::start().await;
    let rss: Api<ReplicaSet> = Api::namespaced(c.client.clone(), "default");
    let rs: ReplicaSet = serde_json::from_value(json!({
        "metadata": {"name": "web"},
        "spec": {"replicas": 2, "selector": {"matchLabels": {"app": "web"}},
                 "template": {"metadata": {"labels": {"app": "web"}},
                              "spec": {"containers": [{"name": "c", "image": "nginx"}]}}}
    }))
    .expect("rs");
    let rs = rss
        .create(&PostParams::default(), &rs)
        .await
        .expect("create");
    let uid = rs.metadata.uid.expect("uid");
    let events: Api<Event> = Api::namespaced(c.client.clone(), "default");
    // The query `kubectl describe rs web` sends.
    let lp = ListParams::default().fields(&format!(
        "involvedObject.name=web,involvedObject.namespace=default,involvedObject.kind=ReplicaSet,involvedObject.uid={uid}"
    ));
    c.wait_for("2 SuccessfulCreate events", WAIT, || async {
        events.list(&lp).await.is_ok_and(|l| {
            l.items
                .iter()
                .filter(|e| e.reason.as_deref() == Some("SuccessfulCreate"))
                .count()
                == 2
        })
    })
    .await;
    for e in events.list(&lp).await.expect("list").items {
        assert_eq!(e.type_.as_deref(), Some("Normal"));
        assert!(e
            .message
            .as_deref()
            .unwrap_or("")
            .starts_with("Created pod: web-"));
        assert_eq!(
            e.source.and_then(|s| s.component).as_deref(),
            Some("replicaset-controller")
        );
        assert_eq!(
            e.reporting_component.as_deref(),
            Some("replicaset-controller")
        );
        assert_eq!(e.count, Some(1));
        assert!(e.first_timestamp.is_some() && e.last_timestamp.is_some());
        assert!(e.metadata.name.unwrap_or_default().starts_with("web."));
    }
}

#[tokio::test]
async fn repeats_are_aggregated() {
    let c = common::TestCluster::start().await;
    let rec = Recorder::new(c.client.clone());
    let obj = ObjectReference {
        api_version: Some("v1".into()),
        kind: Some("Node".into()),
        name: Some("n9".into()),
        uid: Some("node-uid".into()),
        ..Default::default()
    };
    for _ in 0..3 {
        rec.publish(
            "node-controller",
            &obj,
            EventType::Warning,
            "NodeNotReady",
            "Node n9 status is now: NodeNotReady",
        )
        .await;
    }
    rec.publish(
        "node-controller",
        &obj,
        EventType::Normal,
        "RegisteredNode",
        "Node n9 event: Registered Node n9",
    )
    .await;
    // Cluster-scoped objects get their events in "default".
    let events: Api<Event> = Api::namespaced(c.client.clone(), "default");
    let all = events
        .list(&ListParams::default().fields("involvedObject.name=n9"))
        .await
        .expect("list")
        .items;
    let not_ready: Vec<&Event> = all
        .iter()
        .filter(|e| e.reason.as_deref() == Some("NodeNotReady"))
        .collect();
    assert_eq!(not_ready.len(), 1, "repeats share one Event");
    assert_eq!(not_ready[0].count, Some(3));
    assert_eq!(not_ready[0].type_.as_deref(), Some("Warning"));
    assert!(
        not_ready[0].last_timestamp.as_ref().map(|t| t.0)
            >= not_ready[0].first_timestamp.as_ref().map(|t| t.0)
    );
    let registered: Vec<&Event> = all
        .iter()
        .filter(|e| e.reason.as_deref() == Some("RegisteredNode"))
        .collect();
    assert_eq!(registered.len(), 1);
    assert_eq!(registered[0].count, Some(1));
}
