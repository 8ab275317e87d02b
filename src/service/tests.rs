//! The lifecycle machine as tables: events in, actions and states out.
//!
//! Test code only: `mod.rs` declares this module `#[cfg(test)]`.

use super::*;

const MS: Duration = Duration::from_millis(1);

fn policy() -> Policy {
    Policy {
        restart: RestartPolicy::Always,
        backoff: Backoff {
            initial: 100 * MS,
            max: 1000 * MS,
            reset_after: 10_000 * MS,
        },
        stop_signal: Signal::SIGTERM,
        stop_timeout: 5000 * MS,
        finish_timeout: 2000 * MS,
        has_finish: false,
        drain_group: true,
        failure: FailurePolicy {
            max_restarts: 1000,
            ..FailurePolicy::DEFAULT
        },
        run_timeout: None,
    }
}

fn pid(n: i32) -> Pid {
    Pid::from_raw(n)
}

fn exited(code: i32, group_empty: bool) -> Event {
    Event::RunExited {
        status: ExitStatus::Exited(code),
        group_empty,
    }
}

fn sig(pgid: i32, signal: Signal, why: Why) -> Action {
    Action::SignalGroup {
        pgid: pid(pgid),
        signal,
        why,
    }
}

/// Runs `steps` of (milliseconds since t0, event, expected actions,
/// expected state as a function of t0) against a fresh machine.
#[allow(clippy::type_complexity)]
fn run_table(policy: Policy, steps: &[(u32, Event, Vec<Action>, &dyn Fn(Instant) -> State)]) -> Lifecycle {
    let t0 = Instant::now();
    let mut machine = Lifecycle::new(policy);
    for (i, (at, event, actions, state)) in steps.iter().enumerate() {
        let now = t0 + *at * MS;
        let got = machine.on(*event, now);
        assert_eq!(&got, actions, "step {i}: actions after {event:?}");
        assert_eq!(machine.state(), state(t0), "step {i}: state after {event:?}");
    }
    machine
}

#[test]
fn starts_runs_and_restarts_at_once_after_a_long_run() {
    let m = run_table(
        policy(),
        &[
            (0, Event::Up, vec![Action::StartRun], &|_| State::Starting),
            (0, Event::Spawned(pid(10)), vec![], &|t0| State::Running {
                pid: pid(10),
                since: t0,
            }),
            (
                20_000,
                exited(0, true),
                vec![Action::Restart { after: Duration::ZERO }, Action::StartRun],
                &|_| State::Starting,
            ),
        ],
    );
    assert_eq!(m.restarts(), 1);
    assert_eq!(m.last_exit().and_then(|e| e.status), Some(ExitStatus::Exited(0)));
}

#[test]
fn quick_deaths_back_off_exponentially_up_to_max() {
    let mut m = Lifecycle::new(policy());
    let t0 = Instant::now();
    let mut now = t0;
    m.on(Event::Up, now);
    let mut delays = Vec::new();
    for n in 0..6 {
        m.on(Event::Spawned(pid(100 + n)), now);
        now += 10 * MS;
        let actions = m.on(exited(1, true), now);
        let Some(Action::Restart { after }) = actions.first().copied() else {
            panic!("no restart in {actions:?}");
        };
        delays.push(after);
        assert_eq!(m.state(), State::Backoff { until: now + after });
        assert_eq!(m.on(Event::Tick, now + after - MS), vec![], "no start before the delay");
        now += after;
        assert_eq!(m.on(Event::Tick, now), vec![Action::StartRun]);
    }
    assert_eq!(delays, [100 * MS, 200 * MS, 400 * MS, 800 * MS, 1000 * MS, 1000 * MS]);
    assert_eq!(m.restarts(), 6);
}

#[test]
fn a_long_run_resets_the_backoff() {
    let mut m = Lifecycle::new(policy());
    let t0 = Instant::now();
    m.on(Event::Up, t0);
    m.on(Event::Spawned(pid(1)), t0);
    m.on(exited(1, true), t0 + MS); // quick death 1: 100 ms
    m.on(Event::Tick, t0 + 101 * MS);
    m.on(Event::Spawned(pid(2)), t0 + 101 * MS);
    let a = m.on(exited(1, true), t0 + 102 * MS); // quick death 2: 200 ms
    assert_eq!(a[0], Action::Restart { after: 200 * MS });
    m.on(Event::Tick, t0 + 302 * MS);
    m.on(Event::Spawned(pid(3)), t0 + 302 * MS);
    let a = m.on(exited(1, true), t0 + 20_000 * MS); // ran 19.7 s
    assert_eq!(a, vec![Action::Restart { after: Duration::ZERO }, Action::StartRun]);
    m.on(Event::Spawned(pid(4)), t0 + 20_000 * MS);
    let a = m.on(exited(1, true), t0 + 20_001 * MS); // quick again: back to initial
    assert_eq!(a[0], Action::Restart { after: 100 * MS });
}

