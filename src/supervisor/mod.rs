//! The supervisor: owns the unit table, the phases and the pid table, and
//! is the one place that turns the pure machines' decisions into actions.
//!
//! What is decided where (each pure: given `now` and a read-only view of
//! the units, it returns decisions and reads no clock):
//! - a unit's process lifecycle: `service::Lifecycle`;
//! - dependency order (`after`, `requires`): [`order`];
//! - readiness and health probes: [`probes`];
//! - loggers' draining: [`drain`];
//! - the container's phases (boot, hooks, stop, kill-all) and the outcome:
//!   [`phases`];
//! - what a rescan of the service directory changes: [`changes`].
//!
//! What acts: [`event_loop`] waits for events and hands them here;
//! [`children`] starts, signals and reaps processes (through
//! [`host::Processes`]); [`probing`] runs probes; [`rescan`] applies the
//! service directory; [`runit_state`] writes `supervise/`; [`commands`]
//! carries out `sv`'s control bytes; [`snapshot`] answers `baseinit status`.
//! `docs/architecture.md` says where a new feature goes.

mod changes;
mod children;
mod commands;
mod drain;
mod event_loop;
mod host;
mod order;
mod phases;
mod probes;
mod probing;
mod rescan;
mod runit_state;
mod schedule;
mod scheduling;
mod snapshot;
mod units;

#[cfg(test)]
mod scenarios;
#[cfg(test)]
pub(crate) mod testing;

use std::collections::{HashMap, HashSet, VecDeque};
use std::ffi::OsString;
use std::os::fd::OwnedFd;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use nix::sys::signal::Signal;
use nix::unistd::Pid;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tracing::{debug, error, info, warn};

use crate::config::{self, Defaults, OutputMode, is_executable_file};
use crate::container_env::{BootExport, ContainerEnv, EnvPaths};
use crate::output;
use crate::service::{Backoff, Event, FailurePolicy, KILL_WAIT, Policy, RestartPolicy};
use crate::shutdown::KillAll;
use crate::spawn::{Launch, StdinMode};
use crate::startup;
use crate::status;

pub use event_loop::Channels;
pub use host::{Processes, Reaped, System};
pub use units::UnitId;

use phases::{Expired, HookStage, Phases, Step, StopReason};
use runit_state::RunitWrites;
use units::{Kind, Role, Unit, Units};

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
    /// `--shutdown-delay`: on a stop signal, the services run on (reported
    /// unhealthy) this long after the pre-shutdown hooks.
    pub shutdown_delay: Duration,
    /// `--main-stop-signal`: what the main command gets at shutdown.
    pub main_stop_signal: Signal,
    /// `--remap-exit`: only for the log's last line; `main` applies it.
    pub remap_exit: crate::exit::Remap,
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
    /// `--syslog`: the socket to relay syslog messages from.
    pub syslog: Option<crate::syslog::Settings>,
}

/// How long after the last change in the service directory a rescan runs:
/// `cp -r` or an unpacked tarball is a burst of events, one rescan is enough.
const RESCAN_SETTLE: Duration = Duration::from_millis(100);

pub struct Supervisor<P: Processes = System> {
    opts: Options,
    processes: P,
    units: Units,
    /// Every child we started and have not reaped yet.
    pids: HashMap<Pid, (UnitId, Role)>,
    phases: Phases,
    /// The last reap found no child at all.
    no_children: bool,
    orphans_reaped: u64,
    rescan_at: Option<Instant>,
    runit: RunitWrites,
    /// The environment every child gets; None until boot imported it.
    env: Option<ContainerEnv>,
    /// The container environment's boot export, under way from `new` to `boot`.
    boot_export: Option<BootExport>,
    /// The service definitions, when boot read them while the container
    /// environment was being written (no startup script ran in between).
    preloaded: Option<config::Scan>,
    /// Services whose definition keeps them from running, with why: shown
    /// by `status`, unhealthy for `health`, until a rescan finds them fixed.
    broken: Vec<status::Broken>,
    started_at: Instant,
    /// Where prefixed output goes; None when its writer could not start.
    sink: Option<output::Sink>,
    /// The tasks reading services' output pipes, awaited at exit.
    readers: Vec<JoinHandle<()>>,
    /// The syslog relay (`--syslog`), once the first services started.
    syslog: Option<crate::syslog::Relay>,
    /// `supervise/control` readers send the bytes they read here.
    commands: mpsc::UnboundedSender<(UnitId, u8)>,
    /// Readiness tasks report a ready run here.
    ready_tx: mpsc::UnboundedSender<(UnitId, Pid)>,
    /// TCP health probes report here: passed (true) or failed.
    probe_tx: mpsc::UnboundedSender<(UnitId, Pid, bool)>,
    /// /dev/null, for probes' output.
    devnull: Option<OwnedFd>,
}

