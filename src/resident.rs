//! Keeps what PID 1 holds in memory small: it lives as long as the
//! container, so whatever boot leaves resident stays for its whole life.
//!
//! Once boot has settled, baseinit unmaps its own code and read-only data
//! (`MADV_DONTNEED`). The kernel maps 64 kB of a file around every page fault
//! ("fault-around"), so by the end of boot almost the whole executable is
//! mapped, command-line and service.toml parsing included, though the event
//! loop only ever runs a small part of it. Those pages are unmodified copies
//! of the file: unmapped, they stay in the page cache (where the kernel can
//! drop them under memory pressure, as it would anyway), and a page needed
//! again costs a minor fault. What supervision uses comes back on its own;
//! boot-only code does not (see the README, "Memory"). This lowers what is
//! mapped (RSS, PSS), not the page cache a memory cgroup is charged for.
//!
//! Best effort: a failure is logged at debug level and changes nothing.

use std::io;
use std::time::{Duration, Instant};

/// The event loop must have been quiet this long after boot before the
/// release: services' first moments (their first lines, readiness probes)
/// touch code that would otherwise be unmapped just to come back.
const QUIET: Duration = Duration::from_millis(250);
/// The release happens at the latest this long after boot, however busy.
const LATEST: Duration = Duration::from_secs(5);

/// When the boot-only pages are released: once, when the event loop has
/// been quiet for [`QUIET`] after boot.
#[derive(Debug, Default)]
pub struct Release {
    /// When the event loop first saw boot over.
    booted: Option<Instant>,
    due: Option<Instant>,
    done: bool,
}

impl Release {
    /// Call on every turn of the event loop, with whether boot is over (the
    /// services are started). Releases the pages when they are due.
    pub fn on_wake(&mut self, booted: bool, now: Instant) {
        if self.done || !booted {
            return;
        }
        let since = *self.booted.get_or_insert(now);
        match self.due {
            Some(due) if due <= now => {
                release_boot_pages();
                self.done = true;
                self.due = None;
            }
            // Something happened: wait for the next quiet spell.
            _ => self.due = Some((now + QUIET).min(since + LATEST)),
        }
    }

    /// When the event loop must wake up for the release.
    pub fn deadline(&self) -> Option<Instant> {
        self.due
    }
}

/// Makes every thread allocate from glibc's main malloc arena. glibc gives
/// each new thread an arena of its own (a 64 MB reservation, a few pages of
/// it touched) to spare threads lock contention; baseinit's two helper
/// threads allocate a line at a time. Call before any thread starts. (musl
/// has one heap.)
pub fn one_malloc_arena() {
    #[cfg(target_env = "gnu")]
    // SAFETY: mallopt only sets a malloc parameter; no other thread runs yet.
    unsafe {
        nix::libc::mallopt(nix::libc::M_ARENA_MAX, 1);
    }
}

/// Unmaps baseinit's own code and read-only data now.
pub fn release_boot_pages() {
    match release() {
        Ok(kb) => tracing::debug!("released {kb} kB of code and read-only data boot had mapped"),
        Err(e) => tracing::debug!("cannot release the pages boot mapped: {e}"),
    }
}

/// Returns how many kB were resident in what it unmapped.
fn release() -> io::Result<usize> {
    use std::os::unix::fs::MetadataExt;
    let exe_path = std::fs::read_link("/proc/self/exe")?;
    let exe_inode = std::fs::metadata("/proc/self/exe")?.ino();
    let smaps = std::fs::read_to_string("/proc/self/smaps")?;
    let mut released = 0;
    for mapping in mappings(&smaps) {
        let ours = mapping.path == exe_path.as_os_str().as_encoded_bytes() || mapping.inode == exe_inode;
        // Private, read-only, and not one page of its own (the relocated
        // data after exec has some, and is skipped): every page is the
        // file's, and comes back from it unchanged.
        if !ours || mapping.inode == 0 || mapping.writable || !mapping.private || mapping.anonymous_kb != 0 {
            continue;
        }
        // SAFETY: the range is a whole mapping of the executable that is
        // private, not writable and has no anonymous page: dropping its
        // pages changes no byte anyone can read, they refault from the file.
        let rc = unsafe {
            nix::libc::madvise(
                mapping.start as *mut nix::libc::c_void,
                mapping.end - mapping.start,
                nix::libc::MADV_DONTNEED,
            )
        };
        if rc != 0 {
            return Err(io::Error::last_os_error());
        }
        released += mapping.rss_kb;
    }
    Ok(released)
}

