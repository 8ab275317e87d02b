//! `sv`'s commands: the bytes read from a service's `supervise/control`,
//! runit's `control/C` scripts that stand in for them, and what each does.

use std::time::Instant;

use nix::sys::signal::Signal;
use tracing::{debug, info, warn};

use crate::config::is_executable_file;
use crate::exit::ExitStatus;
use crate::service::Event;
use crate::spawn::Launch;
use crate::supervise::Command;

use super::Supervisor;
use super::children::{Program, Readiness};
use super::host::Processes;
use super::units::{Role, UnitId};

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
        // runit's `control/C` scripts: exit 0 means "handled, skip the default".
        let letter = byte as char;
        if let Some(dir) = &unit.dir {
            let script = dir.join("control").join(letter.to_string());
            if is_executable_file(&script) {
                let launch = Launch {
                    cwd: Some(dir.clone()),
                    ..Launch::program(vec![script.into_os_string()])
                };
                match self.spawn_for(id, Program::Other(&launch), &[], Readiness::default()) {
                    Ok(pid) => {
                        self.pids.insert(pid, (id, Role::Control { command, letter }));
                        return;
                    }
                    Err(e) => warn!("{}: control/{letter}: {e}; doing the default", self.units[id].label),
                }
            }
        }
        self.apply_command(id, command, now);
        // What depends on it may start or stop now.
        self.advance(now);
    }

    /// A `control/C` script exited: on success it handled the command,
    /// otherwise the default follows.
    pub(super) fn control_script_done(&mut self, id: UnitId, command: Command, status: ExitStatus, now: Instant) {
        if self.units.get(id).is_none_or(|u| u.retired) {
            return;
        }
        if status.success() {
            debug!("{}: control script handled {command:?}", self.units[id].label);
        } else {
            self.apply_command(id, command, now);
        }
    }

    fn apply_command(&mut self, id: UnitId, command: Command, now: Instant) {
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
                let event = if command == Command::Up { Event::Up } else { Event::Once };
                self.feed(id, event, now)
            }
            Command::Down | Command::Exit => {
                unit.order.waiting = false;
                unit.order.held = false;
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
