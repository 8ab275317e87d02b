//! chpst's `user[:group…]` and `:uid:gid…` arguments: what ids they name,
//! read from /etc/passwd and /etc/group (never NSS: [`crate::accounts`]),
//! and the switch to them.

use std::io;

use nix::unistd::{Gid, Uid};

use super::Fatal;
use super::args::scan_ulong;

/// runit's limit on the groups of one `-u`.
const MAX_GROUPS: usize = 60;

/// What an account argument names.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Ids {
    pub uid: Uid,
    /// The gid first, then the other groups; never empty.
    pub gids: Vec<Gid>,
}

/// Why an account argument names nobody.
#[derive(Debug)]
pub enum Unknown {
    /// `:uid:gid…` that does not parse.
    Invalid,
    /// No such user or group.
    Missing,
    /// /etc/passwd or /etc/group could not be read.
    Io(io::Error),
}

/// The user and group database, so that the parsing can be tested.
pub trait Database {
    /// A user's uid and gid.
    fn user(&self, name: &[u8]) -> io::Result<Option<(Uid, Gid)>>;
    fn group(&self, name: &[u8]) -> io::Result<Option<Gid>>;
}

/// /etc/passwd and /etc/group.
pub struct Files;

impl Database for Files {
    fn user(&self, name: &[u8]) -> io::Result<Option<(Uid, Gid)>> {
        let Ok(name) = std::str::from_utf8(name) else {
            return Ok(None);
        };
        Ok(crate::accounts::user_by_name(name)?.map(|user| (user.uid, user.gid)))
    }

    fn group(&self, name: &[u8]) -> io::Result<Option<Gid>> {
        let Ok(name) = std::str::from_utf8(name) else {
            return Ok(None);
        };
        Ok(crate::accounts::group_by_name(name)?.map(|group| group.gid))
    }
}

/// chpst's `-u`/`-U` argument (runit's uidgids_get): `:uid:gid[:gid…]`
/// numerically, or `user` (its passwd gid, and no other group), or
/// `user:group[:group…]` (those groups, the first one the gid). At most 60
/// groups are taken; runit ignores the rest.
pub fn extended(spec: &[u8], db: &dyn Database) -> Result<Ids, Unknown> {
    if let Some(numbers) = spec.strip_prefix(b":") {
        return numeric(numbers).ok_or(Unknown::Invalid);
    }
    let (user, groups) = match spec.iter().position(|&b| b == b':') {
        Some(colon) => (&spec[..colon], Some(&spec[colon + 1..])),
        None => (spec, None),
    };
    let (uid, gid) = db.user(user).map_err(Unknown::Io)?.ok_or(Unknown::Missing)?;
    let Some(groups) = groups else {
        return Ok(Ids { uid, gids: vec![gid] });
    };
    let mut gids = Vec::new();
    for name in groups.split(|&b| b == b':').take(MAX_GROUPS) {
        gids.push(db.group(name).map_err(Unknown::Io)?.ok_or(Unknown::Missing)?);
    }
    Ok(Ids { uid, gids })
}

/// The daemontools names' account (runit's uidgid_get): a user name only,
/// with its passwd gid as the one group.
pub fn plain(name: &[u8], db: &dyn Database) -> Result<Ids, Unknown> {
    let (uid, gid) = db.user(name).map_err(Unknown::Io)?.ok_or(Unknown::Missing)?;
    Ok(Ids { uid, gids: vec![gid] })
}

/// `uid:gid[:gid…]` (runit's uidgids_set): each number as scan_ulong reads
/// it, so an empty one is 0 (`:1000:` is uid 1000, gid 0); at most 60 gids.
fn numeric(spec: &[u8]) -> Option<Ids> {
    let (uid, used) = scan_ulong(spec);
    let mut rest = spec[used..].strip_prefix(b":")?;
    let mut gids = Vec::new();
    for _ in 0..MAX_GROUPS {
        let (gid, used) = scan_ulong(rest);
        rest = &rest[used..];
        gids.push(Gid::from_raw(gid as u32));
        match rest.strip_prefix(b":") {
            Some(after) => rest = after,
            None => break,
        }
    }
    rest.is_empty().then_some(Ids {
        uid: Uid::from_raw(uid as u32),
        gids,
    })
}

/// The message for an account argument that names nobody: runit's words
/// (`extended`: chpst's -u/-U; else the daemontools names').
pub fn unknown(spec: &[u8], extended: bool, why: Unknown) -> Fatal {
    let shown = String::from_utf8_lossy(spec);
    match (why, extended) {
        (Unknown::Invalid, _) => Fatal(format!("invalid uid/gids: {}", shown.get(1..).unwrap_or_default())),
        (Unknown::Io(e), true) => Fatal::io("unable to get password/group file entry", &e),
        (Unknown::Io(e), false) => Fatal::io("unable to get password file entry", &e),
        (Unknown::Missing, true) => Fatal(format!("unknown user/group: {shown}")),
        (Unknown::Missing, false) => Fatal(format!("unknown account: {shown}")),
    }
}

