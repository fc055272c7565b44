//! Idempotent removal of what a container leaves on the host: the rootfs mount,
//! libcontainer state, cgroups (including the per-data-dir parent) and directories.
//! Used by the shim after exit or a failed start, and by `remove` when a shim died.

use std::fs;
use std::path::Path;

use libcontainer::container::Container;
use nix::fcntl::{Flock, FlockArg};
use nix::mount::{umount2, MntFlags};
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use std::time::Duration;

use crate::cgroups::hierarchy_roots;
use crate::store::{append_line, external_work_dir, CDir, Layout};
use crate::ContainerSpec;

/// Best effort: everything except the container dir itself. Problems go to shim.log.
pub(crate) fn leftovers(layout: &Layout, id: &str, cdir: &CDir, spec: &ContainerSpec) {
    let log = |msg: String| append_line(&cdir.shim_log(), &msg);
    let lc_dir = layout.runtime_root().join(id);
    if lc_dir.exists() {
        match Container::load(lc_dir.clone()) {
            Ok(mut c) => {
                if let Err(e) = c.delete(true) {
                    log(format!("libcontainer delete: {}", crate::lc_error(&e)));
                }
            }
            Err(e) => log(format!("libcontainer load: {}", crate::lc_error(&e))),
        }
        if lc_dir.exists() {
            let _ = fs::remove_dir_all(&lc_dir);
        }
    }
    let cgroups_path = crate::spec::container_cgroups_path(&layout.data_dir, spec, id);
    remove_cgroup_dirs(&cgroups_path);
    remove_cgroup_parent(layout);

    if let Err(e) = unmount_all(&cdir.rootfs()) {
        log(format!("unmount {}: {e}", cdir.rootfs().display()));
    }
    if let Some(upper) = &spec.upper {
        let work = external_work_dir(upper);
        if work.exists() {
            if let Err(e) = fs::remove_dir_all(&work) {
                log(format!("removing {}: {e}", work.display()));
            }
        }
    }
}

/// Removes a directory tree; a missing one is fine. Refuses while the rootfs is mounted.
pub(crate) fn remove_dir(dir: &Path) -> bool {
    if unmount_all(&dir.join("rootfs")).is_err() {
        return false;
    }
    match fs::remove_dir_all(dir) {
        Ok(()) => true,
        Err(e) => e.kind() == std::io::ErrorKind::NotFound,
    }
}

/// Unmounts `path` (repeatedly, in case of stacked mounts); lazily if it is busy.
///
/// Asks umount2 directly instead of looking the path up in /proc/self/mountinfo first:
/// EINVAL already means "not a mount point", and formatting mountinfo costs more than the
/// whole unmount on a host with many mounts.
pub(crate) fn unmount_all(path: &Path) -> nix::Result<()> {
    for _ in 0..8 {
        match umount2(path, MntFlags::UMOUNT_NOFOLLOW) {
            Ok(()) => {}
            Err(nix::errno::Errno::EBUSY) => umount2(path, MntFlags::MNT_DETACH)?,
            Err(nix::errno::Errno::EINVAL | nix::errno::Errno::ENOENT) => return Ok(()),
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// Deletes a stopped container's cgroups and libcontainer state the way libcontainer's
/// `Container::delete` does for a container without hooks (skiff sets none): SIGKILL what is
/// left in each cgroup, rmdir it (retrying while dying processes leave), remove the state
/// dir. Why not `delete` itself: it first builds a cgroup manager, which re-reads and
/// re-verifies /proc/self/mountinfo once per controller (~1.5 ms of the teardown).
/// Returns false when something is left; the caller then falls back to libcontainer.
pub(crate) fn delete_stopped(layout: &Layout, id: &str, cgroups_path: &str) -> bool {
    let rel = cgroups_path.trim_start_matches('/');
    let mut ok = true;
    for root in hierarchy_roots() {
        let p = root.join(rel);
        if !p.is_dir() {
            continue;
        }
        if let Ok(procs) = fs::read_to_string(p.join("cgroup.procs")) {
            for pid in procs.lines().filter_map(|l| l.trim().parse::<i32>().ok()) {
                let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
            }
        }
        // libcontainer's schedule: 4 tries, 10 ms backoff growing up to 100 ms.
        let mut delay = Duration::from_millis(10);
        let mut removed = false;
        for attempt in 1..=4u32 {
            if fs::remove_dir(&p).is_ok() || !p.exists() {
                removed = true;
                break;
            }
            std::thread::sleep(delay);
            delay = (delay * attempt).min(Duration::from_millis(100));
        }
        ok &= removed;
    }
    let lc_dir = layout.runtime_root().join(id);
    match fs::remove_dir_all(&lc_dir) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(_) => ok = false,
    }
    ok
}

/// rmdir of `<hierarchy>/<cgroups_path>` everywhere (only succeeds for empty cgroups).
pub(crate) fn remove_cgroup_dirs(cgroups_path: &str) {
    let rel = cgroups_path.trim_start_matches('/');
    if rel.is_empty() {
        return;
    }
    for root in hierarchy_roots() {
        let p = root.join(rel);
        if p.is_dir() {
            let _ = fs::remove_dir(&p);
        }
    }
}

/// Removes the per-data-dir parent cgroup once it is empty, unless a container of this data
/// dir is being created right now (they hold the cgroup lock shared).
pub(crate) fn remove_cgroup_parent(layout: &Layout) {
    let Ok(f) = fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(layout.cgroup_lock())
    else {
        return;
    };
    if let Ok(_lock) = Flock::lock(f, FlockArg::LockExclusiveNonblock) {
        remove_cgroup_dirs(&crate::spec::cgroup_parent(&layout.data_dir));
    }
}

/// Cgroup dirs of this data dir that still exist (for tests and diagnostics).
pub fn leftover_cgroups(data_dir: &Path) -> Vec<std::path::PathBuf> {
    let rel = crate::spec::cgroup_parent(data_dir);
    let rel = rel.trim_start_matches('/');
    hierarchy_roots()
        .into_iter()
        .map(|r| r.join(rel))
        .filter(|p| p.exists())
        .collect()
}
