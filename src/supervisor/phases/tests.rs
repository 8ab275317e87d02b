//! The phase machine as tables: each step given where the units stand.
//!
//! Test code only: `phases.rs` declares this module `#[cfg(test)]`.

use std::time::Duration;

use super::*;
use crate::service::{Event, RestartPolicy};
use crate::spawn::Launch;
use crate::supervisor::testing::{exit, policy, service, start};
use crate::supervisor::units::Unit;

const SECOND: Duration = Duration::from_secs(1);

fn settings(kill_all: KillAll) -> Settings {
    Settings {
        hook_timeout: 10 * SECOND,
        shutdown_delay: Duration::ZERO,
        kill_all,
        kill_all_grace: 5 * SECOND,
    }
}

/// A unit that runs once (a script, a hook, the main command), down.
fn once(name: &str, kind: Kind) -> Unit {
    let mut p = policy();
    p.restart = RestartPolicy::Never;
    Unit::new(name.to_owned(), kind, Launch::program(vec![name.into()]), None, p)
}

fn path(name: &str) -> PathBuf {
    PathBuf::from(name)
}

#[test]
fn startup_scripts_run_one_at_a_time_and_the_environment_is_reread_after_each() {
    let t0 = Instant::now();
    let mut units = Units::default();
    let mut phases = Phases::new(settings(KillAll::Namespace));
    phases.boot(vec![path("10_a"), path("20_b")]);
    assert_eq!(phases.name(), "booting");
    assert_eq!(phases.next(&units, false, t0), Step::RunScript(path("10_a")));
    let a = units.add(once("10_a", Kind::Startup), |_, _| false);
    phases.started(a);
    start(&mut units, a, 10, t0);
    assert_eq!(phases.next(&units, false, t0), Step::Wait, "10_a runs");
    exit(&mut units, a, 0, t0);
    assert_eq!(phases.next(&units, false, t0), Step::ReloadEnv);
    assert_eq!(phases.next(&units, false, t0), Step::RunScript(path("20_b")));
    let b = units.add(once("20_b", Kind::Startup), |_, _| false);
    phases.started(b);
    start(&mut units, b, 11, t0);
    exit(&mut units, b, 0, t0);
    assert_eq!(phases.next(&units, false, t0), Step::ReloadEnv);
    assert_eq!(phases.next(&units, false, t0), Step::StartServices);
    assert!(phases.is_running());
    assert_eq!(phases.next(&units, false, t0), Step::Wait);
    assert_eq!(phases.outcome(&units), Outcome::Stopped, "no main command");
}

#[test]
fn a_failed_startup_script_aborts_the_boot() {
    let t0 = Instant::now();
    for code in [1, -1] {
        let mut units = Units::default();
        let mut phases = Phases::new(settings(KillAll::Namespace));
        phases.boot(vec![path("10_a"), path("20_b")]);
        assert_eq!(phases.next(&units, false, t0), Step::RunScript(path("10_a")));
        let a = units.add(once("10_a", Kind::Startup), |_, _| false);
        phases.started(a);
        if code < 0 {
            // It could not be started at all.
            units[a].life.on(Event::Up, t0);
            units[a].life.on(Event::SpawnFailed, t0);
        } else {
            start(&mut units, a, 10, t0);
            exit(&mut units, a, code, t0);
        }
        assert_eq!(
            phases.next(&units, false, t0),
            Step::ListHooks(HookStage::Pre),
            "code {code}"
        );
        assert_eq!(phases.outcome(&units), Outcome::BootFailed);
        assert_eq!(phases.stop_started(), Some(t0));
    }
}