impl Supervisor<System> {
    /// A supervisor of real processes, and the receiving ends of its helper
    /// tasks' channels.
    pub fn new(opts: Options) -> (Self, Channels) {
        Self::with_processes(opts, System::default())
    }
}

impl<P: Processes> Supervisor<P> {
    pub fn with_processes(opts: Options, processes: P) -> (Self, Channels) {
        // As early as it can be: its writes take longer than the rest of boot
        // until the first service (see `boot`).
        let boot_export = ContainerEnv::start_boot(opts.env.clone(), std::env::vars_os());
        let (commands, received) = mpsc::unbounded_channel();
        let (ready_tx, ready) = mpsc::unbounded_channel();
        let (probe_tx, probe_results) = mpsc::unbounded_channel();
        let phases = Phases::new(phases::Settings {
            hook_timeout: opts.hook_timeout,
            shutdown_delay: opts.shutdown_delay,
            kill_all: opts.kill_all,
            kill_all_grace: opts.kill_all_grace,
        });
        let supervisor = Supervisor {
            opts,
            processes,
            units: Units::default(),
            pids: HashMap::new(),
            phases,
            no_children: false,
            orphans_reaped: 0,
            rescan_at: None,
            runit: RunitWrites::default(),
            env: None,
            boot_export: Some(boot_export),
            preloaded: None,
            broken: Vec::new(),
            started_at: Instant::now(),
            sink: None,
            readers: Vec::new(),
            syslog: None,
            commands,
            ready_tx,
            probe_tx,
            devnull: std::fs::File::options()
                .write(true)
                .open("/dev/null")
                .ok()
                .map(OwnedFd::from),
        };
        let channels = Channels {
            commands: received,
            ready,
            probe_results,
        };
        (supervisor, channels)
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
        self.preloaded = (scripts.as_ref().is_ok_and(Vec::is_empty)
            && opts.insecure_key.is_none()
            && !opts.skip_services)
            .then(|| {
                let env = export.vars();
                config::scan_services_in(&opts.service_dir, &opts.defaults, opts.service_dir_required, env)
            });
        self.env = Some(export.finish());
        let mut scripts = match scripts {
            Ok(scripts) => scripts,
            Err(message) => {
                error!("{message}");
                self.phases.begin_shutdown(StopReason::BootFailed, now);
                return self.advance(now);
            }
        };
        if let Some(script) = &self.opts.insecure_key {
            if !is_executable_file(script) {
                error!(
                    "--enable-insecure-key: {} is missing or not executable (the image has no insecure key support)",
                    script.display()
                );
                self.phases.begin_shutdown(StopReason::BootFailed, now);
                return self.advance(now);
            }
            scripts.insert(0, script.clone());
        }
        self.phases.boot(scripts);
        self.advance(now);
    }

