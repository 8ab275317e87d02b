//! `baseinit check`: validate a whole image's configuration without starting
//! anything, for `RUN baseinit check` in a Dockerfile.

use std::ffi::OsString;
use std::fs;
use std::path::{Path, PathBuf};

use clap::{Parser, ValueEnum};
use serde::Serialize;

use crate::cli::Paths;
use crate::config::{self, ConfigError, Defaults, is_executable_file};
use crate::startup;

/// Validates service directories, service.toml files, startup scripts and the
/// container environment directory, and prints every problem at once.
#[derive(Debug, Parser)]
#[command(name = "baseinit check", bin_name = "baseinit check", version)]
pub struct CheckCli {
    #[command(flatten)]
    pub paths: Paths,

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
}

/// Checks the tree named by `cli`.
pub fn check(cli: &CheckCli) -> Report {
    let mut problems = Vec::new();

    // As at boot: the default directory may be missing (no services); one
    // named on the command line must exist.
    let (service_dir, required) = cli.paths.service_dir();
    let scan = config::scan_services(&service_dir, &Defaults::default(), required);
    let services = scan.services.len() + scan.broken.len();
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
    fn shell_names() {
        for ok in ["A", "_x", "PATH_2", "a1"] {
            assert!(is_shell_name(ok.as_bytes()), "{ok}");
        }
        for bad in ["", "1A", "A-B", "A.B", "é", "A B"] {
            assert!(!is_shell_name(bad.as_bytes()), "{bad}");
        }
    }
}
