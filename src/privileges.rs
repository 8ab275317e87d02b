//! What baseinit may change about a child's user and groups: its own ids,
//! and whether it holds CAP_SETUID and CAP_SETGID.
//!
//! Kubernetes' restricted profile, OpenShift's random uids and `docker run
//! --user … --cap-drop ALL` run baseinit as some uid without either
//! capability. A child can then run only as baseinit's own uid and gid, and
//! keeps baseinit's supplementary groups (`setgroups` needs CAP_SETGID, even
//! to set the same list). So a service asking for those very ids starts
//! with no credential call at all, and one asking for others is refused when
//! its definition is loaded, with the reason, instead of failing each start.

use std::sync::OnceLock;

use nix::unistd::{Gid, Uid};

/// baseinit's own ids and what it may change.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Privileges {
    pub uid: Uid,
    pub gid: Gid,
    /// CAP_SETUID: may become another uid.
    pub set_uid: bool,
    /// CAP_SETGID: may become another gid and set the supplementary groups.
    pub set_gid: bool,
}

/// The changes a child makes to become what a service asks for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Switch {
    /// It already is: nothing to call.
    Keep,
    /// setgroups (when `groups` is some), setgid, setuid.
    To {
        uid: Uid,
        gid: Gid,
        groups: Option<Vec<Gid>>,
    },
}

/// Why a switch cannot be made: what the process is, what was asked.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Refused {
    Uid { have: Uid, want: Uid },
    Gid { have: Gid, want: Gid },
}

impl std::fmt::Display for Refused {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Refused::Uid { have, want } => write!(
                f,
                "running as uid {have} without CAP_SETUID, it can use uid {have} only, not {want}"
            ),
            Refused::Gid { have, want } => write!(
                f,
                "running as gid {have} without CAP_SETGID, it can use gid {have} only, not {want}"
            ),
        }
    }
}

const CAP_SETGID: u32 = 6;
const CAP_SETUID: u32 = 7;
/// May lower a nice value (`[limits] nice`).
pub const CAP_SYS_NICE: u32 = 23;
/// May raise a hard resource limit and lower an OOM score (`[limits]`).
pub const CAP_SYS_RESOURCE: u32 = 24;

/// Whether this process holds capability `cap` in its effective set, read
/// once; without /proc, root is taken to hold it, as in
/// [`Privileges::current`].
pub fn holds(cap: u32) -> bool {
    static EFFECTIVE: OnceLock<Option<u64>> = OnceLock::new();
    let effective = *EFFECTIVE.get_or_init(|| {
        std::fs::read_to_string("/proc/self/status")
            .ok()
            .and_then(|status| capabilities(&status))
    });
    effective.map_or(Uid::effective().is_root(), |set| set & (1 << cap) != 0)
}

impl Privileges {
    /// This process's, read once: baseinit never changes its own.
    pub fn current() -> Privileges {
        static CURRENT: OnceLock<Privileges> = OnceLock::new();
        *CURRENT.get_or_init(|| {
            let uid = Uid::effective();
            let effective = std::fs::read_to_string("/proc/self/status")
                .ok()
                .and_then(|status| capabilities(&status));
            // Without /proc: root is taken to hold them, as it usually does.
            let has = |cap: u32| effective.map_or(uid.is_root(), |set| set & (1 << cap) != 0);
            Privileges {
                uid,
                gid: Gid::effective(),
                set_uid: has(CAP_SETUID),
                set_gid: has(CAP_SETGID),
            }
        })
    }

    /// How a child becomes `uid` and `gid` with the supplementary `groups`,
    /// or why it cannot.
    pub fn switch(&self, uid: Uid, gid: Gid, groups: Vec<Gid>) -> Result<Switch, Refused> {
        if uid != self.uid && !self.set_uid {
            return Err(Refused::Uid {
                have: self.uid,
                want: uid,
            });
        }
        if gid != self.gid && !self.set_gid {
            return Err(Refused::Gid {
                have: self.gid,
                want: gid,
            });
        }
        if !self.set_gid {
            // Its own gid and the groups it has: the child keeps them.
            return Ok(if uid == self.uid {
                Switch::Keep
            } else {
                Switch::To { uid, gid, groups: None }
            });
        }
        Ok(Switch::To {
            uid,
            gid,
            groups: Some(groups),
        })
    }

