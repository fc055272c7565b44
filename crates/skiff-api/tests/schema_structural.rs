//! skiff_api::schema against upstream's wording: structural-schema causes, kube-openapi
//! validation messages, list types, rules, defaulting and pruning; and the CRD kind's own
//! defaults, validation and table.

use serde_json::{json, Value};
use skiff_api::schema::{unknown_field, ListType, Rule, RuleEngine, RuleOutcome, Schema};
use skiff_api::Cause;

fn parse(v: Value) -> Schema {
    Schema::parse(&v).unwrap_or_else(|c| panic!("{c:#?}"))
}

fn errs(v: Value) -> Vec<(String, String)> {
    match Schema::parse(&v) {
        Ok(_) => panic!("expected non-structural: {v}"),
        Err(c) => c.into_iter().map(|c| (c.field, c.message)).collect(),
    }
}

fn causes(c: Vec<Cause>) -> Vec<(String, String, String)> {
    c.into_iter()
        .map(|c| (c.reason, c.field, c.message))
        .collect()
}

fn triple(r: &str, f: &str, m: &str) -> (String, String, String) {
    (r.into(), f.into(), m.into())
}

fn widget() -> Schema {
    parse(json!({
        "type": "object",
        "properties": {
            "spec": {
                "type": "object",
                "required": ["size"],
                "properties": {
                    "replicas": {"type": "integer", "minimum": 1, "maximum": 10},
                    "size": {"type": "string", "enum": ["small", "large"]},
                    "name": {"type": "string", "minLength": 3, "maxLength": 5, "pattern": "^[a-z]+$"},
                    "when": {"type": "string", "format": "date-time"},
                    "ip": {"type": "string", "format": "ipv4"},
                    "ratio": {"type": "number", "multipleOf": 0.5, "exclusiveMaximum": true, "maximum": 2},
                    "port": {"x-kubernetes-int-or-string": true},
                    "tags": {"type": "array", "items": {"type": "string"}, "maxItems": 2, "minItems": 1,
                             "x-kubernetes-list-type": "set"},
                    "ports": {"type": "array", "x-kubernetes-list-type": "map",
                              "x-kubernetes-list-map-keys": ["name"],
                              "items": {"type": "object", "required": ["name"],
                                        "properties": {"name": {"type": "string"},
                                                       "port": {"type": "integer", "default": 80}}}},
                    "labels": {"type": "object", "additionalProperties": {"type": "string"}},
                    "free": {"type": "object", "x-kubernetes-preserve-unknown-fields": true},
                    "nested": {"type": "object", "default": {},
                               "properties": {"a": {"type": "string", "default": "x"},
                                              "b": {"type": "object", "properties": {"c": {"type": "integer", "default": 1}}}}},
                    "maybe": {"type": "string", "nullable": true},
                    "opt": {"type": "string"},
                },
            },
            "status": {"type": "object", "properties": {"ready": {"type": "boolean"}}},
        },
    }))
}

#[test]
fn type_errors_read_like_kube_openapi() {
    let s = widget();
    let obj = json!({"apiVersion": "x.io/v1", "kind": "W", "metadata": {"name": "a"},
                     "spec": {"size": "small", "replicas": "three"}});
    assert_eq!(
        causes(s.validate(&obj, None, None)),
        [triple(
            "FieldValueTypeInvalid",
            "spec.replicas",
            "Invalid value: \"string\": spec.replicas in body must be of type integer: \"string\""
        )]
    );
    let obj = json!({"spec": {"size": "small", "port": true, "tags": ["a", 1], "maybe": null, "opt": null}});
    assert_eq!(
        causes(s.validate(&obj, None, None)),
        [
            triple("FieldValueTypeInvalid", "spec.opt",
                   "Invalid value: \"null\": spec.opt in body must be of type string: \"null\""),
            triple("FieldValueTypeInvalid", "spec.port",
                   "Invalid value: \"boolean\": spec.port in body must be of type integer,string: \"boolean\""),
            triple("FieldValueTypeInvalid", "spec.tags.1",
                   "Invalid value: \"integer\": spec.tags.1 in body must be of type string: \"integer\""),
        ]
    );
    // Whole floats are integers; integers are numbers.
    let obj = json!({"spec": {"size": "small", "replicas": 2.0, "ratio": 1}});
    assert_eq!(s.validate(&obj, None, None), []);
}

