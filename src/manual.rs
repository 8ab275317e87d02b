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
const INIT_EXIT: &str = "0 after a stop by SIGTERM or SIGINT with no main command; the main command's status when there is one (128+N when signal N killed it); 127 when the main command is not found, 126 when it cannot be executed; 1 when boot failed (a broken service tree, a failed startup script, --wait-for-services past its limit); 2 for a usage error; an essential service's status when it ended for good; 70 when baseinit itself failed (a bug), after stopping every process.";

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
        "baseinit(8), baseinit-check(8), baseinit-status(8), baseinit-health(8), sv(8), setuser(8). \
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
    }

    #[test]
    fn every_sv_word_is_one_the_parser_takes() {
        for word in SV_COMMANDS {
            assert!(sv::decodes(word.as_bytes()), "{word}");
        }
        assert!(!sv::decodes(b"frobnicate"));
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
