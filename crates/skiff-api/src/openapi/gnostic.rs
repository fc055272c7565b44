//! The protobuf encoding of a Swagger 2.0 document that kubectl asks for
//! (`application/com.github.proto-openapi.spec.v2@v1.0+protobuf`): gnostic's
//! `openapi.v2.Document` message (github.com/google/gnostic-models, openapiv2/OpenAPIv2.proto).
//! Only the messages and fields a Kubernetes document uses are declared; field numbers are
//! the proto file's. Vendor extensions, defaults, enums and examples are `Any` values carried
//! as YAML text, which is how gnostic's readers (kube-openapi) decode them.

// The oneofs mirror the proto file's messages (as prost's generated code does).
#![allow(clippy::large_enum_variant)]

use serde_json::{Map, Value};

#[derive(Clone, PartialEq, prost::Message)]
pub struct Document {
    #[prost(string, tag = "1")]
    pub swagger: String,
    #[prost(message, optional, tag = "2")]
    pub info: Option<Info>,
    #[prost(string, tag = "3")]
    pub host: String,
    #[prost(string, tag = "4")]
    pub base_path: String,
    #[prost(string, repeated, tag = "5")]
    pub schemes: Vec<String>,
    #[prost(string, repeated, tag = "6")]
    pub consumes: Vec<String>,
    #[prost(string, repeated, tag = "7")]
    pub produces: Vec<String>,
    #[prost(message, optional, tag = "8")]
    pub paths: Option<Paths>,
    #[prost(message, optional, tag = "9")]
    pub definitions: Option<Definitions>,
    #[prost(message, repeated, tag = "12")]
    pub security: Vec<SecurityRequirement>,
    #[prost(message, optional, tag = "13")]
    pub security_definitions: Option<SecurityDefinitions>,
    #[prost(message, repeated, tag = "16")]
    pub vendor_extension: Vec<NamedAny>,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct Info {
    #[prost(string, tag = "1")]
    pub title: String,
    #[prost(string, tag = "2")]
    pub version: String,
    #[prost(string, tag = "3")]
    pub description: String,
    #[prost(message, repeated, tag = "7")]
    pub vendor_extension: Vec<NamedAny>,
}

/// gnostic's `Any`: field 1 is a `google.protobuf.Any` (never set here), field 2 the YAML text.
#[derive(Clone, PartialEq, prost::Message)]
pub struct Any {
    #[prost(string, tag = "2")]
    pub yaml: String,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct NamedAny {
    #[prost(string, tag = "1")]
    pub name: String,
    #[prost(message, optional, tag = "2")]
    pub value: Option<Any>,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct Paths {
    #[prost(message, repeated, tag = "1")]
    pub vendor_extension: Vec<NamedAny>,
    #[prost(message, repeated, tag = "2")]
    pub path: Vec<NamedPathItem>,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct NamedPathItem {
    #[prost(string, tag = "1")]
    pub name: String,
    #[prost(message, optional, tag = "2")]
    pub value: Option<PathItem>,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct PathItem {
    #[prost(string, tag = "1")]
    pub r#ref: String,
    #[prost(message, optional, tag = "2")]
    pub get: Option<Operation>,
    #[prost(message, optional, tag = "3")]
    pub put: Option<Operation>,
    #[prost(message, optional, tag = "4")]
    pub post: Option<Operation>,
    #[prost(message, optional, tag = "5")]
    pub delete: Option<Operation>,
    #[prost(message, optional, tag = "6")]
    pub options: Option<Operation>,
    #[prost(message, optional, tag = "7")]
    pub head: Option<Operation>,
    #[prost(message, optional, tag = "8")]
    pub patch: Option<Operation>,
    #[prost(message, repeated, tag = "9")]
    pub parameters: Vec<ParametersItem>,
    #[prost(message, repeated, tag = "10")]
    pub vendor_extension: Vec<NamedAny>,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct Operation {
    #[prost(string, repeated, tag = "1")]
    pub tags: Vec<String>,
    #[prost(string, tag = "2")]
    pub summary: String,
    #[prost(string, tag = "3")]
    pub description: String,
    #[prost(string, tag = "5")]
    pub operation_id: String,
    #[prost(string, repeated, tag = "6")]
    pub produces: Vec<String>,
    #[prost(string, repeated, tag = "7")]
    pub consumes: Vec<String>,
    #[prost(message, repeated, tag = "8")]
    pub parameters: Vec<ParametersItem>,
    #[prost(message, optional, tag = "9")]
    pub responses: Option<Responses>,
    #[prost(string, repeated, tag = "10")]
    pub schemes: Vec<String>,
    #[prost(bool, tag = "11")]
    pub deprecated: bool,
    #[prost(message, repeated, tag = "13")]
    pub vendor_extension: Vec<NamedAny>,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct ParametersItem {
    #[prost(oneof = "parameters_item::Oneof", tags = "1, 2")]
    pub oneof: Option<parameters_item::Oneof>,
}

pub mod parameters_item {
    #[derive(Clone, PartialEq, prost::Oneof)]
    pub enum Oneof {
        #[prost(message, tag = "1")]
        Parameter(super::Parameter),
        #[prost(message, tag = "2")]
        JsonReference(super::JsonReference),
    }
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct JsonReference {
    #[prost(string, tag = "1")]
    pub r#ref: String,
    #[prost(string, tag = "2")]
    pub description: String,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct Parameter {
    #[prost(oneof = "parameter::Oneof", tags = "1, 2")]
    pub oneof: Option<parameter::Oneof>,
}

pub mod parameter {
    #[derive(Clone, PartialEq, prost::Oneof)]
    pub enum Oneof {
        #[prost(message, tag = "1")]
        BodyParameter(super::BodyParameter),
        #[prost(message, tag = "2")]
        NonBodyParameter(super::NonBodyParameter),
    }
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct BodyParameter {
    #[prost(string, tag = "1")]
    pub description: String,
    #[prost(string, tag = "2")]
    pub name: String,
    #[prost(string, tag = "3")]
    pub r#in: String,
    #[prost(bool, tag = "4")]
    pub required: bool,
    #[prost(message, optional, tag = "5")]
    pub schema: Option<Schema>,
    #[prost(message, repeated, tag = "6")]
    pub vendor_extension: Vec<NamedAny>,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct NonBodyParameter {
    #[prost(oneof = "non_body_parameter::Oneof", tags = "3, 4")]
    pub oneof: Option<non_body_parameter::Oneof>,
}

pub mod non_body_parameter {
    #[derive(Clone, PartialEq, prost::Oneof)]
    pub enum Oneof {
        #[prost(message, tag = "3")]
        QueryParameterSubSchema(super::SimpleParameter),
        #[prost(message, tag = "4")]
        PathParameterSubSchema(super::SimpleParameter),
    }
}

/// `QueryParameterSubSchema` and `PathParameterSubSchema` in one struct: both number
/// required/in/description/name 1–4, but `type` and `unique_items` are 6/20 in the query
/// message and 5/19 in the path one, so only the pair for the parameter's place is set.
#[derive(Clone, PartialEq, prost::Message)]
pub struct SimpleParameter {
    #[prost(bool, tag = "1")]
    pub required: bool,
    #[prost(string, tag = "2")]
    pub r#in: String,
    #[prost(string, tag = "3")]
    pub description: String,
    #[prost(string, tag = "4")]
    pub name: String,
    /// `type` (query: 6).
    #[prost(string, tag = "6")]
    pub query_type: String,
    /// `unique_items` (query: 20).
    #[prost(bool, tag = "20")]
    pub query_unique_items: bool,
    /// `type` (path: 5).
    #[prost(string, tag = "5")]
    pub path_type: String,
    /// `unique_items` (path: 19).
    #[prost(bool, tag = "19")]
    pub path_unique_items: bool,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct Responses {
    #[prost(message, repeated, tag = "1")]
    pub response_code: Vec<NamedResponseValue>,
    #[prost(message, repeated, tag = "2")]
    pub vendor_extension: Vec<NamedAny>,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct NamedResponseValue {
    #[prost(string, tag = "1")]
    pub name: String,
    #[prost(message, optional, tag = "2")]
    pub value: Option<ResponseValue>,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct ResponseValue {
    #[prost(oneof = "response_value::Oneof", tags = "1, 2")]
    pub oneof: Option<response_value::Oneof>,
}

pub mod response_value {
    #[derive(Clone, PartialEq, prost::Oneof)]
    pub enum Oneof {
        #[prost(message, tag = "1")]
        Response(super::Response),
        #[prost(message, tag = "2")]
        JsonReference(super::JsonReference),
    }
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct Response {
    #[prost(string, tag = "1")]
    pub description: String,
    #[prost(message, optional, tag = "2")]
    pub schema: Option<SchemaItem>,
    #[prost(message, repeated, tag = "5")]
    pub vendor_extension: Vec<NamedAny>,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct SchemaItem {
    #[prost(oneof = "schema_item::Oneof", tags = "1")]
    pub oneof: Option<schema_item::Oneof>,
}

pub mod schema_item {
    #[derive(Clone, PartialEq, prost::Oneof)]
    pub enum Oneof {
        #[prost(message, tag = "1")]
        Schema(super::Schema),
    }
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct Definitions {
    #[prost(message, repeated, tag = "1")]
    pub additional_properties: Vec<NamedSchema>,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct NamedSchema {
    #[prost(string, tag = "1")]
    pub name: String,
    #[prost(message, optional, tag = "2")]
    pub value: Option<Schema>,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct Properties {
    #[prost(message, repeated, tag = "1")]
    pub additional_properties: Vec<NamedSchema>,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct TypeItem {
    #[prost(string, repeated, tag = "1")]
    pub value: Vec<String>,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct ItemsItem {
    #[prost(message, repeated, tag = "1")]
    pub schema: Vec<Schema>,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct AdditionalPropertiesItem {
    #[prost(oneof = "additional_properties_item::Oneof", tags = "1, 2")]
    pub oneof: Option<additional_properties_item::Oneof>,
}

pub mod additional_properties_item {
    #[derive(Clone, PartialEq, prost::Oneof)]
    pub enum Oneof {
        #[prost(message, boxed, tag = "1")]
        Schema(Box<super::Schema>),
        #[prost(bool, tag = "2")]
        Boolean(bool),
    }
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct Schema {
    #[prost(string, tag = "1")]
    pub r#ref: String,
    #[prost(string, tag = "2")]
    pub format: String,
    #[prost(string, tag = "3")]
    pub title: String,
    #[prost(string, tag = "4")]
    pub description: String,
    #[prost(message, optional, tag = "5")]
    pub default: Option<Any>,
    #[prost(double, tag = "6")]
    pub multiple_of: f64,
    #[prost(double, tag = "7")]
    pub maximum: f64,
    #[prost(bool, tag = "8")]
    pub exclusive_maximum: bool,
    #[prost(double, tag = "9")]
    pub minimum: f64,
    #[prost(bool, tag = "10")]
    pub exclusive_minimum: bool,
    #[prost(int64, tag = "11")]
    pub max_length: i64,
    #[prost(int64, tag = "12")]
    pub min_length: i64,
    #[prost(string, tag = "13")]
    pub pattern: String,
    #[prost(int64, tag = "14")]
    pub max_items: i64,
    #[prost(int64, tag = "15")]
    pub min_items: i64,
    #[prost(bool, tag = "16")]
    pub unique_items: bool,
    #[prost(int64, tag = "17")]
    pub max_properties: i64,
    #[prost(int64, tag = "18")]
    pub min_properties: i64,
    #[prost(string, repeated, tag = "19")]
    pub required: Vec<String>,
    #[prost(message, repeated, tag = "20")]
    pub r#enum: Vec<Any>,
    #[prost(message, optional, boxed, tag = "21")]
    pub additional_properties: Option<Box<AdditionalPropertiesItem>>,
    #[prost(message, optional, tag = "22")]
    pub r#type: Option<TypeItem>,
    #[prost(message, optional, tag = "23")]
    pub items: Option<ItemsItem>,
    #[prost(message, repeated, tag = "24")]
    pub all_of: Vec<Schema>,
    #[prost(message, optional, tag = "25")]
    pub properties: Option<Properties>,
    #[prost(string, tag = "26")]
    pub discriminator: String,
    #[prost(bool, tag = "27")]
    pub read_only: bool,
    #[prost(message, optional, tag = "30")]
    pub example: Option<Any>,
    #[prost(message, repeated, tag = "31")]
    pub vendor_extension: Vec<NamedAny>,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct SecurityDefinitions {
    #[prost(message, repeated, tag = "1")]
    pub additional_properties: Vec<NamedSecurityDefinitionsItem>,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct NamedSecurityDefinitionsItem {
    #[prost(string, tag = "1")]
    pub name: String,
    #[prost(message, optional, tag = "2")]
    pub value: Option<SecurityDefinitionsItem>,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct SecurityDefinitionsItem {
    #[prost(oneof = "security_definitions_item::Oneof", tags = "2")]
    pub oneof: Option<security_definitions_item::Oneof>,
}

pub mod security_definitions_item {
    #[derive(Clone, PartialEq, prost::Oneof)]
    pub enum Oneof {
        #[prost(message, tag = "2")]
        ApiKeySecurity(super::ApiKeySecurity),
    }
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct ApiKeySecurity {
    #[prost(string, tag = "1")]
    pub r#type: String,
    #[prost(string, tag = "2")]
    pub name: String,
    #[prost(string, tag = "3")]
    pub r#in: String,
    #[prost(string, tag = "4")]
    pub description: String,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct SecurityRequirement {
    #[prost(message, repeated, tag = "1")]
    pub additional_properties: Vec<NamedStringArray>,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct NamedStringArray {
    #[prost(string, tag = "1")]
    pub name: String,
    #[prost(message, optional, tag = "2")]
    pub value: Option<StringArray>,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct StringArray {
    #[prost(string, repeated, tag = "1")]
    pub value: Vec<String>,
}

// ---- JSON → messages ----

fn s(o: &Map<String, Value>, k: &str) -> String {
    o.get(k)
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string()
}

fn strings(o: &Map<String, Value>, k: &str) -> Vec<String> {
    match o.get(k) {
        Some(Value::Array(a)) => a
            .iter()
            .filter_map(Value::as_str)
            .map(str::to_string)
            .collect(),
        Some(Value::String(one)) => vec![one.clone()],
        _ => Vec::new(),
    }
}

fn b(o: &Map<String, Value>, k: &str) -> bool {
    o.get(k).and_then(Value::as_bool).unwrap_or(false)
}

fn f(o: &Map<String, Value>, k: &str) -> f64 {
    o.get(k).and_then(Value::as_f64).unwrap_or(0.0)
}

fn i(o: &Map<String, Value>, k: &str) -> i64 {
    o.get(k).and_then(Value::as_i64).unwrap_or(0)
}

/// A value as gnostic carries it: YAML text.
fn any(v: &Value) -> Any {
    let yaml = serde_norway::to_string(v).unwrap_or_else(|_| v.to_string());
    Any { yaml }
}

fn extensions(o: &Map<String, Value>) -> Vec<NamedAny> {
    o.iter()
        .filter(|(k, _)| k.starts_with("x-"))
        .map(|(k, v)| NamedAny {
            name: k.clone(),
            value: Some(any(v)),
        })
        .collect()
}

fn obj(v: &Value) -> Option<&Map<String, Value>> {
    v.as_object()
}

/// A JSON Schema object (Swagger 2.0 subset) as gnostic's `Schema`.
pub fn schema(v: &Value) -> Schema {
    let empty = Map::new();
    let o = obj(v).unwrap_or(&empty);
    Schema {
        r#ref: s(o, "$ref"),
        format: s(o, "format"),
        title: s(o, "title"),
        description: s(o, "description"),
        default: o.get("default").map(any),
        multiple_of: f(o, "multipleOf"),
        maximum: f(o, "maximum"),
        exclusive_maximum: b(o, "exclusiveMaximum"),
        minimum: f(o, "minimum"),
        exclusive_minimum: b(o, "exclusiveMinimum"),
        max_length: i(o, "maxLength"),
        min_length: i(o, "minLength"),
        pattern: s(o, "pattern"),
        max_items: i(o, "maxItems"),
        min_items: i(o, "minItems"),
        unique_items: b(o, "uniqueItems"),
        max_properties: i(o, "maxProperties"),
        min_properties: i(o, "minProperties"),
        required: strings(o, "required"),
        r#enum: o
            .get("enum")
            .and_then(Value::as_array)
            .map(|a| a.iter().map(any).collect())
            .unwrap_or_default(),
        additional_properties: o.get("additionalProperties").map(|ap| {
            Box::new(AdditionalPropertiesItem {
                oneof: Some(match ap {
                    Value::Bool(x) => additional_properties_item::Oneof::Boolean(*x),
                    other => additional_properties_item::Oneof::Schema(Box::new(schema(other))),
                }),
            })
        }),
        r#type: o.get("type").map(|_| TypeItem {
            value: strings(o, "type"),
        }),
        items: o.get("items").map(|it| ItemsItem {
            schema: match it {
                Value::Array(a) => a.iter().map(schema).collect(),
                other => vec![schema(other)],
            },
        }),
        all_of: o
            .get("allOf")
            .and_then(Value::as_array)
            .map(|a| a.iter().map(schema).collect())
            .unwrap_or_default(),
        properties: o
            .get("properties")
            .and_then(Value::as_object)
            .map(|p| Properties {
                additional_properties: named_schemas(p),
            }),
        discriminator: s(o, "discriminator"),
        read_only: b(o, "readOnly"),
        example: o.get("example").map(any),
        vendor_extension: extensions(o),
    }
}

fn named_schemas(m: &Map<String, Value>) -> Vec<NamedSchema> {
    m.iter()
        .map(|(k, v)| NamedSchema {
            name: k.clone(),
            value: Some(schema(v)),
        })
        .collect()
}

fn parameter(v: &Value) -> ParametersItem {
    let empty = Map::new();
    let o = obj(v).unwrap_or(&empty);
    if let Some(r) = o.get("$ref").and_then(Value::as_str) {
        return ParametersItem {
            oneof: Some(parameters_item::Oneof::JsonReference(JsonReference {
                r#ref: r.to_string(),
                description: s(o, "description"),
            })),
        };
    }
    let inner = match o.get("in").and_then(Value::as_str) {
        Some("body") => parameter::Oneof::BodyParameter(BodyParameter {
            description: s(o, "description"),
            name: s(o, "name"),
            r#in: "body".into(),
            required: b(o, "required"),
            schema: o.get("schema").map(schema),
            vendor_extension: extensions(o),
        }),
        place => {
            let mut p = SimpleParameter {
                required: b(o, "required"),
                r#in: s(o, "in"),
                description: s(o, "description"),
                name: s(o, "name"),
                ..Default::default()
            };
            let oneof = if place == Some("path") {
                p.path_type = s(o, "type");
                p.path_unique_items = b(o, "uniqueItems");
                non_body_parameter::Oneof::PathParameterSubSchema(p)
            } else {
                p.query_type = s(o, "type");
                p.query_unique_items = b(o, "uniqueItems");
                non_body_parameter::Oneof::QueryParameterSubSchema(p)
            };
            parameter::Oneof::NonBodyParameter(NonBodyParameter { oneof: Some(oneof) })
        }
    };
    ParametersItem {
        oneof: Some(parameters_item::Oneof::Parameter(Parameter {
            oneof: Some(inner),
        })),
    }
}

fn parameters(o: &Map<String, Value>) -> Vec<ParametersItem> {
    o.get("parameters")
        .and_then(Value::as_array)
        .map(|a| a.iter().map(parameter).collect())
        .unwrap_or_default()
}

fn operation(v: Option<&Value>) -> Option<Operation> {
    let o = obj(v?)?;
    let responses = o
        .get("responses")
        .and_then(Value::as_object)
        .map(|rs| Responses {
            response_code: rs
                .iter()
                .filter(|(k, _)| !k.starts_with("x-"))
                .map(|(code, r)| {
                    let empty = Map::new();
                    let ro = obj(r).unwrap_or(&empty);
                    NamedResponseValue {
                        name: code.clone(),
                        value: Some(ResponseValue {
                            oneof: Some(response_value::Oneof::Response(Response {
                                description: s(ro, "description"),
                                schema: ro.get("schema").map(|sc| SchemaItem {
                                    oneof: Some(schema_item::Oneof::Schema(schema(sc))),
                                }),
                                vendor_extension: extensions(ro),
                            })),
                        }),
                    }
                })
                .collect(),
            vendor_extension: extensions(rs),
        });
    Some(Operation {
        tags: strings(o, "tags"),
        summary: s(o, "summary"),
        description: s(o, "description"),
        operation_id: s(o, "operationId"),
        produces: strings(o, "produces"),
        consumes: strings(o, "consumes"),
        parameters: parameters(o),
        responses,
        schemes: strings(o, "schemes"),
        deprecated: b(o, "deprecated"),
        vendor_extension: extensions(o),
    })
}

fn path_item(v: &Value) -> PathItem {
    let empty = Map::new();
    let o = obj(v).unwrap_or(&empty);
    PathItem {
        r#ref: s(o, "$ref"),
        get: operation(o.get("get")),
        put: operation(o.get("put")),
        post: operation(o.get("post")),
        delete: operation(o.get("delete")),
        options: operation(o.get("options")),
        head: operation(o.get("head")),
        patch: operation(o.get("patch")),
        parameters: parameters(o),
        vendor_extension: extensions(o),
    }
}

/// A Swagger 2.0 JSON document as gnostic's `Document`.
pub fn document(doc: &Value) -> Document {
    let empty = Map::new();
    let o = obj(doc).unwrap_or(&empty);
    let info = o.get("info").and_then(Value::as_object).map(|i| Info {
        title: s(i, "title"),
        version: s(i, "version"),
        description: s(i, "description"),
        vendor_extension: extensions(i),
    });
    let paths = o.get("paths").and_then(Value::as_object).map(|p| Paths {
        vendor_extension: extensions(p),
        path: p
            .iter()
            .filter(|(k, _)| k.starts_with('/'))
            .map(|(k, v)| NamedPathItem {
                name: k.clone(),
                value: Some(path_item(v)),
            })
            .collect(),
    });
    let definitions = o
        .get("definitions")
        .and_then(Value::as_object)
        .map(|d| Definitions {
            additional_properties: named_schemas(d),
        });
    let security_definitions = o
        .get("securityDefinitions")
        .and_then(Value::as_object)
        .map(|d| SecurityDefinitions {
            additional_properties: d
                .iter()
                .map(|(k, v)| {
                    let empty = Map::new();
                    let so = obj(v).unwrap_or(&empty);
                    NamedSecurityDefinitionsItem {
                        name: k.clone(),
                        value: Some(SecurityDefinitionsItem {
                            oneof: Some(security_definitions_item::Oneof::ApiKeySecurity(
                                ApiKeySecurity {
                                    r#type: s(so, "type"),
                                    name: s(so, "name"),
                                    r#in: s(so, "in"),
                                    description: s(so, "description"),
                                },
                            )),
                        }),
                    }
                })
                .collect(),
        });
    let security = o
        .get("security")
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(Value::as_object)
                .map(|req| SecurityRequirement {
                    additional_properties: req
                        .iter()
                        .map(|(k, v)| NamedStringArray {
                            name: k.clone(),
                            value: Some(StringArray {
                                value: v
                                    .as_array()
                                    .map(|x| {
                                        x.iter()
                                            .filter_map(Value::as_str)
                                            .map(str::to_string)
                                            .collect()
                                    })
                                    .unwrap_or_default(),
                            }),
                        })
                        .collect(),
                })
                .collect()
        })
        .unwrap_or_default();
    Document {
        swagger: s(o, "swagger"),
        info,
        host: s(o, "host"),
        base_path: s(o, "basePath"),
        schemes: strings(o, "schemes"),
        consumes: strings(o, "consumes"),
        produces: strings(o, "produces"),
        paths,
        definitions,
        security,
        security_definitions,
        vendor_extension: extensions(o),
    }
}