#[test]
fn value_errors_read_like_upstream() {
    let s = widget();
    let obj = json!({"spec": {"replicas": 0, "size": "medium", "name": "AB", "when": "yesterday",
                              "ip": "1.2.3", "ratio": 2, "tags": ["a", "b", "c"]}});
    assert_eq!(
        causes(s.validate(&obj, None, None)),
        [
            triple("FieldValueTypeInvalid", "spec.ip",
                   "Invalid value: \"1.2.3\": spec.ip in body must be of type ipv4: \"1.2.3\""),
            triple("FieldValueInvalid", "spec.name",
                   "Invalid value: \"AB\": spec.name in body should be at least 3 chars long"),
            triple("FieldValueInvalid", "spec.name",
                   "Invalid value: \"AB\": spec.name in body should match '^[a-z]+$'"),
            triple("FieldValueInvalid", "spec.ratio",
                   "Invalid value: 2: spec.ratio in body should be less than 2"),
            triple("FieldValueInvalid", "spec.replicas",
                   "Invalid value: 0: spec.replicas in body should be greater than or equal to 1"),
            triple("FieldValueNotSupported", "spec.size",
                   "Unsupported value: \"medium\": supported values: \"small\", \"large\""),
            triple("FieldValueTooMany", "spec.tags", "Too many: 3: must have at most 2 items"),
            triple("FieldValueTypeInvalid", "spec.when",
                   "Invalid value: \"yesterday\": spec.when in body must be of type date-time: \"yesterday\""),
        ]
    );
    let obj = json!({"spec": {"replicas": 11, "name": "abcdef", "ratio": 0.7, "tags": []}});
    assert_eq!(
        causes(s.validate(&obj, None, None)),
        [
            triple(
                "FieldValueTooLong",
                "spec.name",
                "Too long: may not be more than 5 bytes"
            ),
            triple(
                "FieldValueInvalid",
                "spec.ratio",
                "Invalid value: 0.7: spec.ratio in body should be a multiple of 0.5"
            ),
            triple(
                "FieldValueInvalid",
                "spec.replicas",
                "Invalid value: 11: spec.replicas in body should be less than or equal to 10"
            ),
            triple(
                "FieldValueInvalid",
                "spec.tags",
                "Invalid value: 0: spec.tags in body should have at least 1 items"
            ),
            triple("FieldValueRequired", "spec.size", "Required value"),
        ]
    );
    let good = json!({"spec": {"size": "large", "when": "2024-01-02T03:04:05Z", "ip": "10.0.0.1",
                               "port": "http", "maybe": null, "labels": {"a": "b"}}});
    assert_eq!(s.validate(&good, None, None), []);
}

#[test]
fn junctors_report_like_kube_openapi() {
    let s = parse(
        json!({"type": "object", "properties": {"spec": {"type": "object",
            "properties": {
                "a": {"type": "string"}, "b": {"type": "string"},
                "n": {"type": "integer", "not": {"enum": [13]}},
                "q": {"x-kubernetes-int-or-string": true,
                      "anyOf": [{"type": "integer"}, {"type": "string"}]},
            },
            "oneOf": [{"required": ["a"]}, {"required": ["b"]}],
            "allOf": [{"properties": {"a": {"maxLength": 2}}}],
        }}}),
    );
    let obj = json!({"spec": {"a": "xyz", "b": "y", "n": 13, "q": "80%"}});
    assert_eq!(
        causes(s.validate(&obj, None, None)),
        [
            triple("FieldValueInvalid", "",
                   "Invalid value: \"\": \"spec\" must validate one and only one schema (oneOf). Found 2 valid alternatives"),
            triple("FieldValueTooLong", "spec.a", "Too long: may not be more than 2 bytes"),
            triple("FieldValueInvalid", "",
                   "Invalid value: \"\": \"spec\" must validate all the schemas (allOf). None validated"),
            triple("FieldValueInvalid", "",
                   "Invalid value: \"\": \"spec.n\" must not validate the schema (not)"),
        ]
    );
    let obj = json!({"spec": {"q": 80}});
    assert_eq!(
        causes(s.validate(&obj, None, None)),
        [
            triple("FieldValueInvalid", "",
                   "Invalid value: \"\": \"spec\" must validate one and only one schema (oneOf). Found none valid"),
            triple("FieldValueRequired", "spec.a", "Required value"),
        ]
    );
}

