//! runit's wording of errno values (djb's `error_str`), which sv prints
//! instead of strerror's: `file does not exist`, not `No such file or directory`.

use nix::libc;

/// The text runit's sv prints for `errno`. Where two names share a number
/// (EAGAIN and EWOULDBLOCK), the first in runit's table wins, as in runit.
pub fn error_str(errno: i32) -> &'static str {
    // The order is runit's (read from Debian's sv 2.1.2 binary), so that the
    // first match is the same as there.
    const TABLE: &[(i32, &str)] = &[
        (0, "no error"),
        (libc::EINTR, "interrupted system call"),
        (libc::ENOMEM, "out of memory"),
        (libc::ENOENT, "file does not exist"),
        (libc::ETXTBSY, "text busy"),
        (libc::EIO, "input/output error"),
        (libc::EEXIST, "file already exists"),
        (libc::ETIMEDOUT, "timed out"),
        (libc::EINPROGRESS, "operation in progress"),
        (libc::EAGAIN, "temporary failure"),
        (libc::EWOULDBLOCK, "input/output would block"),
        (libc::EPIPE, "broken pipe"),
        (libc::EPERM, "permission denied"),
        (libc::EACCES, "access denied"),
        (libc::ENXIO, "device not configured"),
        (libc::EPROTO, "protocol error"),
        (libc::EISDIR, "is a directory"),
        (libc::ECONNREFUSED, "connection refused"),
        (libc::ENOTDIR, "not a directory"),
        (libc::ESRCH, "no such process"),
        (libc::E2BIG, "argument list too long"),
        (libc::ENOEXEC, "exec format error"),
        (libc::EBADF, "file descriptor not open"),
        (libc::ECHILD, "no child processes"),
        (libc::EFAULT, "bad address"),
        (libc::ENOTBLK, "not a block device"),
        (libc::EBUSY, "device busy"),
        (libc::EXDEV, "cross-device link"),
        (libc::EINVAL, "invalid argument"),
        (libc::ENFILE, "system cannot open more files"),
        (libc::ENOTTY, "not a tty"),
        (libc::EFBIG, "file too big"),
        (libc::ENOSPC, "out of disk space"),
        (libc::ESPIPE, "unseekable descriptor"),
        (libc::EROFS, "read-only file system"),
        (libc::EMLINK, "too many links"),
        (libc::EDOM, "input out of range"),
        (libc::ERANGE, "output out of range"),
        (libc::EALREADY, "operation already in progress"),
        (libc::ENOTSOCK, "not a socket"),
        (libc::EDESTADDRREQ, "destination address required"),
        (libc::EMSGSIZE, "message too long"),
        (libc::EPROTOTYPE, "incorrect protocol type"),
        (libc::ENOPROTOOPT, "protocol not available"),
        (libc::EPROTONOSUPPORT, "protocol not supported"),
        (libc::ESOCKTNOSUPPORT, "socket type not supported"),
        (libc::EOPNOTSUPP, "operation not supported"),
        (libc::EPFNOSUPPORT, "protocol family not supported"),
        (libc::EAFNOSUPPORT, "address family not supported"),
        (libc::EADDRINUSE, "address already used"),
        (libc::EADDRNOTAVAIL, "address not available"),
        (libc::ENETDOWN, "network down"),
        (libc::ENETUNREACH, "network unreachable"),
        (libc::ENETRESET, "network reset"),
        (libc::ECONNABORTED, "connection aborted"),
        (libc::ECONNRESET, "connection reset"),
        (libc::ENOBUFS, "out of buffer space"),
        (libc::EISCONN, "already connected"),
        (libc::ENOTCONN, "not connected"),
        (libc::ESHUTDOWN, "socket shut down"),
        (libc::ETOOMANYREFS, "too many references"),
        (libc::ELOOP, "symbolic link loop"),
        (libc::ENAMETOOLONG, "file name too long"),
        (libc::EHOSTDOWN, "host down"),
        (libc::EHOSTUNREACH, "host unreachable"),
        (libc::ENOTEMPTY, "directory not empty"),
        (libc::EUSERS, "too many users"),
        (libc::EDQUOT, "disk quota exceeded"),
        (libc::ESTALE, "stale NFS file handle"),
        (libc::ENOLCK, "no locks available"),
        (libc::ENOSYS, "system call not available"),
        (libc::ENOSTR, "not a stream device"),
        (libc::ETIME, "timer expired"),
        (libc::ENOSR, "out of stream resources"),
        (libc::ENOMSG, "no message of desired type"),
        (libc::EBADMSG, "bad message type"),
        (libc::EIDRM, "identifier removed"),
        (libc::ENONET, "machine not on network"),
        (libc::ENOLINK, "link severed"),
        (libc::EADV, "advertise error"),
        (libc::ESRMNT, "srmount error"),
        (libc::ECOMM, "communication error"),
        (libc::EMULTIHOP, "multihop attempted"),
        (libc::EREMCHG, "remote address changed"),
    ];
    TABLE
        .iter()
        .find(|(number, _)| *number == errno)
        .map_or("unknown error", |(_, text)| text)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_errors_sv_meets_read_as_in_runit() {
        assert_eq!(error_str(libc::ENOENT), "file does not exist");
        assert_eq!(error_str(libc::ENXIO), "device not configured");
        assert_eq!(error_str(libc::EACCES), "access denied");
        assert_eq!(error_str(libc::EPERM), "permission denied");
        assert_eq!(error_str(libc::ENOTDIR), "not a directory");
    }

    #[test]
    fn a_shared_number_gets_the_first_text() {
        assert_eq!(libc::EAGAIN, libc::EWOULDBLOCK);
        assert_eq!(error_str(libc::EWOULDBLOCK), "temporary failure");
    }

    #[test]
    fn an_unknown_number_is_unknown() {
        assert_eq!(error_str(-5), "unknown error");
        assert_eq!(error_str(100_000), "unknown error");
    }
}
