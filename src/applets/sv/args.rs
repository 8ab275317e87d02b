//! sv's command line: runit's option parsing (djb getopt, `w:vV`) and its
//! table from a command word to the control characters sent and the wait.

use std::ffi::{OsStr, OsString};
use std::os::unix::ffi::OsStrExt;

use nix::sys::signal::Signal;

use crate::runit;

/// runit's default wait for the waiting commands, in seconds.
pub const DEFAULT_WAIT: u64 = 7;

/// What sv does to each service first.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Act {
    /// Write these commands to `supervise/control`, one letter each, in one
    /// write. The waiting test looks at each.
    Control(&'static [runit::Command]),
    /// Print the status (and the log service's).
    Status,
    /// Nothing: only wait for the service to be up and its `check` to pass,
    /// or for it to be down (`check`).
    Check,
}

/// A command word, decoded as runit's sv does.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Command {
    pub act: Act,
    /// Wait for the command to take effect (`start`, `-v`, …).
    pub wait: bool,
    /// On timeout, report `kill:` and send `k` (the `force-` commands).
    pub kill: bool,
}

const TERM: runit::Command = runit::Command::Signal(Signal::SIGTERM);
const HUP: runit::Command = runit::Command::Signal(Signal::SIGHUP);

/// The commands a plain command word sends: the one its first character is
/// the letter of (`sv u`, `sv up` and `sv upward` all send `u`).
static PLAIN: [runit::Command; 13] = [
    runit::Command::Up,
    runit::Command::Down,
    runit::Command::Once,
    runit::Command::Pause,
    runit::Command::Continue,
    HUP,
    runit::Command::Signal(Signal::SIGALRM),
    runit::Command::Signal(Signal::SIGINT),
    runit::Command::Signal(Signal::SIGKILL),
    runit::Command::Signal(Signal::SIGQUIT),
    runit::Command::Signal(Signal::SIGUSR1),
    runit::Command::Signal(Signal::SIGUSR2),
    TERM,
];

impl Command {
    /// Decodes a command word. runit looks at the first character only,
    /// except where one character starts several words (`s`, `r`, `f`, `t`,
    /// `c`), so `sv u`, `sv up` and `sv upward` are all `up`. `verbose` (`-v`
    /// or `-w`) makes the plain commands wait too. None: a usage error.
    pub fn decode(word: &[u8], verbose: bool) -> Option<Command> {
        use runit::Command::{Continue, Down, Exit, Up};
        let send = |commands, wait, kill| {
            Some(Command {
                act: Act::Control(commands),
                wait,
                kill,
            })
        };
        let first = *word.first()?;
        match first {
            b'x' | b'e' => send(&[Exit], verbose, false),
            b'X' | b'E' => send(&[Exit], true, true),
            b'D' => send(&[Down], true, true),
            b'T' => send(&[TERM, Continue], true, true),
            b't' if word == b"try-restart" => send(&[TERM, Continue], true, false),
            b'c' if word == b"check" => Some(Command {
                act: Act::Check,
                wait: true,
                kill: false,
            }),
            b's' => match word {
                b"shutdown" => send(&[Exit], true, false),
                b"start" => send(&[Up], true, false),
                b"stop" => send(&[Down], true, false),
                // Every other `s…` word is status, which never waits.
                _ => Some(Command {
                    act: Act::Status,
                    wait: false,
                    kill: false,
                }),
            },
            b'r' => match word {
                b"restart" => send(&[TERM, Continue, Up], true, false),
                b"reload" => send(&[HUP], true, false),
                _ => None,
            },
            b'f' => match word {
                b"force-reload" => send(&[TERM, Continue], true, true),
                b"force-restart" => send(&[TERM, Continue, Up], true, true),
                b"force-shutdown" => send(&[Exit], true, true),
                b"force-stop" => send(&[Down], true, true),
                _ => None,
            },
            _ => send(plain(first)?, verbose, false),
        }
    }

    /// Whether this is `exit`, for which no supervisor running is success.
    pub fn exits(&self) -> bool {
        matches!(self.act, Act::Control([runit::Command::Exit, ..]))
    }
}

/// The plain command whose letter is `first`, as a one-command list.
fn plain(first: u8) -> Option<&'static [runit::Command]> {
    PLAIN
        .iter()
        .find(|command| command.letter() == Some(first))
        .map(std::slice::from_ref)
}

/// A parsed command line.
#[derive(Debug, PartialEq, Eq)]
pub struct Options {
    pub command: Command,
    /// Seconds to wait (`-w`, else `$SVWAIT`, else 7).
    pub wait: u64,
    pub services: Vec<OsString>,
}

