//! `user` and `group` of `service.toml`: who a service runs as, looked up
//! in /etc/passwd and /etc/group.

use nix::unistd::{Gid, Uid};
use toml::Spanned;

use crate::accounts::{self, User};
use crate::privileges::{Privileges, Refused, Switch};
use crate::spawn::Credentials;

use super::ConfigError;

pub(super) fn credentials(
    user: Option<&Spanned<String>>,
    group: Option<&Spanned<String>>,
    at: &dyn Fn(usize, String) -> ConfigError,
    errors: &mut Vec<ConfigError>,
) -> Option<Credentials> {
    if user.is_none() && group.is_none() {
        return None;
    }
    let passwd = match user {
        None => None,
        Some(user) => match lookup_user(user.get_ref()) {
            Ok(found) => Some((user, found)),
            Err(message) => {
                errors.push(at(user.span().start, message));
                return None;
            }
        },
    };
    let me = Privileges::current();
    let gid = match group {
        Some(group) => match lookup_group(group.get_ref()) {
            Ok(gid) => gid,
            Err(message) => {
                errors.push(at(group.span().start, message));
                return None;
            }
        },
        None => match &passwd {
            Some((_, Ok(user))) => user.gid,
            Some((spanned, Err(uid))) => match me.default_gid() {
                // OpenShift's random uid: baseinit's own gid (0 there).
                Some(gid) => gid,
                None => {
                    errors.push(at(
                        spanned.span().start,
                        format!("uid {uid} has no passwd entry, so it has no group: set `group` too"),
                    ));
                    return None;
                }
            },
            None => return None,
        },
    };
    let (uid, groups, identity) = match passwd {
        Some((_, Ok(user))) => {
            // Not fatal: an unreadable /etc/group leaves the primary group
            // alone, as getgrouplist did, rather than failing the service.
            let groups = accounts::group_list(&user.name, gid).unwrap_or_else(|_| vec![gid]);
            (user.uid, groups, Some((user.name, user.dir)))
        }
        Some((_, Err(uid))) => (uid, vec![gid], None),
        // Only `group`: keep the uid, change the group.
        None => (me.uid, vec![gid], None),
    };
    match me.switch(uid, gid, groups) {
        Ok(Switch::Keep) => Some(Credentials {
            uid: me.uid,
            gid: me.gid,
            groups: None,
            identity,
        }),
        Ok(Switch::To { uid, gid, groups }) => Some(Credentials {
            uid,
            gid,
            groups,
            identity,
        }),
        Err(refused) => {
            // At `user` when the uid is the problem, else at `group`.
            let span = match (refused, user, group) {
                (Refused::Uid { .. }, Some(user), _) => user.span(),
                (_, _, Some(group)) => group.span(),
                (_, Some(user), None) => user.span(),
                (_, None, None) => return None,
            };
            let fix = match refused {
                Refused::Uid { .. } => "leave `user` out, or run baseinit as root",
                Refused::Gid { have, .. } => &format!("set `group = \"{have}\"`, or run baseinit as root"),
            };
            errors.push(at(
                span.start,
                format!("cannot run as that user: baseinit is {refused} ({fix})"),
            ));
            None
        }
    }
}

/// A user by name or number: Ok(Ok(entry)), Ok(Err(uid)) for a number with no
/// passwd entry, Err(message) for an unknown name.
fn lookup_user(user: &str) -> Result<Result<User, Uid>, String> {
    if let Ok(n) = user.parse::<u32>() {
        let uid = Uid::from_raw(n);
        return Ok(accounts::user_by_uid(uid).ok().flatten().ok_or(uid));
    }
    match accounts::user_by_name(user) {
        Ok(Some(entry)) => Ok(Ok(entry)),
        Ok(None) => Err(format!("unknown user `{user}` (not in the passwd database)")),
        Err(e) => Err(format!("cannot look up user `{user}`: {e}")),
    }
}

fn lookup_group(group: &str) -> Result<Gid, String> {
    if let Ok(n) = group.parse::<u32>() {
        return Ok(Gid::from_raw(n));
    }
    match accounts::group_by_name(group) {
        Ok(Some(entry)) => Ok(entry.gid),
        Ok(None) => Err(format!("unknown group `{group}` (not in the group database)")),
        Err(e) => Err(format!("cannot look up group `{group}`: {e}")),
    }
}
