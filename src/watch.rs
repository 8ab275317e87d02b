//! Watching the service directory with inotify, so a service added, removed
//! or edited at runtime is noticed at once, with no rescan timer.

use std::collections::HashSet;
use std::ffi::OsStr;
use std::os::fd::{AsFd, AsRawFd, RawFd};
use std::path::{Path, PathBuf};

use nix::errno::Errno;
use nix::sys::inotify::{AddWatchFlags, InitFlags, Inotify, WatchDescriptor};
use tokio::io::Interest;
use tokio::io::unix::AsyncFd;

/// nix's Inotify, with the AsRawFd that tokio's AsyncFd asks for.
struct Fd(Inotify);

impl AsRawFd for Fd {
    fn as_raw_fd(&self) -> RawFd {
        self.0.as_fd().as_raw_fd()
    }
}

/// An inotify watch on a service directory and on each service in it.
pub struct ServiceWatch {
    inotify: AsyncFd<Fd>,
    dir: PathBuf,
    top: Option<WatchDescriptor>,
    /// The parent directory, for the service directory itself being created,
    /// moved back or replaced.
    parent: Option<WatchDescriptor>,
    services: HashSet<WatchDescriptor>,
}

impl ServiceWatch {
    /// None (with a warning) when inotify is unavailable; SIGHUP still rescans.
    pub fn new(dir: &Path) -> Option<Self> {
        let made = Inotify::init(InitFlags::IN_NONBLOCK | InitFlags::IN_CLOEXEC)
            .map_err(std::io::Error::from)
            .and_then(|inotify| {
                // SAFETY: `Fd` owns the inotify fd and keeps it open, unchanged,
                // for as long as the AsyncFd that owns `Fd` lives.
                unsafe { AsyncFd::register_with_interest(Fd(inotify), Interest::READABLE) }
                    .map_err(|e| std::io::Error::other(e.to_string()))
            });
        match made {
            Ok(inotify) => {
                let mut watch = ServiceWatch {
                    inotify,
                    dir: dir.to_owned(),
                    top: None,
                    parent: None,
                    services: HashSet::new(),
                };
                watch.arm();
                Some(watch)
            }
            Err(e) => {
                tracing::warn!("cannot watch {} (send SIGHUP to rescan): {e}", dir.display());
                None
            }
        }
    }

    /// (Re)adds watches: the directory itself and every service in it (and its
    /// `log/`). Adding an existing watch is harmless. Watches of services no
    /// longer in the directory are removed: a watch follows its inode, so a
    /// service moved away would otherwise stay watched (and remembered)
    /// for good.
    fn arm(&mut self) {
        let inotify = &self.inotify.get_ref().0;
        let entries = AddWatchFlags::IN_CREATE
            | AddWatchFlags::IN_DELETE
            | AddWatchFlags::IN_MOVED_FROM
            | AddWatchFlags::IN_MOVED_TO
            | AddWatchFlags::IN_ONLYDIR;
        let top = entries | AddWatchFlags::IN_DELETE_SELF | AddWatchFlags::IN_MOVE_SELF;
        match inotify.add_watch(&self.dir, top) {
            Ok(wd) => self.top = Some(wd),
            Err(e) => tracing::debug!("cannot watch {}: {e}", self.dir.display()),
        }
        if let Some(parent) = self.dir.parent()
            && let Ok(wd) = inotify.add_watch(parent, entries)
        {
            self.parent = Some(wd);
        }
        let inside = entries | AddWatchFlags::IN_CLOSE_WRITE | AddWatchFlags::IN_ATTRIB;
        let Ok(entries) = std::fs::read_dir(&self.dir) else {
            return;
        };
        let mut current = HashSet::new();
        for entry in entries.flatten() {
            if entry.file_name().as_encoded_bytes().starts_with(b".") {
                continue;
            }
            let service = entry.path();
            for dir in [service.clone(), service.join("log")] {
                if dir.is_dir()
                    && let Ok(wd) = inotify.add_watch(&dir, inside)
                {
                    current.insert(wd);
                }
            }
        }
        for stale in self
            .services
            .difference(&current)
            .filter(|wd| Some(**wd) != self.top && Some(**wd) != self.parent)
        {
            // EINVAL when the kernel dropped it already (directory deleted).
            let _ = inotify.rm_watch(*stale);
        }
        self.services = current;
    }

    /// Removes every watch, for a shutdown. Closing an inotify fd that still
    /// has watches blocks for the kernel's mark reaper and an SRCU grace
    /// period: 15-25 ms measured here, which made up most of a 3-service
    /// `docker stop`. Removed now, they are reaped while the services stop,
    /// and the close at exit is immediate.
    pub fn unwatch_all(mut self) -> Retired {
        let inotify = &self.inotify.get_ref().0;
        for wd in self.services.drain().chain(self.top.take()).chain(self.parent.take()) {
            let _ = inotify.rm_watch(wd);
        }
        Retired(self)
    }

    /// Waits until something that may change a definition happens.
    pub async fn changed(&mut self) {
        loop {
            let Ok(mut guard) = self.inotify.readable().await else {
                return std::future::pending().await;
            };
            match self.inotify.get_ref().0.read_events() {
                Ok(events) => {
                    let relevant = events.iter().any(|e| {
                        let name = e.name.as_deref().unwrap_or(OsStr::new(""));
                        if Some(e.wd) == self.parent {
                            // Only the service directory itself matters there.
                            return Some(name) == self.dir.file_name();
                        }
                        // Our own runit state, and hidden files, are not definitions.
                        name != "supervise" && !name.as_encoded_bytes().starts_with(b".")
                    });
                    if relevant {
                        self.arm();
                        return;
                    }
                }
                Err(Errno::EAGAIN) => guard.clear_ready(),
                Err(e) => {
                    tracing::warn!("watching {}: {e}; send SIGHUP to rescan", self.dir.display());
                    return std::future::pending().await;
                }
            }
        }
    }
}

/// A watch without watches, kept open until baseinit exits (see
/// [`ServiceWatch::unwatch_all`]); never read again, so the removals' own
/// IN_IGNORED events cannot trigger a rescan.
pub struct Retired(#[allow(dead_code)] ServiceWatch);
