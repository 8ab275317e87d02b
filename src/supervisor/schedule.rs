//! Scheduled services, decided: when a service's next run is due (its cron
//! expression's next time after now, in the container's time zone), what a
//! due time does while the last run still goes (start, skip, queue), and
//! whether a run's end starts the one queued behind it.
//!
//! Pure: one [`Timer`] per scheduled service, changed by its methods, each
//! given `now` (the loop's monotonic clock) and, where times are compared,
//! `wall` (the real time, read by the supervisor). The loop sleeps until
//! [`Timer::deadline`]: one deadline per service, its next due time, never
//! a polling tick.

use std::time::{Duration, Instant, SystemTime};

use chrono::{DateTime, FixedOffset, MappedLocalTime, NaiveDate, NaiveDateTime, SecondsFormat, TimeZone, Utc};

use crate::config::{OnFailedRun, Overlap, Schedule};

/// The time zone schedules follow: a fixed offset (UTC when TZ is unset),
/// or TZ as the C library reads it (chrono's `Local`: a zone of
/// /usr/share/zoneinfo, a POSIX rule, `:path`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Zone {
    Fixed(FixedOffset),
    Local,
}

impl Zone {
    // Evaluated at compile time: no panic can come of it at run time.
    pub const UTC: Zone = Zone::Fixed(FixedOffset::east_opt(0).expect("0 is a valid offset"));

    /// The zone for the value of `TZ`: UTC when unset or empty.
    pub fn from_tz(tz: Option<&str>) -> Zone {
        match tz {
            None | Some("") => Zone::UTC,
            Some(_) => Zone::Local,
        }
    }

    /// The container's: baseinit's own `TZ` (`docker run -e TZ=…`), and
    /// its name for `status`.
    pub fn container() -> (Zone, String) {
        let tz = std::env::var("TZ").ok();
        let name = tz.clone().filter(|t| !t.is_empty()).unwrap_or_else(|| "UTC".to_owned());
        (Zone::from_tz(tz.as_deref()), name)
    }
}

/// An offset of a [`Zone`], with the zone it came from: chrono rebuilds a
/// date's zone from its offset (`TimeZone::from_offset`), and croner's walk
/// over the calendar must stay in `Local` across a DST change.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ZoneOffset {
    offset: FixedOffset,
    zone: Zone,
}

impl chrono::Offset for ZoneOffset {
    fn fix(&self) -> FixedOffset {
        self.offset
    }
}

impl std::fmt::Display for ZoneOffset {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.offset.fmt(f)
    }
}

impl TimeZone for Zone {
    type Offset = ZoneOffset;

    fn from_offset(offset: &ZoneOffset) -> Zone {
        offset.zone
    }

    #[allow(deprecated)]
    fn offset_from_local_date(&self, local: &NaiveDate) -> MappedLocalTime<ZoneOffset> {
        let offset = match self {
            Zone::Fixed(fixed) => fixed.offset_from_local_date(local),
            Zone::Local => chrono::Local.offset_from_local_date(local),
        };
        offset.map(|offset| ZoneOffset { offset, zone: *self })
    }

    fn offset_from_local_datetime(&self, local: &NaiveDateTime) -> MappedLocalTime<ZoneOffset> {
        let offset = match self {
            Zone::Fixed(fixed) => fixed.offset_from_local_datetime(local),
            Zone::Local => chrono::Local.offset_from_local_datetime(local),
        };
        offset.map(|offset| ZoneOffset { offset, zone: *self })
    }

    #[allow(deprecated)]
    fn offset_from_utc_date(&self, utc: &NaiveDate) -> ZoneOffset {
        let offset = match self {
            Zone::Fixed(fixed) => *fixed,
            Zone::Local => chrono::Local.offset_from_utc_date(utc),
        };
        ZoneOffset { offset, zone: *self }
    }

    fn offset_from_utc_datetime(&self, utc: &NaiveDateTime) -> ZoneOffset {
        let offset = match self {
            Zone::Fixed(fixed) => *fixed,
            Zone::Local => chrono::Local.offset_from_utc_datetime(utc),
        };
        ZoneOffset { offset, zone: *self }
    }
}

/// What a due time (or `sv once`) does.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Due {
    /// Nothing runs: start a run now.
    Start,
    /// The last run still goes (`overlap = "skip"`, or a run is queued
    /// already): this time is skipped.
    Skip,
    /// The last run still goes: this one starts when it ends.
    Queue,
}

