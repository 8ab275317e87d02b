//! `baseinit status` and `baseinit health`: the running supervisor's state,
//! asked over a Unix socket that only root can open.
//!
//! The socket (`RUNTIME/control.sock`, mode 0600) answers one JSON
//! [`Snapshot`] per connection. A small task accepts connections; the
//! supervisor, which alone owns the state, builds each snapshot. Where no
//! directory can be written (a read-only root without a tmpfs), the socket
//! lives in Linux's abstract namespace instead, which needs no file; there,
//! the peer's credentials (`SO_PEERCRED`) stand in for the file's mode:
//! only root and baseinit's own user are answered.

use std::ffi::OsString;
use std::io::{self, Read, Write};
use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::time::Duration;

use clap::Parser;

use crate::cli::RuntimeDir;
use serde::{Deserialize, Serialize};
use tokio::io::AsyncWriteExt;
use tokio::net::UnixListener;
use tokio::sync::{mpsc, oneshot};

/// The socket's file name in the runtime directory.
pub const SOCKET: &str = "control.sock";
/// The answer to a peer that may not ask (over the abstract socket).
const DENIED: &[u8] = b"denied\n";

/// Everything `status` shows.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Snapshot {
    pub version: String,
    pub pid1: bool,
    /// `booting` (startup scripts), `running`, `stopping`.
    pub phase: String,
    pub uptime_ms: u64,
    pub services: Vec<ServiceStatus>,
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
                problems.push(why);
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

/// A request from a connection: the supervisor answers with a snapshot.
pub type Request = oneshot::Sender<Snapshot>;

/// Where a non-root baseinit (`docker run --user`) keeps its socket when the
/// runtime directory is not its to write: a directory of its own, which the
/// same user's `baseinit health` (a HEALTHCHECK runs as the container's user)
/// finds too; so do its `supervise/` directories, for `sv`.
pub fn user_dir() -> Option<PathBuf> {
    let uid = nix::unistd::Uid::effective();
    (!uid.is_root()).then(|| std::env::temp_dir().join(format!("baseinit-{uid}")))
}

/// Binds the socket, only its owner (root, normally) may use it: in the
/// runtime directory, else (not root) in a directory of baseinit's user,
/// else in the abstract namespace. None (with a warning) when it cannot:
/// status and health are then unavailable, nothing else changes.
pub fn listen(runtime_dir: &Path) -> Option<UnixListener> {
    let path = runtime_dir.join(SOCKET);
    let mut failed = match bind(runtime_dir) {
        Ok(listener) => return Some(listener),
        Err(e) if e.kind() == io::ErrorKind::AddrInUse => {
            tracing::warn!(
                "cannot create {} ({e}): `baseinit status` and `baseinit health` will not answer",
                path.display()
            );
            return None;
        }
        Err(e) => format!("{} ({e})", path.display()),
    };
    if let Some(dir) = user_dir() {
        match own_dir(&dir).and_then(|()| bind(&dir)) {
            Ok(listener) => return Some(listener),
            Err(e) => failed.push_str(&format!(" nor {} ({e})", dir.join(SOCKET).display())),
        }
    }
    match bind_abstract(runtime_dir) {
        Ok(listener) => Some(listener),
        Err(e) => {
            tracing::warn!(
                "cannot create {failed}, nor an abstract socket ({e}): `baseinit status` and `baseinit health` will not answer"
            );
            None
        }
    }
}

/// Makes `dir` (0700), or checks that it is a real directory of ours: in a
/// shared /tmp, nothing else will do.
pub fn own_dir(dir: &Path) -> io::Result<()> {
    std::fs::DirBuilder::new().mode(0o700).create(dir).or_else(|e| {
        if e.kind() == io::ErrorKind::AlreadyExists {
            Ok(())
        } else {
            Err(e)
        }
    })?;
    use std::os::unix::fs::MetadataExt;
    let meta = std::fs::symlink_metadata(dir)?;
    if meta.is_dir() && meta.uid() == nix::unistd::Uid::effective().as_raw() {
        Ok(())
    } else {
        Err(io::Error::other(format!(
            "{} is not a directory of ours",
            dir.display()
        )))
    }
}

/// The abstract socket's address for `runtime_dir` in this container: the
/// PID namespace tells containers apart where they share a network
/// namespace (`--network host`), the runtime directory two baseinits in
/// one; `status` and `health` run in the container (`docker exec`) find the
/// same.
fn abstract_address(runtime_dir: &Path) -> io::Result<std::os::unix::net::SocketAddr> {
    use std::os::linux::net::SocketAddrExt;
    use std::os::unix::ffi::OsStrExt;
    let namespace = std::fs::read_link("/proc/self/ns/pid")?;
    // FNV-1a: a short, fixed name for a path of any length.
    let hash = runtime_dir
        .as_os_str()
        .as_bytes()
        .iter()
        .fold(0xcbf2_9ce4_8422_2325_u64, |hash, &byte| {
            (hash ^ u64::from(byte)).wrapping_mul(0x0100_0000_01b3)
        });
    let name = format!("baseinit.{}.{hash:016x}", namespace.display());
    std::os::unix::net::SocketAddr::from_abstract_name(name.as_bytes())
}

fn bind_abstract(runtime_dir: &Path) -> io::Result<UnixListener> {
    let listener = std::os::unix::net::UnixListener::bind_addr(&abstract_address(runtime_dir)?)?;
    listener.set_nonblocking(true)?;
    let listener = UnixListener::from_std(listener)?;
    tracing::info!(
        "no directory for the status socket can be written: `baseinit status` and `health` are answered \
         over an abstract socket, to root and uid {}",
        nix::unistd::Uid::effective()
    );
    Ok(listener)
}

