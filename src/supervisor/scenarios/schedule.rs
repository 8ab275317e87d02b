//! Scenarios of scheduled services (`schedule` in service.toml): runs at
//! their times on the fake clock, overlaps skipped or queued, `sv once`,
//! `sv down` and `sv up`, a stop during a run, health after a failed run.
//!
//! Test code only: `scenarios.rs` is `#[cfg(test)]`. The fake's real time
//! starts at 2025-01-01T00:00:00.250Z and moves with the loop's clock.

use super::*;

use crate::status::ScheduleStatus;

/// Every 2 s, on even seconds.
const EVERY_2S: &str = "schedule = \"*/2 * * * * *\"";

impl World {
    /// Service `name`'s schedule as `status` shows it.
    fn schedule_of(&self, name: &str) -> ScheduleStatus {
        self.sup
            .snapshot(self.now)
            .services
            .into_iter()
            .find(|s| s.name == name)
            .and_then(|s| s.schedule)
            .unwrap_or_else(|| panic!("{name} has no schedule"))
    }

    /// How many times `name` was started.
    fn starts(&self, name: &str) -> usize {
        self.started().iter().filter(|n| **n == name).count()
    }

    fn health_now(&self) -> Result<(), Vec<String>> {
        self.sup.snapshot(self.now).health()
    }
}

#[tokio::test]
async fn a_job_runs_at_its_times_and_is_scheduled_not_down_between_them() {
    let mut w = World::boot(
        |t| {
            service(t, "job", EVERY_2S);
            service(t, "web", "");
        },
        |_| {},
    );
    assert_eq!(w.started(), ["web"], "not at boot");
    assert_eq!(w.state("job"), "scheduled");
    let shown = w.schedule_of("job");
    assert_eq!(shown.next_run.as_deref(), Some("2025-01-01T00:00:02Z"));
    assert_eq!(
        (shown.expression.as_str(), shown.time_zone.as_str()),
        ("*/2 * * * * *", "UTC")
    );
    assert_eq!(shown.last_run_start, None);
    assert_eq!(w.health_now(), Ok(()), "a job waiting for its time is not a problem");

    // The deadline is the due time itself: 1.75 s after boot, not a tick.
    assert_eq!(w.sup.next_wake(), Some(w.now + Duration::from_millis(1750)));
    w.wait(Duration::from_millis(1749));
    assert!(!w.running("job"));
    w.wait(Duration::from_millis(1));
    assert!(w.running("job"), "at 00:00:02");
    assert_eq!(w.state("job"), "run");
    let shown = w.schedule_of("job");
    assert_eq!(shown.last_run_start.as_deref(), Some("2025-01-01T00:00:02.000Z"));
    assert_eq!(shown.next_run.as_deref(), Some("2025-01-01T00:00:04Z"));
    w.exit("job", 0);
    assert_eq!(w.state("job"), "scheduled", "never restarted");
    assert_eq!(w.starts("job"), 1);
    w.wait(Duration::from_secs(2));
    assert_eq!(w.starts("job"), 2, "at 00:00:04");
    w.exit("job", 3);
    assert_eq!(w.state("job"), "scheduled", "a failed run is not restarted either");
    let snapshot = w.sup.snapshot(w.now);
    let job = snapshot.services.iter().find(|s| s.name == "job").expect("job");
    assert_eq!(job.last_exit, Some(crate::status::LastExit::Code(3)));
    assert!(!job.expected_up);
    assert_eq!(job.schedule.as_ref().map(|s| s.runs), Some(2));
    // Ignored by default: a failed run does not make health unhealthy.
    assert_eq!(w.health_now(), Ok(()));
}

#[tokio::test]
async fn a_run_still_going_at_the_next_time_skips_it() {
    let mut w = World::boot(|t| service(t, "job", EVERY_2S), |_| {});
    w.wait(Duration::from_millis(1750));
    assert!(w.running("job"));
    // It takes 3 s: the time at 00:00:04 finds it running.
    w.wait(Duration::from_secs(2));
    assert_eq!(w.starts("job"), 1, "no second run beside the first");
    assert_eq!(w.schedule_of("job").skipped, 1);
    w.wait(Duration::from_secs(1));
    w.exit("job", 0);
    assert_eq!(w.starts("job"), 1, "the skipped run is not made up for");
    w.wait(Duration::from_secs(1));
    assert_eq!(w.starts("job"), 2, "the next time after it, 00:00:06");
}

#[tokio::test]
async fn with_overlap_queue_one_run_waits_and_starts_when_the_current_one_ends() {
    let mut w = World::boot(
        |t| service(t, "job", &format!("{EVERY_2S}\noverlap = \"queue\"")),
        |_| {},
    );
    w.wait(Duration::from_millis(1750));
    w.wait(Duration::from_secs(2));
    assert!(w.schedule_of("job").queued);
    w.wait(Duration::from_secs(2));
    assert_eq!(
        w.schedule_of("job").skipped,
        1,
        "at most one waits: 00:00:06 is skipped"
    );
    assert_eq!(w.starts("job"), 1);
    w.exit("job", 0);
    assert_eq!(w.starts("job"), 2, "back to back");
    assert!(w.running("job"));
    assert!(!w.schedule_of("job").queued);
    let shown = w.schedule_of("job");
    assert_eq!(shown.last_run_start.as_deref(), Some("2025-01-01T00:00:06.000Z"));
}

