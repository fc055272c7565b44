//! Ephemeral containers (`kubectl debug`): added to a running pod through the
//! `pods/ephemeralcontainers` subresource, started once in the pod's sandbox and never
//! restarted. With `targetContainerName` the container joins the PID namespace of that
//! container's running instance, so it sees (and can signal) its processes.

use std::path::PathBuf;

use k8s_openapi::api::core::v1::{Container, EphemeralContainer, Pod, PodSpec};
use skiff_net::Sandbox;
use skiff_runtime::Status;

use super::worker::{Instances, Worker};

/// The runtime-facing shape of an ephemeral container: the same fields as a Container
/// (validation already refused ports, probes, resources and lifecycle).
pub(super) fn as_container(ec: &EphemeralContainer) -> Option<Container> {
    let mut v = serde_json::to_value(ec).ok()?;
    if let Some(m) = v.as_object_mut() {
        m.remove("targetContainerName");
    }
    serde_json::from_value(v).ok()
}

/// The PID namespace of the newest running instance of `target`, if it runs.
pub(super) fn target_pid_ns(inst: &Instances, target: &str) -> Option<PathBuf> {
    let (_, info) = inst.get(target)?.first()?;
    if info.status != Status::Running {
        return None;
    }
    info.pid.map(|p| PathBuf::from(format!("/proc/{p}/ns/pid")))
}

impl Worker {
    /// Starts each ephemeral container that has no instance yet (they never restart).
    pub(super) async fn start_ephemeral(
        &mut self,
        pod: &Pod,
        spec: &PodSpec,
        inst: &Instances,
        sb: &Sandbox,
    ) {
        for ec in spec.ephemeral_containers.iter().flatten() {
            if inst.contains_key(&ec.name) {
                continue;
            }
            let Some(c) = as_container(ec) else {
                continue;
            };
            let pid_ns = match ec
                .target_container_name
                .as_deref()
                .filter(|t| !t.is_empty())
            {
                None => None,
                Some(t) => match target_pid_ns(inst, t) {
                    Some(p) => Some(p),
                    None => {
                        // Tried again on the next sync, once the target runs.
                        self.set_reason(
                            &ec.name,
                            "ContainerCreating",
                            format!("target container {t:?} is not running"),
                        );
                        continue;
                    }
                },
            };
            self.start_in(pod, &c, 0, sb, pid_ns).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ephemeral_container_converts() {
        let ec: EphemeralContainer = serde_json::from_value(serde_json::json!({
            "name": "debugger-x", "image": "busybox", "command": ["sh"], "stdin": true,
            "tty": true, "targetContainerName": "app"
        }))
        .unwrap();
        let c = as_container(&ec).unwrap();
        assert_eq!(c.name, "debugger-x");
        assert_eq!(c.image.as_deref(), Some("busybox"));
        assert_eq!(c.stdin, Some(true));
        assert_eq!(c.tty, Some(true));
    }
}
