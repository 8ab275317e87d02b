//! The control socket: where the running baseinit listens, who may ask it,
//! and its one-line requests (`status`, and `sv` where runit's files cannot
//! be written).
//!
//! The socket (`RUNTIME/control.sock`, mode 0600) answers one request per
//! connection. A small task accepts connections; the supervisor, which
//! alone owns the state, answers each. Where no directory can be written (a
//! read-only root without a tmpfs), the socket lives in Linux's abstract
//! namespace instead, which needs no file; there, the peer's credentials
//! (`SO_PEERCRED`) stand in for the file's mode: only root and baseinit's
//! own user are answered.
//!
//! A request is one line: `status` (the answer is the JSON snapshot), or
//! `sv`, a tab, runit's control letters (none to only ask), a tab and the
//! service's name (`NAME/log` for a logger): the answer is `record` and the
//! 20-byte runit status record in hex, or `unknown`. A client that sends
//! nothing gets the snapshot.

use std::io::{self, Read, Write};
use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::UnixListener;
use tokio::sync::{mpsc, oneshot};

use crate::runit::status::RECORD_LEN;
use crate::status::Snapshot;

/// The socket's file name in the runtime directory.
pub const SOCKET: &str = "control.sock";
/// The answer to a peer that may not ask (over the abstract socket).
const DENIED: &[u8] = b"denied\n";
/// The request for the snapshot.
pub const STATUS: &[u8] = b"status\n";
/// The longest request line: `sv`, letters, a service name.
const MAX_REQUEST: u64 = 4096;

/// A request from a connection, for the supervisor to answer.
pub enum Request {
    /// The snapshot.
    Status(oneshot::Sender<Snapshot>),
    /// runit's control `letters` for the service or logger `name` (none:
    /// only ask), then its status record; None for no such service.
    Sv {
        name: String,
        letters: Vec<u8>,
        reply: oneshot::Sender<Option<[u8; RECORD_LEN]>>,
    },
}

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
        "no directory for the status socket can be written: `baseinit status`, `health` and `sv` are answered \
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

/// A request line, parsed.
#[derive(Debug, PartialEq, Eq)]
enum Asked {
    Status,
    Sv { letters: Vec<u8>, name: String },
    Unknown,
}

fn parse_request(line: &[u8]) -> Asked {
    let line = line.strip_suffix(b"\n").unwrap_or(line);
    if line.is_empty() || line == b"status" {
        return Asked::Status;
    }
    let mut fields = line.splitn(3, |&b| b == b'\t');
    match (fields.next(), fields.next(), fields.next()) {
        (Some(b"sv"), Some(letters), Some(name)) if !name.is_empty() => match std::str::from_utf8(name) {
            Ok(name) => Asked::Sv {
                letters: letters.to_vec(),
                name: name.to_owned(),
            },
            Err(_) => Asked::Unknown,
        },
        _ => Asked::Unknown,
    }
}

/// Accepts connections for as long as the task lives; each request goes to
/// the supervisor through `requests`.
pub async fn serve(listener: UnixListener, requests: mpsc::Sender<Request>) {
    loop {
        let Ok((mut stream, _)) = listener.accept().await else {
            // Out of fds, say: wait rather than spin.
            tokio::time::sleep(Duration::from_millis(100)).await;
            continue;
        };
        let allowed = may_ask(&stream);
        let requests = requests.clone();
        tokio::spawn(async move {
            // A client that sends nothing (and keeps its end open) gets the
            // snapshot after a moment, as before requests had lines.
            let mut line = Vec::new();
            let (read, mut write) = stream.split();
            let mut reader = BufReader::new(read.take(MAX_REQUEST));
            let _ = tokio::time::timeout(Duration::from_secs(1), reader.read_until(b'\n', &mut line)).await;
            // Refused only once its request is read: a socket closed with
            // unread data resets the connection, and the peer would not
            // read why.
            if !allowed {
                let _ = write.write_all(DENIED).await;
                return;
            }
            let answer = match parse_request(&line) {
                Asked::Status => {
                    let (reply, answer) = oneshot::channel();
                    ask_supervisor(&requests, Request::Status(reply), answer)
                        .await
                        .and_then(|snapshot| {
                            let mut json = serde_json::to_vec(&snapshot).ok()?;
                            json.push(b'\n');
                            Some(json)
                        })
                }
                Asked::Sv { letters, name } => {
                    let (reply, answer) = oneshot::channel();
                    let request = Request::Sv { name, letters, reply };
                    ask_supervisor(&requests, request, answer)
                        .await
                        .map(|record| match record {
                            Some(record) => format!("record {}\n", hex(&record)).into_bytes(),
                            None => b"unknown\n".to_vec(),
                        })
                }
                Asked::Unknown => Some(b"unknown request\n".to_vec()),
            };
            if let Some(answer) = answer {
                let _ = write.write_all(&answer).await;
            }
        });
    }
}

