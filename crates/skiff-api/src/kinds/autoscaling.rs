//! The autoscaling group.

pub(crate) mod horizontalpodautoscaler;
