//! The per-service lifecycle as a pure state machine: `state + event + now -> actions`.
//!
//! Nothing here spawns, signals or sleeps: the supervisor turns [`Action`]s into
//! syscalls and feeds what happened back as [`Event`]s, and wakes the machine
//! with [`Event::Tick`] at [`Lifecycle::deadline`].
//!
//! ```text
//!            Up                 Spawned
//!   Down ─────────► Starting ─────────► Running ──── RunExited ───┐
//!    ▲                 ▲                   │ Down                  ▼
//!    │                 │ Tick              ▼              (group not empty)
//!    │              Backoff            Stopping ─ RunExited ─► Draining
//!    │                 ▲                                         │ GroupEmpty
//!    │                 │ restart (policy, backoff)               ▼
//!    └──── Settled ────┴──────────────── decide ◄──── Finishing (if `finish`)
//! ```

use std::time::{Duration, Instant};

use nix::sys::signal::Signal;
use nix::unistd::Pid;

use crate::exit::ExitStatus;

mod policy;

pub use policy::{Backoff, FailureAction, FailurePolicy, Policy, RestartPolicy, WAS_UP};

/// How long to wait for a process group to vanish after SIGKILL before giving
/// up on it (a process stuck in uninterruptible sleep cannot be helped).
pub const KILL_WAIT: Duration = Duration::from_millis(250);

/// Inputs to the machine.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Event {
    /// The service is wanted up.
    Up,
    /// The service is wanted down (a shutdown, `sv down`).
    Down,
    /// Run once, then stay down (`sv once`): wanted down, but started if down.
    Once,
    /// A signal asked for by an operator (`sv term`, `sv kill`, `sv hup`, …):
    /// sent to the process group; if `run` then exits, it restarts at once,
    /// without backoff, because someone wanted exactly that.
    Signal(Signal),
    /// Stop it (stop signal, SIGKILL at the timeout) and start it again,
    /// whatever its restart policy: a failing health probe. Counted like a
    /// crash by the failure policy.
    Restart,
    /// A logger that is down but whose pipe still holds lines: one more run
    /// that reads to EOF, then down.
    Drain,
    /// Wanted down without being signalled: a logger whose input was closed
    /// stops by itself at EOF; it is killed only if it outlives its stop
    /// timeout.
    Retire,
    /// Wanted down, with the stop left to someone else for now (runit's
    /// `control/t` runs): no signal yet, and a run that exits meanwhile is
    /// not restarted. Elsewhere than Running, the same as Down.
    WantDown,
    /// `control/t` stopped the run in its own way (it exited 0): no stop
    /// signal, only runit's SIGCONT; SIGKILL at the stop timeout if the run
    /// outlives it.
    StopHandled,
    /// The program asked for by the last Start action now runs as `pid`.
    Spawned(Pid),
    /// The program asked for by the last Start action could not be started.
    SpawnFailed,
    /// The process `pid` (confirmed by Spawned) never ran its program: the
    /// exec, or a step before it, failed in the child. Spawning does not wait
    /// for the exec, so this comes when that child is reaped; it ends the run
    /// (or `finish`) as SpawnFailed would have.
    ExecFailed(Pid),
    /// The `run` process was reaped; `group_empty` tells whether anything of
    /// its process group is still alive.
    RunExited { status: ExitStatus, group_empty: bool },
    /// The process group left behind by `run` has no member left.
    GroupEmpty,
    /// The `finish` process was reaped (125: do not restart, as s6).
    FinishExited(ExitStatus),
    /// Time passed: deadlines at or before `now` fire.
    Tick,
}

/// Why a signal is sent, for the log.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Why {
    /// The service is being stopped.
    Stop,
    /// `run` exited and left processes in its group.
    Leftovers,
    /// The stop timeout passed.
    StopTimeout,
    /// `finish` ran past its timeout.
    FinishTimeout,
    /// An operator asked for it (`sv`).
    Command,
}

