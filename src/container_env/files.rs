//! The export's files: the variable files, the `.sh` and `.json` dumps,
//! their directory, and the modes and owner each gets.

use std::ffi::OsString;
use std::fs::{self, OpenOptions, Permissions};
use std::io::{self, Write};
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::Path;

use super::{
    DIR_MODE, DUMP_GROUP, DUMP_MODE, EnvPaths, Problems, Scan, VAR_FILE_MODE, Vars, denied, is_not_exported, json_dump,
    not_a_file_name, shell_dump,
};

/// Writes the variable files (when the directory can be had), the `.sh`
/// and the `.json`; returns what the directory holds afterwards.
pub(super) fn write_all(paths: &EnvPaths, vars: &Vars, scan: Option<Scan>, problems: &mut Problems) -> Option<Scan> {
    let on_disk = if ensure_dir(&paths.dir, problems) {
        let mut on_disk = scan.unwrap_or_default();
        write_var_files(&paths.dir, vars, &mut on_disk, problems);
        Some(on_disk)
    } else {
        scan
    };
    let sh = shell_dump(vars);
    if let Err(e) = write_atomically(&paths.sh, &sh) {
        problems.io(format!("{}: cannot write: {e}", paths.sh.display()), &e);
    }
    let json = json_dump(vars);
    if let Err(e) = json.and_then(|json| write_atomically(&paths.json, &json)) {
        problems.io(format!("{}: cannot write: {e}", paths.json.display()), &e);
    }
    on_disk
}

/// Makes sure the directory exists (0700 when created here); false when it
/// cannot be had.
fn ensure_dir(dir: &Path, problems: &mut Problems) -> bool {
    match fs::metadata(dir) {
        Ok(meta) if meta.is_dir() => return true,
        Ok(_) => {
            problems.other(format!("{}: not a directory, no variable file written", dir.display()));
            return false;
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => {
            problems.io(format!("{}: {e}, no variable file written", dir.display()), &e);
            return false;
        }
    }
    match fs::DirBuilder::new().mode(DIR_MODE).create(dir) {
        Ok(()) => {
            // The umask may have narrowed it; the base image has exactly 0700.
            if let Err(e) = fs::set_permissions(dir, Permissions::from_mode(DIR_MODE)) {
                tracing::debug!("{}: cannot chmod {DIR_MODE:o}: {e}", dir.display());
            }
            tracing::debug!("{}: created", dir.display());
            true
        }
        Err(e) => {
            problems.io(
                format!("{}: cannot create: {e}, no variable file written", dir.display()),
                &e,
            );
            false
        }
    }
}

/// One file per variable that can be stored as one, rewritten only when
/// the value it holds (as imported) differs.
fn write_var_files(dir: &Path, vars: &Vars, on_disk: &mut Scan, problems: &mut Problems) {
    let mut failed = 0;
    let mut first_failure = None;
    let mut all_denied = true;
    for (name, value) in vars {
        if is_not_exported(name) || not_a_file_name(name).is_some() || on_disk.values.get(name) == Some(value) {
            continue;
        }
        let path = dir.join(name);
        match write_var_file(&path, value.as_bytes()) {
            Ok(()) => {
                tracing::debug!("{}: written", path.display());
                on_disk.skipped.remove(name);
                on_disk.values.insert(name.clone(), value.clone());
            }
            Err(e) => {
                failed += 1;
                all_denied &= denied(&e);
                first_failure.get_or_insert_with(|| format!("{}: {e}", path.display()));
                // Whatever the failed write left (an old value, half a new
                // one) must not pass for a startup script's edit next time.
                on_disk.values.remove(name);
                on_disk.skipped.remove(name);
                match read_value(&path) {
                    Ok(Some(left)) => {
                        on_disk.values.insert(name.clone(), left);
                    }
                    Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                    Ok(None) | Err(_) => {
                        on_disk.skipped.insert(name.clone());
                    }
                }
            }
        }
    }
    if let Some(first) = first_failure {
        let message = format!("{failed} variable file(s) not written (the first: {first})");
        if all_denied {
            problems.denied(message);
        } else {
            problems.other(message);
        }
    }
}

/// A regular file's value (symlinks followed), one trailing newline stripped
/// as my_init does; None for anything else, which is never opened (a FIFO
/// would block boot).
pub(super) fn read_value(path: &Path) -> io::Result<Option<OsString>> {
    if !fs::metadata(path)?.is_file() {
        return Ok(None);
    }
    let mut bytes = fs::read(path)?;
    if bytes.last() == Some(&b'\n') {
        bytes.pop();
    }
    if bytes.contains(&0) {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            "holds a NUL byte, which no environment variable can",
        ));
    }
    Ok(Some(OsString::from_vec(bytes)))
}