#[tokio::test]
async fn sv_once_runs_it_now_and_sv_down_and_up_turn_its_times_off_and_on() {
    let mut w = World::boot(|t| service(t, "job", "schedule = \"@hourly\""), |_| {});
    assert_eq!(w.schedule_of("job").next_run.as_deref(), Some("2025-01-01T01:00:00Z"));
    w.sv("job", b'o');
    assert!(w.running("job"), "sv once: now");
    w.sv("job", b'o');
    assert_eq!(w.starts("job"), 1, "not a second one beside it");
    w.exit("job", 0);
    assert_eq!(w.state("job"), "scheduled");
    w.sv("job", b'd');
    assert_eq!(w.state("job"), "down");
    assert_eq!(w.schedule_of("job").next_run, None);
    w.wait(Duration::from_secs(7200));
    assert_eq!(w.starts("job"), 1, "no run while down");
    w.sv("job", b'u');
    assert_eq!(w.state("job"), "scheduled");
    assert!(!w.running("job"), "sv up turns its times on, it does not run it");
    assert_eq!(w.schedule_of("job").next_run.as_deref(), Some("2025-01-01T03:00:00Z"));
    // sv down during a run stops it like any service, and drops what waits.
    w.sv("job", b'o');
    w.sv("job", b'd');
    assert!(!w.running("job"));
    assert_eq!(
        w.signals_to("job"),
        [Signal::SIGTERM],
        "its stop signal (the fake dies of it)"
    );
    assert_eq!(w.state("job"), "down");
}

#[tokio::test]
async fn a_down_file_keeps_its_times_off_until_sv_up() {
    let mut w = World::boot(
        |t| {
            service(t, "job", EVERY_2S);
            fs::write(t.join("service/job/down"), "").expect("down");
        },
        |_| {},
    );
    assert_eq!(w.state("job"), "down");
    w.wait(Duration::from_secs(10));
    assert_eq!(w.starts("job"), 0);
    w.sv("job", b'u');
    w.wait(Duration::from_secs(2));
    assert_eq!(w.starts("job"), 1);
}

#[tokio::test]
async fn a_stop_during_a_run_stops_it_with_its_signal_and_timeout() {
    let mut w = World::boot(
        |t| {
            service(
                t,
                "job",
                &format!("{EVERY_2S}\nstop-signal = \"SIGINT\"\nstop-timeout = \"3s\""),
            )
        },
        |_| {},
    );
    w.fake().stubborn.insert("job".into());
    w.wait(Duration::from_millis(1750));
    w.stop();
    assert_eq!(w.signals_to("job"), [Signal::SIGINT, Signal::SIGCONT]);
    assert!(w.running("job"), "SIGINT does not end the fake");
    w.wait(Duration::from_millis(2999));
    assert!(w.running("job"));
    w.wait(Duration::from_millis(1));
    assert!(!w.running("job"), "SIGKILL at its stop timeout");
    assert_eq!(w.signals_to("job").last(), Some(&Signal::SIGKILL));
    w.wait(Duration::from_secs(10));
    assert_eq!(w.starts("job"), 1, "no time starts a run during the stop");
    assert!(w.sup.phases.is_done());
    assert_eq!(w.sup.phases.outcome(&w.sup.units), Outcome::Stopped);
}

#[tokio::test]
async fn on_failed_run_unhealthy_holds_until_a_run_succeeds() {
    let mut w = World::boot(
        |t| {
            service(
                t,
                "job",
                &format!("{EVERY_2S}\n[health]\non-failed-run = \"unhealthy\""),
            )
        },
        |_| {},
    );
    w.wait(Duration::from_millis(1750));
    w.exit("job", 2);
    assert_eq!(
        w.health_now(),
        Err(vec!["job: its last run failed (code 2)".to_owned()])
    );
    w.wait(Duration::from_secs(2));
    assert!(w.health_now().is_err(), "still, while the next run goes");
    w.exit("job", 0);
    assert_eq!(w.health_now(), Ok(()));
}

#[tokio::test]
async fn a_job_that_cannot_start_is_a_failed_run_and_keeps_its_times() {
    let fake = Fake {
        missing: HashSet::from(["job".to_owned()]),
        ..Fake::default()
    };
    let mut w = World::boot_with(
        fake,
        |t| {
            service(
                t,
                "job",
                &format!("{EVERY_2S}\n[health]\non-failed-run = \"unhealthy\""),
            )
        },
        |_| {},
    );
    w.wait(Duration::from_millis(1750));
    assert_eq!(w.state("job"), "scheduled");
    assert_eq!(w.schedule_of("job").runs, 1);
    assert!(w.health_now().is_err());
    assert_eq!(w.schedule_of("job").next_run.as_deref(), Some("2025-01-01T00:00:04Z"));
    w.fake().missing.clear();
    w.wait(Duration::from_secs(2));
    assert!(w.running("job"));
}

#[tokio::test]
async fn a_changed_schedule_takes_over_after_a_rescan_and_the_old_one_starts_nothing() {
    let mut w = World::boot(|t| service(t, "job", EVERY_2S), |_| {});
    w.wait(Duration::from_millis(1750));
    assert!(w.running("job"));
    let root = w.sup.opts.service_dir.parent().expect("tree").to_owned();
    service(&root, "job", "schedule = \"@hourly\"");
    w.sup.rescan(w.now);
    w.settle();
    assert!(!w.running("job"), "stopped for its new definition");
    assert_eq!(w.schedule_of("job").expression, "@hourly");
    w.wait(Duration::from_secs(60));
    assert_eq!(w.starts("job"), 1, "the old times are gone");
    assert_eq!(w.state("job"), "scheduled");
    // And one turned off by `sv down` stays off in its new definition.
    w.sv("job", b'd');
    service(&root, "job", "schedule = \"@daily\"");
    w.sup.rescan(w.now);
    w.settle();
    assert_eq!(w.state("job"), "down");
    assert_eq!(w.schedule_of("job").expression, "@daily");
}
