//! A service's resource limits, nice value, umask and OOM score, as its
//! child sets them before its exec: the values ([`Limits`], validated from
//! `[limits]` by `config`), what the plan holds of them (`Prepared`, built
//! in the parent), the child's calls (`apply`), and which of them failed
//! (`Step`, carried by the exec report).
//!
//! `apply` runs in the child beside baseinit (see `spawn`): it is fenced as
//! `child` is, and makes `raw_syscall`'s calls only.
#![deny(clippy::indexing_slicing, clippy::panic, clippy::unwrap_used, clippy::expect_used)]

use nix::libc;

use super::raw_syscall::{self as sys, Errno};

/// A resource of `setrlimit(2)` that `[limits]` sets.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Resource {
    Nofile,
    Nproc,
    Core,
    Memlock,
    As,
    Data,
    Stack,
    Fsize,
    Cpu,
}

impl Resource {
    /// Every one, in the order the child sets them (and the manual lists them).
    pub const ALL: [Resource; 9] = [
        Resource::Nofile,
        Resource::Nproc,
        Resource::Core,
        Resource::Memlock,
        Resource::As,
        Resource::Data,
        Resource::Stack,
        Resource::Fsize,
        Resource::Cpu,
    ];

    /// Its key in `[limits]`.
    pub fn key(self) -> &'static str {
        match self {
            Resource::Nofile => "nofile",
            Resource::Nproc => "nproc",
            Resource::Core => "core",
            Resource::Memlock => "memlock",
            Resource::As => "as",
            Resource::Data => "data",
            Resource::Stack => "stack",
            Resource::Fsize => "fsize",
            Resource::Cpu => "cpu",
        }
    }

    /// Its name in `setrlimit(2)`.
    pub fn name(self) -> &'static str {
        match self {
            Resource::Nofile => "RLIMIT_NOFILE",
            Resource::Nproc => "RLIMIT_NPROC",
            Resource::Core => "RLIMIT_CORE",
            Resource::Memlock => "RLIMIT_MEMLOCK",
            Resource::As => "RLIMIT_AS",
            Resource::Data => "RLIMIT_DATA",
            Resource::Stack => "RLIMIT_STACK",
            Resource::Fsize => "RLIMIT_FSIZE",
            Resource::Cpu => "RLIMIT_CPU",
        }
    }

    /// Counted in bytes (a size like `"64MB"` is accepted), rather than in
    /// files, processes or seconds.
    pub fn is_size(self) -> bool {
        !matches!(self, Resource::Nofile | Resource::Nproc | Resource::Cpu)
    }

    /// The kernel's number, the same on x86_64 and aarch64 (the generic
    /// table; a test checks it against libc's, whose type differs between
    /// glibc and musl).
    fn raw(self) -> u32 {
        match self {
            Resource::Cpu => 0,
            Resource::Fsize => 1,
            Resource::Data => 2,
            Resource::Stack => 3,
            Resource::Core => 4,
            Resource::Nproc => 6,
            Resource::Nofile => 7,
            Resource::Memlock => 8,
            Resource::As => 9,
        }
    }

    fn from_raw(raw: u32) -> Option<Resource> {
        Resource::ALL.into_iter().find(|r| r.raw() == raw)
    }
}

/// The kernel's "unlimited" (RLIM64_INFINITY).
pub const UNLIMITED: u64 = u64::MAX;

/// One resource's soft and hard limit ([`UNLIMITED`] for none).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Rlimit {
    pub resource: Resource,
    pub soft: u64,
    pub hard: u64,
}

/// What a service's child sets before its exec (`[limits]`); all absolute
/// values, checked at load against what baseinit may grant.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Limits {
    pub rlimits: Vec<Rlimit>,
    /// The nice value, -20 to 19 (not an increment, unlike `chpst -n`).
    pub nice: Option<i32>,
    pub umask: Option<u32>,
    /// -1000 to 1000.
    pub oom_score_adj: Option<i32>,
}

impl Limits {
    pub fn is_empty(&self) -> bool {
        self.rlimits.is_empty() && self.nice.is_none() && self.umask.is_none() && self.oom_score_adj.is_none()
    }
}

/// Which of the child's steps failed, in its exec report: 0 for the exec
/// itself and the steps before `[limits]` (the report is then the errno
/// alone, as it always was); else one of `[limits]`'s calls.
pub(super) type Step = u32;
pub(super) const EXEC: Step = 0;
const OOM_SCORE_ADJ: Step = 1;
const NICE: Step = 2;
/// Plus the resource's number.
const RLIMIT: Step = 0x100;

/// What a failed `step` was, for the message; None for [`EXEC`] (or a step
/// this build does not know).
pub(super) fn describe(step: Step) -> Option<String> {
    match step {
        OOM_SCORE_ADJ => Some("limits.oom-score-adj (writing /proc/self/oom_score_adj)".to_owned()),
        NICE => Some("limits.nice (setpriority)".to_owned()),
        _ => {
            let resource = Resource::from_raw(step.checked_sub(RLIMIT)?)?;
            Some(format!("limits.{} (setrlimit {})", resource.key(), resource.name()))
        }
    }
}