    /// Carries out the phases' steps, and what the dependency order asks for
    /// meanwhile, until the phases wait for an event.
    fn advance(&mut self, now: Instant) {
        loop {
            if self.phases.is_running() {
                self.stop_in_order(now);
                self.start_waiting(now);
            } else if matches!(self.phases.phase(), phases::Phase::Stopping(_)) {
                self.stop_in_order(now);
                self.retire_loggers(now);
            }
            match self.phases.next(&self.units, self.no_children, now) {
                Step::Wait => {
                    if self.phases.is_running() {
                        self.finish_leaving(now);
                    }
                    self.scheduled_runs_ended(now);
                    return;
                }
                Step::RunScript(script) => {
                    let id = self.start_once(Kind::Startup, "startup script", script, now);
                    self.phases.started(id);
                }
                Step::ReloadEnv => {
                    // A script may have added, changed or deleted variables
                    // for everything started after it.
                    if let Some(env) = &mut self.env {
                        env.after_startup_script();
                    }
                }
                Step::StartServices => self.start_services(now),
                Step::StartMain => {
                    if let Some(main) = self.phases.main() {
                        self.feed(main, Event::Up, now);
                    }
                }
                Step::ListHooks(stage) => {
                    let dir = match stage {
                        HookStage::Pre => &self.opts.pre_shutdown_dir,
                        HookStage::Post => &self.opts.post_shutdown_dir,
                    };
                    let hooks = startup::scripts(dir, None).unwrap_or_else(|message| {
                        warn!("{message}; no hooks run");
                        Vec::new()
                    });
                    self.phases.hooks_listed(hooks);
                }
                Step::RunHook(hook) => {
                    let id = self.start_once(Kind::Hook, "shutdown hook", hook, now);
                    self.phases.started(id);
                }
                Step::StopUnits => self.stop_units(now),
                Step::KillAll(signal) => self.begin_kill_all(signal),
            }
        }
    }

    /// Starts a unit that runs once (a startup script or a hook).
    fn start_once(&mut self, kind: Kind, what: &str, path: PathBuf, now: Instant) -> UnitId {
        let mut policy = self.policy_for_once(false);
        match kind {
            // A hook stopped for running out of time gets SIGKILL soon after.
            Kind::Hook => policy.stop_timeout = KILL_WAIT,
            Kind::Startup => policy.run_timeout = self.opts.startup_timeout,
            _ => {}
        }
        let label = format!("{what} {}", path.display());
        let id = self.add_unit(Unit::new(
            label,
            kind,
            Launch::program(vec![path.into_os_string()]),
            None,
            policy,
        ));
        self.feed(id, Event::Up, now);
        id
    }

