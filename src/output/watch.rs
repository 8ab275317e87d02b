//! `log-line`: a pipe's reader testing each whole line of a run's output
//! against a pattern, and reporting a match to whoever asked.
//!
//! The reader calls [`Watches::scan`] with every read, before formatting:
//! lines are found by their newline, a line cut by the end of a read is
//! carried to the next (at most [`MAX_LINE`] bytes, as the formatter
//! holds: a longer line is tested in pieces of that size, the pieces the
//! log shows). A pipe without a watch has none of this: its reader holds
//! `None` and tests nothing. A readiness watch ends at its first match, and
//! with the last watch gone the reader drops the whole thing, carry and
//! all: no cost after ready.

use memchr::memchr;

use super::MAX_LINE;
use crate::config::LinePattern;

/// One pattern to watch for, and what to do on a match.
pub struct LineWatch {
    pattern: LinePattern,
    /// Called once per read in which a line matched; false ends the watch.
    report: Box<dyn FnMut() -> bool + Send + Sync>,
    /// A line of the current read matched (reported at the read's end).
    hit: bool,
}

impl LineWatch {
    /// `report` is called once per read that brought a matching line (a
    /// burst of matching lines read at once is one report); it returns
    /// whether to go on watching.
    pub fn new(pattern: LinePattern, report: impl FnMut() -> bool + Send + Sync + 'static) -> Self {
        LineWatch {
            pattern,
            report: Box::new(report),
            hit: false,
        }
    }
}

/// One pipe's watches, and the start of a line cut by a read.
pub(super) struct Watches {
    list: Vec<LineWatch>,
    carry: Vec<u8>,
}

impl Watches {
    /// None when there is nothing to watch: the reader then holds nothing.
    pub(super) fn new(list: Vec<LineWatch>) -> Option<Box<Watches>> {
        (!list.is_empty()).then(|| {
            Box::new(Watches {
                list,
                carry: Vec::new(),
            })
        })
    }

    /// Tests the lines `bytes` completes, carrying the start of the last
    /// one if it is cut; reports matches. False once no watch is left.
    pub(super) fn scan(&mut self, mut bytes: &[u8]) -> bool {
        while let Some(newline) = memchr(b'\n', bytes) {
            let (line, rest) = bytes.split_at(newline);
            self.piece(line, true);
            bytes = rest.get(1..).unwrap_or_default();
        }
        self.piece(bytes, false);
        self.report()
    }

    /// The end of the stream: a last line without newline is a line too.
    pub(super) fn finish(&mut self) {
        if !self.carry.is_empty() {
            test(&mut self.list, &self.carry);
            self.carry = Vec::new();
            self.report();
        }
    }

    /// Part of a line; `ends` when its newline came.
    fn piece(&mut self, mut piece: &[u8], ends: bool) {
        // A line longer than MAX_LINE: tested in pieces of that size.
        while self.carry.len() + piece.len() > MAX_LINE {
            let (head, tail) = piece.split_at(MAX_LINE - self.carry.len());
            if self.carry.is_empty() {
                test(&mut self.list, head);
            } else {
                self.carry.extend_from_slice(head);
                test(&mut self.list, &self.carry);
                self.carry.clear();
            }
            piece = tail;
        }
        if !ends {
            self.carry.extend_from_slice(piece);
        } else if self.carry.is_empty() {
            // The usual case: a whole line in one read, tested where it is.
            test(&mut self.list, piece);
        } else {
            self.carry.extend_from_slice(piece);
            test(&mut self.list, &self.carry);
            self.carry.clear();
        }
    }

    /// Reports this read's matches, dropping the watches that end; false
    /// when none is left.
    fn report(&mut self) -> bool {
        self.list
            .retain_mut(|watch| !std::mem::take(&mut watch.hit) || (watch.report)());
        if self.carry.capacity() > 4096 && self.carry.is_empty() {
            // A long line's room, let go once it is done.
            self.carry = Vec::new();
        }
        !self.list.is_empty()
    }
}

