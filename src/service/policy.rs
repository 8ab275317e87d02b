//! What a service's lifecycle machine is told of it, fixed at load time:
//! when to restart, how to back off, when a crash loop fails it, how to stop.

use std::time::Duration;

use nix::sys::signal::Signal;

/// When a service that exited is started again.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RestartPolicy {
    /// Whatever the exit status (runit's behaviour).
    Always,
    /// Unless it exited with code 0.
    OnFailure,
    /// Never: one run, then down.
    Never,
}

impl<'de> serde::Deserialize<'de> for RestartPolicy {
    /// By hand, for a message that names the choices whatever was written
    /// (serde's derive says only "wanted string or table" for a number).
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct V;
        impl serde::de::Visitor<'_> for V {
            type Value = RestartPolicy;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("one of \"always\", \"on-failure\", \"never\"")
            }
            fn visit_str<E: serde::de::Error>(self, s: &str) -> Result<RestartPolicy, E> {
                match s {
                    "always" => Ok(RestartPolicy::Always),
                    "on-failure" => Ok(RestartPolicy::OnFailure),
                    "never" => Ok(RestartPolicy::Never),
                    _ => Err(E::invalid_value(serde::de::Unexpected::Str(s), &self)),
                }
            }
        }
        deserializer.deserialize_any(V)
    }
}

/// How long a run must have lasted for its death, the first in a row, to be
/// restarted at once (runit and s6 use the same second).
pub const WAS_UP: Duration = Duration::from_secs(1);

/// Exponential backoff between quick repeated deaths.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Backoff {
    /// Delay after the first quick death.
    pub initial: Duration,
    /// The delay doubles per quick death up to this.
    pub max: Duration,
    /// A run at least this long is not a quick death: the next restart is
    /// immediate and the doubling starts over.
    pub reset_after: Duration,
}

impl Backoff {
    pub const DEFAULT: Backoff = Backoff {
        initial: Duration::from_millis(100),
        max: Duration::from_secs(10),
        reset_after: Duration::from_secs(10),
    };

    /// The delay before restart number `quick_deaths` in a row (1-based).
    pub fn delay(&self, quick_deaths: u32) -> Duration {
        let doublings = quick_deaths.saturating_sub(1).min(31);
        self.initial.saturating_mul(1u32 << doublings).min(self.max)
    }
}

/// What happens when a service crash-loops: more than `max_restarts`
/// automatic restarts within `window`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FailurePolicy {
    pub max_restarts: u32,
    pub window: Duration,
    pub action: FailureAction,
}

/// A failed service's fate.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FailureAction {
    /// Stay failed, then try again after this long, with a fresh count.
    RestartLater(Duration),
    /// Stay down until an operator brings it up (`sv up`).
    Stop,
    /// Shut the container down (the supervisor does, on Action::Failed).
    Exit,
}

impl FailurePolicy {
    /// 10 restarts in a minute: with the default backoff a crash loop gets
    /// there in about 43 s (0.1 + 0.2 + … + 10 s), so a service that keeps
    /// crashing is marked failed within a minute, and retried every minute.
    pub const DEFAULT_RETRY_AFTER: Duration = Duration::from_secs(60);
    pub const DEFAULT: FailurePolicy = FailurePolicy {
        max_restarts: 10,
        window: Duration::from_secs(60),
        action: FailureAction::RestartLater(Self::DEFAULT_RETRY_AFTER),
    };
}

/// What the machine needs to know about its service, fixed at load time.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Policy {
    pub restart: RestartPolicy,
    pub backoff: Backoff,
    pub stop_signal: Signal,
    /// From the stop signal to SIGKILL of the process group.
    pub stop_timeout: Duration,
    /// From the start of `finish` to its SIGKILL.
    pub finish_timeout: Duration,
    pub has_finish: bool,
    /// Whether whatever is left of the process group when `run` exits is
    /// stopped before the next step. Startup scripts may leave daemons behind
    /// on purpose, so they do not drain.
    pub drain_group: bool,
    pub failure: FailurePolicy,
    /// A run still going after this long is stopped (startup scripts' timeout).
    pub run_timeout: Option<Duration>,
}