#[test]
fn updates_ratchet_unchanged_values() {
    let s = widget();
    // The old object was stored before the schema tightened: its bad values may stay.
    let old = json!({"spec": {"size": "tiny", "replicas": 0, "tags": ["a", "a"],
                              "ports": [{"name": "p", "port": "x"}]}});
    let new = json!({"spec": {"size": "tiny", "replicas": 0, "tags": ["a", "a"],
                              "ports": [{"name": "p", "port": "x"}, {"name": "q", "port": "y"}],
                              "name": "abc"}});
    assert_eq!(
        causes(s.validate(&new, Some(&old), None)),
        [triple("FieldValueTypeInvalid", "spec.ports.1.port",
                "Invalid value: \"string\": spec.ports.1.port in body must be of type integer: \"string\"")]
    );
    // Changed values are validated again.
    let new = json!({"spec": {"size": "huge", "replicas": 0, "tags": ["a", "a"]}});
    assert_eq!(
        causes(s.validate(&new, Some(&old), None)),
        [triple(
            "FieldValueNotSupported",
            "spec.size",
            "Unsupported value: \"huge\": supported values: \"small\", \"large\""
        )]
    );
}

#[test]
fn list_types_report_duplicates_with_field_paths() {
    let s = widget();
    let obj = json!({"spec": {"size": "small", "tags": ["a", "a"],
                              "ports": [{"name": "web"}, {"name": "web", "port": 81}]}});
    assert_eq!(
        causes(s.validate(&obj, None, None)),
        [
            triple(
                "FieldValueTooMany",
                "spec.tags",
                "Too many: 2: must have at most 2 items"
            )
            .clone(),
            triple(
                "FieldValueDuplicate",
                "spec.ports[1]",
                "Duplicate value: map[string]interface {}{\"name\":\"web\"}"
            ),
            triple(
                "FieldValueDuplicate",
                "spec.tags[1]",
                "Duplicate value: \"a\""
            ),
        ]
        .into_iter()
        .filter(|c| c.0 != "FieldValueTooMany")
        .collect::<Vec<_>>()
    );
    assert_eq!(s.list_type(&["spec", "tags"]), Some(ListType::Set));
    assert_eq!(
        s.list_type(&["spec", "ports"]),
        Some(ListType::Map(vec!["name".into()]))
    );
    assert_eq!(s.list_type(&["spec", "size"]), None);
    let nested = parse(
        json!({"type": "object", "properties": {"spec": {"type": "object", "properties": {
            "groups": {"type": "array", "items": {"type": "object", "properties": {
                "rules": {"type": "array", "items": {"type": "string"}}}}},
            "byName": {"type": "object", "additionalProperties": {"type": "array",
                "x-kubernetes-list-type": "set", "items": {"type": "string"}}},
        }}}}),
    );
    assert_eq!(
        nested.list_type(&["spec", "groups", "rules"]),
        Some(ListType::Atomic)
    );
    assert_eq!(
        nested.list_type(&["spec", "byName", "anykey"]),
        Some(ListType::Set)
    );
    assert!(!nested.has_rules());
    fn shareable<T: Send + Sync>(_: &T) {}
    shareable(&nested);
    assert_eq!(s.list_type(&["spec", "nothing"]), None);
}

#[test]
fn defaults_apply_to_present_objects_and_inside_defaults() {
    let s = widget();
    let mut obj = json!({"spec": {"size": "small", "ports": [{"name": "a"}, {"name": "b", "port": 1}],
                                  "opt": null, "maybe": null}});
    s.apply_defaults(&mut obj);
    assert_eq!(
        obj,
        json!({"spec": {"size": "small",
                        "ports": [{"name": "a", "port": 80}, {"name": "b", "port": 1}],
                        "maybe": null,
                        "nested": {"a": "x"}}})
    );
    // A present nested object gets its own defaults; an absent one does not appear.
    let mut obj = json!({"spec": {"nested": {"b": {}}}});
    s.apply_defaults(&mut obj);
    assert_eq!(obj, json!({"spec": {"nested": {"a": "x", "b": {"c": 1}}}}));
    let mut obj = json!({"metadata": {"name": "x"}});
    s.apply_defaults(&mut obj);
    assert_eq!(obj, json!({"metadata": {"name": "x"}}));
}

#[test]
fn prune_drops_unknown_fields_and_keeps_type_meta() {
    let s = widget();
    let mut obj = json!({"apiVersion": "x.io/v1", "kind": "W",
                         "metadata": {"name": "a", "whatever": 1},
                         "spec": {"size": "small", "bogus": 1, "free": {"any": {"thing": 1}},
                                  "ports": [{"name": "a", "extra": true}],
                                  "labels": {"k": "v"}},
                         "extra": "x"});
    let pruned = s.prune(&mut obj);
    assert_eq!(pruned, [".extra", ".spec.bogus", ".spec.ports[0].extra"]);
    assert_eq!(unknown_field(&pruned[1]), "unknown field \"spec.bogus\"");
    assert_eq!(
        obj,
        json!({"apiVersion": "x.io/v1", "kind": "W", "metadata": {"name": "a", "whatever": 1},
               "spec": {"size": "small", "free": {"any": {"thing": 1}}, "ports": [{"name": "a"}],
                        "labels": {"k": "v"}}})
    );
}

