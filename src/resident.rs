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
//! boot-only code does not (see docs/memory.md). The same is done
//! again after each later spell of work (a restart, a rescan, a `status`
//! request), whose code the idle loop does not run either. This lowers what
//! is mapped (RSS, PSS), not the page cache a memory cgroup is charged for.
//!
//! Best effort: a failure is logged at debug level and changes nothing.

use std::io;
use std::time::{Duration, Instant};

/// The event loop must have been quiet this long before a release:
/// services' first moments (their first lines, readiness probes) and the
/// moments after a restart touch code that would otherwise be unmapped just
/// to come back.
const QUIET: Duration = Duration::from_millis(250);
/// A release happens at the latest this long after the spell of activity
/// before it began, however busy the loop stays.
const LATEST: Duration = Duration::from_secs(5);

/// When the pages are released: once boot is over and the event loop has
/// been quiet for [`QUIET`], and again after every later spell of activity
/// (a restart, a rescan, a `status` request, a reaped orphan) once it has
/// been quiet as long. Only the loop's own wake-ups count: a service
/// writing lines does not wake it, and a loop with nothing to do has no
/// release pending, so an idle baseinit never wakes for this.
#[derive(Debug, Default)]
pub struct Release {
    /// When the current spell of activity began: the first wake after boot,
    /// then the first after each release.
    spell: Option<Instant>,
    due: Option<Instant>,
    /// The mappings the first release found. They stay what they are for
    /// the process's life (nothing maps or writes the executable after
    /// boot), and finding them reads `/proc/self/smaps`, whose page walk
    /// is most of a release's cost.
    ranges: Option<Vec<(usize, usize)>>,
}

impl Release {
    /// Call on every turn of the event loop, with whether services run (boot
    /// is over and no stop has begun). Releases the pages when they are due.
    pub fn on_wake(&mut self, running: bool, now: Instant) {
        if !running {
            // Before boot's end nothing is due yet; once a stop has begun
            // the process is about to end, and a past deadline left here
            // would wake the loop at once, again and again.
            (self.spell, self.due) = (None, None);
            return;
        }
        let since = *self.spell.get_or_insert(now);
        match self.due {
            Some(due) if due <= now => {
                self.release();
                (self.spell, self.due) = (None, None);
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

impl Release {
    /// Unmaps baseinit's own code and read-only data now.
    fn release(&mut self) {
        let began = Instant::now();
        if self.ranges.is_none() {
            match releasable() {
                Ok((ranges, kb)) => {
                    tracing::debug!("releasing {kb} kB of code and read-only data boot had mapped");
                    self.ranges = Some(ranges);
                }
                Err(e) => return tracing::debug!("cannot find the code pages to release: {e}"),
            }
        }
        let ranges = self.ranges.as_deref().unwrap_or_default();
        match unmap(ranges) {
            Ok(()) => tracing::debug!("released code and read-only data in {} µs", began.elapsed().as_micros()),
            Err(e) => tracing::debug!("cannot release the code pages: {e}"),
        }
    }
}

/// The mappings of the executable whose every page is the file's, and how
/// many kB of them are resident.
fn releasable() -> io::Result<(Vec<(usize, usize)>, usize)> {
    use std::os::unix::fs::MetadataExt;
    let exe_path = std::fs::read_link("/proc/self/exe")?;
    let exe_inode = std::fs::metadata("/proc/self/exe")?.ino();
    let smaps = std::fs::read_to_string("/proc/self/smaps")?;
    let mut ranges = Vec::new();
    let mut kb = 0;
    for mapping in mappings(&smaps) {
        let ours = mapping.path == exe_path.as_os_str().as_encoded_bytes() || mapping.inode == exe_inode;
        // Private, read-only, and not one page of its own (the relocated
        // data after exec has some, and is skipped): every page is the
        // file's, and comes back from it unchanged.
        if !ours || mapping.inode == 0 || mapping.writable || !mapping.private || mapping.anonymous_kb != 0 {
            continue;
        }
        ranges.push((mapping.start, mapping.end));
        kb += mapping.rss_kb;
    }
    Ok((ranges, kb))
}

/// Drops the pages of `ranges` from the process's page tables.
fn unmap(ranges: &[(usize, usize)]) -> io::Result<()> {
    for &(start, end) in ranges {
        // SAFETY: each range is a whole mapping of the executable that is
        // private, not writable and had no anonymous page when `releasable`
        // looked, and nothing writes one later (it is not writable): dropping
        // its pages changes no byte anyone can read, they refault from the
        // file.
        let rc = unsafe { nix::libc::madvise(start as *mut nix::libc::c_void, end - start, nix::libc::MADV_DONTNEED) };
        if rc != 0 {
            return Err(io::Error::last_os_error());
        }
    }
    Ok(())
}

/// One mapping of /proc/self/smaps, as far as [`releasable`] needs it.
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
        let (ranges, kb) = releasable().unwrap();
        assert!(kb > 0 && !ranges.is_empty());
        unmap(&ranges).unwrap();
        let words: Vec<String> = (0..1000).map(|i| format!("{i:x}")).collect();
        assert_eq!(words[255], "ff");
        unmap(&ranges).unwrap();
        assert_eq!(releasable().unwrap().0, ranges, "the same mappings each time");
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
        assert_eq!(r.deadline(), None, "released: nothing due while nothing happens");
    }

    #[test]
    fn each_later_spell_of_work_is_released_once_quiet() {
        let t0 = Instant::now();
        let mut r = Release::default();
        r.on_wake(true, t0);
        r.on_wake(true, t0 + QUIET);
        assert_eq!(r.deadline(), None, "the boot release");
        // A restart a minute later: released a quiet spell after it.
        let t1 = t0 + Duration::from_secs(60);
        r.on_wake(true, t1);
        assert_eq!(r.deadline(), Some(t1 + QUIET));
        r.on_wake(true, t1 + QUIET / 2);
        assert_eq!(
            r.deadline(),
            Some(t1 + QUIET / 2 + QUIET),
            "its first lines pushed it back"
        );
        r.on_wake(true, t1 + QUIET / 2 + QUIET);
        assert_eq!(r.deadline(), None);
        // A loop that never goes quiet (an orphan reaped every 100 ms) is
        // released LATEST after its spell began, then again.
        let t2 = t1 + Duration::from_secs(60);
        let mut now = t2;
        let mut releases = 0;
        while now < t2 + LATEST * 2 + QUIET {
            let before = r.deadline();
            r.on_wake(true, now);
            if before.is_some() && r.deadline().is_none() {
                releases += 1;
            }
            now += Duration::from_millis(100);
        }
        assert_eq!(releases, 2);
    }

    #[test]
    fn nothing_is_due_once_a_stop_has_begun() {
        let t0 = Instant::now();
        let mut r = Release::default();
        r.on_wake(true, t0);
        assert!(r.deadline().is_some());
        r.on_wake(false, t0 + QUIET * 2);
        assert_eq!(r.deadline(), None, "a past deadline would spin the stopping loop");
    }
}
