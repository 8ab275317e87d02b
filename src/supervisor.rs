//! The event loop: owns every unit's state machine and the pid table, and is
//! the only place that spawns, signals and reaps.
//!
//! A unit is anything baseinit starts and watches: a startup script, a
//! service, or the main command. They share one lifecycle machine; only their
//! policies differ. The supervisor walks through phases: startup scripts one
//! at a time, then services and the main command, then the stop of all units,
//! then the kill-all, then exit.

use std::collections::{HashMap, VecDeque};
use std::ffi::OsString;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use tokio::signal::unix::{SignalKind, signal};
use tracing::{debug, error, info, warn};

use crate::config::{self, Defaults};
use crate::exit::{ExitStatus, Outcome, SpawnFailure};
use crate::process_group;
use crate::reaper;
use crate::service::{Action, Backoff, Event, KILL_WAIT, Lifecycle, Policy, RestartPolicy, Why};
use crate::shutdown::{self, KillAll, StopPlan};
use crate::spawn::{self, Launch, StdinMode};
use crate::startup;

/// What the supervisor is told to do, from the command line.
#[derive(Clone, Debug)]
pub struct Options {
    pub service_dir: PathBuf,
    /// A missing service directory is an error (it was named explicitly).
    pub service_dir_required: bool,
    pub skip_services: bool,
    /// None with `--skip-startup-files`.
    pub startup: Option<(PathBuf, PathBuf)>,
    pub command: Vec<OsString>,
    pub defaults: Defaults,
    pub kill_all: KillAll,
    pub kill_all_grace: Duration,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    Startup,
    Service,
    Main,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Role {
    Run,
    Finish,
}

struct Unit {
    /// For logs: "service web", "startup script /etc/my_init.d/10_x", "main command sh".
    label: String,
    kind: Kind,
    run: Launch,
    finish: Option<Launch>,
    life: Lifecycle,
    /// Why the last start failed, if it did.
    spawn_failure: Option<SpawnFailure>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum StopReason {
    Signal(Signal),
    MainExited,
    BootFailed,
}

#[derive(Debug)]
enum Phase {
    /// Startup scripts, one at a time; `current` indexes `units`.
    Startup {
        pending: VecDeque<PathBuf>,
        current: Option<usize>,
    },
    Running,
    Stopping(StopPlan),
    /// The final kill-all: `signal` was sent; the next step is at `until`.
    KillAll {
        signal: Signal,
        until: Instant,
    },
    Done,
}

pub struct Supervisor {
    opts: Options,
    units: Vec<Unit>,
    /// Every child we started and have not reaped yet.
    pids: HashMap<Pid, (usize, Role)>,
    phase: Phase,
    reason: Option<StopReason>,
    main: Option<usize>,
    /// The last drain found no child at all.
    no_children: bool,
    orphans_reaped: u64,
    stop_started: Option<Instant>,
}

/// The signals baseinit listens to. Installing them first thing means no
/// SIGCHLD is missed: children are only started afterwards.
struct Signals {
    child: tokio::signal::unix::Signal,
    terminate: tokio::signal::unix::Signal,
    interrupt: tokio::signal::unix::Signal,
    hangup: tokio::signal::unix::Signal,
    quit: tokio::signal::unix::Signal,
    user1: tokio::signal::unix::Signal,
    user2: tokio::signal::unix::Signal,
    window: tokio::signal::unix::Signal,
}

impl Signals {
    fn install() -> std::io::Result<Self> {
        Ok(Signals {
            child: signal(SignalKind::child())?,
            terminate: signal(SignalKind::terminate())?,
            interrupt: signal(SignalKind::interrupt())?,
            hangup: signal(SignalKind::hangup())?,
            quit: signal(SignalKind::quit())?,
            user1: signal(SignalKind::user_defined1())?,
            user2: signal(SignalKind::user_defined2())?,
            window: signal(SignalKind::window_change())?,
        })
    }
}

async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(at) => tokio::time::sleep_until(at.into()).await,
        None => std::future::pending().await,
    }
}

impl Supervisor {
    pub fn new(opts: Options) -> Self {
        Supervisor {
            opts,
            units: Vec::new(),
            pids: HashMap::new(),
            phase: Phase::Running,
            reason: None,
            main: None,
            no_children: false,
            orphans_reaped: 0,
            stop_started: None,
        }
    }