#[test]
fn embedded_resources_keep_type_meta_and_prune_metadata() {
    let s = parse(
        json!({"type": "object", "properties": {"spec": {"type": "object", "properties": {
            "template": {"type": "object", "x-kubernetes-embedded-resource": true,
                         "x-kubernetes-preserve-unknown-fields": true},
            "typed": {"type": "object", "x-kubernetes-embedded-resource": true,
                      "properties": {"data": {"type": "string"}}},
        }}}}),
    );
    let mut obj = json!({"spec": {
        "template": {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p", "junk": 1},
                     "spec": {"x": 1}},
        "typed": {"kind": "ConfigMap", "data": "d", "other": 2},
    }});
    let pruned = s.prune(&mut obj);
    assert_eq!(
        pruned,
        [".spec.template.metadata.junk", ".spec.typed.other"]
    );
    assert_eq!(obj["spec"]["template"]["spec"], json!({"x": 1}));
    assert_eq!(
        causes(s.validate(&obj, None, None)),
        [triple(
            "FieldValueRequired",
            "spec.typed.apiVersion",
            "Required value"
        )]
    );
}

struct Engine;

impl RuleEngine for Engine {
    fn check(&self, rule: &Rule, self_value: &Value, old_self: Option<&Value>) -> RuleOutcome {
        match rule.rule.as_str() {
            "self.min <= self.max" => {
                if self_value["min"].as_i64() <= self_value["max"].as_i64() {
                    RuleOutcome::Pass
                } else {
                    RuleOutcome::Fail(String::new())
                }
            }
            "self == oldSelf" => {
                if Some(self_value) == old_self {
                    RuleOutcome::Pass
                } else {
                    RuleOutcome::Fail(String::new())
                }
            }
            "self.size() < 3" => {
                if self_value.as_str().map_or(0, str::len) < 3 {
                    RuleOutcome::Pass
                } else {
                    RuleOutcome::Fail(String::new())
                }
            }
            "self.nope == 1" => RuleOutcome::Error("no such key: nope".into()),
            "self +" => RuleOutcome::Error("compilation failed: Syntax error".into()),
            _ => RuleOutcome::Error("no such overload".into()),
        }
    }
}

#[test]
fn rules_run_at_their_nodes_with_upstream_messages() {
    let s = parse(json!({"type": "object", "properties": {"spec": {
        "type": "object",
        "x-kubernetes-validations": [
            {"rule": "self.min <= self.max"},
            {"rule": "self.min <= self.max", "message": "min must not exceed max",
             "fieldPath": ".min", "reason": "FieldValueForbidden"},
        ],
        "properties": {
            "min": {"type": "integer"}, "max": {"type": "integer"},
            "id": {"type": "string", "x-kubernetes-validations": [
                {"rule": "self == oldSelf", "message": "id is immutable"}]},
            "names": {"type": "array", "items": {"type": "string",
                      "x-kubernetes-validations": [{"rule": "self.size() < 3"}]}},
            "odd": {"type": "string", "x-kubernetes-validations": [{"rule": "self.foo()"}]},
        },
    }}}));
    let obj = json!({"spec": {"min": 5, "max": 1, "id": "a", "names": ["ab", "abc"]}});
    let got = causes(s.validate(&obj, None, Some(&Engine)));
    assert_eq!(
        got,
        [
            triple(
                "FieldValueInvalid",
                "spec",
                "Invalid value: \"object\": failed rule: self.min <= self.max"
            ),
            triple(
                "FieldValueForbidden",
                "spec.min",
                "Forbidden: min must not exceed max"
            ),
            triple(
                "FieldValueInvalid",
                "spec.names[1]",
                "Invalid value: \"string\": failed rule: self.size() < 3"
            ),
        ]
    );
    // Transition rules need the old object.
    let old = json!({"spec": {"min": 1, "max": 2, "id": "b"}});
    let obj = json!({"spec": {"min": 1, "max": 2, "id": "a", "odd": "x"}});
    assert_eq!(
        causes(s.validate(&obj, Some(&old), Some(&Engine))),
        [
            triple(
                "FieldValueInvalid",
                "spec.id",
                "Invalid value: \"string\": id is immutable"
            ),
            triple(
                "FieldValueInvalid",
                "spec.odd",
                "Invalid value: \"string\": 'no such overload': call arguments did not match a supported operator, function or macro signature for rule: self.foo()"
            ),
        ]
    );
    let s2 = parse(
        json!({"type": "object", "properties": {"spec": {"type": "object",
        "x-kubernetes-validations": [{"rule": "self.nope == 1", "message": " nope "}, {"rule": "self +"}]}}}),
    );
    assert_eq!(
        causes(s2.validate(&json!({"spec": {}}), None, Some(&Engine))),
        [
            triple(
                "FieldValueInvalid",
                "spec",
                "Invalid value: \"object\": no such key: nope evaluating rule: nope"
            ),
            triple(
                "FieldValueInvalid",
                "spec",
                "Invalid value: \"object\": rule compile error: compilation failed: Syntax error"
            ),
        ]
    );
    // No engine: rules are not evaluated.
    assert_eq!(s.validate(&obj, Some(&old), None), []);
    assert!(s.has_rules());
    assert_eq!(s.rules().len(), 5);
}

