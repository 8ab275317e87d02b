//! The event loop: waits for signals, helper tasks' messages, the service
//! directory's changes and the next deadline, and hands each to the
//! supervisor. The one `select!` of baseinit.

use std::time::{Duration, Instant};

use nix::sys::signal::Signal;
use nix::unistd::Pid;
use tokio::signal::unix::{SignalKind, signal};
use tokio::sync::mpsc;
use tracing::{error, info, warn};

use crate::control_socket;
use crate::exit::Outcome;
use crate::output;
use crate::spawn::ExecReports;
use crate::watch::ServiceWatch;

use super::host::System;
use super::units::UnitId;
use super::{RESCAN_SETTLE, Supervisor};

/// What reaches the supervisor from its helper tasks.
pub struct Channels {
    /// Bytes from services' `supervise/control` FIFOs.
    pub(super) commands: mpsc::UnboundedReceiver<(UnitId, u8)>,
    /// Readiness tasks: this run of this unit is ready.
    pub(super) ready: mpsc::UnboundedReceiver<(UnitId, Pid)>,
    /// TCP health probes: this run of this unit passed (true) or failed.
    pub(super) probe_results: mpsc::UnboundedReceiver<(UnitId, Pid, bool)>,
}

/// What woke the event loop, with what came with it.
enum Woken {
    Child,
    Stop(Signal),
    Hangup,
    Forward(Signal),
    Command(UnitId, u8),
    Request(control_socket::Request),
    Ready(UnitId, Pid),
    Probe(UnitId, Pid, bool),
    Watched,
    Tick,
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

/// A bug on demand, some time after boot, for the test that proves a panic
/// ends in an ordered stop. Debug builds only: the shipped binary never
/// reads the variable.
fn panic_at() -> Option<Instant> {
    if !cfg!(debug_assertions) {
        return None;
    }
    let ms = std::env::var("BASEINIT_TEST_PANIC_AFTER_MS").ok()?.parse().ok()?;
    Some(Instant::now() + Duration::from_millis(ms))
}

impl Supervisor<System> {
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
            Ok(reports) => self.processes.reports = Some(reports),
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
        let (socket_requests, mut requests) = mpsc::channel::<control_socket::Request>(16);
        if let Some(listener) = control_socket::listen(&self.opts.runtime_dir) {
            tokio::spawn(control_socket::serve(listener, socket_requests));
        }
        // The syslog socket (`--syslog`) too, for the same reasons.
        if let Some(settings) = &self.opts.syslog {
            self.syslog = Some(crate::syslog::start(settings, self.sink.as_ref(), self.opts.style));
        }
        let mut watch = None;
        // What of the watch must stay open until exit, once it has ended for
        // the stop (the phase never returns to Running, so none is made again).
        let mut _retired_watch = None;
        let mut release = crate::resident::Release::default();
        let panic_at = panic_at();
        while !self.phases.is_done() {
            let batch = crate::logging::batch();
            // What started children no longer use (see `spawn::reclaim`).
            crate::spawn::reclaim();
            self.open_due_supervise();
            self.flush_published(Instant::now());
            if panic_at.is_some_and(|at| Instant::now() >= at) {
                panic!("BASEINIT_TEST_PANIC_AFTER_MS asked for it");
            }
            if watch.is_none() && self.phases.is_running() && !self.opts.skip_services {
                watch = ServiceWatch::new(&self.opts.service_dir);
                // The watch comes after the boot's scan (its watches would
                // hold back the first services), so what changed in between
                // has no event: one rescan once it is armed catches that
                // (watch, then scan). With nothing changed it is silent.
                if watch.is_some() {
                    self.rescan_at.get_or_insert(Instant::now() + RESCAN_SETTLE);
                }
            }
            if !self.phases.is_running()
                && let Some(w) = watch.take()
            {
                _retired_watch = w.close();
            }
            // The turn's lines go out before it waits (other tasks log
            // while it waits), and before a release: what runs after one
            // stays mapped, and sending them is not the idle loop's code.
            drop(batch);
            release.on_wake(self.phases.is_running(), Instant::now());
            let wake = self
                .next_wake()
                .into_iter()
                .chain(panic_at)
                .chain(release.deadline())
                // Supervise directories still to make: a turn right away,
                // once the events already waiting are handled (`biased`).
                .chain(self.runit.pending().then(Instant::now))
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
                Some((id, byte)) = commands.recv() => Woken::Command(id, byte),
                Some(request) = requests.recv() => Woken::Request(request),
                Some((id, pid)) = ready.recv() => Woken::Ready(id, pid),
                Some((id, pid, ok)) = probe_results.recv() => Woken::Probe(id, pid, ok),
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
                Woken::Command(id, byte) => self.on_command(id, byte, now),
                Woken::Request(control_socket::Request::Status(reply)) => {
                    let _ = reply.send(self.snapshot(now));
                }
                Woken::Request(control_socket::Request::Sv { name, letters, reply }) => {
                    let _ = reply.send(self.on_sv_request(&name, &letters, now));
                }
                Woken::Ready(id, pid) => self.on_ready(id, pid, now),
                Woken::Probe(id, pid, ok) => {
                    self.probe_result(id, pid, ok, now);
                    self.advance(now);
                }
                Woken::Watched => self.rescan_at = Some(now + RESCAN_SETTLE),
                Woken::Tick => self.on_tick(now),
            }
        }
        // A quick shutdown leaves the files as they were (see
        // `STATE_DURING_SHUTDOWN`); a long one ends with them all down.
        self.flush_published(Instant::now());
        self.drain_output(writer).await;
        let outcome = self.phases.outcome(&self.units);
        let took = self.phases.stop_started().map(|t| t.elapsed()).unwrap_or_default();
        let code = outcome.exit_code();
        let exit = self.opts.remap_exit.apply(code);
        let remapped = if exit == code {
            String::new()
        } else {
            format!(", {code} remapped by --remap-exit")
        };
        info!(
            "exiting with code {exit}{remapped} (stop took {} ms; {} orphans reaped)",
            took.as_millis(),
            self.orphans_reaped
        );
        // The process ends now (`main` exits with the outcome): the kernel
        // frees its memory and closes its files all at once, where dropping
        // this state piece by piece (each pipe taken off epoll and closed,
        // each lock file closed, each buffer freed) would lengthen the stop
        // for nothing. Nothing in it acts on drop; what had to reach disk
        // (state files, output, log lines) is there or queued already.
        std::mem::forget(self);
        outcome
    }

    /// At exit: wait for the readers (each ends when its process and what it
    /// left are gone: the kill-all saw to that), then for the writer, under
    /// one deadline. Bounded: a process left holding a pipe (no kill-all) or
    /// a stdout nobody reads must not keep PID 1 from exiting.
    async fn drain_output(&mut self, writer: Option<output::Writer>) {
        for unit in self.units.iter_mut() {
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
        // The syslog relay's last messages, and its sender, likewise.
        if let Some(relay) = self.syslog.take() {
            relay.finish(deadline).await;
        }
        // The readers' senders are gone now; the writer ends once it wrote
        // what they sent.
        let sink = self.sink.take();
        if let Some(writer) = writer {
            writer.finish(sink, deadline);
        }
    }
}
