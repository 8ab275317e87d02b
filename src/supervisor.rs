//! The event loop: owns every unit's state machine and the pid table, and is
//! the only place that spawns, signals and reaps.
//!
//! A unit is anything baseinit starts and watches: a startup script, a
//! service, a service's `log/` logger, a shutdown hook, or the main command.
//! They share one lifecycle machine; only their policies differ. The
//! supervisor walks through phases: startup scripts one at a time, then
//! services and the main command, then (on a signal, the main command's exit
//! or a failed boot) the pre-shutdown hooks, the stop of all units, the
//! post-shutdown hooks, the kill-all, and exit.

use std::collections::{HashMap, HashSet, VecDeque};
use std::ffi::OsString;
use std::os::fd::{AsFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime};

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use tokio::signal::unix::{SignalKind, signal};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tracing::{debug, error, info, warn};

use crate::config::{self, Defaults, OutputMode, Readiness, ReadyCheck, ServiceSpec, is_executable_file};
use crate::container_env::{BootExport, ContainerEnv, EnvPaths, Vars};
use crate::exit::{ExitStatus, Outcome, SpawnFailure};
use crate::output::{self, Stream};
use crate::process_group;
use crate::reaper;
use crate::runit::{self, Command, RunState, Status, Supervise};
use crate::service::{
    Action, Backoff, Event, FailureAction, FailurePolicy, KILL_WAIT, Lifecycle, Policy, RestartPolicy, State, Why,
};
use crate::shutdown::{self, KillAll, StopPlan};
use crate::spawn::{self, ExecReports, Launch, Redirect, SpawnError, StdinMode};
use crate::startup;
use crate::status;
use crate::watch::ServiceWatch;

/// What the supervisor is told to do, from the command line.
#[derive(Clone, Debug)]
pub struct Options {
    pub service_dir: PathBuf,
    /// A missing service directory is an error (it was named explicitly).
    pub service_dir_required: bool,
    pub skip_services: bool,
    /// The startup directory and rc.local; None with `--skip-startup-files`.
    pub startup: Option<(PathBuf, PathBuf)>,
    /// `--enable-insecure-key`: this script runs first, and must exist.
    pub insecure_key: Option<PathBuf>,
    pub pre_shutdown_dir: PathBuf,
    pub post_shutdown_dir: PathBuf,
    /// Each hook phase (pre, post) as a whole may take this long.
    pub hook_timeout: Duration,
    /// Where runit state goes when a service directory is read-only.
    pub runtime_dir: PathBuf,
    /// The container environment's directory and dumps.
    pub env: EnvPaths,
    /// Where services' output goes unless their service.toml says.
    pub output: OutputMode,
    /// How prefixed service lines look.
    pub style: output::Style,
    pub command: Vec<OsString>,
    pub defaults: Defaults,
    pub kill_all: KillAll,
    pub kill_all_grace: Duration,
    /// A startup script still running after this long is stopped, and boot
    /// fails (`--startup-timeout`, `STARTUP_TIMEOUT`).
    pub startup_timeout: Option<Duration>,
    /// `--wait-for-services`: the main command starts once every service is
    /// ready; Some(None) waits without limit.
    pub wait_for_services: Option<Option<Duration>>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    Startup,
    Service,
    Logger,
    Hook,
    Main,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Role {
    Run,
    Finish,
    /// A probe of the run with pid `run`: its `[health]` command, or its
    /// readiness one (`[ready] command`, `check`).
    Probe {
        run: Pid,
        health: bool,
    },
    /// A `control/C` script overriding command C (`letter`); exit 0
    /// suppresses the default.
    Control {
        command: Command,
        letter: char,
    },
}

struct Unit {
    /// For logs: "service web", "startup script /etc/my_init.d/10_x", "main command sh".
    label: String,
    kind: Kind,
    /// The service's name ("web", "web/log"); empty for other kinds.
    name: String,
    /// The service directory (for `control/`); None for other kinds.
    dir: Option<PathBuf>,
    fingerprint: u64,
    /// `essential = true`.
    essential: bool,
    /// Started after these are ready, stopped before them.
    after: Vec<String>,
    /// Stopped when one of these goes down for good.
    requires: Vec<String>,
    readiness: Readiness,
    /// `[health]`: probed once the run is ready.
    health: Option<Readiness>,
    /// The current run is ready.
    ready: bool,
    /// Wanted up, but waiting for its `after` services to be ready.
    waiting: bool,
    /// Down because a service it requires went down; back when it is ready.
    held: bool,
    /// Shutdown: to be stopped once nothing that depends on it is up.
    stop_pending: bool,
    /// A retired logger run again to empty its pipe: how many bytes the pipe
    /// held before the last such run (each run must make progress).
    drained_from: Option<i32>,
    /// A command probe: when the next one runs, and how many failed.
    probe_at: Option<Instant>,
    /// A running command probe and its deadline.
    probe_running: Option<(Pid, Instant)>,
    probe_failures: u32,
    /// A notification-fd or TCP probe task for the current run.
    probe_task: Option<JoinHandle<()>>,
    run: Launch,
    finish: Option<Launch>,
    life: Lifecycle,
    /// Why the last start failed, if it did.
    spawn_failure: Option<SpawnFailure>,
    supervise: Option<Supervise>,
    /// When the runit-visible state last changed.
    status_since: SystemTime,
    paused: bool,
    got_term: bool,
    /// A write of the runit state failed already (warned once).
    state_write_failed: bool,
    /// The runit state changed and is in `Supervisor::publish_due`.
    publish_queued: bool,
    control_task: Option<JoinHandle<()>>,
    /// A service's logger (index into `units`).
    logger: Option<usize>,
    /// A service with a logger: our copy of the pipe's write end, its run's
    /// and finish's stdout. Dropped once the service is down for good, so the
    /// logger reads to EOF. A logger: the read end, its stdin.
    log_pipe: Option<OwnedFd>,
    /// Its output is prefixed: each of its processes gets fresh pipes for
    /// stdout and stderr, read by baseinit (see `output`).
    prefix: bool,
    /// Being replaced (changed definition) or removed by a rescan: what comes
    /// after it settles.
    leaving: Option<Leaving>,
    /// Gone: no longer supervised. Its slot may be reused (see `add_unit`).
    retired: bool,
    /// Tells this unit from earlier ones that held the same slot.
    generation: u64,
}

/// A unit as named in messages that may arrive after it is gone: its slot
/// and the generation that held it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct UnitToken {
    pub index: usize,
    pub generation: u64,
}

/// One process's output pipes: (read end, write end) for stdout and stderr.
struct ChildOutput {
    stdout: (OwnedFd, OwnedFd),
    stderr: (OwnedFd, OwnedFd),
}