#[test]
fn non_structural_schemas_name_their_causes() {
    assert_eq!(
        errs(
            json!({"type": "object", "properties": {"spec": {"properties": {"a": {"type": "string"}}}}})
        ),
        [(
            "properties[spec].type".to_string(),
            "Required value: must not be empty for specified object fields".to_string()
        )]
    );
    assert_eq!(
        errs(json!({"type": "object", "properties": {"list": {"type": "array"}}})),
        [(
            "properties[list].items".to_string(),
            "Required value: must be specified".to_string()
        )]
    );
    assert_eq!(
        errs(
            json!({"type": "object", "properties": {"m": {"type": "object",
            "properties": {"a": {"type": "string"}}, "additionalProperties": {"type": "string"}}}})
        ),
        [(
            "properties[m].additionalProperties".to_string(),
            "Forbidden: additionalProperties and properties are mutual exclusive".to_string()
        )]
    );
    assert_eq!(
        errs(json!({"type": "object", "properties": {"metadata": {"type": "object",
            "properties": {"labels": {"type": "object"}}}}})),
        [(
            "properties[metadata]".to_string(),
            "Forbidden: must not specify anything other than name and generateName, but metadata is implicitly specified".to_string()
        )]
    );
    assert_eq!(
        errs(json!({"type": "string"})),
        [(
            "type".to_string(),
            "Invalid value: \"string\": must be object at the root".to_string()
        )]
    );
    assert_eq!(
        errs(
            json!({"type": "object", "properties": {"a": {"type": "string",
            "anyOf": [{"type": "string"}, {"description": "x"}]}}})
        ),
        [
            (
                "properties[a].anyOf[0].type".to_string(),
                "Forbidden: must be empty to be structural".to_string()
            ),
            (
                "properties[a].anyOf[1].description".to_string(),
                "Forbidden: must be empty to be structural".to_string()
            ),
        ]
    );
    assert_eq!(
        errs(json!({"type": "object", "properties": {"l": {"type": "array",
            "x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["k"],
            "items": {"type": "object", "properties": {"k": {"type": "string"}}}}}})),
        [(
            "properties[l].items.properties[k].default".to_string(),
            "Required value: this property is in x-kubernetes-list-map-keys, so it must have a default or be a required property".to_string()
        )]
    );
    assert_eq!(
        errs(json!({"type": "object", "properties": {"p": {"type": "string", "pattern": "(("}}}))
            .len(),
        1
    );
    // Fields named only in value validations must exist structurally.
    assert_eq!(
        errs(
            json!({"type": "object", "properties": {"a": {"type": "string"}},
                    "anyOf": [{"properties": {"b": {"pattern": "x"}}}]})
        ),
        [(
            "properties[b]".to_string(),
            "Required value: because it is defined in anyOf[0].properties[b]".to_string()
        )]
    );
    let c = Schema::parse_at(
        &json!({"type": "object", "anyOf": [{"properties": {"b": {"pattern": "x"}}}]}),
        "spec.versions[0].schema.openAPIV3Schema",
    )
    .unwrap_err();
    assert_eq!(
        c[0].field,
        "spec.versions[0].schema.openAPIV3Schema.properties[b]"
    );
    assert_eq!(
        c[0].message,
        "Required value: because it is defined in spec.versions[0].schema.openAPIV3Schema.anyOf[0].properties[b]"
    );
    // The int-or-string patterns are structural.
    parse(json!({"type": "object", "properties": {
        "a": {"x-kubernetes-int-or-string": true, "anyOf": [{"type": "integer"}, {"type": "string"}]},
        "b": {"x-kubernetes-int-or-string": true,
              "allOf": [{"anyOf": [{"type": "integer"}, {"type": "string"}]}, {"pattern": "^x"}]},
    }}));
    // A default must not carry unknown fields.
    let c = errs(
        json!({"type": "object", "properties": {"o": {"type": "object",
        "properties": {"a": {"type": "string"}}, "default": {"a": "x", "b": "y"}}}}),
    );
    assert_eq!(
        c,
        [(
            "properties[o].default".to_string(),
            "Invalid value: map[string]string{\"a\":\"x\", \"b\":\"y\"}: must not have unknown fields".to_string()
        )]
    );
    // A default must validate against its schema.
    assert_eq!(
        errs(
            json!({"type": "object", "properties": {"n": {"type": "integer", "minimum": 1, "default": 0}}})
        ),
        [(
            "properties[n].default".to_string(),
            "Invalid value: 0:  in body should be greater than or equal to 1".to_string()
        )]
    );
}

