//! runsv's 20-byte `supervise/status` record, and the status text sv prints for it.
//!
//! The layout is runit's: a TAI64N label of the last state change (8 bytes of
//! big-endian TAI64 seconds, 4 of nanoseconds), the pid (4 bytes,
//! little-endian), a paused flag, the wanted state (`u`/`d`), a got-TERM flag,
//! and the state (0 down, 1 run, 2 finish).

use std::time::{SystemTime, UNIX_EPOCH};

/// Size of the status record.
pub const LEN: usize = 20;

/// TAI64 labels count from 2^62, and runit's clock puts TAI 10 s ahead of
/// UTC (libtai's fixed offset, no leap-second table). sv compares these
/// labels with its own clock, so it must use the same offset as runsv.
const TAI64_UNIX_EPOCH: u64 = (1 << 62) + 10;

/// The state byte of the record.
pub const STATE_DOWN: u8 = 0;
pub const STATE_RUN: u8 = 1;
pub const STATE_FINISH: u8 = 2;

/// One decoded status record; every field kept raw, as sv tests them raw.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Status {
    /// TAI64 seconds of the last change (with the 2^62 offset).
    pub since: u64,
    pub pid: u32,
    pub paused: u8,
    /// `b'u'` or `b'd'` (anything else is shown as neither).
    pub want: u8,
    pub got_term: u8,
    pub state: u8,
}

impl Status {
    /// Decodes a record of exactly [`LEN`] bytes; None for any other size.
    pub fn parse(bytes: &[u8]) -> Option<Status> {
        let bytes: &[u8; LEN] = bytes.try_into().ok()?;
        let mut since = [0u8; 8];
        since.copy_from_slice(&bytes[0..8]);
        let mut pid = [0u8; 4];
        pid.copy_from_slice(&bytes[12..16]);
        Some(Status {
            since: u64::from_be_bytes(since),
            pid: u32::from_le_bytes(pid),
            paused: bytes[16],
            want: bytes[17],
            got_term: bytes[18],
            state: bytes[19],
        })
    }

    /// Encodes the record as runsv writes it (nanoseconds zero); for tests
    /// and for anything that must write a status sv can read.
    pub fn to_bytes(self) -> [u8; LEN] {
        let mut bytes = [0u8; LEN];
        bytes[0..8].copy_from_slice(&self.since.to_be_bytes());
        bytes[12..16].copy_from_slice(&self.pid.to_le_bytes());
        bytes[16] = self.paused;
        bytes[17] = self.want;
        bytes[18] = self.got_term;
        bytes[19] = self.state;
        bytes
    }

    /// sv's status text for this record, e.g. `run: NAME: (pid 123) 45s,
    /// normally down`, with `now` in TAI64 seconds and `normally_up` telling
    /// whether the service has no `down` file.
    pub fn format(&self, name: &[u8], now: u64, normally_up: bool) -> Vec<u8> {
        let mut line = Vec::with_capacity(64 + name.len());
        match self.state {
            STATE_DOWN => line.extend_from_slice(b"down: "),
            STATE_RUN => line.extend_from_slice(b"run: "),
            STATE_FINISH => line.extend_from_slice(b"finish: "),
            // runit prints no state word for a byte it does not know.
            _ => {}
        }
        line.extend_from_slice(name);
        line.extend_from_slice(b": ");
        // runit shows the pid whenever the state is not down, and bases the
        // suffixes on the pid: the two differ while `finish` runs.
        if self.state != STATE_DOWN {
            line.extend_from_slice(format!("(pid {}) ", self.pid).as_bytes());
        }
        line.extend_from_slice(format!("{}s", now.saturating_sub(self.since)).as_bytes());
        let running = self.pid != 0;
        if running && !normally_up {
            line.extend_from_slice(b", normally down");
        }
        if !running && normally_up {
            line.extend_from_slice(b", normally up");
        }
        if running && self.paused != 0 {
            line.extend_from_slice(b", paused");
        }
        if !running && self.want == b'u' {
            line.extend_from_slice(b", want up");
        }
        if running && self.want == b'd' {
            line.extend_from_slice(b", want down");
        }
        if running && self.got_term != 0 {
            line.extend_from_slice(b", got TERM");
        }
        line
    }
}

/// Now, in TAI64 seconds as runit counts them.
pub fn tai_now() -> u64 {
    let unix = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    TAI64_UNIX_EPOCH + unix
}

#[cfg(test)]
mod tests {
    use super::*;

