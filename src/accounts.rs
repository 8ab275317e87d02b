//! The user and group database: /etc/passwd and /etc/group read directly, because a static binary cannot use glibc's NSS.
//!
//! The released binary links musl, but the same code must stay safe with
//! glibc (development builds, a glibc fallback of images/build-binary.sh):
//! even in a static binary glibc's
//! getpwnam, getgrnam, getgrouplist and initgroups still dlopen the NSS
//! modules nsswitch.conf names, and that was seen to crash (SIGSEGV) when a
//! name is not in the file and a module other than `files` is listed (as in
//! `group: files systemd`, with libnss-systemd installed). PID 1 must never
//! die, so baseinit never calls NSS: it reads the two files the way glibc's
//! `files` source does, and that source is what container images use.
//!
//! The format, as glibc's `files` source reads it: one entry a line, fields
//! split on `:`; leading blanks are skipped; an empty line or one starting
//! with `#` is skipped. `name:password:uid:gid:gecos:home:shell` for passwd
//! (the shell is the rest of the line), `name:password:gid:member,member,...`
//! for group (blanks around a member are dropped). The first entry that
//! matches wins. A line that does not parse (too few fields, an id that is
//! not a decimal u32, a name that is empty, has a NUL or is not UTF-8, a NIS
//! `+`/`-` compat entry) is skipped, never an error: one bad line must not
//! hide the rest of the database. A missing file is an empty database (an
//! image FROM scratch may have none).

use std::ffi::OsStr;
use std::fs;
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use nix::unistd::{Gid, Uid};

/// The passwd database of the `files` source.
pub const PASSWD: &str = "/etc/passwd";
/// The group database of the `files` source.
pub const GROUP: &str = "/etc/group";

/// One passwd entry.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct User {
    pub name: String,
    pub uid: Uid,
    pub gid: Gid,
    pub dir: PathBuf,
    pub shell: PathBuf,
}

/// One group entry.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Group {
    pub name: String,
    pub gid: Gid,
    /// The member names as written; bytes, because only equality matters and
    /// a member that is not UTF-8 must not hide the others.
    pub members: Vec<Vec<u8>>,
}

/// The user called `name` in /etc/passwd.
pub fn user_by_name(name: &str) -> io::Result<Option<User>> {
    Ok(users(&read(Path::new(PASSWD))?).find(|user| user.name == name))
}

/// The first user with `uid` in /etc/passwd.
pub fn user_by_uid(uid: Uid) -> io::Result<Option<User>> {
    Ok(users(&read(Path::new(PASSWD))?).find(|user| user.uid == uid))
}

/// The group called `name` in /etc/group.
pub fn group_by_name(name: &str) -> io::Result<Option<Group>> {
    Ok(groups(&read(Path::new(GROUP))?).find(|group| group.name == name))
}

/// The groups of `user` (whose primary group is `gid`) from /etc/group: what
/// getgrouplist(3) and initgroups(3) give with the `files` source.
pub fn group_list(user: &str, gid: Gid) -> io::Result<Vec<Gid>> {
    Ok(group_list_in(&read(Path::new(GROUP))?, user, gid))
}

/// `gid` first, then, in file order and once each, the gid of every group
/// whose member list names `user` (getgrouplist's order).
pub fn group_list_in(content: &[u8], user: &str, gid: Gid) -> Vec<Gid> {
    let mut list = vec![gid];
    for group in groups(content) {
        if !list.contains(&group.gid) && group.members.iter().any(|m| m.as_slice() == user.as_bytes()) {
            list.push(group.gid);
        }
    }
    list
}

/// The entries of a passwd file, malformed lines left out.
pub fn users(content: &[u8]) -> impl Iterator<Item = User> + '_ {
    lines(content).filter_map(parse_user)
}

/// The entries of a group file, malformed lines left out.
pub fn groups(content: &[u8]) -> impl Iterator<Item = Group> + '_ {
    lines(content).filter_map(parse_group)
}

/// A file's bytes; a missing file reads as empty (no entries, as glibc).
fn read(path: &Path) -> io::Result<Vec<u8>> {
    match fs::read(path) {
        Ok(content) => Ok(content),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(Vec::new()),
        Err(e) => Err(e),
    }
}

/// The lines that may hold an entry: leading blanks gone, no blank lines,
/// no comments.
fn lines(content: &[u8]) -> impl Iterator<Item = &[u8]> {
    content
        .split(|&b| b == b'\n')
        .map(<[u8]>::trim_ascii_start)
        .filter(|line| !line.is_empty() && line[0] != b'#')
}

