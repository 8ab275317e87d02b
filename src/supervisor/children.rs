//! Acting on children: the lifecycle machine's actions turned into spawns
//! and signals, each process wired to its pipes, and every reaped child
//! traced back to its unit and fed to it as an event.

use std::ffi::OsString;
use std::os::fd::{AsFd, OwnedFd};
use std::path::PathBuf;
use std::time::Instant;

use nix::sys::signal::Signal;
use nix::unistd::Pid;
use tracing::{debug, error, info, warn};

use crate::config::ReadyCheck;
use crate::container_env::{ContainerEnv, Vars};
use crate::exit::ExitStatus;
use crate::output::Stream;
use crate::service::{Action, Event, FailureAction, Why};
use crate::shutdown::KillAll;
use crate::spawn::{Launch, Redirect, SpawnError};

use super::Supervisor;
use super::host::{Processes, Reaped};
use super::units::{Kind, Role, Unit, UnitId};
use super::{commands, drain};

/// Which program of a unit to start.
pub(super) enum Program<'a> {
    Run,
    /// Its `finish`.
    Finish,
    /// A control script or a probe.
    Other(&'a Launch),
}

/// How a run tells it is ready, beside its stdio: s6's notification fd,
/// systemd's `NOTIFY_SOCKET`.
#[derive(Clone, Copy, Default)]
pub(super) struct Readiness<'a> {
    pub notify: Option<(std::os::fd::BorrowedFd<'a>, i32)>,
    pub notify_socket: Option<&'a std::path::Path>,
}

/// One process's output pipes: (read end, write end) for stdout and stderr.
pub(super) struct ChildOutput {
    stdout: (OwnedFd, OwnedFd),
    stderr: (OwnedFd, OwnedFd),
}

/// The environment children get: the container's, once boot imported it.
pub(super) fn base_env(env: &Option<ContainerEnv>) -> &Vars {
    static EMPTY: Vars = Vars::new();
    env.as_ref().map_or(&EMPTY, ContainerEnv::vars)
}