#[test]
fn a_service_that_was_up_comes_back_at_once_then_backs_off() {
    // (how long each run lasted, the restart delay that follows)
    let table = [
        (2_000, Duration::ZERO),  // up 2 s: back at once
        (2_000, 200 * MS),        // a second death in a row: backoff
        (10, 400 * MS),           // and a third
        (20_000, Duration::ZERO), // a healthy run starts over
        (10, 100 * MS),           // a quick death after it: initial
    ];
    let mut m = Lifecycle::new(policy());
    let mut now = Instant::now();
    m.on(Event::Up, now);
    for (n, (ran_ms, delay)) in table.into_iter().enumerate() {
        m.on(Event::Spawned(pid(10 + n as i32)), now);
        now += ran_ms * MS;
        let actions = m.on(exited(1, true), now);
        assert_eq!(
            actions.first(),
            Some(&Action::Restart { after: delay }),
            "run {n} of {ran_ms} ms"
        );
        now += delay;
        if !delay.is_zero() {
            assert_eq!(m.on(Event::Tick, now), vec![Action::StartRun]);
        }
    }
}

#[test]
fn restart_policies() {
    let table = [
        (RestartPolicy::Always, 0, true),
        (RestartPolicy::Always, 1, true),
        (RestartPolicy::OnFailure, 0, false),
        (RestartPolicy::OnFailure, 1, true),
        (RestartPolicy::Never, 0, false),
        (RestartPolicy::Never, 1, false),
    ];
    for (restart, code, restarts) in table {
        let mut m = Lifecycle::new(Policy { restart, ..policy() });
        let t0 = Instant::now();
        m.on(Event::Up, t0);
        m.on(Event::Spawned(pid(1)), t0);
        let actions = m.on(exited(code, true), t0 + 20_000 * MS);
        if restarts {
            assert_eq!(actions.last(), Some(&Action::StartRun), "{restart:?} {code}");
        } else {
            assert_eq!(actions, vec![Action::Settled], "{restart:?} {code}");
            assert!(m.is_down());
        }
        // Ended by its policy, a service is not expected up (not unhealthy).
        assert_eq!(m.expected_up(), restarts, "{restart:?} {code}");
    }
}

#[test]
fn leftovers_of_the_group_are_stopped_then_finish_runs_with_runit_args() {
    let p = Policy {
        has_finish: true,
        ..policy()
    };
    let exit = |_: Instant| Termination {
        status: Some(ExitStatus::Signaled(9)),
        ran_for: Duration::from_millis(50),
    };
    run_table(
        p,
        &[
            (0, Event::Up, vec![Action::StartRun], &|_| State::Starting),
            (0, Event::Spawned(pid(7)), vec![], &|t0| State::Running {
                pid: pid(7),
                since: t0,
            }),
            (
                50,
                Event::RunExited {
                    status: ExitStatus::Signaled(9),
                    group_empty: false,
                },
                vec![
                    sig(7, Signal::SIGTERM, Why::Leftovers),
                    sig(7, Signal::SIGCONT, Why::Leftovers),
                ],
                &|t0| State::Draining {
                    pgid: pid(7),
                    exit: exit(t0),
                    escalation: Escalation::Signaled {
                        kill_at: t0 + 5050 * MS,
                    },
                },
            ),
            (
                60,
                Event::GroupEmpty,
                vec![Action::StartFinish {
                    exit: Some(ExitStatus::Signaled(9)),
                }],
                &|t0| State::Finishing {
                    pid: None,
                    exit: exit(t0),
                    escalation: Escalation::Signaled {
                        kill_at: t0 + 2060 * MS,
                    },
                },
            ),
            (60, Event::Spawned(pid(8)), vec![], &|t0| State::Finishing {
                pid: Some(pid(8)),
                exit: exit(t0),
                escalation: Escalation::Signaled {
                    kill_at: t0 + 2060 * MS,
                },
            }),
            (
                70,
                Event::FinishExited(ExitStatus::Exited(0)),
                vec![Action::Restart { after: 100 * MS }],
                &|t0| State::Backoff { until: t0 + 170 * MS },
            ),
        ],
    );
}