/// One mapping of /proc/self/smaps, as far as [`release`] needs it.
#[derive(Debug, PartialEq, Eq)]
struct Mapping<'a> {
    start: usize,
    end: usize,
    writable: bool,
    private: bool,
    inode: u64,
    path: &'a [u8],
    rss_kb: usize,
    anonymous_kb: usize,
}

/// The mappings of an smaps text. A mapping whose `Anonymous:` line is
/// missing reads as having anonymous pages (never released).
fn mappings(smaps: &str) -> Vec<Mapping<'_>> {
    let mut out: Vec<Mapping<'_>> = Vec::new();
    for line in smaps.lines() {
        if let Some(mapping) = header(line) {
            out.push(mapping);
            continue;
        }
        // A field of the last mapping: `Name:   value kB`.
        let Some(current) = out.last_mut() else { continue };
        let mut fields = line.split_ascii_whitespace();
        let (name, kb) = (fields.next(), fields.next().and_then(|v| v.parse().ok()));
        match (name, kb) {
            (Some("Rss:"), Some(kb)) => current.rss_kb = kb,
            (Some("Anonymous:"), Some(kb)) => current.anonymous_kb = kb,
            _ => {}
        }
    }
    out
}

/// A mapping's first line: `start-end perms offset device inode path`, the
/// path (which may hold spaces) after padding, or none.
fn header(line: &str) -> Option<Mapping<'_>> {
    let mut rest = line;
    let mut fields = [""; 5];
    for field in &mut fields {
        let trimmed = rest.trim_start_matches(' ');
        let end = trimmed.find(' ').unwrap_or(trimmed.len());
        (*field, rest) = trimmed.split_at(end);
    }
    let [range, perms, _offset, _device, inode] = fields;
    let (start, end) = range.split_once('-')?;
    Some(Mapping {
        start: usize::from_str_radix(start, 16).ok()?,
        end: usize::from_str_radix(end, 16).ok()?,
        writable: perms.contains('w'),
        private: perms.ends_with('p'),
        inode: inode.parse().ok()?,
        path: rest.trim_start_matches(' ').as_bytes(),
        rss_kb: 0,
        // Unknown until its line says: never released without it.
        anonymous_kb: usize::MAX,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const SMAPS: &str = "\
00400000-00401000 r--p 00000000 fd:01 1234                               /usr/bin/base init
Rss:                   4 kB
Anonymous:             0 kB
00519000-0051e000 r--p 00318000 fd:01 1234                               /usr/bin/base init
Rss:                  20 kB
Anonymous:            20 kB
7ffe38f89000-7ffe38faa000 rw-p 00000000 00:00 0                          [stack]
Rss:                  48 kB
Anonymous:            48 kB
7ffe38fab000-7ffe38fac000 r-xp 00000000 00:00 0
Rss:                   4 kB
";

    #[test]
    fn smaps_mappings_parse() {
        let m = mappings(SMAPS);
        assert_eq!(m.len(), 4);
        assert_eq!(
            m[0],
            Mapping {
                start: 0x400000,
                end: 0x401000,
                writable: false,
                private: true,
                inode: 1234,
                path: b"/usr/bin/base init",
                rss_kb: 4,
                anonymous_kb: 0,
            }
        );
        assert_eq!(m[1].anonymous_kb, 20);
        assert!(m[2].writable && m[2].inode == 0 && m[2].path == b"[stack]");
        // No Anonymous line: as if it had anonymous pages.
        assert_eq!((m[3].path, m[3].anonymous_kb), (&b""[..], usize::MAX));
    }

    #[test]
    fn releasing_leaves_the_process_working() {
        // This test binary's own code and data are unmapped under it.
        let kb = release().unwrap();
        assert!(kb > 0);
        let words: Vec<String> = (0..1000).map(|i| format!("{i:x}")).collect();
        assert_eq!(words[255], "ff");
        assert!(release().is_ok());
    }

    #[test]
    fn the_release_waits_for_a_quiet_loop_after_boot() {
        let t0 = Instant::now();
        let mut r = Release::default();
        r.on_wake(false, t0);
        assert_eq!(r.deadline(), None, "not before boot is over");
        r.on_wake(true, t0);
        assert_eq!(r.deadline(), Some(t0 + QUIET));
        // Activity (a wake before it is due) pushes it back, up to LATEST
        // after boot.
        let step = QUIET / 2;
        let mut now = t0 + step;
        while now < t0 + LATEST {
            r.on_wake(true, now);
            assert_eq!(r.deadline(), Some((now + QUIET).min(t0 + LATEST)));
            now += step;
        }
        r.on_wake(true, t0 + LATEST);
        assert!(r.done);
        assert_eq!(r.deadline(), None, "once");
        r.on_wake(true, t0 + LATEST * 2);
        assert_eq!(r.deadline(), None);
    }
}