/// Rewrites a variable file in place: an existing file keeps its mode, a new
/// one is 0600. Symlinks are followed, as on import.
fn write_var_file(path: &Path, value: &[u8]) -> io::Result<()> {
    let mut file = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(VAR_FILE_MODE)
        .open(path)?;
    file.write_all(value)
}

/// Replaces `path` with `contents` through a temporary file in the same
/// directory and a rename, so a reader sees the old file or the new one,
/// never half of one. An existing file's mode, owner and group carry over; a
/// new one is 0640, group docker_env when it exists. A symlink is written
/// through, not replaced.
fn write_atomically(path: &Path, contents: &[u8]) -> io::Result<()> {
    let target = match fs::symlink_metadata(path) {
        Ok(meta) if meta.file_type().is_symlink() => fs::canonicalize(path).unwrap_or_else(|_| path.to_owned()),
        _ => path.to_owned(),
    };
    let existing = match fs::metadata(&target) {
        Ok(meta) => Some(meta),
        Err(e) if e.kind() == io::ErrorKind::NotFound => None,
        Err(e) => return Err(e),
    };
    let file_name = target
        .file_name()
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "no file name"))?;
    let mut tmp_name = OsString::from(".");
    tmp_name.push(file_name);
    tmp_name.push(".baseinit-tmp");
    let tmp = target.with_file_name(tmp_name);
    // Left over if an earlier baseinit died mid-write (as PID 1 its pid is always 1).
    match fs::remove_file(&tmp) {
        Ok(()) => tracing::debug!("{}: removed a leftover temporary file", tmp.display()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(e),
    }
    let file = OpenOptions::new().write(true).create_new(true).mode(0o600).open(&tmp)?;
    let written = fill(file, contents, existing.as_ref(), &target).and_then(|()| fs::rename(&tmp, &target));
    if written.is_err() {
        // Best effort: a leftover is removed by the next write anyway.
        let _ = fs::remove_file(&tmp);
    }
    written
}

/// Writes the temporary file of [`write_atomically`] and gives it the mode,
/// owner and group `target` has (`existing`) or a new dump gets.
fn fill(mut file: fs::File, contents: &[u8], existing: Option<&fs::Metadata>, target: &Path) -> io::Result<()> {
    file.write_all(contents)?;
    match existing {
        Some(meta) => {
            // Ownership first: chown clears set-id bits, the chmod restores them.
            let ours = file.metadata()?;
            if (meta.uid(), meta.gid()) != (ours.uid(), ours.gid()) {
                std::os::unix::fs::fchown(&file, Some(meta.uid()), Some(meta.gid()))?;
            }
            file.set_permissions(Permissions::from_mode(meta.mode() & 0o7777))?;
        }
        None => {
            if let Some(gid) = dump_group() {
                // Not fatal: without the group the file is 0640 to ours.
                if let Err(e) = std::os::unix::fs::fchown(&file, None, Some(gid)) {
                    tracing::debug!("{}: cannot give it group {DUMP_GROUP}: {e}", target.display());
                }
            }
            file.set_permissions(Permissions::from_mode(DUMP_MODE))?;
        }
    }
    // No fsync: the rename already keeps readers from a half-written file,
    // and the dump is written anew at every boot, so surviving a host crash
    // buys nothing, while on a disk it would slow every boot down.
    Ok(())
}

/// docker_env's gid, when the group exists.
pub(super) fn dump_group() -> Option<u32> {
    match crate::accounts::group_by_name(DUMP_GROUP) {
        Ok(group) => group.map(|group| group.gid.as_raw()),
        Err(e) => {
            tracing::debug!("cannot look up group {DUMP_GROUP}: {e}");
            None
        }
    }
}
