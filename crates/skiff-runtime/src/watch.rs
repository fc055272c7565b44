//! Wake-ups on changes to a container's directory (log writes, exit.json appearing), so
//! `run`, `logs -f`, `wait` and `stop` react at once instead of polling with sleeps.
//!
//! Two sources: the shim's sync socket when this process started the container (the shim
//! sends a byte after log writes and closes the socket once exit.json is written), else
//! inotify on the container dir.

use std::cell::Cell;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::path::Path;
use std::time::Duration;

use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::sys::inotify::{AddWatchFlags, InitFlags, Inotify};
use nix::sys::socket::{recv, MsgFlags};

pub(crate) enum DirWatch {
    Inotify(Option<Inotify>),
    /// The shim's end-of-life socket; `eof` once the shim closed it.
    Shim {
        sock: OwnedFd,
        eof: Cell<bool>,
    },
}

impl DirWatch {
    /// Watches `dir`. Create it BEFORE checking the condition you wait for, so no change
    /// between the check and the wait is missed. Without inotify it degrades to sleeping.
    pub(crate) fn new(dir: &Path) -> Self {
        let flags = AddWatchFlags::IN_MODIFY
            | AddWatchFlags::IN_CLOSE_WRITE
            | AddWatchFlags::IN_CREATE
            | AddWatchFlags::IN_MOVED_TO
            | AddWatchFlags::IN_DELETE
            | AddWatchFlags::IN_DELETE_SELF;
        let inotify = Inotify::init(InitFlags::IN_NONBLOCK | InitFlags::IN_CLOEXEC)
            .ok()
            .filter(|i| i.add_watch(dir, flags).is_ok());
        DirWatch::Inotify(inotify)
    }

    /// Wakes on the shim's notifications instead of inotify. Why: closing an inotify fd
    /// that had a watch waits for an SRCU grace period (fsnotify's mark reaper), 10-25 ms
    /// per close on the reference VM, twice per foreground `skiff run`; a socket closes at once.
    pub(crate) fn shim(sock: OwnedFd) -> Self {
        DirWatch::Shim {
            sock,
            eof: Cell::new(false),
        }
    }

    /// Returns after a change in the directory or after `timeout`, whichever comes first.
    pub(crate) fn wait(&self, timeout: Duration) {
        let ms = u16::try_from(timeout.as_millis()).unwrap_or(u16::MAX);
        match self {
            DirWatch::Inotify(Some(inotify)) => {
                let mut fds = [PollFd::new(inotify.as_fd(), PollFlags::POLLIN)];
                if let Ok(n) = poll(&mut fds, PollTimeout::from(ms)) {
                    if n > 0 {
                        // Drain; the caller re-checks its condition.
                        while matches!(inotify.read_events(), Ok(events) if !events.is_empty()) {}
                    }
                }
            }
            DirWatch::Shim { sock, eof } if !eof.get() => {
                let mut fds = [PollFd::new(sock.as_fd(), PollFlags::POLLIN)];
                if let Ok(n) = poll(&mut fds, PollTimeout::from(ms)) {
                    if n > 0 {
                        let mut buf = [0u8; 512];
                        loop {
                            match recv(sock.as_raw_fd(), &mut buf, MsgFlags::MSG_DONTWAIT) {
                                Ok(0) => {
                                    eof.set(true);
                                    break;
                                }
                                Ok(_) | Err(nix::errno::Errno::EINTR) => continue,
                                Err(nix::errno::Errno::EAGAIN) => break,
                                Err(_) => {
                                    eof.set(true);
                                    break;
                                }
                            }
                        }
                    }
                }
            }
            // No inotify, or the shim is gone (its exit is on disk by now): plain polling.
            _ => std::thread::sleep(timeout),
        }
    }
}
