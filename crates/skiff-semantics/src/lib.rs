//! Kubernetes semantics that the API server, the controllers and the agent must agree on, in
//! one place: resource quantities ([`quantity`]), the pod QoS class ([`qos`]) and cron
//! schedules ([`cron`]: parsed for validation, evaluated by the CronJob controller).

pub mod cron;
pub mod qos;
pub mod quantity;

pub use qos::{pod_qos, pod_qos_json, QosClass};
pub use quantity::{Quantity, QuantityError};