#[test]
fn stubborn_leftovers_are_killed_then_abandoned() {
    let m = run_table(
        policy(),
        &[
            (0, Event::Up, vec![Action::StartRun], &|_| State::Starting),
            (0, Event::Spawned(pid(7)), vec![], &|t0| State::Running {
                pid: pid(7),
                since: t0,
            }),
            (
                0,
                exited(0, false),
                vec![
                    sig(7, Signal::SIGTERM, Why::Leftovers),
                    sig(7, Signal::SIGCONT, Why::Leftovers),
                ],
                &|t0| State::Draining {
                    pgid: pid(7),
                    exit: Termination {
                        status: Some(ExitStatus::Exited(0)),
                        ran_for: Duration::ZERO,
                    },
                    escalation: Escalation::Signaled {
                        kill_at: t0 + 5000 * MS,
                    },
                },
            ),
            (
                5000,
                Event::Tick,
                vec![sig(7, Signal::SIGKILL, Why::StopTimeout)],
                &|t0| State::Draining {
                    pgid: pid(7),
                    exit: Termination {
                        status: Some(ExitStatus::Exited(0)),
                        ran_for: Duration::ZERO,
                    },
                    escalation: Escalation::Killed {
                        give_up_at: t0 + 5000 * MS + KILL_WAIT,
                    },
                },
            ),
            (
                5250,
                Event::Tick,
                vec![
                    Action::AbandonGroup { pgid: pid(7) },
                    Action::Restart { after: 100 * MS },
                ],
                &|t0| State::Backoff { until: t0 + 5350 * MS },
            ),
        ],
    );
    assert_eq!(m.restarts(), 0);
}

#[test]
fn stop_signals_the_group_escalates_at_the_timeout_and_settles() {
    let p = Policy {
        stop_signal: Signal::SIGQUIT,
        ..policy()
    };
    let m = run_table(
        p,
        &[
            (0, Event::Up, vec![Action::StartRun], &|_| State::Starting),
            (0, Event::Spawned(pid(3)), vec![], &|t0| State::Running {
                pid: pid(3),
                since: t0,
            }),
            (
                1000,
                Event::Down,
                vec![sig(3, Signal::SIGQUIT, Why::Stop), sig(3, Signal::SIGCONT, Why::Stop)],
                &|t0| State::Stopping {
                    pid: pid(3),
                    since: t0,
                    escalation: Escalation::Signaled {
                        kill_at: t0 + 6000 * MS,
                    },
                },
            ),
            (5999, Event::Tick, vec![], &|t0| State::Stopping {
                pid: pid(3),
                since: t0,
                escalation: Escalation::Signaled {
                    kill_at: t0 + 6000 * MS,
                },
            }),
            (
                6000,
                Event::Tick,
                vec![sig(3, Signal::SIGKILL, Why::StopTimeout)],
                &|t0| State::Stopping {
                    pid: pid(3),
                    since: t0,
                    escalation: Escalation::Killed {
                        give_up_at: t0 + 6000 * MS + KILL_WAIT,
                    },
                },
            ),
            (
                6001,
                Event::RunExited {
                    status: ExitStatus::Signaled(9),
                    group_empty: true,
                },
                vec![Action::Settled],
                &|_| State::Down,
            ),
        ],
    );
    assert_eq!(m.deadline(), None);
}