/// `name:password:uid:gid:gecos:home:shell`; the shell is the rest of the line.
fn parse_user(line: &[u8]) -> Option<User> {
    let mut fields = line.splitn(7, |&b| b == b':');
    let name = name(fields.next()?)?;
    let _password = fields.next()?;
    let uid = id(fields.next()?)?;
    let gid = id(fields.next()?)?;
    let _gecos = fields.next()?;
    let dir = PathBuf::from(OsStr::from_bytes(fields.next()?));
    let shell = PathBuf::from(OsStr::from_bytes(fields.next()?));
    Some(User {
        name,
        uid: Uid::from_raw(uid),
        gid: Gid::from_raw(gid),
        dir,
        shell,
    })
}

/// `name:password:gid:members`; glibc accepts the line without its member
/// field too (`name:x:10`).
fn parse_group(line: &[u8]) -> Option<Group> {
    let mut fields = line.splitn(4, |&b| b == b':');
    let name = name(fields.next()?)?;
    let _password = fields.next()?;
    let gid = id(fields.next()?)?;
    let members = fields
        .next()
        .unwrap_or_default()
        .split(|&b| b == b',')
        .map(<[u8]>::trim_ascii)
        .filter(|member| !member.is_empty())
        .map(<[u8]>::to_vec)
        .collect();
    Some(Group {
        name,
        gid: Gid::from_raw(gid),
        members,
    })
}

/// A usable name: UTF-8, not empty, no NUL, not a NIS compat entry.
fn name(field: &[u8]) -> Option<String> {
    let name = std::str::from_utf8(field).ok()?;
    let unusable = name.is_empty() || name.contains('\0') || name.starts_with(['+', '-']);
    (!unusable).then(|| name.to_owned())
}

