//! The command lines as clap definitions for the man pages and the shell
//! completions (`baseinit-generate`).
//!
//! `baseinit`, `check`, `status` and `health` parse with clap, so their
//! pages come from the same definitions. `sv` and `setuser` keep parsers of
//! their own, because they reproduce runit's and my_init's usage errors and
//! exit codes exactly; their definitions here describe those parsers, and
//! the tests below hold the two together.

use std::io::{self, Write};

use clap::{Arg, ArgAction, Command, CommandFactory, ValueHint};

/// Where the manual is, for the pages' SEE ALSO.
const MANUAL: &str = "The manual: docs/ in the source tree (an mdBook: `mdbook build docs`).";

/// `baseinit` with its subcommands: the init's flags, and `check`, `status`,
/// `health`, `sv`, `setuser` for the completions and the SUBCOMMANDS section.
pub fn baseinit() -> Command {
    crate::cli::Cli::command()
        .subcommand(subcommand(crate::check::CheckCli::command(), "check"))
        .subcommand(subcommand(crate::status::StatusCli::command(), "status"))
        .subcommand(subcommand(crate::status::HealthCli::command(), "health"))
        .subcommand(sv().name("sv").bin_name("baseinit sv"))
        .subcommand(setuser().name("setuser").bin_name("baseinit setuser"))
        .subcommand(svlogd().name("svlogd").bin_name("baseinit svlogd"))
        .subcommand(chpst().name("chpst").bin_name("baseinit chpst"))
}

/// A `baseinit NAME` command as a subcommand of `baseinit`.
fn subcommand(command: Command, name: &'static str) -> Command {
    command.name(name).bin_name(format!("baseinit {name}"))
}

/// runit's `sv`, as `src/applets/sv/args.rs` parses it.
pub fn sv() -> Command {
    Command::new("sv")
        .about("Control and query services of a runit-style service directory")
        .long_about(
            "Control and query the services baseinit (or runit's runsv) supervises, \
             speaking runit's supervise/ protocol: runit 2.1.2's sv, the same words, \
             order and exit status. baseinit answers to this name through a symlink \
             named sv, and as `baseinit sv`.",
        )
        .override_usage("sv [-v] [-w SEC] COMMAND SERVICE...")
        .disable_help_flag(true)
        .disable_version_flag(true)
        .arg(
            Arg::new("verbose")
                .short('v')
                .action(ArgAction::SetTrue)
                .help("Wait (up to -w seconds) for a command to take effect, and report the status"),
        )
        .arg(
            Arg::new("wait")
                .short('w')
                .value_name("SEC")
                .help("Seconds to wait for -v and the LSB-like commands [env: SVWAIT] [default: 7]"),
        )
        .arg(
            Arg::new("command")
                .value_name("COMMAND")
                .required(true)
                .value_parser(SV_COMMANDS)
                .hide_possible_values(true)
                .help("status, up, down, once, pause, cont, hup, alarm, interrupt, quit, 1, 2, term, kill, exit; start, stop, reload, restart, shutdown, check, try-restart, force-stop, force-reload, force-restart, force-shutdown"),
        )
        .arg(
            Arg::new("services")
                .value_name("SERVICE")
                .required(true)
                .num_args(1..)
                .value_hint(ValueHint::DirPath)
                .help("A name in $SVDIR (default /etc/service), or a path starting with . or /"),
        )
}

/// The words `sv` takes, in the order runit's sv documents them. Every one
/// decodes in `sv::args` (a test below).
pub const SV_COMMANDS: [&str; 26] = [
    "status",
    "up",
    "down",
    "once",
    "pause",
    "cont",
    "hup",
    "alarm",
    "interrupt",
    "quit",
    "1",
    "2",
    "term",
    "kill",
    "exit",
    "start",
    "stop",
    "reload",
    "restart",
    "shutdown",
    "force-stop",
    "force-reload",
    "force-restart",
    "force-shutdown",
    "try-restart",
    "check",
];

/// my_init's `setuser`, as `src/applets/setuser.rs` parses it.
pub fn setuser() -> Command {
    Command::new("setuser")
        .about("Run a command as another user")
        .long_about(
            "Run COMMAND as USER (a name, or a uid with an entry in /etc/passwd): \
             supplementary groups from /etc/group, then the group, then the user; \
             HOME, USER, LOGNAME and UID from the passwd entry; COMMAND looked up in \
             PATH as the new user. my_init's setuser; baseinit answers to this name \
             through a symlink named setuser, and as `baseinit setuser`.",
        )
        .override_usage("setuser USER COMMAND [ARGS...]")
        .disable_help_flag(true)
        .disable_version_flag(true)
        .arg(
            Arg::new("user")
                .value_name("USER")
                .required(true)
                .value_hint(ValueHint::Username),
        )
        .arg(
            Arg::new("command")
                .value_name("COMMAND")
                .required(true)
                .num_args(1..)
                .trailing_var_arg(true)
                .allow_hyphen_values(true)
                .value_hint(ValueHint::CommandWithArguments),
        )
}

