//! The pipe children report a failed start through ([`ExecReports`]), and
//! the encoding of its records.

use std::collections::HashMap;
use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};

use nix::fcntl::{FcntlArg, OFlag};
use nix::unistd::Pid;

use super::limits::{self, Step};
use super::plan::above_stdio;

/// One report: the child's pid, the errno of what failed and which step
/// (`limits::Step`: 0 for the exec and the steps before `[limits]`),
/// native-endian 32-bit words. Written with one write(2), far below
/// PIPE_BUF, so it is atomic: records from many children never interleave.
const RECORD: usize = 12;

/// The pipe children report a failed start through (an exec, or a step
/// before it), created once and shared by all of them. Both ends are
/// close-on-exec, so a child that exec'd holds no copy and says nothing: a
/// record always means failure. A child writes its record *before* it exits,
/// so once the reaper has a child's exit, that child's record is in the pipe:
/// [`ExecReports::collect`] after each drain, then [`ExecReports::take`] for
/// each reaped pid.
pub struct ExecReports {
    /// Non-blocking: `collect` reads until the pipe is empty.
    reader: OwnedFd,
    /// Blocking: a child never drops its record for a full pipe; it waits
    /// for the reaper to empty it (which every SIGCHLD does).
    writer: OwnedFd,
    /// (errno, step) by pid, for records read whose child has not been
    /// reaped yet.
    pending: HashMap<i32, (i32, Step)>,
    /// The start of a record whose rest is not read yet (never seen: records
    /// are written whole and read in multiples of their size).
    partial: Vec<u8>,
}

impl ExecReports {
    pub fn new() -> io::Result<Self> {
        let (reader, writer) = nix::unistd::pipe2(OFlag::O_CLOEXEC)?;
        nix::fcntl::fcntl(&reader, FcntlArg::F_SETFL(OFlag::O_NONBLOCK))?;
        // Above 0-2, which children get their stdio dup'd onto (baseinit
        // may have been started with one of them closed).
        Ok(ExecReports {
            reader: above_stdio(reader)?,
            writer: above_stdio(writer)?,
            pending: HashMap::new(),
            partial: Vec::new(),
        })
    }

    /// Reads every record in the pipe. Call after reaping, before looking
    /// the reaped pids up with `take`.
    pub fn collect(&mut self) {
        let mut buf = [0u8; 64 * RECORD];
        loop {
            match nix::unistd::read(&self.reader, &mut buf) {
                Ok(0) => return, // cannot happen: we hold the write end
                Ok(n) => {
                    self.partial.extend_from_slice(&buf[..n]);
                    let whole = self.partial.len() - self.partial.len() % RECORD;
                    for record in self.partial[..whole].chunks_exact(RECORD) {
                        let (pid, errno, step) = decode_record(record);
                        self.pending.insert(pid, (errno, step));
                    }
                    self.partial.drain(..whole);
                }
                Err(nix::errno::Errno::EINTR) => {}
                Err(nix::errno::Errno::EAGAIN) => return,
                Err(errno) => {
                    tracing::error!("cannot read the exec report pipe: {errno}");
                    return;
                }
            }
        }
    }

    /// Why the reaped child `pid` could not start, if it reported a failure:
    /// the OS error itself, or for a step of `[limits]` an error of its kind
    /// that names the limit.
    pub fn take(&mut self, pid: Pid) -> Option<io::Error> {
        let (errno, step) = self.pending.remove(&pid.as_raw())?;
        let error = io::Error::from_raw_os_error(errno);
        Some(match limits::describe(step) {
            None => error,
            Some(what) => io::Error::new(error.kind(), format!("cannot set {what}: {error}")),
        })
    }

    /// The end children write their records to.
    pub(super) fn writer(&self) -> BorrowedFd<'_> {
        self.writer.as_fd()
    }
}

fn decode_record(record: &[u8]) -> (i32, i32, Step) {
    let word = |at: usize| {
        let mut bytes = [0u8; 4];
        bytes.copy_from_slice(&record[at..at + 4]);
        bytes
    };
    (
        i32::from_ne_bytes(word(0)),
        i32::from_ne_bytes(word(4)),
        Step::from_ne_bytes(word(8)),
    )
}

/// A child's record. The child calls it before its exit (see `child`): it
/// must not panic.
#[deny(clippy::indexing_slicing, clippy::panic, clippy::unwrap_used, clippy::expect_used)]
pub(super) fn encode_record(pid: i32, errno: i32, step: Step) -> [u8; RECORD] {
    let [a, b, c, d] = pid.to_ne_bytes();
    let [e, f, g, h] = errno.to_ne_bytes();
    let [i, j, k, l] = step.to_ne_bytes();
    [a, b, c, d, e, f, g, h, i, j, k, l]
}

#[cfg(test)]
mod tests {
    use std::os::fd::AsRawFd;

    use nix::libc;

    use super::*;

    #[test]
    fn reports_are_read_whole_and_taken_once() {
        let mut reports = ExecReports::new().unwrap();
        assert!(reports.reader.as_raw_fd() > 2 && reports.writer.as_raw_fd() > 2);
        reports.collect(); // empty: returns at once (non-blocking)
        let writer = reports.writer.try_clone().unwrap();
        let write = |bytes: &[u8]| nix::unistd::write(&writer, bytes).unwrap();
        write(&encode_record(41, libc::ENOENT, limits::EXEC));
        let second = encode_record(42, libc::EACCES, limits::EXEC);
        // Split in two, as a pipe never does: the rest waits for its bytes.
        write(&second[..3]);
        reports.collect();
        write(&second[3..]);
        reports.collect();
        let error = reports.take(Pid::from_raw(41)).unwrap();
        assert_eq!(error.raw_os_error(), Some(libc::ENOENT));
        assert_eq!(error.to_string(), "No such file or directory (os error 2)");
        assert_eq!(reports.take(Pid::from_raw(41)).map(|e| e.kind()), None);
        assert_eq!(
            reports.take(Pid::from_raw(42)).and_then(|e| e.raw_os_error()),
            Some(libc::EACCES)
        );
        assert!(reports.take(Pid::from_raw(43)).is_none());
        // A step of [limits]: its kind, and which limit in the message.
        write(&encode_record(44, libc::EPERM, 0x100 + 7));
        reports.collect();
        let error = reports.take(Pid::from_raw(44)).unwrap();
        assert_eq!(error.kind(), io::ErrorKind::PermissionDenied);
        assert_eq!(
            error.to_string(),
            "cannot set limits.nofile (setrlimit RLIMIT_NOFILE): Operation not permitted (os error 1)"
        );
    }
}
