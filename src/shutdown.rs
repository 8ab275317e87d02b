//! The stop plan as data (how long each step may take, whether a kill-all
//! follows), and the kill-all itself.

use std::collections::HashMap;
use std::fs;
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

use crate::service::{KILL_WAIT, Policy};

/// Who the final kill-all reaches once the services are stopped.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KillAll {
    /// PID 1 of a PID namespace: `kill(-1)`, every process in it.
    Namespace,
    /// Not PID 1 (a child subreaper): only our own remaining children, as
    /// they appear. Never `kill(-1)`, which would reach outside.
    Descendants,
    /// `--no-kill-all-on-exit`.
    Off,
}

impl KillAll {
    pub fn choose(is_pid1: bool, enabled: bool) -> Self {
        match (enabled, is_pid1) {
            (false, _) => KillAll::Off,
            (true, true) => KillAll::Namespace,
            (true, false) => KillAll::Descendants,
        }
    }
}

/// How a shutdown unfolds once the pre-shutdown hooks are done. Services all
/// get their stop signal at once; each is killed at its own stop timeout and
/// its `finish` at its finish timeout; loggers stop after their services.
/// `services_by` bounds the whole service phase even if a process cannot be
/// killed (uninterruptible sleep).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct StopPlan {
    pub started: Instant,
    pub services_by: Instant,
    pub kill_all: KillAll,
    /// From the kill-all's SIGTERM to its SIGKILL.
    pub kill_all_grace: Duration,
    /// What each hook stage (pre, post) may take.
    pub hook_budget: Duration,
    /// `--shutdown-delay`, when this stop waited it (before `started`).
    pub shutdown_delay: Duration,
}

impl StopPlan {
    /// `running`: the policy of every unit still up, and whether it is a
    /// logger (which stops only once its service has). `levels`: the longest
    /// chain of dependencies among them; each level stops after the one
    /// above it, so each gets the slowest service's time.
    pub fn new<'a>(
        now: Instant,
        running: impl IntoIterator<Item = (&'a Policy, bool)>,
        levels: u32,
        kill_all: KillAll,
        kill_all_grace: Duration,
        hook_budget: Duration,
    ) -> Self {
        let (mut services, mut loggers) = (Duration::ZERO, Duration::ZERO);
        for (policy, logger) in running {
            let slowest = if logger { &mut loggers } else { &mut services };
            *slowest = (*slowest).max(Self::worst_case_for(policy));
        }
        StopPlan {
            started: now,
            services_by: now + services * levels.max(1) + loggers,
            kill_all,
            kill_all_grace,
            hook_budget,
            shutdown_delay: Duration::ZERO,
        }
    }

    /// The longest one service can take to stop: stop signal, SIGKILL at the
    /// timeout, the wait for its group to vanish, then `finish` and its kill.
    pub fn worst_case_for(policy: &Policy) -> Duration {
        let finish = if policy.has_finish {
            policy.finish_timeout + KILL_WAIT
        } else {
            Duration::ZERO
        };
        policy.stop_timeout + KILL_WAIT + finish
    }

    /// The longest the whole shutdown can take, hooks included.
    pub fn worst_case(&self) -> Duration {
        let kill_all = match self.kill_all {
            KillAll::Off => Duration::ZERO,
            _ => self.kill_all_grace + KILL_WAIT,
        };
        let hooks = 2 * (self.hook_budget + KILL_WAIT);
        self.shutdown_delay + hooks + (self.services_by - self.started) + kill_all
    }
}

/// The stop budget of the manual (docs/supervision.md), term by term: the
/// longest a stop can take from the signal to the exit, for `baseinit
/// check` to print before anything runs. (`StopPlan` is the same sum for
/// the units that do run; a test holds the two together.)
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Budget {
    pub shutdown_delay: Duration,
    /// What each hook stage (pre, post) may take.
    pub hook_timeout: Duration,
    /// The longest chain of `after`: each level stops after the one above.
    pub levels: u32,
    /// The slowest service's stop ([`StopPlan::worst_case_for`]), and whose.
    pub service: (Duration, String),
    /// The slowest logger's, after its service: zero without loggers.
    pub logger: Duration,
    /// The kill-all's grace; None with `--no-kill-all-on-exit`.
    pub kill_all: Option<Duration>,
}

impl Budget {
    /// Both hook stages, each to its timeout and a kill wait.
    pub fn hooks(&self) -> Duration {
        2 * (self.hook_timeout + KILL_WAIT)
    }

    /// The services, level by level, then the loggers.
    pub fn services(&self) -> Duration {
        self.service.0 * self.levels.max(1) + self.logger
    }

    pub fn kill_all(&self) -> Duration {
        self.kill_all.map_or(Duration::ZERO, |grace| grace + KILL_WAIT)
    }

    pub fn total(&self) -> Duration {
        self.shutdown_delay + self.hooks() + self.services() + self.kill_all()
    }
}