/// Sends `request` to the supervisor and waits for its answer, each for at
/// most 5 s (None past that, or when the supervisor is gone).
async fn ask_supervisor<T>(
    requests: &mpsc::Sender<Request>,
    request: Request,
    answer: oneshot::Receiver<T>,
) -> Option<T> {
    let asked = tokio::time::timeout(Duration::from_secs(5), requests.send(request)).await;
    if !matches!(asked, Ok(Ok(()))) {
        return None;
    }
    tokio::time::timeout(Duration::from_secs(5), answer).await.ok()?.ok()
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn unhex(text: &str) -> Option<Vec<u8>> {
    if !text.len().is_multiple_of(2) {
        return None;
    }
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(text.get(i..i + 2)?, 16).ok())
        .collect()
}

/// Asks the running baseinit `line` (a request, with its newline) and
/// returns the answer: at the runtime directory, else a non-root baseinit's
/// own directory, else over the abstract socket.
pub fn request(runtime_dir: &Path, line: &[u8]) -> Result<String, String> {
    match request_at(runtime_dir, line) {
        Err(message) if !message.starts_with("permission denied") => match user_dir() {
            Some(dir) if dir.join(SOCKET).exists() => request_at(&dir, line),
            _ => request_abstract(runtime_dir, line).unwrap_or(Err(message)),
        },
        result => result,
    }
}

/// `sv` over the socket: sends runit's control `letters` (none to only
/// ask) for service `name` and returns its status record; None when the
/// running baseinit has no such service.
pub fn sv(runtime_dir: &Path, name: &str, letters: &[u8]) -> Result<Option<[u8; RECORD_LEN]>, String> {
    if name.contains(['\n', '\t']) || letters.iter().any(|b| matches!(b, b'\n' | b'\t')) {
        return Ok(None);
    }
    let mut line = b"sv\t".to_vec();
    line.extend_from_slice(letters);
    line.push(b'\t');
    line.extend_from_slice(name.as_bytes());
    line.push(b'\n');
    let answer = request(runtime_dir, &line)?;
    let answer = answer.trim_end();
    if answer == "unknown" {
        return Ok(None);
    }
    answer
        .strip_prefix("record ")
        .and_then(unhex)
        .and_then(|bytes| <[u8; RECORD_LEN]>::try_from(bytes).ok())
        .map(Some)
        .ok_or_else(|| format!("unreadable answer from baseinit: {answer:?}"))
}

/// Over the abstract socket, when a baseinit listens there (None when none
/// does).
fn request_abstract(runtime_dir: &Path, line: &[u8]) -> Option<Result<String, String>> {
    let address = abstract_address(runtime_dir).ok()?;
    let stream = UnixStream::connect_addr(&address).ok()?;
    Some(exchange(stream, line).and_then(|text| {
        if text.as_bytes() == DENIED {
            Err(format!(
                "permission denied: only root and baseinit's own user can ask it (this is uid {})",
                nix::unistd::Uid::effective()
            ))
        } else {
            Ok(text)
        }
    }))
}

/// Sends the request and reads the answer, to the end.
fn exchange(mut stream: UnixStream, line: &[u8]) -> Result<String, String> {
    stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .and_then(|()| stream.set_write_timeout(Some(Duration::from_secs(5))))
        .map_err(|e| e.to_string())?;
    // A peer that was denied may have closed already: its answer says so.
    let _ = stream.write_all(line);
    let mut text = String::new();
    stream
        .read_to_string(&mut text)
        .map_err(|e| format!("no answer from baseinit: {e}"))?;
    Ok(text)
}

fn request_at(runtime_dir: &Path, line: &[u8]) -> Result<String, String> {
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
    exchange(stream, line)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_parse_and_anything_else_is_unknown() {
        assert_eq!(parse_request(b""), Asked::Status);
        assert_eq!(parse_request(b"status\n"), Asked::Status);
        assert_eq!(
            parse_request(b"sv\tdu\tweb/log\n"),
            Asked::Sv {
                letters: b"du".to_vec(),
                name: "web/log".into()
            }
        );
        assert_eq!(
            parse_request(b"sv\t\tname with\ttab"),
            Asked::Sv {
                letters: Vec::new(),
                name: "name with\ttab".into()
            }
        );
        for bad in [&b"sv\tu\t\n"[..], b"sv\tu", b"stat", b"sv\tu\t\xff\n", b"status now"] {
            assert_eq!(parse_request(bad), Asked::Unknown, "{bad:?}");
        }
    }

    #[test]
    fn records_go_through_hex_and_back() {
        let record: Vec<u8> = (0..RECORD_LEN as u8).map(|b| b.wrapping_mul(37)).collect();
        assert_eq!(unhex(&hex(&record)), Some(record));
        assert_eq!(unhex("abc"), None);
        assert_eq!(unhex("zz"), None);
    }
}