#[test]
fn a_stop_left_to_control_t_signals_nothing_but_sigcont_and_still_escalates() {
    let running = |t0: Instant| State::Running { pid: pid(3), since: t0 };
    let stopping = |t0: Instant| State::Stopping {
        pid: pid(3),
        since: t0,
        escalation: Escalation::Signaled {
            kill_at: t0 + 6000 * MS,
        },
    };
    let m = run_table(
        policy(),
        &[
            (0, Event::Up, vec![Action::StartRun], &|_| State::Starting),
            (0, Event::Spawned(pid(3)), vec![], &running),
            (500, Event::WantDown, vec![], &running),
            (
                1000,
                Event::StopHandled,
                vec![sig(3, Signal::SIGCONT, Why::Stop)],
                &stopping,
            ),
            (1000, Event::StopHandled, vec![], &stopping),
            (
                6000,
                Event::Tick,
                vec![sig(3, Signal::SIGKILL, Why::StopTimeout)],
                &|t0| State::Stopping {
                    pid: pid(3),
                    since: t0,
                    escalation: Escalation::Killed {
                        give_up_at: t0 + 6000 * MS + KILL_WAIT,
                    },
                },
            ),
        ],
    );
    assert!(m.wants_down());
    // A run that exits while control/t runs is not restarted; control/t
    // failing then (Down) changes nothing.
    let m = run_table(
        policy(),
        &[
            (0, Event::Up, vec![Action::StartRun], &|_| State::Starting),
            (0, Event::Spawned(pid(3)), vec![], &running),
            (10, Event::WantDown, vec![], &running),
            (20, exited(0, true), vec![Action::Settled], &|_| State::Down),
            (30, Event::StopHandled, vec![], &|_| State::Down),
            (30, Event::Down, vec![], &|_| State::Down),
        ],
    );
    assert_eq!(m.restarts(), 0);
    // Wanted up again (sv up) before control/t is done: no stop.
    run_table(
        policy(),
        &[
            (0, Event::Up, vec![Action::StartRun], &|_| State::Starting),
            (0, Event::Spawned(pid(3)), vec![], &running),
            (10, Event::WantDown, vec![], &running),
            (20, Event::Up, vec![], &running),
            (30, Event::StopHandled, vec![], &running),
        ],
    );
    // Not running: WantDown is Down.
    run_table(
        policy(),
        &[
            (0, Event::Up, vec![Action::StartRun], &|_| State::Starting),
            (
                0,
                Event::SpawnFailed,
                vec![Action::Restart { after: 100 * MS }],
                &|t0| State::Backoff { until: t0 + 100 * MS },
            ),
            (10, Event::WantDown, vec![Action::Settled], &|_| State::Down),
        ],
    );
}

#[test]
fn stop_during_backoff_settles_at_once_and_a_stop_while_finishing_waits_for_finish() {
    let mut m = Lifecycle::new(Policy {
        has_finish: true,
        ..policy()
    });
    let t0 = Instant::now();
    m.on(Event::Up, t0);
    m.on(Event::Spawned(pid(1)), t0);
    m.on(exited(1, true), t0);
    m.on(Event::Spawned(pid(2)), t0); // finish
    assert_eq!(m.on(Event::Down, t0), vec![]);
    assert!(matches!(m.state(), State::Finishing { .. }));
    assert_eq!(
        m.on(Event::FinishExited(ExitStatus::Exited(0)), t0),
        vec![Action::Settled]
    );
    assert!(m.is_down());

    let mut m = Lifecycle::new(policy());
    m.on(Event::Up, t0);
    m.on(Event::Spawned(pid(1)), t0);
    m.on(exited(1, true), t0);
    assert!(matches!(m.state(), State::Backoff { .. }));
    assert_eq!(m.on(Event::Down, t0), vec![Action::Settled]);
    assert!(m.is_down());
}

#[test]
fn spawn_failures_back_off_and_never_run_finish() {
    let mut m = Lifecycle::new(Policy {
        has_finish: true,
        ..policy()
    });
    let t0 = Instant::now();
    assert_eq!(m.on(Event::Up, t0), vec![Action::StartRun]);
    assert_eq!(m.on(Event::SpawnFailed, t0), vec![Action::Restart { after: 100 * MS }]);
    assert_eq!(m.last_exit().map(|e| e.status), Some(None));
}

#[test]
fn an_exec_failure_found_at_reap_time_is_a_spawn_failure() {
    let t0 = Instant::now();
    // Running: backoff, no finish, no drain; the same as SpawnFailed.
    let mut m = Lifecycle::new(Policy {
        has_finish: true,
        ..policy()
    });
    m.on(Event::Up, t0);
    m.on(Event::Spawned(pid(1)), t0);
    assert_eq!(m.on(Event::ExecFailed(pid(9)), t0), vec![], "another pid's: stale");
    assert_eq!(
        m.on(Event::ExecFailed(pid(1)), t0 + 5 * MS),
        vec![Action::Restart { after: 100 * MS }]
    );
    assert_eq!(m.state(), State::Backoff { until: t0 + 105 * MS });
    assert_eq!(
        m.last_exit(),
        Some(Termination {
            status: None,
            ran_for: Duration::ZERO
        })
    );

    // Stopping (asked down before the failure was known): settles.
    let mut m = Lifecycle::new(policy());
    m.on(Event::Up, t0);
    m.on(Event::Spawned(pid(1)), t0);
    m.on(Event::Down, t0);
    assert_eq!(m.on(Event::ExecFailed(pid(1)), t0), vec![Action::Settled]);
    assert!(m.is_down());

    // A run that runs once (a startup script, the main command): down,
    // with no status, which the supervisor reads as "could not be started".
    let mut m = Lifecycle::new(Policy {
        restart: RestartPolicy::Never,
        ..policy()
    });
    m.on(Event::Up, t0);
    m.on(Event::Spawned(pid(1)), t0);
    assert_eq!(m.on(Event::ExecFailed(pid(1)), t0), vec![Action::Settled]);
    assert!(m.is_down());
    assert_eq!(m.last_exit().map(|e| e.status), Some(None));

    // `finish` that never ran: decide on the run's exit.
    let mut m = Lifecycle::new(Policy {
        has_finish: true,
        ..policy()
    });
    m.on(Event::Up, t0);
    m.on(Event::Spawned(pid(1)), t0);
    m.on(exited(1, true), t0);
    m.on(Event::Spawned(pid(2)), t0);
    assert_eq!(
        m.on(Event::ExecFailed(pid(2)), t0),
        vec![Action::Restart { after: 100 * MS }]
    );
    assert_eq!(m.last_exit().and_then(|e| e.status), Some(ExitStatus::Exited(1)));
}

