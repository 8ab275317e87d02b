//! How children end, and the one table that maps every way baseinit ends to its exit code.

use std::fmt;

use nix::sys::signal::Signal;

/// Exit code: baseinit could not boot (bad service tree, failed startup
/// script, failed setup).
pub const BOOT_FAILED: i32 = 1;
/// Exit code: the command line or an environment variable it reads is invalid
/// (clap exits with this code itself).
pub const USAGE: i32 = 2;
/// Exit code: baseinit itself failed (a bug: a panic), after stopping every
/// process it could (EX_SOFTWARE).
pub const INTERNAL_ERROR: i32 = 70;
/// Exit code: the main command exists but could not be executed.
pub const CANNOT_EXECUTE: i32 = 126;
/// Exit code: the main command was not found.
pub const NOT_FOUND: i32 = 127;

/// How a child process ended, decoded from its wait status.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ExitStatus {
    /// It called `exit(code)`.
    Exited(i32),
    /// A signal killed it (the raw number, so real-time signals fit too).
    Signaled(i32),
}

impl ExitStatus {
    pub fn success(self) -> bool {
        self == ExitStatus::Exited(0)
    }

    /// The shell's convention: the exit code, or 128 + the signal number.
    pub fn code(self) -> i32 {
        match self {
            ExitStatus::Exited(code) => code,
            ExitStatus::Signaled(signal) => 128 + signal,
        }
    }

    /// runit's two arguments to `finish`: the exit code or -1, and the signal
    /// number or 0.
    pub fn finish_args(self) -> (i32, i32) {
        match self {
            ExitStatus::Exited(code) => (code, 0),
            ExitStatus::Signaled(signal) => (-1, signal),
        }
    }
}

impl fmt::Display for ExitStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            ExitStatus::Exited(code) => write!(f, "exit code {code}"),
            ExitStatus::Signaled(signal) => match Signal::try_from(signal) {
                Ok(name) => write!(f, "signal {signal} ({name})"),
                Err(_) => write!(f, "signal {signal}"),
            },
        }
    }
}

/// Why a program could not be started.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SpawnFailure {
    NotFound,
    NotExecutable,
}

/// How a whole run of baseinit ended. [`Outcome::exit_code`] is the exit-code
/// table of the manual (docs/supervision.md), in code.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// Stopped by SIGTERM/SIGINT with no main command running.
    Stopped,
    /// The main command ended, on its own or during a shutdown.
    MainCommand(ExitStatus),
    /// The main command could not be started.
    MainCommandFailed(SpawnFailure),
    /// Boot failed: a broken service tree, a failed startup script.
    BootFailed,
    /// An essential service ended for good (or a service failed with
    /// `on-failure = "exit"`): its status.
    ServiceEnded(ExitStatus),
}

impl Outcome {
    pub fn exit_code(self) -> i32 {
        match self {
            Outcome::Stopped => 0,
            Outcome::MainCommand(status) | Outcome::ServiceEnded(status) => status.code(),
            Outcome::MainCommandFailed(SpawnFailure::NotFound) => NOT_FOUND,
            Outcome::MainCommandFailed(SpawnFailure::NotExecutable) => CANNOT_EXECUTE,
            Outcome::BootFailed => BOOT_FAILED,
        }
    }
}

/// `--remap-exit FROM=TO`: baseinit's exit code FROM becomes TO, after
/// [`Outcome::exit_code`] (e.g. `143=0`: a main command that died of the
/// stop's SIGTERM counts as a success). Usage errors (2) and a bug (70) are
/// never remapped: they happen before or outside the outcome.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Remap {
    pairs: Vec<(u8, u8)>,
}

impl Remap {
    /// The pairs as given; a FROM given twice is an error (which TO would
    /// win is not obvious, so neither does).
    pub fn new(pairs: &[(u8, u8)]) -> Result<Self, String> {
        for (at, (from, to)) in pairs.iter().enumerate() {
            if let Some((_, other)) = pairs[..at].iter().find(|(f, _)| f == from) {
                return Err(format!(
                    "exit code {from} is remapped twice ({from}={other} and {from}={to})"
                ));
            }
        }
        Ok(Remap { pairs: pairs.to_vec() })
    }

    /// `code`, or what it is remapped to.
    pub fn apply(&self, code: i32) -> i32 {
        self.pairs
            .iter()
            .find(|(from, _)| i32::from(*from) == code)
            .map_or(code, |(_, to)| i32::from(*to))
    }
}

