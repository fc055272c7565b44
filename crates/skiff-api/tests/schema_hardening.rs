//! Issue 10 items 5, 16, 17 at the library level: endpoint address and port rules,
//! Secret.stringData merging, and the decode-time type check of map-of-string fields.

use base64::Engine as _;
use serde_json::{json, Value};
use skiff_api::defaults::apply_defaults;
use skiff_api::resources::by_kind;
use skiff_api::validate::{check_types, validation_causes};
use skiff_api::ResourceInfo;

fn info(api_version: &str, kind: &str) -> &'static ResourceInfo {
    by_kind(api_version, kind).expect("served kind")
}

fn causes(api_version: &str, kind: &str, v: &Value) -> Vec<(String, String)> {
    validation_causes(info(api_version, kind), v, None)
        .into_iter()
        .map(|c| (c.field, c.message))
        .collect()
}

fn has(all: &[(String, String)], field: &str, message: &str) -> bool {
    all.iter().any(|(f, m)| f == field && m == message)
}

#[test]
fn endpoint_addresses_and_ports() {
    let ep = json!({"metadata": {"name": "e", "namespace": "default"}, "subsets": [
        {"addresses": [{"ip": "127.255.0.9"}, {"ip": "not-an-ip"}, {"ip": "10.0.0.1", "hostname": "Bad_Host"}],
         "ports": [{"port": 0, "protocol": "TCP"}, {"name": "b", "port": 80, "protocol": "ICMP"}]},
        {}]});
    let all = causes("v1", "Endpoints", &ep);
    assert!(has(
        &all,
        "subsets[0].addresses[0].ip",
        "Invalid value: \"127.255.0.9\": may not be in the loopback range (127.0.0.0/8, ::1/128)"
    ), "{all:?}");
    assert!(
        has(
            &all,
            "subsets[0].addresses[1].ip",
            "Invalid value: \"not-an-ip\": must be a valid IP address"
        ),
        "{all:?}"
    );
    assert!(
        all.iter()
            .any(|(f, _)| f == "subsets[0].addresses[2].hostname"),
        "{all:?}"
    );
    assert!(
        has(&all, "subsets[0].ports[0].name", "Required value"),
        "{all:?}"
    );
    assert!(
        has(
            &all,
            "subsets[0].ports[0].port",
            "Invalid value: 0: must be between 1 and 65535, inclusive"
        ),
        "{all:?}"
    );
    assert!(
        has(
            &all,
            "subsets[0].ports[1].protocol",
            "Unsupported value: \"ICMP\": supported values: \"SCTP\", \"TCP\", \"UDP\""
        ),
        "{all:?}"
    );
    assert!(
        has(
            &all,
            "subsets[1]",
            "Required value: must specify `addresses` or `notReadyAddresses`"
        ),
        "{all:?}"
    );
    // Ordinary addresses, including private and CGNAT ranges, are fine.
    let ok = json!({"metadata": {"name": "e", "namespace": "default"}, "subsets": [
        {"addresses": [{"ip": "10.1.2.3"}, {"ip": "100.64.0.7"}, {"ip": "2001:db8::1"}],
         "ports": [{"port": 80, "protocol": "TCP"}]}]});
    assert!(causes("v1", "Endpoints", &ok).is_empty());
}