#[test]
fn finish_past_its_timeout_is_killed() {
    let mut m = Lifecycle::new(Policy {
        has_finish: true,
        ..policy()
    });
    let t0 = Instant::now();
    m.on(Event::Up, t0);
    m.on(Event::Spawned(pid(1)), t0);
    m.on(exited(1, true), t0);
    m.on(Event::Spawned(pid(2)), t0);
    assert_eq!(m.deadline(), Some(t0 + 2000 * MS));
    assert_eq!(
        m.on(Event::Tick, t0 + 2000 * MS),
        vec![sig(2, Signal::SIGKILL, Why::FinishTimeout)]
    );
    // A finish that survives SIGKILL (uninterruptible sleep) is given up
    // on, so the service still restarts.
    assert_eq!(m.deadline(), Some(t0 + 2000 * MS + KILL_WAIT));
    assert_eq!(
        m.on(Event::Tick, t0 + 2000 * MS + KILL_WAIT),
        vec![
            Action::AbandonGroup { pgid: pid(2) },
            Action::Restart { after: 100 * MS }
        ]
    );
}

#[test]
fn a_run_that_survives_sigkill_is_given_up_on() {
    let mut m = Lifecycle::new(Policy {
        has_finish: true,
        ..policy()
    });
    let t0 = Instant::now();
    m.on(Event::Up, t0);
    m.on(Event::Spawned(pid(1)), t0);
    m.on(Event::Down, t0);
    m.on(Event::Tick, t0 + 5000 * MS);
    assert_eq!(
        m.on(Event::Tick, t0 + 5000 * MS + KILL_WAIT),
        vec![Action::AbandonGroup { pgid: pid(1) }, Action::Settled],
        "no finish without a status, and wanted down: settle"
    );
    assert_eq!(m.last_exit().map(|e| e.status), Some(None));
}

#[test]
fn a_spawn_failure_never_restarts_at_once_even_with_a_tiny_reset_after() {
    let mut m = Lifecycle::new(Policy {
        backoff: Backoff {
            initial: MS,
            max: MS,
            reset_after: Duration::from_nanos(1),
        },
        ..policy()
    });
    let t0 = Instant::now();
    m.on(Event::Up, t0);
    assert_eq!(m.on(Event::SpawnFailed, t0), vec![Action::Restart { after: MS }]);
    assert_eq!(m.state(), State::Backoff { until: t0 + MS });
}

#[test]
fn startup_scripts_do_not_drain_their_group() {
    let mut m = Lifecycle::new(Policy {
        restart: RestartPolicy::Never,
        drain_group: false,
        ..policy()
    });
    let t0 = Instant::now();
    m.on(Event::Up, t0);
    m.on(Event::Spawned(pid(1)), t0);
    assert_eq!(m.on(exited(0, false), t0), vec![Action::Settled]);
}

#[test]
fn stale_events_change_nothing() {
    let mut m = Lifecycle::new(policy());
    let t0 = Instant::now();
    for event in [
        Event::Tick,
        Event::GroupEmpty,
        Event::FinishExited(ExitStatus::Exited(0)),
        exited(0, true),
        Event::Down,
    ] {
        assert_eq!(m.on(event, t0), vec![], "{event:?} while down");
        assert!(m.is_down());
    }
    m.on(Event::Up, t0);
    m.on(Event::Spawned(pid(1)), t0);
    for event in [
        Event::Tick,
        Event::GroupEmpty,
        Event::FinishExited(ExitStatus::Exited(0)),
        Event::Up,
    ] {
        assert_eq!(m.on(event, t0), vec![], "{event:?} while running");
        assert_eq!(m.run_pid(), Some(pid(1)));
    }
}