fn crd(group: &str) -> Value {
    json!({
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": format!("widgets.{group}")},
        "spec": {
            "group": group,
            "scope": "Namespaced",
            "names": {"plural": "widgets", "kind": "Widget"},
            "versions": [{
                "name": "v1", "served": true, "storage": true,
                "schema": {"openAPIV3Schema": {"type": "object", "properties": {
                    "spec": {"type": "object", "properties": {"replicas": {"type": "integer"}}},
                    "status": {"type": "object", "properties": {"replicas": {"type": "integer"}}}}}},
                "subresources": {"status": {}, "scale": {"specReplicasPath": ".spec.replicas",
                                                         "statusReplicasPath": ".status.replicas"}},
                "additionalPrinterColumns": [{"name": "Replicas", "type": "integer",
                                              "jsonPath": ".spec.replicas"}],
            }],
        },
    })
}

fn crd_info() -> &'static skiff_api::ResourceInfo {
    skiff_api::resources::by_kind("apiextensions.k8s.io/v1", "CustomResourceDefinition").unwrap()
}

fn crd_causes(obj: &Value, old: Option<&Value>) -> Vec<(String, String, String)> {
    causes(skiff_api::validate::validation_causes(crd_info(), obj, old))
}

#[test]
fn crd_defaults_follow_upstream() {
    let mut obj = crd("example.com");
    skiff_api::defaults::apply_defaults(crd_info(), &mut obj);
    assert_eq!(obj["spec"]["names"]["singular"], "widget");
    assert_eq!(obj["spec"]["names"]["listKind"], "WidgetList");
    assert_eq!(obj["spec"]["conversion"], json!({"strategy": "None"}));
    assert_eq!(obj["status"]["storedVersions"], json!(["v1"]));
    assert_eq!(crd_causes(&obj, None), []);
}

