//! `setuser USER COMMAND [ARGS…]`: run a command as another user (my_init's).
//!
//! USER is a name, or a numeric uid that has an entry in /etc/passwd (read
//! directly, never through glibc's NSS: see [`crate::accounts`]). The
//! supplementary groups are set from /etc/group (what initgroups would set),
//! then the gid, then the uid; after that baseinit checks that root cannot be
//! regained before it runs anything.
//! `HOME`, `USER`, `LOGNAME` and `UID` are set from the passwd entry; COMMAND
//! is looked up in `PATH` as the shell does, as the new user.

use std::ffi::{OsStr, OsString};
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::process::CommandExt;
use std::path::PathBuf;

use nix::errno::Errno;
use nix::unistd::{Gid, Uid};

use crate::accounts::{self, User};
use crate::exit::{CANNOT_EXECUTE, NOT_FOUND};
use crate::privileges::{Privileges, Switch};

/// Exit status for a usage error, an unknown user or a failed switch
/// (my_init's setuser exits 1 for all of them).
const FAILED: i32 = 1;

/// Runs `setuser` with `args` (args[0] is the program name); returns its exit
/// status when it could not exec the command.
pub fn main(args: &[OsString]) -> i32 {
    let (Some(user), Some(command)) = (args.get(1), args.get(2)) else {
        let progname = args.first().map_or_else(|| "setuser".into(), |a| a.to_string_lossy());
        eprintln!("Usage: {progname} USERNAME COMMAND [args..]");
        return FAILED;
    };
    let user = match lookup(&user.to_string_lossy()) {
        Ok(user) => user,
        Err(message) => {
            eprintln!("setuser: {message}");
            return FAILED;
        }
    };
    if let Err(message) = switch_to(&user) {
        eprintln!("setuser: {message}");
        return FAILED;
    }
    let program = match search(command, std::env::var_os("PATH").as_deref()) {
        Ok(program) => program,
        Err((code, what)) => {
            eprintln!("setuser: {}: {what}", command.to_string_lossy());
            return code;
        }
    };
    let error = std::process::Command::new(program)
        .arg0(command)
        .args(&args[3..])
        .env("HOME", &user.dir)
        .env("USER", &user.name)
        .env("LOGNAME", &user.name)
        .env("UID", user.uid.to_string())
        .exec();
    let (code, what) = exec_failure(&error);
    eprintln!("setuser: {}: {what}", command.to_string_lossy());
    code
}

/// Finds USER by name, else (if it is a number) by uid.
fn lookup(name: &str) -> Result<User, String> {
    let by_name = accounts::user_by_name(name).map_err(|e| format!("cannot look up user {name}: {e}"))?;
    if let Some(user) = by_name {
        return Ok(user);
    }
    if let Ok(uid) = name.parse::<u32>() {
        let by_uid = accounts::user_by_uid(Uid::from_raw(uid)).map_err(|e| format!("cannot look up uid {uid}: {e}"))?;
        if let Some(user) = by_uid {
            return Ok(user);
        }
    }
    Err(format!("user {name} not found"))
}

/// Drops to `user`: supplementary groups, gid, uid, then proves root is gone.
fn switch_to(user: &User) -> Result<(), String> {
    let current = nix::unistd::getresuid().map_err(|e| format!("cannot read the current uid: {}", e.desc()))?;
    let current_gid = nix::unistd::getresgid().map_err(|e| format!("cannot read the current gid: {}", e.desc()))?;
    let already = [current.real, current.effective, current.saved]
        .iter()
        .all(|&u| u == user.uid)
        && [current_gid.real, current_gid.effective, current_gid.saved]
            .iter()
            .all(|&g| g == user.gid);
    // Already that user and not root (a container run with --user): there is
    // nothing to drop, and setting groups would fail without privilege.
    if already && !user.uid.is_root() {
        return Ok(());
    }
    let me = Privileges::current();
    // initgroups, without its NSS lookup: the groups /etc/group gives.
    let groups = if me.set_gid {
        accounts::group_list(&user.name, user.gid)
            .map_err(|e| format!("cannot look up the groups of {}: {e}", user.name))?
    } else {
        Vec::new()
    };
    match me.switch(user.uid, user.gid, groups) {
        Err(refused) => return Err(format!("cannot become {}: {refused}", user.name)),
        Ok(Switch::Keep) => {}
        Ok(Switch::To { uid, gid, groups }) => {
            if let Some(groups) = groups {
                nix::unistd::setgroups(&groups)
                    .map_err(|e| format!("cannot set the groups of {}: {}", user.name, e.desc()))?;
            }
            nix::unistd::setgid(gid).map_err(|e| format!("cannot set gid {gid}: {}", e.desc()))?;
            nix::unistd::setuid(uid).map_err(|e| format!("cannot set uid {uid}: {}", e.desc()))?;
        }
    }
    verify(user)
}

/// Checks that the process is `user` through and through and, unless `user`
/// is root, that it cannot become root again.
fn verify(user: &User) -> Result<(), String> {
    let uids = nix::unistd::getresuid().map_err(|e| e.desc().to_owned())?;
    let gids = nix::unistd::getresgid().map_err(|e| e.desc().to_owned())?;
    let ids_match = [uids.real, uids.effective, uids.saved].iter().all(|&u| u == user.uid)
        && [gids.real, gids.effective, gids.saved].iter().all(|&g| g == user.gid);
    if !ids_match {
        return Err(format!(
            "still not fully {} after setuid; refusing to run the command",
            user.name
        ));
    }
    if user.uid.is_root() {
        return Ok(());
    }
    let regained = nix::unistd::setuid(Uid::from_raw(0)) != Err(Errno::EPERM)
        || nix::unistd::setgid(Gid::from_raw(0)) != Err(Errno::EPERM);
    if regained {
        return Err(format!(
            "could regain root after switching to {}; refusing to run the command",
            user.name
        ));
    }
    Ok(())
}

