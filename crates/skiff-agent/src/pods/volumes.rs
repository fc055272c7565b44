//! Pod volumes on the host, done the way the kubelet does since CVE-2017-1002101 /
//! CVE-2021-25741: paths that a pod can influence are resolved with `openat2(RESOLVE_BENEATH)`
//! and never followed out of their volume; subPaths are bind-mounted from the opened fd onto a
//! staging path the pod cannot write; ConfigMap/Secret/projected/downwardAPI contents are
//! written with the atomic-writer layout (`..<timestamp>` dir, `..data` symlink swapped by
//! rename, `key -> ..data/key`); secrets live on tmpfs; mounts are removed before a pod's
//! directory is.

use std::collections::BTreeSet;
use std::io::{Read, Write};
use std::os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use nix::errno::Errno;
use nix::fcntl::{openat2, readlinkat, renameat, OFlag, OpenHow, ResolveFlag};
use nix::mount::{mount, umount2, MntFlags, MsFlags};
use nix::sys::stat::{fchmod, fstat, mkdirat, Mode, SFlag};
use nix::unistd::{symlinkat, unlinkat, UnlinkatFlags};

/// Resolution that can never leave the starting directory (absolute symlinks, `..` above it
/// and /proc magic links fail).
fn beneath() -> ResolveFlag {
    ResolveFlag::RESOLVE_BENEATH | ResolveFlag::RESOLVE_NO_MAGICLINKS
}

/// Stricter: no symlink at all (paths the agent itself creates).
fn no_links() -> ResolveFlag {
    beneath() | ResolveFlag::RESOLVE_NO_SYMLINKS
}

