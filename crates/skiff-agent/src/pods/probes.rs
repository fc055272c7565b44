//! Probe wiring of the pod workers: when startup, readiness and liveness probes are due,
//! their success/failure thresholds, and the restart of a container that fails them. The
//! handlers themselves are `crate::probes` (httpGet, tcpSocket) and `PodRuntime::exec_sync`.

use std::collections::HashMap;
use std::net::IpAddr;
use std::time::Duration;

use k8s_openapi::api::core::v1::{Container, Pod, Probe};
use skiff_client::events::EventType;
use skiff_net::Sandbox;
use skiff_runtime::ContainerInfo;
use tokio::time::Instant;

use super::worker::Worker;

#[derive(Debug, Default, Clone)]
pub(super) struct ProbeState {
    /// The container instance these results belong to.
    pub(super) id: String,
    pub(super) started: bool,
    pub(super) ready: bool,
    pub(super) live_failures: i32,
    pub(super) startup_failures: i32,
    pub(super) ready_successes: i32,
    pub(super) ready_failures: i32,
    pub(super) last: HashMap<&'static str, Instant>,
}

fn started_secs_ago(info: &ContainerInfo) -> f64 {
    info.started_at
        .as_deref()
        .and_then(|s| s.parse::<jiff::Timestamp>().ok())
        .map(|t| {
            (jiff::Timestamp::now() - t)
                .total(jiff::Unit::Second)
                .unwrap_or(0.0)
        })
        .unwrap_or(0.0)
}

impl Worker {
    pub(super) async fn run_probes(
        &mut self,
        pod: &Pod,
        c: &Container,
        info: &ContainerInfo,
        sb: &Sandbox,
    ) {
        let mut st = self.probes.get(&c.name).cloned().unwrap_or_default();
        if st.id != info.id {
            st = ProbeState {
                id: info.id.clone(),
                ..Default::default()
            };
        }
        let age = started_secs_ago(info);
        let ip = IpAddr::V4(sb.ip);
        let mut kill_reason = None;
        if !st.started {
            match &c.startup_probe {
                None => st.started = true,
                Some(p) => {
                    if let Some(ok) = self
                        .probe_due(pod, &mut st, "startup", p, age, c, info, ip)
                        .await
                    {
                        if ok {
                            st.started = true;
                            st.startup_failures = 0;
                        } else {
                            st.startup_failures += 1;
                            if st.startup_failures >= p.failure_threshold.unwrap_or(3).max(1) {
                                kill_reason = Some("startup");
                            }
                        }
                    }
                }
            }
        }
        if st.started {
            match &c.readiness_probe {
                None => st.ready = true,
                Some(p) => {
                    if let Some(ok) = self
                        .probe_due(pod, &mut st, "readiness", p, age, c, info, ip)
                        .await
                    {
                        if ok {
                            st.ready_failures = 0;
                            st.ready_successes += 1;
                            if st.ready_successes >= p.success_threshold.unwrap_or(1).max(1) {
                                st.ready = true;
                            }
                        } else {
                            st.ready_successes = 0;
                            st.ready_failures += 1;
                            if st.ready_failures >= p.failure_threshold.unwrap_or(3).max(1) {
                                st.ready = false;
                            }
                        }
                    }
                }
            }
            if let Some(p) = &c.liveness_probe {
                if let Some(ok) = self
                    .probe_due(pod, &mut st, "liveness", p, age, c, info, ip)
                    .await
                {
                    if ok {
                        st.live_failures = 0;
                    } else {
                        st.live_failures += 1;
                        if st.live_failures >= p.failure_threshold.unwrap_or(3).max(1) {
                            kill_reason = Some("liveness");
                        }
                    }
                }
            }
        }
        if let Some(why) = kill_reason {
            tracing::info!(container = %c.name, pod = ?pod.metadata.name, "Container {} failed {why} probe, will be restarted", c.name);
            self.event(
                pod,
                Some(&c.name),
                EventType::Normal,
                "Killing",
                &format!("Container {} failed {why} probe, will be restarted", c.name),
            )
            .await;
            let grace = pod
                .spec
                .as_ref()
                .and_then(|s| s.termination_grace_period_seconds)
                .unwrap_or(30)
                .max(0) as u64;
            let _ = self
                .ctx
                .runtime
                .stop_container(&info.id, Duration::from_secs(grace))
                .await;
            st.ready = false;
        }
        self.probes.insert(c.name.clone(), st);
    }

    /// Runs `probe` if its period elapsed; None when not due.
    #[allow(clippy::too_many_arguments)]
    async fn probe_due(
        &self,
        pod: &Pod,
        st: &mut ProbeState,
        kind: &'static str,
        p: &Probe,
        age: f64,
        c: &Container,
        info: &ContainerInfo,
        ip: IpAddr,
    ) -> Option<bool> {
        if age < p.initial_delay_seconds.unwrap_or(0) as f64 {
            return None;
        }
        let period = Duration::from_secs(p.period_seconds.unwrap_or(10).max(1) as u64);
        if st.last.get(kind).is_some_and(|t| t.elapsed() < period) {
            return None;
        }
        st.last.insert(kind, Instant::now());
        let timeout = Duration::from_secs(p.timeout_seconds.unwrap_or(1).max(1) as u64);
        let res = if let Some(h) = &p.http_get {
            crate::probes::http_get(h, c, ip, timeout).await
        } else if let Some(t) = &p.tcp_socket {
            crate::probes::tcp_socket(t, c, ip, timeout).await
        } else if let Some(e) = &p.exec {
            self.ctx.runtime.exec_sync(&info.id, e, timeout).await
        } else {
            Err("unsupported probe handler".into())
        };
        if let Err(e) = &res {
            tracing::debug!(container = %c.name, "{kind} probe failed: {e}");
            let mut k = kind.to_string();
            if let Some(first) = k.get_mut(..1) {
                first.make_ascii_uppercase();
            }
            self.event(
                pod,
                Some(&c.name),
                EventType::Warning,
                "Unhealthy",
                &format!("{k} probe failed: {e}"),
            )
            .await;
        }
        Some(res.is_ok())
    }
}
