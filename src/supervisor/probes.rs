//! Readiness and health probing, scheduled: when a run counts as ready, when
//! its next probe is due, what a probe's result means (ready, one more try,
//! given up on, healthy, restart it).
//!
//! Pure: a [`ProbeSchedule`] per unit, changed by its methods, each given
//! `now`. The supervisor runs the probes it asks for (a command, a TCP
//! connection, an HTTP GET, a task watching a notification fd or socket)
//! and reports their results back; `log-line` is watched by the output
//! reader, which reports matching lines.

use std::time::Instant;

use nix::unistd::Pid;

use crate::config::{Readiness, ReadyCheck};

/// One unit's probing of its current run.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ProbeSchedule {
    /// The current run is ready.
    pub ready: bool,
    /// When the next probe is due: a readiness command before the run is
    /// ready, a health probe after.
    next_at: Option<Instant>,
    /// A command probe that runs, and when it is killed.
    running: Option<(Pid, Instant)>,
    /// Failed probes in a row.
    failures: u32,
    /// `[health] log-line`: when the last matching line came (a quiet
    /// interval after it counts as a passing probe).
    last_match: Option<Instant>,
}

/// How a run that just started is watched for readiness.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Watch {
    /// Ready as soon as it runs.
    ReadyNow,
    /// Command probes, the first one now.
    Commands,
    /// A task tells: TCP connection attempts, HTTP GETs, the notification
    /// fd, sd_notify.
    Task,
    /// The reader of its output tells, when a line matches (`log-line`):
    /// nothing to start or schedule.
    Output,
}

/// A probe to run now.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Due {
    /// The run it probes.
    pub run: Pid,
    /// A health probe (the run is ready), not a readiness one.
    pub health: bool,
}

/// What a probe's result means.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// The run is ready now (readiness probing ends, health probing begins).
    Ready,
    /// Not ready yet: another probe after the interval.
    NotYet,
    /// Not ready after this many probes: it stays not ready.
    GaveUp { probes: u32 },
    /// A health probe passed.
    Healthy,
    /// A health probe failed, `failures` of the `retries` allowed in a row.
    Unhealthy { failures: u32, retries: u32 },
    /// The last allowed health probe failed: restart the service.
    Restart { retries: u32 },
    /// Nothing to act on (health probing ended: the service is stopping).
    Ignored,
}

impl ProbeSchedule {
    /// A run started: what watches it. Health probes, if any, begin once it
    /// is ready.
    pub fn on_run_started(&mut self, readiness: &Readiness, health: Option<&Readiness>, now: Instant) -> Watch {
        self.ready = false;
        self.failures = 0;
        self.next_at = None;
        self.last_match = None;
        match readiness.check {
            ReadyCheck::Started => {
                self.on_ready(health, now);
                Watch::ReadyNow
            }
            ReadyCheck::Command(_) => {
                self.next_at = Some(now);
                Watch::Commands
            }
            ReadyCheck::Tcp(_) | ReadyCheck::Http(_) | ReadyCheck::SdNotify | ReadyCheck::NotificationFd(_) => {
                Watch::Task
            }
            ReadyCheck::LogLine(_) => Watch::Output,
        }
    }

    /// The run ended: nothing to probe until the next one (a probe still
    /// running is reaped as usual).
    pub fn on_run_ended(&mut self) {
        self.ready = false;
        self.next_at = None;
    }

    /// The run is ready (a task said so, or a probe passed): health probing,
    /// if any, begins after one interval (a `log-line` health check has no
    /// probes to schedule: matching lines come as they come).
    pub fn on_ready(&mut self, health: Option<&Readiness>, now: Instant) {
        self.ready = true;
        self.failures = 0;
        self.last_match = None;
        self.next_at = health.filter(|h| is_probed(&h.check)).map(|h| now + h.interval);
    }

    /// `[health] log-line`: a line of the ready run matched, a failed
    /// probe. A quiet `interval` since the last match counts as a passing
    /// probe, so `retries` matches restart the service when each comes
    /// within `interval` of the one before. Matches before the run is
    /// ready (health has not begun) or while it is stopped on purpose
    /// (`probing` false) are ignored.
    pub fn on_line_matched(&mut self, health: &Readiness, probing: bool, now: Instant) -> Verdict {
        if !self.ready || !probing {
            return Verdict::Ignored;
        }
        if self
            .last_match
            .is_some_and(|last| now.saturating_duration_since(last) >= health.interval)
        {
            self.failures = 0;
        }
        self.last_match = Some(now);
        self.failures += 1;
        if self.failures >= health.retries {
            self.failures = 0;
            self.last_match = None;
            return Verdict::Restart {
                retries: health.retries,
            };
        }
        Verdict::Unhealthy {
            failures: self.failures,
            retries: health.retries,
        }
    }