/// A usage error: sv prints `before` (if any), then the usage line, and
/// exits 100.
#[derive(Debug, PartialEq, Eq)]
pub struct Usage {
    pub before: Option<String>,
}

/// Exit status of a usage error (runit's).
pub const USAGE_EXIT: i32 = 100;

impl Usage {
    fn bare() -> Usage {
        Usage { before: None }
    }

    /// The text for stderr, exactly runit's (which ends in a blank line).
    pub fn text(&self, progname: &str) -> String {
        let mut text = self.before.clone().unwrap_or_default();
        text.push_str(&format!("usage: {progname} [-v] [-w sec] command service ...\n\n"));
        text
    }
}

/// runit's `scan_ulong`: the leading decimal digits, 0 if there are none.
/// Saturates instead of wrapping.
pub fn scan_ulong(s: &[u8]) -> u64 {
    s.iter()
        .take_while(|b| b.is_ascii_digit())
        .fold(0u64, |n, d| n.saturating_mul(10).saturating_add(u64::from(d - b'0')))
}

/// Parses `args` (args[0] is the program name) as runit's sv does, with
/// `svwait` the value of `$SVWAIT`.
pub fn parse(args: &[OsString], svwait: Option<&OsStr>) -> Result<Options, Usage> {
    let progname = progname(args);
    let mut wait = svwait.map_or(DEFAULT_WAIT, |w| scan_ulong(w.as_bytes()));
    let mut verbose = false;
    let mut index = 1;
    // djb's getopt: options come first, clustered or not; it stops at the
    // first word not starting with `-`, at a lone `-` (kept), or at a word
    // starting with `--` (dropped, whatever follows the dashes).
    'words: while let Some(word) = args.get(index).map(|a| a.as_bytes()) {
        if word.len() < 2 || word[0] != b'-' {
            break;
        }
        index += 1;
        if word[1] == b'-' {
            break;
        }
        let mut pos = 1;
        while pos < word.len() {
            let c = word[pos];
            pos += 1;
            match c {
                b'v' => verbose = true,
                b'w' => {
                    let value = if pos < word.len() {
                        &word[pos..]
                    } else {
                        let Some(next) = args.get(index) else {
                            return Err(Usage {
                                before: Some(format!("{progname}: option requires an argument -- w\n")),
                            });
                        };
                        index += 1;
                        next.as_bytes()
                    };
                    wait = scan_ulong(value);
                    verbose = true;
                    continue 'words;
                }
                b'V' => {
                    return Err(Usage {
                        before: Some(format!("$Id: baseinit sv {} $\n", env!("CARGO_PKG_VERSION"))),
                    });
                }
                other => {
                    return Err(Usage {
                        before: Some(format!("{progname}: illegal option -- {}\n", char::from(other))),
                    });
                }
            }
        }
    }
    let word = args.get(index).ok_or_else(Usage::bare)?;
    let services: Vec<OsString> = args[index + 1..].to_vec();
    if services.is_empty() {
        return Err(Usage::bare());
    }
    let command = Command::decode(word.as_bytes(), verbose).ok_or_else(Usage::bare)?;
    Ok(Options {
        command,
        wait,
        services,
    })
}