fn open2(
    dir: &impl AsFd,
    rel: &str,
    flags: OFlag,
    mode: u32,
    resolve: ResolveFlag,
) -> nix::Result<OwnedFd> {
    let rel = if rel.is_empty() { "." } else { rel };
    let how = OpenHow::new()
        .flags(flags | OFlag::O_CLOEXEC)
        .mode(Mode::from_bits_truncate(mode))
        .resolve(resolve);
    let fd = openat2(dir.as_fd().as_raw_fd(), rel, how)?;
    // SAFETY: openat2 returned a new descriptor that nothing else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// An O_PATH handle on a directory the agent names (its own dirs, or a hostPath).
fn open_root(path: &Path) -> nix::Result<OwnedFd> {
    let fd = nix::fcntl::open(
        path,
        OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
        Mode::empty(),
    )?;
    // SAFETY: open returned a new descriptor that nothing else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// Creates `path` and its parents with `mode` (agent-owned paths only).
pub fn mkdir_mode(path: &Path, mode: u32) -> std::io::Result<()> {
    use std::os::unix::fs::DirBuilderExt;
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(mode)
        .create(path)
}

fn components(rel: &str) -> Vec<&str> {
    rel.split('/')
        .filter(|c| !c.is_empty() && *c != ".")
        .collect()
}

/// Why a subPath could not be prepared (the messages the kubelet shows are in build.rs).
#[derive(Debug)]
pub enum SubPathError {
    /// Creating a missing subPath directory failed.
    Create(String),
    /// The subPath leaves its volume, or mounting it failed.
    Prepare(String),
}

/// Resolves `sub` beneath `volume` (creating missing directories, never following a link out
/// of the volume) and bind-mounts the opened fd onto `staging`, which the container's own
/// bind mount then uses as its source. A pod swapping components for symlinks after the
/// check gains nothing: the mount source is the fd, not a path.
pub fn prepare_subpath(volume: &Path, sub: &str, staging: &Path) -> Result<(), SubPathError> {
    let prep =
        |what: &str, e: &dyn std::fmt::Display| SubPathError::Prepare(format!("{what}: {e}"));
    let root = open_root(volume).map_err(|e| prep("opening the volume", &e))?;
    let parts = components(sub);
    let rel = parts.join("/");
    let target = match open2(&root, &rel, OFlag::O_PATH, 0, beneath()) {
        Ok(fd) => fd,
        Err(Errno::ENOENT) => {
            create_beneath(&root, &parts).map_err(SubPathError::Create)?;
            open2(&root, &rel, OFlag::O_PATH, 0, beneath())
                .map_err(|e| prep("opening the subPath", &e))?
        }
        Err(e) => return Err(prep("opening the subPath", &e)),
    };
    let st = fstat(target.as_raw_fd()).map_err(|e| prep("stat", &e))?;
    let is_dir = SFlag::from_bits_truncate(st.st_mode) & SFlag::S_IFMT == SFlag::S_IFDIR;
    if let Some(parent) = staging.parent() {
        mkdir_mode(parent, 0o750).map_err(|e| prep("creating the staging dir", &e))?;
    }
    // A staging mount of an earlier attempt is replaced (the subPath is checked afresh).
    unmount_all(staging);
    match std::fs::symlink_metadata(staging) {
        Ok(m) if m.is_dir() == is_dir && !m.file_type().is_symlink() => {}
        Ok(m) => {
            let r = if m.is_dir() {
                std::fs::remove_dir(staging)
            } else {
                std::fs::remove_file(staging)
            };
            r.map_err(|e| prep("replacing the staging path", &e))?;
            make_target(staging, is_dir).map_err(|e| prep("creating the staging path", &e))?;
        }
        Err(_) => {
            make_target(staging, is_dir).map_err(|e| prep("creating the staging path", &e))?
        }
    }
    let source = format!("/proc/self/fd/{}", target.as_raw_fd());
    mount(
        Some(source.as_str()),
        staging,
        None::<&str>,
        MsFlags::MS_BIND,
        None::<&str>,
    )
    .map_err(|e| prep("bind-mounting the subPath", &e))?;
    // The staging path must now be exactly the inode that was checked.
    let ok = std::fs::symlink_metadata(staging)
        .is_ok_and(|m| m.dev() == st.st_dev && m.ino() == st.st_ino);
    if !ok {
        unmount_all(staging);
        return Err(SubPathError::Prepare(
            "staging mount does not match the subPath".into(),
        ));
    }
    Ok(())
}

fn make_target(path: &Path, dir: bool) -> std::io::Result<()> {
    if dir {
        mkdir_mode(path, 0o750)
    } else {
        std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(path)
            .map(drop)
    }
}

/// Creates the missing directories of `parts` beneath `root` with the volume root's mode, as
/// the kubelet's SafeMakeDir: existing components may be links that stay inside the volume,
/// new ones are made with mkdirat in a parent opened beneath the root.
fn create_beneath(root: &OwnedFd, parts: &[&str]) -> Result<(), String> {
    let mode = fstat(root.as_raw_fd())
        .map(|s| s.st_mode & 0o7777)
        .unwrap_or(0o755);
    for i in 0..parts.len() {
        let prefix = parts[..=i].join("/");
        match open2(
            root,
            &prefix,
            OFlag::O_PATH | OFlag::O_DIRECTORY,
            0,
            beneath(),
        ) {
            Ok(_) => continue,
            Err(Errno::ENOENT) => {}
            Err(e) => return Err(format!("{prefix}: {e}")),
        }
        let parent = open2(
            root,
            &parts[..i].join("/"),
            OFlag::O_PATH | OFlag::O_DIRECTORY,
            0,
            beneath(),
        )
        .map_err(|e| format!("{prefix}: {e}"))?;
        match mkdirat(
            Some(parent.as_raw_fd()),
            parts[i],
            Mode::from_bits_truncate(mode),
        ) {
            Ok(()) | Err(Errno::EEXIST) => {}
            Err(e) => return Err(format!("{prefix}: {e}")),
        }
        // mkdirat applied the umask: set the mode asked for on the dir just made.
        let dir = open2(
            &parent,
            parts[i],
            OFlag::O_RDONLY | OFlag::O_DIRECTORY,
            0,
            no_links(),
        )
        .map_err(|e| format!("{prefix}: {e}"))?;
        fchmod(dir.as_raw_fd(), Mode::from_bits_truncate(mode))
            .map_err(|e| format!("{prefix}: {e}"))?;
    }
    Ok(())
}

/// Whether `name` is one plain directory entry (no `/`, not `.` or `..`).
fn plain_entry(name: &str) -> bool {
    !name.is_empty() && name != "." && name != ".." && !name.contains('/') && !name.contains('\0')
}

/// The directory of a provisioned volume, `name` directly beneath the node's storage root:
/// created (mode 0777, like k3s's local-path) if missing, and refused if it is anything but a
/// real directory (a symlink planted there is never followed).
pub fn provisioned_dir(root: &Path, name: &str) -> Result<PathBuf, String> {
    if !plain_entry(name) {
        return Err(format!("invalid volume directory name {name:?}"));
    }
    mkdir_mode(root, 0o711).map_err(|e| format!("creating {}: {e}", root.display()))?;
    let rfd = open_root(root).map_err(|e| format!("opening {}: {e}", root.display()))?;
    let created = match mkdirat(Some(rfd.as_raw_fd()), name, Mode::from_bits_truncate(0o777)) {
        Ok(()) => true,
        Err(Errno::EEXIST) => false,
        Err(e) => return Err(format!("creating {name} in {}: {e}", root.display())),
    };
    let dir = open2(
        &rfd,
        name,
        OFlag::O_RDONLY | OFlag::O_DIRECTORY,
        0,
        no_links(),
    )
    .map_err(|e| format!("volume directory {name} in {}: {e}", root.display()))?;
    if created {
        // mkdirat applied the umask.
        fchmod(dir.as_raw_fd(), Mode::from_bits_truncate(0o777))
            .map_err(|e| format!("chmod {name}: {e}"))?;
    }
    Ok(root.join(name))
}

/// Deletes a provisioned volume's directory `name` directly beneath the storage root. The
/// entry is checked to be a real directory opened without following links, and its contents
/// are removed by std's `remove_dir_all`, which unlinks symlinks instead of following them (a
/// link planted inside the volume cannot redirect the deletion outside it). Missing = done.
pub fn remove_provisioned_dir(root: &Path, name: &str) -> Result<(), String> {
    if !plain_entry(name) {
        return Err(format!("invalid volume directory name {name:?}"));
    }
    let rfd = match open_root(root) {
        Ok(fd) => fd,
        Err(Errno::ENOENT) => return Ok(()),
        Err(e) => return Err(format!("opening {}: {e}", root.display())),
    };
    match open2(
        &rfd,
        name,
        OFlag::O_PATH | OFlag::O_DIRECTORY,
        0,
        no_links(),
    ) {
        Ok(_) => {}
        Err(Errno::ENOENT) => return Ok(()),
        // A symlink (ELOOP) or a non-directory in the root: remove only that entry.
        Err(Errno::ELOOP | Errno::ENOTDIR) => {
            return unlinkat(Some(rfd.as_raw_fd()), name, UnlinkatFlags::NoRemoveDir)
                .map_err(|e| format!("removing {name}: {e}"));
        }
        Err(e) => return Err(format!("volume directory {name}: {e}")),
    }
    let path = root.join(name);
    if !mounts_under(&path).is_empty() {
        return Err(format!("{} is still mounted", path.display()));
    }
    match std::fs::remove_dir_all(&path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(format!("removing {}: {e}", path.display())),
    }
}

/// One file of a ConfigMap/Secret/projected/downwardAPI volume.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Payload {
    pub path: String,
    pub data: Vec<u8>,
    pub mode: u32,
}

/// Checks a payload path as the kubelet's atomic writer does.
fn valid_payload_path(p: &str) -> bool {
    !p.is_empty()
        && !p.starts_with('/')
        && !p.starts_with("..")
        && p.split('/').all(|c| !c.is_empty() && c != ".." && c != ".")
}

/// Writes `files` into `dir` with the atomic-writer layout. Returns false when the content on
/// disk already matched (nothing written). Every write goes through descriptors opened
/// beneath `dir` with no symlink followed, so a planted link can never redirect it.
pub fn write_atomic(dir: &Path, files: &[Payload]) -> Result<bool, String> {
    for f in files {
        if !valid_payload_path(&f.path) {
            return Err(format!("invalid volume file path {:?}", f.path));
        }
    }
    let dfd = open_root(dir).map_err(|e| format!("opening {}: {e}", dir.display()))?;
    let old = readlinkat(Some(dfd.as_raw_fd()), "..data")
        .ok()
        .map(|t| t.to_string_lossy().into_owned())
        .filter(|t| t.starts_with("..") && !t.contains('/'));
    if let Some(old) = &old {
        if same_payload(dir, &dfd, old, files) {
            return Ok(false);
        }
    }
    // The new timestamped directory.
    let stamp = jiff::Timestamp::now()
        .strftime("..%Y_%m_%d_%H_%M_%S")
        .to_string();
    let mut ts = String::new();
    for _ in 0..16 {
        let name = format!("{stamp}.{}", rand::random::<u32>());
        match mkdirat(
            Some(dfd.as_raw_fd()),
            name.as_str(),
            Mode::from_bits_truncate(0o700),
        ) {
            Ok(()) => {
                ts = name;
                break;
            }
            Err(Errno::EEXIST) => continue,
            Err(e) => return Err(format!("creating {name} in {}: {e}", dir.display())),
        }
    }
    if ts.is_empty() {
        return Err(format!(
            "no free timestamped directory in {}",
            dir.display()
        ));
    }
    let err = |what: &str, e: &dyn std::fmt::Display| format!("{what} in {}: {e}", dir.display());
    let tsfd = open2(
        &dfd,
        &ts,
        OFlag::O_RDONLY | OFlag::O_DIRECTORY,
        0,
        no_links(),
    )
    .map_err(|e| err("opening the new data dir", &e))?;
    for f in files {
        write_one(&tsfd, f).map_err(|e| err(&format!("writing {}", f.path), &e))?;
    }
    fchmod(tsfd.as_raw_fd(), Mode::from_bits_truncate(0o755)).map_err(|e| err("chmod", &e))?;
    // Swap ..data atomically.
    let _ = unlinkat(
        Some(dfd.as_raw_fd()),
        "..data_tmp",
        UnlinkatFlags::NoRemoveDir,
    );
    symlinkat(ts.as_str(), Some(dfd.as_raw_fd()), "..data_tmp")
        .map_err(|e| err("symlink ..data_tmp", &e))?;
    renameat(
        Some(dfd.as_raw_fd()),
        "..data_tmp",
        Some(dfd.as_raw_fd()),
        "..data",
    )
    .map_err(|e| err("renaming ..data", &e))?;
    // User-visible names: top-level entries as links through ..data.
    let top: BTreeSet<&str> = files
        .iter()
        .filter_map(|f| f.path.split('/').next())
        .collect();
    for name in &top {
        let want = format!("..data/{name}");
        match readlinkat(Some(dfd.as_raw_fd()), *name) {
            Ok(t) if t.to_string_lossy() == want => continue,
            Ok(_) => remove_entry(dir, &dfd, name),
            Err(Errno::ENOENT) => {}
            // Not a link (a file of the pre-atomic layout): replaced.
            Err(_) => remove_entry(dir, &dfd, name),
        }
        symlinkat(want.as_str(), Some(dfd.as_raw_fd()), *name)
            .map_err(|e| err(&format!("linking {name}"), &e))?;
    }
    // Names no longer in the payload, and older data dirs.
    for entry in std::fs::read_dir(dir)
        .map_err(|e| err("listing", &e))?
        .flatten()
    {
        let name = entry.file_name().to_string_lossy().into_owned();
        if name == "..data" || name == ts || top.contains(name.as_str()) {
            continue;
        }
        remove_entry(dir, &dfd, &name);
    }
    Ok(true)
}

/// Removes a (user-visible link, or old data dir) entry of an atomic-writer dir. A file of an
/// old data dir may be held by a subPath mount (EBUSY): it then stays, as upstream.
fn remove_entry(dir: &Path, dfd: &OwnedFd, name: &str) {
    if unlinkat(Some(dfd.as_raw_fd()), name, UnlinkatFlags::NoRemoveDir).is_err() {
        // std's remove_dir_all never follows symlinks inside the tree.
        if let Err(e) = std::fs::remove_dir_all(dir.join(name)) {
            tracing::debug!(dir = %dir.display(), name, "removing old volume entry: {e}");
        }
    }
}

fn write_one(tsfd: &OwnedFd, f: &Payload) -> nix::Result<()> {
    let parts: Vec<&str> = f.path.split('/').collect();
    let (name, dirs) = parts.split_last().ok_or(Errno::EINVAL)?;
    let mut parent = open2(tsfd, "", OFlag::O_PATH | OFlag::O_DIRECTORY, 0, no_links())?;
    for d in dirs {
        match mkdirat(
            Some(parent.as_raw_fd()),
            *d,
            Mode::from_bits_truncate(0o755),
        ) {
            Ok(()) | Err(Errno::EEXIST) => {}
            Err(e) => return Err(e),
        }
        let next = open2(
            &parent,
            d,
            OFlag::O_RDONLY | OFlag::O_DIRECTORY,
            0,
            no_links(),
        )?;
        fchmod(next.as_raw_fd(), Mode::from_bits_truncate(0o755))?;
        parent = next;
    }
    let fd = open2(
        &parent,
        name,
        OFlag::O_WRONLY | OFlag::O_CREAT | OFlag::O_EXCL | OFlag::O_NOFOLLOW,
        0o600,
        no_links(),
    )?;
    let mut file = std::fs::File::from(fd);
    file.write_all(&f.data).map_err(|_| Errno::EIO)?;
    fchmod(file.as_raw_fd(), Mode::from_bits_truncate(f.mode & 0o7777))?;
    Ok(())
}

/// Whether the data dir `ts` holds exactly `files` (content and mode).
fn same_payload(dir: &Path, dfd: &OwnedFd, ts: &str, files: &[Payload]) -> bool {
    let mut on_disk = 0usize;
    if count_files(&dir.join(ts), &mut on_disk, 0).is_err() || on_disk != files.len() {
        return false;
    }
    files.iter().all(|f| {
        let Ok(fd) = open2(
            dfd,
            &format!("{ts}/{}", f.path),
            OFlag::O_RDONLY,
            0,
            no_links(),
        ) else {
            return false;
        };
        let Ok(st) = fstat(fd.as_raw_fd()) else {
            return false;
        };
        if st.st_mode & 0o7777 != f.mode & 0o7777 || st.st_size as usize != f.data.len() {
            return false;
        }
        let mut buf = Vec::with_capacity(f.data.len());
        // Bounded by the expected size (+1 to notice growth).
        let read = std::fs::File::from(fd)
            .take(f.data.len() as u64 + 1)
            .read_to_end(&mut buf);
        read.is_ok() && buf == f.data
    })
}

/// Counts the files below `dir` (the agent's own tree: containers see it read-only).
fn count_files(dir: &Path, n: &mut usize, depth: usize) -> std::io::Result<()> {
    if depth > 32 {
        return Err(std::io::Error::other("too deep"));
    }
    for e in std::fs::read_dir(dir)? {
        let e = e?;
        if e.file_type()?.is_dir() {
            count_files(&e.path(), n, depth + 1)?;
        } else {
            *n += 1;
        }
    }
    Ok(())
}

/// Whether `path` is the root of a mount (its device differs from its parent's).
fn is_mount_point(path: &Path) -> bool {
    let (Ok(m), Some(parent)) = (std::fs::symlink_metadata(path), path.parent()) else {
        return false;
    };
    std::fs::symlink_metadata(parent).is_ok_and(|p| p.dev() != m.dev())
}

/// Mounts a tmpfs on `dir` (once; kept across agent restarts) with the given root mode and
/// size cap in bytes.
pub fn ensure_tmpfs(dir: &Path, mode: u32, size: Option<u64>) -> Result<(), String> {
    mkdir_mode(dir, 0o750).map_err(|e| format!("creating {}: {e}", dir.display()))?;
    if is_mount_point(dir) {
        return Ok(());
    }
    let mut opts = format!("mode={mode:o}");
    if let Some(s) = size {
        opts.push_str(&format!(",size={s}"));
    }
    mount(
        Some("tmpfs"),
        dir,
        Some("tmpfs"),
        MsFlags::MS_NOSUID | MsFlags::MS_NODEV,
        Some(opts.as_str()),
    )
    .map_err(|e| format!("mounting tmpfs on {}: {e}", dir.display()))
}

/// Unmounts `path` (stacked mounts too); a busy mount is detached.
fn unmount_all(path: &Path) {
    for _ in 0..8 {
        match umount2(path, MntFlags::UMOUNT_NOFOLLOW | MntFlags::MNT_DETACH) {
            Ok(()) => {}
            Err(_) => return,
        }
    }
}

/// Mount points at or below `dir`, deepest first.
fn mounts_under(dir: &Path) -> Vec<PathBuf> {
    let Ok(all) = skiff_net::mount_points() else {
        return Vec::new();
    };
    let mut out: Vec<PathBuf> = all.into_iter().filter(|p| p.starts_with(dir)).collect();
    out.sort_by_key(|p| std::cmp::Reverse(p.as_os_str().len()));
    out.dedup();
    out
}

/// Unmounts everything below `dir` (subPath staging mounts, secret and memory tmpfs); true
/// when nothing is left mounted there.
pub fn unmount_under(dir: &Path) -> bool {
    for _ in 0..3 {
        let mounts = mounts_under(dir);
        if mounts.is_empty() {
            return true;
        }
        for m in mounts {
            unmount_all(&m);
        }
    }
    mounts_under(dir).is_empty()
}

/// Removes a pod's directory after unmounting what the agent mounted in it. With a mount
/// left (it could be a hostPath) nothing is deleted: remove_dir_all would descend into it.
pub fn remove_pod_dir(dir: &Path) {
    if !dir.exists() {
        return;
    }
    if !unmount_under(dir) {
        tracing::warn!(dir = %dir.display(), "mounts left in the pod directory; not removing it");
        return;
    }
    if let Err(e) = std::fs::remove_dir_all(dir) {
        tracing::warn!(dir = %dir.display(), "removing the pod directory: {e}");
    }
}

/// Bytes used by the tree at `path` (allocated blocks; no symlink followed, no other
/// filesystem entered, hard links counted once).
pub fn disk_usage(path: &Path) -> u64 {
    let Ok(root) = std::fs::symlink_metadata(path) else {
        return 0;
    };
    let dev = root.dev();
    let mut total = root.blocks() * 512;
    let mut seen = std::collections::HashSet::new();
    let mut stack = vec![path.to_path_buf()];
    while let Some(dir) = stack.pop() {
        let Ok(rd) = std::fs::read_dir(&dir) else {
            continue;
        };
        for e in rd.flatten() {
            let Ok(m) = e.metadata() else { continue };
            if m.dev() != dev {
                continue;
            }
            if m.nlink() > 1 && !m.is_dir() && !seen.insert(m.ino()) {
                continue;
            }
            total += m.blocks() * 512;
            if m.is_dir() {
                stack.push(e.path());
            }
        }
    }
    total
}

/// Gives a volume to the pod's `fsGroup` like the kubelet's `SetVolumeOwnership`: group `gid`
/// on every entry, group read (and write unless `read_only`) on files, setgid and group search
/// on directories so files the pod creates later inherit the group. `recursive` walks below the
/// root: only for volumes the agent writes (containers mount them read-only), since a walk of
/// pod-written content could be raced. No symlink is followed; symlinks only change group.
pub fn set_ownership(
    dir: &Path,
    gid: u32,
    read_only: bool,
    recursive: bool,
) -> std::io::Result<()> {
    let fd = nix::fcntl::open(
        dir,
        OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
        Mode::empty(),
    )?;
    // SAFETY: open returned a new descriptor that nothing else owns.
    let root = unsafe { OwnedFd::from_raw_fd(fd) };
    own(&root, gid, read_only, true)?;
    if recursive {
        own_below(&root, gid, read_only, 0)?;
    }
    Ok(())
}

fn own(fd: &OwnedFd, gid: u32, read_only: bool, dir: bool) -> std::io::Result<()> {
    nix::unistd::fchown(fd.as_raw_fd(), None, Some(nix::unistd::Gid::from_raw(gid)))?;
    let mode = fstat(fd.as_raw_fd())?.st_mode & 0o7777;
    let mut mask = if read_only { 0o440 } else { 0o660 };
    if dir {
        mask |= 0o2000 | 0o110;
    }
    fchmod(fd.as_raw_fd(), Mode::from_bits_truncate(mode | mask))?;
    Ok(())
}

fn own_below(dfd: &OwnedFd, gid: u32, read_only: bool, depth: usize) -> std::io::Result<()> {
    if depth > 32 {
        return Err(std::io::Error::other("volume tree too deep"));
    }
    let listing = nix::dir::Dir::openat(
        Some(dfd.as_raw_fd()),
        ".",
        OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
        Mode::empty(),
    )?;
    let mut names = Vec::new();
    for entry in listing.into_iter().flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        if name != "." && name != ".." {
            names.push(name);
        }
    }
    for name in names {
        let st = nix::sys::stat::fstatat(
            Some(dfd.as_raw_fd()),
            name.as_str(),
            nix::fcntl::AtFlags::AT_SYMLINK_NOFOLLOW,
        )?;
        match SFlag::from_bits_truncate(st.st_mode & SFlag::S_IFMT.bits()) {
            SFlag::S_IFLNK => nix::unistd::fchownat(
                Some(dfd.as_raw_fd()),
                name.as_str(),
                None,
                Some(nix::unistd::Gid::from_raw(gid)),
                nix::fcntl::AtFlags::AT_SYMLINK_NOFOLLOW,
            )?,
            SFlag::S_IFDIR => {
                let sub = open2(
                    dfd,
                    &name,
                    OFlag::O_RDONLY | OFlag::O_DIRECTORY,
                    0,
                    no_links(),
                )?;
                own(&sub, gid, read_only, true)?;
                own_below(&sub, gid, read_only, depth + 1)?;
            }
            SFlag::S_IFREG => {
                let f = open2(dfd, &name, OFlag::O_RDONLY, 0, no_links())?;
                own(&f, gid, read_only, false)?;
            }
            _ => {}
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn payload(path: &str, data: &str, mode: u32) -> Payload {
        Payload {
            path: path.into(),
            data: data.as_bytes().to_vec(),
            mode,
        }
    }

    #[test]
    fn atomic_writer_layout_and_updates() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("vol");
        std::fs::create_dir(&dir).unwrap();
        let v1 = vec![payload("a", "1", 0o644), payload("sub/b", "2", 0o400)];
        assert!(write_atomic(&dir, &v1).unwrap());
        assert!(
            !write_atomic(&dir, &v1).unwrap(),
            "unchanged payload rewritten"
        );
        let data = std::fs::read_link(dir.join("..data")).unwrap();
        assert!(data.to_string_lossy().starts_with(".."));
        assert_eq!(
            std::fs::read_link(dir.join("a")).unwrap(),
            Path::new("..data/a")
        );
        assert_eq!(std::fs::read_to_string(dir.join("sub/b")).unwrap(), "2");
        let m = std::fs::metadata(dir.join("sub/b")).unwrap();
        assert_eq!(m.mode() & 0o777, 0o400);
        // Change a, drop sub, add c.
        let v2 = vec![payload("a", "one", 0o644), payload("c", "3", 0o644)];
        assert!(write_atomic(&dir, &v2).unwrap());
        assert_eq!(std::fs::read_to_string(dir.join("a")).unwrap(), "one");
        assert_eq!(std::fs::read_to_string(dir.join("c")).unwrap(), "3");
        assert!(std::fs::symlink_metadata(dir.join("sub")).is_err());
        assert!(
            std::fs::symlink_metadata(dir.join(&data)).is_err(),
            "old data dir kept"
        );
    }

    /// A link planted where the writer works never redirects a write: a stale `..data_tmp`
    /// or user-visible name pointing outside is replaced, not written through, and nested
    /// payload dirs are created fresh inside the new data dir.
    #[test]
    fn planted_links_do_not_redirect_writes() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("vol");
        let outside = tmp.path().join("outside");
        std::fs::create_dir(&dir).unwrap();
        std::fs::create_dir(&outside).unwrap();
        std::fs::write(outside.join("victim"), "host data").unwrap();
        std::os::unix::fs::symlink(outside.join("victim"), dir.join("key")).unwrap();
        std::os::unix::fs::symlink(&outside, dir.join("nested")).unwrap();
        std::os::unix::fs::symlink(&outside, dir.join("..data_tmp")).unwrap();
        let files = vec![
            payload("key", "new", 0o644),
            payload("nested/victim", "x", 0o644),
        ];
        assert!(write_atomic(&dir, &files).unwrap());
        assert_eq!(
            std::fs::read_to_string(outside.join("victim")).unwrap(),
            "host data"
        );
        assert_eq!(std::fs::read_dir(&outside).unwrap().count(), 1);
        assert_eq!(std::fs::read_to_string(dir.join("key")).unwrap(), "new");
        assert_eq!(
            std::fs::read_link(dir.join("key")).unwrap(),
            Path::new("..data/key")
        );
        // And the fd-based primitive itself refuses a link in the last component.
        let tsfd = open_root(&dir).unwrap();
        std::os::unix::fs::symlink(outside.join("victim"), dir.join("planted")).unwrap();
        let r = open2(
            &tsfd,
            "planted",
            OFlag::O_WRONLY | OFlag::O_CREAT | OFlag::O_NOFOLLOW,
            0o644,
            no_links(),
        );
        assert!(r.is_err());
        assert!(write_atomic(&dir, &[payload("../x", "y", 0o644)]).is_err());
    }
}