#[test]
fn endpoint_slice_addresses_by_type() {
    let slice = |ty: &str, addrs: Value| {
        json!({"metadata": {"name": "s", "namespace": "default"}, "addressType": ty,
            "endpoints": [{"addresses": addrs}]})
    };
    let all = causes(
        "discovery.k8s.io/v1",
        "EndpointSlice",
        &slice("IPv4", json!(["::1"])),
    );
    assert!(
        has(
            &all,
            "endpoints[0].addresses[0]",
            "Invalid value: \"::1\": must be a valid IPv4 address"
        ),
        "{all:?}"
    );
    let all = causes(
        "discovery.k8s.io/v1",
        "EndpointSlice",
        &slice("IPv4", json!([])),
    );
    assert!(
        has(
            &all,
            "endpoints[0].addresses",
            "Required value: must contain at least 1 address"
        ),
        "{all:?}"
    );
    let all = causes(
        "discovery.k8s.io/v1",
        "EndpointSlice",
        &slice("IPv4", json!(["224.0.0.1"])),
    );
    assert!(has(
        &all,
        "endpoints[0].addresses[0]",
        "Invalid value: \"224.0.0.1\": may not be in the link-local multicast range (224.0.0.0/24, ff02::/10)"
    ), "{all:?}");
    // Other multicast is not special for upstream's validation (the proxy still refuses it).
    let all = causes(
        "discovery.k8s.io/v1",
        "EndpointSlice",
        &slice("IPv4", json!(["239.1.1.1"])),
    );
    assert!(all.is_empty(), "{all:?}");
    let all = causes(
        "discovery.k8s.io/v1",
        "EndpointSlice",
        &slice("IPv6", json!(["::"])),
    );
    assert!(
        has(
            &all,
            "endpoints[0].addresses[0]",
            "Invalid value: \"::\": may not be unspecified (::)"
        ),
        "{all:?}"
    );
    let all = causes(
        "discovery.k8s.io/v1",
        "EndpointSlice",
        &slice("Bogus", json!(["x"])),
    );
    assert!(
        has(
            &all,
            "addressType",
            "Unsupported value: \"Bogus\": supported values: \"FQDN\", \"IPv4\", \"IPv6\""
        ),
        "{all:?}"
    );
}

#[test]
fn string_data_merges_into_data() {
    let b64 = |s: &str| base64::engine::general_purpose::STANDARD.encode(s);
    let mut secret = json!({"metadata": {"name": "s"},
        "data": {"a": b64("from-data"), "b": b64("kept")},
        "stringData": {"a": "from-stringData", "c": "new", "d": null}});
    apply_defaults(info("v1", "Secret"), &mut secret);
    assert!(secret.get("stringData").is_none(), "{secret}");
    assert_eq!(
        secret["data"],
        json!({"a": b64("from-stringData"), "b": b64("kept"), "c": b64("new"), "d": ""})
    );
    assert_eq!(secret["type"], "Opaque");
    // Only stringData: data is created; empty stringData leaves data absent.
    let mut only = json!({"metadata": {"name": "s"}, "stringData": {"k": "v"}});
    apply_defaults(info("v1", "Secret"), &mut only);
    assert_eq!(only["data"], json!({"k": b64("v")}));
    let mut empty = json!({"metadata": {"name": "s"}, "stringData": {}});
    apply_defaults(info("v1", "Secret"), &mut empty);
    assert!(empty.get("data").is_none() && empty.get("stringData").is_none());
}

#[test]
fn map_of_string_types() {
    let err = |api: &str, kind: &str, v: Value| {
        check_types(info(api, kind), &v)
            .err()
            .map(|e| (e.code, e.message))
    };
    assert_eq!(
        err("v1", "ConfigMap", json!({"data": {"a": true}})),
        Some((
            400,
            "ConfigMap in version \"v1\" cannot be handled as a ConfigMap: json: cannot unmarshal bool into Go struct field ConfigMap.data of type string".into()
        ))
    );
    assert_eq!(
        err("v1", "ConfigMap", json!({"binaryData": {"a": 1}})),
        Some((
            400,
            "ConfigMap in version \"v1\" cannot be handled as a ConfigMap: json: cannot unmarshal number into Go struct field ConfigMap.binaryData of type []uint8".into()
        ))
    );
    assert_eq!(
        err("v1", "Service", json!({"spec": {"selector": {"app": ["x"]}}})),
        Some((
            400,
            "Service in version \"v1\" cannot be handled as a Service: json: cannot unmarshal array into Go struct field ServiceSpec.spec.selector of type string".into()
        ))
    );
    assert_eq!(
        err("v1", "Pod", json!({"metadata": {"annotations": ["a"]}})),
        Some((
            400,
            "Pod in version \"v1\" cannot be handled as a Pod: json: cannot unmarshal array into Go struct field ObjectMeta.metadata.annotations of type map[string]string".into()
        ))
    );
    // Strings and nulls are fine; so are quantities given as numbers (not map-of-string).
    assert_eq!(
        err(
            "v1",
            "ConfigMap",
            json!({"data": {"a": "true", "b": null}, "metadata": {"labels": null}})
        ),
        None
    );
    assert_eq!(
        err(
            "v1",
            "Pod",
            json!({"spec": {"containers": [{"name": "c", "resources": {"limits": {"cpu": 1}}}]}})
        ),
        None
    );
}
