//! svlogd's three line timestamps and the TAI64N labels that name rotated
//! files, formatted into fixed arrays (never allocated).
//!
//! The formats are runit 2.1.2's byte for byte: `-t` is a TAI64N label
//! (`@4000000065…`, 25 characters), `-tt` is `YYYY-MM-DD_HH:MM:SS.xxxxx`
//! and `-ttt` is `YYYY-MM-DDTHH:MM:SS.xxxxx` (UTC, the fraction truncated to
//! 10 µs), each followed by one space. runit's clock is libtai's: TAI64 is
//! UTC plus 10 s, without a leap-second table (see [`crate::runit::status`]).

use std::time::{SystemTime, UNIX_EPOCH};

use crate::runit::status::tai64n;

/// A timestamp's length, without its space.
pub const STAMP_LEN: usize = 25;
/// A rotated file's name: `@`, the TAI64N label in hex, `.s` or `.u`.
pub const ROTATED_LEN: usize = STAMP_LEN + 2;

/// Which timestamp goes before each line (`-t`, `-tt`, `-ttt`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Timestamp {
    /// `-t`: `@` and the TAI64N label in hex.
    Tai64n,
    /// `-tt`: `YYYY-MM-DD_HH:MM:SS.xxxxx`.
    Readable,
    /// `-ttt`: `YYYY-MM-DDTHH:MM:SS.xxxxx`.
    Iso8601,
}

impl Timestamp {
    /// The format for svlogd's `-t` count (1, 2, 3 or more); None for 0.
    pub fn from_count(count: usize) -> Option<Timestamp> {
        match count {
            0 => None,
            1 => Some(Timestamp::Tai64n),
            2 => Some(Timestamp::Readable),
            _ => Some(Timestamp::Iso8601),
        }
    }
}

/// `@` and the 24 hex digits of `time`'s TAI64N label (runit's `fmt_taia`).
pub fn tai64n_label(time: SystemTime) -> [u8; STAMP_LEN] {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let (secs, nanos) = tai64n(time);
    let mut out = [0u8; STAMP_LEN];
    out[0] = b'@';
    let label = (u128::from(secs) << 32) | u128::from(nanos);
    for (i, byte) in out[1..].iter_mut().enumerate() {
        let shift = 4 * (23 - i);
        *byte = HEX[((label >> shift) & 15) as usize];
    }
    out
}

/// The name a file rotated at `time` gets: `@<label>.s`, or `.u` for a
/// `current` found unfinished.
pub fn rotated_name(time: SystemTime, unfinished: bool) -> [u8; ROTATED_LEN] {
    let mut out = [0u8; ROTATED_LEN];
    out[..STAMP_LEN].copy_from_slice(&tai64n_label(time));
    out[STAMP_LEN] = b'.';
    out[STAMP_LEN + 1] = if unfinished { b'u' } else { b's' };
    out
}

/// `time` in `format`, followed by a space.
pub fn format(format: Timestamp, time: SystemTime) -> [u8; STAMP_LEN + 1] {
    let mut out = [b' '; STAMP_LEN + 1];
    match format {
        Timestamp::Tai64n => out[..STAMP_LEN].copy_from_slice(&tai64n_label(time)),
        Timestamp::Readable | Timestamp::Iso8601 => {
            let since = time.duration_since(UNIX_EPOCH).unwrap_or_default();
            out[..20].copy_from_slice(&date_time(since.as_secs(), format));
            fraction(since.subsec_nanos(), &mut out[20..STAMP_LEN]);
        }
    }
    out
}

/// `YYYY-MM-DD_HH:MM:SS.` (or with `T`) of `secs` since the epoch, UTC.
fn date_time(secs: u64, format: Timestamp) -> [u8; 20] {
    let (year, month, day) = civil_from_days(secs / 86_400);
    let of_day = secs % 86_400;
    let mut out = *b"0000-00-00_00:00:00.";
    digits(year % 10_000, &mut out[0..4]);
    digits(u64::from(month), &mut out[5..7]);
    digits(u64::from(day), &mut out[8..10]);
    if format == Timestamp::Iso8601 {
        out[10] = b'T';
    }
    digits(of_day / 3600, &mut out[11..13]);
    digits(of_day / 60 % 60, &mut out[14..16]);
    digits(of_day % 60, &mut out[17..19]);
    out
}

/// The first five digits of nine of `nanos` (runit truncates, not rounds).
fn fraction(nanos: u32, out: &mut [u8]) {
    digits(u64::from(nanos / 10_000), out);
}

/// `value` in decimal, zero-padded to fill `out`.
fn digits(mut value: u64, out: &mut [u8]) {
    for byte in out.iter_mut().rev() {
        *byte = b'0' + (value % 10) as u8;
        value /= 10;
    }
}

/// The proleptic Gregorian (year, month, day) of a day count since
/// 1970-01-01 (Howard Hinnant's `civil_from_days`, for days ≥ 0).
fn civil_from_days(days: u64) -> (u64, u32, u32) {
    let z = days + 719_468;
    let era = z / 146_097;
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = yoe + era * 400 + u64::from(month <= 2);
    (year, month, day)
}