#[test]
fn the_whole_shutdown_in_order_hooks_stop_hooks_kill_all_done() {
    let t0 = Instant::now();
    let mut units = Units::default();
    let web = units.add(service("web"), |_, _| false);
    start(&mut units, web, 10, t0);
    let mut phases = Phases::new(settings(KillAll::Namespace));
    assert!(phases.begin_shutdown(StopReason::Signal(Signal::SIGTERM), t0));
    assert!(
        !phases.begin_shutdown(StopReason::MainExited, t0),
        "one shutdown at a time"
    );
    assert_eq!(phases.next(&units, false, t0), Step::ListHooks(HookStage::Pre));
    assert_eq!(
        phases.next(&units, false, t0),
        Step::ListHooks(HookStage::Pre),
        "until they are listed"
    );
    phases.hooks_listed(vec![path("pre")]);
    assert_eq!(phases.next(&units, false, t0), Step::RunHook(path("pre")));
    let hook = units.add(once("pre", Kind::Hook), |_, _| false);
    phases.started(hook);
    start(&mut units, hook, 11, t0);
    assert_eq!(phases.next(&units, false, t0), Step::Wait, "the hook runs");
    assert_eq!(phases.deadline(&units), Some(t0 + 10 * SECOND), "the hook budget");
    exit(&mut units, hook, 1, t0);
    assert_eq!(
        phases.next(&units, false, t0),
        Step::StopUnits,
        "a failed hook does not stop the shutdown"
    );
    let Phase::Stopping(plan) = *phases.phase() else {
        panic!("not stopping: {:?}", phases.phase());
    };
    assert_eq!(
        plan.services_by,
        t0 + SECOND + KILL_WAIT,
        "web's stop timeout and kill wait"
    );
    assert_eq!(phases.next(&units, false, t0), Step::Wait, "web still runs");
    units[web].life.on(Event::Down, t0);
    exit(&mut units, web, 0, t0);
    let t1 = t0 + SECOND;
    assert_eq!(phases.next(&units, false, t1), Step::ListHooks(HookStage::Post));
    phases.hooks_listed(Vec::new());
    assert_eq!(phases.next(&units, false, t1), Step::KillAll(Signal::SIGTERM));
    assert_eq!(phases.next(&units, false, t1), Step::Wait, "children are left");
    assert_eq!(phases.deadline(&units), Some(t1 + 5 * SECOND), "the kill-all's grace");
    assert_eq!(phases.next(&units, true, t1), Step::Wait);
    assert!(phases.is_done());
    assert_eq!(phases.outcome(&units), Outcome::Stopped);
}

#[test]
fn without_a_kill_all_the_post_hooks_end_it() {
    let t0 = Instant::now();
    let units = Units::default();
    let mut phases = Phases::new(settings(KillAll::Off));
    phases.begin_shutdown(StopReason::Signal(Signal::SIGINT), t0);
    phases.hooks_listed(Vec::new());
    assert_eq!(phases.next(&units, false, t0), Step::StopUnits);
    assert_eq!(phases.next(&units, false, t0), Step::ListHooks(HookStage::Post));
    phases.hooks_listed(Vec::new());
    assert_eq!(phases.next(&units, false, t0), Step::Wait);
    assert!(phases.is_done());
}

#[test]
fn hooks_past_their_budget_are_skipped_and_a_running_one_is_stopped() {
    let t0 = Instant::now();
    let mut units = Units::default();
    let mut phases = Phases::new(settings(KillAll::Namespace));
    phases.begin_shutdown(StopReason::Signal(Signal::SIGTERM), t0);
    phases.hooks_listed(vec![path("slow"), path("never")]);
    assert_eq!(phases.next(&units, false, t0), Step::RunHook(path("slow")));
    let slow = units.add(once("slow", Kind::Hook), |_, _| false);
    phases.started(slow);
    start(&mut units, slow, 10, t0);
    let late = t0 + 10 * SECOND;
    assert_eq!(phases.on_deadline(&units, late - SECOND), None, "within its budget");
    assert_eq!(phases.on_deadline(&units, late), Some(Expired::StopHook(slow)));
    units[slow].life.on(Event::Down, late);
    assert_eq!(
        phases.deadline(&units),
        None,
        "told to stop: only its own deadlines count"
    );
    assert_eq!(phases.on_deadline(&units, late), None, "once");
    exit(&mut units, slow, 0, late);
    assert_eq!(phases.next(&units, false, late), Step::StopUnits, "`never` is skipped");
}

