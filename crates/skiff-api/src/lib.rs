//! skiff-api owns the Kubernetes object model as the API server applies it: the kinds it serves
//! (one module per kind in `kinds`, listed by a registry), `Status` errors, label and field
//! selectors, the three patch types and server-side apply, defaulting and validation (k8s-openapi
//! types), Table printing, request-body decoding (JSON, YAML, Kubernetes protobuf) and the
//! OpenAPI v3 documents kubectl downloads.
//! Objects travel as `serde_json::Value` so every kind shares one code path; typed k8s-openapi
//! structs are used where semantics need them (defaulting, validation, schemas).

pub mod apply;
pub mod body;
pub mod defaults;
pub mod error;
pub mod kinds;
pub mod openapi;
pub mod patch;
pub mod protobuf;
pub mod resources;
pub mod schema;
pub mod selector;
pub mod table;
pub mod validate;

pub use error::{ApiError, Cause};
pub use resources::ResourceInfo;
