//! On-disk layout of a data dir and the small JSON records shared by the caller and the shim.
//!
//! ```text
//! <data_dir>/containers/.lock              flock: name uniqueness while creating
//! <data_dir>/containers/.cgroup.lock       flock: creating (shared) vs removing (exclusive) the cgroup parent
//! <data_dir>/containers/<id>/spec.json     StoredSpec (written once by the caller)
//!                            state.json    StoredState (shim pid, container pid, start times)
//!                            exit.json     ExitInfo (written by the shim after cleanup)
//!                            container.log CRI log
//!                            wait.lock     flock: waiters hold it shared so an auto-remove
//!                                          shim does not delete exit.json under them
//!                            shim.log      shim errors (its stdio is /dev/null)
//!                            upper/ work/ rootfs/ bundle/config.json
//! <data_dir>/runtime/<id>/                 libcontainer's state
//! ```

use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};

use nix::fcntl::{Flock, FlockArg};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::{ContainerSpec, Result, RuntimeError};

pub(crate) fn io_err(context: impl Into<String>) -> impl FnOnce(std::io::Error) -> RuntimeError {
    let context = context.into();
    move |source| RuntimeError::Io { context, source }
}

#[derive(Debug, Clone)]
pub(crate) struct Layout {
    pub data_dir: PathBuf,
}

impl Layout {
    pub fn containers(&self) -> PathBuf {
        self.data_dir.join("containers")
    }
    pub fn container(&self, id: &str) -> PathBuf {
        self.containers().join(id)
    }
    pub fn runtime_root(&self) -> PathBuf {
        self.data_dir.join("runtime")
    }
    pub fn names_lock(&self) -> PathBuf {
        self.containers().join(".lock")
    }
    pub fn cgroup_lock(&self) -> PathBuf {
        self.containers().join(".cgroup.lock")
    }
}

/// Files inside one container dir.
pub(crate) struct CDir(pub PathBuf);

impl CDir {
    pub fn spec(&self) -> PathBuf {
        self.0.join("spec.json")
    }
    pub fn state(&self) -> PathBuf {
        self.0.join("state.json")
    }
    pub fn exit(&self) -> PathBuf {
        self.0.join("exit.json")
    }
    pub fn log(&self) -> PathBuf {
        self.0.join("container.log")
    }
    pub fn wait_lock(&self) -> PathBuf {
        self.0.join("wait.lock")
    }
    pub fn shim_log(&self) -> PathBuf {
        self.0.join("shim.log")
    }
    pub fn rootfs(&self) -> PathBuf {
        self.0.join("rootfs")
    }
    pub fn bundle(&self) -> PathBuf {
        self.0.join("bundle")
    }
    pub fn upper(&self) -> PathBuf {
        self.0.join("upper")
    }
    pub fn work(&self) -> PathBuf {
        self.0.join("work")
    }
    pub fn empty_lower(&self) -> PathBuf {
        self.0.join("lower-empty")
    }
}