#[test]
fn once_runs_one_time_and_settles() {
    let mut m = Lifecycle::new(policy());
    let t0 = Instant::now();
    assert_eq!(m.on(Event::Once, t0), vec![Action::StartRun]);
    m.on(Event::Spawned(pid(1)), t0);
    assert_eq!(m.on(exited(1, true), t0 + MS), vec![Action::Settled]);
    assert!(m.is_down());
}

#[test]
fn retire_waits_without_a_signal_then_kills_at_the_timeout() {
    let mut m = Lifecycle::new(policy());
    let t0 = Instant::now();
    m.on(Event::Up, t0);
    m.on(Event::Spawned(pid(4)), t0);
    assert_eq!(m.on(Event::Retire, t0), vec![], "no signal: the logger reads to EOF");
    assert_eq!(m.deadline(), Some(t0 + 5000 * MS));
    assert_eq!(
        m.on(Event::Tick, t0 + 5000 * MS),
        vec![sig(4, Signal::SIGKILL, Why::StopTimeout)]
    );
    let mut m = Lifecycle::new(policy());
    m.on(Event::Up, t0);
    m.on(Event::Spawned(pid(4)), t0);
    m.on(Event::Retire, t0);
    assert_eq!(m.on(exited(0, true), t0 + MS), vec![Action::Settled]);

    // Retired between two runs: one last run reads the pipe to EOF,
    // with no signal but a kill deadline.
    let mut m = Lifecycle::new(policy());
    m.on(Event::Up, t0);
    m.on(Event::Spawned(pid(4)), t0);
    m.on(exited(0, true), t0 + MS);
    assert!(matches!(m.state(), State::Backoff { .. }));
    assert_eq!(m.on(Event::Retire, t0 + MS), vec![Action::StartRun]);
    assert_eq!(
        m.on(Event::Spawned(pid(5)), t0 + MS),
        vec![],
        "not signalled: it reads to EOF"
    );
    assert_eq!(m.run_pid(), Some(pid(5)));
    assert_eq!(m.deadline(), Some(t0 + MS + 5000 * MS));
    assert_eq!(m.on(exited(0, true), t0 + 2 * MS), vec![Action::Settled]);

    // Retired while its finish runs: after finish, one last run to EOF.
    let mut m = Lifecycle::new(Policy {
        has_finish: true,
        ..policy()
    });
    m.on(Event::Up, t0);
    m.on(Event::Spawned(pid(4)), t0);
    m.on(exited(1, true), t0 + MS);
    m.on(Event::Spawned(pid(5)), t0 + MS); // finish
    assert_eq!(m.on(Event::Retire, t0 + MS), vec![]);
    assert_eq!(
        m.on(Event::FinishExited(ExitStatus::Exited(0)), t0 + 2 * MS),
        vec![Action::StartRun]
    );
    assert_eq!(m.on(Event::Spawned(pid(6)), t0 + 2 * MS), vec![]);
    m.on(exited(0, true), t0 + 3 * MS);
    m.on(Event::Spawned(pid(7)), t0 + 3 * MS); // its finish
    assert_eq!(
        m.on(Event::FinishExited(ExitStatus::Exited(0)), t0 + 4 * MS),
        vec![Action::Settled],
        "once only"
    );
}

#[test]
fn an_operators_signal_that_ends_the_run_restarts_it_at_once() {
    let mut m = Lifecycle::new(policy());
    let t0 = Instant::now();
    m.on(Event::Up, t0);
    m.on(Event::Spawned(pid(5)), t0);
    assert_eq!(
        m.on(Event::Signal(Signal::SIGTERM), t0),
        vec![sig(5, Signal::SIGTERM, Why::Command)]
    );
    assert_eq!(
        m.on(exited(143 - 128, true), t0 + MS),
        vec![Action::Restart { after: Duration::ZERO }, Action::StartRun],
        "no backoff after a quick run the operator ended"
    );
    // The next quick death backs off as usual.
    m.on(Event::Spawned(pid(6)), t0 + MS);
    assert_eq!(
        m.on(exited(1, true), t0 + 2 * MS)[0],
        Action::Restart { after: 100 * MS }
    );
    // hup is not meant to end the run: a later crash backs off.
    let mut m = Lifecycle::new(policy());
    m.on(Event::Up, t0);
    m.on(Event::Spawned(pid(5)), t0);
    m.on(Event::Signal(Signal::SIGHUP), t0);
    assert_eq!(m.on(exited(1, true), t0 + MS)[0], Action::Restart { after: 100 * MS });
    // A signal to a service that is down does nothing.
    let mut m = Lifecycle::new(policy());
    assert_eq!(m.on(Event::Signal(Signal::SIGHUP), t0), vec![]);
}

