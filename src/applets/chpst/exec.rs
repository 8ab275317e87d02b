//! Running the program as runit's pathexec does: a name with a `/` as it
//! is, any other tried in each directory of the PATH chpst was started with
//! (not one an envdir set), with an environment built by [`super::envdir::merge`].

use std::ffi::{CString, OsStr, OsString};
use std::os::unix::ffi::OsStrExt;

use nix::errno::Errno;
use nix::sys::signal::{SigHandler, Signal, signal};

/// runit's search path when `PATH` is unset.
const DEFAULT_PATH: &[u8] = b"/bin:/usr/bin";

/// The paths tried for `file`, in order: an empty PATH entry is `.`.
pub fn candidates(file: &[u8], path: Option<&[u8]>) -> Vec<Vec<u8>> {
    if file.contains(&b'/') {
        return vec![file.to_vec()];
    }
    path.unwrap_or(DEFAULT_PATH)
        .split(|&b| b == b':')
        .map(|dir| {
            let dir = if dir.is_empty() { &b"."[..] } else { dir };
            [dir, b"/", file].concat()
        })
        .collect()
}

/// Gives the program the default SIGPIPE, as std's Command gives its
/// children: Rust ignores it for itself, and an ignored signal stays ignored
/// across exec.
pub fn default_sigpipe() {
    // SAFETY: setting a signal's default disposition installs no handler.
    let _ = unsafe { signal(Signal::SIGPIPE, SigHandler::SigDfl) };
}

/// Execs `file` with `argv` and `env`; returns only when that failed, with
/// the error runit reports: the first that was neither "not found" nor one
/// that moves on to the next directory (EACCES, EPERM, EISDIR), else the last.
pub fn run(file: &OsStr, argv: &[OsString], env: &[Vec<u8>]) -> Errno {
    let (Ok(argv), Ok(env)) = (
        argv.iter()
            .map(|a| CString::new(a.as_bytes()))
            .collect::<Result<Vec<_>, _>>(),
        env.iter()
            .map(|e| CString::new(e.as_slice()))
            .collect::<Result<Vec<_>, _>>(),
    ) else {
        // A NUL cannot come from argv, a file name or a decoded value.
        return Errno::EINVAL;
    };
    let path = std::env::var_os("PATH");
    let mut saved = None;
    let mut last = Errno::ENOENT;
    for candidate in candidates(file.as_bytes(), path.as_deref().map(OsStr::as_bytes)) {
        let Ok(candidate) = CString::new(candidate) else {
            continue;
        };
        let Err(errno) = nix::unistd::execve(&candidate, &argv, &env);
        last = errno;
        if errno != Errno::ENOENT {
            saved = Some(errno);
            if !matches!(errno, Errno::EACCES | Errno::EPERM | Errno::EISDIR) {
                return errno;
            }
        }
    }
    saved.unwrap_or(last)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tried(file: &str, path: Option<&str>) -> Vec<String> {
        candidates(file.as_bytes(), path.map(str::as_bytes))
            .into_iter()
            .map(|c| String::from_utf8(c).unwrap())
            .collect()
    }

    #[test]
    fn the_path_is_searched_as_runit_does() {
        assert_eq!(tried("sh", None), ["/bin/sh", "/usr/bin/sh"]);
        assert_eq!(tried("sh", Some("/a::/b/")), ["/a/sh", "./sh", "/b//sh"]);
        assert_eq!(tried("sh", Some("")), ["./sh"]);
        assert_eq!(tried("sh", Some("/a:")), ["/a/sh", "./sh"]);
        assert_eq!(tried("./sh", Some("/a")), ["./sh"]);
        assert_eq!(tried("a/b", None), ["a/b"]);
    }

    #[test]
    fn a_failed_exec_says_why() {
        let tmp = tempfile::tempdir().unwrap();
        let missing = tmp.path().join("missing");
        assert_eq!(run(missing.as_os_str(), &[OsString::from("x")], &[]), Errno::ENOENT);
        // A directory: EACCES, as runit reports it.
        assert_eq!(run(tmp.path().as_os_str(), &[OsString::from("x")], &[]), Errno::EACCES);
    }
}