/// A time that came: when it was due, and what it does.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Fired {
    pub at: DateTime<Zone>,
    pub due: Due,
}

/// One scheduled service's times and runs.
#[derive(Clone, Debug)]
pub struct Timer {
    schedule: Schedule,
    zone: Zone,
    /// TZ as given, or "UTC", for `status`.
    zone_name: String,
    /// Times start runs (false: a `down` file, `sv down`, a shutdown).
    enabled: bool,
    /// The next due time, and the loop's instant to wake for it.
    next: Option<(DateTime<Zone>, Instant)>,
    /// A run waits for the current one to end (`overlap = "queue"`).
    queued: bool,
    /// A run it started is under way (its end is still to be seen).
    running: bool,
    last_start: Option<DateTime<Zone>>,
    runs: u64,
    skipped: u64,
    /// The last run that ended failed.
    last_failed: bool,
}

/// A timer's state, for `baseinit status`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Shown {
    pub next_run: Option<String>,
    pub last_run_start: Option<String>,
    pub runs: u64,
    pub skipped: u64,
    pub queued: bool,
    /// The last run failed and `on-failed-run = "unhealthy"`.
    pub unhealthy: bool,
}

impl Timer {
    /// A timer that starts nothing until [`Timer::enable`]d.
    pub fn new(schedule: Schedule, zone: Zone, zone_name: String) -> Self {
        Timer {
            schedule,
            zone,
            zone_name,
            enabled: false,
            next: None,
            queued: false,
            running: false,
            last_start: None,
            runs: 0,
            skipped: 0,
            last_failed: false,
        }
    }

    pub fn schedule(&self) -> &Schedule {
        &self.schedule
    }

    pub fn zone_name(&self) -> &str {
        &self.zone_name
    }

    pub fn enabled(&self) -> bool {
        self.enabled
    }

    /// A run it started has not been seen to end.
    pub fn running(&self) -> bool {
        self.running
    }

    /// The next due time.
    pub fn next_time(&self) -> Option<DateTime<Zone>> {
        self.next.map(|(at, _)| at)
    }

    /// When the loop must wake for the next due time.
    pub fn deadline(&self) -> Option<Instant> {
        self.next.map(|(_, deadline)| deadline)
    }

    /// `wall` in the timer's zone.
    pub fn local(&self, wall: SystemTime) -> DateTime<Zone> {
        DateTime::<Utc>::from(wall).with_timezone(&self.zone)
    }

    /// Times start runs from now on (boot, `sv up`); the next due time, if
    /// there is one.
    pub fn enable(&mut self, now: Instant, wall: SystemTime) -> Option<DateTime<Zone>> {
        self.enabled = true;
        self.aim(now, self.local(wall));
        self.next_time()
    }

    /// No time starts a run any more, and a queued run is dropped (`sv
    /// down`, a `down` file, the shutdown, a rescan replacing it).
    pub fn disable(&mut self) {
        self.enabled = false;
        self.next = None;
        self.queued = false;
    }

    /// The next time after `wall`, and the instant it is due at on the
    /// loop's clock. None when there is none (croner looks up to year 5000).
    fn aim(&mut self, now: Instant, wall: DateTime<Zone>) {
        let cron = self.schedule.cron();
        // Strictly later, or a deadline could fire again and again at once.
        let next = cron.and_then(|c| c.find_next_occurrence(&wall, false).ok());
        self.next = next.filter(|at| *at > wall).map(|at| {
            let wait = (at - wall).to_std().unwrap_or(Duration::ZERO);
            (at, now + wait)
        });
    }

    /// The deadline passed: whether a time is due and what it does. `busy`:
    /// the service's last run (or its `finish`) still goes. The next time
    /// is aimed at either way, so a deadline never fires twice.
    pub fn on_deadline(&mut self, now: Instant, wall: SystemTime, busy: bool) -> Option<Fired> {
        let (at, deadline) = self.next?;
        if !self.enabled || now < deadline {
            return None;
        }
        let wall = self.local(wall);
        if wall < at {
            // Woken before the time by the real clock (it was set back, or
            // runs slower than the loop's): aim again from the real time.
            self.aim(now, wall);
            return None;
        }
        // From the real time, not from `at`: after a long stall (or a clock
        // set forward) the times missed meanwhile are one late run, not a burst.
        self.aim(now, wall);
        Some(Fired {
            at,
            due: self.overlap(busy),
        })
    }

