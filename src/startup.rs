//! Which files of a my_init.d-style directory run, in what order: startup
//! scripts, and the shutdown hooks of my_init.pre_shutdown.d and post_shutdown.d.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use crate::config::is_executable_file;

/// The scripts of a my_init.d-style directory (startup scripts, shutdown
/// hooks): every regular executable file in `dir` whose name does not start
/// with `.`, in byte order of their names, then `rc_local` if it is
/// executable. A missing `dir` means no scripts; an unreadable one is an
/// error.
pub fn scripts(dir: &Path, rc_local: Option<&Path>) -> Result<Vec<PathBuf>, String> {
    let mut scripts = Vec::new();
    match fs::read_dir(dir) {
        Ok(entries) => {
            for entry in entries {
                let entry = entry.map_err(|e| format!("{}: cannot read: {e}", dir.display()))?;
                let name = entry.file_name();
                if name.as_encoded_bytes().starts_with(b".") {
                    continue;
                }
                let path = entry.path();
                if is_executable_file(&path) {
                    scripts.push(path);
                } else if path.is_file() {
                    tracing::warn!(
                        "{}: not executable, skipped (chmod +x it to run it at boot)",
                        path.display()
                    );
                } else {
                    tracing::debug!("{}: not a regular file, skipped", path.display());
                }
            }
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            tracing::debug!("{}: no such directory, nothing to run", dir.display());
        }
        Err(e) => return Err(format!("{}: cannot read: {e}", dir.display())),
    }
    // OsStr orders by bytes on Unix, as my_init's sorted() does.
    scripts.sort();
    if let Some(rc_local) = rc_local {
        if is_executable_file(rc_local) {
            scripts.push(rc_local.to_owned());
        } else if rc_local.exists() {
            tracing::debug!("{}: not executable, skipped", rc_local.display());
        }
    }
    Ok(scripts)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn write(path: &Path, mode: u32) {
        fs::write(path, "#!/bin/sh\n").unwrap();
        fs::set_permissions(path, fs::Permissions::from_mode(mode)).unwrap();
    }

    #[test]
    fn executables_in_byte_order_then_rc_local() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        for name in ["b", "a", "B", "10_x", "9_y"] {
            write(&d.join(name), 0o755);
        }
        write(&d.join("notes.txt"), 0o644);
        write(&d.join(".hidden"), 0o755);
        fs::create_dir(d.join("subdir")).unwrap();
        let etc = tempfile::tempdir().unwrap();
        let rc = etc.path().join("rc.local");
        write(&rc, 0o755);
        let got = scripts(d, Some(&rc)).unwrap();
        let names: Vec<_> = got.iter().map(|p| p.file_name().unwrap().to_str().unwrap()).collect();
        assert_eq!(names, ["10_x", "9_y", "B", "a", "b", "rc.local"]);
    }

    #[test]
    fn missing_directory_and_rc_local_mean_no_scripts() {
        let dir = tempfile::tempdir().unwrap();
        let got = scripts(&dir.path().join("nope"), Some(&dir.path().join("rc.local"))).unwrap();
        assert!(got.is_empty());
    }
}
