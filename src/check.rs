//! `baseinit check`: validate a whole image's configuration without starting
//! anything, for `RUN baseinit check` in a Dockerfile.

use std::ffi::OsString;
use std::fs;
use std::path::{Path, PathBuf};

use clap::{Parser, ValueEnum};
use serde::Serialize;

use crate::cli::{Paths, StopSettings};
use crate::config::{self, ConfigError, is_executable_file};
use crate::container_env::{ContainerEnv, EnvPaths};
use crate::shutdown::{Budget, StopPlan};
use crate::startup;

/// Validates service directories, service.toml files, startup scripts and the
/// container environment directory, and prints every problem at once.
#[derive(Debug, Parser)]
#[command(name = "baseinit check", bin_name = "baseinit check", version)]
pub struct CheckCli {
    #[command(flatten)]
    pub paths: Paths,

    /// The init's stop settings, for the stop budget (and the services'
    /// default timeouts), from the same flags and variables
    #[command(flatten)]
    pub stop: StopSettings,

    /// Output format
    #[arg(long, value_enum, default_value_t = Format::Text)]
    pub format: Format,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Format {
    /// `path:line:column: message` lines and a summary
    Text,
    /// One JSON object, for tools
    Json,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    /// baseinit would refuse to boot, or the thing would not work.
    Error,
    /// Works, but probably not as meant (a file that will be skipped).
    Warning,
}

/// One finding.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Problem {
    pub path: PathBuf,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub line: Option<usize>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub column: Option<usize>,
    pub severity: Severity,
    pub message: String,
}

impl Problem {
    fn from_config(e: ConfigError) -> Self {
        Problem {
            path: e.path,
            line: e.position.map(|p| p.0),
            column: e.position.map(|p| p.1),
            severity: Severity::Error,
            message: e.message,
        }
    }

    fn new(path: &Path, severity: Severity, message: impl Into<String>) -> Self {
        Problem {
            path: path.to_owned(),
            line: None,
            column: None,
            severity,
            message: message.into(),
        }
    }
}

/// Everything `check` found.
#[derive(Debug, Default, Serialize)]
pub struct Report {
    pub problems: Vec<Problem>,
    pub services: usize,
    pub startup_scripts: usize,
    pub errors: usize,
    pub warnings: usize,
    pub stop_budget: StopBudget,
}

/// The longest a stop can take with this configuration (the manual's
/// formula, `shutdown::Budget`), in milliseconds.
#[derive(Debug, Default, Serialize)]
pub struct StopBudget {
    pub total_ms: u64,
    pub shutdown_delay_ms: u64,
    /// Both hook stages.
    pub hooks_ms: u64,
    pub levels: u32,
    /// The unit whose stop is the slowest: a service, or the main command.
    pub slowest: String,
    pub slowest_ms: u64,
    /// The slowest logger's stop; 0 without loggers.
    pub loggers_ms: u64,
    pub kill_all_ms: u64,
}

/// Checks the tree named by `cli`.
pub fn check(cli: &CheckCli) -> Report {
    let mut problems = Vec::new();

    // As at boot: the default directory may be missing (no services); one
    // named on the command line must exist.
    let (service_dir, required) = cli.paths.service_dir();
    // `${VAR}` from the environment services would get: this one's and
    // the container environment directory's, read without writing.
    let env = ContainerEnv::read_only(EnvPaths::beside(&cli.paths.env_dir), std::env::vars_os());
    let scan = config::scan_services_in(&service_dir, &cli.stop.defaults(), required, &env);
    let services = scan.services.len() + scan.broken.len();
    let stop_budget = stop_budget(&scan.services, &cli.stop);
    problems.extend(scan.errors.into_iter().map(Problem::from_config));

    let startup_scripts = check_scripts(&cli.paths.startup_dir, &mut problems);
    if cli.paths.rc_local.exists() && !is_executable_file(&cli.paths.rc_local) {
        problems.push(Problem::new(
            &cli.paths.rc_local,
            Severity::Warning,
            "not executable: it will not run at boot (chmod +x it, or remove it)",
        ));
    }
    check_env_dir(&cli.paths.env_dir, &mut problems);

    let errors = problems.iter().filter(|p| p.severity == Severity::Error).count();
    Report {
        warnings: problems.len() - errors,
        errors,
        problems,
        services,
        startup_scripts,
        stop_budget,
    }
}

