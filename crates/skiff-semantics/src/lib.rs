//! Kubernetes semantics that the API server, the controllers and the agent must agree on, in
//! one place: resource quantities ([`quantity`]), the pod QoS class ([`qos`]), label-selector
//! matching ([`labels`]), well-known label, annotation and taint keys ([`wellknown`]), IPv4
//! CIDR parsing ([`cidr`]), cron schedules ([`cron`]: parsed for validation, evaluated by the
//! CronJob controller) and the Pod Security Standards ([`podsecurity`]).

pub mod cidr;
pub mod cron;
pub mod labels;
pub mod podsecurity;
pub mod qos;
pub mod quantity;
pub mod quota;
pub mod wellknown;

pub use qos::{pod_qos, pod_qos_json, QosClass};
pub use quantity::{Quantity, QuantityError};