enum Leaving {
    Removed,
    /// The latest definition, and whether it starts down (an operator's
    /// `sv down` of the old one carries over).
    Replaced {
        spec: Box<ServiceSpec>,
        down: bool,
    },
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum StopReason {
    Signal(Signal),
    MainExited,
    BootFailed,
    /// An essential service ended for good, or a service failed with
    /// `on-failure = "exit"` (index into `units`).
    ServiceEnded(usize),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum HookStage {
    Pre,
    Post,
}

/// How long a shutdown goes without updating the services' runit state
/// (`supervise/stat`, `status`, `pid`). Each update is three file creations
/// and renames per service, which on a disk took most of a 3-service stop
/// (2 ms of 3.3). A stop that is over by then leaves the files as they were
/// (the next boot rewrites them); a longer one shows every service's state
/// from then on, and ends with them written.
const STATE_DURING_SHUTDOWN: Duration = Duration::from_millis(100);

/// How long one turn of the event loop goes on making supervise directories
/// before it looks at its events again. Each is six file creations; on a
/// busy disk 200 services' took 0.6 s, which held a `docker stop` (and every
/// reap) up that long. The rest are made in the next turns.
const SUPERVISE_PER_TURN: Duration = Duration::from_millis(5);

#[derive(Debug)]
enum Phase {
    /// Startup scripts, one at a time; `current` indexes `units`.
    Startup {
        pending: VecDeque<PathBuf>,
        current: Option<usize>,
    },
    Running,
    /// Shutdown hooks, one at a time, the stage as a whole done by `until`.
    Hooks {
        stage: HookStage,
        pending: VecDeque<PathBuf>,
        current: Option<usize>,
        until: Instant,
    },
    Stopping(StopPlan),
    /// The final kill-all: `signal` was sent; the next step is at `until`.
    KillAll {
        signal: Signal,
        until: Instant,
    },
    Done,
}

/// How long after the last change in the service directory a rescan runs:
/// `cp -r` or an unpacked tarball is a burst of events, one rescan is enough.
const RESCAN_SETTLE: Duration = Duration::from_millis(100);

/// What reaches the supervisor from its helper tasks.
pub struct Channels {
    /// Bytes from services' `supervise/control` FIFOs.
    pub commands: mpsc::UnboundedReceiver<(UnitToken, u8)>,
    /// Probe tasks: this run of this unit is ready.
    ready: mpsc::UnboundedReceiver<(usize, Pid)>,
    /// TCP health probes: this run of this unit passed (true) or failed.
    probe_results: mpsc::UnboundedReceiver<(usize, Pid, bool)>,
}

/// What woke the event loop, with what came with it.
enum Woken {
    Child,
    Stop(Signal),
    Hangup,
    Forward(Signal),
    Command(UnitToken, u8),
    Status(status::Request),
    Ready(usize, Pid),
    Probe(usize, Pid, bool),
    Watched,
    Tick,
}

pub struct Supervisor {
    opts: Options,
    units: Vec<Unit>,
    /// Active services and loggers by name.
    by_name: HashMap<String, usize>,
    /// Every child we started and have not reaped yet.
    pids: HashMap<Pid, (usize, Role)>,
    phase: Phase,
    reason: Option<StopReason>,
    main: Option<usize>,
    /// The last drain found no child at all.
    no_children: bool,
    orphans_reaped: u64,
    stop_started: Option<Instant>,
    commands: mpsc::UnboundedSender<(UnitToken, u8)>,
    rescan_at: Option<Instant>,
    /// Units whose runit state is to be written once the current wake-up is
    /// handled (see `publish`).
    publish_due: Vec<usize>,
    /// Supervise directories to make once the current wake-up is handled
    /// (see `open_and_start`).
    supervise_due: Vec<(UnitToken, PathBuf)>,
    /// The last unit generation handed out (see `UnitToken`).
    next_generation: u64,
    /// The environment every child gets; None until boot imported it.
    env: Option<ContainerEnv>,
    /// The container environment's boot export, under way from `new` to `boot`.
    boot_export: Option<BootExport>,
    /// The service definitions, when boot read them while the container
    /// environment was being written (no startup script ran in between).
    preloaded: Option<Result<Vec<ServiceSpec>, Vec<config::ConfigError>>>,
    started_at: Instant,
    /// Where prefixed output goes; None when its writer could not start.
    sink: Option<output::Sink>,
    /// The tasks reading services' output pipes, awaited at exit.
    readers: Vec<JoinHandle<()>>,
    /// Probe tasks report a ready run here: (unit, run pid).
    ready_tx: mpsc::UnboundedSender<(usize, Pid)>,
    /// TCP health probes report here: (unit, run pid, passed).
    probe_tx: mpsc::UnboundedSender<(usize, Pid, bool)>,
    /// The main command waits for the services until then (`--wait-for-services`).
    main_waits: Option<Option<Instant>>,
    /// /dev/null, for readiness probes' output.
    devnull: Option<OwnedFd>,
    /// How children report a failed exec; None until `run` made it.
    exec_reports: Option<ExecReports>,
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

/// Waits for the service watch, or forever when there is none.
async fn watched(watch: &mut Option<ServiceWatch>) {
    match watch {
        Some(watch) => watch.changed().await,
        None => std::future::pending().await,
    }
}

impl Supervisor {
    /// A supervisor, and the receiving end of the channel that carries
    /// `supervise/control` commands to it.
    pub fn new(opts: Options) -> (Self, Channels) {
        // As early as it can be: its writes take longer than the rest of boot
        // until the first service (see `boot`).
        let boot_export = ContainerEnv::start_boot(opts.env.clone(), std::env::vars_os());
        let (commands, received) = mpsc::unbounded_channel();
        let (ready_tx, ready) = mpsc::unbounded_channel();
        let (probe_tx, probe_results) = mpsc::unbounded_channel();
        let supervisor = Supervisor {
            opts,
            units: Vec::new(),
            by_name: HashMap::new(),
            pids: HashMap::new(),
            phase: Phase::Running,
            reason: None,
            main: None,
            no_children: false,
            orphans_reaped: 0,
            stop_started: None,
            commands,
            rescan_at: None,
            publish_due: Vec::new(),
            supervise_due: Vec::new(),
            next_generation: 0,
            env: None,
            boot_export: Some(boot_export),
            preloaded: None,
            started_at: Instant::now(),
            sink: None,
            readers: Vec::new(),
            ready_tx,
            probe_tx,
            main_waits: None,
            devnull: std::fs::File::options()
                .write(true)
                .open("/dev/null")
                .ok()
                .map(OwnedFd::from),
            exec_reports: None,
        };
        (
            supervisor,
            Channels {
                commands: received,
                ready,
                probe_results,
            },
        )
    }

    /// Runs everything to the end and says how it ended. For the end of
    /// the process: what it held is left for the exit to free.
    pub async fn run(mut self, channels: Channels) -> Outcome {
        let Channels {
            mut commands,
            mut ready,
            mut probe_results,
        } = channels;
        let mut signals = match Signals::install() {
            Ok(signals) => {
                // Handlers exist: whatever arrived while held is taken now.
                crate::inherited::release_signals();
                signals
            }
            Err(e) => {
                error!("cannot install signal handlers: {e}");
                return Outcome::BootFailed;
            }
        };
        // Spawning does not wait for the exec: a child whose exec fails says
        // so through this pipe. Without it such a failure would look like an
        // ordinary exit 127 and the exit-code table would lie, so baseinit
        // refuses to boot (pipe2 fails only with no fd or memory left).
        match ExecReports::new() {
            Ok(reports) => self.exec_reports = Some(reports),
            Err(e) => {
                error!("cannot create the pipe children report a failed exec through: {e}");
                return Outcome::BootFailed;
            }
        }
        let writer = match output::start(self.opts.style) {
            Ok((sink, writer)) => {
                self.sink = Some(sink);
                Some(writer)
            }
            Err(e) => {
                warn!("cannot start the output writer ({e}): services write to baseinit's stdout directly");
                None
            }
        };
        // Children we inherited (baseinit exec'd by a shell with jobs) may
        // already be zombies with no SIGCHLD left to tell us.
        let batch = crate::logging::batch();
        self.reap(Instant::now());
        self.boot(Instant::now());
        drop(batch);
        // After the first services started: its directory and socket are
        // file creations that would hold them back, and nothing asks before
        // the loop below answers anyway.
        let (status_requests, mut requests) = mpsc::channel::<status::Request>(16);
        if let Some(listener) = status::listen(&self.opts.runtime_dir) {
            tokio::spawn(status::serve(listener, status_requests));
        }
        let mut watch = None;
        // What of the watch must stay open until exit, once it has ended for
        // the stop (the phase never returns to Running, so none is made again).
        let mut _retired_watch = None;
        let mut release = crate::resident::Release::default();
        // For the test that proves a panic ends in an ordered stop: a bug on
        // demand, some time after boot. Never set outside that test.
        let panic_at = std::env::var("BASEINIT_TEST_PANIC_AFTER_MS")
            .ok()
            .and_then(|ms| ms.parse().ok())
            .map(|ms| Instant::now() + Duration::from_millis(ms));
        while !matches!(self.phase, Phase::Done) {
            let batch = crate::logging::batch();
            // What started children no longer use (see `spawn::reclaim`).
            crate::spawn::reclaim();
            self.open_due_supervise();
            self.flush_published();
            if panic_at.is_some_and(|at| Instant::now() >= at) {
                panic!("BASEINIT_TEST_PANIC_AFTER_MS asked for it");
            }
            if watch.is_none() && matches!(self.phase, Phase::Running) && !self.opts.skip_services {
                watch = ServiceWatch::new(&self.opts.service_dir);
                // The watch comes after the boot's scan (its watches would
                // hold back the first services), so what changed in between
                // has no event: one rescan once it is armed catches that
                // (watch, then scan). With nothing changed it is silent.
                if watch.is_some() {
                    self.rescan_at.get_or_insert(Instant::now() + RESCAN_SETTLE);
                }
            }
            if !matches!(self.phase, Phase::Running)
                && let Some(w) = watch.take()
            {
                _retired_watch = w.close();
            }
            // The turn's lines go out before it waits (other tasks log
            // while it waits), and before a release: what runs after one
            // stays mapped, and sending them is not the idle loop's code.
            drop(batch);
            release.on_wake(matches!(self.phase, Phase::Running), Instant::now());
            let wake = self
                .next_wake()
                .into_iter()
                .chain(panic_at)
                .chain(release.deadline())
                // Supervise directories still to make: a turn right away,
                // once the events already waiting are handled (`biased`).
                .chain((!self.supervise_due.is_empty()).then(Instant::now))
                .min();
            let woken = tokio::select! {
                biased;
                _ = signals.child.recv() => Woken::Child,
                _ = signals.terminate.recv() => Woken::Stop(Signal::SIGTERM),
                _ = signals.interrupt.recv() => Woken::Stop(Signal::SIGINT),
                _ = signals.hangup.recv() => Woken::Hangup,
                _ = signals.quit.recv() => Woken::Forward(Signal::SIGQUIT),
                _ = signals.user1.recv() => Woken::Forward(Signal::SIGUSR1),
                _ = signals.user2.recv() => Woken::Forward(Signal::SIGUSR2),
                _ = signals.window.recv() => Woken::Forward(Signal::SIGWINCH),
                Some((token, byte)) = commands.recv() => Woken::Command(token, byte),
                Some(reply) = requests.recv() => Woken::Status(reply),
                Some((i, pid)) = ready.recv() => Woken::Ready(i, pid),
                Some((i, pid, ok)) = probe_results.recv() => Woken::Probe(i, pid, ok),
                () = watched(&mut watch) => Woken::Watched,
                () = sleep_until(wake) => Woken::Tick,
            };
            let _batch = crate::logging::batch();
            let now = Instant::now();
            match woken {
                Woken::Child => self.reap(now),
                Woken::Stop(signal) => self.on_stop_signal(signal, now),
                Woken::Hangup => self.on_hangup(now),
                Woken::Forward(signal) => self.forward(signal),
                Woken::Command(token, byte) => self.on_command(token, byte, now),
                Woken::Status(reply) => {
                    let _ = reply.send(self.snapshot());
                }
                Woken::Ready(i, pid) => self.on_ready(i, pid, now),
                Woken::Probe(i, pid, ok) => {
                    self.probe_result(i, pid, ok, now);
                    self.advance(Instant::now());
                }
                Woken::Watched => self.rescan_at = Some(now + RESCAN_SETTLE),
                Woken::Tick => self.on_tick(now),
            }
        }
        // A quick shutdown leaves the files as they were (see
        // `STATE_DURING_SHUTDOWN`); a long one ends with them all down.
        self.flush_published();
        self.drain_output(writer).await;
        let outcome = self.outcome();
        let took = self.stop_started.map(|t| t.elapsed()).unwrap_or_default();
        info!(
            "exiting with code {} (stop took {} ms; {} orphans reaped)",
            outcome.exit_code(),
            took.as_millis(),
            self.orphans_reaped
        );
        // The process ends now (`main` exits with the outcome): the kernel
        // frees its memory and closes its files all at once, where dropping
        // this state piece by piece (each pipe taken off epoll and closed,
        // each lock file closed, each buffer freed) took about 0.2 ms of a
        // 1.5-2 ms 3-service stop. Nothing in it acts on drop; what had to
        // reach disk (state files, output, log lines) is there or queued
        // already.
        std::mem::forget(self);
        outcome
    }

    fn boot(&mut self, now: Instant) {
        // The export started with the supervisor (see `ContainerEnv::start_boot`):
        // its file creations overlap everything up to here and reading the
        // startup scripts and, when there are none, the service definitions.
        // Nothing runs before it is done.
        let export = self
            .boot_export
            .take()
            .unwrap_or_else(|| ContainerEnv::start_boot(self.opts.env.clone(), std::env::vars_os()));
        let opts = &self.opts;
        let scripts = match &opts.startup {
            None => Ok(Vec::new()),
            Some((dir, rc_local)) => startup::scripts(dir, Some(rc_local)),
        };
        self.preloaded =
            (scripts.as_ref().is_ok_and(Vec::is_empty) && opts.insecure_key.is_none() && !opts.skip_services)
                .then(|| config::load_services(&opts.service_dir, &opts.defaults, opts.service_dir_required));
        self.env = Some(export.finish());
        let mut pending = match scripts {
            Ok(scripts) => scripts,
            Err(message) => {
                error!("{message}");
                self.begin_shutdown(StopReason::BootFailed, now);
                return self.advance(now);
            }
        };
        if let Some(script) = &self.opts.insecure_key {
            if !is_executable_file(script) {
                error!(
                    "--enable-insecure-key: {} is missing or not executable (the image has no insecure key support)",
                    script.display()
                );
                self.begin_shutdown(StopReason::BootFailed, now);
                return self.advance(now);
            }
            pending.insert(0, script.clone());
        }
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
                        // A script may have added, changed or deleted
                        // variables for everything started after it.
                        if let Some(env) = &mut self.env {
                            env.after_startup_script();
                        }
                    }
                    match pending.pop_front() {
                        Some(script) => {
                            let i = self.start_once(Kind::Startup, "startup script", script, now);
                            if let Phase::Startup { current, .. } = &mut self.phase {
                                *current = Some(i);
                            }
                        }
                        None => self.start_services(now),
                    }
                }
                Phase::Running => {
                    self.stop_in_order(now);
                    self.start_waiting(now);
                    if let Some(deadline) = self.main_waits {
                        self.start_main_when_ready(deadline, now);
                        if !matches!(self.phase, Phase::Running) {
                            continue;
                        }
                    } else if let Some(m) = self.main
                        && self.units[m].life.is_down()
                    {
                        self.begin_shutdown(StopReason::MainExited, now);
                        continue;
                    }
                    self.finish_leaving(now);
                    return;
                }
                Phase::Hooks {
                    stage,
                    pending,
                    current,
                    until,
                } => {
                    let (stage, until) = (*stage, *until);
                    if let Some(i) = *current {
                        let unit = &self.units[i];
                        if !unit.life.is_down() {
                            return;
                        }
                        match unit.life.last_exit().and_then(|e| e.status) {
                            Some(status) if status.success() => {}
                            Some(status) => warn!("{} failed with {status}; the shutdown goes on", unit.label),
                            None => warn!("{} could not be started; the shutdown goes on", unit.label),
                        }
                    }
                    if now >= until {
                        if !pending.is_empty() {
                            warn!("shutdown hooks ran out of time: skipping {} more", pending.len());
                        }
                        pending.clear();
                    }
                    match pending.pop_front() {
                        Some(hook) => {
                            let i = self.start_once(Kind::Hook, "shutdown hook", hook, now);
                            if let Phase::Hooks { current, .. } = &mut self.phase {
                                *current = Some(i);
                            }
                        }
                        None => match stage {
                            HookStage::Pre => self.stop_units(now),
                            HookStage::Post => self.begin_kill_all(now),
                        },
                    }
                }
                Phase::Stopping(plan) => {
                    let plan = *plan;
                    self.stop_in_order(now);
                    self.retire_loggers(now);
                    let running: Vec<&str> = self
                        .units
                        .iter()
                        .filter(|u| !u.retired && !u.life.is_down())
                        .map(|u| u.label.as_str())
                        .collect();
                    if !running.is_empty() {
                        if now < plan.services_by {
                            return;
                        }
                        warn!("giving up on stopping {}: moving on", running.join(", "));
                    }
                    info!("all units stopped in {} ms", (now - plan.started).as_millis());
                    self.begin_hooks(HookStage::Post, now);
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

    /// Starts a unit that runs once (a startup script or a hook).
    fn start_once(&mut self, kind: Kind, what: &str, path: PathBuf, now: Instant) -> usize {
        let mut policy = self.policy_for_once(false);
        match kind {
            // A hook stopped for running out of time gets SIGKILL soon after.
            Kind::Hook => policy.stop_timeout = KILL_WAIT,
            Kind::Startup => policy.run_timeout = self.opts.startup_timeout,
            _ => {}
        }
        let label = format!("{what} {}", path.display());
        let i = self.add_unit(label, kind, Launch::program(vec![path.into_os_string()]), None, policy);
        self.feed(i, Event::Up, now);
        i
    }

    /// After the startup scripts: load the service tree, start every service
    /// without a `down` file, then the main command.
    fn start_services(&mut self, now: Instant) {
        self.phase = Phase::Running;
        if !self.opts.skip_services {
            let loaded = self.preloaded.take().unwrap_or_else(|| {
                config::load_services(
                    &self.opts.service_dir,
                    &self.opts.defaults,
                    self.opts.service_dir_required,
                )
            });
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
                self.add_service(spec, false, now);
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
            match self.opts.wait_for_services {
                Some(limit) => self.main_waits = Some(limit.map(|d| now + d)),
                None => self.feed(i, Event::Up, now),
            }
        }
    }

    /// Adds a service (and its logger), opens their supervise directories,
    /// and starts them unless they have a `down` file (or `keep_down`).
    fn add_service(&mut self, mut spec: ServiceSpec, keep_down: bool, now: Instant) {
        let log = spec.log.take();
        let down = match (spec.down, keep_down) {
            (true, _) => Some("has a `down` file"),
            (false, true) => Some("was down by sv before its definition changed"),
            (false, false) => None,
        };
        let (dir, name) = (spec.dir.clone(), spec.name.clone());
        let i = self.add_spec_unit(Kind::Service, spec);
        if let Some(log) = log {
            match nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC) {
                Ok((reader, writer)) => {
                    let log_down = log.down.then_some("has a `down` file");
                    let log_dir = log.dir.clone();
                    let l = self.add_spec_unit(Kind::Logger, *log);
                    self.units[l].log_pipe = Some(reader);
                    self.units[i].log_pipe = Some(writer);
                    self.units[i].logger = Some(l);
                    // The logger first, so it reads from the first line on.
                    self.open_and_start(l, &log_dir, log_down, now);
                }
                Err(e) => error!("service {name}: cannot create the log pipe: {e}; logging to stdout"),
            }
        }
        self.open_and_start(i, &dir, down, now);
    }

    /// A unit for a service or logger definition, known by its name.
    fn add_spec_unit(&mut self, kind: Kind, spec: ServiceSpec) -> usize {
        let i = self.add_unit(
            format!("service {}", spec.name),
            kind,
            spec.run,
            spec.finish,
            spec.policy,
        );
        self.units[i].prefix = spec.output.unwrap_or(self.opts.output) == OutputMode::Prefix && self.sink.is_some();
        let unit = &mut self.units[i];
        unit.dir = Some(spec.dir);
        unit.fingerprint = spec.fingerprint;
        unit.essential = spec.essential;
        unit.after = spec.after;
        unit.requires = spec.requires;
        unit.readiness = spec.readiness;
        unit.health = spec.health;
        unit.name = spec.name.clone();
        self.by_name.insert(spec.name, i);
        i
    }

    /// Fresh pipes for the stdout and stderr of one process of unit `i`, if
    /// its output is prefixed. A failure leaves that process writing to
    /// baseinit's own stdout and stderr.
    fn output_pipes(&self, i: usize) -> Option<ChildOutput> {
        if !self.units[i].prefix {
            return None;
        }
        let pipe = || nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC);
        match (pipe(), pipe()) {
            (Ok(stdout), Ok(stderr)) => Some(ChildOutput { stdout, stderr }),
            (Err(e), _) | (_, Err(e)) => {
                warn!(
                    "{}: cannot create output pipes ({e}): writing to stdout directly",
                    self.units[i].label
                );
                None
            }
        }
    }

    /// Starts reading a spawned process's output; the write ends (given to
    /// the child) are dropped here, so EOF comes when the process is gone.
    fn read_output(&mut self, i: usize, pipes: Option<ChildOutput>) {
        let (Some(pipes), Some(sink)) = (pipes, &self.sink) else {
            return;
        };
        self.readers.retain(|r| !r.is_finished());
        let name = &self.units[i].name;
        for (stream, (reader, writer)) in [(Stream::Stdout, pipes.stdout), (Stream::Stderr, pipes.stderr)] {
            drop(writer);
            match sink.read(name, stream, reader) {
                Ok(task) => self.readers.push(task),
                Err(e) => warn!("{}: cannot read its output: {e}", self.units[i].label),
            }
        }
    }

    /// At exit: wait for the readers (each ends when its process and what it
    /// left are gone: the kill-all saw to that), then for the writer, under
    /// one deadline. Bounded: a process left holding a pipe (no kill-all) or
    /// a stdout nobody reads must not keep PID 1 from exiting.
    async fn drain_output(&mut self, writer: Option<output::Writer>) {
        for unit in &mut self.units {
            unit.log_pipe = None;
        }
        let deadline = Instant::now() + Duration::from_secs(2);
        for reader in std::mem::take(&mut self.readers) {
            // Past the deadline this times out at once: every later reader
            // is aborted, dropping its sender.
            let abort = reader.abort_handle();
            if tokio::time::timeout_at(deadline.into(), reader).await.is_err() {
                abort.abort();
            }
        }
        // The readers' senders are gone now; the writer ends once it wrote
        // what they sent.
        let sink = self.sink.take();
        if let Some(writer) = writer {
            writer.finish(sink, deadline);
        }
    }

    /// Opens unit `i`'s supervise directory and starts it, unless it is to
    /// stay down (and `down` says why).
    fn open_and_start(&mut self, i: usize, dir: &Path, down: Option<&str>, now: Instant) {
        // The supervise directory is made at the end of this wake-up, after
        // every service of it has started: its lock, two FIFOs and state
        // files are file creations that cost more than the fork, and made
        // first they held back every service after this one (the benchmark:
        // 20 services took 1.6 times as long as a shell's `&`).
        let token = UnitToken {
            index: i,
            generation: self.units[i].generation,
        };
        self.supervise_due.push((token, dir.to_owned()));
        if let Some(why) = down {
            info!("{}: {why}, not started", self.units[i].label);
            self.publish(i);
        } else if !self.units[i].after.is_empty() {
            debug!(
                "{}: waiting for {}",
                self.units[i].label,
                self.units[i].after.join(", ")
            );
            self.units[i].waiting = true;
            self.publish(i);
        } else {
            self.feed(i, Event::Up, now);
        }
    }

    /// Makes the supervise directories `open_and_start` left for the end of
    /// the wake-up, for the units that still exist.
    ///
    /// At most [`SUPERVISE_PER_TURN`] of it: the rest waits for the next
    /// turn, after the events that came meanwhile. Once a shutdown has begun
    /// none is made any more: it would only slow the stop down, and `sv`
    /// says `runsv not running` for those services, as it would a moment
    /// later.
    fn open_due_supervise(&mut self) {
        if self.stop_started.is_some() {
            self.supervise_due.clear();
            return;
        }
        let began = Instant::now();
        let mut due = std::mem::take(&mut self.supervise_due).into_iter();
        for (token, dir) in due.by_ref() {
            let current = self
                .units
                .get(token.index)
                .is_some_and(|u| u.generation == token.generation && !u.retired);
            if current {
                self.open_supervise(token.index, &dir);
            }
            if began.elapsed() >= SUPERVISE_PER_TURN {
                break;
            }
        }
        let mut rest: Vec<_> = due.collect();
        rest.append(&mut self.supervise_due);
        self.supervise_due = rest;
    }

    fn open_supervise(&mut self, i: usize, dir: &Path) {
        // A logger's name is NAME/log: its fallback state nests under its
        // service's, where baseinit's `sv` looks for it.
        let name = self.units[i].name.clone();
        match Supervise::open(dir, &self.opts.runtime_dir, &name) {
            Ok((sup, control)) => {
                debug!("{}: runit state in {}", self.units[i].label, sup.dir().display());
                self.units[i].supervise = Some(sup);
                let token = UnitToken {
                    index: i,
                    generation: self.units[i].generation,
                };
                match runit::open_control(&control) {
                    Ok(receiver) => {
                        self.units[i].control_task = Some(tokio::spawn(runit::read_commands(
                            receiver,
                            control,
                            token,
                            self.commands.clone(),
                        )));
                    }
                    Err(e) => warn!(
                        "{}: cannot read commands from {}: {e}",
                        self.units[i].label,
                        control.display()
                    ),
                }
                self.publish(i);
            }
            Err(e) => warn!("{}: no runit state (sv cannot control it): {e}", self.units[i].label),
        }
    }

    /// The policy of a unit that runs once: a startup script, a hook, the
    /// main command.
    fn policy_for_once(&self, drain_group: bool) -> Policy {
        Policy {
            restart: RestartPolicy::Never,
            backoff: Backoff::DEFAULT,
            stop_signal: Signal::SIGTERM,
            stop_timeout: self.opts.defaults.stop_timeout,
            finish_timeout: self.opts.defaults.finish_timeout,
            has_finish: false,
            drain_group,
            failure: FailurePolicy::DEFAULT,
            run_timeout: None,
        }
    }

    /// A service that ends the container: the first one decides the exit
    /// code; any later one changes nothing (the shutdown is under way).
    fn service_ended(&mut self, i: usize) {
        self.begin_shutdown(StopReason::ServiceEnded(i), Instant::now());
    }

    /// A slot for a new unit: a retired unit's when one is free, so that
    /// services added and removed for months do not grow PID 1's memory.
    /// Free means nothing can still refer to it: down, no process of its
    /// own (a run, finish, probe or control script) left to reap, no
    /// draining group, no probe task, and no live unit's logger.
    fn free_slot(&mut self) -> Option<usize> {
        let busy: HashSet<usize> = self
            .pids
            .values()
            .map(|(i, _)| *i)
            .chain(self.units.iter().filter(|u| !u.retired).filter_map(|u| u.logger))
            .chain(self.main)
            .collect();
        let free = self.units.iter().enumerate().position(|(i, u)| {
            u.retired
                && !busy.contains(&i)
                && u.life.is_down()
                && u.life.draining_group().is_none()
                && u.probe_running.is_none()
                && u.probe_task.as_ref().is_none_or(JoinHandle::is_finished)
        })?;
        // Retired services that named it as their logger forget it.
        for unit in self.units.iter_mut().filter(|u| u.logger == Some(free)) {
            unit.logger = None;
        }
        Some(free)
    }

    fn add_unit(&mut self, label: String, kind: Kind, run: Launch, finish: Option<Launch>, policy: Policy) -> usize {
        self.next_generation += 1;
        let unit = Unit {
            label,
            kind,
            name: String::new(),
            dir: None,
            fingerprint: 0,
            essential: false,
            after: Vec::new(),
            requires: Vec::new(),
            readiness: Readiness::started(),
            health: None,
            ready: false,
            waiting: false,
            held: false,
            stop_pending: false,
            drained_from: None,
            probe_at: None,
            probe_running: None,
            probe_failures: 0,
            probe_task: None,
            run,
            finish,
            life: Lifecycle::new(policy),
            spawn_failure: None,
            supervise: None,
            status_since: SystemTime::now(),
            paused: false,
            got_term: false,
            state_write_failed: false,
            publish_queued: false,
            control_task: None,
            logger: None,
            log_pipe: None,
            prefix: false,
            leaving: None,
            retired: false,
            generation: self.next_generation,
        };
        match self.free_slot() {
            Some(i) => {
                self.units[i] = unit;
                i
            }
            None => {
                self.units.push(unit);
                self.units.len() - 1
            }
        }
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
            self.publish(i);
        }
    }