/// Who may ask: root, and baseinit's own user. (A socket file's mode 0600
/// lets no one else connect; an abstract socket has no mode.)
fn may_ask(stream: &tokio::net::UnixStream) -> bool {
    stream.peer_cred().is_ok_and(|peer| {
        let uid = peer.uid();
        uid == 0 || uid == nix::unistd::Uid::effective().as_raw()
    })
}

fn bind(runtime_dir: &Path) -> io::Result<UnixListener> {
    let path = runtime_dir.join(SOCKET);
    // Another baseinit answering here keeps its socket; only a stale one
    // (nobody answers) is replaced.
    if UnixStream::connect(&path).is_ok() {
        return Err(io::Error::new(
            io::ErrorKind::AddrInUse,
            "another baseinit answers there (use another --runtime-dir)",
        ));
    }
    std::fs::create_dir_all(runtime_dir)
        .and_then(|()| match std::fs::remove_file(&path) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
            _ => Ok(()),
        })
        .and_then(|()| {
            // The socket is created with the umask: tighten it for the bind
            // so no window exists where others could connect.
            let old = nix::sys::stat::umask(nix::sys::stat::Mode::from_bits_truncate(0o177));
            let listener = UnixListener::bind(&path);
            nix::sys::stat::umask(old);
            let listener = listener?;
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600))?;
            Ok(listener)
        })
}

/// Accepts connections for as long as the task lives; each one gets a
/// snapshot from the supervisor through `requests`.
pub async fn serve(listener: UnixListener, requests: mpsc::Sender<Request>) {
    loop {
        let Ok((mut stream, _)) = listener.accept().await else {
            // Out of fds, say: wait rather than spin.
            tokio::time::sleep(Duration::from_millis(100)).await;
            continue;
        };
        if !may_ask(&stream) {
            let _ = stream.write_all(DENIED).await;
            continue;
        }
        let requests = requests.clone();
        tokio::spawn(async move {
            let (reply, answer) = oneshot::channel();
            let asked = tokio::time::timeout(Duration::from_secs(5), requests.send(reply)).await;
            if !matches!(asked, Ok(Ok(()))) {
                return;
            }
            let Ok(Ok(snapshot)) = tokio::time::timeout(Duration::from_secs(5), answer).await else {
                return;
            };
            if let Ok(mut json) = serde_json::to_vec(&snapshot) {
                json.push(b'\n');
                let _ = stream.write_all(&json).await;
            }
        });
    }
}

/// Asks the running baseinit for its state (at the runtime directory, or a
/// non-root baseinit's own directory).
pub fn ask(runtime_dir: &Path) -> Result<Snapshot, String> {
    match ask_at(runtime_dir) {
        Err(message) if !message.starts_with("permission denied") => match user_dir() {
            Some(dir) if dir.join(SOCKET).exists() => ask_at(&dir),
            _ => ask_abstract(runtime_dir).unwrap_or(Err(message)),
        },
        result => result,
    }
}

/// Over the abstract socket, when a baseinit listens there (None when none
/// does).
fn ask_abstract(runtime_dir: &Path) -> Option<Result<Snapshot, String>> {
    let address = abstract_address(runtime_dir).ok()?;
    let stream = UnixStream::connect_addr(&address).ok()?;
    Some(read_answer(stream).and_then(|text| {
        if text.as_bytes() == DENIED {
            Err(format!(
                "permission denied: only root and baseinit's own user can ask it (this is uid {})",
                nix::unistd::Uid::effective()
            ))
        } else {
            serde_json::from_str(&text).map_err(|e| format!("unreadable answer from baseinit: {e}"))
        }
    }))
}

fn read_answer(mut stream: UnixStream) -> Result<String, String> {
    stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .map_err(|e| e.to_string())?;
    let mut text = String::new();
    stream
        .read_to_string(&mut text)
        .map_err(|e| format!("no answer from baseinit: {e}"))?;
    Ok(text)
}

fn ask_at(runtime_dir: &Path) -> Result<Snapshot, String> {
    let path = runtime_dir.join(SOCKET);
    let stream = UnixStream::connect(&path).map_err(|e| match e.kind() {
        io::ErrorKind::PermissionDenied => format!(
            "permission denied on {}: only root can ask baseinit (run it as root, e.g. docker exec without --user)",
            path.display()
        ),
        io::ErrorKind::NotFound | io::ErrorKind::ConnectionRefused => format!(
            "no baseinit answers at {} (is it running, with this --runtime-dir?)",
            path.display()
        ),
        _ => format!("cannot connect to {}: {e}", path.display()),
    })?;
    let text = read_answer(stream)?;
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
    out
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
        }
    }

    fn snapshot(services: Vec<ServiceStatus>) -> Snapshot {
        Snapshot {
            version: "0.1.0".into(),
            pid1: true,
            phase: "running".into(),
            uptime_ms: 3_700_000,
            services,
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
    fn snapshots_round_trip_through_json() {
        let mut s = service("web", "run", true);
        s.last_exit = Some(LastExit::NotStarted);
        let snap = snapshot(vec![s]);
        let json = serde_json::to_string(&snap).unwrap();
        assert!(json.contains("\"last_exit\":\"notstarted\""), "{json}");
        assert_eq!(serde_json::from_str::<Snapshot>(&json).unwrap(), snap);
    }
}
