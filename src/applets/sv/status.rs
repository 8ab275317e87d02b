//! The status text sv prints for a `supervise/status` record (the record
//! itself, its layout and its clock are [`crate::runit::status`]'s).

use std::time::SystemTime;

use crate::runit::control;
use crate::runit::status::{RECORD_LEN, Record, RunState, tai64n};

/// Decodes a record read whole; None for any other size (sv's `bad format`).
pub fn parse(bytes: &[u8]) -> Option<Record> {
    let bytes: &[u8; RECORD_LEN] = bytes.try_into().ok()?;
    Some(Record::decode(bytes))
}

/// sv's status text for `record`, e.g. `run: NAME: (pid 123) 45s, normally
/// down`, with `now` in TAI64 seconds and `normally_up` telling whether the
/// service has no `down` file. Every field is tested raw, as runit's sv does.
pub fn format(record: &Record, name: &[u8], now: u64, normally_up: bool) -> Vec<u8> {
    let mut line = Vec::with_capacity(64 + name.len());
    match record.run_state() {
        Some(RunState::Down) => line.extend_from_slice(b"down: "),
        Some(RunState::Run) => line.extend_from_slice(b"run: "),
        Some(RunState::Finish) => line.extend_from_slice(b"finish: "),
        // runit prints no state word for a byte it does not know.
        None => {}
    }
    line.extend_from_slice(name);
    line.extend_from_slice(b": ");
    // runit shows the pid whenever the state is not down, and bases the
    // suffixes on the pid: the two differ while `finish` runs.
    if record.run_state() != Some(RunState::Down) {
        line.extend_from_slice(format!("(pid {}) ", record.pid).as_bytes());
    }
    line.extend_from_slice(format!("{}s", now.saturating_sub(record.since)).as_bytes());
    let running = record.pid != 0;
    if running && !normally_up {
        line.extend_from_slice(b", normally down");
    }
    if !running && normally_up {
        line.extend_from_slice(b", normally up");
    }
    if running && record.paused != 0 {
        line.extend_from_slice(b", paused");
    }
    if !running && record.want == control::UP {
        line.extend_from_slice(b", want up");
    }
    if running && record.want == control::DOWN {
        line.extend_from_slice(b", want down");
    }
    if running && record.got_term != 0 {
        line.extend_from_slice(b", got TERM");
    }
    line
}

/// Now, in TAI64 seconds as runit counts them.
pub fn tai_now() -> u64 {
    tai64n(SystemTime::now()).0
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::runit::status::TAI64_UNIX_EPOCH;
    use std::time::UNIX_EPOCH;

    const T: u64 = TAI64_UNIX_EPOCH + 1_700_000_000;
    const STATE_DOWN: u8 = RunState::Down as u8;
    const STATE_RUN: u8 = RunState::Run as u8;
    const STATE_FINISH: u8 = RunState::Finish as u8;

    fn status(pid: u32, state: u8, want: u8) -> Record {
        Record {
            since: T,
            nanos: 0,
            pid,
            paused: 0,
            want,
            got_term: 0,
            state,
        }
    }

    fn text(s: &Record, now: u64, normally_up: bool) -> String {
        String::from_utf8(format(s, b"web", now, normally_up)).unwrap()
    }

    #[test]
    fn parses_a_record_written_by_runsv() {
        // Captured from Debian's runsv 2.1.2: running pid 30446 (0x76ee), want up.
        let raw = [
            0x40, 0x00, 0x00, 0x00, 0x6b, 0x0b, 0x74, 0xa4, 0x0b, 0x1b, 0x3d, 0x24, 0xee, 0x76, 0x00, 0x00, 0x00, 0x75,
            0x00, 0x01,
        ];
        let s = parse(&raw).unwrap();
        assert_eq!(s.since, (1 << 62) + 0x6b0b74a4);
        assert_eq!(s.pid, 30446);
        assert_eq!((s.paused, s.want, s.got_term, s.state), (0, b'u', 0, STATE_RUN));
        assert_eq!(text(&s, s.since + 45, true), "run: web: (pid 30446) 45s");
    }

    #[test]
    fn any_other_size_is_rejected() {
        assert_eq!(parse(&[0u8; 19]), None);
        assert_eq!(parse(&[0u8; 21]), None);
        assert_eq!(parse(&[]), None);
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
        let all = Record {
            since: T,
            nanos: 0,
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
        let s = Record {
            since: T,
            nanos: 0,
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