/// runit's `chpst`, as `src/applets/chpst/args.rs` parses it.
pub fn chpst() -> Command {
    let flag = |letter: char, id: &'static str, help: &'static str| {
        Arg::new(id).short(letter).action(ArgAction::SetTrue).help(help)
    };
    let value = |letter: char, id: &'static str, name: &'static str, help: &'static str| {
        Arg::new(id).short(letter).value_name(name).help(help)
    };
    Command::new("chpst")
        .about("Run a program with a changed process state")
        .long_about(
            "Change the environment, user, groups, root directory, nice value, locks, \
             standard descriptors and resource limits of this process, in that order, then \
             exec PROG in it: runit 2.1.2's chpst, the same options, messages and exit \
             status. Users and groups come from /etc/passwd and /etc/group only. The limits \
             are soft limits; one above the hard limit is set to the hard limit. baseinit \
             answers to this name through a symlink named chpst, and as `baseinit chpst`; \
             and, with daemontools' arguments, to the names envdir (envdir DIR CHILD), \
             envuidgid (envuidgid USER CHILD: sets UID and GID), setuidgid (setuidgid USER \
             CHILD), pgrphack (pgrphack CHILD: a new session), softlimit (softlimit \
             [-a|-c|-d|-f|-l|-m|-o|-p|-r|-s|-t N] CHILD; = for the hard limit) and setlock \
             (setlock [-nNxX] FILE CHILD: waits for the lock, -n gives up at once, -x exits 0 \
             when it cannot lock or run CHILD).",
        )
        .override_usage(
            "chpst [-vP012] [-u USER[:GROUP...]] [-U USER[:GROUP...]] [-b ARGV0] [-e DIR] [-/ ROOT] \
             [-n INC] [-l|-L LOCK] [-m BYTES] [-d BYTES] [-o N] [-p N] [-f BYTES] [-c BYTES] \
             [-r BYTES] [-t SEC] PROG [ARGS...]",
        )
        .disable_help_flag(true)
        .disable_version_flag(true)
        .arg(
            value('u', "user", "USER[:GROUP...]", "Become USER, with its passwd group as its only group; with GROUPs, the first as its group and all of them as its groups; :UID:GID[:GID...] numerically")
                .value_hint(ValueHint::Username),
        )
        .arg(
            value('U', "env-user", "USER[:GROUP...]", "Set UID and GID in PROG's environment from USER[:GROUP...], without becoming it")
                .value_hint(ValueHint::Username),
        )
        .arg(value('b', "argv0", "ARGV0", "Run PROG with ARGV0 as its argv[0]"))
        .arg(
            value('e', "envdir", "DIR", "Each file in DIR sets the variable of its name to its first line (trailing blanks and tabs cut, NUL as newline); an empty file unsets it; subdirectories are skipped")
                .value_hint(ValueHint::DirPath),
        )
        .arg(value('/', "root", "ROOT", "Change the root directory to ROOT").value_hint(ValueHint::DirPath))
        .arg(value('n', "nice", "INC", "Add INC to the nice value (-n -5 lowers it)"))
        .arg(
            value('l', "lock", "LOCK", "Wait for an exclusive lock on the file LOCK (made 0600 if missing); PROG holds it")
                .value_hint(ValueHint::FilePath),
        )
        .arg(
            value('L', "lock-nowait", "LOCK", "As -l, but exit 111 at once when LOCK is held")
                .value_hint(ValueHint::FilePath),
        )
        .arg(value('m', "memory", "BYTES", "Limit the data segment, the stack, locked memory and the address space"))
        .arg(value('d', "data", "BYTES", "Limit the data segment (RLIMIT_DATA)"))
        .arg(value('o', "files", "N", "Limit open files (RLIMIT_NOFILE)"))
        .arg(value('p', "processes", "N", "Limit the user's processes (RLIMIT_NPROC)"))
        .arg(value('f', "file-size", "BYTES", "Limit the size of files written (RLIMIT_FSIZE)"))
        .arg(value('c', "core", "BYTES", "Limit core files (RLIMIT_CORE)"))
        .arg(value('r', "rss", "BYTES", "Limit the resident set (RLIMIT_RSS)"))
        .arg(value('t', "cpu", "SEC", "Limit CPU time (RLIMIT_CPU)"))
        .arg(flag('v', "verbose", "Warn about skipped envdir subdirectories"))
        .arg(flag('P', "session", "Run PROG in a new session and process group (setsid)"))
        .arg(flag('0', "close-stdin", "Close standard input"))
        .arg(flag('1', "close-stdout", "Close standard output"))
        .arg(flag('2', "close-stderr", "Close standard error"))
        .arg(
            Arg::new("program")
                .value_name("PROG")
                .required(true)
                .num_args(1..)
                .trailing_var_arg(true)
                .allow_hyphen_values(true)
                .value_hint(ValueHint::CommandWithArguments)
                .help("The program, looked up in PATH unless it has a /, and its arguments"),
        )
}