/// The program name sv reports: the file name of args[0], as runit strips it.
pub fn progname(args: &[OsString]) -> String {
    let full = args.first().map(|a| a.as_bytes()).unwrap_or(b"sv");
    let base = full.rsplit(|&b| b == b'/').next().unwrap_or(full);
    String::from_utf8_lossy(base).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(list: &[&str]) -> Vec<OsString> {
        list.iter().map(OsString::from).collect()
    }

    fn ok(list: &[&str]) -> Options {
        parse(&args(list), None).unwrap()
    }

    fn usage(list: &[&str]) -> Usage {
        parse(&args(list), None).unwrap_err()
    }

    fn cmd(word: &str, verbose: bool) -> Command {
        Command::decode(word.as_bytes(), verbose).unwrap()
    }

    /// The letters a command sends ("" for status and check).
    fn letters(command: Command) -> String {
        match command.act {
            Act::Control(commands) => commands
                .iter()
                .map(|c| char::from(c.letter().expect("a letter")))
                .collect(),
            Act::Status | Act::Check => String::new(),
        }
    }

    /// A command as runit's sv table has it: the letters sent, wait, kill.
    fn sent(command: Command) -> (String, bool, bool) {
        assert!(matches!(command.act, Act::Control(_)), "{command:?}");
        (letters(command), command.wait, command.kill)
    }

    fn control(acts: &str, wait: bool, kill: bool) -> (String, bool, bool) {
        (acts.to_string(), wait, kill)
    }

    #[test]
    fn plain_commands_send_their_first_character_and_wait_only_with_v() {
        for (word, acts) in [
            ("up", "u"),
            ("down", "d"),
            ("once", "o"),
            ("pause", "p"),
            ("cont", "c"),
            ("hup", "h"),
            ("alarm", "a"),
            ("interrupt", "i"),
            ("quit", "q"),
            ("1", "1"),
            ("2", "2"),
            ("term", "t"),
            ("kill", "k"),
            ("exit", "x"),
        ] {
            assert_eq!(sent(cmd(word, false)), control(acts, false, false), "{word}");
            assert_eq!(sent(cmd(word, true)), control(acts, true, false), "{word} -v");
        }
    }

    #[test]
    fn only_the_first_character_counts_for_plain_commands() {
        assert_eq!(letters(cmd("u", false)), "u");
        assert_eq!(letters(cmd("dogs", false)), "d");
        assert_eq!(letters(cmd("termite", false)), "t");
        assert_eq!(letters(cmd("continue", false)), "c");
        assert_eq!(letters(cmd("e", false)), "x");
        assert_eq!(cmd("stat", false).act, Act::Status);
        assert_eq!(cmd("s", false).act, Act::Status);
    }

    #[test]
    fn lsb_commands_always_wait() {
        assert_eq!(sent(cmd("start", false)), control("u", true, false));
        assert_eq!(sent(cmd("stop", false)), control("d", true, false));
        assert_eq!(sent(cmd("restart", false)), control("tcu", true, false));
        assert_eq!(sent(cmd("shutdown", false)), control("x", true, false));
        assert_eq!(sent(cmd("reload", false)), control("h", true, false));
        assert_eq!(sent(cmd("try-restart", false)), control("tc", true, false));
        assert_eq!(sent(cmd("force-stop", false)), control("d", true, true));
        assert_eq!(sent(cmd("force-reload", false)), control("tc", true, true));
        assert_eq!(sent(cmd("force-restart", false)), control("tcu", true, true));
        assert_eq!(sent(cmd("force-shutdown", false)), control("x", true, true));
        assert_eq!(sent(cmd("X", false)), control("x", true, true));
        assert_eq!(sent(cmd("E", false)), control("x", true, true));
        assert_eq!(sent(cmd("D", false)), control("d", true, true));
        assert_eq!(sent(cmd("T", false)), control("tc", true, true));
    }

    #[test]
    fn check_only_waits_and_status_never_does() {
        let check = Command {
            act: Act::Check,
            wait: true,
            kill: false,
        };
        assert_eq!(cmd("check", false), check);
        assert_eq!(
            cmd("status", true),
            Command {
                act: Act::Status,
                wait: false,
                kill: false
            }
        );
    }

    #[test]
    fn only_exit_exits() {
        assert!(cmd("exit", false).exits());
        assert!(cmd("force-shutdown", false).exits());
        for word in ["up", "down", "status", "check", "restart", "kill"] {
            assert!(!cmd(word, false).exits(), "{word}");
        }
    }

    #[test]
    fn every_command_sent_has_a_letter() {
        let words = ["start", "stop", "restart", "shutdown", "reload", "try-restart", "check"];
        let forced = ["force-stop", "force-reload", "force-restart", "force-shutdown"];
        let firsts: Vec<Vec<u8>> = (0..=u8::MAX).map(|byte| vec![byte]).collect();
        let all = words
            .iter()
            .chain(&forced)
            .map(|w| w.as_bytes())
            .chain(firsts.iter().map(Vec::as_slice));
        for word in all {
            if let Some(Command {
                act: Act::Control(commands),
                ..
            }) = Command::decode(word, false)
            {
                assert!(!commands.is_empty(), "{word:?}");
                for command in commands {
                    assert!(command.letter().is_some(), "{word:?}: {command:?}");
                }
            }
        }
    }

    #[test]
    fn unknown_words_are_usage_errors() {
        for word in ["", "bogus", "r", "rerun", "f", "force-bogus", "Zap", "-", "é"] {
            assert_eq!(Command::decode(word.as_bytes(), false), None, "{word}");
        }
    }

    #[test]
    fn options_and_services() {
        let o = ok(&["sv", "status", "a", "/b"]);
        assert_eq!(o.command.act, Act::Status);
        assert_eq!(o.wait, 7);
        assert_eq!(o.services, args(&["a", "/b"]));
        assert!(ok(&["sv", "-v", "up", "a"]).command.wait);
        let o = ok(&["sv", "-w", "3", "up", "a"]);
        assert_eq!((o.wait, o.command.wait), (3, true));
        assert_eq!(ok(&["sv", "-w3", "up", "a"]).wait, 3);
        assert_eq!(ok(&["sv", "-vw", "12", "up", "a"]).wait, 12);
        assert_eq!(ok(&["sv", "-w", "4s", "up", "a"]).wait, 4);
        assert_eq!(ok(&["sv", "-w", "x", "up", "a"]).wait, 0);
        assert_eq!(sent(ok(&["sv", "--", "exit", "a"]).command), control("x", false, false));
        assert_eq!(usage(&["sv", "--", "-v", "up", "a"]), Usage { before: None });
    }

    #[test]
    fn options_stop_at_the_command() {
        let o = ok(&["sv", "up", "-v", "a"]);
        assert!(!o.command.wait);
        assert_eq!(o.services, args(&["-v", "a"]));
        // A word starting with `--` ends the options and is dropped.
        assert_eq!(ok(&["sv", "--verbose", "up", "a"]).services, args(&["a"]));
    }

    #[test]
    fn svwait_sets_the_default_and_w_overrides_it() {
        let a = args(&["sv", "start", "a"]);
        assert_eq!(parse(&a, Some(OsStr::new("20"))).unwrap().wait, 20);
        assert_eq!(parse(&a, Some(OsStr::new("junk"))).unwrap().wait, 0);
        let a = args(&["sv", "-w", "2", "start", "a"]);
        assert_eq!(parse(&a, Some(OsStr::new("20"))).unwrap().wait, 2);
    }

    #[test]
    fn usage_errors() {
        assert_eq!(usage(&["sv"]), Usage { before: None });
        assert_eq!(usage(&["sv", "status"]), Usage { before: None });
        assert_eq!(usage(&["sv", "bogus", "a"]), Usage { before: None });
        assert_eq!(usage(&["sv", "-v"]), Usage { before: None });
        assert_eq!(
            usage(&["sv", "-z", "status", "a"]).before.as_deref(),
            Some("sv: illegal option -- z\n")
        );
        assert_eq!(
            usage(&["/usr/bin/sv", "-w"]).before.as_deref(),
            Some("sv: option requires an argument -- w\n")
        );
        assert!(usage(&["sv", "-V"]).before.unwrap().starts_with("$Id: "));
    }

    #[test]
    fn usage_text_is_runits() {
        assert_eq!(
            Usage { before: None }.text("sv"),
            "usage: sv [-v] [-w sec] command service ...\n\n"
        );
        assert_eq!(
            Usage {
                before: Some("sv: illegal option -- z\n".into())
            }
            .text("sv"),
            "sv: illegal option -- z\nusage: sv [-v] [-w sec] command service ...\n\n"
        );
        assert_eq!(USAGE_EXIT, 100);
    }

    #[test]
    fn progname_is_the_file_name() {
        assert_eq!(progname(&args(&["/usr/local/bin/sv"])), "sv");
        assert_eq!(progname(&args(&["sv"])), "sv");
        assert_eq!(progname(&[]), "sv");
    }

    #[test]
    fn scan_ulong_reads_leading_digits() {
        assert_eq!(scan_ulong(b"42"), 42);
        assert_eq!(scan_ulong(b"42abc"), 42);
        assert_eq!(scan_ulong(b""), 0);
        assert_eq!(scan_ulong(b"-1"), 0);
        assert_eq!(scan_ulong(b"99999999999999999999999"), u64::MAX);
    }

    proptest::proptest! {
        /// Any command line gives options or a usage error, never a panic.
        #[test]
        fn any_command_line_parses_or_is_a_usage_error(
            args in proptest::collection::vec(proptest::collection::vec(proptest::prelude::any::<u8>(), 0..12), 0..8),
            svwait in proptest::option::of(proptest::collection::vec(proptest::prelude::any::<u8>(), 0..6)),
        ) {
            use std::os::unix::ffi::OsStringExt;
            let args: Vec<OsString> = std::iter::once(OsString::from("sv"))
                .chain(args.into_iter().map(OsString::from_vec))
                .collect();
            let svwait = svwait.map(OsString::from_vec);
            let _ = parse(&args, svwait.as_deref());
        }
    }
}