    /// The environment children get.
    fn base_env(&self) -> &Vars {
        static EMPTY: Vars = Vars::new();
        self.env.as_ref().map_or(&EMPTY, ContainerEnv::vars)
    }

    /// Starts `launch` (see `spawn::spawn`) with the container environment.
    /// A failed exec comes later, when the reaper reaps the child.
    fn spawn(&self, launch: &Launch, extra_args: &[OsString], redirect: Redirect<'_>) -> Result<Pid, SpawnError> {
        let Some(reports) = &self.exec_reports else {
            // `run` made the pipe before anything starts.
            let missing = std::io::Error::other("no exec report pipe");
            return Err(SpawnError::new(launch, missing));
        };
        spawn::spawn(launch, extra_args, self.base_env(), redirect, reports)
    }

    /// The stdio of a process of unit `i`: a service writes its stdout to
    /// its logger's pipe if it has a logger, else to its output pipe; a
    /// logger reads the log pipe; stderr goes to the output pipe.
    fn redirect<'a>(&'a self, i: usize, pipes: Option<&'a ChildOutput>) -> Redirect<'a> {
        let unit = &self.units[i];
        let log = unit.log_pipe.as_ref().map(|fd| fd.as_fd());
        let (out, err) = match pipes {
            Some(p) => (Some(p.stdout.1.as_fd()), Some(p.stderr.1.as_fd())),
            None => (None, None),
        };
        match unit.kind {
            Kind::Service => Redirect {
                stdin: None,
                stdout: log.or(out),
                stderr: err,
                notify: None,
                notify_socket: None,
            },
            Kind::Logger => Redirect {
                stdin: log,
                stdout: out,
                stderr: err,
                notify: None,
                notify_socket: None,
            },
            _ => Redirect::default(),
        }
    }

