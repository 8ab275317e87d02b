//! `baseinit status` and `baseinit health`: the running supervisor's state
//! as a [`Snapshot`], asked over the control socket ([`control_socket`]),
//! and what healthy means.

use std::ffi::OsString;
use std::io::{self, Write};
use std::path::Path;

use clap::Parser;

use crate::cli::RuntimeDir;
use crate::control_socket;
use serde::{Deserialize, Serialize};

/// Everything `status` shows.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Snapshot {
    pub version: String,
    pub pid1: bool,
    /// `booting` (startup scripts), `running`, `stopping`.
    pub phase: String,
    pub uptime_ms: u64,
    pub services: Vec<ServiceStatus>,
    /// The syslog relay (`--syslog`); absent when it is off.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub syslog: Option<SyslogStatus>,
}

/// The syslog relay: its socket and what it relayed since boot.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SyslogStatus {
    pub socket: String,
    /// Relaying (false: the socket could not be had; the log says why).
    pub listening: bool,
    /// Datagrams read from the socket.
    pub received: u64,
    /// Of these, dropped because baseinit's output was too slow.
    pub dropped: u64,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServiceStatus {
    pub name: String,
    /// `service`, `logger` or `main`.
    pub kind: String,
    /// `down`, `starting`, `run`, `stopping`, `draining`, `finish`, `backoff`,
    /// `failed`.
    pub state: String,
    pub pid: Option<i32>,
    /// How long the current run has lasted.
    pub uptime_ms: Option<u64>,
    pub restarts: u32,
    pub last_exit: Option<LastExit>,
    /// It should be running now (wanted up, not ended by its restart policy).
    pub expected_up: bool,
    /// Ready to serve: for now, running.
    pub ready: bool,
    /// Why it is not running, when baseinit knows better than its state
    /// says (a `broken` definition).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// A scheduled service's times and runs; absent for the others.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub schedule: Option<ScheduleStatus>,
}

/// A scheduled service (`schedule` in service.toml): its state is
/// `scheduled` between runs, `down` while `sv down` holds its times.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ScheduleStatus {
    /// As written: `*/5 * * * *`, `@hourly`.
    pub expression: String,
    /// `TZ` as given, or `UTC`.
    pub time_zone: String,
    /// `skip` or `queue`.
    pub overlap: String,
    /// RFC 3339, in the time zone; null while its times are off (`sv down`).
    pub next_run: Option<String>,
    /// When the last (or current) run started, RFC 3339 to the millisecond;
    /// its exit is `last_exit`.
    pub last_run_start: Option<String>,
    /// Runs started since boot (by the schedule or `sv once`).
    pub runs: u64,
    /// Times skipped because a run still went.
    pub skipped: u64,
    /// A run waits for the current one to end (`overlap = "queue"`).
    pub queued: bool,
    /// Its last run failed and `[health] on-failed-run = "unhealthy"`:
    /// unhealthy until a run succeeds.
    pub failed: bool,
}

/// A service that cannot run for its definition: shown with state
/// `broken` and the reason.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Broken {
    pub name: String,
    pub reason: String,
}

