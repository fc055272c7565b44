//! Persistent namespaces: bind mounts of nsfs files, created from a short-lived thread.

use std::path::{Path, PathBuf};

use nix::mount::{mount, umount2, MntFlags, MsFlags};
use nix::sched::CloneFlags;

use crate::{io_err, nix_err, NetError, Result};

pub(crate) fn validate_hostname(h: &str) -> Result<()> {
    // Kernel limit is 64 bytes (__NEW_UTS_LEN); keep to DNS-label characters.
    let ok = !h.is_empty()
        && h.len() <= 64
        && h.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.');
    if ok {
        Ok(())
    } else {
        Err(NetError::Other(format!("invalid hostname {h:?}")))
    }
}

/// True if `path` is an nsfs bind mount (statfs reports the mounted fs, not the file's dir).
pub(crate) fn is_ns_mounted(path: &Path) -> bool {
    nix::sys::statfs::statfs(path)
        .map(|s| s.filesystem_type() == nix::sys::statfs::NSFS_MAGIC)
        .unwrap_or(false)
}

/// Creates net/ipc/uts namespaces and bind-mounts them onto the three (new) files.
///
/// unshare() of these three only affects the calling *thread*, so a throwaway thread does it:
/// no fork in a multi-threaded process, and the thread's exit drops its references — the bind
/// mounts keep the namespaces alive. The mount namespace is shared with the whole process, so
/// the mounts made from the thread are the process's mounts.
/// `netns: None` keeps the host's network (a `hostNetwork` pod): only IPC and UTS are new.
pub(crate) fn create_namespaces(
    netns: Option<&Path>,
    ipcns: &Path,
    utsns: &Path,
    hostname: &str,
) -> Result<()> {
    let mut targets: Vec<(PathBuf, &'static str)> =
        vec![(ipcns.to_path_buf(), "ipc"), (utsns.to_path_buf(), "uts")];
    let mut flags = CloneFlags::CLONE_NEWIPC | CloneFlags::CLONE_NEWUTS;
    if let Some(n) = netns {
        targets.push((n.to_path_buf(), "net"));
        flags |= CloneFlags::CLONE_NEWNET;
    }
    let new_net = netns.is_some();
    for (t, _) in &targets {
        std::fs::File::create(t).map_err(io_err(format!("create {}", t.display())))?;
    }
    let hostname = hostname.to_string();
    let handle = std::thread::Builder::new()
        .name("skiff-net-unshare".into())
        .spawn(move || -> Result<()> {
            nix::sched::unshare(flags).map_err(nix_err("unshare(net, ipc, uts)"))?;
            nix::unistd::sethostname(&hostname).map_err(nix_err("sethostname"))?;
            if new_net {
                // The netlink thread inherits this thread's new network namespace.
                crate::netlink::link_up(None, "lo")?;
            }
            for (target, kind) in &targets {
                let src = format!("/proc/thread-self/ns/{kind}");
                mount(
                    Some(src.as_str()),
                    target.as_path(),
                    None::<&str>,
                    MsFlags::MS_BIND,
                    None::<&str>,
                )
                .map_err(nix_err(format!("bind-mount {src} on {}", target.display())))?;
            }
            Ok(())
        })
        .map_err(io_err("spawn namespace thread"))?;
    handle
        .join()
        .map_err(|_| NetError::Other("namespace thread panicked".into()))?
}

/// Unmounts whatever is mounted on the three ns files of a sandbox dir (all of them, even if
/// one fails, then reports the first error).
pub(crate) fn unmount_all(dir: &Path) -> Result<()> {
    let mut first = None;
    for kind in ["net", "ipc", "uts"] {
        if let Err(e) = unmount(&dir.join(kind)) {
            first.get_or_insert(e);
        }
    }
    first.map_or(Ok(()), Err)
}

/// Unmount every mount stacked on `path`; EINVAL (not a mount point) and ENOENT end the loop.
/// Falls back to a lazy detach if the plain unmount is refused (EBUSY).
fn unmount(path: &Path) -> Result<()> {
    loop {
        match umount2(path, MntFlags::empty()) {
            Ok(()) => continue,
            Err(nix::Error::EINVAL) | Err(nix::Error::ENOENT) => return Ok(()),
            Err(nix::Error::EBUSY) => {
                umount2(path, MntFlags::MNT_DETACH)
                    .map_err(nix_err(format!("umount -l {}", path.display())))?;
            }
            Err(e) => return Err(nix_err(format!("umount {}", path.display()))(e)),
        }
    }
}

/// Mount points of this mount namespace (procfs parses /proc/self/mountinfo).
pub fn mount_points() -> Result<Vec<PathBuf>> {
    let infos = procfs::process::Process::myself()
        .and_then(|p| p.mountinfo())
        .map_err(|e| NetError::Other(format!("read mountinfo: {e}")))?;
    Ok(infos
        .into_iter()
        .map(|m| unescape_mount_point(&m.mount_point))
        .collect())
}

/// procfs hands the field over as written: the kernel's `\ooo` escapes of space, tab, newline
/// and backslash are still in it.
fn unescape_mount_point(p: &Path) -> PathBuf {
    use std::os::unix::ffi::{OsStrExt, OsStringExt};
    let b = p.as_os_str().as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\'
            && i + 3 < b.len()
            && b[i + 1..i + 4].iter().all(|c| (b'0'..=b'7').contains(c))
        {
            out.push((b[i + 1] - b'0') * 64 + (b[i + 2] - b'0') * 8 + (b[i + 3] - b'0'));
            i += 4;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    PathBuf::from(std::ffi::OsString::from_vec(out))
}

/// Makes `dir` a private bind mount of itself (as `ip netns` does for /run/netns), so the ns
/// bind mounts below it neither propagate into peer mount namespaces (which would pin the
/// namespaces after we unmount) nor receive mounts from them.
pub(crate) fn make_private_mount(dir: &Path) -> Result<()> {
    if !mount_points()?.iter().any(|m| m == dir) {
        mount(Some(dir), dir, None::<&str>, MsFlags::MS_BIND, None::<&str>)
            .map_err(nix_err(format!("bind-mount {} on itself", dir.display())))?;
    }
    mount(
        None::<&str>,
        dir,
        None::<&str>,
        MsFlags::MS_PRIVATE,
        None::<&str>,
    )
    .map_err(nix_err(format!("make {} private", dir.display())))
}

/// Undoes `make_private_mount` (only if `dir` is a mount point).
pub(crate) fn unmount_self_mount(dir: &Path) -> Result<()> {
    if mount_points()?.iter().any(|m| m == dir) {
        unmount(dir)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    #[test]
    fn unescape() {
        let u = |s: &str| super::unescape_mount_point(Path::new(s));
        assert_eq!(u(r"/a\040b/c"), Path::new("/a b/c"));
        assert_eq!(u(r"/a\0"), Path::new(r"/a\0"));
    }

    #[test]
    fn mount_points_lists_proc() {
        let all = super::mount_points().unwrap();
        assert!(all.iter().any(|p| p == Path::new("/proc")));
        assert!(!all
            .iter()
            .any(|p| p == Path::new("/definitely/not/mounted")));
    }

    #[test]
    #[ignore = "needs root: bind-mounts a directory"]
    fn mount_points_decodes_a_space() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("a b");
        std::fs::create_dir(&dir).unwrap();
        super::make_private_mount(&dir).unwrap();
        let listed = super::mount_points().unwrap().contains(&dir);
        super::unmount_self_mount(&dir).unwrap();
        assert!(listed, "{} not in mount_points()", dir.display());
        assert!(!super::mount_points().unwrap().contains(&dir));
    }
}
