//! When `current` is rotated and which rotated file goes: pure decisions,
//! given sizes, limits and names, with no file system.
//!
//! runit's svlogd rotates after a line that leaves `current` within `-l`
//! bytes of its size limit `s`, and cuts a line that would go past `s`
//! between two files. Here a line is never cut: `current` is rotated before
//! a line that would not fit (unless `current` is empty); only a line longer
//! than the whole limit, which fits in no file, is cut where it reaches it.
//! For lines that fit within `-l`, the two give the same files.

use super::stamp::ROTATED_LEN;

/// Whether `current`, at `size` bytes, is rotated before a line of
/// `line_len` bytes (its timestamp, prefix and newline included).
pub fn before_line(size: u64, line_len: u64, max_size: u64) -> bool {
    max_size > 0 && size > 0 && size.saturating_add(line_len) > max_size
}

/// Whether `current`, at `size` bytes after a whole line, is rotated now:
/// within `line_max` bytes of `max_size` (runit's rule; never when
/// `max_size` is not above `line_max`, where runit's unsigned arithmetic
/// never rotates after a line either).
pub fn after_line(size: u64, max_size: u64, line_max: u64) -> bool {
    match max_size.checked_sub(line_max) {
        Some(threshold) if max_size > 0 => size >= threshold,
        _ => false,
    }
}

/// Whether a line still being written (longer than a read) is cut here:
/// `current` has reached the size limit.
pub fn inside_line(size: u64, max_size: u64) -> bool {
    max_size > 0 && size >= max_size
}

/// Whether `name` is a rotated file's: `@`, 24 more bytes, `.s` or `.u`
/// (runit counts every 27-byte name that starts with `@`, but its
/// processors' temporary `.t` files).
pub fn is_rotated(name: &[u8]) -> bool {
    name.len() == ROTATED_LEN && name[0] == b'@' && name[ROTATED_LEN - 1] != b't'
}

/// What a look at the directory found: how many rotated files, and the
/// oldest (the least name: TAI64N labels sort by time) other than `keep`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Census {
    pub rotated: u64,
    pub oldest: Option<[u8; ROTATED_LEN]>,
}

impl Census {
    /// The census of the names of a directory. `keep` (the file just made)
    /// is counted but never the oldest: a clock set back must not have it
    /// deleted at once.
    pub fn of<'a>(names: impl IntoIterator<Item = &'a [u8]>, keep: Option<&[u8]>) -> Census {
        let mut census = Census::default();
        for name in names {
            census.add(name, keep);
        }
        census
    }

    /// Counts `name` in, if it is a rotated file's (see [`Census::of`]).
    pub fn add(&mut self, name: &[u8], keep: Option<&[u8]>) {
        if !is_rotated(name) {
            return;
        }
        self.rotated += 1;
        if Some(name) == keep {
            return;
        }
        if self.oldest.is_none_or(|oldest| name < &oldest[..]) {
            let mut copy = [0u8; ROTATED_LEN];
            copy.copy_from_slice(name);
            self.oldest = Some(copy);
        }
    }

    /// The file to delete after a rotation: the oldest, when there are more
    /// than `max_files` (0: keep all). One at a time, as runit.
    pub fn over_limit(&self, max_files: u64) -> Option<[u8; ROTATED_LEN]> {
        (max_files > 0 && self.rotated > max_files)
            .then_some(self.oldest)
            .flatten()
    }

    /// The file to delete to make room on a full disk: the oldest, when
    /// `min_files` is below `max_files` and more than `min_files` are kept.
    pub fn to_free_space(&self, min_files: u64, max_files: u64) -> Option<[u8; ROTATED_LEN]> {
        (min_files < max_files && self.rotated > min_files)
            .then_some(self.oldest)
            .flatten()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rotation_before_a_line_keeps_lines_whole() {
        // (size, line, max, rotate)
        let table = [
            (0, 50, 100, false),  // an empty current takes any line
            (0, 500, 100, false), // even one longer than the limit
            (60, 40, 100, false), // fits exactly
            (60, 41, 100, true),
            (99, 1, 100, false),
            (1_000_000, 1, 0, false), // s0: never
        ];
        for (size, line, max, want) in table {
            assert_eq!(before_line(size, line, max), want, "{size}+{line} of {max}");
        }
    }

    #[test]
    fn rotation_after_a_line_is_runits() {
        // (size, max, line_max, rotate)
        let table = [
            (0, 1_000_000, 1000, false),
            (998_999, 1_000_000, 1000, false),
            (999_000, 1_000_000, 1000, true),
            (1_000_100, 1_000_000, 1000, true),
            (80, 100, 20, true),
            (79, 100, 20, false),
            (100, 100, 1000, false), // s below -l: never after a line
            (500, 0, 1000, false),   // s0
        ];
        for (size, max, line_max, want) in table {
            assert_eq!(after_line(size, max, line_max), want, "{size} of {max} -l {line_max}");
        }
        assert!(inside_line(100, 100));
        assert!(!inside_line(99, 100));
        assert!(!inside_line(u64::MAX, 0));
    }

    const A: &[u8; 27] = b"@400000006b1531f80c5cc1bc.s";
    const B: &[u8; 27] = b"@400000006b1531f80c6295ec.u";
    const C: &[u8; 27] = b"@400000006b1531f80c68faa4.s";
    const LEFTOVER: &[u8; 27] = b"@400000006b1531f80c00faa4.t";

    #[test]
    fn the_census_counts_rotated_files_and_finds_the_oldest() {
        let names: [&[u8]; 7] = [b"current", C, b"lock", A, B, LEFTOVER, b"@short.s"];
        let census = Census::of(names, None);
        assert_eq!(census.rotated, 3);
        assert_eq!(census.oldest, Some(*A));
        // The file just made is never the oldest.
        let census = Census::of(names, Some(&A[..]));
        assert_eq!((census.rotated, census.oldest), (3, Some(*B)));
        assert_eq!(Census::of([&b"current"[..]], None), Census::default());
    }

    #[test]
    fn deletions_keep_n_after_a_rotation_and_n_on_a_full_disk() {
        let census = Census {
            rotated: 3,
            oldest: Some(*A),
        };
        // (max_files, deleted after a rotation)
        for (max_files, want) in [(0, None), (2, Some(*A)), (3, None), (4, None)] {
            assert_eq!(census.over_limit(max_files), want, "n{max_files}");
        }
        // (min_files, max_files, deleted on a full disk)
        for (min, max, want) in [
            (10, 10, None),
            (2, 10, Some(*A)),
            (3, 10, None),
            (0, 0, None),
            (1, 3, Some(*A)),
        ] {
            assert_eq!(census.to_free_space(min, max), want, "N{min} n{max}");
        }
        let none = Census {
            rotated: 5,
            oldest: None,
        };
        assert_eq!(none.over_limit(1), None);
    }
}
