//! NetworkPolicy, Ingress and IngressClass: defaults, upstream validation messages, printers.

use serde_json::{json, Value};
use skiff_api::defaults::apply_defaults;
use skiff_api::resources::by_kind;
use skiff_api::table::{to_table, IncludeObject};
use skiff_api::validate::validation_causes;
use skiff_api::ResourceInfo;

fn info(kind: &str) -> &'static ResourceInfo {
    by_kind("networking.k8s.io/v1", kind).expect("served kind")
}

fn causes(kind: &str, v: &Value, old: Option<&Value>) -> Vec<(String, String)> {
    validation_causes(info(kind), v, old)
        .into_iter()
        .map(|c| (c.field, c.message))
        .collect()
}

fn has(all: &[(String, String)], field: &str, message: &str) -> bool {
    all.iter().any(|(f, m)| f == field && m == message)
}

fn row(kind: &str, obj: &Value) -> Vec<Value> {
    let now: jiff::Timestamp = "2026-12-07T12:00:00Z".parse().unwrap();
    let t = to_table(
        info(kind),
        std::slice::from_ref(obj),
        IncludeObject::None,
        json!({}),
        now,
    );
    t["rows"][0]["cells"].as_array().unwrap().clone()
}

#[test]
fn network_policy_defaults() {
    let mut p = json!({"metadata": {"name": "p", "namespace": "d"}, "spec": {
        "ingress": [{"ports": [{"port": 80}]}],
        "egress": [{"ports": [{"port": "dns", "protocol": "UDP"}]}]}});
    apply_defaults(info("NetworkPolicy"), &mut p);
    assert_eq!(p["spec"]["policyTypes"], json!(["Ingress", "Egress"]));
    assert_eq!(p["spec"]["ingress"][0]["ports"][0]["protocol"], "TCP");
    assert_eq!(p["spec"]["egress"][0]["ports"][0]["protocol"], "UDP");
    assert_eq!(p["spec"]["podSelector"], json!({}));
    let mut q = json!({"metadata": {"name": "q", "namespace": "d"}, "spec": {"podSelector": {}}});
    apply_defaults(info("NetworkPolicy"), &mut q);
    assert_eq!(q["spec"]["policyTypes"], json!(["Ingress"]));
    assert!(causes("NetworkPolicy", &q, None).is_empty());
    assert_eq!(row("NetworkPolicy", &q)[..2], [json!("q"), json!("<none>")]);
    let r = json!({"metadata": {"name": "r", "namespace": "d"}, "spec": {"podSelector": {"matchLabels": {"app": "web"}}}});
    assert_eq!(row("NetworkPolicy", &r)[1], json!("app=web"));
}