/// The longest chain of `after` among `services` (name, what it comes
/// after), counted in services: 1 with no dependency among them. Names not
/// among them do not count.
pub fn stop_levels<'a>(services: impl IntoIterator<Item = (&'a str, &'a [String])>) -> u32 {
    let up: HashMap<&str, &[String]> = services.into_iter().collect();
    // Depth by iteration: at most one more level per round, and no more
    // rounds than services (a cycle, which loading rejects, cannot loop).
    let mut depth: HashMap<&str, u32> = up.keys().map(|name| (*name, 1)).collect();
    for _ in 0..up.len() {
        let mut changed = false;
        for (name, after) in &up {
            let below = after
                .iter()
                .filter_map(|d| depth.get(d.as_str()))
                .max()
                .copied()
                .unwrap_or(0);
            if below + 1 > depth.get(name).copied().unwrap_or(1) {
                depth.insert(name, below + 1);
                changed = true;
            }
        }
        if !changed {
            break;
        }
    }
    depth.values().max().copied().unwrap_or(1)
}

/// Sends `signal` to what the kill-all reaches; returns how many processes
/// (or, for a namespace, whether any) got it.
pub fn signal_remaining(kill_all: KillAll, signal: Signal) -> usize {
    match kill_all {
        KillAll::Off => 0,
        KillAll::Namespace => usize::from(kill(Pid::from_raw(-1), signal).is_ok()),
        KillAll::Descendants => children().into_iter().filter(|pid| kill(*pid, signal).is_ok()).count(),
    }
}