/// The last stamp formatted, kept for the lines that share its time: a
/// batch of lines read at once is stamped with one clock reading.
#[derive(Debug)]
pub struct StampCache {
    format: Timestamp,
    time: SystemTime,
    /// The whole stamp of `time`.
    stamp: [u8; STAMP_LEN + 1],
    /// The second `stamp`'s date and time are of (only the fraction changes
    /// within it).
    second: u64,
}

impl StampCache {
    pub fn new(format: Timestamp) -> StampCache {
        StampCache {
            format,
            time: UNIX_EPOCH,
            stamp: self::format(format, UNIX_EPOCH),
            second: 0,
        }
    }

    /// `time`'s stamp, with its space.
    pub fn get(&mut self, time: SystemTime) -> &[u8; STAMP_LEN + 1] {
        if time != self.time {
            let since = time.duration_since(UNIX_EPOCH).unwrap_or_default();
            if self.format != Timestamp::Tai64n && since.as_secs() == self.second {
                fraction(since.subsec_nanos(), &mut self.stamp[20..STAMP_LEN]);
            } else {
                self.stamp = format(self.format, time);
                self.second = since.as_secs();
            }
            self.time = time;
        }
        &self.stamp
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn at(secs: u64, nanos: u32) -> SystemTime {
        UNIX_EPOCH + Duration::new(secs, nanos)
    }

    fn text(bytes: &[u8]) -> &str {
        std::str::from_utf8(bytes).unwrap()
    }

    #[test]
    fn readable_and_iso8601_stamps_are_runits() {
        // (seconds, nanoseconds, -tt, -ttt)
        let table = [
            (0, 0, "1970-01-01_00:00:00.00000 ", "1970-01-01T00:00:00.00000 "),
            (
                951_782_400,
                999_999_999,
                "2000-02-29_00:00:00.99999 ",
                "2000-02-29T00:00:00.99999 ",
            ),
            (
                1_796_551_150,
                220_620_000,
                "2026-12-06_09:59:10.22062 ",
                "2026-12-06T09:59:10.22062 ",
            ),
            (
                4_102_444_799,
                12_345,
                "2099-12-31_23:59:59.00001 ",
                "2099-12-31T23:59:59.00001 ",
            ),
            (
                1_709_251_199,
                10_000,
                "2024-02-29_23:59:59.00001 ",
                "2024-02-29T23:59:59.00001 ",
            ),
        ];
        for (secs, nanos, readable, iso) in table {
            assert_eq!(text(&format(Timestamp::Readable, at(secs, nanos))), readable);
            assert_eq!(text(&format(Timestamp::Iso8601, at(secs, nanos))), iso);
        }
    }

    #[test]
    fn tai64n_labels_count_from_2_62_plus_10() {
        // Seen from Debian's svlogd: @400000006b1531f80daa870c at 09:59:10 UTC.
        let time = at(0x6b15_31f8 - 10, 0x0daa_870c);
        assert_eq!(text(&format(Timestamp::Tai64n, time)), "@400000006b1531f80daa870c ");
        assert_eq!(text(&rotated_name(time, false)), "@400000006b1531f80daa870c.s");
        assert_eq!(text(&rotated_name(time, true)), "@400000006b1531f80daa870c.u");
        assert_eq!(text(&tai64n_label(at(0, 1))), "@400000000000000a00000001");
    }

    #[test]
    fn every_day_of_four_centuries_formats_as_the_day_count_says() {
        // Walk day by day from 1970 to 2370: the date only ever moves on by
        // one day, across month ends, leap days and century years.
        let mut previous = civil_from_days(0);
        assert_eq!(previous, (1970, 1, 1));
        for day in 1..146_097 {
            let (y, m, d) = civil_from_days(day);
            let (py, pm, pd) = previous;
            let next_day = (y, m, d) == (py, pm, pd + 1);
            let next_month = (y, m, d) == (py, pm + 1, 1) && pd >= 28;
            let next_year = (y, m, d) == (py + 1, 1, 1) && (pm, pd) == (12, 31);
            assert!(next_day || next_month || next_year, "{previous:?} → {:?}", (y, m, d));
            previous = (y, m, d);
        }
        assert_eq!(previous, (2369, 12, 31));
    }

    #[test]
    fn the_cache_reformats_only_what_changed() {
        let mut cache = StampCache::new(Timestamp::Readable);
        assert_eq!(text(cache.get(at(86_400, 500_000_000))), "1970-01-02_00:00:00.50000 ");
        assert_eq!(text(cache.get(at(86_400, 600_000_000))), "1970-01-02_00:00:00.60000 ");
        assert_eq!(text(cache.get(at(86_401, 0))), "1970-01-02_00:00:01.00000 ");
        let mut tai = StampCache::new(Timestamp::Tai64n);
        assert_eq!(text(tai.get(at(0, 16))), "@400000000000000a00000010 ");
        assert_eq!(text(tai.get(at(0, 17))), "@400000000000000a00000011 ");
    }

    #[test]
    fn t_counts_choose_the_format() {
        assert_eq!(Timestamp::from_count(0), None);
        assert_eq!(Timestamp::from_count(1), Some(Timestamp::Tai64n));
        assert_eq!(Timestamp::from_count(2), Some(Timestamp::Readable));
        assert_eq!(Timestamp::from_count(3), Some(Timestamp::Iso8601));
        assert_eq!(Timestamp::from_count(7), Some(Timestamp::Iso8601));
    }
}
