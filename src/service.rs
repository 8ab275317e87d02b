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

/// How long to wait for a process group to vanish after SIGKILL before giving
/// up on it (a process stuck in uninterruptible sleep cannot be helped).
pub const KILL_WAIT: Duration = Duration::from_millis(250);

/// When a service that exited is started again.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RestartPolicy {
    /// Whatever the exit status (runit's behaviour).
    Always,
    /// Unless it exited with code 0.
    OnFailure,
    /// Never: one run, then down.
    Never,
}

impl<'de> serde::Deserialize<'de> for RestartPolicy {
    /// By hand, for a message that names the choices whatever was written
    /// (serde's derive says only "wanted string or table" for a number).
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct V;
        impl serde::de::Visitor<'_> for V {
            type Value = RestartPolicy;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("one of \"always\", \"on-failure\", \"never\"")
            }
            fn visit_str<E: serde::de::Error>(self, s: &str) -> Result<RestartPolicy, E> {
                match s {
                    "always" => Ok(RestartPolicy::Always),
                    "on-failure" => Ok(RestartPolicy::OnFailure),
                    "never" => Ok(RestartPolicy::Never),
                    _ => Err(E::invalid_value(serde::de::Unexpected::Str(s), &self)),
                }
            }
        }
        deserializer.deserialize_any(V)
    }
}

/// How long a run must have lasted for its death, the first in a row, to be
/// restarted at once (runit and s6 use the same second).
pub const WAS_UP: Duration = Duration::from_secs(1);

/// Exponential backoff between quick repeated deaths.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Backoff {
    /// Delay after the first quick death.
    pub initial: Duration,
    /// The delay doubles per quick death up to this.
    pub max: Duration,
    /// A run at least this long is not a quick death: the next restart is
    /// immediate and the doubling starts over.
    pub reset_after: Duration,
}

impl Backoff {
    pub const DEFAULT: Backoff = Backoff {
        initial: Duration::from_millis(100),
        max: Duration::from_secs(10),
        reset_after: Duration::from_secs(10),
    };

    /// The delay before restart number `quick_deaths` in a row (1-based).
    pub fn delay(&self, quick_deaths: u32) -> Duration {
        let doublings = quick_deaths.saturating_sub(1).min(31);
        self.initial.saturating_mul(1u32 << doublings).min(self.max)
    }
}

/// What happens when a service crash-loops: more than `max_restarts`
/// automatic restarts within `window`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FailurePolicy {
    pub max_restarts: u32,
    pub window: Duration,
    pub action: FailureAction,
}

/// A failed service's fate.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FailureAction {
    /// Stay failed, then try again after this long, with a fresh count.
    RestartLater(Duration),
    /// Stay down until an operator brings it up (`sv up`).
    Stop,
    /// Shut the container down (the supervisor does, on Action::Failed).
    Exit,
}

impl FailurePolicy {
    /// 10 restarts in a minute: with the default backoff a crash loop gets
    /// there in about 43 s (0.1 + 0.2 + … + 10 s), so a service that keeps
    /// crashing is marked failed within a minute, and retried every minute.
    pub const DEFAULT_RETRY_AFTER: Duration = Duration::from_secs(60);
    pub const DEFAULT: FailurePolicy = FailurePolicy {
        max_restarts: 10,
        window: Duration::from_secs(60),
        action: FailureAction::RestartLater(Self::DEFAULT_RETRY_AFTER),
    };
}

/// What the machine needs to know about its service, fixed at load time.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Policy {
    pub restart: RestartPolicy,
    pub backoff: Backoff,
    pub stop_signal: Signal,
    /// From the stop signal to SIGKILL of the process group.
    pub stop_timeout: Duration,
    /// From the start of `finish` to its SIGKILL.
    pub finish_timeout: Duration,
    pub has_finish: bool,
    /// Whether whatever is left of the process group when `run` exits is
    /// stopped before the next step. Startup scripts may leave daemons behind
    /// on purpose, so they do not drain.
    pub drain_group: bool,
    pub failure: FailurePolicy,
    /// A run still going after this long is stopped (startup scripts' timeout).
    pub run_timeout: Option<Duration>,
}

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
                self.want = Want::Down;
                self.stop(pid, since, now, out)
            }

            // Anything else is stale or early (a Tick before its deadline, a
            // GroupEmpty for a group no longer watched): no change.
            _ => state,
        }
    }

    fn start(&mut self, out: &mut Vec<Action>) -> State {
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
mod tests {
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
}