/// Outputs of the machine, carried out by the supervisor in order.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Action {
    /// Spawn `run`; answer with Spawned or SpawnFailed.
    StartRun,
    /// Spawn `finish` with runit's arguments for `exit`; answer with Spawned
    /// or SpawnFailed.
    StartFinish { exit: Option<ExitStatus> },
    /// Signal a process group (`pgid` is also the pid of its leader).
    SignalGroup { pgid: Pid, signal: Signal, why: Why },
    /// The process (group) led by `pgid` did not vanish even after SIGKILL
    /// (uninterruptible sleep); the machine moves on without it, and the
    /// supervisor must forget that pid.
    AbandonGroup { pgid: Pid },
    /// The service will start again after `after`.
    Restart { after: Duration },
    /// It crash-looped past its limit: it is failed now (and, with
    /// FailureAction::Exit, the container must stop).
    Failed { action: FailureAction },
    /// The run went past its `run_timeout` and is being stopped.
    TimedOut,
    /// The service reached Down and stays there until wanted up again.
    Settled,
}

/// How a run ended: its status (None when it never started) and how long it ran.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Termination {
    pub status: Option<ExitStatus>,
    pub ran_for: Duration,
}

/// Where the stop of a process (group) stands: first a polite signal (or, for
/// `finish`, none), then SIGKILL, then giving up on it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Escalation {
    /// SIGKILL at `kill_at`.
    Signaled { kill_at: Instant },
    /// SIGKILL was sent; give up waiting at `give_up_at`.
    Killed { give_up_at: Instant },
}

