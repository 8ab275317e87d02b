//! Running the probes that [`probes`](super::probes) schedules: readiness
//! tasks (TCP connection attempts, HTTP GETs, a notification fd, an
//! sd_notify socket), command probes as child processes, TCP and HTTP
//! health probes; and what their results (and `log-line` matches, which
//! the output readers report) change.

use std::os::fd::{AsFd, OwnedFd};
use std::path::PathBuf;
use std::time::Instant;

use nix::sys::signal::Signal;
use nix::unistd::Pid;
use tokio::task::JoinHandle;
use tracing::{debug, error, info, warn};

use crate::config::{Readiness, ReadyCheck};
use crate::output::LineWatch;
use crate::service::{Event, State};
use crate::spawn::{Launch, Redirect};

use super::Supervisor;
use super::children::base_env;
use super::host::Processes;
use super::probes::{Verdict, Watch};
use super::units::{Role, UnitId};

impl<P: Processes> Supervisor<P> {
    /// systemd's readiness protocol: a datagram socket for the next run of
    /// unit `id`, in the runtime directory, owned by the service's user.
    pub(super) fn sd_notify_socket(&self, id: UnitId) -> Option<(PathBuf, tokio::net::UnixDatagram)> {
        let unit = &self.units[id];
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

    /// Run `pid` of unit `id` just started: begin telling when it is ready.
    pub(super) fn start_probe(
        &mut self,
        id: UnitId,
        pid: Pid,
        notify: Option<OwnedFd>,
        sd_notify: Option<tokio::net::UnixDatagram>,
        now: Instant,
    ) {
        let unit = &mut self.units[id];
        if let Some(task) = unit.probe_task.take() {
            task.abort();
        }
        match unit.probe.on_run_started(&unit.readiness, unit.health.as_ref(), now) {
            Watch::ReadyNow => debug!("{}: ready (as soon as it runs)", unit.label),
            // The output readers started with the run watch its lines.
            Watch::Commands | Watch::Output => {}
            Watch::Task => {
                let task = readiness_task(
                    unit.readiness.clone(),
                    id,
                    pid,
                    notify,
                    sd_notify,
                    self.ready_tx.clone(),
                );
                self.units[id].probe_task = task;
            }
        }
    }

    /// The `log-line` watches for the output of run `pid` of unit `id`, one
    /// set per pipe: its readiness pattern (reported once, on the ready
    /// channel, as a readiness task would) and its health pattern (each
    /// read with a matching line reported as a failed probe).
    pub(super) fn line_watches(&self, id: UnitId, pid: Pid) -> Vec<LineWatch> {
        let unit = &self.units[id];
        let mut watches = Vec::new();
        if let ReadyCheck::LogLine(pattern) = &unit.readiness.check {
            let ready = self.ready_tx.clone();
            watches.push(LineWatch::new(pattern.clone(), move || {
                let _ = ready.send((id, pid));
                false
            }));
        }
        if let Some(ReadyCheck::LogLine(pattern)) = unit.health.as_ref().map(|h| &h.check) {
            let failed = self.probe_tx.clone();
            watches.push(LineWatch::new(pattern.clone(), move || {
                // The loop gone (the end): nothing to report to, ever.
                failed.send((id, pid, false)).is_ok()
            }));
        }
        watches
    }

    /// A readiness task says run `pid` of unit `id` is ready.
    pub(super) fn on_ready(&mut self, id: UnitId, pid: Pid, now: Instant) {
        if let Some(unit) = self.units.get_mut(id)
            && unit.life.run_pid() == Some(pid)
            && !unit.probe.ready
        {
            unit.probe.on_ready(unit.health.as_ref(), now);
            info!("{}: ready", unit.label);
        }
        self.advance(now);
    }

    /// What the probe channel brings: a TCP or HTTP health probe's result,
    /// or, for a `[health] log-line` service (which has no other probe on
    /// that channel), a matching line of run `run`.
    pub(super) fn probe_result(&mut self, id: UnitId, run: Pid, ok: bool, now: Instant) {
        let log_line = self
            .units
            .get(id)
            .and_then(|u| u.health.as_ref())
            .is_some_and(|h| matches!(h.check, ReadyCheck::LogLine(_)));
        if log_line && !ok {
            self.line_matched(id, run, now);
        } else {
            self.probe_verdict(id, run, ok, now);
        }
    }

    /// Whether unit `id`'s health still counts: only for a service meant
    /// to be running as it is, not one being stopped (`sv down`, a rescan,
    /// a requires hold, the shutdown), which a restart must never bring back.
    fn health_counts(&self, id: UnitId) -> bool {
        let running = self.phases.is_running();
        self.units.get(id).is_some_and(|unit| {
            running
                && matches!(unit.life.state(), State::Running { .. })
                && !unit.life.wants_down()
                && unit.leaving.is_none()
        })
    }

    /// `[health] log-line`: a line of run `run` of unit `id` matched.
    fn line_matched(&mut self, id: UnitId, run: Pid, now: Instant) {
        let probing = self.health_counts(id);
        let Some(unit) = self.units.get_mut(id).filter(|u| u.life.run_pid() == Some(run)) else {
            return; // an earlier run's, or a unit gone since
        };
        let Some(health) = &unit.health else {
            return;
        };
        let verdict = unit.probe.on_line_matched(health, probing, now);
        let pattern = match &health.check {
            ReadyCheck::LogLine(pattern) => pattern.as_str(),
            _ => "",
        };
        match verdict {
            Verdict::Unhealthy { failures, retries } => {
                warn!("{}: a line matched {pattern:?} ({failures} of {retries})", unit.label)
            }
            Verdict::Restart { retries } => {
                warn!("{}: a line matched {pattern:?} ({retries} of {retries})", unit.label);
                error!("{}: unhealthy: restarting it", unit.label);
                self.feed(id, Event::Restart, now);
            }
            _ => {}
        }
    }

    /// A probe of run `run` of unit `id` passed or failed: a readiness probe
    /// before the run is ready, a health probe after.
    pub(super) fn probe_verdict(&mut self, id: UnitId, run: Pid, ok: bool, now: Instant) {
        let probing = self.health_counts(id);
        let Some(unit) = self.units.get_mut(id).filter(|u| u.life.run_pid() == Some(run)) else {
            return; // an earlier run's, or a unit gone since
        };
        match unit
            .probe
            .on_result(ok, &unit.readiness, unit.health.as_ref(), probing, now)
        {
            Verdict::Ready => info!("{}: ready", unit.label),
            Verdict::NotYet | Verdict::Healthy | Verdict::Ignored => {}
            Verdict::GaveUp { probes } => {
                error!("{}: not ready after {probes} probes: it stays not ready", unit.label)
            }
            Verdict::Unhealthy { failures, retries } => {
                warn!("{}: health probe failed ({failures} of {retries})", unit.label)
            }
            Verdict::Restart { retries } => {
                warn!("{}: health probe failed ({retries} of {retries})", unit.label);
                error!("{}: unhealthy: restarting it", unit.label);
                // A graceful stop (SIGKILL at the stop timeout if need be),
                // then a start whatever the restart policy: counted like a
                // crash by the failure policy.
                self.feed(id, Event::Restart, now);
            }
        }
    }

    /// The run of unit `id` ended: forget its readiness and probes.
    pub(super) fn stop_probe(&mut self, id: UnitId) {
        let unit = &mut self.units[id];
        unit.probe.on_run_ended();
        if let Some(task) = unit.probe_task.take() {
            task.abort();
        }
    }

    /// Runs due probes (readiness before the run is ready, health after) and
    /// kills those past their timeout.
    pub(super) fn run_probes(&mut self, now: Instant) {
        for id in self.units.ids() {
            let unit = &mut self.units[id];
            if let Some(probe) = unit.probe.overdue(now) {
                warn!("{}: probe timed out: killing it", unit.label);
                self.processes.signal_group(probe, Signal::SIGKILL, true);
                continue;
            }
            let Some(due) = unit.probe.take_due(unit.life.run_pid(), unit.health.is_some(), now) else {
                continue;
            };
            let spec = if due.health {
                unit.health.as_ref()
            } else {
                Some(&unit.readiness)
            };
            let Some(spec) = spec.cloned() else {
                continue;
            };
            let timeout = spec.timeout;
            match spec.check {
                ReadyCheck::Command(argv) => self.run_command_probe(id, due.run, due.health, argv, timeout, now),
                ReadyCheck::Tcp(addr) => {
                    let results = self.probe_tx.clone();
                    let run = due.run;
                    tokio::spawn(async move {
                        let attempt = tokio::net::TcpStream::connect(addr.as_str());
                        let ok = matches!(tokio::time::timeout(timeout, attempt).await, Ok(Ok(_)));
                        let _ = results.send((id, run, ok));
                    });
                }
                ReadyCheck::Http(url) => {
                    let results = self.probe_tx.clone();
                    let (run, label) = (due.run, unit.label.clone());
                    tokio::spawn(async move {
                        // Why it failed, beside the count the verdict logs.
                        let ok = match url.get(timeout).await {
                            Ok(status) if (200..300).contains(&status) => true,
                            Ok(status) => {
                                info!("{label}: health probe: {url} answered {status}");
                                false
                            }
                            Err(e) => {
                                info!("{label}: health probe: {url}: {e}");
                                false
                            }
                        };
                        let _ = results.send((id, run, ok));
                    });
                }
                _ => {}
            }
        }
    }

    /// A command probe of run `run`, in the service's directory, its output
    /// thrown away.
    fn run_command_probe(
        &mut self,
        id: UnitId,
        run: Pid,
        health: bool,
        argv: Vec<std::ffi::OsString>,
        timeout: std::time::Duration,
        now: Instant,
    ) {
        let launch = Launch {
            cwd: self.units[id].dir.clone(),
            ..Launch::program(argv)
        };
        let quiet = self.devnull.as_ref().map(|fd| fd.as_fd());
        let redirect = Redirect {
            stdout: quiet,
            stderr: quiet,
            ..Redirect::default()
        };
        match self.processes.spawn(&launch, &[], base_env(&self.env), redirect) {
            Ok(pid) => {
                self.pids.insert(pid, (id, Role::Probe { run, health }));
                self.units[id].probe.on_probe_started(pid, now + timeout);
            }
            Err(e) => {
                warn!("{}: probe: {e}", self.units[id].label);
                self.probe_verdict(id, run, false, now);
            }
        }
    }
}

/// The task that tells when run `pid` of unit `id` is ready, for the kinds
/// a task watches: TCP connection attempts, the notification fd's newline,
/// sd_notify's `READY=1`.
fn readiness_task(
    readiness: Readiness,
    id: UnitId,
    pid: Pid,
    notify: Option<OwnedFd>,
    sd_notify: Option<tokio::net::UnixDatagram>,
    ready: tokio::sync::mpsc::UnboundedSender<(UnitId, Pid)>,
) -> Option<JoinHandle<()>> {
    match readiness.check {
        ReadyCheck::Tcp(addr) => Some(tokio::spawn(async move {
            for _ in 0..readiness.retries.max(1) {
                let attempt = tokio::net::TcpStream::connect(addr.as_str());
                if let Ok(Ok(_)) = tokio::time::timeout(readiness.timeout, attempt).await {
                    let _ = ready.send((id, pid));
                    return;
                }
                tokio::time::sleep(readiness.interval).await;
            }
            warn!("{addr}: never accepted a connection: the service stays not ready");
        })),
        ReadyCheck::Http(url) => Some(tokio::spawn(async move {
            let mut last = String::new();
            for _ in 0..readiness.retries.max(1) {
                match url.get(readiness.timeout).await {
                    Ok(status) if (200..300).contains(&status) => {
                        let _ = ready.send((id, pid));
                        return;
                    }
                    Ok(status) => last = format!("it answered {status}"),
                    Err(e) => last = e,
                }
                tokio::time::sleep(readiness.interval).await;
            }
            warn!("{url}: never answered 2xx (last: {last}): the service stays not ready");
        })),
        ReadyCheck::SdNotify => {
            let socket = sd_notify?;
            Some(tokio::spawn(async move {
                let mut buf = vec![0u8; 4096];
                while let Ok(n) = socket.recv(&mut buf).await {
                    let datagram = buf.get(..n).unwrap_or_default();
                    if datagram.split(|b| *b == b'\n').any(|line| line == b"READY=1") {
                        let _ = ready.send((id, pid));
                        return;
                    }
                }
            }))
        }
        ReadyCheck::NotificationFd(_) => {
            let reader = notify.and_then(|fd| tokio::net::unix::pipe::Receiver::from_owned_fd(fd).ok())?;
            Some(tokio::spawn(async move {
                let mut buf = [0u8; 64];
                loop {
                    if reader.readable().await.is_err() {
                        return;
                    }
                    match reader.try_read(&mut buf) {
                        Ok(0) => return, // closed without saying ready
                        Ok(n) if buf.get(..n).is_some_and(|read| read.contains(&b'\n')) => {
                            let _ = ready.send((id, pid));
                            return;
                        }
                        Ok(_) => {}
                        Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
                        Err(_) => return,
                    }
                }
            }))
        }
        // Probed by the loop, watched by the output readers, or nothing.
        ReadyCheck::Command(_) | ReadyCheck::LogLine(_) | ReadyCheck::Started => None,
    }
}