impl Broken {
    pub fn status(&self) -> ServiceStatus {
        ServiceStatus {
            name: self.name.clone(),
            kind: "service".to_owned(),
            state: "broken".to_owned(),
            pid: None,
            uptime_ms: None,
            restarts: 0,
            last_exit: None,
            expected_up: true,
            ready: false,
            reason: Some(self.reason.clone()),
            schedule: None,
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LastExit {
    Code(i32),
    Signal(i32),
    /// It could not be started at all.
    NotStarted,
}

impl Snapshot {
    /// Healthy: running (not booting or stopping), and every service that
    /// should be up is up and ready. The reasons when not.
    pub fn health(&self) -> Result<(), Vec<String>> {
        let mut problems = Vec::new();
        if self.phase != "running" {
            problems.push(format!("baseinit is {}", self.phase));
        }
        for s in &self.services {
            if s.kind != "main" && s.expected_up && !(s.state == "run" && s.ready) {
                let mut why = format!("{}: {}", s.name, s.state);
                if let Some(exit) = s.last_exit {
                    why.push_str(&format!(", last exit {}", exit.describe()));
                }
                if s.restarts > 0 {
                    why.push_str(&format!(", {} restarts", s.restarts));
                }
                if let Some(reason) = &s.reason {
                    why.push_str(&format!(" ({reason})"));
                }
                problems.push(why);
            }
            if s.schedule.as_ref().is_some_and(|schedule| schedule.failed) {
                let exit = s.last_exit.map_or("?".to_owned(), LastExit::describe);
                problems.push(format!("{}: its last run failed ({exit})", s.name));
            }
        }
        if problems.is_empty() { Ok(()) } else { Err(problems) }
    }
}

impl LastExit {
    fn describe(self) -> String {
        match self {
            LastExit::Code(code) => format!("code {code}"),
            LastExit::Signal(signal) => match nix::sys::signal::Signal::try_from(signal) {
                Ok(name) => format!("signal {signal} ({name})"),
                Err(_) => format!("signal {signal}"),
            },
            LastExit::NotStarted => "could not start".to_owned(),
        }
    }
}

/// Asks the running baseinit for its state (see [`control_socket`]).
pub fn ask(runtime_dir: &Path) -> Result<Snapshot, String> {
    let text = control_socket::request(runtime_dir, control_socket::STATUS)?;
    serde_json::from_str(&text).map_err(|e| format!("unreadable answer from baseinit: {e}"))
}

/// Shows what the running baseinit supervises.
#[derive(Debug, Parser)]
#[command(name = "baseinit status", bin_name = "baseinit status", version)]
pub struct StatusCli {
    /// Print the JSON snapshot instead of a table
    #[arg(long)]
    pub json: bool,

    /// Exit 0 only when healthy, as `baseinit health`
    #[arg(long)]
    pub check: bool,

    #[command(flatten)]
    pub runtime: RuntimeDir,
}

/// Exits 0 when every service that should be up is up and baseinit is not
/// booting or stopping; for Docker HEALTHCHECK and Kubernetes probes.
#[derive(Debug, Parser)]
#[command(name = "baseinit health", bin_name = "baseinit health", version)]
pub struct HealthCli {
    #[command(flatten)]
    pub runtime: RuntimeDir,
}

/// `baseinit status …`
pub fn status_main(args: &[OsString]) -> i32 {
    let cli = match StatusCli::try_parse_from(args) {
        Ok(cli) => cli,
        Err(e) => {
            let _ = e.print();
            return e.exit_code();
        }
    };
    if cli.check {
        return health(&cli.runtime.runtime_dir);
    }
    let snapshot = match ask(&cli.runtime.runtime_dir) {
        Ok(snapshot) => snapshot,
        Err(message) => {
            eprintln!("baseinit status: {message}");
            return 1;
        }
    };
    let text = if cli.json {
        serde_json::to_string_pretty(&snapshot)
            .map(|j| j + "\n")
            .unwrap_or_default()
    } else {
        table(&snapshot)
    };
    let mut out = io::stdout().lock();
    let _ = out.write_all(text.as_bytes()).and_then(|()| out.flush());
    0
}

/// `baseinit health …`
pub fn health_main(args: &[OsString]) -> i32 {
    match HealthCli::try_parse_from(args) {
        Ok(cli) => health(&cli.runtime.runtime_dir),
        Err(e) => {
            let _ = e.print();
            e.exit_code()
        }
    }
}

fn health(runtime_dir: &Path) -> i32 {
    match ask(runtime_dir).map(|s| s.health()) {
        Ok(Ok(())) => {
            println!("healthy");
            0
        }
        Ok(Err(problems)) => {
            println!("unhealthy: {}", problems.join("; "));
            1
        }
        Err(message) => {
            println!("unhealthy: {message}");
            1
        }
    }
}

/// The human view: one line per service.
pub fn table(snapshot: &Snapshot) -> String {
    let mut out = format!(
        "baseinit {} ({}, {}), up {}\n",
        snapshot.version,
        if snapshot.pid1 { "PID 1" } else { "subreaper" },
        snapshot.phase,
        duration(snapshot.uptime_ms)
    );
    let rows: Vec<[String; 6]> = snapshot
        .services
        .iter()
        .map(|s| {
            [
                s.name.clone(),
                s.state.clone(),
                s.pid.map_or("-".into(), |p| p.to_string()),
                s.uptime_ms.map_or("-".into(), duration),
                s.restarts.to_string(),
                s.last_exit.map_or("-".into(), LastExit::describe),
            ]
        })
        .collect();
    let header = ["NAME", "STATE", "PID", "UPTIME", "RESTARTS", "LAST EXIT"].map(String::from);
    let mut widths = header.clone().map(|h| h.len());
    for row in &rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.len());
        }
    }
    for row in std::iter::once(&header).chain(&rows) {
        let cells: Vec<String> = row.iter().zip(widths).map(|(c, w)| format!("{c:<w$}")).collect();
        out.push_str(cells.join("  ").trim_end());
        out.push('\n');
    }
    for s in &snapshot.services {
        if let Some(reason) = &s.reason {
            out.push_str(&format!("{} is {}: {reason}\n", s.name, s.state));
        }
    }
    for s in &snapshot.services {
        if let Some(schedule) = &s.schedule {
            out.push_str(&schedule_line(s, schedule));
        }
    }
    if let Some(syslog) = &snapshot.syslog {
        out.push_str(&if syslog.listening {
            format!(
                "syslog: {}, {} received, {} dropped\n",
                syslog.socket, syslog.received, syslog.dropped
            )
        } else {
            format!("syslog: {} not listening (see baseinit's log)\n", syslog.socket)
        });
    }
    out
}

