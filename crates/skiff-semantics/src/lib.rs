//! Kubernetes semantics that the API server, the controllers and the agent must agree on, in
//! one place: resource quantities ([`quantity`]), the pod QoS class ([`qos`]) and label-selector
//! matching ([`labels`]).

pub mod labels;
pub mod qos;
pub mod quantity;

pub use qos::{pod_qos, pod_qos_json, QosClass};
pub use quantity::{Quantity, QuantityError};
