//! The command line, with my_init's flags and environment variables.

use std::ffi::OsString;
use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser};
use nix::sys::signal::Signal;

use crate::config::{Defaults, parse_duration, parse_signal};

pub const DEFAULT_KILL_ALL_TIMEOUT: Duration = Duration::from_secs(1);
pub const DEFAULT_HOOK_TIMEOUT: Duration = Duration::from_millis(500);

/// PID 1 for containers: runs startup scripts, supervises the services of a
/// runit-style directory, reaps orphans, and stops everything in order.
#[derive(Debug, Parser)]
#[command(
    name = "baseinit",
    version,
    after_help = "Commands (each has its own --help):
  baseinit check     validate services, startup scripts and the environment (for RUN in a Dockerfile)
  baseinit status    what the running baseinit supervises (root only)
  baseinit health    exit 0 when every service that should be up is up (HEALTHCHECK, probes)
  baseinit sv        runit's sv: control services (also as a symlink named sv)
  baseinit setuser   run a command as another user (also as a symlink named setuser)
  baseinit chpst     runit's chpst: run a program as another user, with an envdir, limits…
                     (also as a symlink named chpst, envdir, setuidgid, softlimit, setlock…)

Named my_init (a symlink), baseinit is the init, as phusion's my_init."
)]
pub struct Cli {
    #[command(flatten)]
    pub paths: Paths,

    #[command(flatten)]
    pub runtime: RuntimeDir,

    /// Do not run the startup scripts nor rc.local
    #[arg(long)]
    pub skip_startup_files: bool,

    /// Hooks run before the services stop
    #[arg(long, value_name = "DIR", default_value = "/etc/my_init.pre_shutdown.d")]
    pub pre_shutdown_dir: PathBuf,

    /// Hooks run after the services stopped
    #[arg(long, value_name = "DIR", default_value = "/etc/my_init.post_shutdown.d")]
    pub post_shutdown_dir: PathBuf,

    #[command(flatten)]
    pub stop: StopSettings,

    /// The signal the main command gets at shutdown (a name like SIGQUIT or
    /// QUIT, or a number); services keep their own stop-signal
    #[arg(long, value_name = "SIGNAL", env = "BASEINIT_MAIN_STOP_SIGNAL", default_value = "SIGTERM", value_parser = |s: &str| signal(s, "BASEINIT_MAIN_STOP_SIGNAL"))]
    pub main_stop_signal: Signal,

    /// Exit with TO where baseinit would exit with FROM (e.g. 143=0);
    /// repeatable, or comma-separated
    #[arg(long, value_name = "FROM=TO", env = "BASEINIT_REMAP_EXIT", value_parser = |s: &str| remaps(s, "BASEINIT_REMAP_EXIT"))]
    pub remap_exit: Vec<RemapPairs>,

    /// Seconds a startup script may run; one still running then is stopped and
    /// boot fails [default: no limit, as my_init]
    #[arg(long, value_name = "SECONDS", env = "STARTUP_TIMEOUT", value_parser = |s: &str| seconds(s, "STARTUP_TIMEOUT"))]
    pub startup_timeout: Option<Duration>,

    /// Start the main command only once every service is ready; with a value,
    /// wait at most that many seconds (then boot fails)
    #[arg(long, value_name = "SECONDS", num_args = 0..=1, require_equals = true, default_missing_value = "0", value_parser = |s: &str| seconds(s, "--wait-for-services"))]
    pub wait_for_services: Option<Duration>,

    /// Run the insecure-key script (as my_init) before the startup scripts
    #[arg(long)]
    pub enable_insecure_key: bool,

    /// The script --enable-insecure-key runs
    #[arg(long, value_name = "PATH", default_value = "/usr/sbin/enable_insecure_key")]
    pub insecure_key_script: PathBuf,

    /// Do not start services: only startup scripts and the main command
    #[arg(long, requires = "command")]
    pub skip_runit: bool,