/// After a bug broke the supervisor: with its state gone, stop every process
/// the kill-all reaches (even with `--no-kill-all-on-exit`: nothing else
/// would stop the services). SIGTERM, reap until none is left or `grace`
/// passed, then SIGKILL and a last bounded reap. Plain syscalls only.
pub fn emergency_stop(kill_all: KillAll, grace: Duration) {
    let reach = match kill_all {
        KillAll::Off if nix::unistd::getpid().as_raw() == 1 => KillAll::Namespace,
        KillAll::Off => KillAll::Descendants,
        reach => reach,
    };
    let wait_all = |limit: Duration| {
        let deadline = Instant::now() + limit;
        while Instant::now() < deadline {
            if crate::reaper::drain().no_children {
                return true;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        false
    };
    signal_remaining(reach, Signal::SIGTERM);
    signal_remaining(reach, Signal::SIGCONT);
    if !wait_all(grace) {
        signal_remaining(reach, Signal::SIGKILL);
        wait_all(KILL_WAIT * 4);
    }
}

/// Our own children, alive or zombie, from /proc.
fn children() -> Vec<Pid> {
    let me = std::process::id();
    // Fast path: /proc/self/task/*/children (CONFIG_PROC_CHILDREN).
    if let Ok(tasks) = fs::read_dir("/proc/self/task") {
        let mut pids = Vec::new();
        let mut readable = true;
        for task in tasks.flatten() {
            match fs::read_to_string(task.path().join("children")) {
                Ok(text) => pids.extend(
                    text.split_whitespace()
                        .filter_map(|p| p.parse().ok())
                        .map(Pid::from_raw),
                ),
                Err(_) => readable = false,
            }
        }
        if readable {
            return pids;
        }
    }
    // Slow path: every process's parent from /proc/PID/stat.
    let Ok(procs) = fs::read_dir("/proc") else {
        return Vec::new();
    };
    procs
        .flatten()
        .filter_map(|entry| {
            let pid: i32 = entry.file_name().to_str()?.parse().ok()?;
            let stat = fs::read_to_string(entry.path().join("stat")).ok()?;
            // The fields after the last ')' are: state, ppid, ...
            let ppid: u32 = stat.rsplit_once(')')?.1.split_whitespace().nth(1)?.parse().ok()?;
            (ppid == me).then(|| Pid::from_raw(pid))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Defaults;
    use crate::service::{Backoff, RestartPolicy};

    fn policy(stop: u64, finish: Option<u64>) -> Policy {
        Policy {
            restart: RestartPolicy::Always,
            backoff: Backoff::DEFAULT,
            stop_signal: Signal::SIGTERM,
            stop_timeout: Duration::from_secs(stop),
            finish_timeout: Duration::from_secs(finish.unwrap_or(0)),
            has_finish: finish.is_some(),
            drain_group: true,
            failure: crate::service::FailurePolicy::DEFAULT,
            run_timeout: None,
        }
    }

    #[test]
    fn the_service_phase_lasts_as_long_as_the_slowest_service_can() {
        let now = Instant::now();
        let policies = [policy(1, None), policy(3, Some(2)), policy(4, None)];
        let plan = StopPlan::new(
            now,
            policies.iter().map(|p| (p, false)),
            1,
            KillAll::Namespace,
            Duration::from_secs(2),
            Duration::ZERO,
        );
        // 3 s stop + kill wait + 2 s finish + kill wait beats 4 s + kill wait.
        assert_eq!(plan.services_by - now, Duration::from_secs(5) + 2 * KILL_WAIT);
        assert_eq!(plan.worst_case(), Duration::from_secs(7) + 5 * KILL_WAIT);
    }

    #[test]
    fn loggers_get_their_time_after_their_services() {
        let now = Instant::now();
        let units = [(policy(3, None), false), (policy(2, None), true)];
        let plan = StopPlan::new(
            now,
            units.iter().map(|(p, l)| (p, *l)),
            1,
            KillAll::Off,
            Duration::ZERO,
            Duration::ZERO,
        );
        assert_eq!(plan.services_by - now, Duration::from_secs(5) + 2 * KILL_WAIT);
    }

    #[test]
    fn each_level_of_a_dependency_chain_gets_its_time() {
        let now = Instant::now();
        let p = policy(2, None);
        let plan = StopPlan::new(now, [(&p, false)], 3, KillAll::Off, Duration::ZERO, Duration::ZERO);
        assert_eq!(plan.services_by - now, 3 * (Duration::from_secs(2) + KILL_WAIT));
    }

    #[test]
    fn nothing_running_means_straight_to_kill_all() {
        let now = Instant::now();
        let plan = StopPlan::new(now, [], 1, KillAll::Off, Duration::from_secs(2), Duration::ZERO);
        assert_eq!(plan.services_by, now);
        assert_eq!(plan.worst_case(), 2 * KILL_WAIT, "only the (empty) hook stages' waits");
    }

    /// A service that ignores its stop signal and has a `finish` that hangs,
    /// hooks that hang in both stages, survivors of the kill-all: with the
    /// defaults, still inside Docker's 10 s.
    #[test]
    fn default_worst_case_fits_inside_dockers_ten_seconds() {
        let d = Defaults::default();
        let p = Policy {
            stop_timeout: d.stop_timeout,
            finish_timeout: d.finish_timeout,
            ..policy(0, Some(0))
        };
        let plan = StopPlan::new(
            Instant::now(),
            [(&p, false)],
            1,
            KillAll::Namespace,
            crate::cli::DEFAULT_KILL_ALL_TIMEOUT,
            crate::cli::DEFAULT_HOOK_TIMEOUT,
        );
        assert_eq!(plan.worst_case(), Duration::from_millis(9250));
        assert!(plan.worst_case() < Duration::from_secs(10), "{:?}", plan.worst_case());
    }

    /// `Budget` (what `check` prints) and `StopPlan` (what a stop plans)
    /// add up the same terms.
    #[test]
    fn the_budget_is_the_stop_plans_sum() {
        let s = Duration::from_secs;
        let (service, logger) = (policy(3, Some(2)), policy(2, None));
        for levels in [1, 3] {
            for kill_all in [KillAll::Namespace, KillAll::Off] {
                for delay in [Duration::ZERO, s(5)] {
                    for with_logger in [false, true] {
                        let now = Instant::now();
                        let mut units = vec![(&service, false)];
                        if with_logger {
                            units.push((&logger, true));
                        }
                        let plan = StopPlan {
                            shutdown_delay: delay,
                            ..StopPlan::new(now, units, levels, kill_all, s(2), s(1))
                        };
                        let budget = Budget {
                            shutdown_delay: delay,
                            hook_timeout: s(1),
                            levels,
                            service: (StopPlan::worst_case_for(&service), "service a".into()),
                            logger: if with_logger {
                                StopPlan::worst_case_for(&logger)
                            } else {
                                Duration::ZERO
                            },
                            kill_all: (kill_all != KillAll::Off).then_some(s(2)),
                        };
                        let case = (levels, kill_all, delay, with_logger);
                        assert_eq!(budget.total(), plan.worst_case(), "{case:?}");
                    }
                }
            }
        }
        let defaults = Budget {
            shutdown_delay: s(5),
            hook_timeout: crate::cli::DEFAULT_HOOK_TIMEOUT,
            levels: 1,
            service: (s(5) + KILL_WAIT + s(1) + KILL_WAIT, "service web".into()),
            logger: Duration::ZERO,
            kill_all: Some(crate::cli::DEFAULT_KILL_ALL_TIMEOUT),
        };
        assert_eq!(defaults.total(), Duration::from_millis(14_250), "the manual's example");
    }

    #[test]
    fn stop_levels_count_the_longest_after_chain() {
        type Services<'a> = &'a [(&'a str, &'a [String])];
        let after = |names: &[&str]| names.iter().map(|n| n.to_string()).collect::<Vec<_>>();
        let (none, db, web) = (after(&[]), after(&["db"]), after(&["web", "db", "gone"]));
        let table: [(Services, u32); 4] = [
            (&[], 1),
            (&[("db", &none), ("web", &none)], 1),
            (&[("db", &none), ("web", &db)], 2),
            (&[("db", &none), ("web", &db), ("proxy", &web)], 3),
        ];
        for (services, levels) in table {
            assert_eq!(stop_levels(services.iter().copied()), levels, "{services:?}");
        }
    }

    #[test]
    fn kill_all_reaches_the_namespace_only_as_pid_1() {
        assert_eq!(KillAll::choose(true, true), KillAll::Namespace);
        assert_eq!(KillAll::choose(false, true), KillAll::Descendants);
        assert_eq!(KillAll::choose(true, false), KillAll::Off);
        assert_eq!(KillAll::choose(false, false), KillAll::Off);
    }
}