/// Tests one line (without its newline, and without a `\r` before it)
/// against each watch that has not matched in this read.
fn test(list: &mut [LineWatch], line: &[u8]) {
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    for watch in list.iter_mut().filter(|w| !w.hit) {
        watch.hit = watch.pattern.is_match(line);
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::*;

    /// A watch for `pattern` counting its reports; ends after the first
    /// when `once`.
    fn counting(pattern: &str, once: bool) -> (LineWatch, Arc<AtomicUsize>) {
        let count = Arc::new(AtomicUsize::new(0));
        let seen = count.clone();
        let watch = LineWatch::new(LinePattern::new(pattern).unwrap(), move || {
            seen.fetch_add(1, Ordering::Relaxed);
            !once
        });
        (watch, count)
    }

    /// Feeds `reads` to one watch of `pattern`, then the end; the number
    /// of reports after each read.
    fn reports(pattern: &str, reads: &[&[u8]]) -> Vec<usize> {
        let (watch, count) = counting(pattern, false);
        let mut watches = Watches::new(vec![watch]).unwrap();
        let mut after = Vec::new();
        for read in reads {
            watches.scan(read);
            after.push(count.load(Ordering::Relaxed));
        }
        watches.finish();
        after.push(count.load(Ordering::Relaxed));
        after
    }

    #[test]
    fn lines_are_matched_whole_across_reads() {
        type Row<'a> = (&'a str, &'a [&'a [u8]], &'a [usize]);
        let table: [Row; 9] = [
            // One read, one line.
            ("^listening$", &[b"listening\n"], &[1, 1]),
            // Cut in the middle, at the newline, and byte by byte.
            ("^listening$", &[b"liste", b"ning\n"], &[0, 1, 1]),
            ("^listening$", &[b"listening", b"\n"], &[0, 1, 1]),
            (
                "^listening$",
                &[b"l", b"i", b"s", b"t", b"e", b"n", b"i", b"n", b"g", b"\n"],
                &[0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 1],
            ),
            // Anchors see one line, never two joined or a piece of one.
            ("^ready$", &[b"not re", b"ady\nready", b" or not\n"], &[0, 0, 0, 0]),
            // CRLF lines.
            ("^ready$", &[b"ready\r\n"], &[1, 1]),
            // Several matching lines in one read: one report.
            ("err", &[b"err 1\nerr 2\nok\n", b"err 3\n"], &[1, 2, 2]),
            // A last line without newline counts at the end.
            ("done", &[b"x\ndo", b"ne"], &[0, 0, 1]),
            // An empty read changes nothing.
            ("x", &[b"", b"x", b"", b"\n"], &[0, 0, 0, 1, 1]),
        ];
        for (pattern, reads, want) in table {
            assert_eq!(reports(pattern, reads), want, "{pattern:?} on {reads:?}");
        }
    }

    #[test]
    fn a_line_longer_than_max_line_is_tested_in_pieces_and_carries_no_more() {
        // The match is in the second piece, the piece cut across reads.
        let mut long = vec![b'a'; MAX_LINE + 10];
        long.extend_from_slice(b"MARK");
        let (first, second) = long.split_at(MAX_LINE - 3);
        assert_eq!(reports("aMARK$", &[first, second, b"\n"]), [0, 0, 1, 1]);
        // A pattern spanning the cut between two pieces does not match:
        // the log shows them as two lines too.
        let mut cut = vec![b'a'; MAX_LINE - 2];
        cut.extend_from_slice(b"XYZW\n");
        assert_eq!(reports("XYZW", &[&cut]), [0, 0]);
        assert_eq!(reports("^ZW$", &[&cut]), [1, 1]);
        // The carry never holds more than a line's worth.
        let (watch, _) = counting("never", false);
        let mut watches = Watches::new(vec![watch]).unwrap();
        for _ in 0..10 {
            watches.scan(&vec![b'b'; MAX_LINE / 3]);
            assert!(watches.carry.len() <= MAX_LINE);
        }
        watches.scan(b"\n");
        assert_eq!(watches.carry.capacity(), 0, "let go after a long line");
    }

    #[test]
    fn a_readiness_watch_ends_at_its_first_match_and_a_health_watch_goes_on() {
        let (ready, readied) = counting("ready", true);
        let (health, failed) = counting("OOM", false);
        let mut watches = Watches::new(vec![ready, health]).unwrap();
        assert!(watches.scan(b"starting\nOOM\n"));
        assert_eq!(
            (readied.load(Ordering::Relaxed), failed.load(Ordering::Relaxed)),
            (0, 1)
        );
        assert!(watches.scan(b"ready\n"));
        assert_eq!(watches.list.len(), 1, "the readiness watch is done");
        assert!(watches.scan(b"ready\nOOM\n"));
        assert_eq!(
            (readied.load(Ordering::Relaxed), failed.load(Ordering::Relaxed)),
            (1, 2)
        );
        // Alone, a readiness watch leaves nothing to watch after its match.
        let (ready, _) = counting("ready", true);
        let mut watches = Watches::new(vec![ready]).unwrap();
        assert!(watches.scan(b"rea"));
        assert!(!watches.scan(b"dy\nmore\n"), "nothing left: the reader drops it");
        assert!(Watches::new(Vec::new()).is_none(), "no watch, nothing held");
    }
}