/// The stdio of a process of `unit`: a service writes its stdout to its
/// logger's pipe if it has a logger, else to its output pipe; a logger
/// reads the log pipe; stderr goes to the output pipe.
pub(super) fn redirect<'a>(unit: &'a Unit, pipes: Option<&'a ChildOutput>) -> Redirect<'a> {
    let log = unit.log_pipe.as_ref().map(|fd| fd.as_fd());
    let (out, err) = match pipes {
        Some(p) => (Some(p.stdout.1.as_fd()), Some(p.stderr.1.as_fd())),
        None => (None, None),
    };
    match unit.kind {
        Kind::Service => Redirect {
            stdout: log.or(out),
            stderr: err,
            ..Redirect::default()
        },
        Kind::Logger => Redirect {
            stdin: log,
            stdout: out,
            stderr: err,
            ..Redirect::default()
        },
        _ => Redirect::default(),
    }
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

impl<P: Processes> Supervisor<P> {
    /// Starts a process of unit `id` (its run, its finish, or another
    /// program of it) with its stdio wired, and starts reading its output.
    pub(super) fn spawn_for(
        &mut self,
        id: UnitId,
        program: Program<'_>,
        extra_args: &[OsString],
        readiness: Readiness<'_>,
    ) -> Result<Pid, SpawnError> {
        let pipes = self.output_pipes(id);
        if pipes.is_none()
            && let Some(sink) = &self.sink
        {
            sink.share_stdout();
        }
        // Its run's output is watched for `log-line`, not finish's or a script's.
        let is_run = matches!(program, Program::Run);
        let unit = &self.units[id];
        // Probes and control scripts get the container environment only.
        let sources = unit
            .env_sources
            .as_ref()
            .filter(|_| !matches!(program, Program::Other(_)));
        let launch = match (program, &unit.finish) {
            (Program::Run, _) => &unit.run,
            (Program::Finish, Some(finish)) => finish,
            (Program::Finish, None) => {
                let missing = std::io::Error::other("the service has no finish");
                return Err(SpawnError::new(&unit.run, missing));
            }
            (Program::Other(launch), _) => launch,
        };
        let redirect = Redirect {
            notify: readiness.notify,
            notify_socket: readiness.notify_socket,
            ..redirect(unit, pipes.as_ref())
        };
        let result = match sources {
            None => self.processes.spawn(launch, extra_args, base_env(&self.env), redirect),
            // Read at each start: an edited env file or a rotated secret
            // applies from this start on; a file gone is a failed start.
            Some(sources) => match sources.prepare(launch, base_env(&self.env)) {
                Ok((launch, base)) => self.processes.spawn(&launch, extra_args, &base, redirect),
                Err(e) => Err(SpawnError::new(launch, e)),
            },
        };
        let run = result.as_ref().ok().copied().filter(|_| is_run);
        self.read_output(id, pipes, run);
        result
    }

    /// Fresh pipes for the stdout and stderr of one process of unit `id`, if
    /// its output is prefixed. A failure leaves that process writing to
    /// baseinit's own stdout and stderr.
    fn output_pipes(&self, id: UnitId) -> Option<ChildOutput> {
        if !self.units[id].prefix {
            return None;
        }
        let pipe = || nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC);
        match (pipe(), pipe()) {
            (Ok(stdout), Ok(stderr)) => Some(ChildOutput { stdout, stderr }),
            (Err(e), _) | (_, Err(e)) => {
                warn!(
                    "{}: cannot create output pipes ({e}): writing to stdout directly",
                    self.units[id].label
                );
                None
            }
        }
    }

    /// Starts reading a spawned process's output; the write ends (given to
    /// the child) are dropped here, so EOF comes when the process is gone.
    /// `run`: the process is the unit's run, this pid, whose lines its
    /// `log-line` patterns watch.
    fn read_output(&mut self, id: UnitId, pipes: Option<ChildOutput>, run: Option<Pid>) {
        let (Some(pipes), Some(sink)) = (pipes, &self.sink) else {
            return;
        };
        self.readers.retain(|r| !r.is_finished());
        let unit = &self.units[id];
        for (stream, (reader, writer)) in [(Stream::Stdout, pipes.stdout), (Stream::Stderr, pipes.stderr)] {
            drop(writer);
            let watches = run.map_or_else(Vec::new, |pid| self.line_watches(id, pid));
            match sink.read(&unit.name, stream, reader, unit.log_files.clone(), watches) {
                Ok(task) => self.readers.push(task),
                Err(e) => warn!("{}: cannot read its output: {e}", unit.label),
            }
        }
    }

    /// Carries out one action of unit `id`'s machine; returns the event it
    /// causes, if any.
    pub(super) fn act(&mut self, id: UnitId, action: Action, now: Instant) -> Option<Event> {
        match action {
            Action::StartRun => Some(self.start_run(id, now)),
            Action::StartFinish { exit } => {
                let (code, signal) = exit.map_or((-1, 0), ExitStatus::finish_args);
                let args = [OsString::from(code.to_string()), OsString::from(signal.to_string())];
                let result = self.spawn_for(id, Program::Finish, &args, Readiness::default());
                let label = &self.units[id].label;
                match result {
                    Ok(pid) => {
                        self.pids.insert(pid, (id, Role::Finish));
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
                let unit = &mut self.units[id];
                log_signal(unit, pgid, signal, why);
                if matches!(why, Why::Stop | Why::Command) && signal == Signal::SIGTERM {
                    unit.runit.got_term = true;
                }
                self.processes.signal_group(pgid, signal, self.pids.contains_key(&pgid));
                None
            }
            Action::AbandonGroup { pgid } => {
                warn!(
                    "{}: processes of group {pgid} survived SIGKILL; moving on",
                    self.units[id].label
                );
                // Whenever it does exit, it is an orphan, not this unit's.
                self.pids.remove(&pgid);
                None
            }
            Action::Restart { after } => {
                let unit = &self.units[id];
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
            Action::Settled => self.settled(id, now),
            Action::Failed { action } => {
                let unit = &self.units[id];
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
                    self.service_ended(id, now);
                }
                self.hold_dependents(id, now);
                None
            }
            Action::TimedOut => {
                let unit = &self.units[id];
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

    /// Spawns unit `id`'s run, with its readiness channel (a notification
    /// pipe, an sd_notify socket) if it has one, and starts watching it.
    fn start_run(&mut self, id: UnitId, now: Instant) -> Event {
        // s6's readiness: a pipe whose write end the run gets at its fd.
        let notify = match self.units[id].readiness.check {
            ReadyCheck::NotificationFd(fd) => match nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC) {
                Ok(pipe) => Some((pipe, fd)),
                Err(e) => {
                    warn!("{}: cannot create its notification pipe: {e}", self.units[id].label);
                    None
                }
            },
            _ => None,
        };
        let sd_notify = self.sd_notify_socket(id);
        let readiness = Readiness {
            notify: notify.as_ref().map(|((_, w), fd)| (w.as_fd(), *fd)),
            notify_socket: sd_notify.as_ref().map(|(path, _)| path.as_path()),
        };
        let result = self.spawn_for(id, Program::Run, &[], readiness);
        match result {
            Ok(pid) => {
                // Registered before the next reap can see it exit.
                self.pids.insert(pid, (id, Role::Run));
                let unit = &mut self.units[id];
                unit.spawn_failure = None;
                unit.start_error = None;
                unit.runit.got_term = false;
                info!("{}: started (pid {pid})", unit.label);
                self.start_probe(id, pid, notify.map(|((r, _), _)| r), sd_notify.map(|(_, s)| s), now);
                Event::Spawned(pid)
            }
            Err(e) => {
                let unit = &mut self.units[id];
                error!("{}: {e}", unit.label);
                unit.spawn_failure = Some(e.failure());
                unit.start_error = Some(e.to_string());
                Event::SpawnFailed
            }
        }
    }

    /// Unit `id` reached down: a logger may run once more to empty its
    /// pipe; an essential service ends the container; what requires it goes
    /// down unless it ended well.
    fn settled(&mut self, id: UnitId, now: Instant) -> Option<Event> {
        let unit = &self.units[id];
        let left = unread(unit);
        if drain::drain_again(&self.units, id, left) {
            self.units[id].drained_from = Some(left);
            debug!("{}: lines left in its pipe: one more run", self.units[id].label);
            return Some(Event::Drain);
        }
        if unit.is_supervised() && !unit.life.wants_down() {
            info!("{}: not restarting (restart policy)", unit.label);
            if unit.essential {
                error!("{}: an essential service ended: shutting down", unit.label);
                self.service_ended(id, now);
            }
        } else {
            debug!("{}: down", unit.label);
        }
        if !self.units[id].life.finished_ok() {
            self.hold_dependents(id, now);
        }
        None
    }

    /// Reaps every child that exited and feeds each exit to its unit.
    pub(super) fn reap(&mut self, now: Instant) {
        let reaped = self.processes.reap();
        self.on_reaped(reaped, now);
    }

    fn on_reaped(&mut self, reaped: Reaped, now: Instant) {
        // First attribute every exit, then feed them: feeding can start new
        // children, which may be given a pid this very reap freed.
        let mut events = Vec::new();
        let mut controls = Vec::new();
        let mut probes = Vec::new();
        let any = !reaped.children.is_empty();
        for (child, failed) in reaped.children {
            let Some((id, role)) = self.pids.remove(&child.pid) else {
                self.orphans_reaped += 1;
                debug!("reaped orphan {} ({})", child.pid, child.status);
                continue;
            };
            if self.units.get(id).is_none() {
                continue; // its unit is gone (cannot be: its slot was busy)
            }
            match (role, failed) {
                // It never ran its program: handled as a spawn that failed
                // (the same message, failure and lifecycle outcome).
                (Role::Run, Some(source)) => {
                    self.stop_probe(id);
                    let unit = &mut self.units[id];
                    let e = SpawnError::new(&unit.run, source);
                    error!("{}: {e}", unit.label);
                    unit.spawn_failure = Some(e.failure());
                    events.push((id, Event::ExecFailed(child.pid)));
                }
                (Role::Finish, Some(source)) => {
                    let unit = &self.units[id];
                    if let Some(finish) = &unit.finish {
                        error!("{}: finish: {}", unit.label, SpawnError::new(finish, source));
                    }
                    events.push((id, Event::ExecFailed(child.pid)));
                }
                (Role::Run, None) => {
                    self.stop_probe(id);
                    let unit = &self.units[id];
                    let group_empty = !unit.life.policy().drain_group || self.processes.group_empty(child.pid);
                    let status = child.status;
                    if unit.is_supervised() && !unit.life.wants_down() && !status.success() {
                        warn!("{}: exited with {status}", unit.label);
                    } else {
                        info!("{}: exited with {status}", unit.label);
                    }
                    events.push((id, Event::RunExited { status, group_empty }));
                }
                (Role::Finish, None) => {
                    let unit = &self.units[id];
                    if child.status == ExitStatus::Exited(125) && !unit.life.wants_down() {
                        info!("{}: finish exited 125: not restarting", unit.label);
                    } else {
                        debug!("{}: finish exited with {}", unit.label, child.status);
                    }
                    events.push((id, Event::FinishExited(child.status)));
                }
                (Role::Control { letter, script }, failed) => {
                    if let Some(source) = failed {
                        // Its exit status (127) is a failure, as runsv's.
                        let unit = &self.units[id];
                        let path = unit.dir.as_ref().map(|d| d.join("control").join(letter.to_string()));
                        let launch = Launch::program(path.into_iter().map(PathBuf::into_os_string).collect());
                        commands::exec_failed(&unit.label, letter, script, SpawnError::new(&launch, source));
                    }
                    controls.push((id, letter, script, child.status));
                }
                (Role::Probe { run, health }, failed) => {
                    if let Some(source) = failed {
                        // Its exit status (127) is a failure: counted as one.
                        let unit = &self.units[id];
                        let spec = if health {
                            unit.health.as_ref()
                        } else {
                            Some(&unit.readiness)
                        };
                        let argv = match spec.map(|s| &s.check) {
                            Some(ReadyCheck::Command(argv)) => argv.clone(),
                            _ => Vec::new(),
                        };
                        warn!(
                            "{}: probe: {}",
                            unit.label,
                            SpawnError::new(&Launch::program(argv), source)
                        );
                    }
                    self.units[id].probe.on_probe_exited(child.pid);
                    probes.push((id, run, child.status.success()));
                }
            }
        }
        for (id, event) in events {
            self.feed(id, event, now);
        }
        // After the runs' exits: a probe of a run reaped in the same drain
        // must see that run gone.
        for (id, run, ok) in probes {
            self.probe_verdict(id, run, ok, now);
        }
        for (id, letter, script, status) in controls {
            self.control_script_done(id, letter, script, status, now);
        }
        self.check_draining_groups(now);
        self.no_children = reaped.no_children;
        if let Some(signal) = self.phases.kill_all_signal()
            && any
            && self.opts.kill_all == KillAll::Descendants
        {
            // Grandchildren re-parented to us by those exits are new children.
            self.processes.kill_all(KillAll::Descendants, signal);
        }
        self.advance(now);
    }

    /// Tells units waiting for their `run`'s group to vanish that it has.
    /// Checked after every reap, and before every deadline: the last member of
    /// a group need not be our child, so its death may bring no SIGCHLD.
    pub(super) fn check_draining_groups(&mut self, now: Instant) {
        for id in self.units.ids() {
            if let Some(pgid) = self.units[id].life.draining_group()
                && self.processes.group_empty(pgid)
            {
                self.feed(id, Event::GroupEmpty, now);
            }
        }
    }
}

/// The log line for a signal the machine sends (SIGCONT after a stop
/// signal goes unsaid).
fn log_signal(unit: &Unit, pgid: Pid, signal: Signal, why: Why) {
    let label = &unit.label;
    match (why, signal) {
        (_, Signal::SIGCONT) => {}
        (Why::Stop, _) => info!("{label}: stopping: {signal} to process group {pgid}"),
        (Why::Leftovers, _) => {
            info!("{label}: run exited but left processes in group {pgid}: sending {signal}")
        }
        (Why::StopTimeout, _) => warn!(
            "{label}: still running {} ms after the stop signal: {signal} to group {pgid}",
            unit.life.policy().stop_timeout.as_millis()
        ),
        (Why::FinishTimeout, _) => warn!(
            "{label}: finish still running after {} ms: {signal} to group {pgid}",
            unit.life.policy().finish_timeout.as_millis()
        ),
        (Why::Command, _) => info!("{label}: {signal} to process group {pgid} (sv)"),
    }
}