#[test]
fn network_policy_validation() {
    let p = json!({"metadata": {"name": "p", "namespace": "d"}, "spec": {
        "podSelector": {"matchExpressions": [{"key": "a", "operator": "Bogus"}]},
        "ingress": [{
            "ports": [
                {"protocol": "ICMP", "port": 0},
                {"port": 90, "endPort": 80},
                {"port": "http", "endPort": 81},
                {"endPort": 82},
                {"port": "Bad_Name"}
            ],
            "from": [
                {},
                {"ipBlock": {"cidr": "10.0.0.0/16", "except": ["10.1.0.0/24", "10.0.0.0/16", "nope"]}, "podSelector": {}},
                {"ipBlock": {"cidr": "10.0.0.0/33"}}
            ]
        }],
        "egress": [{"to": [{"ipBlock": {"cidr": ""}}]}],
        "policyTypes": ["Ingress", "Sideways"]
    }});
    let all = causes("NetworkPolicy", &p, None);
    for (f, m) in [
        ("spec.podSelector.matchExpressions[0].operator", "Invalid value: \"Bogus\": not a valid selector operator"),
        ("spec.ingress[0].ports[0].protocol", "Unsupported value: \"ICMP\": supported values: \"TCP\", \"UDP\", \"SCTP\""),
        ("spec.ingress[0].ports[0].port", "Invalid value: 0: must be between 1 and 65535, inclusive"),
        ("spec.ingress[0].ports[1].endPort", "Invalid value: 90: must be greater than or equal to `port`"),
        ("spec.ingress[0].ports[2].endPort", "Invalid value: 81: may not be specified when `port` is non-numeric"),
        ("spec.ingress[0].ports[3].endPort", "Invalid value: 82: may not be specified when `port` is not specified"),
        ("spec.ingress[0].ports[4].port", "Invalid value: \"Bad_Name\": must contain only alpha-numeric characters (a-z, 0-9), and hyphens (-)"),
        ("spec.ingress[0].from[0]", "Required value: must specify a peer"),
        ("spec.ingress[0].from[1]", "Forbidden: may not specify both ipBlock and another peer"),
        ("spec.ingress[0].from[1].ipBlock.except[0]", "Invalid value: \"10.1.0.0/24\": must be a strict subset of `cidr`"),
        ("spec.ingress[0].from[1].ipBlock.except[1]", "Invalid value: \"10.0.0.0/16\": must be a strict subset of `cidr`"),
        ("spec.ingress[0].from[1].ipBlock.except[2]", "Invalid value: \"nope\": must be a valid CIDR value, (e.g. 10.9.8.0/24 or 2001:db8::/64)"),
        ("spec.ingress[0].from[2].ipBlock.cidr", "Invalid value: \"10.0.0.0/33\": must be a valid CIDR value, (e.g. 10.9.8.0/24 or 2001:db8::/64)"),
        ("spec.egress[0].to[0].ipBlock.cidr", "Required value"),
        ("spec.policyTypes[1]", "Unsupported value: \"Sideways\": supported values: \"Ingress\", \"Egress\""),
    ] {
        assert!(has(&all, f, m), "{f}: {m}\n{all:#?}");
    }
    let ok = json!({"metadata": {"name": "p", "namespace": "d"}, "spec": {"podSelector": {},
        "ingress": [{"from": [{"ipBlock": {"cidr": "10.0.0.0/16", "except": ["10.0.1.0/24"]}},
                              {"namespaceSelector": {}, "podSelector": {"matchLabels": {"a": "b"}}}],
                     "ports": [{"protocol": "SCTP", "port": 1000, "endPort": 2000}]}],
        "policyTypes": ["Ingress"]}});
    assert!(causes("NetworkPolicy", &ok, None).is_empty());
}

