//! The admission hooks of the kinds that have any, one module per kind, and the registry table
//! that maps (group, kind) to them. A kind without an entry gets the generic path only.

mod certificates;
mod endpoints;
mod namespaces;
mod nodes;
mod pods;
mod rbac;
mod reviews;
mod services;
mod tokenreview;

use crate::admission::Registry;

/// Every kind's hooks; `default_toleration_seconds` is the pods' DefaultTolerationSeconds.
pub(crate) fn registry(default_toleration_seconds: i64) -> Registry {
    let pods = pods::PodHooks {
        default_toleration_seconds,
    };
    let slices = "discovery.k8s.io";
    let authz = "authorization.k8s.io";
    let rbac = "rbac.authorization.k8s.io";
    Registry::default()
        .with("", "Namespace", namespaces::NamespaceHooks)
        .with("", "Node", nodes::NodeHooks)
        .with("", "Pod", pods)
        .with("", "Service", services::ServiceHooks)
        .with("", "Endpoints", endpoints::ENDPOINTS)
        .with(slices, "EndpointSlice", endpoints::ENDPOINT_SLICES)
        .with(
            "authentication.k8s.io",
            "SelfSubjectReview",
            reviews::SelfSubjectReview,
        )
        .with(rbac, "Role", rbac::RbacHooks)
        .with(rbac, "ClusterRole", rbac::RbacHooks)
        .with(rbac, "RoleBinding", rbac::RbacHooks)
        .with(rbac, "ClusterRoleBinding", rbac::RbacHooks)
        .with(authz, "SubjectAccessReview", reviews::AccessReview::Subject)
        .with(
            authz,
            "SelfSubjectAccessReview",
            reviews::AccessReview::SelfSubject,
        )
        .with(
            authz,
            "LocalSubjectAccessReview",
            reviews::AccessReview::Local,
        )
        .with(
            authz,
            "SelfSubjectRulesReview",
            reviews::SelfSubjectRulesReview,
        )
        .with(
            "authentication.k8s.io",
            "TokenReview",
            tokenreview::TokenReview,
        )
        .with(
            "certificates.k8s.io",
            "CertificateSigningRequest",
            certificates::CsrHooks,
        )
        .with(
            "apiextensions.k8s.io",
            "CustomResourceDefinition",
            crate::crd::controller::CrdHooks,
        )
}

#[cfg(test)]
mod tests {
    use std::net::Ipv4Addr;
    use std::path::Path;
    use std::sync::Arc;

    use serde_json::{json, Value};

    use super::registry;
    use crate::admission::{self, DeleteDecision, Registry};
    use crate::ctx::{Ctx, DeleteOpts};
    use crate::keys::encode;
    use crate::query::Query;
    use crate::storage::{delete_object, prepare_create, Deleted};
    use crate::{AppState, Tokens};

    fn state(dir: &Path, hooks: Option<Registry>) -> Arc<AppState> {
        let store = Arc::new(skiff_store::SqliteStore::open(&dir.join("state.db")).unwrap());
        let (_tx, rx) = tokio::sync::watch::channel(false);
        let tokens = Tokens {
            admin: "admin".into(),
            node: "node".into(),
        };
        let st = AppState::new(store, tokens, rx);
        let Some(hooks) = hooks else {
            return st;
        };
        let Ok(mut st) = Arc::try_unwrap(st) else {
            panic!("state is shared")
        };
        st.admission = hooks;
        Arc::new(st)
    }

    fn ctx(st: &Arc<AppState>, plural: &str, ns: Option<&str>) -> Ctx {
        Ctx {
            st: st.clone(),
            info: skiff_api::resources::by_plural("", "v1", plural).unwrap(),
            ns: ns.map(str::to_string),
            query: Query::default(),
            headers: Default::default(),
            user: Arc::new(crate::auth::UserInfo::apiserver()),
            custom: None,
        }
    }

    fn service() -> Value {
        json!({"apiVersion": "v1", "kind": "Service",
            "metadata": {"name": "web", "namespace": "default"},
            "spec": {"ports": [{"port": 80}]}})
    }

