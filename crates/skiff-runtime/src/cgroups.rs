//! Cgroup trees we manage ourselves, beside libcontainer's per-container cgroups: the pod
//! cgroup (`<data-dir parent>/pod<uid>`, where `pids.max` makes the PID limit pod-wide and the
//! parent's `pids.max` keeps PIDs for the node), and killing every process below a cgroup
//! whatever the state files say (cgroup v2 `cgroup.kill`, else freeze, SIGKILL, thaw, so a
//! fork bomb cannot outrun the kill loop).

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

use crate::{Result, RuntimeError};

const ROOT: &str = "/sys/fs/cgroup";

/// A pod-level cgroup that containers are created under (see [`crate::ContainerSpec::pod_cgroup`]).
#[derive(Debug, Clone, Default, serde::Serialize, serde::Deserialize, PartialEq, Eq)]
pub struct PodCgroup {
    /// Directory name below the data dir's cgroup parent, e.g. `pod<uid>`: [A-Za-z0-9_-]+.
    pub name: String,
    /// `pids.max` of the pod cgroup (all containers of the pod together); None = no limit.
    pub pids_max: Option<i64>,
    /// `pids.max` of the data dir's parent cgroup (all pods of the node together), so the
    /// node keeps PIDs of its own; None = no limit.
    pub node_pids_max: Option<i64>,
}

pub fn valid_pod_cgroup_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 128
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

fn unified() -> bool {
    Path::new(ROOT).join("cgroup.controllers").exists()
}

/// Every place a cgroup path can live: the v2 root and each v1 hierarchy.
pub(crate) fn hierarchy_roots() -> Vec<PathBuf> {
    let mut roots = vec![PathBuf::from(ROOT)];
    if let Ok(rd) = fs::read_dir(ROOT) {
        for e in rd.flatten() {
            if e.file_type().map(|t| t.is_dir()).unwrap_or(false) {
                roots.push(e.path());
            }
        }
    }
    roots
}

/// The hierarchy that holds the pids controller (v1 `pids/`, or the v2 root).
fn pids_root() -> Option<PathBuf> {
    if unified() {
        return Some(PathBuf::from(ROOT));
    }
    let p = Path::new(ROOT).join("pids");
    p.join("cgroup.procs").exists().then_some(p)
}

fn write_file(path: &Path, value: &str) -> std::io::Result<()> {
    let mut f = fs::OpenOptions::new().write(true).open(path)?;
    f.write_all(value.as_bytes())
}

fn limit_str(v: Option<i64>) -> String {
    match v {
        Some(n) if n > 0 => n.to_string(),
        _ => "max".to_string(),
    }
}

/// Creates the pod cgroup (in the pids hierarchy; libcontainer adds the others when it creates
/// the containers below it) and applies the pod's and the node's PID limits. Idempotent; the
/// caller holds the data dir's cgroup lock shared so the parent is not removed meanwhile.
pub(crate) fn ensure_pod_cgroup(parent: &str, pod: &PodCgroup) -> Result<()> {
    if !valid_pod_cgroup_name(&pod.name) {
        return Err(RuntimeError::InvalidSpec(format!(
            "invalid pod cgroup name {:?}",
            pod.name
        )));
    }
    let Some(root) = pids_root() else {
        if pod.pids_max.is_some() {
            return Err(RuntimeError::Other(
                "the pids cgroup controller is not available: cannot limit the pod's PIDs".into(),
            ));
        }
        return Ok(());
    };
    let parent_dir = root.join(parent.trim_start_matches('/'));
    let dir = parent_dir.join(&pod.name);
    let io = |what: &Path| {
        let what = what.display().to_string();
        move |e: std::io::Error| RuntimeError::Io {
            context: format!("setting up pod cgroup {what}"),
            source: e,
        }
    };
    fs::create_dir_all(&dir).map_err(io(&dir))?;
    if unified() {
        // Enable the pids controller down to the pod (the root has it already on any host
        // where it exists; a failure there shows up as a missing pids.max below).
        let _ = write_file(&root.join("cgroup.subtree_control"), "+pids");
        write_file(&parent_dir.join("cgroup.subtree_control"), "+pids").map_err(io(&parent_dir))?;
    }
    write_file(&parent_dir.join("pids.max"), &limit_str(pod.node_pids_max))
        .map_err(io(&parent_dir))?;
    write_file(&dir.join("pids.max"), &limit_str(pod.pids_max)).map_err(io(&dir))?;
    Ok(())
}