/// A decimal id: digits only (no sign, no blanks), within u32.
fn id(field: &[u8]) -> Option<u32> {
    if field.is_empty() || !field.iter().all(u8::is_ascii_digit) {
        return None;
    }
    std::str::from_utf8(field).ok()?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn user(name: &str, uid: u32, gid: u32, dir: &str, shell: &str) -> User {
        User {
            name: name.into(),
            uid: Uid::from_raw(uid),
            gid: Gid::from_raw(gid),
            dir: dir.into(),
            shell: shell.into(),
        }
    }

    fn group(name: &str, gid: u32, members: &[&str]) -> Group {
        Group {
            name: name.into(),
            gid: Gid::from_raw(gid),
            members: members.iter().map(|m| m.as_bytes().to_vec()).collect(),
        }
    }

    #[test]
    fn passwd_lines() {
        let cases: &[(&[u8], Option<User>)] = &[
            (
                b"root:x:0:0:root:/root:/bin/bash",
                Some(user("root", 0, 0, "/root", "/bin/bash")),
            ),
            (
                b"nobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin",
                Some(user("nobody", 65534, 65534, "/nonexistent", "/usr/sbin/nologin")),
            ),
            // Empty password, gecos and shell are fields all the same.
            (b"app::1000:1000:::", Some(user("app", 1000, 1000, "", ""))),
            (
                b"app:x:1000:100:A, B,,:/home/app:/bin/sh",
                Some(user("app", 1000, 100, "/home/app", "/bin/sh")),
            ),
            // The shell is the rest of the line, colons included.
            (b"odd:x:1:1::/:/bin/a:b", Some(user("odd", 1, 1, "/", "/bin/a:b"))),
            (b"max:x:4294967295:0::/:", Some(user("max", u32::MAX, 0, "/", ""))),
            // A home that is not UTF-8 is kept as bytes.
            (
                b"b:x:2:2::/home/\xff:/bin/sh",
                Some(User {
                    dir: PathBuf::from(OsStr::from_bytes(b"/home/\xff")),
                    ..user("b", 2, 2, "", "/bin/sh")
                }),
            ),
            (b"short:x:1:1::/home", None),
            (b"short:x:1", None),
            (b"noid:x::1::/:/bin/sh", None),
            (b"neg:x:-1:1::/:/bin/sh", None),
            (b"plus:x:+1:1::/:/bin/sh", None),
            (b"big:x:4294967296:1::/:/bin/sh", None),
            (b"hex:x:0x10:1::/:/bin/sh", None),
            (b"sp:x: 1:1::/:/bin/sh", None),
            (b"gid:x:1:one::/:/bin/sh", None),
            (b":x:1:1::/:/bin/sh", None),
            (b"\xff\xfe:x:1:1::/:/bin/sh", None),
            (b"n\0ul:x:1:1::/:/bin/sh", None),
            (b"+nis:x:1:1::/:/bin/sh", None),
            (b"-nis:x:1:1::/:/bin/sh", None),
            (b"+", None),
            (b"", None),
        ];
        for (line, want) in cases {
            assert_eq!(&parse_user(line), want, "{}", String::from_utf8_lossy(line));
        }
    }

    #[test]
    fn group_lines() {
        let cases: &[(&[u8], Option<Group>)] = &[
            (b"root:x:0:", Some(group("root", 0, &[]))),
            (b"root:x:0", Some(group("root", 0, &[]))),
            (b"adm:x:4:syslog,alice", Some(group("adm", 4, &["syslog", "alice"]))),
            (b"adm:x:4: a , b ,,c,", Some(group("adm", 4, &["a", "b", "c"]))),
            (b"docker_env:x:999:", Some(group("docker_env", 999, &[]))),
            (b"g:!:5:a:b", Some(group("g", 5, &["a:b"]))),
            (
                b"g:x:6:\xff,bob",
                Some(Group {
                    members: vec![b"\xff".to_vec(), b"bob".to_vec()],
                    ..group("g", 6, &[])
                }),
            ),
            (b"g:x", None),
            (b"g:x::", None),
            (b"g:x:six:", None),
            (b"g:x:-6:", None),
            (b":x:6:", None),
            (b"\xc3(:x:6:", None),
            (b"+:::", None),
            (b"", None),
        ];
        for (line, want) in cases {
            assert_eq!(&parse_group(line), want, "{}", String::from_utf8_lossy(line));
        }
    }

    #[test]
    fn files_skip_comments_blanks_and_bad_lines_and_keep_the_first_match() {
        let passwd = b"# comment\n\n   \n  # indented comment\n\
            root:x:0:0:root:/root:/bin/bash\n\
            garbage\n\
            \xff\xff\xff\n\
            \tapp:x:1000:1000::/home/app:/bin/sh\n\
            app:x:1001:1001::/other:/bin/sh\n\
            alias:x:1000:1000::/alias:/bin/sh";
        let names: Vec<_> = users(passwd).map(|u| (u.name, u.uid.as_raw())).collect();
        assert_eq!(
            names,
            [
                ("root".into(), 0),
                ("app".into(), 1000),
                ("app".into(), 1001),
                ("alias".into(), 1000)
            ]
        );
        let first = users(passwd).find(|u| u.name == "app").unwrap();
        assert_eq!(first.dir, Path::new("/home/app"));
        let by_uid = users(passwd).find(|u| u.uid == Uid::from_raw(1000)).unwrap();
        assert_eq!(by_uid.name, "app");
        assert_eq!(users(b"").count(), 0);
        assert_eq!(users(b"\n\n\n").count(), 0);
    }

    #[test]
    fn group_lists_are_the_primary_gid_then_memberships_in_file_order() {
        let group = b"root:x:0:\n\
            # staff:x:50:app\n\
            users:x:100:bob,app\n\
            adm:x:4:app\n\
            bad:x:nan:app\n\
            again:x:100:app\n\
            app:x:1000:\n\
            video:x:44:application,ap,APP\n\
            audio:x:29: app \n";
        let list = |user: &str, gid: u32| -> Vec<u32> {
            group_list_in(group, user, Gid::from_raw(gid))
                .iter()
                .map(|g| g.as_raw())
                .collect()
        };
        assert_eq!(list("app", 1000), [1000, 100, 4, 29]);
        // The primary gid comes first and only once.
        assert_eq!(list("app", 4), [4, 100, 29]);
        assert_eq!(list("bob", 1001), [1001, 100]);
        assert_eq!(list("nobody", 65534), [65534]);
        assert_eq!(group_list_in(b"", "app", Gid::from_raw(7)), [Gid::from_raw(7)]);
    }

    #[test]
    fn a_missing_file_is_an_empty_database_and_other_errors_are_errors() {
        let tmp = tempfile::tempdir().unwrap();
        assert_eq!(read(&tmp.path().join("passwd")).unwrap(), b"");
        // A directory cannot be read as a file.
        assert!(read(tmp.path()).is_err());
    }

    #[test]
    fn the_real_files_have_root() {
        let root = user_by_name("root").unwrap().unwrap();
        assert_eq!((root.uid.as_raw(), root.gid.as_raw()), (0, 0));
        assert_eq!(user_by_uid(Uid::from_raw(0)).unwrap().unwrap().name, "root");
        assert_eq!(group_by_name("root").unwrap().unwrap().gid.as_raw(), 0);
        assert_eq!(user_by_name("no-such-user-baseinit").unwrap(), None);
        assert_eq!(group_by_name("no-such-group-baseinit").unwrap(), None);
        assert_eq!(
            group_list("no-such-user-baseinit", Gid::from_raw(12345)).unwrap(),
            [Gid::from_raw(12345)]
        );
    }
}