    /// Runs everything to the end and says how it ended.
    pub async fn run(mut self) -> Outcome {
        let mut signals = match Signals::install() {
            Ok(signals) => signals,
            Err(e) => {
                error!("cannot install signal handlers: {e}");
                return Outcome::BootFailed;
            }
        };
        // Children we inherited (baseinit exec'd by a shell with jobs) may
        // already be zombies with no SIGCHLD left to tell us.
        self.reap(Instant::now());
        self.boot(Instant::now());
        while !matches!(self.phase, Phase::Done) {
            let wake = self.next_wake();
            tokio::select! {
                biased;
                _ = signals.child.recv() => self.reap(Instant::now()),
                _ = signals.terminate.recv() => self.on_stop_signal(Signal::SIGTERM, Instant::now()),
                _ = signals.interrupt.recv() => self.on_stop_signal(Signal::SIGINT, Instant::now()),
                _ = signals.hangup.recv() => self.forward(Signal::SIGHUP),
                _ = signals.quit.recv() => self.forward(Signal::SIGQUIT),
                _ = signals.user1.recv() => self.forward(Signal::SIGUSR1),
                _ = signals.user2.recv() => self.forward(Signal::SIGUSR2),
                _ = signals.window.recv() => self.forward(Signal::SIGWINCH),
                () = sleep_until(wake) => self.on_tick(Instant::now()),
            }
        }
        let outcome = self.outcome();
        let took = self.stop_started.map(|t| t.elapsed()).unwrap_or_default();
        info!(
            "exiting with code {} (stop took {} ms; {} orphans reaped)",
            outcome.exit_code(),
            took.as_millis(),
            self.orphans_reaped
        );
        outcome
    }

    fn boot(&mut self, now: Instant) {
        let pending = match &self.opts.startup {
            None => Vec::new(),
            Some((dir, rc_local)) => match startup::scripts(dir, rc_local) {
                Ok(scripts) => scripts,
                Err(message) => {
                    error!("{message}");
                    self.begin_shutdown(StopReason::BootFailed, now);
                    return self.advance(now);
                }
            },
        };
        self.phase = Phase::Startup {
            pending: pending.into(),
            current: None,
        };
        self.advance(now);
    }

    /// Moves through phases for as long as the current one is complete.
    fn advance(&mut self, now: Instant) {
        loop {
            match &mut self.phase {
                Phase::Startup { pending, current } => {
                    if let Some(i) = *current {
                        let unit = &self.units[i];
                        if !unit.life.is_down() {
                            return;
                        }
                        let status = unit.life.last_exit().and_then(|e| e.status);
                        if status != Some(ExitStatus::Exited(0)) {
                            let how = status.map_or("could not be started".to_owned(), |s| format!("failed with {s}"));
                            error!("{} {how}: boot aborted", unit.label);
                            self.begin_shutdown(StopReason::BootFailed, now);
                            continue;
                        }
                    }
                    match pending.pop_front() {
                        Some(script) => {
                            let i = self.add_unit(
                                format!("startup script {}", script.display()),
                                Kind::Startup,
                                Launch::program(vec![script.into_os_string()]),
                                None,
                                self.policy_for_once(false),
                            );
                            if let Phase::Startup { current, .. } = &mut self.phase {
                                *current = Some(i);
                            }
                            self.feed(i, Event::Up, now);
                        }
                        None => self.start_services(now),
                    }
                }
                Phase::Running => {
                    if let Some(m) = self.main
                        && self.units[m].life.is_down()
                    {
                        self.begin_shutdown(StopReason::MainExited, now);
                        continue;
                    }
                    return;
                }
                Phase::Stopping(plan) => {
                    let plan = *plan;
                    let running: Vec<&str> = self
                        .units
                        .iter()
                        .filter(|u| !u.life.is_down())
                        .map(|u| u.label.as_str())
                        .collect();
                    if !running.is_empty() {
                        if now < plan.services_by {
                            return;
                        }
                        warn!("giving up on stopping {}: moving on", running.join(", "));
                    }
                    info!("all units stopped in {} ms", (now - plan.started).as_millis());
                    self.begin_kill_all(plan, now);
                }
                Phase::KillAll { .. } => {
                    if self.no_children {
                        debug!("no process left");
                        self.phase = Phase::Done;
                    }
                    return;
                }
                Phase::Done => return,
            }
        }
    }

