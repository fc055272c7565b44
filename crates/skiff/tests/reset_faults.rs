//! Issue 10 item 12 through the CLI (root): `skiff reset` kills every process of the data dir
//! whatever its state files say (a corrupt spec.json hid a container from `reset`).

use std::time::{Duration, Instant};

mod common;

use common::Skiff;

fn alive(pid: i64) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .map(|s| !s[s.rfind(')').unwrap_or(0)..].starts_with(") Z"))
        .unwrap_or(false)
}

fn state_pids(s: &Skiff, id: &str) -> Vec<i64> {
    let state: serde_json::Value =
        serde_json::from_slice(&std::fs::read(s.container_dir(id).join("state.json")).unwrap())
            .unwrap();
    ["pid", "shim_pid"]
        .iter()
        .map(|k| state[*k].as_i64().unwrap())
        .collect()
}

#[test]
#[ignore = "needs root: real containers (namespaces, overlayfs, cgroups)"]
fn reset_kills_containers_with_corrupt_state() {
    let s = Skiff::with_busybox();
    let a = s
        .ok(&["run", "-d", "bb:1", "sh", "-c", "sleep 1000 & sleep 1000"])
        .trim()
        .to_string();
    let b = s
        .ok(&["run", "-d", "bb:1", "sleep", "1000"])
        .trim()
        .to_string();
    std::thread::sleep(Duration::from_millis(300));
    let mut pids = state_pids(&s, &a);
    pids.extend(state_pids(&s, &b));
    // The fault: garbage where the state files were.
    std::fs::write(s.container_dir(&a).join("spec.json"), b"{\"id\": ").unwrap();
    std::fs::write(s.container_dir(&b).join("state.json"), b"garbage").unwrap();
    std::fs::write(s.container_dir(&b).join("spec.json"), b"").unwrap();
    assert_eq!(
        s.ok(&["ps", "-aq"]).trim(),
        "",
        "corrupt containers are invisible"
    );
    s.ok(&["reset"]);
    let deadline = Instant::now() + Duration::from_secs(10);
    while pids.iter().any(|p| alive(*p)) {
        assert!(Instant::now() < deadline, "survived reset: {pids:?}");
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(!s.container_dir(&a).exists());
    assert!(!s.container_dir(&b).exists());
    assert!(skiff_runtime::leftover_cgroups(&s.data_dir()).is_empty());
}