/// One `--remap-exit` value: `FROM=TO` pairs separated by commas; blank
/// ones are skipped, so an empty `BASEINIT_REMAP_EXIT=` maps nothing.
pub fn parse_remaps(text: &str) -> Result<Vec<(u8, u8)>, String> {
    text.split(',')
        .filter(|pair| !pair.trim().is_empty())
        .map(parse_remap)
        .collect()
}

/// One `FROM=TO` of `--remap-exit`, each an exit code (0-255).
pub fn parse_remap(text: &str) -> Result<(u8, u8), String> {
    let code = |side: &str| -> Result<u8, String> {
        let side = side.trim();
        side.parse::<u8>()
            .map_err(|_| format!("{side:?} is not an exit code (a number from 0 to 255)"))
    };
    let Some((from, to)) = text.split_once('=') else {
        return Err(format!("{text:?} is not FROM=TO (write e.g. 143=0)"));
    };
    Ok((code(from)?, code(to)?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn remapping_parses_pairs_and_maps_only_their_codes() {
        let ok = [
            ("143=0", (143, 0)),
            (" 130 = 0 ", (130, 0)),
            ("0=1", (0, 1)),
            ("255=255", (255, 255)),
        ];
        for (text, pair) in ok {
            assert_eq!(parse_remap(text), Ok(pair), "{text}");
        }
        for bad in [
            "143", "", "=0", "143=", "256=0", "0=256", "-1=0", "a=b", "143=0=1", "1.5=0",
        ] {
            assert!(parse_remap(bad).is_err(), "{bad:?} should be rejected");
        }
        assert_eq!(
            parse_remap("256=0"),
            Err("\"256\" is not an exit code (a number from 0 to 255)".to_owned())
        );
        let remap = Remap::new(&[(143, 0), (130, 0), (3, 4)]).unwrap();
        let table = [(143, 0), (130, 0), (3, 4), (4, 4), (0, 0), (137, 137), (70, 70)];
        for (code, mapped) in table {
            assert_eq!(remap.apply(code), mapped, "{code}");
        }
        assert_eq!(Remap::default().apply(143), 143, "no mapping: unchanged");
        assert_eq!(parse_remaps("143=0, 130=0,"), Ok(vec![(143, 0), (130, 0)]));
        assert_eq!(parse_remaps(""), Ok(vec![]));
        assert!(parse_remaps("143=0,143").is_err());
        assert_eq!(
            Remap::new(&[(143, 0), (1, 2), (143, 1)]),
            Err("exit code 143 is remapped twice (143=0 and 143=1)".to_owned())
        );
        assert!(Remap::new(&[(143, 0), (143, 0)]).is_err(), "even to the same code");
    }

    #[test]
    fn decodes_exit_codes_and_signals_like_a_shell() {
        let table = [
            (ExitStatus::Exited(0), 0, (0, 0), true),
            (ExitStatus::Exited(3), 3, (3, 0), false),
            (ExitStatus::Signaled(9), 137, (-1, 9), false),
            (ExitStatus::Signaled(15), 143, (-1, 15), false),
            (ExitStatus::Signaled(34), 162, (-1, 34), false),
        ];
        for (status, code, finish, success) in table {
            assert_eq!(status.code(), code, "{status:?}");
            assert_eq!(status.finish_args(), finish, "{status:?}");
            assert_eq!(status.success(), success, "{status:?}");
        }
    }

    #[test]
    fn displays_signal_names() {
        assert_eq!(ExitStatus::Signaled(9).to_string(), "signal 9 (SIGKILL)");
        assert_eq!(ExitStatus::Exited(3).to_string(), "exit code 3");
    }

    #[test]
    fn outcome_table() {
        let table = [
            (Outcome::Stopped, 0),
            (Outcome::MainCommand(ExitStatus::Exited(0)), 0),
            (Outcome::MainCommand(ExitStatus::Exited(3)), 3),
            (Outcome::MainCommand(ExitStatus::Signaled(9)), 137),
            (Outcome::MainCommandFailed(SpawnFailure::NotFound), 127),
            (Outcome::MainCommandFailed(SpawnFailure::NotExecutable), 126),
            (Outcome::BootFailed, 1),
            (Outcome::ServiceEnded(ExitStatus::Exited(4)), 4),
            (Outcome::ServiceEnded(ExitStatus::Signaled(9)), 137),
        ];
        for (outcome, code) in table {
            assert_eq!(outcome.exit_code(), code, "{outcome:?}");
        }
    }
}