    /// The probe due at `now`, if one is and none runs; taken (the next is
    /// scheduled by its result). `run` is the run's pid, if it runs.
    pub fn take_due(&mut self, run: Option<Pid>, has_health: bool, now: Instant) -> Option<Due> {
        let (Some(at), Some(run)) = (self.next_at, run) else {
            // No run: nothing to probe (and no deadline to wake for).
            self.next_at = None;
            return None;
        };
        if now < at || self.running.is_some() || (self.ready && !has_health) {
            return None;
        }
        self.next_at = None;
        Some(Due {
            run,
            health: self.ready,
        })
    }

    /// A command probe started as `pid`; it is killed at `deadline`.
    pub fn on_probe_started(&mut self, pid: Pid, deadline: Instant) {
        self.running = Some((pid, deadline));
    }

    /// The command probe `pid` was reaped.
    pub fn on_probe_exited(&mut self, pid: Pid) {
        if self.running.is_some_and(|(p, _)| p == pid) {
            self.running = None;
        }
    }

    /// The command probe past its deadline, to be killed.
    pub fn overdue(&self, now: Instant) -> Option<Pid> {
        self.running
            .filter(|(_, deadline)| now >= *deadline)
            .map(|(pid, _)| pid)
    }

    /// A probe of the current run passed (`ok`) or failed. `probing` says
    /// whether health still counts: only for a service meant to be running
    /// as it is, not one being stopped (`sv down`, a rescan, a requires
    /// hold, the shutdown), which a restart must never bring back.
    pub fn on_result(
        &mut self,
        ok: bool,
        readiness: &Readiness,
        health: Option<&Readiness>,
        probing: bool,
        now: Instant,
    ) -> Verdict {
        if !self.ready {
            if ok {
                self.on_ready(health, now);
                return Verdict::Ready;
            }
            self.failures += 1;
            if self.failures >= readiness.retries {
                self.next_at = None;
                return Verdict::GaveUp { probes: self.failures };
            }
            self.next_at = Some(now + readiness.interval);
            return Verdict::NotYet;
        }
        let Some(health) = health else {
            return Verdict::Ignored;
        };
        if !probing {
            self.next_at = None;
            return Verdict::Ignored;
        }
        let verdict = if ok {
            self.failures = 0;
            Verdict::Healthy
        } else {
            self.failures += 1;
            if self.failures >= health.retries {
                // A graceful stop, then a start whatever the restart policy
                // (the supervisor's Event::Restart); probing starts over
                // with the new run.
                self.failures = 0;
                self.next_at = None;
                return Verdict::Restart {
                    retries: health.retries,
                };
            }
            Verdict::Unhealthy {
                failures: self.failures,
                retries: health.retries,
            }
        };
        self.next_at = Some(now + health.interval);
        verdict
    }

    /// When this schedule next needs the supervisor: a probe due, or a
    /// running probe's deadline.
    pub fn deadlines(&self) -> impl Iterator<Item = Instant> {
        [self.next_at, self.running.map(|(_, deadline)| deadline)]
            .into_iter()
            .flatten()
    }

    /// A command probe runs (its pid is still to be reaped).
    pub fn probe_running(&self) -> bool {
        self.running.is_some()
    }
}