/// runit's `svlogd`, as `src/applets/svlogd/args.rs` parses it.
pub fn svlogd() -> Command {
    Command::new("svlogd")
        .about("Write standard input to rotated log directories")
        .long_about(
            "Read lines from standard input until its end and append each to DIR/current of \
             every log DIR that selects it, rotating current to @TAI64N.s files by size and \
             age and keeping the newest: runit 2.1.2's svlogd, the same options, directory \
             layout, file modes and DIR/config settings (s size, n most files, N fewest \
             files on a full disk, t age, +/-/e/E patterns, p prefix). !processor and u/U \
             (UDP) are reported and ignored. Unlike runit's, a line is never cut between \
             two files (unless longer than s), and a last line without a newline is kept. \
             SIGHUP reads DIR/config again and reopens; SIGALRM rotates now; SIGTERM writes \
             out what was read and exits 0. baseinit answers to this name through a \
             symlink named svlogd, and as `baseinit svlogd`.",
        )
        .override_usage("svlogd [-tttv] [-r c] [-R abc] [-l len] [-b buflen] DIR...")
        .disable_help_flag(true)
        .disable_version_flag(true)
        .arg(
            Arg::new("timestamp")
                .short('t')
                .action(ArgAction::Count)
                .help("Put a timestamp before each line: -t TAI64N (@4000…), -tt YYYY-MM-DD_HH:MM:SS.xxxxx, -ttt YYYY-MM-DDTHH:MM:SS.xxxxx (UTC)"),
        )
        .arg(
            Arg::new("verbose")
                .short('v')
                .action(ArgAction::SetTrue)
                .help("Say on standard error what is opened, rotated and deleted"),
        )
        .arg(
            Arg::new("replace")
                .short('r')
                .value_name("c")
                .help("Replace non-printable characters with c before matching and writing"),
        )
        .arg(
            Arg::new("replace-also")
                .short('R')
                .value_name("abc")
                .help("Also replace each character of abc (with -r's c, or _)"),
        )
        .arg(
            Arg::new("line-length")
                .short('l')
                .value_name("len")
                .help("How much of a line the patterns look at; a line ending within len bytes of s rotates current [default: 1000]"),
        )
        .arg(
            Arg::new("buffer")
                .short('b')
                .value_name("buflen")
                .help("runit's buffer size, which must be above len [default: 1024]; baseinit's buffers are never below 64 KiB"),
        )
        .arg(
            Arg::new("dirs")
                .value_name("DIR")
                .required(true)
                .num_args(1..)
                .value_hint(ValueHint::DirPath)
                .help("A log directory (it must exist): current, lock, the rotated @….s files and an optional config"),
        )
}

/// One man page: its file name's stem and the command it documents.
pub struct Page {
    pub name: &'static str,
    pub command: Command,
    exit_status: &'static str,
    /// Variables read other than the flags' twins: (name, meaning).
    environment: &'static [(&'static str, &'static str)],
}