    /// `sv once`: a run now, unless one goes (then as `overlap` says).
    pub fn on_demand(&mut self, busy: bool) -> Due {
        self.overlap(busy)
    }

    fn overlap(&mut self, busy: bool) -> Due {
        if !busy {
            return Due::Start;
        }
        match self.schedule.overlap {
            Overlap::Queue if !self.queued => {
                self.queued = true;
                Due::Queue
            }
            Overlap::Skip | Overlap::Queue => {
                self.skipped += 1;
                Due::Skip
            }
        }
    }

    /// A run it asked for started (at `wall`).
    pub fn on_run_started(&mut self, wall: SystemTime) {
        self.running = true;
        self.last_start = Some(self.local(wall));
        self.runs += 1;
    }

    /// Its run ended (`success`: it exited 0): whether the queued run
    /// starts now. A run ended by an operator's `sv down` counts neither
    /// way for health.
    pub fn on_run_ended(&mut self, success: bool) -> bool {
        self.running = false;
        if self.enabled || success {
            self.last_failed = !success;
        }
        std::mem::take(&mut self.queued)
    }

    /// What `status` shows.
    pub fn shown(&self) -> Shown {
        Shown {
            next_run: self.next_time().map(|at| at.to_rfc3339_opts(SecondsFormat::Secs, true)),
            last_run_start: self
                .last_start
                .as_ref()
                .map(|at| at.to_rfc3339_opts(SecondsFormat::Millis, true)),
            runs: self.runs,
            skipped: self.skipped,
            queued: self.queued,
            unhealthy: self.last_failed && self.schedule.on_failed_run == OnFailedRun::Unhealthy,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn schedule(expression: &str, overlap: Overlap) -> Schedule {
        assert!(crate::config::parse_schedule(expression).is_ok(), "{expression}");
        Schedule {
            expression: expression.to_owned(),
            overlap,
            on_failed_run: OnFailedRun::Unhealthy,
        }
    }

    /// A wall time from RFC 3339.
    fn wall(text: &str) -> SystemTime {
        DateTime::parse_from_rfc3339(text).expect("a date").into()
    }

    fn zone(hours: i32) -> Zone {
        Zone::Fixed(FixedOffset::east_opt(hours * 3600).expect("an offset"))
    }

    /// The next `count` times after `from`, as RFC 3339 in the zone.
    fn times(expression: &str, zone: Zone, from: &str, count: usize) -> Vec<String> {
        let mut timer = Timer::new(schedule(expression, Overlap::Skip), zone, String::new());
        let mut now = Instant::now();
        let mut at = wall(from);
        timer.enable(now, at);
        let mut out = Vec::new();
        for _ in 0..count {
            let Some(deadline) = timer.deadline() else { break };
            let next = timer.next_time().expect("a time");
            // The loop wakes exactly at the deadline: the real clock says
            // the due time, to the nanosecond.
            at += deadline - now;
            now = deadline;
            out.push(next.to_rfc3339_opts(SecondsFormat::Secs, true));
            assert_eq!(timer.on_deadline(now, at, false).map(|f| f.due), Some(Due::Start));
        }
        out
    }

    #[test]
    fn next_times_of_five_and_six_fields_names_and_zones() {
        let utc = Zone::UTC;
        let table: [(&str, Zone, &str, [&str; 3]); 9] = [
            (
                "*/5 * * * *",
                utc,
                "2025-01-01T00:03:10Z",
                ["2025-01-01T00:05:00Z", "2025-01-01T00:10:00Z", "2025-01-01T00:15:00Z"],
            ),
            // Six fields: seconds first.
            (
                "*/2 * * * * *",
                utc,
                "2025-01-01T00:00:00.500Z",
                ["2025-01-01T00:00:02Z", "2025-01-01T00:00:04Z", "2025-01-01T00:00:06Z"],
            ),
            (
                "30 0 12 * * MON-FRI",
                utc,
                "2025-01-03T13:00:00Z",
                ["2025-01-06T12:00:30Z", "2025-01-07T12:00:30Z", "2025-01-08T12:00:30Z"],
            ),
            (
                "@hourly",
                utc,
                "2025-01-01T00:59:59Z",
                ["2025-01-01T01:00:00Z", "2025-01-01T02:00:00Z", "2025-01-01T03:00:00Z"],
            ),
            (
                "@daily",
                utc,
                "2025-01-01T00:00:00Z",
                ["2025-01-02T00:00:00Z", "2025-01-03T00:00:00Z", "2025-01-04T00:00:00Z"],
            ),
            (
                "@monthly",
                utc,
                "2025-01-15T00:00:00Z",
                ["2025-02-01T00:00:00Z", "2025-03-01T00:00:00Z", "2025-04-01T00:00:00Z"],
            ),
            // Leap days only.
            (
                "0 0 29 2 *",
                utc,
                "2025-01-01T00:00:00Z",
                ["2028-02-29T00:00:00Z", "2032-02-29T00:00:00Z", "2036-02-29T00:00:00Z"],
            ),
            // 03:00 where the clock is 2 hours ahead of UTC: 01:00 UTC.
            (
                "0 3 * * *",
                zone(2),
                "2025-01-01T00:00:00Z",
                [
                    "2025-01-01T03:00:00+02:00",
                    "2025-01-02T03:00:00+02:00",
                    "2025-01-03T03:00:00+02:00",
                ],
            ),
            // And 5 hours behind: the day turns at 05:00 UTC.
            (
                "0 0 * * *",
                zone(-5),
                "2025-01-01T04:59:00Z",
                [
                    "2025-01-01T00:00:00-05:00",
                    "2025-01-02T00:00:00-05:00",
                    "2025-01-03T00:00:00-05:00",
                ],
            ),
        ];
        for (expression, zone, from, expected) in table {
            assert_eq!(times(expression, zone, from, 3), expected, "{expression} from {from}");
        }
    }

    #[test]
    fn the_deadline_is_the_due_time_on_the_loops_clock() {
        let mut timer = Timer::new(schedule("*/2 * * * * *", Overlap::Skip), Zone::UTC, "UTC".into());
        let now = Instant::now();
        assert_eq!(timer.deadline(), None, "nothing before it is enabled");
        timer.enable(now, wall("2025-01-01T00:00:00.250Z"));
        assert_eq!(timer.deadline(), Some(now + Duration::from_millis(1750)));
        // Early: not yet due, nothing changes.
        assert_eq!(
            timer.on_deadline(now + Duration::from_secs(1), wall("2025-01-01T00:00:01.250Z"), false),
            None
        );
        assert_eq!(timer.deadline(), Some(now + Duration::from_millis(1750)));
    }

    /// (busy at the due time, overlap, queued before) → what it does.
    #[test]
    fn what_a_due_time_does_while_a_run_goes() {
        let table = [
            (false, Overlap::Skip, false, Due::Start, false),
            (false, Overlap::Queue, false, Due::Start, false),
            (true, Overlap::Skip, false, Due::Skip, false),
            (true, Overlap::Queue, false, Due::Queue, true),
            // At most one waits: a third time while two are in line is skipped.
            (true, Overlap::Queue, true, Due::Skip, true),
        ];
        for (busy, overlap, queued, due, queued_after) in table {
            let mut timer = Timer::new(schedule("* * * * * *", overlap), Zone::UTC, "UTC".into());
            let now = Instant::now();
            timer.enable(now, wall("2025-01-01T00:00:00Z"));
            timer.queued = queued;
            let fired = timer.on_deadline(now + Duration::from_secs(1), wall("2025-01-01T00:00:01Z"), busy);
            assert_eq!(fired.map(|f| f.due), Some(due), "{busy} {overlap:?} {queued}");
            assert_eq!(timer.queued, queued_after, "{busy} {overlap:?} {queued}");
            assert_eq!(timer.skipped, u64::from(due == Due::Skip));
            // The next time is aimed at whatever happened.
            assert_eq!(timer.deadline(), Some(now + Duration::from_secs(2)));
        }
    }

    #[test]
    fn a_run_that_ends_starts_the_queued_one_and_sets_health() {
        let mut timer = Timer::new(schedule("* * * * * *", Overlap::Queue), Zone::UTC, "UTC".into());
        let now = Instant::now();
        timer.enable(now, wall("2025-01-01T00:00:00Z"));
        timer.on_run_started(wall("2025-01-01T00:00:00.001Z"));
        assert!(timer.running());
        assert_eq!(timer.on_demand(true), Due::Queue, "sv once during a run waits");
        assert!(timer.on_run_ended(false), "the queued run starts");
        assert!(!timer.running());
        assert!(timer.shown().unhealthy, "a failed run");
        assert!(!timer.on_run_ended(true), "nothing queued any more");
        assert!(!timer.shown().unhealthy, "until one succeeds");
        let shown = timer.shown();
        assert_eq!(shown.last_run_start.as_deref(), Some("2025-01-01T00:00:00.001Z"));
        assert_eq!(shown.next_run.as_deref(), Some("2025-01-01T00:00:01Z"));
        assert_eq!(shown.runs, 1);
    }

    #[test]
    fn a_run_stopped_by_sv_down_does_not_count_for_health() {
        let mut timer = Timer::new(schedule("* * * * *", Overlap::Queue), Zone::UTC, "UTC".into());
        timer.enable(Instant::now(), wall("2025-01-01T00:00:00Z"));
        timer.on_run_started(wall("2025-01-01T00:00:00Z"));
        timer.queued = true;
        timer.disable();
        assert!(!timer.on_run_ended(false), "sv down drops the queued run");
        assert!(!timer.shown().unhealthy);
        assert_eq!(timer.deadline(), None);
        assert_eq!(timer.shown().next_run, None);
    }

    #[test]
    fn the_real_clock_decides_when_it_disagrees_with_the_loops() {
        let mut timer = Timer::new(schedule("0 * * * *", Overlap::Skip), Zone::UTC, "UTC".into());
        let now = Instant::now();
        timer.enable(now, wall("2025-01-01T00:30:00Z"));
        let deadline = now + Duration::from_secs(1800);
        assert_eq!(timer.deadline(), Some(deadline));
        // The clock was set back ten minutes meanwhile: not due yet; aimed
        // again, ten minutes later on the loop's clock.
        assert_eq!(timer.on_deadline(deadline, wall("2025-01-01T00:50:00Z"), false), None);
        assert_eq!(timer.deadline(), Some(deadline + Duration::from_secs(600)));
        // Set forward past three times: one late run, then the next time
        // after the real one.
        let later = deadline + Duration::from_secs(600);
        let fired = timer
            .on_deadline(later, wall("2025-01-01T03:20:00Z"), false)
            .expect("due");
        assert_eq!(
            fired.at.to_rfc3339_opts(SecondsFormat::Secs, true),
            "2025-01-01T01:00:00Z"
        );
        assert_eq!(fired.due, Due::Start);
        assert_eq!(
            timer.next_time().map(|t| t.to_rfc3339_opts(SecondsFormat::Secs, true)),
            Some("2025-01-01T04:00:00Z".to_owned())
        );
        assert_eq!(timer.deadline(), Some(later + Duration::from_secs(2400)));
    }

    #[test]
    fn a_disabled_timer_never_fires() {
        let mut timer = Timer::new(schedule("* * * * * *", Overlap::Skip), Zone::UTC, "UTC".into());
        let now = Instant::now();
        timer.enable(now, wall("2025-01-01T00:00:00Z"));
        timer.disable();
        assert_eq!(
            timer.on_deadline(now + Duration::from_secs(5), wall("2025-01-01T00:00:05Z"), false),
            None
        );
        assert_eq!(timer.deadline(), None);
    }

    #[test]
    fn the_zone_comes_from_tz_and_keeps_local_across_offsets() {
        assert_eq!(Zone::from_tz(None), Zone::UTC);
        assert_eq!(Zone::from_tz(Some("")), Zone::UTC);
        assert_eq!(Zone::from_tz(Some("Europe/Berlin")), Zone::Local);
        // A date in Local rebuilds Local from its offset, not a fixed zone.
        let offset = Zone::Local.offset_from_utc_datetime(&DateTime::UNIX_EPOCH.naive_utc());
        assert_eq!(<Zone as TimeZone>::from_offset(&offset), Zone::Local);
        let fixed = zone(3).offset_from_utc_datetime(&DateTime::UNIX_EPOCH.naive_utc());
        assert_eq!(<Zone as TimeZone>::from_offset(&fixed), zone(3));
    }
}