    /// After the startup scripts: load the service tree, start every service
    /// without a `down` file, then the main command.
    fn start_services(&mut self, now: Instant) {
        if !self.opts.skip_services {
            let scan = self.preloaded.take().unwrap_or_else(|| {
                config::scan_services_in(
                    &self.opts.service_dir,
                    &self.opts.defaults,
                    self.opts.service_dir_required,
                    children::base_env(&self.env),
                )
            });
            for problem in &scan.errors {
                error!("{problem}");
            }
            if !scan.complete && !scan.errors.is_empty() {
                error!(
                    "cannot read the service directory {}: nothing started",
                    self.opts.service_dir.display()
                );
                self.phases.begin_shutdown(StopReason::BootFailed, now);
                return;
            }
            if !scan.broken.is_empty() {
                error!(
                    "{} service(s) not started, for problems in their definitions: {}; the others start",
                    scan.broken.len(),
                    scan.broken.join(", ")
                );
            }
            self.note_broken(&scan);
            let specs = scan.services;
            debug!("{} service(s) in {}", specs.len(), self.opts.service_dir.display());
            for spec in specs {
                self.add_service(spec, false, now);
            }
        }
        if let Some(program) = self.opts.command.first() {
            let label = format!("main command {}", program.to_string_lossy());
            let launch = Launch {
                stdin: StdinMode::Inherit,
                foreground: true,
                ..Launch::program(self.opts.command.clone())
            };
            let policy = Policy {
                stop_signal: self.opts.main_stop_signal,
                ..self.policy_for_once(true)
            };
            let id = self.add_unit(Unit::new(label, Kind::Main, launch, None, policy));
            if self.phases.main_added(id, self.opts.wait_for_services, now) {
                self.feed(id, Event::Up, now);
            }
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

    /// Whether a service's output is prefixed (`output` in its service.toml,
    /// else `--output`), which needs the output writer.
    fn prefixed(&self, output: Option<OutputMode>) -> bool {
        output.unwrap_or(self.opts.output) == OutputMode::Prefix && self.sink.is_some()
    }

    /// Adds `unit` to the table, in the slot of a retired unit when nothing
    /// can still refer to it: down, no process of its own (a run, finish,
    /// probe or control script) left to reap, no draining group, no
    /// readiness task, and no live unit's logger.
    fn add_unit(&mut self, unit: Unit) -> UnitId {
        let busy: HashSet<UnitId> = self
            .pids
            .values()
            .map(|(id, _)| *id)
            .chain(self.units.live().filter_map(|(_, u)| u.logger))
            .chain(self.phases.main())
            .collect();
        self.units.add(unit, |id, u| {
            !busy.contains(&id)
                && u.life.is_down()
                && u.life.draining_group().is_none()
                && !u.probe.probe_running()
                && u.probe_task.as_ref().is_none_or(JoinHandle::is_finished)
        })
    }

    /// Gives an event to a unit's machine and carries out its actions, and
    /// those of the events they cause (a spawn's result), in order. A queue,
    /// not recursion: a chain of failing spawns cannot grow the stack.
    fn feed(&mut self, id: UnitId, event: Event, now: Instant) {
        let mut queue = VecDeque::from([(id, event)]);
        while let Some((id, event)) = queue.pop_front() {
            let Some(unit) = self.units.get_mut(id) else {
                continue; // gone since (its slot holds another unit now)
            };
            for action in unit.life.on(event, now) {
                if let Some(event) = self.act(id, action, now) {
                    queue.push_back((id, event));
                }
            }
            self.publish(id);
        }
    }

    /// A service that ends the container: the first one decides the exit
    /// code; any later one changes nothing (the shutdown is under way).
    fn service_ended(&mut self, id: UnitId, now: Instant) {
        self.phases.begin_shutdown(StopReason::ServiceEnded(id), now);
    }

    /// Starts the waiting services whose dependencies are ready, and brings
    /// back those held by a `requires` that is ready again, until none wakes.
    fn start_waiting(&mut self, now: Instant) {
        loop {
            let mut started = false;
            for wake in order::wakeable(&self.units) {
                let unit = &mut self.units[wake.id];
                if wake.released {
                    info!("{}: what it requires is back", unit.label);
                    unit.order.held = false;
                    unit.order.waiting = true;
                }
                if wake.start {
                    unit.order.waiting = false;
                    self.feed(wake.id, Event::Up, now);
                    started = true;
                }
            }
            if !started {
                return;
            }
        }
    }

    /// Unit `id` went down for good (or failed): what requires it goes down
    /// too, until it is ready again. Not during a shutdown, which has its
    /// own order.
    fn hold_dependents(&mut self, id: UnitId, now: Instant) {
        if !self.phases.is_running() {
            return;
        }
        for dependent in order::requirers(&self.units, id) {
            warn!(
                "{}: stopping it: it requires {}, which is down",
                self.units[dependent].label, self.units[id].name
            );
            self.hold(dependent, now);
        }
    }

    /// Stops `id` for want of what it requires; it comes back when that is.
    fn hold(&mut self, id: UnitId, now: Instant) {
        let order = &mut self.units[id].order;
        order.held = true;
        order.waiting = false;
        self.feed(id, Event::Down, now);
    }

    /// Stops unit `id` on purpose (`sv down`, a rescan removed it): what
    /// requires it is stopped first, and it follows once they are down.
    fn stop_after_dependents(&mut self, id: UnitId, now: Instant) {
        let requirers = order::requirers(&self.units, id);
        if requirers.is_empty() {
            return self.stop(id, now);
        }
        self.units[id].order.stop_pending = true;
        for dependent in requirers {
            warn!(
                "{}: stopping it first: it requires {}, which is being stopped",
                self.units[dependent].label, self.units[id].name
            );
            self.hold(dependent, now);
        }
    }

    /// Stops each unit marked to stop once its dependents are down.
    fn stop_in_order(&mut self, now: Instant) {
        let shutdown = !self.phases.is_running();
        loop {
            let due = order::stoppable(&self.units, shutdown);
            if due.is_empty() {
                return;
            }
            for id in due {
                self.units[id].order.stop_pending = false;
                self.stop(id, now);
            }
        }
    }

    /// The shutdown's stop: every unit still up, in the reverse of the start
    /// order; loggers once their service is down, reading it to the end.
    fn stop_units(&mut self, now: Instant) {
        for unit in self.units.iter_mut() {
            let stops = unit.kind != Kind::Logger && !unit.retired;
            unit.order = order::OrderFlags {
                stop_pending: stops,
                ..order::OrderFlags::default()
            };
            // runsv stops its service at a shutdown as for `sv exit`.
            if stops && unit.kind == Kind::Service {
                unit.runit.stop_command = Some(crate::runit::Command::Exit);
            }
        }
        self.stop_in_order(now);
    }

    /// At shutdown, a logger whose service is down gets EOF and then retires.
    fn retire_loggers(&mut self, now: Instant) {
        for (service, logger) in drain::loggers_to_retire(&self.units) {
            self.units[service].log_pipe = None;
            self.feed(logger, Event::Retire, now);
        }
    }

    /// The kill-all's first signal; often nothing is left, which the reap
    /// right after finds out rather than waiting for a SIGCHLD.
    fn begin_kill_all(&mut self, signal: Signal) {
        self.processes.kill_all(self.opts.kill_all, signal);
        let reaped = self.processes.reap();
        for (child, _) in &reaped.children {
            if self.pids.remove(&child.pid).is_none() {
                self.orphans_reaped += 1;
            }
        }
        self.no_children = reaped.no_children;
    }

    fn on_stop_signal(&mut self, signal: Signal, now: Instant) {
        if self.phases.is_shutting_down() {
            if self.phases.cut_delay(now) {
                info!("received {signal} again: ending the shutdown delay");
                self.advance(now);
            } else {
                info!("received {signal} again: already shutting down");
            }
            return;
        }
        info!("received {signal}: shutting down");
        self.phases.begin_shutdown(StopReason::Signal(signal), now);
        self.advance(now);
    }

    /// SIGHUP: rescan the service directory, and pass it on to the main command.
    fn on_hangup(&mut self, now: Instant) {
        self.forward(Signal::SIGHUP);
        if self.phases.is_running() && !self.opts.skip_services {
            info!("received SIGHUP: rescanning {}", self.opts.service_dir.display());
            self.rescan(now);
        }
    }

    /// Signals with no meaning of their own go to the main command.
    fn forward(&mut self, signal: Signal) {
        match self.phases.main().and_then(|m| self.units[m].life.run_pid()) {
            Some(pid) => {
                info!("received {signal}: forwarding it to the main command (pid {pid})");
                if let Err(e) = self.processes.signal(pid, signal) {
                    warn!("cannot forward {signal} to pid {pid}: {e}");
                }
            }
            None if signal == Signal::SIGHUP => {}
            None => info!("received {signal}: ignored (no main command running)"),
        }
    }

    /// Time passed: every deadline at or before `now` fires.
    fn on_tick(&mut self, now: Instant) {
        self.check_draining_groups(now);
        self.run_probes(now);
        self.fire_schedules(now);
        for id in self.units.ids() {
            if self.units[id].life.deadline().is_some_and(|d| d <= now) {
                self.feed(id, Event::Tick, now);
            }
        }
        if self.rescan_at.is_some_and(|at| at <= now) {
            if self.phases.is_running() {
                self.rescan(now);
            } else {
                self.rescan_at = None;
            }
        }
        match self.phases.on_deadline(&self.units, now) {
            Some(Expired::StopHook(hook)) => self.feed(hook, Event::Down, now),
            Some(Expired::KillAll(signal)) => self.processes.kill_all(self.opts.kill_all, signal),
            None => {}
        }
        self.advance(now);
    }

    /// When the next deadline of anything is.
    fn next_wake(&self) -> Option<Instant> {
        let units = self
            .units
            .iter()
            .flat_map(|(_, u)| u.life.deadline().into_iter().chain(u.probe.deadlines()))
            .chain(self.units.iter().filter_map(|(_, u)| u.schedule.as_ref()?.deadline()));
        units
            .chain(self.phases.deadline(&self.units))
            .chain(self.rescan_at)
            .chain(self.state_deadline())
            .min()
    }
}