    /// Where services' stdout and stderr go, unless service.toml says
    #[arg(
        long,
        value_enum,
        value_name = "MODE",
        env = "BASEINIT_OUTPUT",
        default_value = "prefix"
    )]
    pub output: crate::config::OutputMode,

    /// Service lines and baseinit's own log as text, or one JSON object per line
    #[arg(
        long,
        value_enum,
        value_name = "FORMAT",
        env = "BASEINIT_LOG_FORMAT",
        default_value = "text"
    )]
    pub log_format: crate::output::Format,

    /// Put a timestamp before each service line (text format)
    #[arg(long)]
    pub log_timestamps: bool,

    /// Listen on the syslog socket and relay what programs log there to
    /// baseinit's output, one line per message (BASEINIT_SYSLOG=1)
    #[arg(long, env = "BASEINIT_SYSLOG", value_parser = clap::builder::BoolishValueParser::new())]
    pub syslog: bool,

    /// The socket --syslog listens on
    #[arg(
        long,
        value_name = "PATH",
        env = "BASEINIT_SYSLOG_SOCKET",
        default_value = "/dev/log"
    )]
    pub syslog_socket: PathBuf,

    /// Also keep the syslog messages in this log directory (svlogd's
    /// layout: current and rotated files, 1 MB each, 10 kept)
    #[arg(long, value_name = "DIR", env = "BASEINIT_SYSLOG_DIR")]
    pub syslog_dir: Option<PathBuf>,

    /// Log warnings and errors only
    #[arg(long, short, conflicts_with = "verbose")]
    pub quiet: bool,

    /// Log debug details too
    #[arg(long, short)]
    pub verbose: bool,

    /// The main command: run alongside the services; when it exits, baseinit
    /// stops everything and exits with its status
    #[arg(value_name = "COMMAND", trailing_var_arg = true)]
    pub command: Vec<OsString>,
}

/// Where an image's configuration is: the init and `baseinit check` read
/// the same places.
#[derive(Debug, Args)]
pub struct Paths {
    /// Service directory: one subdirectory per service [default: /etc/service,
    /// which may then be missing]
    #[arg(long, value_name = "DIR")]
    pub service_dir: Option<PathBuf>,

    /// Startup scripts, run in name order before any service
    #[arg(
        long,
        value_name = "DIR",
        env = "ENV_INIT_DIRECTORY",
        default_value = "/etc/my_init.d"
    )]
    pub startup_dir: PathBuf,

    /// Run after the startup scripts, if executable
    #[arg(long, value_name = "PATH", default_value = "/etc/rc.local")]
    pub rc_local: PathBuf,

    /// The container environment: one file per variable; DIR.sh and DIR.json
    /// are written beside it
    #[arg(long, value_name = "DIR", default_value = "/etc/container_environment")]
    pub env_dir: PathBuf,
}

impl Paths {
    pub const DEFAULT_SERVICE_DIR: &str = "/etc/service";

    /// The service directory, and whether it must exist (it was named).
    pub fn service_dir(&self) -> (PathBuf, bool) {
        match &self.service_dir {
            Some(dir) => (dir.clone(), true),
            None => (Self::DEFAULT_SERVICE_DIR.into(), false),
        }
    }
}

/// The runtime directory: the init's socket and fallback runit state, where
/// `status` and `health` find them.
#[derive(Debug, Args)]
pub struct RuntimeDir {
    /// The runtime directory (status socket; runit state of services whose
    /// directory is read-only)
    #[arg(
        long,
        value_name = "DIR",
        env = "BASEINIT_RUNTIME_DIR",
        default_value = "/run/baseinit"
    )]
    pub runtime_dir: PathBuf,
}

/// What bounds a stop: the init's settings, which `baseinit check` reads
/// too (flags and variables alike) to print the stop budget.
#[derive(Debug, Args)]
pub struct StopSettings {
    /// On SIGTERM or SIGINT, report unhealthy at once but keep the services
    /// running this long (after the pre-shutdown hooks) before stopping them,
    /// so a load balancer can stop sending them work; a second signal ends it
    #[arg(long, value_name = "DURATION", env = "BASEINIT_SHUTDOWN_DELAY", default_value = "0", value_parser = |s: &str| seconds(s, "BASEINIT_SHUTDOWN_DELAY"))]
    pub shutdown_delay: Duration,

    /// Seconds all pre-shutdown hooks together (and all post-shutdown hooks
    /// together) may take; a hook still running then is stopped
    #[arg(long, value_name = "SECONDS", env = "BASEINIT_HOOK_TIMEOUT", default_value = "0.5", value_parser = |s: &str| seconds(s, "BASEINIT_HOOK_TIMEOUT"))]
    pub hook_timeout: Duration,