/// Work dir for an externally supplied upper dir: overlayfs needs upper and work on the
/// same filesystem, so it sits next to the upper dir.
pub(crate) fn external_work_dir(upper: &Path) -> PathBuf {
    let mut s = upper.as_os_str().to_owned();
    s.push(".work");
    PathBuf::from(s)
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct StoredSpec {
    pub id: String,
    pub name: String,
    pub created: String,
    pub spec: ContainerSpec,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub(crate) struct StoredState {
    pub shim_pid: Option<i32>,
    /// Start time (clock ticks since boot) of the shim, to detect PID reuse.
    pub shim_start: Option<u64>,
    pub pid: Option<i32>,
    pub pid_start: Option<u64>,
    pub started_at: Option<String>,
    /// The shim's guardian (kills the container if the shim dies), to tell "the shim died and
    /// the guardian is cleaning up" from "the shim died and nobody is left".
    #[serde(default)]
    pub guard_pid: Option<i32>,
    #[serde(default)]
    pub guard_start: Option<u64>,
}

/// Writes JSON to a temp file and renames it over `path`, so readers never see half a file;
/// fsynced, for records that must survive a host crash (spec.json, exit.json).
pub(crate) fn write_json_atomic<T: Serialize>(path: &Path, value: &T) -> Result<()> {
    write_json(path, value, true)
}

/// Like [`write_json_atomic`] without the fsync (0.2-0.5 ms each on ext4, on the start path),
/// for state.json: it describes live processes (pids, start times), which a host crash
/// ends anyway, and readers treat a missing or torn state.json as "no state".
pub(crate) fn write_state_json<T: Serialize>(path: &Path, value: &T) -> Result<()> {
    write_json(path, value, false)
}

fn write_json<T: Serialize>(path: &Path, value: &T, durable: bool) -> Result<()> {
    let data = serde_json::to_vec_pretty(value)
        .map_err(|e| RuntimeError::Other(format!("serializing {}: {e}", path.display())))?;
    let tmp = path.with_extension(format!("tmp{}", std::process::id()));
    let write = || -> std::io::Result<()> {
        let mut f = File::create(&tmp)?;
        f.write_all(&data)?;
        if durable {
            f.sync_all()?;
        }
        fs::rename(&tmp, path)
    };
    write().map_err(|e| {
        let _ = fs::remove_file(&tmp);
        RuntimeError::Io {
            context: format!("writing {}", path.display()),
            source: e,
        }
    })
}

/// Reads a JSON file; Ok(None) when it does not exist.
pub(crate) fn read_json<T: DeserializeOwned>(path: &Path) -> Result<Option<T>> {
    match fs::read(path) {
        Ok(data) => serde_json::from_slice(&data)
            .map(Some)
            .map_err(|e| RuntimeError::Other(format!("corrupt {}: {e}", path.display()))),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(RuntimeError::Io {
            context: format!("reading {}", path.display()),
            source: e,
        }),
    }
}

/// Start time of a process in clock ticks since boot (field 22 of /proc/<pid>/stat).
pub(crate) fn proc_start_time(pid: i32) -> Option<u64> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name may contain spaces and parentheses; fields resume after the last ')'.
    let rest = &stat[stat.rfind(')')? + 1..];
    let mut fields = rest.split_whitespace();
    // rest starts at field 3 (state); starttime is field 22.
    let state = fields.next()?;
    if state == "Z" || state == "X" {
        return None;
    }
    fields.nth(18)?.parse().ok()
}

/// True if `pid` is alive (not a zombie) and is still the process that started at `start`.
pub(crate) fn same_process_alive(pid: Option<i32>, start: Option<u64>) -> bool {
    match (pid, start) {
        (Some(pid), Some(start)) if pid > 0 => proc_start_time(pid) == Some(start),
        _ => false,
    }
}

/// Opens (creating) a lock file and takes an flock on it.
pub(crate) fn lock_file(path: &Path, arg: FlockArg) -> Result<Flock<File>> {
    let f = OpenOptions::new()
        .create(true)
        .truncate(false)
        .read(true)
        .write(true)
        .open(path)
        .map_err(io_err(format!("opening lock {}", path.display())))?;
    Flock::lock(f, arg).map_err(|(_, e)| RuntimeError::Io {
        context: format!("locking {}", path.display()),
        source: e.into(),
    })
}

/// Appends a line to the shim's log (best effort: the shim has no other output).
pub(crate) fn append_line(path: &Path, line: &str) {
    if let Ok(mut f) = OpenOptions::new().create(true).append(true).open(path) {
        let _ = writeln!(f, "{} {line}", jiff::Timestamp::now());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn start_time_of_self_and_missing() {
        let me = std::process::id() as i32;
        let t = proc_start_time(me).unwrap();
        assert!(same_process_alive(Some(me), Some(t)));
        assert!(!same_process_alive(Some(me), Some(t + 1)));
        assert!(!same_process_alive(None, Some(t)));
        assert!(proc_start_time(i32::MAX).is_none());
    }

    #[test]
    fn json_roundtrip_atomic() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("state.json");
        assert!(read_json::<StoredState>(&p).unwrap().is_none());
        let s = StoredState {
            pid: Some(5),
            ..Default::default()
        };
        write_json_atomic(&p, &s).unwrap();
        let back: StoredState = read_json(&p).unwrap().unwrap();
        assert_eq!(back.pid, Some(5));
        assert_eq!(fs::read_dir(d.path()).unwrap().count(), 1);
        assert_eq!(
            external_work_dir(Path::new("/a/upper")),
            PathBuf::from("/a/upper.work")
        );
    }
}
