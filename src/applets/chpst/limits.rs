//! chpst's and softlimit's resource limits: which soft limit each option
//! sets, in runit's order, capped at the hard limit as runit caps it.

use nix::sys::resource::{Resource, getrlimit, setrlimit};

use super::Fatal;

/// Not asked for (runit's -2).
pub const UNSET: i64 = -2;
/// The hard limit (softlimit's `=`; runit's -1).
pub const HARD: i64 = -1;

/// The soft limits to set, as runit keeps them: C longs, where [`UNSET`]
/// and anything below it leave the limit alone and a negative one (a
/// number past `i64::MAX`, or `=`) means the hard limit.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    pub data: i64,
    pub stack: i64,
    pub memlock: i64,
    pub address_space: i64,
    pub nofile: i64,
    pub nproc: i64,
    pub fsize: i64,
    pub core: i64,
    pub rss: i64,
    pub cpu: i64,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            data: UNSET,
            stack: UNSET,
            memlock: UNSET,
            address_space: UNSET,
            nofile: UNSET,
            nproc: UNSET,
            fsize: UNSET,
            core: UNSET,
            rss: UNSET,
            cpu: UNSET,
        }
    }
}

impl Limits {
    /// `-m`: the data segment, the stack, locked memory and the address space.
    pub fn memory(&mut self, bytes: i64) {
        self.data = bytes;
        self.stack = bytes;
        self.memlock = bytes;
        self.address_space = bytes;
    }

    /// Each limit with its resource, in the order runit sets them.
    fn in_order(&self) -> [(Resource, &'static str, i64); 10] {
        [
            (Resource::RLIMIT_DATA, "RLIMIT_DATA", self.data),
            (Resource::RLIMIT_STACK, "RLIMIT_STACK", self.stack),
            (Resource::RLIMIT_MEMLOCK, "RLIMIT_MEMLOCK", self.memlock),
            (Resource::RLIMIT_AS, "RLIMIT_AS", self.address_space),
            (Resource::RLIMIT_NOFILE, "RLIMIT_NOFILE", self.nofile),
            (Resource::RLIMIT_NPROC, "RLIMIT_NPROC", self.nproc),
            (Resource::RLIMIT_FSIZE, "RLIMIT_FSIZE", self.fsize),
            (Resource::RLIMIT_CORE, "RLIMIT_CORE", self.core),
            (Resource::RLIMIT_RSS, "RLIMIT_RSS", self.rss),
            (Resource::RLIMIT_CPU, "RLIMIT_CPU", self.cpu),
        ]
    }

    /// Sets every soft limit asked for; the hard limits stay.
    pub fn apply(&self) -> Result<(), Fatal> {
        for (resource, name, requested) in self.in_order() {
            if requested < HARD {
                continue;
            }
            // runit says `unable to setrlimit()`; this names the limit.
            let (_, hard) = getrlimit(resource).map_err(|e| Fatal::sys(format!("unable to getrlimit({name})"), e))?;
            setrlimit(resource, soft(requested, hard), hard)
                .map_err(|e| Fatal::sys(format!("unable to setrlimit({name})"), e))?;
        }
        Ok(())
    }
}

/// The soft limit for `requested` under `hard`: runit silently takes the
/// hard limit for anything above it (or negative), never failing.
pub fn soft(requested: i64, hard: u64) -> u64 {
    match u64::try_from(requested) {
        Ok(wanted) if wanted <= hard => wanted,
        _ => hard,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn soft_limits_are_capped_at_the_hard_one() {
        assert_eq!(soft(10, 100), 10);
        assert_eq!(soft(100, 100), 100);
        assert_eq!(soft(101, 100), 100);
        assert_eq!(soft(0, 100), 0);
        assert_eq!(soft(HARD, 100), 100);
        assert_eq!(soft(i64::MIN, 100), 100);
        assert_eq!(soft(5, u64::MAX), 5);
    }

    #[test]
    fn memory_sets_four_limits() {
        let mut limits = Limits::default();
        limits.memory(7);
        let set: Vec<_> = limits
            .in_order()
            .iter()
            .filter(|(_, _, l)| *l != UNSET)
            .map(|(_, name, _)| *name)
            .collect();
        assert_eq!(set, ["RLIMIT_DATA", "RLIMIT_STACK", "RLIMIT_MEMLOCK", "RLIMIT_AS"]);
    }

    #[test]
    fn unset_limits_are_left_alone() {
        // Nothing to set: no system call, no error.
        assert!(Limits::default().apply().is_ok());
        let below = Limits {
            nofile: i64::MIN,
            ..Limits::default()
        };
        assert!(below.apply().is_ok());
    }
}