/// A scheduled service's line below the table: its times, its last run.
fn schedule_line(s: &ServiceStatus, schedule: &ScheduleStatus) -> String {
    let last = match (&schedule.last_run_start, s.pid, s.last_exit) {
        (None, _, _) => "no run yet".to_owned(),
        (Some(start), Some(_), _) => format!("running since {start}"),
        (Some(start), None, exit) => format!(
            "last run {start}, {}",
            exit.map_or("running".to_owned(), LastExit::describe)
        ),
    };
    let mut line = format!(
        "{}: `{}` ({}): {last}; next run {}",
        s.name,
        schedule.expression,
        schedule.time_zone,
        schedule.next_run.as_deref().unwrap_or("none (sv down)")
    );
    if schedule.skipped > 0 {
        line.push_str(&format!("; {} skipped", schedule.skipped));
    }
    if schedule.queued {
        line.push_str("; one queued");
    }
    line.push('\n');
    line
}

fn duration(ms: u64) -> String {
    let s = ms / 1000;
    match s {
        0..60 => format!("{s}s"),
        60..3600 => format!("{}m{}s", s / 60, s % 60),
        3600..86400 => format!("{}h{}m", s / 3600, s % 3600 / 60),
        _ => format!("{}d{}h", s / 86400, s % 86400 / 3600),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn service(name: &str, state: &str, expected_up: bool) -> ServiceStatus {
        ServiceStatus {
            name: name.into(),
            kind: "service".into(),
            state: state.into(),
            pid: (state == "run").then_some(42),
            uptime_ms: (state == "run").then_some(61_000),
            restarts: 0,
            last_exit: None,
            expected_up,
            ready: state == "run",
            reason: None,
            schedule: None,
        }
    }

    fn snapshot(services: Vec<ServiceStatus>) -> Snapshot {
        Snapshot {
            version: "0.1.0".into(),
            pid1: true,
            phase: "running".into(),
            uptime_ms: 3_700_000,
            services,
            syslog: None,
        }
    }

    #[test]
    fn health_needs_every_expected_service_running() {
        let ok = snapshot(vec![service("web", "run", true), service("oneshot", "down", false)]);
        assert_eq!(ok.health(), Ok(()));
        let mut crash = service("db", "backoff", true);
        crash.restarts = 5;
        crash.last_exit = Some(LastExit::Code(3));
        let bad = snapshot(vec![service("web", "run", true), crash]);
        assert_eq!(
            bad.health(),
            Err(vec!["db: backoff, last exit code 3, 5 restarts".to_owned()])
        );
        let mut stopping = snapshot(vec![]);
        stopping.phase = "stopping".into();
        assert_eq!(stopping.health(), Err(vec!["baseinit is stopping".to_owned()]));
    }

    #[test]
    fn the_table_lines_up() {
        let mut db = service("db", "backoff", true);
        db.last_exit = Some(LastExit::Signal(9));
        db.restarts = 12;
        let text = table(&snapshot(vec![service("web", "run", true), db]));
        assert_eq!(
            text,
            "baseinit 0.1.0 (PID 1, running), up 1h1m\n\
             NAME  STATE    PID  UPTIME  RESTARTS  LAST EXIT\n\
             web   run      42   1m1s    0         -\n\
             db    backoff  -    -       12        signal 9 (SIGKILL)\n"
        );
    }

    #[test]
    fn a_broken_service_is_unhealthy_and_says_why() {
        let broken = Broken {
            name: "db".into(),
            reason: "/etc/service/db/service.toml:2:1: unknown key `usr`".into(),
        };
        let snap = snapshot(vec![service("web", "run", true), broken.status()]);
        assert_eq!(
            snap.health(),
            Err(vec![
                "db: broken (/etc/service/db/service.toml:2:1: unknown key `usr`)".to_owned()
            ])
        );
        assert!(
            table(&snap).ends_with("db is broken: /etc/service/db/service.toml:2:1: unknown key `usr`\n"),
            "{}",
            table(&snap)
        );
        let json = serde_json::to_string(&snap).unwrap();
        assert_eq!(serde_json::from_str::<Snapshot>(&json).unwrap(), snap);
        // Only a broken service carries a reason in the JSON.
        assert_eq!(json.matches("\"reason\"").count(), 1, "{json}");
    }

    #[test]
    fn snapshots_round_trip_through_json() {
        let mut s = service("web", "run", true);
        s.last_exit = Some(LastExit::NotStarted);
        let snap = snapshot(vec![s]);
        let json = serde_json::to_string(&snap).unwrap();
        assert!(json.contains("\"last_exit\":\"notstarted\""), "{json}");
        assert_eq!(serde_json::from_str::<Snapshot>(&json).unwrap(), snap);
    }

    #[test]
    fn the_syslog_relay_shows_only_when_on() {
        let mut snap = snapshot(vec![service("web", "run", true)]);
        let json = serde_json::to_string(&snap).unwrap();
        assert!(!json.contains("syslog"), "{json}");
        assert!(!table(&snap).contains("syslog"));
        snap.syslog = Some(SyslogStatus {
            socket: "/dev/log".into(),
            listening: true,
            received: 12,
            dropped: 3,
        });
        let json = serde_json::to_string(&snap).unwrap();
        assert!(
            json.contains(r#""syslog":{"socket":"/dev/log","listening":true,"received":12,"dropped":3}"#),
            "{json}"
        );
        assert_eq!(serde_json::from_str::<Snapshot>(&json).unwrap(), snap);
        let text = table(&snap);
        assert!(text.ends_with("syslog: /dev/log, 12 received, 3 dropped\n"), "{text}");
    }
}