    /// Carries out one action; returns the event it causes, if any.
    fn act(&mut self, i: usize, action: Action) -> Option<Event> {
        match action {
            Action::StartRun => {
                // s6's readiness: a pipe whose write end the run gets at its fd.
                let notify = match self.units[i].readiness.check {
                    ReadyCheck::NotificationFd(fd) => match nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC) {
                        Ok(pipe) => Some((pipe, fd)),
                        Err(e) => {
                            warn!("{}: cannot create its notification pipe: {e}", self.units[i].label);
                            None
                        }
                    },
                    _ => None,
                };
                let sd_notify = self.sd_notify_socket(i);
                let pipes = self.output_pipes(i);
                let mut redirect = self.redirect(i, pipes.as_ref());
                redirect.notify = notify.as_ref().map(|((_, w), fd)| (w.as_fd(), *fd));
                redirect.notify_socket = sd_notify.as_ref().map(|(path, _)| path.as_path());
                let result = self.spawn(&self.units[i].run, &[], redirect);
                self.read_output(i, pipes);
                match result {
                    Ok(pid) => {
                        // Registered before the next drain can see it exit.
                        self.pids.insert(pid, (i, Role::Run));
                        let unit = &mut self.units[i];
                        unit.spawn_failure = None;
                        unit.got_term = false;
                        info!("{}: started (pid {pid})", unit.label);
                        self.start_probe(i, pid, notify.map(|((r, _), _)| r), sd_notify.map(|(_, s)| s));
                        Some(Event::Spawned(pid))
                    }
                    Err(e) => {
                        let unit = &mut self.units[i];
                        error!("{}: {e}", unit.label);
                        unit.spawn_failure = Some(e.failure());
                        Some(Event::SpawnFailed)
                    }
                }
            }
            Action::StartFinish { exit } => {
                let unit = &self.units[i];
                let Some(finish) = &unit.finish else {
                    return Some(Event::SpawnFailed);
                };
                let (code, signal) = exit.map_or((-1, 0), ExitStatus::finish_args);
                let args = [OsString::from(code.to_string()), OsString::from(signal.to_string())];
                let pipes = self.output_pipes(i);
                let result = self.spawn(finish, &args, self.redirect(i, pipes.as_ref()));
                self.read_output(i, pipes);
                let label = &self.units[i].label;
                match result {
                    Ok(pid) => {
                        self.pids.insert(pid, (i, Role::Finish));
                        debug!("{label}: finish started (pid {pid}) with {code} {signal}");
                        Some(Event::Spawned(pid))
                    }
                    Err(e) => {
                        error!("{label}: finish: {e}");
                        Some(Event::SpawnFailed)
                    }
                }
            }
            Action::SignalGroup { pgid, signal, why } => {
                let unit = &mut self.units[i];
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
                    (Why::Command, _) => info!("{}: {signal} to process group {pgid} (sv)", unit.label),
                }
                if matches!(why, Why::Stop | Why::Command) && signal == Signal::SIGTERM {
                    unit.got_term = true;
                }
                process_group::signal(pgid, signal, self.pids.contains_key(&pgid));
                None
            }
            Action::AbandonGroup { pgid } => {
                warn!(
                    "{}: processes of group {pgid} survived SIGKILL; moving on",
                    self.units[i].label
                );
                // Whenever it does exit, it is an orphan, not this unit's.
                self.pids.remove(&pgid);
                None
            }
            Action::Restart { after } => {
                let unit = &self.units[i];
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
                let unit = &self.units[i];
                // A retired logger that stopped before reading everything
                // (it exited on its own just then): once more, to EOF, for
                // as long as each run reads something (one that never reads
                // must not loop).
                let input_closed = self.units.iter().any(|u| u.logger == Some(i) && u.log_pipe.is_none());
                let left = unread(unit);
                if unit.kind == Kind::Logger
                    && unit.life.wants_down()
                    && input_closed
                    && left > 0
                    && unit.drained_from.is_none_or(|before| left < before)
                {
                    self.units[i].drained_from = Some(left);
                    debug!("{}: lines left in its pipe: one more run", self.units[i].label);
                    return Some(Event::Drain);
                }
                if matches!(unit.kind, Kind::Service | Kind::Logger) && !unit.life.wants_down() {
                    info!("{}: not restarting (restart policy)", unit.label);
                    if unit.essential {
                        error!("{}: an essential service ended: shutting down", unit.label);
                        self.service_ended(i);
                    }
                } else {
                    debug!("{}: down", unit.label);
                }
                if !self.units[i].life.finished_ok() {
                    self.hold_dependents(i);
                }
                None
            }
            Action::Failed { action } => {
                let unit = &self.units[i];
                let failure = unit.life.policy().failure;
                let what = match action {
                    FailureAction::RestartLater(after) => format!("retrying in {} s", after.as_secs()),
                    FailureAction::Stop => "it stays down until `sv up`".to_owned(),
                    FailureAction::Exit => "shutting down (on-failure = \"exit\")".to_owned(),
                };
                error!(
                    "{}: failed: {} restarts within {} s; {what}",
                    unit.label,
                    failure.max_restarts,
                    failure.window.as_secs()
                );
                if action == FailureAction::Exit || unit.essential {
                    self.service_ended(i);
                }
                self.hold_dependents(i);
                None
            }
            Action::TimedOut => {
                let unit = &self.units[i];
                let after = unit.life.policy().run_timeout.unwrap_or_default();
                error!(
                    "{}: still running after {} ms: stopping it",
                    unit.label,
                    after.as_millis()
                );
                None
            }
        }
    }

    /// systemd's readiness protocol: a datagram socket for the next run of
    /// unit `i`, in the runtime directory, owned by the service's user.
    fn sd_notify_socket(&self, i: usize) -> Option<(PathBuf, tokio::net::UnixDatagram)> {
        let unit = &self.units[i];
        if unit.readiness.check != ReadyCheck::SdNotify {
            return None;
        }
        let dir = self.opts.runtime_dir.join("notify");
        let path = dir.join(format!("{}.sock", unit.name.replace('/', "_")));
        let made = std::fs::create_dir_all(&dir)
            .and_then(|()| match std::fs::remove_file(&path) {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e),
                _ => Ok(()),
            })
            .and_then(|()| tokio::net::UnixDatagram::bind(&path))
            .and_then(|socket| {
                if let Some(creds) = &unit.run.credentials {
                    nix::unistd::chown(&path, Some(creds.uid), Some(creds.gid)).map_err(std::io::Error::from)?;
                }
                Ok(socket)
            });
        match made {
            Ok(socket) => Some((path, socket)),
            Err(e) => {
                warn!(
                    "{}: cannot create its NOTIFY_SOCKET in {} ({e}): it will never be ready",
                    unit.label,
                    dir.display()
                );
                None
            }
        }
    }

    /// A run just started: begin telling when it is ready.
    fn start_probe(
        &mut self,
        i: usize,
        pid: Pid,
        notify: Option<OwnedFd>,
        sd_notify: Option<tokio::net::UnixDatagram>,
    ) {
        let unit = &mut self.units[i];
        unit.ready = false;
        unit.probe_failures = 0;
        unit.probe_at = None;
        if let Some(task) = unit.probe_task.take() {
            task.abort();
        }
        let readiness = unit.readiness.clone();
        match readiness.check {
            ReadyCheck::Started => {
                unit.ready = true;
                unit.probe_at = unit.health.as_ref().map(|h| Instant::now() + h.interval);
            }
            ReadyCheck::Command(_) => unit.probe_at = Some(Instant::now()),
            ReadyCheck::Tcp(addr) => {
                let ready = self.ready_tx.clone();
                unit.probe_task = Some(tokio::spawn(async move {
                    for _ in 0..readiness.retries.max(1) {
                        let attempt = tokio::net::TcpStream::connect(addr.as_str());
                        if let Ok(Ok(_)) = tokio::time::timeout(readiness.timeout, attempt).await {
                            let _ = ready.send((i, pid));
                            return;
                        }
                        tokio::time::sleep(readiness.interval).await;
                    }
                    warn!("{addr}: never accepted a connection: the service stays not ready");
                }));
            }
            ReadyCheck::SdNotify => {
                let Some(socket) = sd_notify else {
                    return;
                };
                let ready = self.ready_tx.clone();
                unit.probe_task = Some(tokio::spawn(async move {
                    let mut buf = vec![0u8; 4096];
                    while let Ok(n) = socket.recv(&mut buf).await {
                        if buf[..n].split(|b| *b == b'\n').any(|line| line == b"READY=1") {
                            let _ = ready.send((i, pid));
                            return;
                        }
                    }
                }));
            }
            ReadyCheck::NotificationFd(_) => {
                let Some(reader) = notify.and_then(|fd| tokio::net::unix::pipe::Receiver::from_owned_fd(fd).ok())
                else {
                    return;
                };
                let ready = self.ready_tx.clone();
                unit.probe_task = Some(tokio::spawn(async move {
                    let mut buf = [0u8; 64];
                    loop {
                        if reader.readable().await.is_err() {
                            return;
                        }
                        match reader.try_read(&mut buf) {
                            Ok(0) => return, // closed without saying ready
                            Ok(n) if buf[..n].contains(&b'\n') => {
                                let _ = ready.send((i, pid));
                                return;
                            }
                            Ok(_) => {}
                            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
                            Err(_) => return,
                        }
                    }
                }));
            }
        }
        if self.units[i].ready {
            debug!("{}: ready (as soon as it runs)", self.units[i].label);
        }
    }

    /// A probe task says run `pid` of unit `i` is ready.
    fn on_ready(&mut self, i: usize, pid: Pid, now: Instant) {
        let Some(unit) = self.units.get_mut(i) else {
            return;
        };
        if unit.life.run_pid() == Some(pid) && !unit.ready {
            self.mark_ready(i, now);
        }
        self.advance(now);
    }

    /// The current run of unit `i` is ready: readiness probing ends, health
    /// probing (if any) begins.
    fn mark_ready(&mut self, i: usize, now: Instant) {
        let unit = &mut self.units[i];
        unit.ready = true;
        unit.probe_failures = 0;
        unit.probe_at = unit.health.as_ref().map(|h| now + h.interval);
        info!("{}: ready", unit.label);
    }

    /// A probe of run `run` of unit `i` passed or failed: a readiness probe
    /// before the run is ready, a health probe after.
    fn probe_result(&mut self, i: usize, run: Pid, ok: bool, now: Instant) {
        let unit = &mut self.units[i];
        if unit.life.run_pid() != Some(run) {
            return; // an earlier run's
        }
        if !unit.ready {
            return if ok {
                self.mark_ready(i, now)
            } else {
                self.probe_failed(i, now)
            };
        }
        let Some(health) = unit.health.clone() else {
            return;
        };
        // Health counts only for a service meant to be running as it is:
        // not one being stopped (sv down, a rescan, a requires hold, the
        // shutdown), which a restart must never bring back.
        let running = matches!(unit.life.state(), State::Running { .. });
        if !running || unit.life.wants_down() || unit.leaving.is_some() || !matches!(self.phase, Phase::Running) {
            unit.probe_at = None;
            return;
        }
        if ok {
            unit.probe_failures = 0;
        } else {
            unit.probe_failures += 1;
            warn!(
                "{}: health probe failed ({} of {})",
                unit.label, unit.probe_failures, health.retries
            );
            if unit.probe_failures >= health.retries {
                error!("{}: unhealthy: restarting it", unit.label);
                unit.probe_failures = 0;
                unit.probe_at = None;
                // A graceful stop (SIGKILL at the stop timeout if need be),
                // then a start whatever the restart policy: counted like a
                // crash by the failure policy.
                self.feed(i, Event::Restart, now);
                return;
            }
        }
        self.units[i].probe_at = Some(now + health.interval);
    }

    /// The run of unit `i` ended: forget its readiness and probes.
    fn stop_probe(&mut self, i: usize) {
        let unit = &mut self.units[i];
        unit.ready = false;
        unit.probe_at = None;
        if let Some(task) = unit.probe_task.take() {
            task.abort();
        }
    }

    /// Runs due command probes (readiness before the run is ready, health
    /// after), kills those past their timeout, and starts due TCP health
    /// probes.
    fn run_probes(&mut self, now: Instant) {
        for i in 0..self.units.len() {
            let unit = &self.units[i];
            if let Some((pid, deadline)) = unit.probe_running
                && now >= deadline
            {
                warn!("{}: probe timed out: killing it", unit.label);
                process_group::signal(pid, Signal::SIGKILL, true);
                continue;
            }
            let (Some(at), Some(run)) = (unit.probe_at, unit.life.run_pid()) else {
                // No run: nothing to probe (and no deadline to wake for).
                self.units[i].probe_at = None;
                continue;
            };
            if now < at || unit.probe_running.is_some() {
                continue;
            }
            let spec = if unit.ready {
                unit.health.as_ref()
            } else {
                Some(&unit.readiness)
            };
            let Some(spec) = spec.cloned() else {
                continue;
            };
            self.units[i].probe_at = None;
            match spec.check {
                ReadyCheck::Command(argv) => {
                    let launch = Launch {
                        cwd: self.units[i].dir.clone(),
                        ..Launch::program(argv)
                    };
                    let quiet = self.devnull.as_ref().map(|fd| fd.as_fd());
                    let redirect = Redirect {
                        stdout: quiet,
                        stderr: quiet,
                        ..Redirect::default()
                    };
                    match self.spawn(&launch, &[], redirect) {
                        Ok(pid) => {
                            let health = self.units[i].ready;
                            self.pids.insert(pid, (i, Role::Probe { run, health }));
                            self.units[i].probe_running = Some((pid, now + spec.timeout));
                        }
                        Err(e) => {
                            warn!("{}: probe: {e}", self.units[i].label);
                            self.probe_result(i, run, false, now);
                        }
                    }
                }
                ReadyCheck::Tcp(addr) => {
                    let results = self.probe_tx.clone();
                    tokio::spawn(async move {
                        let attempt = tokio::net::TcpStream::connect(addr.as_str());
                        let ok = matches!(tokio::time::timeout(spec.timeout, attempt).await, Ok(Ok(_)));
                        let _ = results.send((i, run, ok));
                    });
                }
                _ => {}
            }
        }
    }

    fn probe_failed(&mut self, i: usize, now: Instant) {
        let unit = &mut self.units[i];
        unit.probe_failures += 1;
        if unit.probe_failures >= unit.readiness.retries {
            error!(
                "{}: not ready after {} probes: it stays not ready",
                unit.label, unit.probe_failures
            );
            unit.probe_at = None;
        } else {
            unit.probe_at = Some(now + unit.readiness.interval);
        }
    }

    /// Whether a service named `name` lets what comes after it start: it
    /// runs and is ready, or it ran to a successful end (a one-shot job).
    fn satisfies(&self, name: &str) -> bool {
        self.by_name.get(name).is_some_and(|&d| {
            let dep = &self.units[d];
            // One about to be stopped (or wanted down) no longer counts.
            let going = dep.stop_pending || dep.life.wants_down();
            (!going && dep.ready && matches!(dep.life.state(), State::Running { .. })) || dep.life.finished_ok()
        })
    }

    /// Starts the services whose `after` services are now ready, and brings
    /// back those held down by a `requires` that is ready again.
    fn start_waiting(&mut self, now: Instant) {
        loop {
            let mut started = false;
            for i in 0..self.units.len() {
                let unit = &self.units[i];
                if unit.retired || unit.leaving.is_some() {
                    continue;
                }
                if unit.held && unit.requires.iter().all(|r| self.satisfies(r)) {
                    info!("{}: what it requires is back", unit.label);
                    self.units[i].held = false;
                    self.units[i].waiting = true;
                }
                let unit = &self.units[i];
                if unit.waiting && unit.after.iter().all(|d| self.satisfies(d)) {
                    self.units[i].waiting = false;
                    self.feed(i, Event::Up, now);
                    started = true;
                }
            }
            if !started {
                return;
            }
        }
    }

    /// Unit `i` went down for good (or failed): what requires it goes down
    /// too, until it is ready again. Not during a shutdown, which has its
    /// own order.
    fn hold_dependents(&mut self, i: usize) {
        if !matches!(self.phase, Phase::Running) {
            return;
        }
        let name = self.units[i].name.clone();
        if name.is_empty() {
            return;
        }
        let dependents: Vec<usize> = (0..self.units.len())
            .filter(|&j| {
                let u = &self.units[j];
                !u.retired && !u.life.is_down() && u.requires.contains(&name)
            })
            .collect();
        for j in dependents {
            warn!(
                "{}: stopping it: it requires {name}, which is down",
                self.units[j].label
            );
            self.units[j].held = true;
            self.units[j].waiting = false;
            self.feed(j, Event::Down, Instant::now());
        }
    }

    /// Stops unit `i` on purpose (`sv down`, a rescan removed it): what
    /// requires it is stopped first, and it follows once they are down.
    fn stop_after_dependents(&mut self, i: usize, now: Instant) {
        let name = self.units[i].name.clone();
        let requirers: Vec<usize> = (0..self.units.len())
            .filter(|&j| {
                let u = &self.units[j];
                !name.is_empty() && !u.retired && !u.life.is_down() && u.requires.contains(&name)
            })
            .collect();
        if requirers.is_empty() {
            return self.feed(i, Event::Down, now);
        }
        self.units[i].stop_pending = true;
        for j in requirers {
            warn!(
                "{}: stopping it first: it requires {name}, which is being stopped",
                self.units[j].label
            );
            self.units[j].held = true;
            self.units[j].waiting = false;
            self.feed(j, Event::Down, now);
        }
    }

    /// Stops each unit marked to stop once its dependents are down: at
    /// shutdown, everything that comes after it (the reverse of the start
    /// order); otherwise what requires it.
    fn stop_in_order(&mut self, now: Instant) {
        let shutdown = !matches!(self.phase, Phase::Running);
        for i in 0..self.units.len() {
            let unit = &self.units[i];
            if !unit.stop_pending {
                continue;
            }
            let name = &unit.name;
            let blocked = !name.is_empty()
                && self.units.iter().any(|u| {
                    let depends = if shutdown { &u.after } else { &u.requires };
                    !u.retired && u.kind == Kind::Service && !u.life.is_down() && depends.contains(name)
                });
            if !blocked {
                self.units[i].stop_pending = false;
                self.feed(i, Event::Down, now);
            }
        }
    }

    /// Marks unit `i`'s runit state as changed. The files are written once
    /// per wake-up, after every event of it is handled (`flush_published`):
    /// each write is three new inodes and renames, which cost more than the
    /// spawn itself on ext4, so a boot that wrote `down` and then `run` for
    /// each service before starting the next one took 3 times as long.
    fn publish(&mut self, i: usize) {
        let unit = &mut self.units[i];
        if unit.supervise.is_some() && !std::mem::replace(&mut unit.publish_queued, true) {
            self.publish_due.push(i);
        }
    }

    /// Until when a shutdown leaves the runit state unwritten (see
    /// `STATE_DURING_SHUTDOWN`); None outside a shutdown.
    fn state_held_until(&self) -> Option<Instant> {
        self.stop_started.map(|t| t + STATE_DURING_SHUTDOWN)
    }

    /// Writes the runit state of every unit `publish` marked, except early in
    /// a shutdown.
    fn flush_published(&mut self) {
        if self.state_held_until().is_some_and(|until| Instant::now() < until) {
            return;
        }
        for i in std::mem::take(&mut self.publish_due) {
            if let Some(unit) = self.units.get_mut(i) {
                unit.publish_queued = false;
                self.write_state(i);
            }
        }
    }

    /// Writes unit `i`'s runit state, if it has a supervise directory.
    fn write_state(&mut self, i: usize) {
        let unit = &mut self.units[i];
        let Some(sup) = &mut unit.supervise else {
            return;
        };
        let (state, pid) = match unit.life.state() {
            // Transient within one event: the spawn's result follows at once.
            State::Starting => return,
            State::Down | State::Backoff { .. } | State::Failed { .. } => (RunState::Down, None),
            State::Running { pid, .. } | State::Stopping { pid, .. } => (RunState::Run, Some(pid.as_raw())),
            State::Draining { .. } => (RunState::Finish, None),
            State::Finishing { pid, .. } => (RunState::Finish, pid.map(|p| p.as_raw())),
        };
        let previous = (sup.last_state(), sup.last_pid());
        // runit's clock restarts when `run` starts and when the service goes
        // down, not when `finish` starts.
        let restarts_clock = match state {
            RunState::Run => previous.0 != Some(RunState::Run) || previous.1 != Some(pid),
            RunState::Down => previous.0 != Some(RunState::Down),
            RunState::Finish => false,
        };
        if restarts_clock {
            unit.status_since = SystemTime::now();
        }
        let status = Status {
            since: unit.status_since,
            pid,
            paused: unit.paused,
            want_up: !unit.life.wants_down(),
            got_term: unit.got_term && state == RunState::Run,
            state,
        };
        if let Err(e) = sup.write(&status) {
            // Once per unit: a moved-away directory fails on every change.
            if std::mem::replace(&mut unit.state_write_failed, true) {
                debug!(
                    "{}: cannot write runit state in {}: {e}",
                    unit.label,
                    sup.dir().display()
                );
            } else {
                warn!(
                    "{}: cannot write runit state in {}: {e}",
                    unit.label,
                    sup.dir().display()
                );
            }
        }
    }

    /// A byte from a service's `supervise/control`.
    fn on_command(&mut self, token: UnitToken, byte: u8, now: Instant) {
        let i = token.index;
        let Some(unit) = self
            .units
            .get(i)
            .filter(|u| !u.retired && u.generation == token.generation)
        else {
            return; // for a unit gone since (its slot may hold another now)
        };
        let Some(command) = Command::parse(byte) else {
            debug!("{}: ignoring control byte {byte:#04x}", unit.label);
            return;
        };
        debug!("{}: control command {command:?}", unit.label);
        // runit's `control/C` scripts: exit 0 means "handled, skip the default".
        let letter = byte as char;
        if let Some(dir) = &unit.dir {
            let script = dir.join("control").join(letter.to_string());
            if is_executable_file(&script) {
                let launch = Launch {
                    cwd: Some(dir.clone()),
                    ..Launch::program(vec![script.into_os_string()])
                };
                let pipes = self.output_pipes(i);
                let result = self.spawn(&launch, &[], self.redirect(i, pipes.as_ref()));
                self.read_output(i, pipes);
                match result {
                    Ok(pid) => {
                        self.pids.insert(pid, (i, Role::Control { command, letter }));
                        return;
                    }
                    Err(e) => warn!("{}: control/{letter}: {e}; doing the default", self.units[i].label),
                }
            }
        }
        self.apply_command(i, command, now);
        // What depends on it may start or stop now.
        self.advance(now);
    }

    fn apply_command(&mut self, i: usize, command: Command, now: Instant) {
        let stopping = !matches!(self.phase, Phase::Startup { .. } | Phase::Running);
        let unit = &mut self.units[i];
        match command {
            Command::Up | Command::Once if stopping => {
                info!("{}: ignoring sv {command:?}: shutting down", unit.label);
            }
            Command::Up | Command::Once if unit.leaving.is_some() => {
                info!(
                    "{}: ignoring sv {command:?}: it is being removed or replaced",
                    unit.label
                );
            }
            // An operator's word replaces waiting for (or being held by)
            // dependencies.
            Command::Up => {
                unit.waiting = false;
                unit.held = false;
                unit.stop_pending = false;
                self.feed(i, Event::Up, now)
            }
            Command::Once => {
                unit.waiting = false;
                unit.held = false;
                unit.stop_pending = false;
                self.feed(i, Event::Once, now)
            }
            Command::Down | Command::Exit => {
                unit.waiting = false;
                unit.held = false;
                self.stop_after_dependents(i, now)
            }
            Command::Pause | Command::Continue => {
                let (signal, paused) = match command {
                    Command::Pause => (Signal::SIGSTOP, true),
                    _ => (Signal::SIGCONT, false),
                };
                if let Some(pid) = unit.life.run_pid() {
                    info!("{}: {signal} to process group {pid} (sv)", unit.label);
                    process_group::signal(pid, signal, true);
                }
                unit.paused = paused;
                self.publish(i);
            }
            Command::Signal(signal) => self.feed(i, Event::Signal(signal), now),
        }
    }

    fn reap(&mut self, now: Instant) {
        let drain = reaper::drain();
        // After the drain, not before: a child writes its exec report before
        // it exits, so every child just reaped has its report (if any) in
        // the pipe now, while one read before the drain could miss a child
        // that failed in between.
        if let Some(reports) = &mut self.exec_reports {
            reports.collect();
        }
        // First attribute every exit, then feed them: feeding can start new
        // children, which may be given a pid this very drain freed.
        let mut events = Vec::new();
        let mut controls = Vec::new();
        let mut probes = Vec::new();
        for child in &drain.reaped {
            let role = self.pids.remove(&child.pid);
            // Taken for every reaped pid, ours or not, so none lingers.
            let failed = self.exec_reports.as_mut().and_then(|r| r.take(child.pid));
            match role {
                // It never ran its program: handled as a spawn that failed
                // (the same message, failure and lifecycle outcome).
                Some((i, Role::Run)) if let Some(source) = failed => {
                    self.stop_probe(i);
                    let unit = &mut self.units[i];
                    let e = SpawnError::new(&unit.run, source);
                    error!("{}: {e}", unit.label);
                    unit.spawn_failure = Some(e.failure());
                    events.push((i, Event::ExecFailed(child.pid)));
                }
                Some((i, Role::Finish)) if let Some(source) = failed => {
                    let unit = &self.units[i];
                    if let Some(finish) = &unit.finish {
                        error!("{}: finish: {}", unit.label, SpawnError::new(finish, source));
                    }
                    events.push((i, Event::ExecFailed(child.pid)));
                }
                Some((i, Role::Run)) => {
                    self.stop_probe(i);
                    let unit = &self.units[i];
                    let group_empty = !unit.life.policy().drain_group || process_group::is_empty(child.pid);
                    match (unit.kind, child.status) {
                        (Kind::Service | Kind::Logger, status) if unit.life.wants_down() || status.success() => {
                            info!("{}: exited with {status}", unit.label)
                        }
                        (Kind::Service | Kind::Logger, status) => warn!("{}: exited with {status}", unit.label),
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
                    let unit = &self.units[i];
                    if child.status == ExitStatus::Exited(125) && !unit.life.wants_down() {
                        info!("{}: finish exited 125: not restarting", unit.label);
                    } else {
                        debug!("{}: finish exited with {}", unit.label, child.status);
                    }
                    events.push((i, Event::FinishExited(child.status)));
                }
                Some((i, Role::Control { command, letter })) => {
                    if let Some(source) = failed {
                        // Its exit status (127) is a failure: the default follows.
                        let unit = &self.units[i];
                        let script = unit.dir.as_ref().map(|d| d.join("control").join(letter.to_string()));
                        let launch = Launch::program(script.into_iter().map(PathBuf::into_os_string).collect());
                        let e = SpawnError::new(&launch, source);
                        warn!("{}: control/{letter}: {e}; doing the default", unit.label);
                    }
                    controls.push((i, command, child.status))
                }
                Some((i, Role::Probe { run, health })) => {
                    if let Some(source) = failed {
                        // Its exit status (127) is a failure: counted as one.
                        let unit = &self.units[i];
                        let spec = if health {
                            unit.health.as_ref()
                        } else {
                            Some(&unit.readiness)
                        };
                        let argv = match spec.map(|s| &s.check) {
                            Some(ReadyCheck::Command(argv)) => argv.clone(),
                            _ => Vec::new(),
                        };
                        let e = SpawnError::new(&Launch::program(argv), source);
                        warn!("{}: probe: {e}", unit.label);
                    }
                    let unit = &mut self.units[i];
                    if unit.probe_running.is_some_and(|(pid, _)| pid == child.pid) {
                        unit.probe_running = None;
                    }
                    probes.push((i, run, child.status.success()));
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
        // After the runs' exits: a probe of a run reaped in the same drain
        // must see that run gone.
        for (i, run, ok) in probes {
            self.probe_result(i, run, ok, now);
        }
        for (i, command, status) in controls {
            if self.units[i].retired {
                continue;
            }
            if status.success() {
                debug!("{}: control script handled {command:?}", self.units[i].label);
            } else {
                self.apply_command(i, command, now);
            }
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
            Phase::Hooks { .. } | Phase::Stopping(_) | Phase::KillAll { .. } | Phase::Done => {
                info!("received {signal} again: already shutting down");
            }
            _ => {
                info!("received {signal}: shutting down");
                self.begin_shutdown(StopReason::Signal(signal), now);
                self.advance(now);
            }
        }
    }

    /// SIGHUP: rescan the service directory, and pass it on to the main command.
    fn on_hangup(&mut self, now: Instant) {
        self.forward(Signal::SIGHUP);
        if matches!(self.phase, Phase::Running) && !self.opts.skip_services {
            info!("received SIGHUP: rescanning {}", self.opts.service_dir.display());
            self.rescan(now);
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
            None if signal == Signal::SIGHUP => {}
            None => info!("received {signal}: ignored (no main command running)"),
        }
    }

    /// Applies the service directory as it is now: new services start,
    /// removed ones stop, changed ones restart with their new definition,
    /// unchanged ones are left alone. A broken definition is reported and the
    /// service keeps running as it was.
    fn rescan(&mut self, now: Instant) {
        self.rescan_at = None;
        let scan = config::scan_services(
            &self.opts.service_dir,
            &self.opts.defaults,
            self.opts.service_dir_required,
        );
        for problem in &scan.errors {
            error!("{problem}");
        }
        if !scan.errors.is_empty() {
            warn!(
                "{} problem(s) in the service definitions: {} left as they were",
                scan.errors.len(),
                if scan.broken.is_empty() {
                    "services".to_owned()
                } else {
                    scan.broken.join(", ")
                }
            );
        }
        let mut seen: Vec<String> = scan.broken.clone();
        for spec in scan.services {
            seen.push(spec.name.clone());
            let Some(i) = self.by_name.get(&spec.name).copied() else {
                info!("service {}: new, starting", spec.name);
                self.add_service(spec, false, now);
                continue;
            };
            let unit = &mut self.units[i];
            match &mut unit.leaving {
                // Still stopping from an earlier rescan: what follows it is
                // now this latest definition.
                Some(Leaving::Removed) => {
                    info!("{}: back in the service directory, restarting it", unit.label);
                    unit.leaving = Some(Leaving::Replaced {
                        spec: Box::new(spec),
                        down: false,
                    });
                }
                Some(Leaving::Replaced { spec: next, .. }) => **next = spec,
                None if unit.fingerprint != spec.fingerprint => {
                    info!("{}: definition changed, restarting it", unit.label);
                    // Only an operator's `sv down` carries over: a service
                    // waiting for or held by its dependencies is down only
                    // for want of them.
                    let down = unit.life.wants_down() && !unit.waiting && !unit.held;
                    unit.leaving = Some(Leaving::Replaced {
                        spec: Box::new(spec),
                        down,
                    });
                    self.feed(i, Event::Down, now);
                }
                None => {}
            }
        }
        if !scan.complete {
            // Nothing could be listed: nothing is known to be gone.
            return self.advance(now);
        }
        let gone: Vec<usize> = self
            .units
            .iter()
            .enumerate()
            .filter(|(_, u)| u.kind == Kind::Service && !u.retired && !seen.contains(&u.name))
            .map(|(i, _)| i)
            .collect();
        for i in gone {
            let unit = &mut self.units[i];
            if matches!(unit.leaving, Some(Leaving::Removed)) {
                continue;
            }
            info!(
                "{}: removed from {}, stopping it",
                unit.label,
                self.opts.service_dir.display()
            );
            // Removed while being replaced: the replacement is off too.
            unit.leaving = Some(Leaving::Removed);
            self.stop_after_dependents(i, now);
        }
        self.advance(now);
    }

    /// Services stopped by a rescan: once down, their logger follows, and once
    /// both are down they are retired (and a changed one comes back).
    fn finish_leaving(&mut self, now: Instant) {
        for i in 0..self.units.len() {
            let unit = &self.units[i];
            if unit.leaving.is_none() || unit.retired || !unit.life.is_down() {
                continue;
            }
            if let Some(l) = unit.logger
                && !self.units[l].retired
            {
                if self.units[i].log_pipe.take().is_some() {
                    self.feed(l, Event::Retire, now);
                }
                if !self.units[l].life.is_down() {
                    continue;
                }
                self.retire(l);
            }
            self.retire(i);
            if let Some(Leaving::Replaced { spec, down }) = self.units[i].leaving.take() {
                self.add_service(*spec, down, now);
            }
        }
    }

    /// Stops supervising unit `i`: its name is free again, its state dropped.
    fn retire(&mut self, i: usize) {
        // Its last state (down) is written while it still has somewhere to go.
        if std::mem::take(&mut self.units[i].publish_queued) {
            self.write_state(i);
        }
        let unit = &mut self.units[i];
        unit.retired = true;
        unit.supervise = None;
        unit.log_pipe = None;
        if let Some(task) = unit.control_task.take() {
            task.abort();
        }
        if let Some(task) = unit.probe_task.take() {
            task.abort();
        }
        if self.by_name.get(&unit.name) == Some(&i) {
            self.by_name.remove(&unit.name);
        }
    }

    fn on_tick(&mut self, now: Instant) {
        self.check_draining_groups(now);
        self.run_probes(now);
        for i in 0..self.units.len() {
            if self.units[i].life.deadline().is_some_and(|d| d <= now) {
                self.feed(i, Event::Tick, now);
            }
        }
        if self.rescan_at.is_some_and(|at| at <= now) {
            if matches!(self.phase, Phase::Running) {
                self.rescan(now);
            } else {
                self.rescan_at = None;
            }
        }
        if let Phase::Hooks {
            current: Some(c),
            until,
            ..
        } = self.phase
            && now >= until
            && !self.units[c].life.wants_down()
        {
            warn!(
                "{}: still running at the end of the hook budget: stopping it",
                self.units[c].label
            );
            self.feed(c, Event::Down, now);
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
            Phase::Hooks { until, current, .. } => {
                // Past the budget with the hook already told to stop, only its
                // own deadlines matter.
                match current {
                    Some(c) if self.units[*c].life.wants_down() => None,
                    _ => Some(*until),
                }
            }
            _ => None,
        };
        let probes = self
            .units
            .iter()
            .flat_map(|u| [u.probe_at, u.probe_running.map(|(_, deadline)| deadline)])
            .flatten();
        self.units
            .iter()
            .filter_map(|u| u.life.deadline())
            .chain(phase)
            .chain(self.rescan_at)
            .chain(probes)
            .chain(self.main_waits.flatten())
            .chain(self.state_held_until().filter(|_| !self.publish_due.is_empty()))
            .min()
    }

    fn begin_shutdown(&mut self, reason: StopReason, now: Instant) {
        if matches!(
            self.phase,
            Phase::Hooks { .. } | Phase::Stopping(_) | Phase::KillAll { .. } | Phase::Done
        ) {
            return;
        }
        self.reason = Some(reason);
        self.stop_started = Some(now);
        match reason {
            StopReason::Signal(_) => {}
            StopReason::MainExited => info!("main command ended: shutting down"),
            StopReason::BootFailed => error!("boot failed: shutting down"),
            StopReason::ServiceEnded(_) => {}
        }
        self.begin_hooks(HookStage::Pre, now);
    }

    fn begin_hooks(&mut self, stage: HookStage, now: Instant) {
        let dir = match stage {
            HookStage::Pre => &self.opts.pre_shutdown_dir,
            HookStage::Post => &self.opts.post_shutdown_dir,
        };
        let hooks = startup::scripts(dir, None).unwrap_or_else(|message| {
            warn!("{message}; no hooks run");
            Vec::new()
        });
        self.phase = Phase::Hooks {
            stage,
            pending: hooks.into(),
            current: None,
            until: now + self.opts.hook_timeout,
        };
    }

    /// Stops every running unit at once, loggers excepted: they stop after
    /// their service, reading what it wrote to the end.
    fn stop_units(&mut self, now: Instant) {
        let running = self.units.iter().filter(|u| !u.retired && !u.life.is_down());
        let plan = StopPlan::new(
            now,
            running.map(|u| (u.life.policy(), u.kind == Kind::Logger)),
            self.stop_levels(),
            self.opts.kill_all,
            self.opts.kill_all_grace,
            self.opts.hook_timeout,
        );
        debug!("stop plan: at most {} ms", plan.worst_case().as_millis());
        self.phase = Phase::Stopping(plan);
        self.main_waits = None;
        for unit in &mut self.units {
            unit.waiting = false;
            unit.held = false;
            unit.stop_pending = unit.kind != Kind::Logger && !unit.retired;
        }
        self.stop_in_order(now);
    }

    /// The longest chain of `after` among the services still up: how many
    /// levels the ordered stop has.
    fn stop_levels(&self) -> u32 {
        let up: HashMap<&str, &[String]> = self
            .units
            .iter()
            .filter(|u| !u.retired && u.kind == Kind::Service && !u.life.is_down())
            .map(|u| (u.name.as_str(), u.after.as_slice()))
            .collect();
        // Depth by iteration: at most one more level per round, and no more
        // rounds than services (a cycle, which boot rejects, cannot loop).
        let mut depth: HashMap<&str, u32> = up.keys().map(|name| (*name, 1)).collect();
        for _ in 0..up.len() {
            let mut changed = false;
            for (name, after) in &up {
                let below = after
                    .iter()
                    .filter_map(|d| depth.get(d.as_str()))
                    .max()
                    .copied()
                    .unwrap_or(0);
                if below + 1 > depth.get(name).copied().unwrap_or(1) {
                    depth.insert(name, below + 1);
                    changed = true;
                }
            }
            if !changed {
                break;
            }
        }
        depth.values().max().copied().unwrap_or(1)
    }

    /// At shutdown, a logger whose service is down gets EOF and then retires.
    fn retire_loggers(&mut self, now: Instant) {
        for i in 0..self.units.len() {
            if let Some(l) = self.units[i].logger
                && self.units[i].life.is_down()
                && self.units[i].log_pipe.take().is_some()
            {
                self.feed(l, Event::Retire, now);
            }
        }
    }

    fn begin_kill_all(&mut self, now: Instant) {
        if self.opts.kill_all == KillAll::Off {
            self.phase = Phase::Done;
            return;
        }
        shutdown::signal_remaining(self.opts.kill_all, Signal::SIGTERM);
        self.phase = Phase::KillAll {
            signal: Signal::SIGTERM,
            until: now + self.opts.kill_all_grace,
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

    /// `--wait-for-services`: starts the main command once every service
    /// that should be up is ready; past the deadline, boot fails.
    fn start_main_when_ready(&mut self, deadline: Option<Instant>, now: Instant) {
        let not_ready: Vec<String> = self
            .units
            .iter()
            .filter(|u| {
                !u.retired
                    && matches!(u.kind, Kind::Service | Kind::Logger)
                    && (u.life.expected_up() || u.waiting)
                    && !(u.ready && u.life.run_pid().is_some())
            })
            .map(|u| u.name.clone())
            .collect();
        let Some(m) = self.main else {
            self.main_waits = None;
            return;
        };
        if not_ready.is_empty() {
            self.main_waits = None;
            info!("every service is ready: starting the main command");
            self.feed(m, Event::Up, now);
        } else if deadline.is_some_and(|d| now >= d) {
            self.main_waits = None;
            error!(
                "--wait-for-services: not ready in time: {}; not starting the main command",
                not_ready.join(", ")
            );
            self.begin_shutdown(StopReason::BootFailed, now);
        }
    }

    /// What `baseinit status` shows.
    fn snapshot(&self) -> status::Snapshot {
        let phase = match self.phase {
            Phase::Startup { .. } => "booting",
            Phase::Running => "running",
            Phase::Hooks { .. } | Phase::Stopping(_) | Phase::KillAll { .. } | Phase::Done => "stopping",
        };
        let now = Instant::now();
        let services = self
            .units
            .iter()
            .filter(|u| !u.retired && matches!(u.kind, Kind::Service | Kind::Logger | Kind::Main))
            .map(|u| {
                let last_exit = u.life.last_exit().map(|e| match e.status {
                    Some(ExitStatus::Exited(code)) => status::LastExit::Code(code),
                    Some(ExitStatus::Signaled(signal)) => status::LastExit::Signal(signal),
                    None => status::LastExit::NotStarted,
                });
                status::ServiceStatus {
                    name: if u.kind == Kind::Main {
                        u.label.clone()
                    } else {
                        u.name.clone()
                    },
                    kind: match u.kind {
                        Kind::Logger => "logger",
                        Kind::Main => "main",
                        _ => "service",
                    }
                    .to_owned(),
                    state: if u.waiting {
                        "waiting".to_owned()
                    } else if u.held {
                        "held".to_owned()
                    } else {
                        u.life.state_name().to_owned()
                    },
                    pid: u.life.run_pid().map(Pid::as_raw),
                    uptime_ms: u.life.running_since().map(|t| millis(now - t)),
                    restarts: u.life.restarts(),
                    last_exit,
                    expected_up: (u.life.expected_up() || u.waiting || u.held) && u.leaving.is_none(),
                    ready: u.ready && matches!(u.life.state(), State::Running { .. }),
                }
            })
            .collect();
        status::Snapshot {
            version: env!("CARGO_PKG_VERSION").to_owned(),
            pid1: self.opts.kill_all == KillAll::Namespace || nix::unistd::getpid().as_raw() == 1,
            phase: phase.to_owned(),
            uptime_ms: millis(now - self.started_at),
            services,
        }
    }

    fn outcome(&self) -> Outcome {
        match self.reason {
            Some(StopReason::BootFailed) => Outcome::BootFailed,
            Some(StopReason::ServiceEnded(i)) => {
                let unit = &self.units[i];
                match (unit.life.last_exit().and_then(|e| e.status), unit.spawn_failure) {
                    (Some(status), _) => Outcome::ServiceEnded(status),
                    (None, Some(failure)) => Outcome::MainCommandFailed(failure),
                    (None, None) => Outcome::BootFailed,
                }
            }
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

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

/// Bytes waiting in a logger's pipe (its read end, which baseinit keeps).
fn unread(unit: &Unit) -> i32 {
    let Some(fd) = &unit.log_pipe else {
        return 0;
    };
    let mut n: nix::libc::c_int = 0;
    // SAFETY: FIONREAD writes one int into `n`; the fd is open (we own it).
    let rc = unsafe { nix::libc::ioctl(std::os::fd::AsRawFd::as_raw_fd(fd), nix::libc::FIONREAD, &mut n) };
    if rc == 0 { n } else { 0 }
}