/// The file the OOM score is written to: the child's own.
const OOM_SCORE_ADJ_FILE: &std::ffi::CStr = c"/proc/self/oom_score_adj";

/// [`Limits`] as the child's calls take them, built in the parent: the
/// child formats nothing and allocates nothing.
#[derive(Debug)]
pub(super) struct Prepared {
    /// The OOM score as the text written to its file, with its newline.
    oom_score_adj: Option<Vec<u8>>,
    nice: Option<i32>,
    /// Resource number, [soft, hard] as prlimit64 reads them, step.
    rlimits: Vec<(u32, [u64; 2], Step)>,
    umask: Option<u32>,
}

impl Prepared {
    pub(super) fn new(limits: &Limits) -> Prepared {
        Prepared {
            oom_score_adj: limits.oom_score_adj.map(|score| format!("{score}\n").into_bytes()),
            nice: limits.nice,
            rlimits: limits
                .rlimits
                .iter()
                .map(|r| (r.resource.raw(), [r.soft, r.hard], RLIMIT + r.resource.raw()))
                .collect(),
            umask: limits.umask,
        }
    }

    /// Whether the child must start by fork, in memory of its own, rather
    /// than beside baseinit in its memory: the kernel keeps one OOM score
    /// for every process that shares a memory (a vfork child aside), so a
    /// child writing its own in baseinit's memory would set baseinit's (and
    /// that of every child still starting) too.
    pub(super) fn needs_own_memory(&self) -> bool {
        self.oom_score_adj.is_some()
    }
}

/// The child's calls, in this order: the OOM score (its file opened while
/// fds are still free, before a low `nofile`), the nice value, the limits,
/// the umask. The caller makes them before its credentials change (see
/// `child`). The first that fails is returned with its step.
///
/// # Safety
/// Only in a child started by `in_flight` (see `child::exec_child`).
pub(super) unsafe fn apply(prepared: &Prepared) -> Result<(), (Step, Errno)> {
    // SAFETY (whole body): calls on a NUL-terminated path, an fd the call
    // returned, and buffers `prepared` owns.
    unsafe {
        if let Some(text) = &prepared.oom_score_adj {
            let fd = sys::open_write(OOM_SCORE_ADJ_FILE).map_err(|errno| (OOM_SCORE_ADJ, errno))?;
            let written = sys::write(fd, text);
            let _ = sys::close(fd);
            match written {
                Ok(n) if n == text.len() => {}
                Ok(_) => return Err((OOM_SCORE_ADJ, libc::EIO)),
                Err(errno) => return Err((OOM_SCORE_ADJ, errno)),
            }
        }
        if let Some(nice) = prepared.nice {
            sys::set_nice(nice).map_err(|errno| (NICE, errno))?;
        }
        for (resource, limit, step) in &prepared.rlimits {
            sys::set_rlimit(*resource, limit).map_err(|errno| (*step, errno))?;
        }
        if let Some(mask) = prepared.umask {
            sys::set_umask(mask);
        }
    }
    Ok(())
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing, reason = "tests")]
mod tests {
    use super::*;

    #[test]
    fn resource_numbers_are_libcs() {
        for resource in Resource::ALL {
            let libc = match resource {
                Resource::Nofile => libc::RLIMIT_NOFILE,
                Resource::Nproc => libc::RLIMIT_NPROC,
                Resource::Core => libc::RLIMIT_CORE,
                Resource::Memlock => libc::RLIMIT_MEMLOCK,
                Resource::As => libc::RLIMIT_AS,
                Resource::Data => libc::RLIMIT_DATA,
                Resource::Stack => libc::RLIMIT_STACK,
                Resource::Fsize => libc::RLIMIT_FSIZE,
                Resource::Cpu => libc::RLIMIT_CPU,
            };
            #[allow(clippy::unnecessary_cast, reason = "u32 on glibc, c_int on musl")]
            let libc = libc as i64;
            assert_eq!(i64::from(resource.raw()), libc, "{resource:?}");
            assert_eq!(Resource::from_raw(resource.raw()), Some(resource));
        }
    }

    #[test]
    fn each_step_names_its_key() {
        assert_eq!(describe(EXEC), None);
        assert_eq!(
            describe(RLIMIT + 7).as_deref(),
            Some("limits.nofile (setrlimit RLIMIT_NOFILE)")
        );
        assert_eq!(describe(RLIMIT + 5), None, "RLIMIT_RSS is not one of ours");
        assert_eq!(describe(NICE).as_deref(), Some("limits.nice (setpriority)"));
        assert!(describe(OOM_SCORE_ADJ).unwrap().starts_with("limits.oom-score-adj"));
        assert_eq!(describe(99), None);
    }