#[test]
fn a_stop_that_cannot_finish_gives_up_at_the_plans_end() {
    let t0 = Instant::now();
    let mut units = Units::default();
    let stuck = units.add(service("stuck"), |_, _| false);
    start(&mut units, stuck, 10, t0);
    let mut phases = Phases::new(settings(KillAll::Namespace));
    phases.begin_shutdown(StopReason::Signal(Signal::SIGTERM), t0);
    phases.hooks_listed(Vec::new());
    assert_eq!(phases.next(&units, false, t0), Step::StopUnits);
    let by = match phases.phase() {
        Phase::Stopping(plan) => plan.services_by,
        other => panic!("{other:?}"),
    };
    assert_eq!(phases.deadline(&units), Some(by));
    assert_eq!(phases.next(&units, false, by - Duration::from_millis(1)), Step::Wait);
    assert_eq!(
        phases.next(&units, false, by),
        Step::ListHooks(HookStage::Post),
        "moving on"
    );
}

#[test]
fn the_kill_all_sends_sigkill_after_its_grace_then_gives_up() {
    let t0 = Instant::now();
    let units = Units::default();
    let mut phases = Phases::new(settings(KillAll::Namespace));
    phases.begin_shutdown(StopReason::Signal(Signal::SIGTERM), t0);
    phases.hooks_listed(Vec::new());
    assert_eq!(phases.next(&units, false, t0), Step::StopUnits);
    assert_eq!(phases.next(&units, false, t0), Step::ListHooks(HookStage::Post));
    phases.hooks_listed(Vec::new());
    assert_eq!(phases.next(&units, false, t0), Step::KillAll(Signal::SIGTERM));
    assert_eq!(phases.kill_all_signal(), Some(Signal::SIGTERM));
    let grace = t0 + 5 * SECOND;
    assert_eq!(phases.on_deadline(&units, grace - SECOND), None);
    assert_eq!(
        phases.on_deadline(&units, grace),
        Some(Expired::KillAll(Signal::SIGKILL))
    );
    assert_eq!(phases.deadline(&units), Some(grace + KILL_WAIT));
    assert_eq!(
        phases.on_deadline(&units, grace + KILL_WAIT),
        None,
        "survivors: exit anyway"
    );
    assert!(phases.is_done());
}

#[test]
fn the_main_command_waits_for_the_services_then_its_end_stops_the_container() {
    let t0 = Instant::now();
    let mut units = Units::default();
    let db = units.add(service("db"), |_, _| false);
    let main = units.add(once("main command job", Kind::Main), |_, _| false);
    let mut phases = Phases::new(settings(KillAll::Namespace));
    assert!(!phases.main_added(main, Some(Some(5 * SECOND)), t0), "it waits");
    start(&mut units, db, 10, t0);
    assert_eq!(phases.next(&units, false, t0), Step::Wait, "db is not ready");
    assert_eq!(phases.deadline(&units), Some(t0 + 5 * SECOND));
    units[db].probe.ready = true;
    assert_eq!(phases.next(&units, false, t0), Step::StartMain);
    start(&mut units, main, 11, t0);
    assert_eq!(phases.next(&units, false, t0), Step::Wait);
    exit(&mut units, main, 7, t0);
    assert_eq!(phases.next(&units, false, t0), Step::ListHooks(HookStage::Pre));
    assert_eq!(phases.outcome(&units), Outcome::MainCommand(ExitStatus::Exited(7)));
}