/// glibc's search path when `PATH` is unset.
const DEFAULT_PATH: &str = "/bin:/usr/bin";

/// Finds the program to run for `command`, as a shell does: a name with a
/// `/` is used as it is; otherwise the first executable regular file of that
/// name in `path`. The search runs after the switch, so it sees what the new
/// user may run, and a directory the user cannot enter is skipped instead of
/// turning "not found" into "permission denied" (as execvp would). The
/// error: 127 when nothing is there, 126 when only unexecutable files are.
fn search(command: &OsStr, path: Option<&OsStr>) -> Result<PathBuf, (i32, String)> {
    if command.as_bytes().contains(&b'/') {
        return Ok(PathBuf::from(command));
    }
    if command.is_empty() {
        return Err((NOT_FOUND, "command not found".into()));
    }
    let path = path.unwrap_or(OsStr::new(DEFAULT_PATH));
    let mut unexecutable = false;
    for dir in path.as_bytes().split(|&b| b == b':') {
        // An empty entry is the current directory.
        let dir = if dir.is_empty() {
            OsStr::new(".")
        } else {
            OsStr::from_bytes(dir)
        };
        let candidate = PathBuf::from(dir).join(command);
        let Ok(meta) = std::fs::metadata(&candidate) else {
            continue;
        };
        if !meta.is_file() {
            continue;
        }
        if nix::unistd::access(&candidate, nix::unistd::AccessFlags::X_OK).is_ok() {
            return Ok(candidate);
        }
        unexecutable = true;
    }
    if unexecutable {
        Err((CANNOT_EXECUTE, "cannot execute: Permission denied".into()))
    } else {
        Err((NOT_FOUND, "command not found".into()))
    }
}

/// The shell's exit status for a failed exec, and what to say about it.
fn exec_failure(error: &io::Error) -> (i32, String) {
    match error.raw_os_error().map(Errno::from_raw) {
        Some(Errno::ENOENT) => (NOT_FOUND, "cannot execute: No such file or directory".into()),
        Some(errno) => (CANNOT_EXECUTE, format!("cannot execute: {}", errno.desc())),
        None => (CANNOT_EXECUTE, format!("cannot execute: {error}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn os(list: &[&str]) -> Vec<OsString> {
        list.iter().map(OsString::from).collect()
    }

    #[test]
    fn too_few_arguments_is_a_usage_error_with_exit_1() {
        assert_eq!(main(&os(&["setuser"])), 1);
        assert_eq!(main(&os(&["setuser", "nobody"])), 1);
        assert_eq!(main(&[]), 1);
    }

    #[test]
    fn an_unknown_user_is_exit_1() {
        assert_eq!(main(&os(&["setuser", "no-such-user-baseinit", "true"])), 1);
        assert!(lookup("no-such-user-baseinit").unwrap_err().contains("not found"));
    }

    #[test]
    fn users_are_found_by_name_or_uid() {
        assert_eq!(lookup("root").unwrap().uid, Uid::from_raw(0));
        assert_eq!(lookup("0").unwrap().name, "root");
    }

    #[test]
    fn search_finds_the_first_executable_file_in_path() {
        use std::os::unix::fs::PermissionsExt;
        let tmp = tempfile::tempdir().unwrap();
        let (a, b, c) = (tmp.path().join("a"), tmp.path().join("b"), tmp.path().join("c"));
        for dir in [&a, &b, &c] {
            std::fs::create_dir(dir).unwrap();
        }
        let write = |path: PathBuf, mode: u32| {
            std::fs::write(&path, "#!/bin/sh\n").unwrap();
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).unwrap();
        };
        write(a.join("tool"), 0o644);
        write(b.join("tool"), 0o755);
        std::fs::create_dir(a.join("dir-only")).unwrap();
        write(c.join("plain"), 0o644);
        let path = std::env::join_paths([&a, &b, &c]).unwrap();
        let found = |name: &str| search(OsStr::new(name), Some(&path));
        assert_eq!(found("tool"), Ok(b.join("tool")));
        assert_eq!(found("missing").unwrap_err().0, 127);
        assert_eq!(found("dir-only").unwrap_err().0, 127);
        assert_eq!(found("").unwrap_err().0, 127);
        // Root may read any file but executes only those with an x bit.
        assert_eq!(found("plain").unwrap_err().0, 126);
        assert_eq!(found("./anything"), Ok(PathBuf::from("./anything")));
    }

    #[test]
    fn exec_failures_map_to_the_shells_codes() {
        assert_eq!(exec_failure(&io::Error::from_raw_os_error(Errno::ENOENT as i32)).0, 127);
        assert_eq!(exec_failure(&io::Error::from_raw_os_error(Errno::EACCES as i32)).0, 126);
        assert_eq!(
            exec_failure(&io::Error::from_raw_os_error(Errno::ENOEXEC as i32)).0,
            126
        );
        assert_eq!(exec_failure(&io::Error::other("x")).0, 126);
    }
}