/// Crash `n` quick deaths in a row (each restart after its backoff);
/// returns the actions of the last death.
fn crash(m: &mut Lifecycle, now: &mut Instant, n: u32) -> Vec<Action> {
    let mut last = Vec::new();
    for k in 0..n {
        if m.state() == State::Starting || matches!(m.state(), State::Down) {
            m.on(Event::Up, *now);
        }
        m.on(Event::Spawned(pid(100 + k as i32)), *now);
        *now += MS;
        last = m.on(exited(1, true), *now);
        if let State::Backoff { until } = m.state() {
            *now = until;
            m.on(Event::Tick, *now);
        }
    }
    last
}

#[test]
fn a_crash_loop_past_the_limit_fails_with_each_action() {
    let limited = |action| Policy {
        failure: FailurePolicy {
            max_restarts: 3,
            window: Duration::from_secs(60),
            action,
        },
        ..policy()
    };
    // restart-later: failed, then a fresh try at the retry time.
    let mut m = Lifecycle::new(limited(FailureAction::RestartLater(Duration::from_secs(30))));
    let mut now = Instant::now();
    m.on(Event::Up, now);
    let actions = crash(&mut m, &mut now, 4);
    assert_eq!(
        actions,
        vec![Action::Failed {
            action: FailureAction::RestartLater(Duration::from_secs(30))
        }]
    );
    assert_eq!(
        m.state(),
        State::Failed {
            until: Some(now + Duration::from_secs(30))
        }
    );
    assert_eq!(m.state_name(), "failed");
    assert!(m.expected_up(), "failed is unhealthy");
    assert_eq!(m.on(Event::Tick, now + Duration::from_secs(30)), vec![Action::StartRun]);
    // The count starts over: three more quick deaths are allowed.
    let mut now = now + Duration::from_secs(30);
    let actions = crash(&mut m, &mut now, 3);
    assert!(matches!(actions.first(), Some(Action::Restart { .. })), "{actions:?}");

    // stop: failed until sv up.
    let mut m = Lifecycle::new(limited(FailureAction::Stop));
    let mut now = Instant::now();
    m.on(Event::Up, now);
    crash(&mut m, &mut now, 4);
    assert_eq!(m.state(), State::Failed { until: None });
    assert_eq!(m.deadline(), None);
    assert_eq!(m.on(Event::Up, now), vec![Action::StartRun], "sv up: a fresh try");

    // exit: the supervisor is told.
    let mut m = Lifecycle::new(limited(FailureAction::Exit));
    let mut now = Instant::now();
    m.on(Event::Up, now);
    assert_eq!(
        crash(&mut m, &mut now, 4),
        vec![Action::Failed {
            action: FailureAction::Exit
        }]
    );
    // A failed service stops at once on Down.
    assert_eq!(m.on(Event::Down, now), vec![Action::Settled]);
}

#[test]
fn restarts_outside_the_window_and_operator_restarts_do_not_count() {
    let mut m = Lifecycle::new(Policy {
        failure: FailurePolicy {
            max_restarts: 2,
            window: Duration::from_secs(10),
            action: FailureAction::Stop,
        },
        ..policy()
    });
    let mut now = Instant::now();
    m.on(Event::Up, now);
    crash(&mut m, &mut now, 2);
    now += Duration::from_secs(11); // the first two fall out of the window
    let actions = crash(&mut m, &mut now, 2);
    assert!(matches!(actions.first(), Some(Action::Restart { .. })), "{actions:?}");
    // sv term twice: not crashes.
    for k in 0..3 {
        m.on(Event::Signal(Signal::SIGTERM), now);
        now += MS;
        m.on(exited(143 - 128, true), now);
        m.on(Event::Spawned(pid(500 + k)), now);
    }
    assert!(matches!(m.state(), State::Running { .. }));
}