    #[test]
    fn the_plan_holds_ready_made_values() {
        let limits = Limits {
            rlimits: vec![Rlimit {
                resource: Resource::Core,
                soft: 0,
                hard: UNLIMITED,
            }],
            nice: Some(-3),
            umask: Some(0o027),
            oom_score_adj: Some(-500),
        };
        let prepared = Prepared::new(&limits);
        assert_eq!(prepared.oom_score_adj.as_deref(), Some(&b"-500\n"[..]));
        assert_eq!(prepared.rlimits, [(4, [0, u64::MAX], RLIMIT + 4)]);
        assert!(prepared.needs_own_memory());
        let no_score = Prepared::new(&Limits {
            oom_score_adj: None,
            ..limits
        });
        assert!(!no_score.needs_own_memory(), "shares baseinit's memory as usual");
    }

    use std::ffi::OsString;
    use std::time::{Duration, Instant};

    use nix::sys::wait::{WaitStatus, waitpid};
    use nix::unistd::Pid;

    use crate::container_env::Vars;
    use crate::spawn::{ExecReports, Launch, Redirect, spawn};

    fn launch(argv: &[&str], limits: Limits) -> Launch {
        Launch {
            limits: Some(Box::new(limits)),
            ..Launch::program(argv.iter().map(OsString::from).collect())
        }
    }

    fn proc_field(pid: Pid, file: &str, key: &str) -> Option<String> {
        let text = std::fs::read_to_string(format!("/proc/{pid}/{file}")).ok()?;
        text.lines()
            .find_map(|l| l.strip_prefix(key))
            .map(|v| v.split_whitespace().collect::<Vec<_>>().join(" "))
    }

    /// A real child gets every value, and this process (whose memory a
    /// child shares until its exec) keeps its own OOM score.
    #[test]
    fn a_child_sets_its_limits_before_its_exec() {
        let own_oom = || std::fs::read_to_string("/proc/self/oom_score_adj").unwrap();
        let before = own_oom();
        let score: i32 = before.trim().parse::<i32>().unwrap().max(300);
        let (_, nofile_hard) = nix::sys::resource::getrlimit(nix::sys::resource::Resource::RLIMIT_NOFILE).unwrap();
        let limits = Limits {
            rlimits: vec![
                Rlimit {
                    resource: Resource::Nofile,
                    soft: 50,
                    hard: nofile_hard.min(100),
                },
                Rlimit {
                    resource: Resource::Core,
                    soft: 0,
                    hard: 0,
                },
            ],
            nice: Some(19),
            umask: Some(0o027),
            oom_score_adj: Some(score),
        };
        let reports = ExecReports::new().unwrap();
        let base: Vars = [(OsString::from("PATH"), OsString::from("/usr/bin:/bin"))]
            .into_iter()
            .collect();
        let pid = spawn(
            &launch(&["sleep", "30"], limits),
            &[],
            &base,
            Redirect::default(),
            &reports,
        )
        .unwrap();
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::fs::read(format!("/proc/{pid}/cmdline")).unwrap() != b"sleep\x0030\0" {
            assert!(Instant::now() < deadline, "no exec 10 s after the spawn");
            std::thread::sleep(Duration::from_millis(1));
        }
        let seen = (
            proc_field(pid, "limits", "Max open files"),
            proc_field(pid, "limits", "Max core file size"),
            proc_field(pid, "status", "Umask:"),
            std::fs::read_to_string(format!("/proc/{pid}/oom_score_adj")).unwrap(),
            std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap(),
        );
        nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGKILL).unwrap();
        waitpid(pid, None).unwrap();
        assert_eq!(seen.0, Some(format!("50 {} files", nofile_hard.min(100))));
        assert_eq!(seen.1, Some("0 0 bytes".to_owned()));
        assert_eq!(seen.2.as_deref(), Some("0027"));
        assert_eq!(seen.3.trim(), score.to_string());
        let nice = seen
            .4
            .rsplit_once(')')
            .unwrap()
            .1
            .split_whitespace()
            .nth(16)
            .unwrap()
            .to_owned();
        assert_eq!(nice, "19");
        assert_eq!(own_oom(), before, "this process's OOM score");
    }

    /// A call that fails is a failed start naming the limit, never ignored.
    #[test]
    fn a_failing_call_is_reported_with_its_limit() {
        let cases = [
            (
                Limits {
                    rlimits: vec![Rlimit {
                        resource: Resource::Nproc,
                        soft: 10,
                        hard: 5,
                    }],
                    ..Limits::default()
                },
                "cannot set limits.nproc (setrlimit RLIMIT_NPROC): Invalid argument (os error 22)",
            ),
            (
                Limits {
                    oom_score_adj: Some(5000),
                    ..Limits::default()
                },
                "cannot set limits.oom-score-adj (writing /proc/self/oom_score_adj): Invalid argument (os error 22)",
            ),
        ];
        for (limits, message) in cases {
            let mut reports = ExecReports::new().unwrap();
            let pid = spawn(
                &launch(&["/bin/true"], limits),
                &[],
                &Vars::new(),
                Redirect::default(),
                &reports,
            )
            .unwrap();
            assert_eq!(waitpid(pid, None).unwrap(), WaitStatus::Exited(pid, 127));
            reports.collect();
            let error = reports.take(pid).expect("a report");
            assert_eq!(error.to_string(), message);
            assert_eq!(error.kind(), std::io::ErrorKind::InvalidInput);
        }
    }
}