    /// After the startup scripts: load the service tree, start every service
    /// without a `down` file, then the main command.
    fn start_services(&mut self, now: Instant) {
        self.phase = Phase::Running;
        if !self.opts.skip_services {
            let loaded = config::load_services(
                &self.opts.service_dir,
                &self.opts.defaults,
                self.opts.service_dir_required,
            );
            let specs = match loaded {
                Ok(specs) => specs,
                Err(errors) => {
                    for problem in &errors {
                        error!("{problem}");
                    }
                    error!(
                        "{} problem(s) in the service definitions under {}: nothing started",
                        errors.len(),
                        self.opts.service_dir.display()
                    );
                    return self.begin_shutdown(StopReason::BootFailed, now);
                }
            };
            debug!("{} service(s) in {}", specs.len(), self.opts.service_dir.display());
            for spec in specs {
                let down = spec.down;
                let i = self.add_unit(
                    format!("service {}", spec.name),
                    Kind::Service,
                    spec.run,
                    spec.finish,
                    spec.policy,
                );
                if down {
                    info!("{}: has a `down` file, not started", self.units[i].label);
                } else {
                    self.feed(i, Event::Up, now);
                }
            }
        }
        if !self.opts.command.is_empty() {
            let label = format!("main command {}", self.opts.command[0].to_string_lossy());
            let launch = Launch {
                stdin: StdinMode::Inherit,
                foreground: true,
                ..Launch::program(self.opts.command.clone())
            };
            let i = self.add_unit(label, Kind::Main, launch, None, self.policy_for_once(true));
            self.main = Some(i);
            self.feed(i, Event::Up, now);
        }
    }

    /// The policy of a unit that runs once: a startup script or the main command.
    fn policy_for_once(&self, drain_group: bool) -> Policy {
        Policy {
            restart: RestartPolicy::Never,
            backoff: Backoff::DEFAULT,
            stop_signal: Signal::SIGTERM,
            stop_timeout: self.opts.defaults.stop_timeout,
            finish_timeout: self.opts.defaults.finish_timeout,
            has_finish: false,
            drain_group,
        }
    }

    fn add_unit(&mut self, label: String, kind: Kind, run: Launch, finish: Option<Launch>, policy: Policy) -> usize {
        self.units.push(Unit {
            label,
            kind,
            run,
            finish,
            life: Lifecycle::new(policy),
            spawn_failure: None,
        });
        self.units.len() - 1
    }

    /// Gives an event to unit `i`'s machine and carries out its actions, and
    /// those of the events they cause (a spawn's result), in order. A queue,
    /// not recursion: a chain of failing spawns cannot grow the stack.
    fn feed(&mut self, i: usize, event: Event, now: Instant) {
        let mut queue = VecDeque::from([(i, event)]);
        while let Some((i, event)) = queue.pop_front() {
            for action in self.units[i].life.on(event, now) {
                if let Some(event) = self.act(i, action) {
                    queue.push_back((i, event));
                }
            }
        }
    }

