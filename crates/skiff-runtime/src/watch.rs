//! Wake-ups on changes to a container's directory (log writes, exit.json appearing) through
//! inotify, so `run`, `logs -f`, `wait` and `stop` react at once instead of polling with sleeps.

use std::os::fd::AsFd;
use std::path::Path;
use std::time::Duration;

use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::sys::inotify::{AddWatchFlags, InitFlags, Inotify};

pub(crate) struct DirWatch {
    inotify: Option<Inotify>,
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
        DirWatch { inotify }
    }

    /// Returns after a change in the directory or after `timeout`, whichever comes first.
    pub(crate) fn wait(&self, timeout: Duration) {
        let Some(inotify) = &self.inotify else {
            std::thread::sleep(timeout);
            return;
        };
        let ms = u16::try_from(timeout.as_millis()).unwrap_or(u16::MAX);
        let mut fds = [PollFd::new(inotify.as_fd(), PollFlags::POLLIN)];
        if let Ok(n) = poll(&mut fds, PollTimeout::from(ms)) {
            if n > 0 {
                // Drain; the caller re-checks its condition.
                while matches!(inotify.read_events(), Ok(events) if !events.is_empty()) {}
            }
        }
    }
}
