//! Watching the service directory with inotify, so a service added, removed
//! or edited at runtime is noticed at once, with no rescan timer.
//!
//! Each watched directory is also *pinned*, for the stop's sake. Closing an
//! inotify descriptor waits for an SRCU grace period (the kernel's fsnotify
//! mark reaper), and removing an inode's last mark starts another one, on a
//! worker, to free the inode's mark list (its "connector"). A grace period
//! asked for while another runs, or just after one, is a slow one, several
//! scheduler ticks, longer than a whole stop. Removing the watches starts
//! one such free per directory, their grace periods back to back, and a
//! close meanwhile gets a slow one: the stop, or the exit after baseinit's
//! last line, would wait for the kernel. A pin is the directory held open
//! with a dnotify request on it: dnotify's marks belong to the kernel's own
//! group, so the inode keeps a mark when the inotify ones go, and its list
//! is not freed then. Closing the inotify descriptor then waits for one
//! grace period, alone, the quick kind, while the stop's services exit, and
//! closing a pin waits for nothing. Without dnotify (a kernel without it,
//! `fs.dir-notify-enable=0`) nothing is pinned: the watches are removed at
//! the stop and the descriptor closes at exit ([`ServiceWatch::close`]). A
//! pin's own events (an entry's attributes changed) would come as SIGIO,
//! which baseinit ignores (see `inherited`).

use std::collections::{HashMap, HashSet};
use std::ffi::OsStr;
use std::os::fd::{AsFd, AsRawFd, OwnedFd, RawFd};
use std::path::{Path, PathBuf};

use nix::errno::Errno;
use nix::fcntl::{OFlag, open};
use nix::libc;
use nix::sys::inotify::{AddWatchFlags, InitFlags, Inotify, WatchDescriptor};
use nix::sys::stat::Mode;
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
    /// Each watched directory, held open with a dnotify request (see above).
    pins: HashMap<WatchDescriptor, OwnedFd>,
    /// Pins take fd numbers below this only (half the soft fd limit): the
    /// rest are for the services' pipes, and a stop a little slower is
    /// better than a service that cannot start.
    pins_below: RawFd,
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
                    pins: HashMap::new(),
                    pins_below: half_the_fd_limit(),
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
            Ok(wd) => {
                // A new inode at the path (the directory replaced): the old
                // one is no longer ours to watch.
                if let Some(old) = self.top.replace(wd).filter(|old| *old != wd) {
                    let _ = inotify.rm_watch(old);
                }
                pin(&mut self.pins, self.pins_below, wd, &self.dir);
            }
            Err(e) => tracing::debug!("cannot watch {}: {e}", self.dir.display()),
        }
        if let Some(parent) = self.dir.parent()
            && let Ok(wd) = inotify.add_watch(parent, entries)
        {
            self.parent = Some(wd);
            pin(&mut self.pins, self.pins_below, wd, parent);
        }
        let inside = entries | AddWatchFlags::IN_CLOSE_WRITE | AddWatchFlags::IN_ATTRIB;
        let Ok(entries) = std::fs::read_dir(&self.dir) else {
            self.unpin_unwatched();
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
                    pin(&mut self.pins, self.pins_below, wd, &dir);
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
        self.unpin_unwatched();
    }

    /// Closes the pins of directories no longer watched.
    fn unpin_unwatched(&mut self) {
        let (top, parent, services) = (self.top, self.parent, &self.services);
        self.pins
            .retain(|wd, _| Some(*wd) == top || Some(*wd) == parent || services.contains(wd));
    }

    /// Ends the watch, for a shutdown; call once the services have been
    /// told to stop. With every directory pinned, it closes now: one quick
    /// grace period, while the services exit. Otherwise the watches are
    /// removed now and what is left comes back, to stay open until baseinit
    /// exits (the close then mostly finds the kernel's frees done).
    pub fn close(mut self) -> Option<Retired> {
        let watched: Vec<WatchDescriptor> = self
            .services
            .drain()
            .chain(self.top.take())
            .chain(self.parent.take())
            .collect();
        if watched.iter().all(|wd| self.pins.contains_key(wd)) {
            // The inotify descriptor first: its marks must go while the pins
            // still hold each inode's list.
            let ServiceWatch { inotify, pins, .. } = self;
            drop(inotify);
            drop(pins);
            return None;
        }
        let inotify = &self.inotify.get_ref().0;
        for wd in watched {
            let _ = inotify.rm_watch(wd);
        }
        Some(Retired(self))
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
/// [`ServiceWatch::close`]); never read again, so the removals' own
/// IN_IGNORED events cannot trigger a rescan.
pub struct Retired(#[allow(dead_code)] ServiceWatch);

// <linux/fcntl.h>; the libc crate does not carry them.
const DN_ATTRIB: libc::c_int = 0x20;
/// 0x8000_0000, the sign bit of the C int the kernel reads.
const DN_MULTISHOT: libc::c_int = libc::c_int::MIN;

/// Pins `dir`, watched as `wd`, unless it is pinned already (see the module
/// doc). Best effort: a directory that cannot be pinned is only watched.
fn pin(pins: &mut HashMap<WatchDescriptor, OwnedFd>, below: RawFd, wd: WatchDescriptor, dir: &Path) {
    if pins.contains_key(&wd) {
        return;
    }
    let Ok(fd) = open(
        dir,
        OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
        Mode::empty(),
    ) else {
        return;
    };
    if fd.as_raw_fd() >= below {
        return;
    }
    // The rarest event dnotify has, since one is needed; it stays
    // multishot, so the pin lasts until the directory is closed.
    // SAFETY: fcntl on an open fd; F_NOTIFY takes an int.
    if unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_NOTIFY, DN_ATTRIB | DN_MULTISHOT) } == 0 {
        pins.insert(wd, fd);
    }
}

/// Half the soft limit of open fds.
fn half_the_fd_limit() -> RawFd {
    let soft =
        nix::sys::resource::getrlimit(nix::sys::resource::Resource::RLIMIT_NOFILE).map_or(1024, |(soft, _)| soft);
    RawFd::try_from(soft / 2).unwrap_or(RawFd::MAX)
}