    /// Seconds from a service's stop signal to its SIGKILL (fractions allowed),
    /// where service.toml does not set stop-timeout
    #[arg(long, value_name = "SECONDS", env = "KILL_PROCESS_TIMEOUT", default_value = "5", value_parser = |s: &str| seconds(s, "KILL_PROCESS_TIMEOUT"))]
    pub stop_timeout: Duration,

    /// Seconds a `finish` script may run before SIGKILL, where service.toml
    /// does not set finish-timeout
    #[arg(long, value_name = "SECONDS", env = "BASEINIT_FINISH_TIMEOUT", default_value = "1", value_parser = |s: &str| seconds(s, "BASEINIT_FINISH_TIMEOUT"))]
    pub finish_timeout: Duration,

    /// Seconds from the final kill-all's SIGTERM to its SIGKILL
    #[arg(long, value_name = "SECONDS", env = "KILL_ALL_PROCESSES_TIMEOUT", default_value = "1", value_parser = |s: &str| seconds(s, "KILL_ALL_PROCESSES_TIMEOUT"))]
    pub kill_all_timeout: Duration,

    /// Do not signal every remaining process at the end of a shutdown
    #[arg(long)]
    pub no_kill_all_on_exit: bool,
}

impl StopSettings {
    pub fn defaults(&self) -> Defaults {
        Defaults {
            stop_timeout: self.stop_timeout,
            finish_timeout: self.finish_timeout,
        }
    }
}

impl Cli {
    pub fn defaults(&self) -> Defaults {
        self.stop.defaults()
    }

    /// What clap cannot check one value at a time: a `--remap-exit` FROM
    /// given twice. A usage error (exit 2) like clap's own.
    pub fn remap(&self) -> Result<crate::exit::Remap, clap::Error> {
        use clap::CommandFactory;
        let pairs: Vec<(u8, u8)> = self.remap_exit.iter().flat_map(|p| p.0.iter().copied()).collect();
        crate::exit::Remap::new(&pairs).map_err(|message| {
            Self::command().error(
                clap::error::ErrorKind::ValueValidation,
                format!(
                    "invalid value for '--remap-exit <FROM=TO>': {message}; set by the flag or by $BASEINIT_REMAP_EXIT"
                ),
            )
        })
    }

    /// What `--syslog` asks for; None when it is off.
    pub fn syslog_settings(&self) -> Option<crate::syslog::Settings> {
        self.syslog.then(|| crate::syslog::Settings {
            socket: self.syslog_socket.clone(),
            dir: self.syslog_dir.as_ref().map(|dir| crate::config::LogFiles {
                dir: dir.clone(),
                max_size: crate::config::LogFiles::DEFAULT_MAX_SIZE,
                max_files: crate::config::LogFiles::DEFAULT_MAX_FILES,
                timestamps: true,
                stdout: true,
            }),
        })
    }
}

/// Seconds as my_init's variables hold them ("30", "2.5"), or a duration
/// like "500ms". The error names the variable too: the bad value may come
/// from the environment rather than the flag.
fn seconds(text: &str, variable: &str) -> Result<Duration, String> {
    parse_duration(text).map_err(|e| format!("{e}; set by the flag or by ${variable}"))
}

/// A signal as `service.toml`'s stop-signal takes it ("SIGQUIT", "QUIT", 3).
fn signal(text: &str, variable: &str) -> Result<Signal, String> {
    parse_signal(text).map_err(|e| format!("{e}; set by the flag or by ${variable}"))
}

/// The `FROM=TO` pairs of one `--remap-exit` (several, separated by commas).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RemapPairs(pub Vec<(u8, u8)>);

