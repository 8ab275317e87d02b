//! Scenarios of `log-line` readiness and health: what the output reader's
//! reports (a ready run, a matching line) do to the order and to a running
//! service. The reader itself is tested in `output::watch`, and end to end
//! in `tests/readiness.rs`.
//!
//! Test code only: `scenarios.rs` is `#[cfg(test)]`.

use super::*;

impl World {
    /// Service `name`'s unit and the pid of its run.
    fn run_of(&mut self, name: &str) -> (super::super::UnitId, Pid) {
        let id = self.sup.units.by_name(name).expect("a unit");
        let pid = self.fake().pid_of(name).expect("a run");
        (id, pid)
    }
}

#[tokio::test]
async fn a_log_line_service_is_ready_when_its_reader_says_so_and_not_before() {
    let mut w = World::boot(
        |t| {
            service(t, "db", "[ready]\nlog-line = \"listening\"\n");
            service(t, "app", "after = [\"db\"]");
        },
        |_| {},
    );
    assert_eq!(w.started(), ["db"], "no probe is started for a log-line");
    let (db, pid) = w.run_of("db");
    assert_eq!(w.sup.line_watches(db, pid).len(), 1, "its run's reader watches");
    w.wait(Duration::from_secs(60));
    assert_eq!(w.state("app"), "waiting", "however long it takes");
    w.sup.on_ready(db, pid, w.now);
    w.settle();
    assert_eq!(w.started(), ["db", "app"]);
    // A report about an earlier run counts for nothing.
    w.exit("db", 1);
    let (_, new) = w.run_of("db");
    w.sup.on_ready(db, pid, w.now);
    assert!(!w.sup.units[db].probe.ready, "the old run's report");
    w.sup.on_ready(db, new, w.now);
    assert!(w.sup.units[db].probe.ready);
    // Neither finish nor a probe nor app (no log-line) is watched.
    let (app, app_pid) = w.run_of("app");
    assert!(w.sup.line_watches(app, app_pid).is_empty());
}

#[tokio::test]
async fn matching_lines_close_together_restart_the_service_and_quiet_resets_the_count() {
    let mut w = World::boot(
        |t| {
            service(
                t,
                "web",
                "[health]\nlog-line = \"OutOfMemoryError\"\ninterval = \"1s\"\nretries = 2\n",
            )
        },
        |_| {},
    );
    let (web, pid) = w.run_of("web");
    assert_eq!(w.sup.line_watches(web, pid).len(), 1);
    // The first match: one failure of two.
    w.sup.probe_result(web, pid, false, w.now);
    w.wait(Duration::from_secs(2));
    // A quiet second since: counted afresh, still one of two.
    w.sup.probe_result(web, pid, false, w.now);
    assert!(w.signals_to("web").is_empty());
    w.wait(Duration::from_millis(500));
    w.sup.probe_result(web, pid, false, w.now);
    w.settle();
    // A graceful stop (the fake ends at SIGTERM), then a start.
    assert_eq!(w.signals_to("web"), [Signal::SIGTERM], "two within a second: restarted");
    assert_eq!(w.started(), ["web", "web"]);
    let (_, new) = w.run_of("web");
    assert_ne!(new, pid);
    // The old run's lines (its reader may still be reading) count for nothing.
    w.sup.probe_result(web, pid, false, w.now);
    w.sup.probe_result(web, pid, false, w.now);
    assert_eq!(w.signals_to("web"), [Signal::SIGTERM]);
}
