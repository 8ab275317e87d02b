//! runit's 20-byte `supervise/status` record and its `stat` text: what the
//! supervisor writes ([`Status`]) and what `sv` reads back ([`Record`]),
//! with the one definition of the layout and of runit's TAI64N clock.
//!
//! The layout is runsv's: a TAI64N label of the last state change (8 bytes
//! of big-endian TAI64 seconds, 4 of big-endian nanoseconds), the pid (4
//! bytes, little-endian), a paused flag, the wanted state (`u`/`d`), a
//! got-TERM flag, and the state (0 down, 1 run, 2 finish).

use std::time::{SystemTime, UNIX_EPOCH};

use super::control;

/// Size of the status record.
pub const RECORD_LEN: usize = 20;

/// TAI64 label of the Unix epoch: labels count from 2^62, and runit's clock
/// puts TAI 10 s ahead of UTC (libtai's fixed offset, no leap-second table).
/// sv compares the record's label with its own clock, so both sides must
/// use the same offset as runsv.
pub const TAI64_UNIX_EPOCH: u64 = (1 << 62) + 10;

/// `time` as runit's TAI64N label: TAI64 seconds and nanoseconds. A time
/// before 1970 counts as 1970.
pub fn tai64n(time: SystemTime) -> (u64, u32) {
    let since = time.duration_since(UNIX_EPOCH).unwrap_or_default();
    (TAI64_UNIX_EPOCH + since.as_secs(), since.subsec_nanos())
}

/// runit's three states.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RunState {
    Down = 0,
    Run = 1,
    Finish = 2,
}

impl RunState {
    /// The state a record's state byte names; None for a byte runit does not
    /// know.
    pub fn from_byte(byte: u8) -> Option<RunState> {
        match byte {
            0 => Some(RunState::Down),
            1 => Some(RunState::Run),
            2 => Some(RunState::Finish),
            _ => None,
        }
    }
}

/// What `supervise/status` and `supervise/stat` say, as the supervisor
/// writes them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Status {
    /// When the current state began (runit: the start of `run`, or the moment
    /// it went down).
    pub since: SystemTime,
    /// The pid of `run` (or of `finish` while finishing); None when down.
    pub pid: Option<i32>,
    pub paused: bool,
    pub want_up: bool,
    pub got_term: bool,
    pub state: RunState,
}

impl Status {
    /// runit's 20-byte record.
    pub fn encode(&self) -> [u8; RECORD_LEN] {
        self.record().encode()
    }

    /// The record's fields for this status.
    pub fn record(&self) -> Record {
        let (since, nanos) = tai64n(self.since);
        Record {
            since,
            nanos,
            pid: self.pid.unwrap_or(0) as u32,
            paused: u8::from(self.paused),
            want: if self.want_up { control::UP } else { control::DOWN },
            got_term: u8::from(self.got_term),
            state: self.state as u8,
        }
    }

    /// runit's `stat` text, e.g. `run, got TERM, want down`.
    pub fn stat_text(&self) -> String {
        let mut text = String::from(match self.state {
            RunState::Down => "down",
            RunState::Run => "run",
            RunState::Finish => "finish",
        });
        if self.paused {
            text.push_str(", paused");
        }
        if self.got_term {
            text.push_str(", got TERM");
        }
        if self.state != RunState::Down && !self.want_up {
            text.push_str(", want down");
        }
        text.push('\n');
        text
    }
}

/// The record's fields, each kept as stored: `sv` reads records from any
/// runsv, and tests the bytes as runit's sv does (an unknown state byte, a
/// want byte that is neither `u` nor `d`, a got-TERM byte of 2 all mean
/// something there).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Record {
    /// TAI64 seconds of the last change (with the 2^62 offset).
    pub since: u64,
    pub nanos: u32,
    pub pid: u32,
    pub paused: u8,
    /// [`control::UP`] or [`control::DOWN`] when written by a supervisor.
    pub want: u8,
    pub got_term: u8,
    /// A [`RunState`] when written by a supervisor.
    pub state: u8,
}

impl Record {
    pub fn decode(bytes: &[u8; RECORD_LEN]) -> Record {
        let [
            s0,
            s1,
            s2,
            s3,
            s4,
            s5,
            s6,
            s7,
            n0,
            n1,
            n2,
            n3,
            p0,
            p1,
            p2,
            p3,
            paused,
            want,
            got_term,
            state,
        ] = *bytes;
        Record {
            since: u64::from_be_bytes([s0, s1, s2, s3, s4, s5, s6, s7]),
            nanos: u32::from_be_bytes([n0, n1, n2, n3]),
            pid: u32::from_le_bytes([p0, p1, p2, p3]),
            paused,
            want,
            got_term,
            state,
        }
    }

    pub fn encode(&self) -> [u8; RECORD_LEN] {
        let mut out = [0u8; RECORD_LEN];
        out[0..8].copy_from_slice(&self.since.to_be_bytes());
        out[8..12].copy_from_slice(&self.nanos.to_be_bytes());
        out[12..16].copy_from_slice(&self.pid.to_le_bytes());
        out[16] = self.paused;
        out[17] = self.want;
        out[18] = self.got_term;
        out[19] = self.state;
        out
    }

    /// The state byte as a [`RunState`]; None for a byte runit does not know.
    pub fn run_state(&self) -> Option<RunState> {
        RunState::from_byte(self.state)
    }
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;
    use std::time::Duration;

