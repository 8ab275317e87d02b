//! envdir: a directory's files as environment changes, and how runit's
//! pathexec merges such changes into the environment the program gets.
//!
//! Each file not starting with `.` is a variable, its content decoded as
//! [`crate::envdir::value`] says (shared with service.toml's `env-dir`).

use std::fs::File;
use std::io::Read;
use std::os::fd::OwnedFd;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use nix::errno::Errno;
use nix::fcntl::{OFlag, open};
use nix::sys::stat::Mode;

use super::Fatal;
use crate::envdir::value;

/// One change, as runit's pathexec_env keeps it: `NAME=VALUE` sets, a bare
/// `NAME` unsets.
pub type Change = Vec<u8>;

/// The change for `name` with `value` (None: unset).
pub fn change(name: &[u8], value: Option<&[u8]>) -> Change {
    match value {
        Some(value) => [name, b"=", value].concat(),
        None => name.to_vec(),
    }
}

/// What reading an envdir found.
#[derive(Debug, Default)]
pub struct Found {
    pub changes: Vec<Change>,
    /// Subdirectories skipped (chpst -e only), for -v.
    pub warnings: Vec<String>,
}

/// Reads the envdir `dir` as runit does, in directory order. A
/// subdirectory is skipped with a warning when `skip_directories` (chpst
/// -e), an error otherwise (envdir).
///
/// runit changes into `dir` and back; this fails as that would (see
/// [`enter`]) without changing the working directory. Unlike runit, an entry
/// that vanished or is a dangling symlink unsets its variable: runit reuses
/// the previous file's value for it.
pub fn read(dir: &Path, skip_directories: bool) -> Result<Found, Fatal> {
    let shown = dir.display();
    enter(dir).map_err(|e| Fatal::sys(format_args!("unable to switch to directory: {shown}"), e))?;
    let entries =
        std::fs::read_dir(dir).map_err(|e| Fatal::io(format_args!("unable to open directory: {shown}"), &e))?;
    let mut found = Found::default();
    for entry in entries {
        let entry = entry.map_err(|e| Fatal::io(format_args!("unable to read directory: {shown}"), &e))?;
        let name = entry.file_name();
        if name.as_bytes().starts_with(b".") {
            continue;
        }
        let content = match read_file(&dir.join(&name)) {
            Ok(content) => content,
            Err(Errno::EISDIR) if skip_directories => {
                found.warnings.push(format!(
                    "unable to read {shown}/{}: {}",
                    name.to_string_lossy(),
                    super::error_str(Errno::EISDIR)
                ));
                continue;
            }
            Err(e) => {
                return Err(Fatal::sys(
                    format_args!("unable to read {shown}/{}", name.to_string_lossy()),
                    e,
                ));
            }
        };
        found.changes.push(change(name.as_bytes(), value(&content).as_deref()));
    }
    Ok(found)
}

/// Fails as chdir into `dir` would: it must be a directory the process may
/// search.
fn enter(dir: &Path) -> Result<(), Errno> {
    let meta = std::fs::metadata(dir).map_err(|e| Errno::from_raw(e.raw_os_error().unwrap_or(0)))?;
    if !meta.is_dir() {
        return Err(Errno::ENOTDIR);
    }
    nix::unistd::access(dir, nix::unistd::AccessFlags::X_OK)
}

/// A file's bytes (opened without blocking, as runit's open_read, so a FIFO
/// without a writer reads as empty); one that does not exist is empty.
fn read_file(path: &Path) -> Result<Vec<u8>, Errno> {
    let fd: OwnedFd = match open(
        path,
        OFlag::O_RDONLY | OFlag::O_NONBLOCK | OFlag::O_CLOEXEC,
        Mode::empty(),
    ) {
        Ok(fd) => fd,
        Err(Errno::ENOENT) => return Ok(Vec::new()),
        Err(e) => return Err(e),
    };
    let mut content = Vec::new();
    File::from(fd)
        .read_to_end(&mut content)
        .map_err(|e| Errno::from_raw(e.raw_os_error().unwrap_or(0)))?;
    Ok(content)
}

/// `environ` with `changes` made, as runit's pathexec_env_run: for each
/// change in order, the first entry of that name goes (the last entry takes
/// its place), then a `NAME=VALUE` change is added at the end.
pub fn merge(mut environ: Vec<Vec<u8>>, changes: &[Change]) -> Vec<Vec<u8>> {
    for change in changes {
        let split = change.iter().position(|&b| b == b'=').unwrap_or(change.len());
        let name = &change[..split];
        let same = environ
            .iter()
            .position(|entry| entry.starts_with(name) && entry.get(split) == Some(&b'='));
        if let Some(at) = same {
            environ.swap_remove(at);
        }
        if split < change.len() {
            environ.push(change.clone());
        }
    }
    environ
}

/// This process's environment, as `NAME=VALUE` entries in order.
pub fn current() -> Vec<Vec<u8>> {
    std::env::vars_os()
        .map(|(name, value)| [name.as_bytes(), b"=", value.as_bytes()].concat())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn merging_replaces_adds_and_unsets_in_order() {
        let env = |list: &[&str]| list.iter().map(|e| e.as_bytes().to_vec()).collect::<Vec<_>>();
        let changes = [
            change(b"B", Some(b"new")),
            change(b"A", None),
            change(b"C", Some(b"")),
            change(b"NOPE", None),
            // A name with `=` (a file named so) sets the part before it.
            change(b"E=Q", Some(b"v")),
        ];
        let merged = merge(env(&["A=1", "B=2", "AB=3", "E=0", "D"]), &changes);
        // B goes (D takes its place) and comes back last; A goes (B=new
        // takes its place); E goes (C= takes its place).
        assert_eq!(merged, env(&["B=new", "D", "AB=3", "C=", "E=Q=v"]));
        // A later change of the same name wins.
        let merged = merge(env(&[]), &[change(b"X", Some(b"1")), change(b"X", Some(b"2"))]);
        assert_eq!(merged, env(&["X=2"]));
    }

    #[test]
    fn a_directory_reads_as_changes() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path();
        std::fs::write(dir.join("SET"), "value \nrest").unwrap();
        std::fs::write(dir.join("EMPTY"), "").unwrap();
        std::fs::write(dir.join(".hidden"), "x").unwrap();
        std::os::unix::fs::symlink("/nonexistent/baseinit", dir.join("DANGLING")).unwrap();
        std::fs::create_dir(dir.join("SUB")).unwrap();
        let read = read(dir, true).unwrap();
        let mut changes = read.changes.clone();
        changes.sort();
        assert_eq!(
            changes,
            [b"DANGLING".to_vec(), b"EMPTY".to_vec(), b"SET=value".to_vec()]
        );
        assert_eq!(read.warnings.len(), 1);
        assert!(
            read.warnings[0].ends_with("/SUB: is a directory"),
            "{:?}",
            read.warnings
        );
        // envdir itself does not skip a subdirectory.
        let err = super::read(dir, false).unwrap_err();
        assert!(err.0.ends_with("/SUB: is a directory"), "{err:?}");
        let err = super::read(&dir.join("missing"), false).unwrap_err();
        assert!(err.0.starts_with("unable to switch to directory: ") && err.0.ends_with(": file does not exist"));
        let err = super::read(&dir.join("SET"), false).unwrap_err();
        assert!(err.0.ends_with("/SET: not a directory"), "{err:?}");
    }
}