/// The stop budget if every service runs, with a main command (which stops
/// at `--stop-timeout`, with no `finish`).
fn stop_budget(services: &[config::ServiceSpec], stop: &StopSettings) -> StopBudget {
    let main = (
        stop.stop_timeout + crate::service::KILL_WAIT,
        "the main command".to_owned(),
    );
    let slowest = services
        .iter()
        .map(|s| (StopPlan::worst_case_for(&s.policy), format!("service {}", s.name)))
        .fold(None::<(std::time::Duration, String)>, |slowest, this| match slowest {
            Some(s) if s.0 >= this.0 => Some(s),
            _ => Some(this),
        });
    let budget = Budget {
        shutdown_delay: stop.shutdown_delay,
        hook_timeout: stop.hook_timeout,
        levels: crate::shutdown::stop_levels(services.iter().map(|s| (s.name.as_str(), s.after.as_slice()))),
        service: slowest.filter(|s| s.0 >= main.0).unwrap_or(main),
        logger: services
            .iter()
            .filter_map(|s| s.log.as_ref())
            .map(|log| StopPlan::worst_case_for(&log.policy))
            .max()
            .unwrap_or_default(),
        kill_all: (!stop.no_kill_all_on_exit).then_some(stop.kill_all_timeout),
    };
    let ms = |d: std::time::Duration| u64::try_from(d.as_millis()).unwrap_or(u64::MAX);
    StopBudget {
        total_ms: ms(budget.total()),
        shutdown_delay_ms: ms(budget.shutdown_delay),
        hooks_ms: ms(budget.hooks()),
        levels: budget.levels,
        loggers_ms: ms(budget.logger),
        kill_all_ms: ms(budget.kill_all()),
        slowest_ms: ms(budget.service.0),
        slowest: budget.service.1,
    }
}

impl StopBudget {
    /// The sum, term by term: `stop budget 9.25 s = 1.5 s hooks + 1 level ×
    /// 6.5 s (service web) + 1.25 s kill-all`.
    fn line(&self) -> String {
        let mut terms = Vec::new();
        if self.shutdown_delay_ms > 0 {
            terms.push(format!("{} shutdown delay", seconds(self.shutdown_delay_ms)));
        }
        terms.push(format!("{} hooks", seconds(self.hooks_ms)));
        terms.push(format!(
            "{} level{} × {} ({})",
            self.levels,
            if self.levels == 1 { "" } else { "s" },
            seconds(self.slowest_ms),
            self.slowest
        ));
        if self.loggers_ms > 0 {
            terms.push(format!("{} loggers", seconds(self.loggers_ms)));
        }
        if self.kill_all_ms > 0 {
            terms.push(format!("{} kill-all", seconds(self.kill_all_ms)));
        }
        format!(
            "stop budget {} = {} (docker stop waits 10 s, Kubernetes 30 s, unless told otherwise)",
            seconds(self.total_ms),
            terms.join(" + ")
        )
    }
}

/// Milliseconds as seconds, without trailing zeros: `9.25 s`, `5 s`.
fn seconds(ms: u64) -> String {
    let fraction = format!("{:03}", ms % 1000);
    match fraction.trim_end_matches('0') {
        "" => format!("{} s", ms / 1000),
        fraction => format!("{}.{fraction} s", ms / 1000),
    }
}

/// Startup scripts: the directory must be readable; a file that is not
/// executable will be skipped at boot, which is rarely meant.
fn check_scripts(dir: &Path, problems: &mut Vec<Problem>) -> usize {
    let Ok(entries) = fs::read_dir(dir) else {
        if dir.exists() {
            problems.push(Problem::new(dir, Severity::Error, "cannot read the startup directory"));
        }
        return 0;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if entry.file_name().as_encoded_bytes().starts_with(b".") || path.is_dir() {
            continue;
        }
        if !path.exists() {
            problems.push(Problem::new(
                &path,
                Severity::Warning,
                "dangling symlink: its target does not exist, so it is skipped at boot",
            ));
        } else if !is_executable_file(&path) {
            problems.push(Problem::new(
                &path,
                Severity::Warning,
                "not executable: it will be skipped at boot (chmod +x it)",
            ));
        }
    }
    startup::scripts(dir, None).map_or(0, |s| s.len())
}

