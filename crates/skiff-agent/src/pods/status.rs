//! PodStatus as the kubelet computes it (§3.1): container states from the runtime's
//! instances, waiting reasons and probe results; the phase (getPhase); the conditions
//! (PodReadyToStartContainers, Initialized, Ready, ContainersReady), others' conditions kept.

use k8s_openapi::api::core::v1::{Container, Pod};
use serde_json::{json, Value};
use skiff_net::Sandbox;
use skiff_runtime::{ContainerInfo, Status};

use super::build;
use super::parse_ts;
use super::worker::{Instances, Worker};

impl Worker {
    fn container_status(
        &self,
        c: &Container,
        list: &[(u32, ContainerInfo)],
        is_init: bool,
        default_waiting: &str,
    ) -> Value {
        let image = c.image.clone().unwrap_or_default();
        let image_id = self
            .images
            .get(&image)
            .map(|i| i.id.clone())
            .unwrap_or_default();
        let terminated = |info: &ContainerInfo| -> Value {
            let exit = info.exit.clone();
            let code = exit.as_ref().map(|e| e.code).unwrap_or(137);
            let reason = match &exit {
                Some(e) if e.oom_killed => "OOMKilled",
                Some(e) if e.code == 0 => "Completed",
                Some(_) => "Error",
                None => "ContainerStatusUnknown",
            };
            let mut t = json!({"exitCode": code, "reason": reason,
                               "containerID": format!("skiff://{}", info.id)});
            if let Some(s) = exit.as_ref().and_then(|e| e.signal) {
                t["signal"] = json!(s);
            }
            if let Some(s) = &info.started_at {
                t["startedAt"] = json!(trim_ts(s));
            }
            if let Some(e) = &exit {
                t["finishedAt"] = json!(trim_ts(&e.finished_at));
            }
            json!({"terminated": t})
        };
        let mut st = json!({"name": c.name, "image": image, "imageID": image_id,
                            "restartCount": list.first().map(|l| l.0).unwrap_or(0),
                            "ready": false, "started": false, "lastState": {}});
        let waiting = self.reasons.get(&c.name).cloned();
        match list.first() {
            None => {
                let (reason, msg) = waiting.unwrap_or((default_waiting.to_string(), String::new()));
                let mut w = json!({"reason": reason});
                if !msg.is_empty() {
                    w["message"] = json!(msg);
                }
                st["state"] = json!({"waiting": w});
            }
            Some((_, info)) => {
                st["containerID"] = json!(format!("skiff://{}", info.id));
                if info.status == Status::Running || info.status == Status::Created {
                    let pr = self.probes.get(&c.name).filter(|p| p.id == info.id);
                    let started = is_init || pr.is_some_and(|p| p.started);
                    st["started"] = json!(started);
                    st["ready"] = json!(!is_init && pr.is_some_and(|p| p.ready));
                    st["state"] = json!({"running": {"startedAt": info.started_at.as_deref().map(trim_ts).unwrap_or_default()}});
                    if let Some((_, prev)) = list.get(1) {
                        st["lastState"] = terminated(prev);
                    }
                } else if let Some((reason, msg)) = waiting {
                    // Held back (crash back-off) or a failed restart: waiting, last = this one.
                    st["state"] = json!({"waiting": {"reason": reason, "message": msg}});
                    st["lastState"] = terminated(info);
                } else {
                    st["state"] = terminated(info);
                    if is_init && info.exit.as_ref().is_some_and(|e| e.code == 0) {
                        st["ready"] = json!(true);
                    }
                    if let Some((_, prev)) = list.get(1) {
                        st["lastState"] = terminated(prev);
                    }
                }
            }
        }
        st
    }