#[test]
fn ingress_validation_and_printer() {
    let bad = json!({"metadata": {"name": "i", "namespace": "d"}, "spec": {
        "rules": [
            {"host": "1.2.3.4", "http": {"paths": [
                {"path": "/a", "backend": {"service": {"name": "s", "port": {"number": 80}}}},
                {"path": "a//b", "pathType": "Prefix", "backend": {"service": {"name": "s", "port": {"number": 80}}}},
                {"path": "/", "pathType": "Regex", "backend": {"service": {"name": "s", "port": {"name": "http", "number": 80}}}},
                {"path": "/", "pathType": "Exact", "backend": {"service": {"name": "s", "port": {}}, "resource": {"kind": "K", "name": "n"}}},
                {"path": "/", "pathType": "Exact", "backend": {}},
                {"path": "/x/.", "pathType": "ImplementationSpecific", "backend": {"service": {"name": "Bad", "port": {"number": 70000}}}}
            ]}},
            {"host": "*.bad*.com", "http": {"paths": []}}
        ],
        "tls": [{"hosts": ["Bad_Host"], "secretName": "Bad"}],
        "ingressClassName": "Bad"
    }});
    let all = causes("Ingress", &bad, None);
    let p = "spec.rules[0].http.paths";
    for (f, m) in [
        ("spec.rules[0].host", "Invalid value: \"1.2.3.4\": must be a DNS name, not an IP address"),
        (&format!("{p}[0].pathType")[..], "Required value: pathType must be specified"),
        (&format!("{p}[1].path")[..], "Invalid value: \"a//b\": must be an absolute path"),
        (&format!("{p}[1].path")[..], "Invalid value: \"a//b\": must not contain '//'"),
        (&format!("{p}[2].pathType")[..], "Unsupported value: \"Regex\": supported values: \"Exact\", \"ImplementationSpecific\", \"Prefix\""),
        (&format!("{p}[2].backend")[..], "Invalid value: \"\": cannot set both port name & port number"),
        (&format!("{p}[3].backend")[..], "Invalid value: \"\": cannot set both resource and service backends"),
        (&format!("{p}[4].backend")[..], "Invalid value: \"\": resource or service backend is required"),
        (&format!("{p}[5].backend.service.port.number")[..], "Invalid value: 70000: must be between 1 and 65535, inclusive"),
        ("spec.rules[1].http.paths", "Required value"),
        ("spec.ingressClassName", "Invalid value: \"Bad\": a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character (e.g. 'example.com', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')"),
    ] {
        assert!(has(&all, f, m), "{f}: {m}\n{all:#?}");
    }
    assert!(all
        .iter()
        .any(|(f, m)| f == "spec.rules[1].host" && m.contains("wildcard DNS-1123")));
    assert!(all.iter().any(|(f, _)| f == "spec.tls[0].hosts[0]"));
    assert!(all.iter().any(|(f, _)| f == "spec.tls[0].secretName"));
    assert!(all
        .iter()
        .any(|(f, _)| f == &format!("{p}[5].backend.service.name")));
    let none = json!({"metadata": {"name": "i", "namespace": "d"}, "spec": {}});
    assert!(
        has(
            &causes("Ingress", &none, None),
            "spec",
            "Invalid value: null: either `defaultBackend` or `rules` must be specified"
        ),
        "{:?}",
        causes("Ingress", &none, None)
    );

    let good = json!({"metadata": {"name": "web", "namespace": "d"}, "spec": {
        "ingressClassName": "nginx",
        "rules": [{"host": "a.example.com", "http": {"paths": [{"path": "/", "pathType": "Prefix",
            "backend": {"service": {"name": "web", "port": {"name": "http"}}}}]}},
                  {"host": "*.example.com"}, {}, {"host": "d.example.com"}],
        "tls": [{"hosts": ["a.example.com"], "secretName": "tls"}]},
        "status": {"loadBalancer": {"ingress": [{"ip": "192.168.100.100"}, {"hostname": "lb.example.com"}]}}});
    assert!(
        causes("Ingress", &good, None).is_empty(),
        "{:?}",
        causes("Ingress", &good, None)
    );
    let r = row("Ingress", &good);
    assert_eq!(r[1], json!("nginx"));
    assert_eq!(r[2], json!("a.example.com,*.example.com + 1 more..."));
    assert_eq!(r[3], json!("192.168.100.1..."));
    assert_eq!(r[4], json!("80, 443"));
}

#[test]
fn ingress_class_validation_and_printer() {
    let mut c = json!({"metadata": {"name": "nginx"}, "spec": {"controller": "example.com/ingress",
        "parameters": {"apiGroup": "k8s.example.com", "kind": "Params", "name": "p"}}});
    apply_defaults(info("IngressClass"), &mut c);
    assert_eq!(c["spec"]["parameters"]["scope"], "Cluster");
    assert!(causes("IngressClass", &c, None).is_empty());
    assert_eq!(
        row("IngressClass", &c)[..3],
        [
            json!("nginx"),
            json!("example.com/ingress"),
            json!("Params.k8s.example.com/p")
        ]
    );
    let mut changed = c.clone();
    changed["spec"]["controller"] = json!("example.com/other");
    assert!(has(
        &causes("IngressClass", &changed, Some(&c)),
        "spec.controller",
        "Invalid value: \"example.com/other\": field is immutable"
    ));
    let bad = json!({"metadata": {"name": "x"}, "spec": {"controller": "nocontroller",
        "parameters": {"kind": "", "name": "p", "scope": "Namespace"}}});
    let all = causes("IngressClass", &bad, None);
    for (f, m) in [
        ("spec.controller", "Invalid value: \"nocontroller\": must be a domain-prefixed path (such as \"acme.io/foo\")"),
        ("spec.parameters.kind", "Required value: kind is required"),
        ("spec.parameters.namespace", "Required value: `parameters.scope` is set to 'Namespace'"),
    ] {
        assert!(has(&all, f, m), "{f}: {m}\n{all:#?}");
    }
    let none = json!({"metadata": {"name": "x"}, "spec": {}});
    assert!(has(
        &causes("IngressClass", &none, None),
        "spec.controller",
        "Required value"
    ));
}