/// The environment directory: each regular file is a variable; say which
/// names cannot become what users expect.
fn check_env_dir(dir: &Path, problems: &mut Vec<Problem>) {
    let Ok(entries) = fs::read_dir(dir) else {
        if dir.exists() {
            problems.push(Problem::new(
                dir,
                Severity::Error,
                "cannot read the environment directory",
            ));
        }
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        let name = entry.file_name();
        let bytes = name.as_encoded_bytes();
        if bytes.starts_with(b".") {
            continue;
        }
        if !path.is_file() {
            problems.push(Problem::new(
                &path,
                Severity::Warning,
                "not a regular file: not imported",
            ));
        } else if bytes.contains(&b'=') {
            problems.push(Problem::new(
                &path,
                Severity::Error,
                "a variable name cannot contain '=': not imported",
            ));
        } else if fs::read(&path).is_ok_and(|v| v.contains(&0)) {
            problems.push(Problem::new(
                &path,
                Severity::Error,
                "the value holds a NUL byte, which no environment variable can: not imported",
            ));
        } else if !is_shell_name(bytes) {
            problems.push(Problem::new(
                &path,
                Severity::Warning,
                "not a valid shell variable name: exported to services, left out of the .sh file",
            ));
        }
    }
}

fn is_shell_name(name: &[u8]) -> bool {
    matches!(name.first(), Some(b'A'..=b'Z' | b'a'..=b'z' | b'_'))
        && name.iter().all(|b| b.is_ascii_alphanumeric() || *b == b'_')
}

/// `baseinit check …`: prints the report; exit 0 when there is no error.
pub fn main(args: &[OsString]) -> i32 {
    let cli = match CheckCli::try_parse_from(args) {
        Ok(cli) => cli,
        Err(e) => {
            let _ = e.print();
            return e.exit_code();
        }
    };
    let report = check(&cli);
    // A closed stdout (`baseinit check | head`) ends the output quietly: the
    // exit code still tells.
    if let Err(e) = print(&report, cli.format)
        && e.kind() != std::io::ErrorKind::BrokenPipe
    {
        eprintln!("baseinit check: cannot write the report: {e}");
    }
    i32::from(report.errors > 0)
}

fn print(report: &Report, format: Format) -> std::io::Result<()> {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    match format {
        Format::Json => {
            serde_json::to_writer_pretty(&mut out, report)?;
            writeln!(out)?;
        }
        Format::Text => {
            for p in &report.problems {
                let position = match (p.line, p.column) {
                    (Some(l), Some(c)) => format!(":{l}:{c}"),
                    _ => String::new(),
                };
                let level = match p.severity {
                    Severity::Error => "error",
                    Severity::Warning => "warning",
                };
                writeln!(out, "{}{position}: {level}: {}", p.path.display(), p.message)?;
            }
            writeln!(out, "baseinit check: {}", report.stop_budget.line())?;
            writeln!(
                out,
                "baseinit check: {} error(s), {} warning(s) in {} service(s) and {} startup script(s)",
                report.errors, report.warnings, report.services, report.startup_scripts
            )?;
        }
    }
    out.flush()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_stop_budget_line_shows_its_arithmetic() {
        for (ms, text) in [
            (9250, "9.25 s"),
            (5000, "5 s"),
            (250, "0.25 s"),
            (1500, "1.5 s"),
            (1, "0.001 s"),
        ] {
            assert_eq!(seconds(ms), text);
        }
        let budget = StopBudget {
            total_ms: 14_250,
            shutdown_delay_ms: 5000,
            hooks_ms: 1500,
            levels: 1,
            slowest: "service web".into(),
            slowest_ms: 6500,
            loggers_ms: 0,
            kill_all_ms: 1250,
        };
        assert_eq!(
            budget.line(),
            "stop budget 14.25 s = 5 s shutdown delay + 1.5 s hooks + 1 level × 6.5 s (service web) + 1.25 s kill-all \
             (docker stop waits 10 s, Kubernetes 30 s, unless told otherwise)"
        );
        let chained = StopBudget {
            shutdown_delay_ms: 0,
            levels: 2,
            loggers_ms: 5250,
            kill_all_ms: 0,
            ..budget
        };
        assert!(
            chained
                .line()
                .contains("= 1.5 s hooks + 2 levels × 6.5 s (service web) + 5.25 s loggers ("),
            "{}",
            chained.line()
        );
    }

    #[test]
    fn shell_names() {
        for ok in ["A", "_x", "PATH_2", "a1"] {
            assert!(is_shell_name(ok.as_bytes()), "{ok}");
        }
        for bad in ["", "1A", "A-B", "A.B", "é", "A B"] {
            assert!(!is_shell_name(bad.as_bytes()), "{bad}");
        }
    }
}