/// All cgroup directories at and below `rel` in every hierarchy, deepest first.
fn tree(rel: &str) -> Vec<PathBuf> {
    let rel = rel.trim_start_matches('/');
    let mut out = Vec::new();
    for root in hierarchy_roots() {
        let top = root.join(rel);
        if rel.is_empty() || !top.is_dir() {
            continue;
        }
        let mut stack = vec![top];
        let mut found = Vec::new();
        while let Some(d) = stack.pop() {
            if let Ok(rd) = fs::read_dir(&d) {
                for e in rd.flatten() {
                    if e.file_type().map(|t| t.is_dir()).unwrap_or(false) {
                        stack.push(e.path());
                    }
                }
            }
            found.push(d);
        }
        // Parents were pushed before their children: reverse for deepest first.
        found.reverse();
        out.extend(found);
    }
    out
}

fn procs_in(dirs: &[PathBuf]) -> Vec<i32> {
    let mut pids = Vec::new();
    for d in dirs {
        if let Ok(s) = fs::read_to_string(d.join("cgroup.procs")) {
            pids.extend(s.lines().filter_map(|l| l.trim().parse::<i32>().ok()));
        }
    }
    pids.sort_unstable();
    pids.dedup();
    pids
}

fn set_frozen(rel: &str, frozen: bool) -> bool {
    let rel = rel.trim_start_matches('/');
    if unified() {
        let f = Path::new(ROOT).join(rel).join("cgroup.freeze");
        return write_file(&f, if frozen { "1" } else { "0" }).is_ok();
    }
    let f = Path::new(ROOT)
        .join("freezer")
        .join(rel)
        .join("freezer.state");
    if write_file(&f, if frozen { "FROZEN" } else { "THAWED" }).is_err() {
        return false;
    }
    if frozen {
        // FREEZING until every task stopped; a short wait is enough (then kill anyway).
        let deadline = Instant::now() + Duration::from_millis(500);
        while Instant::now() < deadline {
            if fs::read_to_string(&f).is_ok_and(|s| s.trim() == "FROZEN") {
                break;
            }
            std::thread::sleep(Duration::from_millis(2));
        }
    }
    true
}

/// SIGKILLs every process in the cgroup `rel` (relative to each hierarchy root) and below it,
/// in every hierarchy, until none is left or `timeout` passes. True when the tree is empty.
pub fn kill_tree(rel: &str, timeout: Duration) -> bool {
    let rel = rel.trim_start_matches('/');
    if rel.is_empty() {
        return false; // never the root cgroup
    }
    let deadline = Instant::now() + timeout;
    loop {
        let dirs = tree(rel);
        let pids = procs_in(&dirs);
        if pids.is_empty() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        let kill_file = Path::new(ROOT).join(rel).join("cgroup.kill");
        if unified() && write_file(&kill_file, "1").is_ok() {
            std::thread::sleep(Duration::from_millis(5));
            continue;
        }
        // Frozen tasks cannot fork: list, kill, thaw (they die on thaw).
        let frozen = set_frozen(rel, true);
        for pid in procs_in(&tree(rel)) {
            let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
        }
        if frozen {
            set_frozen(rel, false);
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// rmdir of every cgroup at and below `rel` in every hierarchy (deepest first). True when
/// nothing is left.
pub fn remove_tree(rel: &str) -> bool {
    let mut ok = true;
    for d in tree(rel) {
        let mut removed = false;
        for _ in 0..20 {
            if fs::remove_dir(&d).is_ok() || !d.exists() {
                removed = true;
                break;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        ok &= removed;
    }
    ok
}

/// Names of the child cgroups of `rel` in any hierarchy (container ids, pod cgroups).
pub(crate) fn children(rel: &str) -> Vec<String> {
    let rel = rel.trim_start_matches('/');
    let mut out: Vec<String> = Vec::new();
    for root in hierarchy_roots() {
        if let Ok(rd) = fs::read_dir(root.join(rel)) {
            for e in rd.flatten() {
                if e.file_type().map(|t| t.is_dir()).unwrap_or(false) {
                    out.push(e.file_name().to_string_lossy().into_owned());
                }
            }
        }
    }
    out.sort();
    out.dedup();
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_limits() {
        assert!(valid_pod_cgroup_name("pod0f3c-11_a"));
        assert!(!valid_pod_cgroup_name("../x"));
        assert!(!valid_pod_cgroup_name(""));
        assert!(!valid_pod_cgroup_name("a/b"));
        assert_eq!(limit_str(Some(10)), "10");
        assert_eq!(limit_str(None), "max");
        assert_eq!(limit_str(Some(-1)), "max");
        assert!(!kill_tree("/", Duration::ZERO));
    }
}
