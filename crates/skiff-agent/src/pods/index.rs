//! Runtime container names (`k8s_<container>_<pod>_<ns>_<uid8>_<attempt>`) and the agent
//! API's view of the pods this node runs ([`PodIndex`]).

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use skiff_runtime::{ContainerInfo, Runtime, RuntimeConfig, Status};

use crate::{AgentConfig, ContainerIndex, ContainerRef, Result};

/// A runtime container name parsed back into its pod coordinates.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RuntimeName {
    pub container: String,
    pub pod: String,
    pub namespace: String,
    pub uid8: String,
    pub attempt: u32,
}

pub fn runtime_name(container: &str, pod: &str, ns: &str, uid: &str, attempt: u32) -> String {
    format!("k8s_{container}_{pod}_{ns}_{}_{attempt}", uid8(uid))
}

pub(super) fn uid8(uid: &str) -> String {
    uid.chars().filter(|c| *c != '-').take(8).collect()
}

pub fn parse_runtime_name(name: &str) -> Option<RuntimeName> {
    let rest = name.strip_prefix("k8s_")?;
    let parts: Vec<&str> = rest.split('_').collect();
    if parts.len() != 5 {
        return None;
    }
    Some(RuntimeName {
        container: parts[0].to_string(),
        pod: parts[1].to_string(),
        namespace: parts[2].to_string(),
        uid8: parts[3].to_string(),
        attempt: parts[4].parse().ok()?,
    })
}

/// The agent's view of its containers, for the agent API (logs, exec). Implements
/// [`ContainerIndex`]; hand an `Arc<PodIndex>` to the API server and to [`crate::node::run_with`].
pub struct PodIndex {
    runtime: Arc<Runtime>,
    /// "ns/pod" → (uid8, default container name) of the pod the agent currently runs.
    pods: Mutex<HashMap<String, (String, String)>>,
    /// uid → the pod as the pod watch last delivered it (for `GET /pods` and stats).
    objects: Mutex<Arc<HashMap<String, k8s_openapi::api::core::v1::Pod>>>,
    node_name: String,
}

impl PodIndex {
    pub fn new(config: &AgentConfig) -> Result<Self> {
        let runtime = Runtime::new(RuntimeConfig {
            data_dir: config.data_dir.clone(),
            shim_exe: config.skiff_exe.clone(),
        })?;
        Ok(PodIndex {
            runtime: Arc::new(runtime),
            pods: Mutex::new(HashMap::new()),
            objects: Mutex::default(),
            node_name: config.node_name.clone(),
        })
    }

    pub fn runtime(&self) -> Arc<Runtime> {
        self.runtime.clone()
    }

    pub(super) fn set_pod(&self, ns: &str, pod: &str, uid: &str, first: &str) {
        if let Ok(mut m) = self.pods.lock() {
            m.insert(format!("{ns}/{pod}"), (uid8(uid), first.to_string()));
        }
    }

    /// Replaces the pod objects the agent API serves (the pod manager's current set).
    pub(super) fn set_objects(&self, pods: &HashMap<String, k8s_openapi::api::core::v1::Pod>) {
        if let Ok(mut m) = self.objects.lock() {
            *m = Arc::new(pods.clone());
        }
    }

    pub(super) fn forget_pod(&self, ns: &str, pod: &str, uid: &str) {
        if let Ok(mut m) = self.pods.lock() {
            let key = format!("{ns}/{pod}");
            if m.get(&key).is_some_and(|(u, _)| *u == uid8(uid)) {
                m.remove(&key);
            }
        }
    }
}

impl ContainerIndex for PodIndex {
    fn lookup(
        &self,
        namespace: &str,
        pod: &str,
        container: Option<&str>,
        previous: bool,
    ) -> std::result::Result<ContainerRef, String> {
        let known = self
            .pods
            .lock()
            .ok()
            .and_then(|m| m.get(&format!("{namespace}/{pod}")).cloned());
        let all = self.runtime.list().map_err(|e| e.to_string())?;
        let mut mine: Vec<(RuntimeName, ContainerInfo)> = all
            .into_iter()
            .filter_map(|i| parse_runtime_name(&i.name).map(|n| (n, i)))
            .filter(|(n, _)| n.namespace == namespace && n.pod == pod)
            .filter(|(n, _)| known.as_ref().is_none_or(|(u, _)| *u == n.uid8))
            .collect();
        let wanted = match container {
            Some(c) => c.to_string(),
            None => match &known {
                Some((_, first)) => first.clone(),
                None => mine
                    .first()
                    .map(|(n, _)| n.container.clone())
                    .ok_or_else(|| {
                        format!("pod {namespace}/{pod} has no containers on this node")
                    })?,
            },
        };
        mine.retain(|(n, _)| n.container == wanted);
        mine.sort_by_key(|a| std::cmp::Reverse(a.0.attempt));
        let pick = if previous {
            mine.get(1)
                .filter(|(_, i)| i.status != Status::Running)
                .ok_or_else(|| {
                    format!("previous terminated container \"{wanted}\" in pod \"{pod}\" not found")
                })?
        } else {
            mine.first().ok_or_else(|| {
                format!("container \"{wanted}\" in pod \"{pod}\" is waiting to start")
            })?
        };
        Ok(ContainerRef {
            container_id: pick.1.id.clone(),
            log_path: pick.1.log_path.clone(),
            running: pick.1.status == Status::Running,
        })
    }

    fn pod_netns(&self, namespace: &str, pod: &str) -> std::result::Result<PathBuf, String> {
        let known = self
            .pods
            .lock()
            .ok()
            .and_then(|m| m.get(&format!("{namespace}/{pod}")).cloned());
        let all = self.runtime.list().map_err(|e| e.to_string())?;
        // Every container of a pod shares its network namespace: any running one will do.
        all.into_iter()
            .filter(|i| i.status == Status::Running)
            .filter_map(|i| parse_runtime_name(&i.name).map(|n| (n, i)))
            .filter(|(n, _)| n.namespace == namespace && n.pod == pod)
            .filter(|(n, _)| known.as_ref().is_none_or(|(u, _)| *u == n.uid8))
            .find_map(|(_, i)| i.pid)
            .map(|pid| PathBuf::from(format!("/proc/{pid}/ns/net")))
            .ok_or_else(|| format!("pod {namespace}/{pod} has no running container on this node"))
    }

    fn node_name(&self) -> String {
        self.node_name.clone()
    }

    fn pods(&self) -> Vec<k8s_openapi::api::core::v1::Pod> {
        let objects = self.objects.lock().map(|m| m.clone()).unwrap_or_default();
        let mut pods: Vec<_> = objects.values().cloned().collect();
        pods.sort_by(|a, b| {
            (&a.metadata.namespace, &a.metadata.name)
                .cmp(&(&b.metadata.namespace, &b.metadata.name))
        });
        pods
    }

    fn containers(&self) -> std::result::Result<Vec<ContainerInfo>, String> {
        self.runtime.list().map_err(|e| e.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_roundtrip() {
        let n = runtime_name("web", "nginx-1", "default", "0123abcd-ef00-1111", 3);
        assert_eq!(n, "k8s_web_nginx-1_default_0123abcd_3");
        let p = parse_runtime_name(&n).unwrap();
        assert_eq!(p.container, "web");
        assert_eq!(p.pod, "nginx-1");
        assert_eq!(p.attempt, 3);
        assert!(parse_runtime_name("skiff_brave_otter").is_none());
    }
}