impl Escalation {
    fn deadline(self) -> Instant {
        match self {
            Escalation::Signaled { kill_at } => kill_at,
            Escalation::Killed { give_up_at } => give_up_at,
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum State {
    Down,
    /// StartRun was emitted; Spawned or SpawnFailed comes next.
    Starting,
    Running {
        pid: Pid,
        since: Instant,
    },
    /// The stop signal went to the group; `run` has not exited yet.
    Stopping {
        pid: Pid,
        since: Instant,
        escalation: Escalation,
    },
    /// `run` exited; the rest of its group is being stopped.
    Draining {
        pgid: Pid,
        exit: Termination,
        escalation: Escalation,
    },
    /// `finish` runs (`pid` is None until it is spawned).
    Finishing {
        pid: Option<Pid>,
        exit: Termination,
        escalation: Escalation,
    },
    /// Waiting to restart.
    Backoff {
        until: Instant,
    },
    /// Crash-looped past its limit; retried at `until` if set.
    Failed {
        until: Option<Instant>,
    },
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Want {
    Up,
    Down,
    /// Run now, but do not restart (`sv once`).
    Once,
    /// A retired logger: one more run that reads its pipe to EOF, with no
    /// signal and a kill deadline, then down.
    Drain,
}

/// One service's lifecycle: its state plus the counters that outlive a run.
#[derive(Clone, Debug)]
pub struct Lifecycle {
    policy: Policy,
    want: Want,
    state: State,
    quick_deaths: u32,
    restarts: u32,
    last_exit: Option<Termination>,
    /// The next exit was asked for (Event::Signal): restart without backoff.
    prompt_restart: bool,
    /// The next exit was forced (Event::Restart): restart whatever the
    /// restart policy says.
    forced_restart: bool,
    /// Its restart policy ended it for good (`never`, or `on-failure` after
    /// a success, or `finish` exited 125): down, and rightly so.
    done: bool,
    /// When automatic restarts happened, within the failure window.
    recent_restarts: std::collections::VecDeque<Instant>,
    /// The current (or last) run went past its `run_timeout`.
    timed_out: bool,
}

impl Lifecycle {
    pub fn new(policy: Policy) -> Self {
        Lifecycle {
            policy,
            want: Want::Down,
            state: State::Down,
            quick_deaths: 0,
            restarts: 0,
            last_exit: None,
            prompt_restart: false,
            forced_restart: false,
            done: false,
            timed_out: false,
            recent_restarts: std::collections::VecDeque::new(),
        }
    }

    pub fn state(&self) -> State {
        self.state
    }

    pub fn policy(&self) -> &Policy {
        &self.policy
    }

    pub fn is_down(&self) -> bool {
        self.state == State::Down
    }

    /// True once the service is not to be restarted: asked to stop (a
    /// shutdown, `sv down`) or to run once.
    pub fn wants_down(&self) -> bool {
        self.want != Want::Up
    }

    /// Whether the service should be running now: wanted up and not ended
    /// for good by its restart policy. Health is this being true of Running.
    pub fn expected_up(&self) -> bool {
        self.want == Want::Up && !self.done
    }

    /// It ran and ended for good with success (a one-shot setup job):
    /// services that come after it may start.
    pub fn finished_ok(&self) -> bool {
        self.done && self.last_exit.and_then(|e| e.status).is_some_and(ExitStatus::success)
    }

    /// A name for the state, for status output.
    pub fn state_name(&self) -> &'static str {
        match self.state {
            State::Down => "down",
            State::Starting => "starting",
            State::Running { .. } => "run",
            State::Stopping { .. } => "stopping",
            State::Draining { .. } => "draining",
            State::Finishing { .. } => "finish",
            State::Backoff { .. } => "backoff",
            State::Failed { .. } => "failed",
        }
    }

    /// When the current run started.
    pub fn running_since(&self) -> Option<Instant> {
        match self.state {
            State::Running { since, .. } | State::Stopping { since, .. } => Some(since),
            _ => None,
        }
    }

    /// How the last run ended.
    /// The current or last run went past its `run_timeout` (and was
    /// stopped for it), however it then exited.
    pub fn timed_out(&self) -> bool {
        self.timed_out
    }

    pub fn last_exit(&self) -> Option<Termination> {
        self.last_exit
    }

    pub fn restarts(&self) -> u32 {
        self.restarts
    }

    /// The pid of `run` while it is alive.
    pub fn run_pid(&self) -> Option<Pid> {
        match self.state {
            State::Running { pid, .. } | State::Stopping { pid, .. } => Some(pid),
            _ => None,
        }
    }

    /// The process group whose emptiness the machine waits for.
    pub fn draining_group(&self) -> Option<Pid> {
        match self.state {
            State::Draining { pgid, .. } => Some(pgid),
            _ => None,
        }
    }

    /// When the machine next wants a Tick.
    pub fn deadline(&self) -> Option<Instant> {
        match self.state {
            State::Stopping { escalation, .. }
            | State::Draining { escalation, .. }
            | State::Finishing { escalation, .. } => Some(escalation.deadline()),
            State::Backoff { until } | State::Failed { until: Some(until) } => Some(until),
            State::Running { since, .. } => self.policy.run_timeout.map(|t| since + t),
            State::Down | State::Starting | State::Failed { until: None } => None,
        }
    }

    pub fn on(&mut self, event: Event, now: Instant) -> Vec<Action> {
        let mut actions = Vec::new();
        self.state = self.next(self.state, event, now, &mut actions);
        actions
    }

    fn next(&mut self, state: State, event: Event, now: Instant, out: &mut Vec<Action>) -> State {
        use State::*;
        match (state, event) {
            (_, Event::Up) => {
                self.want = Want::Up;
                self.done = false;
                match state {
                    Down => self.start(out),
                    // An operator's `sv up` of a failed service: a fresh try.
                    Failed { .. } => {
                        self.recent_restarts.clear();
                        self.quick_deaths = 0;
                        self.start(out)
                    }
                    _ => state,
                }
            }
            (Running { pid, since }, Event::Down) => {
                self.want = Want::Down;
                self.stop(pid, since, now, out)
            }
            (Running { .. }, Event::WantDown) => {
                self.want = Want::Down;
                state
            }
            (_, Event::WantDown) => self.next(state, Event::Down, now, out),
            (Running { pid, since }, Event::StopHandled) if self.want != Want::Up => {
                out.push(Action::SignalGroup {
                    pgid: pid,
                    signal: Signal::SIGCONT,
                    why: Why::Stop,
                });
                Stopping {
                    pid,
                    since,
                    escalation: Escalation::Signaled {
                        kill_at: now + self.policy.stop_timeout,
                    },
                }
            }
            (Backoff { .. } | Failed { .. }, Event::Down) => {
                self.want = Want::Down;
                out.push(Action::Settled);
                Down
            }
            // A running logger reads to EOF and exits by itself; it is killed
            // only if it outlives its stop timeout.
            (Running { pid, since }, Event::Retire) => {
                self.want = Want::Down;
                self.drain(pid, since, now)
            }
            (Running { pid, since }, Event::Restart) if self.want == Want::Up => {
                self.forced_restart = true;
                self.signal_stop(pid, Why::Stop, out);
                Stopping {
                    pid,
                    since,
                    escalation: Escalation::Signaled {
                        kill_at: now + self.policy.stop_timeout,
                    },
                }
            }
            // A logger between two runs (or failed), or busy with `finish` or
            // its leftovers, still has its pipe to read: one last run, to EOF.
            (Backoff { .. } | Failed { .. }, Event::Retire) => {
                self.want = Want::Drain;
                self.start(out)
            }
            (Starting | Draining { .. } | Finishing { .. }, Event::Retire) => {
                self.want = Want::Drain;
                state
            }
            (Running { pid, .. }, Event::Signal(signal)) => {
                // What `sv restart` and `sv force-*` send: the run is meant to
                // end and come back. Other signals (hup, usr1, …) are not.
                self.prompt_restart |= matches!(signal, Signal::SIGTERM | Signal::SIGKILL);
                out.push(Action::SignalGroup {
                    pgid: pid,
                    signal,
                    why: Why::Command,
                });
                state
            }
            (Stopping { pid, .. }, Event::Signal(signal)) => {
                out.push(Action::SignalGroup {
                    pgid: pid,
                    signal,
                    why: Why::Command,
                });
                state
            }
            (Down, Event::Drain) => {
                self.want = Want::Drain;
                self.start(out)
            }
            (_, Event::Once) => {
                self.want = Want::Once;
                if state == Down { self.start(out) } else { state }
            }
            // Starting, Stopping, Draining, Finishing: finish what is under
            // way; `decide` sees the wish at the end.
            (_, Event::Down | Event::Retire) => {
                self.want = Want::Down;
                state
            }

            (Starting, Event::Spawned(pid)) => match self.want {
                // Asked to stop before the spawn was confirmed.
                Want::Down => self.stop(pid, now, now, out),
                Want::Drain => {
                    self.want = Want::Down;
                    self.drain(pid, now, now)
                }
                Want::Up | Want::Once => Running { pid, since: now },
            },
            (Starting, Event::SpawnFailed) => self.decide(
                Termination {
                    status: None,
                    ran_for: Duration::ZERO,
                },
                now,
                out,
            ),

            // The run never started after all: as SpawnFailed in Starting. Its
            // group held only that child, which is gone: nothing to drain.
            (Running { pid, .. } | Stopping { pid, .. }, Event::ExecFailed(failed)) if pid == failed => self.decide(
                Termination {
                    status: None,
                    ran_for: Duration::ZERO,
                },
                now,
                out,
            ),

            (Running { pid, since }, Event::RunExited { status, group_empty })
            | (Stopping { pid, since, .. }, Event::RunExited { status, group_empty }) => {
                let exit = Termination {
                    status: Some(status),
                    ran_for: now.saturating_duration_since(since),
                };
                if group_empty || !self.policy.drain_group {
                    return self.after_run(exit, now, out);
                }
                let escalation = match state {
                    // The group already got the stop signal (or SIGKILL).
                    Stopping { escalation, .. } => escalation,
                    _ => {
                        self.signal_stop(pid, Why::Leftovers, out);
                        Escalation::Signaled {
                            kill_at: now + self.policy.stop_timeout,
                        }
                    }
                };
                Draining {
                    pgid: pid,
                    exit,
                    escalation,
                }
            }
            (Stopping { pid, since, escalation }, Event::Tick) if now >= escalation.deadline() => {
                match self.escalate(pid, escalation, Why::StopTimeout, now, out) {
                    Some(escalation) => Stopping { pid, since, escalation },
                    // `run` itself is stuck: forget it and carry on as if it
                    // had died without a status.
                    None => self.after_run(
                        Termination {
                            status: None,
                            ran_for: now.saturating_duration_since(since),
                        },
                        now,
                        out,
                    ),
                }
            }

            (Draining { exit, .. }, Event::GroupEmpty) => self.after_run(exit, now, out),
            (Draining { pgid, exit, escalation }, Event::Tick) if now >= escalation.deadline() => {
                match self.escalate(pgid, escalation, Why::StopTimeout, now, out) {
                    Some(escalation) => Draining { pgid, exit, escalation },
                    None => self.after_run(exit, now, out),
                }
            }

            (
                Finishing {
                    pid: None,
                    exit,
                    escalation,
                },
                Event::Spawned(pid),
            ) => Finishing {
                pid: Some(pid),
                exit,
                escalation,
            },
            (Finishing { pid: None, exit, .. }, Event::SpawnFailed) => self.decide(exit, now, out),
            (
                Finishing {
                    pid: Some(pid), exit, ..
                },
                Event::ExecFailed(failed),
            ) if pid == failed => self.decide(exit, now, out),
            (Finishing { exit, .. }, Event::FinishExited(status)) => {
                if status == ExitStatus::Exited(125) && self.want == Want::Up {
                    // s6's convention: the service must not come back.
                    self.done = true;
                    self.last_exit = Some(exit);
                    out.push(Action::Settled);
                    return Down;
                }
                self.decide(exit, now, out)
            }
            (
                Finishing {
                    pid: Some(pid),
                    exit,
                    escalation,
                },
                Event::Tick,
            ) if now >= escalation.deadline() => match self.escalate(pid, escalation, Why::FinishTimeout, now, out) {
                Some(escalation) => Finishing {
                    pid: Some(pid),
                    exit,
                    escalation,
                },
                None => self.decide(exit, now, out),
            },

            (Backoff { until }, Event::Tick) if now >= until => {
                self.restarts += 1;
                self.start(out)
            }
            (Failed { until: Some(until) }, Event::Tick) if now >= until && self.want == Want::Up => {
                self.recent_restarts.clear();
                self.quick_deaths = 0;
                self.restarts += 1;
                self.start(out)
            }
            (Running { pid, since }, Event::Tick) if self.policy.run_timeout.is_some_and(|t| now >= since + t) => {
                out.push(Action::TimedOut);
                self.timed_out = true;
                self.want = Want::Down;
                self.stop(pid, since, now, out)
            }

            // Anything else is stale or early (a Tick before its deadline, a
            // GroupEmpty for a group no longer watched): no change.
            _ => state,
        }
    }

    fn start(&mut self, out: &mut Vec<Action>) -> State {
        self.timed_out = false;
        out.push(Action::StartRun);
        State::Starting
    }

    fn signal_stop(&self, pgid: Pid, why: Why, out: &mut Vec<Action>) {
        out.push(Action::SignalGroup {
            pgid,
            signal: self.policy.stop_signal,
            why,
        });
        // runit sends CONT after the stop signal so a stopped process sees it.
        if self.policy.stop_signal != Signal::SIGKILL {
            out.push(Action::SignalGroup {
                pgid,
                signal: Signal::SIGCONT,
                why,
            });
        }
    }

    /// A logger's last run: no signal, killed at its stop timeout if it has
    /// not reached EOF and exited by then.
    fn drain(&self, pid: Pid, since: Instant, now: Instant) -> State {
        State::Stopping {
            pid,
            since,
            escalation: Escalation::Signaled {
                kill_at: now + self.policy.stop_timeout,
            },
        }
    }

    /// Sends the stop signal to `run`'s group and starts the stop clock.
    fn stop(&self, pid: Pid, since: Instant, now: Instant, out: &mut Vec<Action>) -> State {
        self.signal_stop(pid, Why::Stop, out);
        State::Stopping {
            pid,
            since,
            escalation: Escalation::Signaled {
                kill_at: now + self.policy.stop_timeout,
            },
        }
    }

    /// The next step once `escalation`'s deadline has passed: SIGKILL, or
    /// (None) give up on a group that survived it.
    fn escalate(
        &self,
        pgid: Pid,
        escalation: Escalation,
        why: Why,
        now: Instant,
        out: &mut Vec<Action>,
    ) -> Option<Escalation> {
        match escalation {
            Escalation::Signaled { .. } => {
                out.push(Action::SignalGroup {
                    pgid,
                    signal: Signal::SIGKILL,
                    why,
                });
                Some(Escalation::Killed {
                    give_up_at: now + KILL_WAIT,
                })
            }
            Escalation::Killed { .. } => {
                out.push(Action::AbandonGroup { pgid });
                None
            }
        }
    }

    /// `run` and its group are gone: run `finish`, or decide right away.
    fn after_run(&mut self, exit: Termination, now: Instant, out: &mut Vec<Action>) -> State {
        if self.policy.has_finish && exit.status.is_some() {
            out.push(Action::StartFinish { exit: exit.status });
            State::Finishing {
                pid: None,
                exit,
                escalation: Escalation::Signaled {
                    kill_at: now + self.policy.finish_timeout,
                },
            }
        } else {
            self.decide(exit, now, out)
        }
    }

    /// The run is over: stay down or come back, per the wish and the policy.
    fn decide(&mut self, exit: Termination, now: Instant, out: &mut Vec<Action>) -> State {
        self.last_exit = Some(exit);
        if self.want == Want::Drain {
            return self.start(out);
        }
        let forced = std::mem::take(&mut self.forced_restart) && self.want == Want::Up;
        let wanted = forced
            || self.want == Want::Up
                && match self.policy.restart {
                    RestartPolicy::Always => true,
                    RestartPolicy::OnFailure => exit.status.is_none_or(|s| !s.success()),
                    RestartPolicy::Never => false,
                };
        self.done = !wanted && self.want == Want::Up;
        if !wanted {
            out.push(Action::Settled);
            return State::Down;
        }
        // A run that never started is always a quick death: never an
        // immediate retry of a spawn that just failed.
        let prompt = std::mem::take(&mut self.prompt_restart);
        let delay = if prompt || (exit.status.is_some() && exit.ran_for >= self.policy.backoff.reset_after) {
            self.quick_deaths = 0;
            Duration::ZERO
        } else {
            // The first death after a run of a second or more is a service
            // that was up and fell over, not a crash loop: back at once, as
            // runit and s6 do. Deaths in a row after it back off.
            let was_up = exit.status.is_some() && self.quick_deaths == 0 && exit.ran_for >= WAS_UP;
            self.quick_deaths = self.quick_deaths.saturating_add(1);
            if was_up {
                Duration::ZERO
            } else {
                self.policy.backoff.delay(self.quick_deaths)
            }
        };
        // The crash-loop limit counts automatic restarts only: an operator's
        // restart (`prompt`) is not a crash.
        if !prompt {
            while self
                .recent_restarts
                .front()
                .is_some_and(|t| now.saturating_duration_since(*t) > self.policy.failure.window)
            {
                self.recent_restarts.pop_front();
            }
            if self.recent_restarts.len() >= self.policy.failure.max_restarts as usize {
                let action = self.policy.failure.action;
                out.push(Action::Failed { action });
                return State::Failed {
                    until: match action {
                        FailureAction::RestartLater(after) => Some(now + after),
                        FailureAction::Stop | FailureAction::Exit => None,
                    },
                };
            }
            self.recent_restarts.push_back(now);
        }
        out.push(Action::Restart { after: delay });
        if delay.is_zero() {
            self.restarts += 1;
            self.start(out)
        } else {
            State::Backoff { until: now + delay }
        }
    }
}

#[cfg(test)]
mod tests;