/// Every page: `baseinit(8)` and one per subcommand.
pub fn pages() -> Vec<Page> {
    let top = baseinit();
    let of = |name: &str| {
        top.find_subcommand(name)
            .cloned()
            .unwrap_or_else(|| Command::new("missing"))
    };
    vec![
        Page {
            name: "baseinit",
            command: top.clone(),
            exit_status: INIT_EXIT,
            environment: INIT_ENVIRONMENT,
        },
        Page {
            name: "baseinit-check",
            command: of("check"),
            exit_status: "0 when nothing is wrong (warnings allowed), 1 when an error was found, 2 for a usage error.",
            environment: &[],
        },
        Page {
            name: "baseinit-status",
            command: of("status"),
            exit_status: "0 with an answer (with --check: only when healthy), 1 otherwise.",
            environment: &[],
        },
        Page {
            name: "baseinit-health",
            command: of("health"),
            exit_status: "0 when every service that should be up is up (and ready) and baseinit is neither booting nor stopping; 1 otherwise, or when baseinit does not answer.",
            environment: &[],
        },
        Page {
            name: "sv",
            command: sv(),
            exit_status: "As runit's sv: the number of services for which the command failed (up to 99); 100 for a usage error; status and check exit 0 only when every service could be queried.",
            environment: SV_ENVIRONMENT,
        },
        Page {
            name: "setuser",
            command: setuser(),
            exit_status: "The command's own status once it runs; 1 for a usage error, an unknown user or a failed switch; 127 when COMMAND is not found; 126 when it cannot be executed.",
            environment: &[("PATH", "where COMMAND is looked up, as the new user")],
        },
        Page {
            name: "chpst",
            command: chpst(),
            exit_status: "PROG's own status once it runs; 100 for a usage error; 111 for any other failure (an unknown user, an unreadable envdir, a lock held with -L, a PROG that cannot be run); setlock -x exits 0 instead when it cannot lock or run CHILD.",
            environment: &[(
                "PATH",
                "where PROG is looked up: the PATH chpst was started with, not one an envdir sets",
            )],
        },
        Page {
            name: "svlogd",
            command: svlogd(),
            exit_status: "0 at the end of standard input or after SIGTERM; 111 for a usage error, when no log directory can be used, and when SIGTERM ends a pause on a directory that cannot be written (the lines not yet written are lost).",
            environment: &[],
        },
    ]
}

const INIT_ENVIRONMENT: &[(&str, &str)] = &[(
    "BASEINIT_LOG",
    "baseinit's log level (debug, info, warn, error) or target=level directives separated by commas; wins over -q and -v",
)];

const SV_ENVIRONMENT: &[(&str, &str)] = &[
    (
        "SVDIR",
        "the service directory names are looked up in (default /etc/service)",
    ),
    ("SVWAIT", "the default of -w"),
    (
        "BASEINIT_RUNTIME_DIR",
        "where baseinit keeps the supervise/ state of services whose directory is read-only (default /run/baseinit)",
    ),
];

/// The init's exit codes (`crate::exit`): the manual's table, in short.
const INIT_EXIT: &str = "0 after a stop by SIGTERM or SIGINT with no main command; the main command's status when there is one (128+N when signal N killed it); 127 when the main command is not found, 126 when it cannot be executed; 1 when boot failed (a broken service tree, a failed startup script, --wait-for-services past its limit); 2 for a usage error; an essential service's status when it ended for good; 70 when baseinit itself failed (a bug), after stopping every process. --remap-exit FROM=TO turns FROM into TO last, for every code but 2 and 70.";

/// Writes `page` as a section-8 man page.
pub fn render_man(page: &Page, out: &mut dyn Write) -> io::Result<()> {
    let man = clap_mangen::Man::new(page.command.clone())
        .title(page.name.to_uppercase())
        .section("8")
        .source(format!("baseinit {}", env!("CARGO_PKG_VERSION")))
        .manual("System Manager's Manual");
    man.render_title(out)?;
    man.render_name_section(out)?;
    man.render_synopsis_section(out)?;
    man.render_description_section(out)?;
    man.render_options_section(out)?;
    if page.command.has_subcommands() {
        man.render_subcommands_section(out)?;
    }
    // Not the EXTRA section (the after-help): it lists the subcommands the
    // SUBCOMMANDS section has.
    let mut tail = roff::Roff::new();
    let mut variables: Vec<(String, String)> = page
        .command
        .get_arguments()
        .filter_map(|arg| {
            let name = arg.get_env()?.to_string_lossy().into_owned();
            let flag = arg
                .get_long()
                .map_or_else(|| arg.get_id().to_string(), |long| format!("--{long}"));
            Some((name, format!("the default of {flag}")))
        })
        .collect();
    variables.extend(page.environment.iter().map(|(n, m)| (n.to_string(), m.to_string())));
    if !variables.is_empty() {
        tail.control("SH", ["ENVIRONMENT"]);
        for (name, meaning) in variables {
            tail.control("TP", [])
                .text([roff::bold(name)])
                .text([roff::roman(meaning)]);
        }
    }
    tail.control("SH", ["EXIT STATUS"])
        .text([roff::roman(page.exit_status)]);
    tail.control("SH", ["SEE ALSO"]).text([roff::roman(format!(
        "baseinit(8), baseinit-check(8), baseinit-status(8), baseinit-health(8), sv(8), setuser(8), chpst(8), svlogd(8). \
         baseinit also answers to the name my_init (a symlink), as phusion's my_init. {MANUAL}"
    ))]);
    tail.to_writer(out)?;
    if page.command.get_version().is_some() {
        man.render_version_section(out)?;
    }
    Ok(())
}

