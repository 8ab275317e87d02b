//! Scenarios of the stop's own settings: `--shutdown-delay` (the services
//! run on, unready, after the pre-shutdown hooks; a second signal ends it)
//! and `--main-stop-signal`.
//!
//! Test code only: `scenarios.rs` is `#[cfg(test)]`.

use super::*;

const DELAY: Duration = Duration::from_secs(5);

fn delayed(delay: Duration) -> impl FnOnce(&mut Options) {
    move |o| o.shutdown_delay = delay
}

impl World {
    fn health(&self) -> Result<(), Vec<String>> {
        self.sup.snapshot(self.now).health()
    }
}

#[tokio::test]
async fn a_stop_signal_runs_the_hooks_then_keeps_the_services_running_and_unready_for_the_delay() {
    let mut w = World::boot(
        |t| {
            script(t, "pre", "10_deregister");
            service(t, "web", "");
        },
        delayed(DELAY),
    );
    w.wait(Duration::from_secs(2));
    assert_eq!(w.health(), Ok(()));
    w.stop();
    assert_eq!(w.started(), ["web", "10_deregister"], "the hooks first");
    assert_eq!(w.sup.snapshot(w.now).phase, "stopping");
    assert_eq!(w.health(), Err(vec!["baseinit is stopping".to_owned()]), "at once");
    w.wait(Duration::from_secs(1));
    w.exit("10_deregister", 0);
    let delay_began = w.now;
    w.wait(DELAY - Duration::from_millis(1));
    assert!(w.running("web"), "web runs through the delay");
    assert!(w.signals_to("web").is_empty(), "{:?}", w.signals_to("web"));
    assert!(w.health().is_err(), "and stays unready");
    w.exit("web", 1);
    assert!(w.running("web"), "a service that falls over meanwhile comes back");
    assert_eq!(w.started(), ["web", "10_deregister", "web"]);
    w.wait(Duration::from_millis(1));
    assert_eq!(w.now - delay_began, DELAY);
    assert_eq!(w.signals_to("web"), [Signal::SIGTERM], "then the stop as ever");
    assert!(w.sup.phases.is_done());
    assert_eq!(w.sup.phases.outcome(&w.sup.units), Outcome::Stopped);
}

#[tokio::test]
async fn a_second_stop_signal_ends_the_delay_or_skips_it_during_the_hooks() {
    for during_the_hooks in [false, true] {
        let mut w = World::boot(
            |t| {
                script(t, "pre", "10_deregister");
                service(t, "web", "");
            },
            delayed(Duration::from_secs(30)),
        );
        w.stop();
        if !during_the_hooks {
            w.exit("10_deregister", 0);
        }
        w.wait(Duration::from_secs(1));
        assert!(w.running("web"));
        w.sup.on_stop_signal(Signal::SIGINT, w.now);
        w.settle();
        if during_the_hooks {
            assert!(w.running("web"), "the hook still runs");
            w.exit("10_deregister", 0);
        }
        assert!(!w.running("web"), "stopped at once (hooks: {during_the_hooks})");
        assert!(w.sup.phases.is_done(), "hooks: {during_the_hooks}");
    }
}

#[tokio::test]
async fn a_stop_of_the_containers_own_making_does_not_wait() {
    let mut w = World::boot(
        |t| service(t, "web", ""),
        |o| {
            o.shutdown_delay = Duration::from_secs(30);
            o.command = vec!["job".into()];
        },
    );
    w.exit("job", 0);
    assert!(!w.running("web"), "the main command's end stops it at once");
    assert!(w.sup.phases.is_done());
    assert_eq!(
        w.sup.phases.outcome(&w.sup.units),
        Outcome::MainCommand(ExitStatus::Exited(0))
    );
}

#[tokio::test]
async fn the_main_command_gets_its_own_stop_signal_and_the_services_theirs() {
    let mut w = World::boot(
        |t| {
            service(t, "web", "");
            service(t, "nginx", "stop-signal = \"SIGQUIT\"");
        },
        |o| {
            o.command = vec!["job".into()];
            o.main_stop_signal = Signal::SIGQUIT;
        },
    );
    w.stop();
    assert_eq!(w.signals_to("job"), [Signal::SIGQUIT, Signal::SIGCONT]);
    assert_eq!(w.signals_to("web"), [Signal::SIGTERM], "(dead before its SIGCONT)");
    assert_eq!(
        w.signals_to("nginx"),
        [Signal::SIGQUIT, Signal::SIGCONT],
        "its own stop-signal"
    );
    let job = w.fake().pid_of("job").expect("job runs until it handles SIGQUIT");
    w.fake().end(job, ExitStatus::Signaled(Signal::SIGQUIT as i32));
    w.exit("nginx", 0);
    assert!(w.sup.phases.is_done());
    let outcome = w.sup.phases.outcome(&w.sup.units);
    assert_eq!(outcome, Outcome::MainCommand(ExitStatus::Signaled(3)));
    assert_eq!(outcome.exit_code(), 131);
}