#[test]
fn crd_validation_reports_upstream_causes() {
    let mut obj = crd("example");
    skiff_api::defaults::apply_defaults(crd_info(), &mut obj);
    obj["metadata"]["name"] = json!("things.example");
    obj["spec"]["scope"] = json!("Global");
    obj["spec"]["versions"][0]["name"] = json!("V1");
    obj["spec"]["versions"][0]["storage"] = json!(false);
    obj["spec"]["versions"][0]["subresources"]["scale"]["specReplicasPath"] = json!(".status.x");
    obj["spec"]["versions"][0]["additionalPrinterColumns"][0]["type"] = json!("float");
    obj["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]
        .as_object_mut()
        .unwrap()
        .remove("type");
    let got = crd_causes(&obj, None);
    let expect = [
        triple("FieldValueInvalid", "metadata.name",
               "Invalid value: \"things.example\": must be spec.names.plural+\".\"+spec.group"),
        triple("FieldValueInvalid", "spec.group",
               "Invalid value: \"example\": should be a domain with at least one dot"),
        triple("FieldValueNotSupported", "spec.scope",
               "Unsupported value: \"Global\": supported values: \"Cluster\", \"Namespaced\""),
        triple("FieldValueInvalid", "spec.versions[0].name",
               "Invalid value: \"V1\": a DNS-1035 label must consist of lower case alphanumeric characters or '-', start with an alphabetic character, and end with an alphanumeric character (e.g. 'my-name',  or 'abc-123', regex used for validation is '[a-z]([-a-z0-9]*[a-z0-9])?')"),
        triple("FieldValueRequired",
               "spec.versions[0].schema.openAPIV3Schema.properties[spec].type",
               "Required value: must not be empty for specified object fields"),
        triple("FieldValueInvalid", "spec.versions[0].subresources.scale.specReplicasPath",
               "Invalid value: \".status.x\": should be a json path under .spec"),
        triple("FieldValueInvalid", "spec.versions[0].additionalPrinterColumns[0].type",
               "Invalid value: \"float\": must be one of boolean,date,integer,number,string"),
        triple("FieldValueInvalid", "spec.versions",
               "Invalid value: must have exactly one version marked as storage version"),
        triple("FieldValueInvalid", "status.storedVersions[0]",
               "Invalid value: \"v1\": must appear in spec.versions"),
    ];
    for c in &expect {
        assert!(got.contains(c), "missing {c:?} in {got:#?}");
    }
    assert_eq!(got.len(), expect.len(), "{got:#?}");
}

#[test]
fn crd_protected_groups_need_api_approval() {
    let mut obj = crd("widgets.k8s.io");
    skiff_api::defaults::apply_defaults(crd_info(), &mut obj);
    assert_eq!(
        crd_causes(&obj, None),
        [triple("FieldValueRequired", "metadata.annotations[api-approved.kubernetes.io]",
                "Required value: protected groups must have approval annotation \"api-approved.kubernetes.io\", see https://github.com/kubernetes/enhancements/pull/1111")]
    );
    obj["metadata"]["annotations"] = json!({"api-approved.kubernetes.io": "yes"});
    assert_eq!(crd_causes(&obj, None).len(), 1);
    obj["metadata"]["annotations"] = json!({"api-approved.kubernetes.io": "unapproved, testing"});
    assert_eq!(crd_causes(&obj, None), []);
    obj["metadata"]["annotations"] =
        json!({"api-approved.kubernetes.io": "https://github.com/kubernetes/kubernetes/pull/1"});
    assert_eq!(crd_causes(&obj, None), []);
}

#[test]
fn crd_updates_keep_scope_and_stored_versions() {
    let mut old = crd("example.com");
    skiff_api::defaults::apply_defaults(crd_info(), &mut old);
    old["status"]["conditions"] = json!([{"type": "Established", "status": "True"}]);
    let mut new = old.clone();
    new["spec"]["scope"] = json!("Cluster");
    new["spec"]["versions"][0]["name"] = json!("v2");
    let got = crd_causes(&new, Some(&old));
    assert!(
        got.contains(&triple(
            "FieldValueInvalid",
            "spec.scope",
            "Invalid value: \"Cluster\": field is immutable"
        )),
        "{got:#?}"
    );
    assert!(
        got.contains(&triple(
            "FieldValueInvalid",
            "status.storedVersions[0]",
            "Invalid value: \"v1\": must appear in spec.versions"
        )),
        "{got:#?}"
    );
}

#[test]
fn crd_conversion_webhook_needs_client_config_and_versions() {
    let mut obj = crd("example.com");
    obj["spec"]["conversion"] = json!({"strategy": "Webhook", "webhook": {}});
    skiff_api::defaults::apply_defaults(crd_info(), &mut obj);
    assert_eq!(
        crd_causes(&obj, None),
        [
            triple(
                "FieldValueRequired",
                "spec.conversion.webhookClientConfig",
                "Required value: required when strategy is set to Webhook"
            ),
            triple(
                "FieldValueRequired",
                "spec.conversion.conversionReviewVersions",
                "Required value"
            ),
        ]
    );
    obj["spec"]["conversion"]["webhook"] = json!({"conversionReviewVersions": ["v2"],
        "clientConfig": {"url": "http://user@conv.example.com/x?a=b"}});
    assert_eq!(
        crd_causes(&obj, None),
        [
            triple(
                "FieldValueInvalid",
                "spec.conversion.webhookClientConfig.url",
                "Invalid value: \"http\": 'https' is the only allowed URL scheme"
            ),
            triple(
                "FieldValueInvalid",
                "spec.conversion.webhookClientConfig.url",
                "Invalid value: \"user\": user information is not permitted in the URL"
            ),
            triple(
                "FieldValueInvalid",
                "spec.conversion.webhookClientConfig.url",
                "Invalid value: \"a=b\": query parameters are not permitted in the URL"
            ),
            triple(
                "FieldValueInvalid",
                "spec.conversion.conversionReviewVersions",
                "Invalid value: []string{\"v2\"}: must include at least one of v1, v1beta1"
            ),
        ]
    );
    obj["spec"]["conversion"]["webhook"] = json!({"conversionReviewVersions": ["v1"],
        "clientConfig": {"service": {"name": "conv", "namespace": "default"}}});
    skiff_api::defaults::apply_defaults(crd_info(), &mut obj);
    assert_eq!(
        obj["spec"]["conversion"]["webhook"]["clientConfig"]["service"]["port"],
        443
    );
    assert_eq!(crd_causes(&obj, None), []);
}

#[test]
fn crd_status_subresource_restricts_the_root_schema() {
    let mut obj = crd("example.com");
    skiff_api::defaults::apply_defaults(crd_info(), &mut obj);
    obj["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["anyOf"] =
        json!([{"required": ["spec"]}, {"required": ["status"]}]);
    assert_eq!(
        crd_causes(&obj, None),
        [triple("FieldValueInvalid", "spec.versions[0].schema.openAPIV3Schema",
                "Invalid value: only [Description Type Format Title Maximum ExclusiveMaximum Minimum ExclusiveMinimum MaxLength MinLength Pattern MaxItems MinItems UniqueItems MultipleOf Required Items Properties ExternalDocs Example XPreserveUnknownFields XValidations] fields are allowed at the root of the schema if the status subresource is enabled")]
    );
    // Without the status subresource the same schema is fine.
    obj["spec"]["versions"][0]["subresources"]
        .as_object_mut()
        .unwrap()
        .remove("status");
    assert_eq!(crd_causes(&obj, None), []);
}

#[test]
fn embedded_object_meta_is_validated() {
    let s = parse(
        json!({"type": "object", "properties": {"spec": {"type": "object", "properties": {
            "templates": {"type": "array", "items": {"type": "object",
                "x-kubernetes-embedded-resource": true, "x-kubernetes-preserve-unknown-fields": true}},
        }}}}),
    );
    let obj = json!({"spec": {"templates": [
        {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"labels": {"a": "b"}}},
        {"apiVersion": "a/b/c", "kind": "Config_Map", "metadata": {"name": "x/y", "labels": {"-": "b"}}},
    ]}});
    let got = causes(s.validate(&obj, None, None));
    assert_eq!(
        got,
        [
            triple("FieldValueInvalid", "spec.templates[1].apiVersion",
                   "Invalid value: \"a/b/c\": unexpected GroupVersion string: a/b/c"),
            triple("FieldValueInvalid", "spec.templates[1].kind",
                   "Invalid value: \"Config_Map\": may have mixed case, but should otherwise match: a DNS-1035 label must consist of lower case alphanumeric characters or '-', start with an alphabetic character, and end with an alphanumeric character (e.g. 'my-name',  or 'abc-123', regex used for validation is '[a-z]([-a-z0-9]*[a-z0-9])?')"),
            triple("FieldValueInvalid", "spec.templates[1].metadata.name",
                   "Invalid value: \"x/y\": may not contain '/'"),
            triple("FieldValueInvalid", "spec.templates[1].metadata.labels",
                   "Invalid value: \"-\": name part must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character (e.g. 'MyName',  or 'my.name',  or '123-abc', regex used for validation is '([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]')"),
        ]
    );
}

#[test]
fn crd_rules_must_compile_when_a_compiler_is_registered() {
    fn compile(r: &Rule) -> Result<(), String> {
        if r.rule.contains("syntax!") {
            Err("compilation failed: ERROR: <input>:1:5: Syntax error".into())
        } else {
            Ok(())
        }
    }
    skiff_api::schema::set_rule_compiler(compile);
    let mut obj = crd("example.com");
    skiff_api::defaults::apply_defaults(crd_info(), &mut obj);
    obj["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]
        ["x-kubernetes-validations"] =
        json!([{"rule": "self.replicas > 0"}, {"rule": "self syntax!"}]);
    assert_eq!(
        crd_causes(&obj, None),
        [triple(
            "FieldValueInvalid",
            "spec.versions[0].schema.openAPIV3Schema.properties[spec].x-kubernetes-validations[1].rule",
            "Invalid value: apiextensions.ValidationRule{Rule:\"self syntax!\", Message:\"\", MessageExpression:\"\", Reason:(*apiextensions.FieldValueErrorReason)(nil), FieldPath:\"\", OptionalOldSelf:(*bool)(nil)}: compilation failed: ERROR: <input>:1:5: Syntax error"
        )]
    );
}

#[test]
fn crd_table_prints_name_and_created_at() {
    let mut obj = crd("example.com");
    obj["metadata"]["creationTimestamp"] = json!("2024-05-01T10:00:00Z");
    let t = skiff_api::table::to_table(
        crd_info(),
        &[obj],
        skiff_api::table::IncludeObject::None,
        json!({}),
        "2024-05-02T10:00:00Z".parse().unwrap(),
    );
    let cols: Vec<(&str, &str)> = t["columnDefinitions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| (c["name"].as_str().unwrap(), c["type"].as_str().unwrap()))
        .collect();
    assert_eq!(cols, [("Name", "string"), ("Created At", "date")]);
    assert_eq!(
        t["rows"][0]["cells"],
        json!(["widgets.example.com", "2024-05-01T10:00:00Z"])
    );
}