    /// Carries out one action; returns the event it causes, if any.
    fn act(&mut self, i: usize, action: Action) -> Option<Event> {
        let unit = &mut self.units[i];
        match action {
            Action::StartRun => match spawn::spawn(&unit.run, &[]) {
                Ok(pid) => {
                    // Registered before the next drain can see it exit.
                    self.pids.insert(pid, (i, Role::Run));
                    unit.spawn_failure = None;
                    info!("{}: started (pid {pid})", unit.label);
                    Some(Event::Spawned(pid))
                }
                Err(e) => {
                    error!("{}: {e}", unit.label);
                    unit.spawn_failure = Some(e.failure());
                    Some(Event::SpawnFailed)
                }
            },
            Action::StartFinish { exit } => {
                let Some(finish) = &unit.finish else {
                    return Some(Event::SpawnFailed);
                };
                let (code, signal) = exit.map_or((-1, 0), ExitStatus::finish_args);
                let args = [OsString::from(code.to_string()), OsString::from(signal.to_string())];
                match spawn::spawn(finish, &args) {
                    Ok(pid) => {
                        self.pids.insert(pid, (i, Role::Finish));
                        debug!("{}: finish started (pid {pid}) with {code} {signal}", unit.label);
                        Some(Event::Spawned(pid))
                    }
                    Err(e) => {
                        error!("{}: finish: {e}", unit.label);
                        Some(Event::SpawnFailed)
                    }
                }
            }
            Action::SignalGroup { pgid, signal, why } => {
                let policy = unit.life.policy();
                match (why, signal) {
                    (_, Signal::SIGCONT) => {}
                    (Why::Stop, _) => info!("{}: stopping: {signal} to process group {pgid}", unit.label),
                    (Why::Leftovers, _) => info!(
                        "{}: run exited but left processes in group {pgid}: sending {signal}",
                        unit.label
                    ),
                    (Why::StopTimeout, _) => warn!(
                        "{}: still running {} ms after the stop signal: {signal} to group {pgid}",
                        unit.label,
                        policy.stop_timeout.as_millis()
                    ),
                    (Why::FinishTimeout, _) => warn!(
                        "{}: finish still running after {} ms: {signal} to group {pgid}",
                        unit.label,
                        policy.finish_timeout.as_millis()
                    ),
                }
                process_group::signal(pgid, signal, self.pids.contains_key(&pgid));
                None
            }
            Action::AbandonGroup { pgid } => {
                warn!("{}: processes of group {pgid} survived SIGKILL; moving on", unit.label);
                // Whenever it does exit, it is an orphan, not this unit's.
                self.pids.remove(&pgid);
                None
            }
            Action::Restart { after } => {
                let why = unit
                    .life
                    .last_exit()
                    .and_then(|e| e.status)
                    .map_or("it could not start".to_owned(), |s| format!("{s}"));
                if after.is_zero() {
                    info!("{}: restarting now ({why})", unit.label);
                } else {
                    info!("{}: restarting in {} ms ({why})", unit.label, after.as_millis());
                }
                None
            }
            Action::Settled => {
                if unit.kind == Kind::Service && !unit.life.wants_down() {
                    info!("{}: not restarting (restart policy)", unit.label);
                } else {
                    debug!("{}: down", unit.label);
                }
                None
            }
        }
    }

    fn reap(&mut self, now: Instant) {
        let drain = reaper::drain();
        // First attribute every exit, then feed them: feeding can start new
        // children, which may be given a pid this very drain freed.
        let mut events = Vec::new();
        for child in &drain.reaped {
            match self.pids.remove(&child.pid) {
                Some((i, Role::Run)) => {
                    let unit = &self.units[i];
                    let group_empty = !unit.life.policy().drain_group || process_group::is_empty(child.pid);
                    match (unit.kind, child.status) {
                        (Kind::Service, status) if unit.life.wants_down() || status.success() => {
                            info!("{}: exited with {status}", unit.label)
                        }
                        (Kind::Service, status) => warn!("{}: exited with {status}", unit.label),
                        (_, status) => info!("{}: exited with {status}", unit.label),
                    }
                    events.push((
                        i,
                        Event::RunExited {
                            status: child.status,
                            group_empty,
                        },
                    ));
                }
                Some((i, Role::Finish)) => {
                    debug!("{}: finish exited with {}", self.units[i].label, child.status);
                    events.push((i, Event::FinishExited));
                }
                None => {
                    self.orphans_reaped += 1;
                    debug!("reaped orphan {} ({})", child.pid, child.status);
                }
            }
        }
        for (i, event) in events {
            self.feed(i, event, now);
        }
        self.check_draining_groups(now);
        self.no_children = drain.no_children;
        if let Phase::KillAll { signal, .. } = self.phase
            && !drain.reaped.is_empty()
            && self.opts.kill_all == KillAll::Descendants
        {
            // Grandchildren re-parented to us by those exits are new children.
            shutdown::signal_remaining(KillAll::Descendants, signal);
        }
        self.advance(now);
    }

    /// Tells units waiting for their `run`'s group to vanish that it has.
    /// Checked after every reap, and before every deadline: the last member of
    /// a group need not be our child, so its death may bring no SIGCHLD.
    fn check_draining_groups(&mut self, now: Instant) {
        for i in 0..self.units.len() {
            if let Some(pgid) = self.units[i].life.draining_group()
                && process_group::is_empty(pgid)
            {
                self.feed(i, Event::GroupEmpty, now);
            }
        }
    }