#[test]
fn services_not_ready_by_the_deadline_fail_the_boot() {
    let t0 = Instant::now();
    let mut units = Units::default();
    let db = units.add(service("db"), |_, _| false);
    let main = units.add(once("main command job", Kind::Main), |_, _| false);
    let mut phases = Phases::new(settings(KillAll::Namespace));
    phases.main_added(main, Some(Some(5 * SECOND)), t0);
    start(&mut units, db, 10, t0);
    assert_eq!(
        phases.next(&units, false, t0 + 5 * SECOND),
        Step::ListHooks(HookStage::Pre)
    );
    assert_eq!(phases.outcome(&units), Outcome::BootFailed);
}

#[test]
fn the_first_reason_decides_the_outcome() {
    let t0 = Instant::now();
    let mut units = Units::default();
    let core = units.add(service("core"), |_, _| false);
    start(&mut units, core, 10, t0);
    exit(&mut units, core, 3, t0);
    let mut phases = Phases::new(settings(KillAll::Namespace));
    phases.begin_shutdown(StopReason::ServiceEnded(core), t0);
    phases.begin_shutdown(StopReason::Signal(Signal::SIGTERM), t0);
    assert_eq!(phases.outcome(&units), Outcome::ServiceEnded(ExitStatus::Exited(3)));
    assert_eq!(phases.name(), "stopping");
}

fn delayed(delay: Duration) -> Settings {
    Settings {
        shutdown_delay: delay,
        ..settings(KillAll::Namespace)
    }
}

#[test]
fn a_stop_signal_keeps_the_services_running_for_the_delay_after_the_hooks() {
    let t0 = Instant::now();
    let mut units = Units::default();
    let web = units.add(service("web"), |_, _| false);
    start(&mut units, web, 10, t0);
    let mut phases = Phases::new(delayed(3 * SECOND));
    assert!(phases.begin_shutdown(StopReason::Signal(Signal::SIGTERM), t0));
    assert_eq!(phases.name(), "stopping", "unhealthy from the signal on");
    assert_eq!(phases.next(&units, false, t0), Step::ListHooks(HookStage::Pre));
    phases.hooks_listed(vec![path("pre")]);
    assert_eq!(
        phases.next(&units, false, t0),
        Step::RunHook(path("pre")),
        "the hooks first"
    );
    let hook = units.add(once("pre", Kind::Hook), |_, _| false);
    phases.started(hook);
    start(&mut units, hook, 11, t0);
    let t1 = t0 + SECOND;
    exit(&mut units, hook, 0, t1);
    assert_eq!(
        phases.next(&units, false, t1),
        Step::Wait,
        "the delay, from the hooks' end"
    );
    assert!(matches!(phases.phase(), Phase::Delay { .. }), "{:?}", phases.phase());
    assert!(phases.is_shutting_down() && !phases.is_running());
    assert_eq!(phases.name(), "stopping");
    assert_eq!(
        phases.deadline(&units),
        Some(t1 + 3 * SECOND),
        "one deadline, no polling"
    );
    let end = t1 + 3 * SECOND;
    assert_eq!(phases.on_deadline(&units, end - Duration::from_millis(1)), None);
    assert_eq!(phases.next(&units, false, end - Duration::from_millis(1)), Step::Wait);
    assert_eq!(
        phases.next(&units, false, end),
        Step::StopUnits,
        "then the stop as ever"
    );
    let Phase::Stopping(plan) = *phases.phase() else {
        panic!("not stopping: {:?}", phases.phase());
    };
    assert_eq!(plan.shutdown_delay, 3 * SECOND, "in the budget");
    assert_eq!(
        plan.worst_case(),
        3 * SECOND + 2 * (10 * SECOND + KILL_WAIT) + (SECOND + KILL_WAIT) + (5 * SECOND + KILL_WAIT)
    );
}