    pub(super) fn status(
        &self,
        pod: &Pod,
        inst: &Instances,
        sb: Option<&Sandbox>,
        api_phase: &str,
    ) -> Value {
        let empty = Vec::new();
        let spec = pod.spec.clone().unwrap_or_default();
        let policy = spec
            .restart_policy
            .clone()
            .unwrap_or_else(|| "Always".into());
        let inits: &[Container] = spec.init_containers.as_deref().unwrap_or_default();
        let init_statuses: Vec<Value> = inits
            .iter()
            .map(|c| {
                self.container_status(
                    c,
                    inst.get(&c.name).unwrap_or(&empty),
                    true,
                    "PodInitializing",
                )
            })
            .collect();
        let default_waiting = if inits.is_empty() {
            "ContainerCreating"
        } else {
            "PodInitializing"
        };
        let statuses: Vec<Value> = spec
            .containers
            .iter()
            .map(|c| {
                self.container_status(
                    c,
                    inst.get(&c.name).unwrap_or(&empty),
                    false,
                    default_waiting,
                )
            })
            .collect();

        // getPhase (§3.1).
        let term_code = |s: &Value, key: &str| s[key]["terminated"]["exitCode"].as_i64();
        let (mut pending_init, mut failed_init) = (0, 0);
        for s in &init_statuses {
            match term_code(s, "state") {
                Some(0) => {}
                Some(_) => failed_init += 1,
                None => {
                    if term_code(s, "lastState").is_some_and(|c| c != 0)
                        && s["state"]["waiting"].is_object()
                    {
                        failed_init += 1;
                    } else {
                        pending_init += 1;
                    }
                }
            }
        }
        let (mut running, mut stopped, mut succeeded, mut waiting) = (0, 0, 0, 0);
        for s in &statuses {
            if s["state"]["running"].is_object() {
                running += 1;
            } else if let Some(code) = term_code(s, "state") {
                stopped += 1;
                if code == 0 {
                    succeeded += 1;
                }
            } else if s["lastState"]["terminated"].is_object() {
                stopped += 1;
            } else {
                waiting += 1;
            }
        }
        let phase = if api_phase == "Succeeded" || api_phase == "Failed" {
            api_phase.to_string()
        } else if failed_init > 0 && policy == "Never" {
            "Failed".into()
        } else if pending_init > 0 || failed_init > 0 || waiting > 0 {
            "Pending".into()
        } else if running > 0 {
            "Running".into()
        } else if stopped > 0 {
            if policy == "Always" {
                "Running".into()
            } else if stopped == succeeded {
                "Succeeded".into()
            } else if policy == "Never" {
                "Failed".into()
            } else {
                "Running".into()
            }
        } else {
            "Pending".into()
        };

        let now = jiff::Timestamp::now()
            .strftime("%Y-%m-%dT%H:%M:%SZ")
            .to_string();
        let old = pod.status.clone().unwrap_or_default();
        let old_conds = old.conditions.clone().unwrap_or_default();
        // lastTransitionTime only moves when the status flips (so unchanged status = no write).
        let cond = |typ: &str, ok: bool, reason: Option<String>, msg: Option<String>| {
            let status = if ok { "True" } else { "False" };
            let t = old_conds
                .iter()
                .find(|c| c.type_ == typ && c.status == status)
                .and_then(|c| c.last_transition_time.as_ref())
                .map(|t| t.0.strftime("%Y-%m-%dT%H:%M:%SZ").to_string())
                .unwrap_or_else(|| now.clone());
            let mut v = json!({"type": typ, "status": status, "lastTransitionTime": t, "lastProbeTime": null});
            if let Some(r) = reason.filter(|_| !ok) {
                v["reason"] = json!(r);
            }
            if let Some(m) = msg.filter(|_| !ok) {
                v["message"] = json!(m);
            }
            v
        };
        let not_done: Vec<String> = inits
            .iter()
            .zip(&init_statuses)
            .filter(|(_, s)| term_code(s, "state") != Some(0))
            .map(|(c, _)| c.name.clone())
            .collect();
        let not_ready: Vec<String> = spec
            .containers
            .iter()
            .zip(&statuses)
            .filter(|(_, s)| s["ready"] != json!(true))
            .map(|(c, _)| c.name.clone())
            .collect();
        let initialized = not_done.is_empty();
        let containers_ready = not_ready.is_empty();
        let (cr_reason, cr_msg) = if phase == "Succeeded" {
            ("PodCompleted".to_string(), None)
        } else {
            (
                "ContainersNotReady".to_string(),
                Some(format!(
                    "containers with unready status: [{}]",
                    not_ready.join(" ")
                )),
            )
        };
        let mut conditions = vec![
            cond("PodReadyToStartContainers", sb.is_some(), None, None),
            cond(
                "Initialized",
                initialized,
                Some(if phase == "Succeeded" {
                    "PodCompleted".into()
                } else {
                    "ContainersNotInitialized".into()
                }),
                Some(format!(
                    "containers with incomplete status: [{}]",
                    not_done.join(" ")
                )),
            ),
            cond(
                "Ready",
                containers_ready,
                Some(cr_reason.clone()),
                cr_msg.clone(),
            ),
            cond("ContainersReady", containers_ready, Some(cr_reason), cr_msg),
        ];
        // Conditions of other writers (PodScheduled, DisruptionTarget, gates) are kept.
        const OURS: &[&str] = &[
            "PodReadyToStartContainers",
            "Initialized",
            "Ready",
            "ContainersReady",
        ];
        for c in &old_conds {
            if !OURS.contains(&c.type_.as_str()) {
                if let Ok(v) = serde_json::to_value(c) {
                    conditions.push(v);
                }
            }
        }
        let host_ip = self.ctx.config.node_ip.to_string();
        let mut status = json!({
            "phase": phase,
            "conditions": conditions,
            "hostIP": host_ip,
            "hostIPs": [{"ip": host_ip}],
            "startTime": self.start_time,
            "qosClass": build::qos_class(pod),
            "containerStatuses": statuses,
        });
        if !inits.is_empty() {
            status["initContainerStatuses"] = json!(init_statuses);
        }
        let ephemeral: Vec<Value> = spec
            .ephemeral_containers
            .iter()
            .flatten()
            .filter_map(super::ephemeral::as_container)
            .map(|c| {
                self.container_status(
                    &c,
                    inst.get(&c.name).unwrap_or(&empty),
                    false,
                    "ContainerCreating",
                )
            })
            .collect();
        if !ephemeral.is_empty() {
            status["ephemeralContainerStatuses"] = json!(ephemeral);
        }
        if let Some(sb) = sb {
            status["podIP"] = json!(sb.ip.to_string());
            status["podIPs"] = json!([{"ip": sb.ip.to_string()}]);
        }
        if let Some(e) = &self.sandbox_error {
            status["message"] = json!(format!("pod sandbox: {e}"));
        }
        if let Some((reason, msg)) = &self.evicted {
            status["phase"] = json!("Failed");
            status["reason"] = json!(reason);
            status["message"] = json!(msg);
            // Upstream adds DisruptionTarget for evictions, not for an exceeded deadline.
            let conds = status["conditions"]
                .as_array_mut()
                .filter(|_| reason == "Evicted");
            if let Some(conds) = conds {
                if !conds.iter().any(|c| c["type"] == "DisruptionTarget") {
                    conds.push(json!({"type": "DisruptionTarget", "status": "True",
                        "reason": "TerminationByKubelet", "message": msg,
                        "lastTransitionTime": now, "lastProbeTime": null}));
                }
            }
        }
        status
    }
}

/// RFC 3339 with second precision (what the API shows).
fn trim_ts(s: &str) -> String {
    parse_ts(s)
        .map(|t| t.strftime("%Y-%m-%dT%H:%M:%SZ").to_string())
        .unwrap_or_else(|| s.to_string())
}