    async fn store_pod(ctx: &Ctx, node: &str) {
        let pod = json!({"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": "p", "namespace": "default", "uid": "u-p"},
            "spec": {"nodeName": node, "terminationGracePeriodSeconds": 45,
                "containers": [{"name": "c", "image": "busybox"}]},
            "status": {"phase": "Running"}});
        ctx.st
            .store
            .create(&ctx.key("p"), encode(&pod))
            .await
            .unwrap();
    }

    #[tokio::test]
    async fn service_create_allocates_through_the_hook_and_a_failed_write_releases() {
        let dir = tempfile::tempdir().unwrap();
        let st = state(dir.path(), None);
        let ctx = ctx(&st, "services", Some("default"));
        let mut svc = service();
        prepare_create(&ctx, &mut svc, false).unwrap();
        let reserved = ctx.hooks().reserve_create(&ctx, &mut svc).await.unwrap();
        assert!(reserved.is_some());
        let ip: Ipv4Addr = svc["spec"]["clusterIP"].as_str().unwrap().parse().unwrap();
        assert_eq!(
            ip.octets()[..2],
            [100, 65],
            "{ip} is in the default service CIDR"
        );
        let key = format!("/registry/ranges/serviceips/{ip}");
        assert!(st.store.get(&key).await.unwrap().is_some(), "claimed");
        admission::finish(&st, reserved, false).await;
        assert!(st.store.get(&key).await.unwrap().is_none(), "released");
    }

    #[tokio::test]
    async fn a_kind_without_hooks_takes_the_generic_path() {
        let reg = registry(300);
        let cm = skiff_api::resources::by_plural("", "v1", "configmaps").unwrap();
        let hooks = reg.for_kind(cm);
        assert!(!hooks.keeps_status_on_create());
        assert!(hooks.remove_when_finalized());
        assert!(!hooks.returns_deleted_object());
        let obj = json!({"metadata": {"name": "c"}});
        let decision = hooks.on_delete(&obj, &DeleteOpts::default(), jiff::Timestamp::now());
        assert_eq!(decision, DeleteDecision::Generic);

        // Without the Service entry the same create claims nothing: the registry allocates.
        let dir = tempfile::tempdir().unwrap();
        let st = state(dir.path(), Some(Registry::default()));
        let ctx = ctx(&st, "services", Some("default"));
        let mut svc = service();
        prepare_create(&ctx, &mut svc, false).unwrap();
        let reserved = ctx.hooks().reserve_create(&ctx, &mut svc).await.unwrap();
        assert!(reserved.is_none());
        assert_eq!(svc.pointer("/spec/clusterIP"), None);
        assert!(!ctx.hooks().returns_deleted_object());
    }

    #[tokio::test]
    async fn deleting_a_bound_pod_is_graceful_through_the_hook() {
        let dir = tempfile::tempdir().unwrap();
        let st = state(dir.path(), None);
        let ctx = ctx(&st, "pods", Some("default"));
        store_pod(&ctx, "n1").await;
        let before = jiff::Timestamp::now();
        let Deleted::Pending(pod) = delete_object(&ctx, "p", &DeleteOpts::default())
            .await
            .unwrap()
        else {
            panic!("a bound pod is not removed at once")
        };
        assert_eq!(pod["metadata"]["deletionGracePeriodSeconds"], 45);
        let at: jiff::Timestamp = pod["metadata"]["deletionTimestamp"]
            .as_str()
            .unwrap()
            .parse()
            .unwrap();
        assert!(at >= before + jiff::SignedDuration::from_secs(44));
        let (stored, _) = ctx.get_current("p").await.unwrap();
        assert_eq!(
            stored["metadata"]["deletionTimestamp"],
            pod["metadata"]["deletionTimestamp"]
        );

        // A longer grace period does not extend a pending deletion.
        let longer = DeleteOpts {
            grace: Some(60),
            ..Default::default()
        };
        let Deleted::Pending(again) = delete_object(&ctx, "p", &longer).await.unwrap() else {
            panic!("still pending")
        };
        assert_eq!(again["metadata"]["deletionGracePeriodSeconds"], 45);

        // Grace 0 removes it.
        let now = DeleteOpts {
            grace: Some(0),
            ..Default::default()
        };
        let Deleted::Gone(_) = delete_object(&ctx, "p", &now).await.unwrap() else {
            panic!("grace 0 removes the pod")
        };
        assert!(st.store.get(&ctx.key("p")).await.unwrap().is_none());
    }

    #[tokio::test]
    async fn without_the_pod_hook_a_bound_pod_is_removed_at_once() {
        let dir = tempfile::tempdir().unwrap();
        let st = state(dir.path(), Some(Registry::default()));
        let ctx = ctx(&st, "pods", Some("default"));
        store_pod(&ctx, "n1").await;
        let Deleted::Gone(_) = delete_object(&ctx, "p", &DeleteOpts::default())
            .await
            .unwrap()
        else {
            panic!("no hook: nothing holds the pod")
        };
    }

    #[tokio::test]
    async fn new_pods_start_pending_with_the_default_tolerations() {
        let dir = tempfile::tempdir().unwrap();
        let st = state(dir.path(), None);
        let ctx = ctx(&st, "pods", Some("default"));
        let mut pod = json!({"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": "p", "namespace": "default"},
            "spec": {"containers": [{"name": "c", "image": "busybox"}]},
            "status": {"phase": "Running"}});
        prepare_create(&ctx, &mut pod, false).unwrap();
        assert_eq!(
            pod["status"]["phase"], "Pending",
            "the sent status is reset"
        );
        let tolerations = pod["spec"]["tolerations"].as_array().unwrap();
        for key in [
            "node.kubernetes.io/not-ready",
            "node.kubernetes.io/unreachable",
        ] {
            assert!(
                tolerations.iter().any(|t| t["key"] == key
                    && t["effect"] == "NoExecute"
                    && t["tolerationSeconds"] == crate::DEFAULT_TOLERATION_SECONDS),
                "{key} in {tolerations:?}"
            );
        }
    }

    #[tokio::test]
    async fn deleting_a_namespace_marks_it_terminating() {
        let dir = tempfile::tempdir().unwrap();
        let st = state(dir.path(), None);
        let ctx = ctx(&st, "namespaces", None);
        let ns = json!({"apiVersion": "v1", "kind": "Namespace",
            "metadata": {"name": "team", "uid": "u-ns"},
            "spec": {"finalizers": ["kubernetes"]}, "status": {"phase": "Active"}});
        st.store
            .create(&ctx.key("team"), encode(&ns))
            .await
            .unwrap();
        let dry = DeleteOpts {
            dry_run: true,
            ..Default::default()
        };
        let Deleted::Pending(obj) = delete_object(&ctx, "team", &dry).await.unwrap() else {
            panic!("a namespace is emptied before it goes")
        };
        assert_eq!(obj["status"], json!({"phase": "Terminating"}));
        assert!(obj["metadata"]["deletionTimestamp"].is_string());
        let (stored, _) = ctx.get_current("team").await.unwrap();
        assert_eq!(
            stored["status"]["phase"], "Active",
            "dry run stores nothing"
        );
    }
}
