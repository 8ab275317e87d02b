//! `sv`'s commands: the bytes read from a service's `supervise/control`,
//! what each does, and runit's `control/` scripts around them, as runsv
//! runs them:
//! - `control/C` for a command C other than `d` and `x` stands in for it:
//!   exit 0 means handled, otherwise the default follows;
//! - a stop on purpose (`sv down`, `sv exit`, a shutdown) of a running
//!   service runs `control/t` first, and the stop signal goes out only if
//!   it is missing or fails; then `control/d` (down) or `control/x` (exit,
//!   shutdown) runs, its exit status ignored.

use std::time::Instant;

use nix::sys::signal::Signal;
use tracing::{debug, info, warn};

use crate::config::is_executable_file;
use crate::exit::ExitStatus;
use crate::runit::Command;
use crate::runit::status::RECORD_LEN;
use crate::service::{Event, State};
use crate::spawn::Launch;

use super::Supervisor;
use super::children::{Program, Readiness};
use super::host::Processes;
use super::units::{ControlScript, Role, UnitId};

impl<P: Processes> Supervisor<P> {
    /// A byte from a service's `supervise/control`.
    pub(super) fn on_command(&mut self, id: UnitId, byte: u8, now: Instant) {
        let Some(unit) = self.units.get(id).filter(|u| !u.retired) else {
            return; // for a unit gone since (its slot may hold another now)
        };
        let Some(command) = Command::parse(byte) else {
            debug!("{}: ignoring control byte {byte:#04x}", unit.label);
            return;
        };
        debug!("{}: control command {command:?}", unit.label);
        // Down and exit run their scripts around the stop (see `stop`).
        let stops = matches!(command, Command::Down | Command::Exit);
        if !stops && self.start_control(id, byte as char, ControlScript::Instead(command)) {
            return;
        }
        self.apply_command(id, command, now);
        // What depends on it may start or stop now.
        self.advance(now);
    }

    /// `sv` over the control socket, for a service without a `supervise/`
    /// directory: runit's control `letters`, as if written to its
    /// `control` FIFO, then its status record (None for no such service).
    pub(super) fn on_sv_request(&mut self, name: &str, letters: &[u8], now: Instant) -> Option<[u8; RECORD_LEN]> {
        let id = self.units.by_name(name)?;
        for &byte in letters {
            self.on_command(id, byte, now);
        }
        // `x` may have retired it.
        self.units.get(id).filter(|u| !u.retired)?;
        self.runit_status(id).map(|status| status.encode())
    }

    /// Starts `control/LETTER` of unit `id` if it has one; says whether it
    /// did.
    fn start_control(&mut self, id: UnitId, letter: char, script: ControlScript) -> bool {
        let Some(dir) = &self.units[id].dir else {
            return false;
        };
        let path = dir.join("control").join(letter.to_string());
        if !is_executable_file(&path) {
            return false;
        }
        let launch = Launch {
            cwd: Some(dir.clone()),
            ..Launch::program(vec![path.into_os_string()])
        };
        match self.spawn_for(id, Program::Other(&launch), &[], Readiness::default()) {
            Ok(pid) => {
                self.pids.insert(pid, (id, Role::Control { letter, script }));
                true
            }
            Err(e) => {
                warn!("{}: control/{letter}: {e}", self.units[id].label);
                false
            }
        }
    }

    /// A `control/` script of unit `id` exited with `status`.
    pub(super) fn control_script_done(
        &mut self,
        id: UnitId,
        letter: char,
        script: ControlScript,
        status: ExitStatus,
        now: Instant,
    ) {
        let Some(unit) = self.units.get(id).filter(|u| !u.retired) else {
            return;
        };
        match script {
            ControlScript::Instead(command) if status.success() => {
                debug!("{}: control/{letter} handled {command:?}", unit.label);
            }
            ControlScript::Instead(command) => self.apply_command(id, command, now),
            ControlScript::Stop { after } => {
                if status.success() {
                    debug!("{}: control/t stopped it: no stop signal", unit.label);
                    self.feed(id, Event::StopHandled, now);
                } else {
                    self.feed(id, Event::Down, now);
                }
                self.start_control(id, after, ControlScript::AfterStop);
            }
            ControlScript::AfterStop => debug!("{}: control/{letter} exited with {status}", unit.label),
        }
    }

    /// Stops unit `id`: with `control/t` and `control/d` or `control/x`
    /// around the stop signal when it is a stop on purpose of a running
    /// service (see the module's doc), else the stop signal alone.
    pub(super) fn stop(&mut self, id: UnitId, now: Instant) {
        let unit = &mut self.units[id];
        let command = unit.runit.stop_command.take();
        let running = matches!(unit.life.state(), State::Running { .. });
        let Some(command) = command.filter(|_| running) else {
            return self.feed(id, Event::Down, now);
        };
        let after = if command == Command::Down { 'd' } else { 'x' };
        if self.start_control(id, 't', ControlScript::Stop { after }) {
            self.feed(id, Event::WantDown, now);
        } else {
            self.feed(id, Event::Down, now);
            self.start_control(id, after, ControlScript::AfterStop);
        }
    }

    fn apply_command(&mut self, id: UnitId, command: Command, now: Instant) {
        if self.schedule_command(id, command, now) {
            return;
        }
        let stopping = self.phases.is_shutting_down();
        let unit = &mut self.units[id];
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
            Command::Up | Command::Once => {
                unit.order = Default::default();
                unit.runit.stop_command = None;
                let event = if command == Command::Up { Event::Up } else { Event::Once };
                self.feed(id, event, now)
            }
            Command::Down | Command::Exit => {
                unit.order.waiting = false;
                unit.order.held = false;
                unit.runit.stop_command = Some(command);
                self.stop_after_dependents(id, now)
            }
            Command::Pause | Command::Continue => {
                let (signal, paused) = match command {
                    Command::Pause => (Signal::SIGSTOP, true),
                    _ => (Signal::SIGCONT, false),
                };
                if let Some(pid) = unit.life.run_pid() {
                    info!("{}: {signal} to process group {pid} (sv)", unit.label);
                    self.processes.signal_group(pid, signal, true);
                }
                self.units[id].runit.paused = paused;
                self.publish(id);
            }
            Command::Signal(signal) => self.feed(id, Event::Signal(signal), now),
        }
    }
}

/// The message for a `control/` script that could not be started.
pub(super) fn exec_failed(label: &str, letter: char, script: ControlScript, e: impl std::fmt::Display) {
    match script {
        ControlScript::AfterStop => warn!("{label}: control/{letter}: {e}"),
        _ => warn!("{label}: control/{letter}: {e}; doing the default"),
    }
}