    fn on_stop_signal(&mut self, signal: Signal, now: Instant) {
        match self.phase {
            Phase::Stopping(_) | Phase::KillAll { .. } | Phase::Done => {
                info!("received {signal} again: already shutting down");
            }
            _ => {
                info!("received {signal}: shutting down");
                self.begin_shutdown(StopReason::Signal(signal), now);
                self.advance(now);
            }
        }
    }

    /// Signals with no meaning of their own go to the main command.
    fn forward(&mut self, signal: Signal) {
        match self.main.and_then(|m| self.units[m].life.run_pid()) {
            Some(pid) => {
                info!("received {signal}: forwarding it to the main command (pid {pid})");
                if let Err(e) = kill(pid, signal) {
                    warn!("cannot forward {signal} to pid {pid}: {e}");
                }
            }
            None => info!("received {signal}: ignored (no main command running)"),
        }
    }

    fn on_tick(&mut self, now: Instant) {
        self.check_draining_groups(now);
        for i in 0..self.units.len() {
            if self.units[i].life.deadline().is_some_and(|d| d <= now) {
                self.feed(i, Event::Tick, now);
            }
        }
        if let Phase::KillAll { signal, until } = self.phase
            && now >= until
        {
            if signal == Signal::SIGTERM {
                info!(
                    "processes left {} ms after SIGTERM: sending SIGKILL to all",
                    self.opts.kill_all_grace.as_millis()
                );
                shutdown::signal_remaining(self.opts.kill_all, Signal::SIGKILL);
                self.phase = Phase::KillAll {
                    signal: Signal::SIGKILL,
                    until: now + KILL_WAIT,
                };
            } else {
                warn!("processes survived SIGKILL (uninterruptible sleep?): exiting anyway");
                self.phase = Phase::Done;
            }
        }
        self.advance(now);
    }

    fn next_wake(&self) -> Option<Instant> {
        let phase = match &self.phase {
            Phase::Stopping(plan) => Some(plan.services_by),
            Phase::KillAll { until, .. } => Some(*until),
            _ => None,
        };
        self.units.iter().filter_map(|u| u.life.deadline()).chain(phase).min()
    }

    fn begin_shutdown(&mut self, reason: StopReason, now: Instant) {
        if matches!(self.phase, Phase::Stopping(_) | Phase::KillAll { .. } | Phase::Done) {
            return;
        }
        self.reason = Some(reason);
        self.stop_started = Some(now);
        match reason {
            StopReason::Signal(_) => {}
            StopReason::MainExited => info!("main command ended: shutting down"),
            StopReason::BootFailed => error!("boot failed: shutting down"),
        }
        let plan = StopPlan::new(
            now,
            self.units.iter().filter(|u| !u.life.is_down()).map(|u| u.life.policy()),
            self.opts.kill_all,
            self.opts.kill_all_grace,
        );
        debug!("stop plan: at most {} ms", plan.worst_case().as_millis());
        self.phase = Phase::Stopping(plan);
        for i in 0..self.units.len() {
            self.feed(i, Event::Down, now);
        }
    }

    fn begin_kill_all(&mut self, plan: StopPlan, now: Instant) {
        if plan.kill_all == KillAll::Off {
            self.phase = Phase::Done;
            return;
        }
        shutdown::signal_remaining(plan.kill_all, Signal::SIGTERM);
        self.phase = Phase::KillAll {
            signal: Signal::SIGTERM,
            until: now + plan.kill_all_grace,
        };
        // Often nothing is left: find out now rather than at the next SIGCHLD.
        let drain = reaper::drain();
        for child in &drain.reaped {
            if self.pids.remove(&child.pid).is_none() {
                self.orphans_reaped += 1;
            }
        }
        self.no_children = drain.no_children;
    }

    fn outcome(&self) -> Outcome {
        match self.reason {
            Some(StopReason::BootFailed) => Outcome::BootFailed,
            Some(StopReason::MainExited | StopReason::Signal(_)) | None => {
                let Some(main) = self.main.map(|m| &self.units[m]) else {
                    return Outcome::Stopped;
                };
                if let Some(failure) = main.spawn_failure {
                    return Outcome::MainCommandFailed(failure);
                }
                match main.life.last_exit().and_then(|e| e.status) {
                    Some(status) => Outcome::MainCommand(status),
                    None => Outcome::Stopped,
                }
            }
        }
    }
}
