//! runit's control letters: the one-byte commands that `sv` writes to
//! `supervise/control` and the supervisor reads from it, as runsv(8) lists
//! them. The letters are defined here only; both sides go through
//! [`Command::parse`] and [`Command::letter`].

use nix::sys::signal::Signal;

/// `u`: wanted up. The status record's want byte uses the same letter.
pub const UP: u8 = b'u';
/// `d`: wanted down (also the status record's want byte).
pub const DOWN: u8 = b'd';
/// `o`: run once.
pub const ONCE: u8 = b'o';
/// `x`: exit.
pub const EXIT: u8 = b'x';
/// `p`: pause.
pub const PAUSE: u8 = b'p';
/// `c`: continue.
pub const CONTINUE: u8 = b'c';
/// `t`: SIGTERM.
pub const TERM: u8 = b't';
/// `k`: SIGKILL.
pub const KILL: u8 = b'k';
/// `h`: SIGHUP.
pub const HUP: u8 = b'h';
/// `a`: SIGALRM.
pub const ALARM: u8 = b'a';
/// `i`: SIGINT.
pub const INTERRUPT: u8 = b'i';
/// `q`: SIGQUIT.
pub const QUIT: u8 = b'q';
/// `1`: SIGUSR1.
pub const USR1: u8 = b'1';
/// `2`: SIGUSR2.
pub const USR2: u8 = b'2';

/// A command written to `supervise/control`, one byte each (runit's set).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Command {
    /// `u`: wanted up.
    Up,
    /// `d`: wanted down.
    Down,
    /// `o`: run once.
    Once,
    /// `x`: runsv's exit; for baseinit, which supervises every service in one
    /// process, the same as down.
    Exit,
    /// `p`: SIGSTOP, and the paused flag.
    Pause,
    /// `c`: SIGCONT, and the paused flag cleared.
    Continue,
    /// `t` `k` `h` `a` `i` `q` `1` `2`: a signal to the service's process group.
    Signal(Signal),
}

impl Command {
    /// The command a control byte asks for; None for a byte runit ignores.
    pub fn parse(byte: u8) -> Option<Self> {
        use Signal::*;
        Some(match byte {
            UP => Command::Up,
            DOWN => Command::Down,
            ONCE => Command::Once,
            EXIT => Command::Exit,
            PAUSE => Command::Pause,
            CONTINUE => Command::Continue,
            TERM => Command::Signal(SIGTERM),
            KILL => Command::Signal(SIGKILL),
            HUP => Command::Signal(SIGHUP),
            ALARM => Command::Signal(SIGALRM),
            INTERRUPT => Command::Signal(SIGINT),
            QUIT => Command::Signal(SIGQUIT),
            USR1 => Command::Signal(SIGUSR1),
            USR2 => Command::Signal(SIGUSR2),
            _ => return None,
        })
    }

    /// The byte that sends this command; None for a signal runit has no
    /// letter for.
    pub fn letter(self) -> Option<u8> {
        use Signal::*;
        Some(match self {
            Command::Up => UP,
            Command::Down => DOWN,
            Command::Once => ONCE,
            Command::Exit => EXIT,
            Command::Pause => PAUSE,
            Command::Continue => CONTINUE,
            Command::Signal(SIGTERM) => TERM,
            Command::Signal(SIGKILL) => KILL,
            Command::Signal(SIGHUP) => HUP,
            Command::Signal(SIGALRM) => ALARM,
            Command::Signal(SIGINT) => INTERRUPT,
            Command::Signal(SIGQUIT) => QUIT,
            Command::Signal(SIGUSR1) => USR1,
            Command::Signal(SIGUSR2) => USR2,
            Command::Signal(_) => return None,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_runits_control_bytes() {
        let table = [
            (b'u', Some(Command::Up)),
            (b'd', Some(Command::Down)),
            (b'o', Some(Command::Once)),
            (b'x', Some(Command::Exit)),
            (b'p', Some(Command::Pause)),
            (b'c', Some(Command::Continue)),
            (b't', Some(Command::Signal(Signal::SIGTERM))),
            (b'k', Some(Command::Signal(Signal::SIGKILL))),
            (b'h', Some(Command::Signal(Signal::SIGHUP))),
            (b'a', Some(Command::Signal(Signal::SIGALRM))),
            (b'i', Some(Command::Signal(Signal::SIGINT))),
            (b'q', Some(Command::Signal(Signal::SIGQUIT))),
            (b'1', Some(Command::Signal(Signal::SIGUSR1))),
            (b'2', Some(Command::Signal(Signal::SIGUSR2))),
            (b'\n', None),
            (b'z', None),
        ];
        for (byte, command) in table {
            assert_eq!(Command::parse(byte), command, "{:?}", byte as char);
        }
    }

    #[test]
    fn every_letter_round_trips_and_only_runits_fourteen_parse() {
        let mut parsed = 0;
        for byte in 0..=u8::MAX {
            if let Some(command) = Command::parse(byte) {
                parsed += 1;
                assert_eq!(command.letter(), Some(byte), "{command:?}");
            }
        }
        assert_eq!(parsed, 14);
    }

    #[test]
    fn a_signal_runit_cannot_send_has_no_letter() {
        assert_eq!(Command::Signal(Signal::SIGSEGV).letter(), None);
        assert_eq!(Command::Signal(Signal::SIGSTOP).letter(), None);
    }
}