/// A kind that is probed at an interval (a command, a TCP connection, an
/// HTTP GET), as opposed to one that tells by itself.
pub fn is_probed(check: &ReadyCheck) -> bool {
    matches!(check, ReadyCheck::Command(_) | ReadyCheck::Tcp(_) | ReadyCheck::Http(_))
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    const MS: Duration = Duration::from_millis(1);

    fn spec(check: ReadyCheck, retries: u32) -> Readiness {
        Readiness {
            check,
            interval: 100 * MS,
            timeout: 50 * MS,
            retries,
        }
    }

    fn command() -> ReadyCheck {
        ReadyCheck::Command(vec!["true".into()])
    }

    #[test]
    fn ready_at_once_schedules_the_first_health_probe_one_interval_later() {
        let t0 = Instant::now();
        let run = Some(Pid::from_raw(10));
        let mut s = ProbeSchedule::default();
        let health = spec(command(), 3);
        assert_eq!(
            s.on_run_started(&Readiness::started(), Some(&health), t0),
            Watch::ReadyNow
        );
        assert!(s.ready);
        assert_eq!(s.take_due(run, true, t0 + 99 * MS), None, "not yet");
        assert_eq!(
            s.take_due(run, true, t0 + 100 * MS),
            Some(Due {
                run: Pid::from_raw(10),
                health: true
            })
        );
        assert_eq!(
            s.take_due(run, true, t0 + 200 * MS),
            None,
            "taken: its result schedules the next"
        );
    }

    #[test]
    fn readiness_commands_retry_at_the_interval_then_give_up() {
        let t0 = Instant::now();
        let run = Some(Pid::from_raw(10));
        let readiness = spec(command(), 3);
        let mut s = ProbeSchedule::default();
        assert_eq!(s.on_run_started(&readiness, None, t0), Watch::Commands);
        // Table: (time, result) -> verdict, and whether a probe is due then.
        let steps = [
            (0u32, false, Verdict::NotYet),
            (100, false, Verdict::NotYet),
            (200, false, Verdict::GaveUp { probes: 3 }),
        ];
        for (at, ok, verdict) in steps {
            let now = t0 + at * MS;
            assert!(s.take_due(run, false, now).is_some(), "a probe is due at {at} ms");
            assert_eq!(s.on_result(ok, &readiness, None, true, now), verdict, "at {at} ms");
        }
        assert_eq!(
            s.take_due(run, false, t0 + 10_000 * MS),
            None,
            "given up: no more probes"
        );
        assert!(!s.ready);
    }

    #[test]
    fn a_passing_readiness_probe_makes_the_run_ready_and_starts_health_probing() {
        let t0 = Instant::now();
        let run = Some(Pid::from_raw(10));
        let readiness = spec(command(), 5);
        let health = spec(ReadyCheck::Tcp("127.0.0.1:1".into()), 2);
        let mut s = ProbeSchedule::default();
        s.on_run_started(&readiness, Some(&health), t0);
        assert!(s.take_due(run, true, t0).is_some());
        assert_eq!(s.on_result(false, &readiness, Some(&health), true, t0), Verdict::NotYet);
        let t1 = t0 + 100 * MS;
        assert_eq!(s.take_due(run, true, t1).map(|d| d.health), Some(false));
        assert_eq!(s.on_result(true, &readiness, Some(&health), true, t1), Verdict::Ready);
        assert_eq!(s.take_due(run, true, t1 + 100 * MS).map(|d| d.health), Some(true));
    }

    #[test]
    fn health_failures_in_a_row_restart_and_a_pass_resets_the_count() {
        let t0 = Instant::now();
        let readiness = Readiness::started();
        let health = spec(command(), 3);
        let mut s = ProbeSchedule::default();
        s.on_run_started(&readiness, Some(&health), t0);
        let steps = [
            (
                false,
                Verdict::Unhealthy {
                    failures: 1,
                    retries: 3,
                },
            ),
            (
                false,
                Verdict::Unhealthy {
                    failures: 2,
                    retries: 3,
                },
            ),
            (true, Verdict::Healthy),
            (
                false,
                Verdict::Unhealthy {
                    failures: 1,
                    retries: 3,
                },
            ),
            (
                false,
                Verdict::Unhealthy {
                    failures: 2,
                    retries: 3,
                },
            ),
            (false, Verdict::Restart { retries: 3 }),
        ];
        for (n, (ok, verdict)) in steps.into_iter().enumerate() {
            assert_eq!(
                s.on_result(ok, &readiness, Some(&health), true, t0),
                verdict,
                "step {n}"
            );
        }
        assert_eq!(s.deadlines().count(), 0, "a restart ends this run's probing");
    }

    #[test]
    fn health_of_a_service_being_stopped_does_not_count() {
        let t0 = Instant::now();
        let readiness = Readiness::started();
        let health = spec(command(), 1);
        let mut s = ProbeSchedule::default();
        s.on_run_started(&readiness, Some(&health), t0);
        assert_eq!(
            s.on_result(false, &readiness, Some(&health), false, t0),
            Verdict::Ignored
        );
        assert_eq!(s.deadlines().count(), 0, "and probing stops");
        let mut plain = ProbeSchedule::default();
        plain.on_run_started(&readiness, None, t0);
        assert_eq!(plain.on_result(false, &readiness, None, true, t0), Verdict::Ignored);
    }

    #[test]
    fn a_running_probe_holds_the_next_and_is_overdue_at_its_deadline() {
        let t0 = Instant::now();
        let run = Some(Pid::from_raw(10));
        let readiness = spec(command(), 5);
        let mut s = ProbeSchedule::default();
        s.on_run_started(&readiness, None, t0);
        assert!(s.take_due(run, false, t0).is_some());
        let probe = Pid::from_raw(20);
        s.on_probe_started(probe, t0 + 50 * MS);
        assert_eq!(s.overdue(t0 + 49 * MS), None);
        assert_eq!(s.overdue(t0 + 50 * MS), Some(probe));
        assert_eq!(s.deadlines().collect::<Vec<_>>(), [t0 + 50 * MS]);
        s.on_result(false, &readiness, None, true, t0 + 60 * MS);
        assert_eq!(
            s.take_due(run, false, t0 + 160 * MS),
            None,
            "the last probe is not reaped yet"
        );
        s.on_probe_exited(Pid::from_raw(99));
        assert!(s.probe_running(), "another pid changes nothing");
        s.on_probe_exited(probe);
        assert!(s.take_due(run, false, t0 + 160 * MS).is_some());
    }

    #[test]
    fn no_run_no_probe_and_a_new_run_starts_over() {
        let t0 = Instant::now();
        let readiness = spec(command(), 2);
        let mut s = ProbeSchedule::default();
        s.on_run_started(&readiness, None, t0);
        s.on_result(false, &readiness, None, true, t0);
        s.on_run_ended();
        assert_eq!(s.take_due(None, false, t0 + 100 * MS), None);
        assert_eq!(s.deadlines().count(), 0);
        s.on_run_started(&readiness, None, t0 + 200 * MS);
        assert!(s.take_due(Some(Pid::from_raw(11)), false, t0 + 200 * MS).is_some());
        assert_eq!(
            s.on_result(false, &readiness, None, true, t0 + 200 * MS),
            Verdict::NotYet,
            "the failure count started over"
        );
    }

    #[test]
    fn tasks_watch_the_other_kinds() {
        let t0 = Instant::now();
        for (check, watch) in [
            (ReadyCheck::Tcp("127.0.0.1:1".into()), Watch::Task),
            (ReadyCheck::Http(http()), Watch::Task),
            (ReadyCheck::SdNotify, Watch::Task),
            (ReadyCheck::NotificationFd(3), Watch::Task),
            (log_line(), Watch::Output),
        ] {
            let mut s = ProbeSchedule::default();
            assert_eq!(s.on_run_started(&spec(check.clone(), 1), None, t0), watch, "{check:?}");
            assert!(!s.ready);
            assert_eq!(s.deadlines().count(), 0, "{check:?}: nothing scheduled");
        }
    }

    fn http() -> crate::http_probe::HttpUrl {
        crate::http_probe::HttpUrl::parse("http://127.0.0.1:1/", &|_| false).unwrap()
    }

    fn log_line() -> ReadyCheck {
        ReadyCheck::LogLine(crate::config::LinePattern::new("OutOfMemoryError").unwrap())
    }

    #[test]
    fn an_http_health_check_is_probed_and_a_log_line_one_is_not() {
        let t0 = Instant::now();
        let run = Some(Pid::from_raw(10));
        for (check, probed) in [(ReadyCheck::Http(http()), true), (log_line(), false)] {
            let health = spec(check.clone(), 3);
            let mut s = ProbeSchedule::default();
            s.on_run_started(&Readiness::started(), Some(&health), t0);
            let due = s.take_due(run, true, t0 + 100 * MS);
            assert_eq!(due.is_some(), probed, "{check:?}");
            assert_eq!(s.deadlines().count(), 0, "{check:?}: taken, or never scheduled");
        }
    }

    #[test]
    fn log_line_health_restarts_after_retries_matches_each_within_an_interval() {
        let t0 = Instant::now();
        let health = spec(log_line(), 3); // interval 100 ms
        let unhealthy = |failures| Verdict::Unhealthy { failures, retries: 3 };
        // (ms since ready, probing) -> verdict
        let steps = [
            (10, true, unhealthy(1)),
            (60, true, unhealthy(2)),
            // A quiet interval since the last match: the count starts over.
            (200, true, unhealthy(1)),
            (250, true, unhealthy(2)),
            (340, true, Verdict::Restart { retries: 3 }),
            // Counted afresh after a restart (the new run's matches).
            (350, true, unhealthy(1)),
            // A service being stopped on purpose is never restarted.
            (360, false, Verdict::Ignored),
            (370, true, unhealthy(2)),
        ];
        let mut s = ProbeSchedule::default();
        s.on_run_started(&Readiness::started(), Some(&health), t0);
        for (at, probing, verdict) in steps {
            assert_eq!(s.on_line_matched(&health, probing, t0 + at * MS), verdict, "at {at} ms");
        }
        assert_eq!(s.deadlines().count(), 0, "no timer for a log-line check");
        // Before the run is ready, health has not begun: nothing counts.
        let mut s = ProbeSchedule::default();
        s.on_run_started(&spec(command(), 5), Some(&health), t0);
        assert_eq!(s.on_line_matched(&health, true, t0), Verdict::Ignored);
        // Retries of 1: the first match restarts.
        let once = spec(log_line(), 1);
        let mut s = ProbeSchedule::default();
        s.on_run_started(&Readiness::started(), Some(&once), t0);
        assert_eq!(s.on_line_matched(&once, true, t0), Verdict::Restart { retries: 1 });
    }
}