/// Only a stop signal while running waits: a stop of the container's own
/// making, or during the boot, goes straight on.
#[test]
fn which_stops_wait_the_delay() {
    let t0 = Instant::now();
    let mut units = Units::default();
    let core = units.add(service("core"), |_, _| false);
    let table = [
        (StopReason::Signal(Signal::SIGTERM), false, true),
        (StopReason::Signal(Signal::SIGINT), false, true),
        (StopReason::Signal(Signal::SIGTERM), true, false),
        (StopReason::MainExited, false, false),
        (StopReason::ServiceEnded(core), false, false),
        (StopReason::BootFailed, false, false),
        (StopReason::BootFailed, true, false),
    ];
    for (reason, booting, waits) in table {
        let mut phases = Phases::new(delayed(2 * SECOND));
        if booting {
            phases.boot(vec![path("10_a")]);
        }
        phases.begin_shutdown(reason, t0);
        phases.hooks_listed(Vec::new());
        let step = phases.next(&units, false, t0);
        let expected = if waits { Step::Wait } else { Step::StopUnits };
        assert_eq!(step, expected, "{reason:?}, booting: {booting}");
        if waits {
            assert_eq!(phases.deadline(&units), Some(t0 + 2 * SECOND), "{reason:?}");
        } else {
            let phase = phases.phase();
            assert!(
                matches!(phase, Phase::Stopping(_)),
                "{reason:?}, booting: {booting}: {phase:?}"
            );
        }
    }
}

/// A second stop signal: (when it comes, whether it cut a delay, the step
/// that follows at once).
#[test]
fn a_second_signal_cuts_the_delay_short_or_skips_it() {
    let t0 = Instant::now();
    let t1 = t0 + SECOND;
    let units = Units::default();
    #[derive(Debug)]
    enum When {
        DuringTheDelay,
        DuringTheHooks,
        WithoutADelay,
        DuringTheStop,
    }
    let table = [
        (When::DuringTheDelay, true, Step::StopUnits),
        (When::DuringTheHooks, true, Step::StopUnits),
        (When::WithoutADelay, false, Step::StopUnits),
        (When::DuringTheStop, false, Step::ListHooks(HookStage::Post)),
    ];
    for (when, cuts, then) in table {
        let delay = match when {
            When::WithoutADelay => Duration::ZERO,
            _ => 30 * SECOND,
        };
        let mut phases = Phases::new(delayed(delay));
        phases.begin_shutdown(StopReason::Signal(Signal::SIGTERM), t0);
        match when {
            When::DuringTheDelay => {
                phases.hooks_listed(Vec::new());
                assert_eq!(phases.next(&units, false, t0), Step::Wait);
            }
            When::DuringTheStop => {
                phases.hooks_listed(Vec::new());
                assert_eq!(phases.next(&units, false, t0), Step::Wait);
                phases.cut_delay(t0);
                assert_eq!(phases.next(&units, false, t0), Step::StopUnits);
            }
            When::DuringTheHooks | When::WithoutADelay => {}
        }
        assert_eq!(phases.cut_delay(t1), cuts, "{when:?}");
        phases.hooks_listed(Vec::new());
        assert_eq!(phases.next(&units, false, t1), then, "{when:?}");
        assert!(!phases.cut_delay(t1), "{when:?}: once");
    }
}

#[test]
fn a_main_command_waiting_for_the_services_has_no_deadline_once_stopping() {
    let t0 = Instant::now();
    let mut units = Units::default();
    let db = units.add(service("db"), |_, _| false);
    let main = units.add(once("main command job", Kind::Main), |_, _| false);
    start(&mut units, db, 10, t0);
    let mut phases = Phases::new(delayed(30 * SECOND));
    phases.main_added(main, Some(Some(5 * SECOND)), t0);
    assert_eq!(phases.deadline(&units), Some(t0 + 5 * SECOND));
    phases.begin_shutdown(StopReason::Signal(Signal::SIGTERM), t0);
    phases.hooks_listed(Vec::new());
    assert_eq!(phases.next(&units, false, t0), Step::Wait);
    assert_eq!(
        phases.deadline(&units),
        Some(t0 + 30 * SECOND),
        "the delay's end only: a passed wait would wake the loop again and again"
    );
}