/// Writes the bash completion of `command` (`name` is the program name it
/// completes).
pub fn render_bash(mut command: Command, name: &str, out: &mut dyn Write) {
    clap_complete::generate(clap_complete::Shell::Bash, &mut command, name, out);
}

/// Every long flag and environment variable of every page: what the docs
/// must mention (`tests/docs.rs`).
pub fn flags_and_variables() -> Vec<String> {
    fn walk(command: &Command, out: &mut Vec<String>) {
        for arg in command.get_arguments() {
            if let Some(long) = arg.get_long()
                && long != "help"
                && long != "version"
            {
                out.push(format!("--{long}"));
            }
            if let Some(env) = arg.get_env() {
                out.push(env.to_string_lossy().into_owned());
            }
        }
        for sub in command.get_subcommands() {
            walk(sub, out);
        }
    }
    let mut out = Vec::new();
    walk(&baseinit(), &mut out);
    out.sort();
    out.dedup();
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::applets::sv;

    #[test]
    fn definitions_are_consistent() {
        baseinit().debug_assert();
        sv().debug_assert();
        setuser().debug_assert();
        svlogd().debug_assert();
        chpst().debug_assert();
    }

    #[test]
    fn every_chpst_option_is_one_the_parser_takes() {
        let command = chpst();
        let mut letters = Vec::new();
        for arg in command.get_arguments() {
            let Some(letter) = arg.get_short() else { continue };
            let takes_value = arg.get_action().takes_values();
            assert_eq!(
                crate::applets::chpst::option(letter as u8),
                Some(takes_value),
                "-{letter}"
            );
            letters.push(letter);
        }
        // And every option the parser takes is documented.
        for letter in "uUbe/nlLmdopfcrtvP012".chars() {
            assert!(letters.contains(&letter), "-{letter}");
        }
    }

    #[test]
    fn every_sv_word_is_one_the_parser_takes() {
        for word in SV_COMMANDS {
            assert!(sv::decodes(word.as_bytes()), "{word}");
        }
        assert!(!sv::decodes(b"frobnicate"));
    }

    #[test]
    fn every_svlogd_option_is_one_the_parser_takes() {
        let spec = crate::applets::svlogd::GETOPT;
        let mut letters = Vec::new();
        for arg in svlogd().get_arguments() {
            let Some(letter) = arg.get_short() else { continue };
            let at = spec.find(letter).unwrap_or_else(|| panic!("-{letter} is not svlogd's"));
            let takes_value = spec[at + 1..].starts_with(':');
            assert_eq!(arg.get_action().takes_values(), takes_value, "-{letter}");
            letters.push(letter);
        }
        // All but -V (the version, then usage).
        let documented: String = spec.chars().filter(|c| *c != ':' && *c != 'V').collect();
        assert_eq!(letters.len(), documented.len(), "{letters:?} against {spec}");
    }

    #[test]
    fn every_page_renders_with_its_sections() {
        for page in pages() {
            assert_ne!(page.command.get_name(), "missing", "{}", page.name);
            let mut out = Vec::new();
            render_man(&page, &mut out).unwrap();
            let text = String::from_utf8(out).unwrap();
            for section in [".SH NAME", ".SH SYNOPSIS", ".SH \"EXIT STATUS\"", ".SH \"SEE ALSO\""] {
                assert!(text.contains(section), "{}: {section}", page.name);
            }
        }
    }

    #[test]
    fn the_init_page_lists_every_flag_and_subcommand() {
        let mut out = Vec::new();
        render_man(&pages().remove(0), &mut out).unwrap();
        let text = String::from_utf8(out).unwrap();
        for flag in [
            "stop\\-timeout",
            "KILL_PROCESS_TIMEOUT",
            "shutdown\\-delay",
            "BASEINIT_REMAP_EXIT",
            "main\\-stop\\-signal",
            "wait\\-for\\-services",
            "baseinit\\-check",
        ] {
            assert!(text.contains(flag), "{flag}");
        }
    }

    #[test]
    fn bash_completions_know_the_subcommands_and_sv_words() {
        let mut out = Vec::new();
        render_bash(baseinit(), "baseinit", &mut out);
        let text = String::from_utf8(out).unwrap();
        assert!(text.contains("--stop-timeout") && text.contains("health"));
        let mut out = Vec::new();
        render_bash(sv(), "sv", &mut out);
        let text = String::from_utf8(out).unwrap();
        assert!(text.contains("force-restart"));
    }
}