fn remaps(text: &str, variable: &str) -> Result<RemapPairs, String> {
    crate::exit::parse_remaps(text)
        .map(RemapPairs)
        .map_err(|e| format!("{e}; set by the flag or by ${variable}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn cli_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn main_command_keeps_its_arguments_exactly() {
        let cli = Cli::try_parse_from([
            "baseinit",
            "--quiet",
            "--",
            "sh",
            "-c",
            "echo 'a  b'; exit 3",
            "--quiet",
        ])
        .unwrap();
        assert!(cli.quiet);
        assert_eq!(cli.command, ["sh", "-c", "echo 'a  b'; exit 3", "--quiet"]);
        let cli = Cli::try_parse_from(["baseinit", "sleep", "-5"]).unwrap();
        assert_eq!(cli.command, ["sleep", "-5"]);
    }

    #[test]
    fn fractional_timeouts_and_defaults() {
        let cli = Cli::try_parse_from(["baseinit", "--stop-timeout", "0.25", "--kill-all-timeout", "1"]).unwrap();
        assert_eq!(cli.stop.stop_timeout, Duration::from_millis(250));
        assert_eq!(cli.stop.kill_all_timeout, Duration::from_secs(1));
        assert!(Cli::try_parse_from(["baseinit", "--stop-timeout", "soon"]).is_err());
    }

    #[test]
    fn unknown_flags_are_usage_errors_not_commands() {
        let err = Cli::try_parse_from(["baseinit", "--bogus"]).unwrap_err();
        assert_eq!(err.kind(), clap::error::ErrorKind::UnknownArgument);
        assert_eq!(err.exit_code(), crate::exit::USAGE);
    }

    #[test]
    fn shutdown_delay_main_stop_signal_and_exit_remapping() {
        // (The variables' side is tested on the binary: tests/stop.rs.)
        let parse = |args: &[&str]| Cli::try_parse_from(["baseinit"].iter().chain(args));
        let cli = parse(&[
            "--shutdown-delay",
            "1.5",
            "--main-stop-signal",
            "quit",
            "--remap-exit",
            "143=0,130=0",
            "--remap-exit",
            "3=4",
        ])
        .unwrap();
        assert_eq!(cli.stop.shutdown_delay, Duration::from_millis(1500));
        assert_eq!(cli.main_stop_signal, Signal::SIGQUIT);
        let remap = cli.remap().unwrap();
        assert_eq!(remap, crate::exit::Remap::new(&[(143, 0), (130, 0), (3, 4)]).unwrap());
        assert_eq!(remap.apply(143), 0);
        assert_eq!(
            parse(&["--main-stop-signal", "3"]).unwrap().main_stop_signal,
            Signal::SIGQUIT
        );
        for bad in [
            &["--remap-exit", "143"][..],
            &["--remap-exit", "256=0"],
            &["--main-stop-signal", "SIGFOO"],
            &["--shutdown-delay", "soon"],
        ] {
            let err = parse(bad).unwrap_err();
            assert_eq!(err.exit_code(), crate::exit::USAGE, "{bad:?}");
        }
        let twice = parse(&["--remap-exit", "143=0", "--remap-exit", "143=1"]).unwrap();
        let err = twice.remap().unwrap_err();
        assert_eq!(err.exit_code(), crate::exit::USAGE);
        assert!(err.to_string().contains("143 is remapped twice"), "{err}");
        if std::env::var_os("BASEINIT_SHUTDOWN_DELAY").is_none() {
            assert_eq!(parse(&[]).unwrap().stop.shutdown_delay, Duration::ZERO);
        }
        if std::env::var_os("BASEINIT_MAIN_STOP_SIGNAL").is_none() {
            assert_eq!(parse(&[]).unwrap().main_stop_signal, Signal::SIGTERM);
        }
    }

    #[test]
    fn skip_runit_needs_a_main_command() {
        assert!(Cli::try_parse_from(["baseinit", "--skip-runit"]).is_err());
        assert!(Cli::try_parse_from(["baseinit", "--skip-runit", "--", "true"]).is_ok());
    }

    #[test]
    fn syslog_is_off_unless_asked_and_listens_on_dev_log() {
        // (The variables' side is tested on the binary: tests/syslog.rs.)
        if std::env::var_os("BASEINIT_SYSLOG").is_none() {
            assert_eq!(Cli::try_parse_from(["baseinit"]).unwrap().syslog_settings(), None);
        }
        if std::env::var_os("BASEINIT_SYSLOG_SOCKET").is_none() {
            let cli = Cli::try_parse_from(["baseinit", "--syslog"]).unwrap();
            assert_eq!(cli.syslog_settings().unwrap().socket, PathBuf::from("/dev/log"));
        }
        let cli = Cli::try_parse_from(["baseinit", "--syslog", "--syslog-socket", "/run/log.sock"]).unwrap();
        assert_eq!(cli.syslog_settings().unwrap().socket, PathBuf::from("/run/log.sock"));
    }
}