    const T: u64 = TAI64_UNIX_EPOCH + 1_700_000_000;

    fn status(pid: u32, state: u8, want: u8) -> Status {
        Status {
            since: T,
            pid,
            paused: 0,
            want,
            got_term: 0,
            state,
        }
    }

    fn text(s: &Status, now: u64, normally_up: bool) -> String {
        String::from_utf8(s.format(b"web", now, normally_up)).unwrap()
    }

    #[test]
    fn parses_a_record_written_by_runsv() {
        // Captured from Debian's runsv 2.1.2: running pid 30446 (0x76ee), want up.
        let raw = [
            0x40, 0x00, 0x00, 0x00, 0x6b, 0x0b, 0x74, 0xa4, 0x0b, 0x1b, 0x3d, 0x24, 0xee, 0x76, 0x00, 0x00, 0x00, 0x75,
            0x00, 0x01,
        ];
        let s = Status::parse(&raw).unwrap();
        assert_eq!(s.since, (1 << 62) + 0x6b0b74a4);
        assert_eq!(s.pid, 30446);
        assert_eq!((s.paused, s.want, s.got_term, s.state), (0, b'u', 0, STATE_RUN));
        assert_eq!(text(&s, s.since + 45, true), "run: web: (pid 30446) 45s");
    }

    #[test]
    fn pid_is_little_endian_and_time_big_endian() {
        let mut raw = [0u8; LEN];
        raw[7] = 1;
        raw[12..16].copy_from_slice(&[0x01, 0x02, 0x03, 0x04]);
        let s = Status::parse(&raw).unwrap();
        assert_eq!(s.pid, 0x04030201);
        assert_eq!(s.since, 1);
    }

    #[test]
    fn round_trips() {
        let s = Status {
            since: T,
            pid: 77,
            paused: 1,
            want: b'd',
            got_term: 1,
            state: STATE_FINISH,
        };
        assert_eq!(Status::parse(&s.to_bytes()), Some(s));
    }

    #[test]
    fn any_other_size_is_rejected() {
        assert_eq!(Status::parse(&[0u8; 19]), None);
        assert_eq!(Status::parse(&[0u8; 21]), None);
        assert_eq!(Status::parse(&[]), None);
    }

    #[test]
    fn down_lines() {
        assert_eq!(
            text(&status(0, STATE_DOWN, b'd'), T + 3, true),
            "down: web: 3s, normally up"
        );
        assert_eq!(text(&status(0, STATE_DOWN, b'd'), T + 3, false), "down: web: 3s");
        assert_eq!(
            text(&status(0, STATE_DOWN, b'u'), T, true),
            "down: web: 0s, normally up, want up"
        );
        assert_eq!(text(&status(0, STATE_DOWN, b'u'), T, false), "down: web: 0s, want up");
    }

    #[test]
    fn run_lines_and_their_suffixes_in_runits_order() {
        assert_eq!(text(&status(9, STATE_RUN, b'u'), T + 45, true), "run: web: (pid 9) 45s");
        assert_eq!(
            text(&status(9, STATE_RUN, b'u'), T + 1, false),
            "run: web: (pid 9) 1s, normally down"
        );
        let all = Status {
            since: T,
            pid: 9,
            paused: 1,
            want: b'd',
            got_term: 1,
            state: STATE_RUN,
        };
        assert_eq!(
            text(&all, T + 2, false),
            "run: web: (pid 9) 2s, normally down, paused, want down, got TERM"
        );
    }

    #[test]
    fn finish_shows_the_finish_pid() {
        let s = Status {
            since: T,
            pid: 12,
            paused: 0,
            want: b'u',
            got_term: 1,
            state: STATE_FINISH,
        };
        assert_eq!(text(&s, T + 5, true), "finish: web: (pid 12) 5s, got TERM");
    }

    #[test]
    fn a_clock_behind_the_record_shows_zero_seconds() {
        assert_eq!(
            text(&status(0, STATE_DOWN, b'd'), T - 100, true),
            "down: web: 0s, normally up"
        );
    }

    #[test]
    fn an_unknown_state_byte_prints_no_state_word() {
        assert_eq!(text(&status(5, 7, b'u'), T, true), "web: (pid 5) 0s");
    }

    #[test]
    fn the_clock_uses_runits_tai_offset() {
        let unix = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs();
        let now = tai_now();
        assert!(now >= (1 << 62) + 10 + unix && now <= (1 << 62) + 11 + unix);
    }
}
