//! The served-resource table.

use skiff_api::resources::{all, by_kind, by_plural};

#[test]
fn served_resources_have_upstream_discovery_data() {
    let cases = [
        ("", "namespaces", "Namespace", false, &["ns"][..], false),
        ("", "nodes", "Node", false, &["no"][..], false),
        ("", "pods", "Pod", true, &["po"][..], true),
        (
            "",
            "replicationcontrollers",
            "ReplicationController",
            true,
            &["rc"][..],
            true,
        ),
        ("", "services", "Service", true, &["svc"][..], true),
        ("", "endpoints", "Endpoints", true, &["ep"][..], false),
        ("", "configmaps", "ConfigMap", true, &["cm"][..], false),
        ("", "secrets", "Secret", true, &[][..], false),
        (
            "",
            "serviceaccounts",
            "ServiceAccount",
            true,
            &["sa"][..],
            false,
        ),
        ("", "events", "Event", true, &["ev"][..], false),
        ("events.k8s.io", "events", "Event", true, &["ev"][..], false),
        ("apps", "daemonsets", "DaemonSet", true, &["ds"][..], true),
        (
            "apps",
            "deployments",
            "Deployment",
            true,
            &["deploy"][..],
            true,
        ),
        ("apps", "replicasets", "ReplicaSet", true, &["rs"][..], true),
        (
            "authentication.k8s.io",
            "selfsubjectreviews",
            "SelfSubjectReview",
            false,
            &[][..],
            false,
        ),
        (
            "authentication.k8s.io",
            "tokenreviews",
            "TokenReview",
            false,
            &[][..],
            false,
        ),
        (
            "authorization.k8s.io",
            "localsubjectaccessreviews",
            "LocalSubjectAccessReview",
            true,
            &[][..],
            false,
        ),
        (
            "authorization.k8s.io",
            "selfsubjectaccessreviews",
            "SelfSubjectAccessReview",
            false,
            &[][..],
            false,
        ),
        (
            "authorization.k8s.io",
            "selfsubjectrulesreviews",
            "SelfSubjectRulesReview",
            false,
            &[][..],
            false,
        ),
        (
            "authorization.k8s.io",
            "subjectaccessreviews",
            "SubjectAccessReview",
            false,
            &[][..],
            false,
        ),
        ("batch", "cronjobs", "CronJob", true, &["cj"][..], true),
        ("batch", "jobs", "Job", true, &[][..], true),
        (
            "discovery.k8s.io",
            "endpointslices",
            "EndpointSlice",
            true,
            &[][..],
            false,
        ),
        (
            "rbac.authorization.k8s.io",
            "roles",
            "Role",
            true,
            &[][..],
            false,
        ),
        (
            "rbac.authorization.k8s.io",
            "rolebindings",
            "RoleBinding",
            true,
            &[][..],
            false,
        ),
        (
            "rbac.authorization.k8s.io",
            "clusterroles",
            "ClusterRole",
            false,
            &[][..],
            false,
        ),
        (
            "rbac.authorization.k8s.io",
            "clusterrolebindings",
            "ClusterRoleBinding",
            false,
            &[][..],
            false,
        ),
        (
            "certificates.k8s.io",
            "certificatesigningrequests",
            "CertificateSigningRequest",
            false,
            &["csr"][..],
            false,
        ),
        (
            "coordination.k8s.io",
            "leases",
            "Lease",
            true,
            &[][..],
            false,
        ),
        (
            "admissionregistration.k8s.io",
            "mutatingwebhookconfigurations",
            "MutatingWebhookConfiguration",
            false,
            &[][..],
            false,
        ),
        (
            "admissionregistration.k8s.io",
            "validatingwebhookconfigurations",
            "ValidatingWebhookConfiguration",
            false,
            &[][..],
            false,
        ),
        (
            "admissionregistration.k8s.io",
            "validatingadmissionpolicies",
            "ValidatingAdmissionPolicy",
            false,
            &[][..],
            false,
        ),
        (
            "admissionregistration.k8s.io",
            "validatingadmissionpolicybindings",
            "ValidatingAdmissionPolicyBinding",
            false,
            &[][..],
            false,
        ),
        (
            "apiextensions.k8s.io",
            "customresourcedefinitions",
            "CustomResourceDefinition",
            false,
            &["crd", "crds"][..],
            false,
        ),
        (
            "apiregistration.k8s.io",
            "apiservices",
            "APIService",
            false,
            &[][..],
            false,
        ),
        (
            "",
            "persistentvolumes",
            "PersistentVolume",
            false,
            &["pv"][..],
            false,
        ),
        (
            "",
            "persistentvolumeclaims",
            "PersistentVolumeClaim",
            true,
            &["pvc"][..],
            false,
        ),
        (
            "",
            "resourcequotas",
            "ResourceQuota",
            true,
            &["quota"][..],
            false,
        ),
        (
            "",
            "limitranges",
            "LimitRange",
            true,
            &["limits"][..],
            false,
        ),
        ("", "podtemplates", "PodTemplate", true, &[][..], false),
        (
            "apps",
            "statefulsets",
            "StatefulSet",
            true,
            &["sts"][..],
            true,
        ),
        (
            "apps",
            "controllerrevisions",
            "ControllerRevision",
            true,
            &[][..],
            false,
        ),
        (
            "storage.k8s.io",
            "storageclasses",
            "StorageClass",
            false,
            &["sc"][..],
            false,
        ),
        (
            "scheduling.k8s.io",
            "priorityclasses",
            "PriorityClass",
            false,
            &["pc"][..],
            false,
        ),
        (
            "policy",
            "poddisruptionbudgets",
            "PodDisruptionBudget",
            true,
            &["pdb"][..],
            false,
        ),
        (
            "networking.k8s.io",
            "networkpolicies",
            "NetworkPolicy",
            true,
            &["netpol"][..],
            false,
        ),
        (
            "networking.k8s.io",
            "ingressclasses",
            "IngressClass",
            false,
            &[][..],
            false,
        ),
        (
            "networking.k8s.io",
            "ingresses",
            "Ingress",
            true,
            &["ing"][..],
            false,
        ),
    ];
    // Besides these, metrics.k8s.io/v1beta1, autoscaling/v2 (and v1) and componentstatuses
    // (checked below).
    assert_eq!(all().len(), cases.len() + 5);
    for (plural, kind, namespaced) in [
        ("nodes", "NodeMetrics", false),
        ("pods", "PodMetrics", true),
    ] {
        let r = by_plural("metrics.k8s.io", "v1beta1", plural).expect("metrics kind");
        assert_eq!(r.kind, kind);
        assert_eq!(r.list_kind, format!("{kind}List"));
        assert_eq!(r.namespaced, namespaced);
        assert_eq!(r.verbs, ["get", "list"]);
        assert!(r.subresources.is_empty() && r.short_names.is_empty());
    }
    let hpa = by_plural("autoscaling", "v2", "horizontalpodautoscalers").expect("hpa");
    assert_eq!(
        (hpa.kind, hpa.short_names),
        ("HorizontalPodAutoscaler", &["hpa"][..])
    );
    assert!(hpa.categories.contains(&"all") && hpa.subresources == ["status"]);
    let hpa_v1 = by_plural("autoscaling", "v1", "horizontalpodautoscalers").expect("hpa v1");
    assert_eq!(hpa_v1.kind, hpa.kind);
    let cs = by_plural("", "v1", "componentstatuses").expect("componentstatuses");
    assert_eq!(
        (cs.namespaced, cs.short_names, cs.verbs),
        (false, &["cs"][..], &["get", "list"][..])
    );
    for (group, plural, kind, namespaced, short, in_all) in cases {
        let r = by_plural(group, "v1", plural).unwrap_or_else(|| panic!("{group}/{plural}"));
        assert_eq!(r.kind, kind);
        assert_eq!(r.list_kind, format!("{kind}List"));
        assert_eq!(r.namespaced, namespaced, "{plural}");
        assert_eq!(r.short_names, short, "{plural}");
        assert_eq!(r.categories.contains(&"all"), in_all, "{plural}");
        assert!(
            (r.verbs.contains(&"watch") && r.verbs.contains(&"patch")) || r.verbs == ["create"],
            "{plural}"
        );
    }
    let d = by_kind("apps/v1", "Deployment").expect("deployment");
    assert_eq!(d.subresources, ["status", "scale"]);
    assert_eq!(d.group_resource(), "deployments.apps");
    let j = by_kind("batch/v1", "Job").expect("job");
    assert_eq!(j.subresources, ["status"]);
    assert_eq!(j.group_resource(), "jobs.batch");
    assert!(j.orphans_by_default());
    assert!(!d.orphans_by_default());
    // DaemonSets: status only (no scale), Background deletion by default like upstream.
    let ds = by_kind("apps/v1", "DaemonSet").expect("daemonset");
    assert_eq!(ds.subresources, ["status"]);
    assert_eq!(ds.group_resource(), "daemonsets.apps");
    assert_eq!(ds.singular, "daemonset");
    assert_eq!(ds.verbs.len(), 8);
    assert!(!ds.orphans_by_default());
    // Upstream's discovery order within apps/v1 (kubectl get all prints in this order).
    let apps: Vec<&str> = all()
        .iter()
        .filter(|r| r.group == "apps")
        .map(|r| r.plural)
        .collect();
    assert_eq!(
        apps,
        [
            "controllerrevisions",
            "daemonsets",
            "deployments",
            "replicasets",
            "statefulsets"
        ]
    );
    // batch/v1 CronJobs: status only, listed before jobs, and (unlike Jobs, and unlike
    // batch/v1beta1 CronJobs) deleting one deletes its Jobs unless told otherwise.
    let cj = by_kind("batch/v1", "CronJob").expect("cronjob");
    assert_eq!(cj.subresources, ["status"]);
    assert_eq!(cj.group_resource(), "cronjobs.batch");
    assert_eq!((cj.singular, cj.verbs.len()), ("cronjob", 8));
    assert!(!cj.orphans_by_default());
    let batch: Vec<&str> = all()
        .iter()
        .filter(|r| r.group == "batch")
        .map(|r| r.plural)
        .collect();
    assert_eq!(batch, ["cronjobs", "jobs"]);
    let p = by_kind("v1", "Pod").expect("pod");
    assert_eq!(
        p.subresources,
        [
            "status",
            "binding",
            "eviction",
            "log",
            "exec",
            "ephemeralcontainers",
            "attach",
            "portforward",
            "proxy"
        ]
    );
    assert!(!by_plural("", "v1", "namespaces")
        .expect("ns")
        .verbs
        .contains(&"deletecollection"));
}