    /// A status with every field set, for the runit module's tests.
    pub(in crate::runit) fn status() -> Status {
        Status {
            since: UNIX_EPOCH + Duration::new(1_700_000_000, 123_456_789),
            pid: Some(0x0102_0304),
            paused: false,
            want_up: true,
            got_term: false,
            state: RunState::Run,
        }
    }

    #[test]
    fn encodes_runits_twenty_bytes() {
        let bytes = status().encode();
        assert_eq!(
            u64::from_be_bytes(bytes[0..8].try_into().unwrap()),
            (1 << 62) + 10 + 1_700_000_000
        );
        assert_eq!(u32::from_be_bytes(bytes[8..12].try_into().unwrap()), 123_456_789);
        assert_eq!(&bytes[12..16], &[0x04, 0x03, 0x02, 0x01], "pid is little-endian");
        assert_eq!(&bytes[16..20], &[0, b'u', 0, 1]);
        let down = Status {
            pid: None,
            paused: true,
            want_up: false,
            got_term: true,
            state: RunState::Down,
            ..status()
        };
        assert_eq!(&down.encode()[12..20], &[0, 0, 0, 0, 1, b'd', 1, 0]);
    }

    #[test]
    fn what_the_supervisor_encodes_decodes_to_the_same_fields() {
        let finishing = Status {
            pid: Some(77),
            paused: true,
            want_up: false,
            got_term: true,
            state: RunState::Finish,
            ..status()
        };
        for status in [status(), finishing] {
            let record = Record::decode(&status.encode());
            assert_eq!(record, status.record());
            assert_eq!(record.since, TAI64_UNIX_EPOCH + 1_700_000_000);
            assert_eq!(record.nanos, 123_456_789);
            assert_eq!(record.pid as i32, status.pid.unwrap_or(0));
            assert_eq!(record.paused != 0, status.paused);
            assert_eq!(record.want == control::UP, status.want_up);
            assert_eq!(record.got_term != 0, status.got_term);
            assert_eq!(record.run_state(), Some(status.state));
        }
        let down = Status {
            pid: None,
            state: RunState::Down,
            ..status()
        };
        assert_eq!(Record::decode(&down.encode()).pid, 0);
    }

    #[test]
    fn decodes_a_record_written_by_runsv() {
        // Captured from Debian's runsv 2.1.2: running pid 30446 (0x76ee), want up.
        let raw = [
            0x40, 0x00, 0x00, 0x00, 0x6b, 0x0b, 0x74, 0xa4, 0x0b, 0x1b, 0x3d, 0x24, 0xee, 0x76, 0x00, 0x00, 0x00, 0x75,
            0x00, 0x01,
        ];
        let record = Record::decode(&raw);
        assert_eq!(record.since, (1 << 62) + 0x6b0b74a4);
        assert_eq!(record.nanos, 0x0b1b3d24);
        assert_eq!(record.pid, 30446);
        assert_eq!(
            (record.paused, record.want, record.got_term, record.run_state()),
            (0, b'u', 0, Some(RunState::Run))
        );
        assert_eq!(record.encode(), raw);
    }

    #[test]
    fn pid_is_little_endian_and_time_big_endian() {
        let mut raw = [0u8; RECORD_LEN];
        raw[7] = 1;
        raw[12..16].copy_from_slice(&[0x01, 0x02, 0x03, 0x04]);
        let record = Record::decode(&raw);
        assert_eq!(record.pid, 0x04030201);
        assert_eq!(record.since, 1);
    }

    #[test]
    fn only_runits_three_state_bytes_are_states() {
        assert_eq!(RunState::from_byte(0), Some(RunState::Down));
        assert_eq!(RunState::from_byte(1), Some(RunState::Run));
        assert_eq!(RunState::from_byte(2), Some(RunState::Finish));
        assert_eq!(RunState::from_byte(3), None);
        for state in [RunState::Down, RunState::Run, RunState::Finish] {
            assert_eq!(RunState::from_byte(state as u8), Some(state));
        }
    }

    #[test]
    fn a_time_before_1970_is_labelled_as_1970() {
        assert_eq!(tai64n(UNIX_EPOCH - Duration::from_secs(5)), (TAI64_UNIX_EPOCH, 0));
    }

    #[test]
    fn stat_text_as_runsv() {
        let table = [
            (status(), "run\n"),
            (
                Status {
                    want_up: false,
                    got_term: true,
                    ..status()
                },
                "run, got TERM, want down\n",
            ),
            (
                Status {
                    paused: true,
                    ..status()
                },
                "run, paused\n",
            ),
            (
                Status {
                    state: RunState::Finish,
                    ..status()
                },
                "finish\n",
            ),
            (
                Status {
                    state: RunState::Down,
                    want_up: false,
                    ..status()
                },
                "down\n",
            ),
        ];
        for (status, text) in table {
            assert_eq!(status.stat_text(), text, "{status:?}");
        }
    }

    proptest::proptest! {
        /// Any 20 bytes decode, and encode back to the same 20 bytes.
        #[test]
        fn any_record_round_trips(bytes in proptest::array::uniform20(proptest::prelude::any::<u8>())) {
            let record = Record::decode(&bytes);
            proptest::prop_assert_eq!(record.encode(), bytes);
            proptest::prop_assert_eq!(Record::decode(&record.encode()), record);
        }
    }
}