    /// The gid a service gets when `user` is a uid without a passwd entry
    /// and `group` is not set: baseinit's own when it cannot choose
    /// (OpenShift: a random uid, gid 0), none otherwise.
    pub fn default_gid(&self) -> Option<Gid> {
        (!self.set_gid).then_some(self.gid)
    }
}

/// The effective capability set from /proc/self/status (`CapEff:` in hex).
fn capabilities(status: &str) -> Option<u64> {
    let line = status.lines().find_map(|line| line.strip_prefix("CapEff:"))?;
    u64::from_str_radix(line.trim(), 16).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ids(uid: u32, gid: u32) -> (Uid, Gid) {
        (Uid::from_raw(uid), Gid::from_raw(gid))
    }

    #[test]
    fn switches_by_what_baseinit_may_do() {
        let (me, my_group) = ids(1000780000, 0);
        let unprivileged = Privileges {
            uid: me,
            gid: my_group,
            set_uid: false,
            set_gid: false,
        };
        let root = Privileges {
            uid: Uid::from_raw(0),
            gid: Gid::from_raw(0),
            set_uid: true,
            set_gid: true,
        };
        let groups = |g: &[u32]| g.iter().map(|&g| Gid::from_raw(g)).collect::<Vec<_>>();
        // Its own ids, without capabilities: no call at all.
        assert_eq!(unprivileged.switch(me, my_group, groups(&[0, 5])), Ok(Switch::Keep));
        // Another uid, or another gid: refused, saying why.
        let other = unprivileged
            .switch(Uid::from_raw(33), my_group, groups(&[0]))
            .unwrap_err();
        assert_eq!(
            other.to_string(),
            "running as uid 1000780000 without CAP_SETUID, it can use uid 1000780000 only, not 33"
        );
        let other = unprivileged.switch(me, Gid::from_raw(33), groups(&[33])).unwrap_err();
        assert_eq!(
            other,
            Refused::Gid {
                have: my_group,
                want: Gid::from_raw(33)
            }
        );
        // Root with both: everything, groups included.
        assert_eq!(
            root.switch(Uid::from_raw(33), Gid::from_raw(33), groups(&[33, 4])),
            Ok(Switch::To {
                uid: Uid::from_raw(33),
                gid: Gid::from_raw(33),
                groups: Some(groups(&[33, 4]))
            })
        );
        // CAP_SETUID alone: another uid, its own gid and groups.
        let setuid_only = Privileges {
            set_uid: true,
            ..unprivileged
        };
        assert_eq!(
            setuid_only.switch(Uid::from_raw(33), my_group, groups(&[33])),
            Ok(Switch::To {
                uid: Uid::from_raw(33),
                gid: my_group,
                groups: None
            })
        );
        // Root without CAP_SETUID (--cap-drop SETUID) keeps only its uid.
        let no_setuid = Privileges { set_uid: false, ..root };
        assert!(no_setuid.switch(Uid::from_raw(33), Gid::from_raw(0), vec![]).is_err());
        assert!(matches!(
            no_setuid.switch(Uid::from_raw(0), Gid::from_raw(33), groups(&[33])),
            Ok(Switch::To { .. })
        ));
    }

    #[test]
    fn a_numbered_user_gets_baseinits_gid_only_when_it_cannot_choose() {
        let unprivileged = Privileges {
            uid: Uid::from_raw(1000780000),
            gid: Gid::from_raw(0),
            set_uid: false,
            set_gid: false,
        };
        assert_eq!(unprivileged.default_gid(), Some(Gid::from_raw(0)));
        let root = Privileges {
            set_uid: true,
            set_gid: true,
            ..unprivileged
        };
        assert_eq!(root.default_gid(), None);
    }

    #[test]
    fn reads_the_effective_set() {
        let status = "Name:\tbaseinit\nCapInh:\t0000000000000000\nCapEff:\t00000000000000c0\n";
        let set = capabilities(status).unwrap();
        assert!(set & (1 << CAP_SETUID) != 0 && set & (1 << CAP_SETGID) != 0);
        assert_eq!(capabilities("CapEff:\t0000000000000000\n"), Some(0));
        assert_eq!(capabilities("Name:\tx\n"), None);
    }
}