/// Becomes `ids`: the groups, the gid, then the uid, as runit does.
///
/// Unlike runit, a process that already is exactly `ids` (all its uids and
/// gids, the same groups) changes nothing: a container run as that user
/// without CAP_SETGID could not even set the groups it has.
pub fn switch(ids: &Ids) -> Result<(), Fatal> {
    if already(ids) {
        return Ok(());
    }
    nix::unistd::setgroups(&ids.gids).map_err(|e| Fatal::sys("unable to setgroups", e))?;
    let gid = ids.gids.first().copied().unwrap_or(Gid::from_raw(0));
    nix::unistd::setgid(gid).map_err(|e| Fatal::sys("unable to setgid", e))?;
    nix::unistd::setuid(ids.uid).map_err(|e| Fatal::sys("unable to setuid", e))
}

/// Whether this process already has exactly `ids`.
fn already(ids: &Ids) -> bool {
    let (Ok(uids), Ok(gids), Ok(groups), Some(&gid)) = (
        nix::unistd::getresuid(),
        nix::unistd::getresgid(),
        nix::unistd::getgroups(),
        ids.gids.first(),
    ) else {
        return false;
    };
    let sorted = |list: &[Gid]| {
        let mut list: Vec<u32> = list.iter().map(|g| g.as_raw()).collect();
        list.sort_unstable();
        list.dedup();
        list
    };
    [uids.real, uids.effective, uids.saved].iter().all(|&u| u == ids.uid)
        && [gids.real, gids.effective, gids.saved].iter().all(|&g| g == gid)
        && sorted(&groups) == sorted(&ids.gids)
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Fake;

    impl Database for Fake {
        fn user(&self, name: &[u8]) -> io::Result<Option<(Uid, Gid)>> {
            Ok(match name {
                b"www" => Some((Uid::from_raw(33), Gid::from_raw(34))),
                b"broken" => return Err(io::Error::from_raw_os_error(nix::libc::EIO)),
                _ => None,
            })
        }

        fn group(&self, name: &[u8]) -> io::Result<Option<Gid>> {
            Ok(match name {
                b"adm" => Some(Gid::from_raw(4)),
                b"video" => Some(Gid::from_raw(44)),
                _ => None,
            })
        }
    }

    fn ids(uid: u32, gids: &[u32]) -> Ids {
        Ids {
            uid: Uid::from_raw(uid),
            gids: gids.iter().map(|&g| Gid::from_raw(g)).collect(),
        }
    }

    fn ext(spec: &str) -> Result<Ids, String> {
        extended(spec.as_bytes(), &Fake).map_err(|why| unknown(spec.as_bytes(), true, why).0)
    }

    #[test]
    fn users_and_groups_by_name() {
        assert_eq!(ext("www"), Ok(ids(33, &[34])));
        assert_eq!(ext("www:adm"), Ok(ids(33, &[4])));
        assert_eq!(ext("www:video:adm"), Ok(ids(33, &[44, 4])));
        assert_eq!(ext("nobody").unwrap_err(), "unknown user/group: nobody");
        assert_eq!(ext("www:nope").unwrap_err(), "unknown user/group: www:nope");
        assert_eq!(ext("www:").unwrap_err(), "unknown user/group: www:");
        assert_eq!(ext("www:adm:").unwrap_err(), "unknown user/group: www:adm:");
        assert_eq!(
            ext("broken").unwrap_err(),
            "unable to get password/group file entry: input/output error"
        );
        // 60 groups at most; the rest are not even looked up.
        let many = format!("www{}:nope", ":adm".repeat(60));
        assert_eq!(ext(&many).unwrap().gids.len(), 60);
    }

    #[test]
    fn numeric_ids() {
        assert_eq!(ext(":1000:1000"), Ok(ids(1000, &[1000])));
        assert_eq!(ext(":0:5:6:7"), Ok(ids(0, &[5, 6, 7])));
        // Empty numbers are 0, as runit's scan_ulong reads them.
        assert_eq!(ext(":1000:"), Ok(ids(1000, &[0])));
        assert_eq!(ext("::5"), Ok(ids(0, &[5])));
        assert_eq!(ext(":5:6:"), Ok(ids(5, &[6, 0])));
        // Truncated to 32 bits, as the C casts do.
        assert_eq!(ext(":4294967296:4294967297"), Ok(ids(0, &[1])));
        for bad in [":65534", ":", ":x:1", ":1:x", ":1:2x", ":1x:2"] {
            assert_eq!(
                ext(bad).unwrap_err(),
                format!("invalid uid/gids: {}", &bad[1..]),
                "{bad}"
            );
        }
        let sixty = format!(":1{}", ":2".repeat(60));
        assert_eq!(ext(&sixty).unwrap().gids.len(), 60);
        assert!(ext(&format!("{sixty}:")).is_ok());
        assert!(ext(&format!("{sixty}:3")).is_err());
    }

    #[test]
    fn the_daemontools_names_take_a_user_only() {
        assert_eq!(plain(b"www", &Fake).unwrap(), ids(33, &[34]));
        let why = plain(b"www:adm", &Fake).unwrap_err();
        assert_eq!(unknown(b"www:adm", false, why).0, "unknown account: www:adm");
        let why = plain(b"broken", &Fake).unwrap_err();
        assert_eq!(
            unknown(b"broken", false, why).0,
            "unable to get password file entry: input/output error"
        );
    }

    #[test]
    fn the_real_files_have_root() {
        assert_eq!(extended(b"root", &Files).unwrap(), ids(0, &[0]));
        assert_eq!(extended(b"root:root", &Files).unwrap(), ids(0, &[0]));
        assert!(matches!(extended(b"\xff", &Files), Err(Unknown::Missing)));
    }
}
