//! sv's command line: runit's option parsing (djb getopt, `w:vV`) and its
//! table from a command word to the control characters sent and the wait.

use std::ffi::{OsStr, OsString};
use std::os::unix::ffi::OsStrExt;

/// runit's default wait for the waiting commands, in seconds.
pub const DEFAULT_WAIT: u64 = 7;

/// What sv does to each service first.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Act {
    /// Write the control characters to `supervise/control`.
    Control,
    /// Print the status (and the log service's).
    Status,
    /// Nothing: only wait (`check`).
    Nothing,
}

/// A command word, decoded as runit's sv does.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Command {
    pub act: Act,
    /// The control characters (`u`, `tcu`, …); for [`Act::Status`] `s`, for
    /// `check` `C`. The waiting test reads them too.
    pub acts: &'static str,
    /// Wait for the command to take effect (`start`, `-v`, …).
    pub wait: bool,
    /// On timeout, report `kill:` and send `k` (the `force-` commands).
    pub kill: bool,
}

impl Command {
    /// Decodes a command word. runit looks at the first character only,
    /// except where one character starts several words (`s`, `r`, `f`, `t`,
    /// `c`), so `sv u`, `sv up` and `sv upward` are all `up`. `verbose` (`-v`
    /// or `-w`) makes the plain commands wait too. None: a usage error.
    pub fn decode(word: &[u8], verbose: bool) -> Option<Command> {
        let send = |acts, wait, kill| {
            Some(Command {
                act: Act::Control,
                acts,
                wait,
                kill,
            })
        };
        let first = *word.first()?;
        match first {
            b'x' | b'e' => send("x", verbose, false),
            b'X' | b'E' => send("x", true, true),
            b'D' => send("d", true, true),
            b'T' => send("tc", true, true),
            b't' if word == b"try-restart" => send("tc", true, false),
            b'c' if word == b"check" => Some(Command {
                act: Act::Nothing,
                acts: "C",
                wait: true,
                kill: false,
            }),
            b'u' | b'd' | b'o' | b'p' | b'h' | b'a' | b'i' | b'k' | b'q' | b'1' | b'2' | b't' | b'c' => {
                send(single(first)?, verbose, false)
            }
            b's' => match word {
                b"shutdown" => send("x", true, false),
                b"start" => send("u", true, false),
                b"stop" => send("d", true, false),
                // Every other `s…` word is status, which never waits.
                _ => Some(Command {
                    act: Act::Status,
                    acts: "s",
                    wait: false,
                    kill: false,
                }),
            },
            b'r' => match word {
                b"restart" => send("tcu", true, false),
                b"reload" => send("h", true, false),
                _ => None,
            },
            b'f' => match word {
                b"force-reload" => send("tc", true, true),
                b"force-restart" => send("tcu", true, true),
                b"force-shutdown" => send("x", true, true),
                b"force-stop" => send("d", true, true),
                _ => None,
            },
            _ => None,
        }
    }
}

/// The one-character commands as static strings.
fn single(c: u8) -> Option<&'static str> {
    Some(match c {
        b'u' => "u",
        b'd' => "d",
        b'o' => "o",
        b'p' => "p",
        b'h' => "h",
        b'a' => "a",
        b'i' => "i",
        b'k' => "k",
        b'q' => "q",
        b'1' => "1",
        b'2' => "2",
        b't' => "t",
        b'c' => "c",
        _ => return None,
    })
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

    fn control(acts: &'static str, wait: bool, kill: bool) -> Command {
        Command {
            act: Act::Control,
            acts,
            wait,
            kill,
        }
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
            assert_eq!(cmd(word, false), control(acts, false, false), "{word}");
            assert_eq!(cmd(word, true), control(acts, true, false), "{word} -v");
        }
    }

    #[test]
    fn only_the_first_character_counts_for_plain_commands() {
        assert_eq!(cmd("u", false).acts, "u");
        assert_eq!(cmd("dogs", false).acts, "d");
        assert_eq!(cmd("termite", false).acts, "t");
        assert_eq!(cmd("continue", false).acts, "c");
        assert_eq!(cmd("e", false).acts, "x");
        assert_eq!(cmd("stat", false).act, Act::Status);
        assert_eq!(cmd("s", false).act, Act::Status);
    }

    #[test]
    fn lsb_commands_always_wait() {
        assert_eq!(cmd("start", false), control("u", true, false));
        assert_eq!(cmd("stop", false), control("d", true, false));
        assert_eq!(cmd("restart", false), control("tcu", true, false));
        assert_eq!(cmd("shutdown", false), control("x", true, false));
        assert_eq!(cmd("reload", false), control("h", true, false));
        assert_eq!(cmd("try-restart", false), control("tc", true, false));
        assert_eq!(cmd("force-stop", false), control("d", true, true));
        assert_eq!(cmd("force-reload", false), control("tc", true, true));
        assert_eq!(cmd("force-restart", false), control("tcu", true, true));
        assert_eq!(cmd("force-shutdown", false), control("x", true, true));
        assert_eq!(cmd("X", false), control("x", true, true));
        assert_eq!(cmd("E", false), control("x", true, true));
        assert_eq!(cmd("D", false), control("d", true, true));
        assert_eq!(cmd("T", false), control("tc", true, true));
    }

    #[test]
    fn check_only_waits_and_status_never_does() {
        let check = Command {
            act: Act::Nothing,
            acts: "C",
            wait: true,
            kill: false,
        };
        assert_eq!(cmd("check", false), check);
        assert_eq!(
            cmd("status", true),
            Command {
                act: Act::Status,
                acts: "s",
                wait: false,
                kill: false
            }
        );
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
        assert_eq!(ok(&["sv", "--", "exit", "a"]).command, control("x", false, false));
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
