//! Node hooks: a registering node keeps the status it sends (its addresses and capacity).

use crate::admission::Admission;

pub(crate) struct NodeHooks;

impl Admission for NodeHooks {
    fn keeps_status_on_create(&self) -> bool {
        true
    }
}