#[test]
fn finish_exiting_125_means_do_not_restart() {
    let mut m = Lifecycle::new(Policy {
        has_finish: true,
        ..policy()
    });
    let t0 = Instant::now();
    m.on(Event::Up, t0);
    m.on(Event::Spawned(pid(1)), t0);
    m.on(exited(1, true), t0);
    m.on(Event::Spawned(pid(2)), t0);
    assert_eq!(
        m.on(Event::FinishExited(ExitStatus::Exited(125)), t0),
        vec![Action::Settled]
    );
    assert!(m.is_down());
    assert!(!m.expected_up(), "ended on purpose: not unhealthy");
    // Any other finish status: the restart policy decides.
    let mut m = Lifecycle::new(Policy {
        has_finish: true,
        ..policy()
    });
    m.on(Event::Up, t0);
    m.on(Event::Spawned(pid(1)), t0);
    m.on(exited(1, true), t0);
    m.on(Event::Spawned(pid(2)), t0);
    assert_eq!(
        m.on(Event::FinishExited(ExitStatus::Exited(1)), t0),
        vec![Action::Restart { after: 100 * MS }]
    );
}

#[test]
fn a_run_past_its_timeout_is_stopped() {
    let mut m = Lifecycle::new(Policy {
        restart: RestartPolicy::Never,
        run_timeout: Some(Duration::from_secs(2)),
        ..policy()
    });
    let t0 = Instant::now();
    m.on(Event::Up, t0);
    m.on(Event::Spawned(pid(9)), t0);
    assert_eq!(m.deadline(), Some(t0 + Duration::from_secs(2)));
    assert_eq!(
        m.on(Event::Tick, t0 + Duration::from_secs(2)),
        vec![
            Action::TimedOut,
            sig(9, Signal::SIGTERM, Why::Stop),
            sig(9, Signal::SIGCONT, Why::Stop)
        ]
    );
    assert!(matches!(m.state(), State::Stopping { .. }));
    // However it then ends (a script trapping SIGTERM may exit 0), the run
    // went past its time.
    m.on(exited(0, true), t0 + Duration::from_secs(2));
    assert!(m.timed_out());
    m.on(Event::Up, t0 + Duration::from_secs(3));
    assert!(!m.timed_out(), "a new run starts on time");
}

#[test]
fn a_forced_restart_comes_back_whatever_the_policy_and_counts() {
    let mut m = Lifecycle::new(Policy {
        restart: RestartPolicy::OnFailure,
        ..policy()
    });
    let t0 = Instant::now();
    m.on(Event::Up, t0);
    m.on(Event::Spawned(pid(1)), t0);
    assert_eq!(
        m.on(Event::Restart, t0 + MS),
        vec![sig(1, Signal::SIGTERM, Why::Stop), sig(1, Signal::SIGCONT, Why::Stop)]
    );
    // It exits 0 on SIGTERM: on-failure alone would leave it down.
    let actions = m.on(exited(0, true), t0 + 2 * MS);
    assert_eq!(
        actions[0],
        Action::Restart { after: 100 * MS },
        "a quick death: backed off"
    );
    // A Restart while it is wanted down does nothing.
    let mut m = Lifecycle::new(policy());
    m.on(Event::Up, t0);
    m.on(Event::Spawned(pid(1)), t0);
    m.on(Event::Down, t0);
    assert_eq!(m.on(Event::Restart, t0), vec![]);
}

#[test]
fn a_failed_service_wanted_down_is_not_retried_and_a_failed_logger_drains() {
    let mut m = Lifecycle::new(Policy {
        failure: FailurePolicy {
            max_restarts: 1,
            window: Duration::from_secs(60),
            action: FailureAction::RestartLater(Duration::from_secs(5)),
        },
        ..policy()
    });
    let mut now = Instant::now();
    m.on(Event::Up, now);
    crash(&mut m, &mut now, 2);
    assert!(matches!(m.state(), State::Failed { .. }));
    assert_eq!(
        m.on(Event::Retire, now),
        vec![Action::StartRun],
        "one last run to read its pipe"
    );
    assert_eq!(m.on(Event::Spawned(pid(9)), now), vec![]);
    assert_eq!(m.on(exited(0, true), now + MS), vec![Action::Settled]);
}

#[test]
fn backoff_delay_saturates() {
    let b = Backoff::DEFAULT;
    assert_eq!(b.delay(1), Duration::from_millis(100));
    assert_eq!(b.delay(2), Duration::from_millis(200));
    assert_eq!(b.delay(8), Duration::from_secs(10));
    assert_eq!(b.delay(u32::MAX), Duration::from_secs(10));
}
