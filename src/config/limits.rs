//! `[limits]` in service.toml: the resource limits, nice value, umask and
//! OOM score of a service's `run` and `finish`, checked at load against
//! what baseinit itself has and may grant ([`Host`]), so that what would
//! fail at every start is an error with its line instead (never a silent
//! cap, as chpst's).

use std::fmt;
use std::sync::OnceLock;

use serde::Deserialize;
use serde::de::{self, Deserializer, IntoDeserializer, MapAccess, Visitor};
use toml::Spanned;

use super::ConfigError;
use super::raw::SizeValue;
use crate::privileges::{self, CAP_SYS_NICE, CAP_SYS_RESOURCE};
use crate::spawn::{Limits, Resource, Rlimit, UNLIMITED};

/// `[limits]` as written.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct RawLimits {
    pub nofile: Option<Spanned<RawLimit>>,
    pub nproc: Option<Spanned<RawLimit>>,
    pub core: Option<Spanned<RawLimit>>,
    pub memlock: Option<Spanned<RawLimit>>,
    #[serde(rename = "as")]
    pub address_space: Option<Spanned<RawLimit>>,
    pub data: Option<Spanned<RawLimit>>,
    pub stack: Option<Spanned<RawLimit>>,
    pub fsize: Option<Spanned<RawLimit>>,
    pub cpu: Option<Spanned<RawLimit>>,
    pub nice: Option<Spanned<i64>>,
    pub umask: Option<Spanned<UmaskValue>>,
    pub oom_score_adj: Option<Spanned<i64>>,
}

impl RawLimits {
    fn get(&self, resource: Resource) -> Option<&Spanned<RawLimit>> {
        match resource {
            Resource::Nofile => self.nofile.as_ref(),
            Resource::Nproc => self.nproc.as_ref(),
            Resource::Core => self.core.as_ref(),
            Resource::Memlock => self.memlock.as_ref(),
            Resource::As => self.address_space.as_ref(),
            Resource::Data => self.data.as_ref(),
            Resource::Stack => self.stack.as_ref(),
            Resource::Fsize => self.fsize.as_ref(),
            Resource::Cpu => self.cpu.as_ref(),
        }
    }
}

/// One limit as written: a value for both the soft and the hard limit, or
/// `{ soft = …, hard = … }` with either or both.
#[derive(Debug)]
pub enum RawLimit {
    Both(Amount),
    Pair {
        soft: Option<Spanned<Amount>>,
        hard: Option<Spanned<Amount>>,
    },
}

/// A limit's value as written: a number, or a string (`"unlimited"`, a
/// size), read by [`amount`] for its resource.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Amount {
    Number(i64),
    Text(String),
}

const EXPECTED_LIMIT: &str = "a number, \"unlimited\", a size like \"64MB\", or { soft = …, hard = … }";

impl<'de> Deserialize<'de> for Amount {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = Amount;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a number, \"unlimited\" or a size like \"64MB\"")
            }
            fn visit_i64<E: de::Error>(self, n: i64) -> Result<Amount, E> {
                Ok(Amount::Number(n))
            }
            fn visit_u64<E: de::Error>(self, n: u64) -> Result<Amount, E> {
                i64::try_from(n)
                    .map(Amount::Number)
                    .map_err(|_| E::custom(format!("{n} is too large")))
            }
            fn visit_str<E: de::Error>(self, s: &str) -> Result<Amount, E> {
                Ok(Amount::Text(s.to_owned()))
            }
        }
        deserializer.deserialize_any(V)
    }
}

impl<'de> Deserialize<'de> for RawLimit {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(deny_unknown_fields)]
        struct Pair {
            soft: Option<Spanned<Amount>>,
            hard: Option<Spanned<Amount>>,
        }
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = RawLimit;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(EXPECTED_LIMIT)
            }
            fn visit_i64<E: de::Error>(self, n: i64) -> Result<RawLimit, E> {
                Ok(RawLimit::Both(Amount::Number(n)))
            }
            fn visit_u64<E: de::Error>(self, n: u64) -> Result<RawLimit, E> {
                Amount::deserialize(n.into_deserializer()).map(RawLimit::Both)
            }
            fn visit_str<E: de::Error>(self, s: &str) -> Result<RawLimit, E> {
                Ok(RawLimit::Both(Amount::Text(s.to_owned())))
            }
            fn visit_map<M: MapAccess<'de>>(self, map: M) -> Result<RawLimit, M::Error> {
                let Pair { soft, hard } = Pair::deserialize(de::value::MapAccessDeserializer::new(map))?;
                Ok(RawLimit::Pair { soft, hard })
            }
        }
        deserializer.deserialize_any(V)
    }
}

/// `umask`: an octal string such as `"027"`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct UmaskValue(pub u32);

impl<'de> Deserialize<'de> for UmaskValue {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = UmaskValue;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an octal string like \"027\"")
            }
            fn visit_str<E: de::Error>(self, s: &str) -> Result<UmaskValue, E> {
                parse_umask(s).map(UmaskValue).map_err(E::custom)
            }
            fn visit_i64<E: de::Error>(self, n: i64) -> Result<UmaskValue, E> {
                // TOML reads 027 as an error and 27 as decimal: a string
                // says what is meant.
                Err(E::custom(format!(
                    "umask must be an octal string like \"027\", not the number {n}"
                )))
            }
        }
        deserializer.deserialize_any(V)
    }
}

/// `"027"`, `"0027"`, `"22"`: one to four octal digits, at most 0777.
fn parse_umask(s: &str) -> Result<u32, String> {
    let bad = || format!("invalid umask {s:?}: write it in octal, like \"027\" (at most \"0777\")");
    if s.is_empty() || s.len() > 4 || !s.bytes().all(|b| (b'0'..=b'7').contains(&b)) {
        return Err(bad());
    }
    match u32::from_str_radix(s, 8) {
        Ok(mask) if mask <= 0o777 => Ok(mask),
        _ => Err(bad()),
    }
}

/// What baseinit itself has, which its children start from, and whether it
/// may go past it: read once, for the load's checks.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Host {
    /// Soft and hard limit of each of `Resource::ALL`, in that order.
    pub limits: [(u64, u64); Resource::ALL.len()],
    /// May raise a hard limit and lower the OOM score: CAP_SYS_RESOURCE,
    /// in the initial user namespace (the kernel asks there).
    pub sys_resource: bool,
    /// May lower the nice value: CAP_SYS_NICE, likewise.
    pub sys_nice: bool,
    /// baseinit runs in a user namespace other than the initial one (a
    /// rootless engine): its capabilities do not count for these.
    pub user_namespace: bool,
    pub nice: i32,
    /// The lowest nice value RLIMIT_NICE allows without CAP_SYS_NICE.
    pub nice_floor: i32,
    pub oom_score_adj: i32,
    /// `fs.nr_open`: the most `nofile` may be, even for root.
    pub nr_open: Option<u64>,
}

impl Host {
    /// baseinit's own, read once: it never changes them.
    pub fn current() -> &'static Host {
        static CURRENT: OnceLock<Host> = OnceLock::new();
        CURRENT.get_or_init(Host::read)
    }

    fn read() -> Host {
        use nix::sys::resource::{Resource as R, getrlimit};
        let limits = Resource::ALL.map(|resource| {
            let which = match resource {
                Resource::Nofile => R::RLIMIT_NOFILE,
                Resource::Nproc => R::RLIMIT_NPROC,
                Resource::Core => R::RLIMIT_CORE,
                Resource::Memlock => R::RLIMIT_MEMLOCK,
                Resource::As => R::RLIMIT_AS,
                Resource::Data => R::RLIMIT_DATA,
                Resource::Stack => R::RLIMIT_STACK,
                Resource::Fsize => R::RLIMIT_FSIZE,
                Resource::Cpu => R::RLIMIT_CPU,
            };
            getrlimit(which).unwrap_or((UNLIMITED, UNLIMITED))
        });
        let read = |path: &str| std::fs::read_to_string(path).ok();
        // The initial user namespace maps every id to itself; an engine's
        // (rootless Podman, `unshare --user`) maps a range.
        let user_namespace = read("/proc/self/uid_map").is_some_and(|map| !is_identity_map(&map));
        // -1 is a valid nice value: only errno tells a failure.
        nix::errno::Errno::clear();
        // SAFETY: a plain syscall.
        let nice = unsafe { nix::libc::getpriority(nix::libc::PRIO_PROCESS, 0) };
        let nice = if nice == -1 && nix::errno::Errno::last_raw() != 0 {
            0
        } else {
            nice
        };
        let rlimit_nice = getrlimit(R::RLIMIT_NICE).map_or(0, |(soft, _)| soft.min(40));
        Host {
            limits,
            sys_resource: !user_namespace && privileges::holds(CAP_SYS_RESOURCE),
            sys_nice: !user_namespace && privileges::holds(CAP_SYS_NICE),
            user_namespace,
            nice,
            nice_floor: 20 - rlimit_nice as i32,
            oom_score_adj: read("/proc/self/oom_score_adj")
                .and_then(|text| text.trim().parse().ok())
                .unwrap_or(0),
            nr_open: read("/proc/sys/fs/nr_open").and_then(|text| text.trim().parse().ok()),
        }
    }

    fn limit(&self, resource: Resource) -> (u64, u64) {
        let at = Resource::ALL.iter().position(|r| *r == resource);
        at.and_then(|at| self.limits.get(at).copied())
            .unwrap_or((UNLIMITED, UNLIMITED))
    }

    /// Why baseinit may not use `cap` here.
    fn lacks(&self, cap: &str) -> String {
        if self.user_namespace {
            format!("{cap} in the initial user namespace, which baseinit lacks (it runs in a user namespace)")
        } else {
            format!("{cap}, which baseinit lacks")
        }
    }
}

/// `/proc/self/uid_map` of the initial user namespace: every id, as itself.
fn is_identity_map(map: &str) -> bool {
    map.split_whitespace().collect::<Vec<_>>() == ["0", "0", "4294967295"]
}

/// A limit for messages.
fn show(value: u64) -> String {
    if value == UNLIMITED {
        "unlimited".to_owned()
    } else {
        value.to_string()
    }
}

/// Validates `[limits]`, its errors at their keys; None when it sets
/// nothing. `notification_fd` is the service's (it must stay below the
/// `nofile` soft limit for the child to put it in place).
pub(super) fn limits(
    raw: &RawLimits,
    host: &Host,
    notification_fd: Option<i32>,
    at: &dyn Fn(usize, String) -> ConfigError,
    errors: &mut Vec<ConfigError>,
) -> Option<Box<Limits>> {
    let mut limits = Limits::default();
    for resource in Resource::ALL {
        if let Some(given) = raw.get(resource)
            && let Some(rlimit) = rlimit(resource, given, host, at, errors)
        {
            limits.rlimits.push(rlimit);
        }
    }
    if let (Some(fd), Some(given), Some(nofile)) = (
        notification_fd,
        &raw.nofile,
        limits.rlimits.iter().find(|r| r.resource == Resource::Nofile),
    ) && u64::try_from(fd).is_ok_and(|fd| fd >= nofile.soft)
    {
        errors.push(at(
            given.span().start,
            format!(
                "limits.nofile: a soft limit of {} leaves no room for notification-fd {fd}: it must be above the fd's number",
                nofile.soft
            ),
        ));
    }
    if let Some(given) = &raw.nice {
        let nice = *given.get_ref();
        let start = given.span().start;
        match i32::try_from(nice) {
            Ok(nice) if (-20..=19).contains(&nice) => {
                if nice < host.nice && nice < host.nice_floor && !host.sys_nice {
                    errors.push(at(
                        start,
                        format!(
                            "limits.nice {nice} is below baseinit's own nice value {}: lowering it needs {} (or an RLIMIT_NICE that allows it)",
                            host.nice,
                            host.lacks("CAP_SYS_NICE")
                        ),
                    ));
                }
                limits.nice = Some(nice);
            }
            _ => errors.push(at(start, format!("limits.nice must be from -20 to 19, not {nice}"))),
        }
    }
    limits.umask = raw.umask.as_ref().map(|umask| umask.get_ref().0);
    if let Some(given) = &raw.oom_score_adj {
        let score = *given.get_ref();
        let start = given.span().start;
        match i32::try_from(score) {
            Ok(score) if (-1000..=1000).contains(&score) => {
                if score < host.oom_score_adj && !host.sys_resource {
                    errors.push(at(
                        start,
                        format!(
                            "limits.oom-score-adj {score} is below baseinit's own {}: lowering it needs {}",
                            host.oom_score_adj,
                            host.lacks("CAP_SYS_RESOURCE")
                        ),
                    ));
                }
                limits.oom_score_adj = Some(score);
            }
            _ => errors.push(at(
                start,
                format!("limits.oom-score-adj must be from -1000 to 1000, not {score}"),
            )),
        }
    }
    (!limits.is_empty()).then(|| Box::new(limits))
}

/// One resource's soft and hard limit. A single value is both; in a table,
/// a missing `hard` keeps baseinit's, a missing `soft` is baseinit's
/// (lowered to `hard` if above it).
fn rlimit(
    resource: Resource,
    given: &Spanned<RawLimit>,
    host: &Host,
    at: &dyn Fn(usize, String) -> ConfigError,
    errors: &mut Vec<ConfigError>,
) -> Option<Rlimit> {
    let key = resource.key();
    let (host_soft, host_hard) = host.limit(resource);
    let value = |spanned: &Spanned<Amount>, errors: &mut Vec<ConfigError>| {
        amount(resource, spanned.get_ref())
            .map_err(|message| errors.push(at(spanned.span().start, format!("limits.{key}: {message}"))))
            .ok()
    };
    let start = given.span().start;
    let (soft, hard, soft_at, hard_at, hard_given) = match given.get_ref() {
        RawLimit::Both(amount_given) => match amount(resource, amount_given) {
            Ok(value) => (value, value, start, start, true),
            Err(message) => {
                errors.push(at(start, format!("limits.{key}: {message}")));
                return None;
            }
        },
        RawLimit::Pair { soft: None, hard: None } => {
            errors.push(at(start, format!("limits.{key}: give `soft`, `hard` or both")));
            return None;
        }
        RawLimit::Pair { soft, hard } => {
            let hard_value = match hard {
                Some(hard) => value(hard, errors),
                None => Some(host_hard),
            };
            let soft_value = match soft {
                Some(soft) => value(soft, errors),
                None => hard_value.map(|hard| host_soft.min(hard)),
            };
            let span_of = |s: &Option<Spanned<Amount>>| s.as_ref().map_or(start, |s| s.span().start);
            (soft_value?, hard_value?, span_of(soft), span_of(hard), hard.is_some())
        }
    };
    let before = errors.len();
    if soft > hard {
        let whose = if hard_given {
            ""
        } else {
            " (baseinit's own: give `hard` too)"
        };
        errors.push(at(
            soft_at,
            format!(
                "limits.{key}: the soft limit {} is above the hard limit {}{whose}",
                show(soft),
                show(hard)
            ),
        ));
    }
    if hard > host_hard && !host.sys_resource {
        errors.push(at(
            hard_at,
            format!(
                "limits.{key} {} is above baseinit's own hard limit {}: raising it needs {} (ask for at most {})",
                show(hard),
                show(host_hard),
                host.lacks("CAP_SYS_RESOURCE"),
                show(host_hard)
            ),
        ));
    }
    if resource == Resource::Nofile
        && let Some(nr_open) = host.nr_open
        && hard > nr_open
    {
        errors.push(at(
            hard_at,
            format!(
                "limits.nofile {} is above the kernel's fs.nr_open, {nr_open}: no process may have more",
                show(hard)
            ),
        ));
    }
    (errors.len() == before).then_some(Rlimit { resource, soft, hard })
}

/// A value of `resource`'s limit: a number, `"unlimited"` (or
/// `"infinity"`), or for a size a string like `"64MB"`.
fn amount(resource: Resource, amount: &Amount) -> Result<u64, String> {
    match amount {
        Amount::Number(n) => u64::try_from(*n).map_err(|_| format!("must be 0 or more, not {n}")),
        Amount::Text(text) if text.eq_ignore_ascii_case("unlimited") || text.eq_ignore_ascii_case("infinity") => {
            Ok(UNLIMITED)
        }
        Amount::Text(text) if resource.is_size() => {
            let size: Result<SizeValue, de::value::Error> = SizeValue::deserialize(text.as_str().into_deserializer());
            size.map(|size| size.0).map_err(|e| e.to_string())
        }
        Amount::Text(text) => {
            let unit = match resource {
                Resource::Nofile => "open files",
                Resource::Nproc => "processes",
                _ => "seconds",
            };
            Err(format!(
                "{text:?} is not a number: give a number of {unit}, or \"unlimited\""
            ))
        }
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;

    /// A host with the given hard limit for every resource (soft half of
    /// it), nice 0 and OOM score 0; `privileged`: every capability.
    fn host(hard: u64, privileged: bool) -> Host {
        Host {
            limits: [(hard / 2, hard); Resource::ALL.len()],
            sys_resource: privileged,
            sys_nice: privileged,
            user_namespace: false,
            nice: 0,
            nice_floor: 20,
            oom_score_adj: 0,
            nr_open: Some(1_048_576),
        }
    }

    /// `[limits]` of `text` validated on `host`: the limits, or every error
    /// as "line:column: message".
    fn check(text: &str, host: &Host, notification_fd: Option<i32>) -> Result<Option<Limits>, Vec<String>> {
        let raw: super::super::raw::RawService = match toml::from_str(text) {
            Ok(raw) => raw,
            Err(e) => {
                let error = ConfigError::at(Path::new("t"), text, e.span().map_or(0, |s| s.start), e.message());
                return Err(vec![error.to_string().trim_start_matches("t:").to_owned()]);
            }
        };
        let mut errors = Vec::new();
        let at = |offset: usize, message: String| ConfigError::at(Path::new("t"), text, offset, message);
        let limits = raw
            .limits
            .as_ref()
            .and_then(|raw| limits(raw, host, notification_fd, &at, &mut errors));
        if errors.is_empty() {
            Ok(limits.map(|l| *l))
        } else {
            Err(errors
                .iter()
                .map(|e| e.to_string().trim_start_matches("t:").to_owned())
                .collect())
        }
    }

    fn both(resource: Resource, value: u64) -> Rlimit {
        Rlimit {
            resource,
            soft: value,
            hard: value,
        }
    }

    #[test]
    fn every_key_is_read() {
        let text = r#"
[limits]
nofile = 65536
nproc = 512
core = 0
memlock = "64MB"
as = "2GiB"
data = "unlimited"
stack = { soft = "8MiB", hard = "Infinity" }
fsize = 1024
cpu = { hard = 60 }
nice = 5
umask = "027"
oom-score-adj = 500
"#;
        let limits = check(text, &host(UNLIMITED, false), None).unwrap().unwrap();
        assert_eq!(
            limits.rlimits,
            [
                both(Resource::Nofile, 65536),
                both(Resource::Nproc, 512),
                both(Resource::Core, 0),
                both(Resource::Memlock, 64_000_000),
                both(Resource::As, 2 << 30),
                both(Resource::Data, UNLIMITED),
                Rlimit {
                    resource: Resource::Stack,
                    soft: 8 << 20,
                    hard: UNLIMITED
                },
                both(Resource::Fsize, 1024),
                // No soft: baseinit's (half of unlimited here), lowered to the hard one.
                Rlimit {
                    resource: Resource::Cpu,
                    soft: 60,
                    hard: 60
                },
            ]
        );
        assert_eq!(limits.nice, Some(5));
        assert_eq!(limits.umask, Some(0o027));
        assert_eq!(limits.oom_score_adj, Some(500));
        // As its own table, too.
        let table = "[limits.nofile]\nsoft = 1024\nhard = 4096\n";
        let limits = check(table, &host(UNLIMITED, false), None).unwrap().unwrap();
        assert_eq!(
            limits.rlimits,
            [Rlimit {
                resource: Resource::Nofile,
                soft: 1024,
                hard: 4096
            }]
        );
        // Nothing set: nothing to do.
        assert_eq!(check("[limits]\n", &host(100, false), None), Ok(None));
        assert_eq!(check("", &host(100, false), None), Ok(None));
    }

    #[test]
    fn a_missing_soft_or_hard_is_baseinits() {
        let host = host(4096, false); // soft 2048
        let one = |text: &str| check(text, &host, None).map(|l| l.unwrap().rlimits[0]);
        assert_eq!(
            one("[limits]\nnofile = { soft = 100 }\n"),
            Ok(Rlimit {
                resource: Resource::Nofile,
                soft: 100,
                hard: 4096
            })
        );
        assert_eq!(
            one("[limits]\nnofile = { hard = 1000 }\n"),
            Ok(Rlimit {
                resource: Resource::Nofile,
                soft: 1000,
                hard: 1000
            }),
            "soft lowered to the hard limit"
        );
        assert_eq!(
            one("[limits]\nnofile = { hard = 3000 }\n"),
            Ok(Rlimit {
                resource: Resource::Nofile,
                soft: 2048,
                hard: 3000
            })
        );
    }

    #[test]
    fn bad_values_are_errors_at_their_place() {
        let host = host(UNLIMITED, true);
        let cases: &[(&str, &str)] = &[
            (
                "[limits]\nfiles = 5\n",
                "2:1: unknown field `files`, expected one of `nofile`",
            ),
            (
                "[limits]\nnofile = -1\n",
                "2:10: limits.nofile: must be 0 or more, not -1",
            ),
            (
                "[limits]\nnofile = 1.5\n",
                "2:10: invalid type: floating point `1.5`, expected a number",
            ),
            (
                "[limits]\nnofile = \"64k\"\n",
                "2:10: limits.nofile: \"64k\" is not a number: give a number of open files, or \"unlimited\"",
            ),
            (
                "[limits]\ncpu = \"1h\"\n",
                "2:7: limits.cpu: \"1h\" is not a number: give a number of seconds",
            ),
            (
                "[limits]\nmemlock = \"lots\"\n",
                "2:11: limits.memlock: invalid size \"lots\"",
            ),
            (
                "[limits]\ncore = true\n",
                "2:8: invalid type: boolean `true`, expected a number, \"unlimited\"",
            ),
            (
                "[limits]\nnofile = {}\n",
                "2:10: limits.nofile: give `soft`, `hard` or both",
            ),
            (
                "[limits]\nnofile = { soft = 1, max = 2 }\n",
                "2:22: unknown field `max`, expected `soft` or `hard`",
            ),
            (
                "[limits]\nnofile = { soft = 4096, hard = 1024 }\n",
                "2:19: limits.nofile: the soft limit 4096 is above the hard limit 1024",
            ),
            (
                "[limits]\nnofile = { soft = \"unlimited\", hard = 1024 }\n",
                "2:19: limits.nofile: the soft limit unlimited is above the hard limit 1024",
            ),
            (
                "[limits]\nnofile = \"unlimited\"\n",
                "2:10: limits.nofile unlimited is above the kernel's fs.nr_open, 1048576",
            ),
            (
                "[limits]\nnice = 20\n",
                "2:8: limits.nice must be from -20 to 19, not 20",
            ),
            (
                "[limits]\nnice = -21\n",
                "2:8: limits.nice must be from -20 to 19, not -21",
            ),
            (
                "[limits]\nnice = \"5\"\n",
                "2:8: invalid type: string \"5\", expected i64",
            ),
            (
                "[limits]\numask = 22\n",
                "2:9: umask must be an octal string like \"027\", not the number 22",
            ),
            (
                "[limits]\numask = \"089\"\n",
                "2:9: invalid umask \"089\": write it in octal",
            ),
            ("[limits]\numask = \"1777\"\n", "2:9: invalid umask \"1777\""),
            ("[limits]\numask = \"\"\n", "2:9: invalid umask \"\""),
            (
                "[limits]\noom-score-adj = 1001\n",
                "2:17: limits.oom-score-adj must be from -1000 to 1000, not 1001",
            ),
        ];
        for (text, want) in cases {
            let got = check(text, &host, None).expect_err(text);
            assert!(
                got.iter().any(|e| e.starts_with(want)),
                "{text:?}: want {want:?}, got {got:#?}"
            );
        }
        // Every problem at once.
        let many = check("[limits]\nnice = 40\nnofile = -1\ncore = \"x\"\n", &host, None).unwrap_err();
        assert_eq!(many.len(), 3, "{many:#?}");
    }

    #[test]
    fn what_needs_privileges_is_an_error_without_them() {
        let text = "[limits]\nnofile = 65536\nnice = -5\noom-score-adj = -500\n";
        let root = host(20_000, true);
        let limits = check(text, &root, None).unwrap().unwrap();
        assert_eq!(
            limits.rlimits,
            [both(Resource::Nofile, 65536)],
            "root raises the hard limit"
        );
        assert_eq!((limits.nice, limits.oom_score_adj), (Some(-5), Some(-500)));
        let user = host(20_000, false);
        assert_eq!(
            check(text, &user, None).unwrap_err(),
            [
                "2:10: limits.nofile 65536 is above baseinit's own hard limit 20000: raising it needs CAP_SYS_RESOURCE, which baseinit lacks (ask for at most 20000)",
                "3:8: limits.nice -5 is below baseinit's own nice value 0: lowering it needs CAP_SYS_NICE, which baseinit lacks (or an RLIMIT_NICE that allows it)",
                "4:17: limits.oom-score-adj -500 is below baseinit's own 0: lowering it needs CAP_SYS_RESOURCE, which baseinit lacks",
            ]
        );
        // At or within baseinit's own, nothing is needed; a soft limit
        // alone is checked against baseinit's hard one.
        let within = "[limits]\nnofile = { soft = 20000 }\nnice = 0\noom-score-adj = 0\ncore = 0\n";
        assert!(check(within, &user, None).is_ok());
        let soft_only = "[limits]\nnofile = { soft = 20001 }\n";
        assert_eq!(
            check(soft_only, &user, None).unwrap_err(),
            [
                "2:19: limits.nofile: the soft limit 20001 is above the hard limit 20000 (baseinit's own: give `hard` too)"
            ]
        );
        let hard_above = "[limits]\nnofile = { soft = 10, hard = 30000 }\n";
        assert!(
            check(hard_above, &user, None).unwrap_err()[0].starts_with("2:30: limits.nofile 30000 is above"),
            "at the hard value"
        );
        // RLIMIT_NICE lets a user lower its nice value down to its floor.
        let nice_rlimit = Host {
            nice_floor: -10,
            ..user.clone()
        };
        assert!(check("[limits]\nnice = -10\n", &nice_rlimit, None).is_ok());
        assert!(check("[limits]\nnice = -11\n", &nice_rlimit, None).is_err());
        // In a user namespace, the capabilities it has there do not count.
        let userns = Host {
            user_namespace: true,
            ..user
        };
        let error = check("[limits]\nnofile = 65536\n", &userns, None).unwrap_err();
        assert!(
            error[0].contains("CAP_SYS_RESOURCE in the initial user namespace, which baseinit lacks"),
            "{error:?}"
        );
    }

    #[test]
    fn the_notification_fd_must_fit_under_nofile() {
        let host = host(UNLIMITED, true);
        assert!(check("[limits]\nnofile = 64\n", &host, Some(63)).is_ok());
        assert_eq!(
            check("[limits]\nnofile = { soft = 64, hard = 100 }\n", &host, Some(64)).unwrap_err(),
            [
                "2:10: limits.nofile: a soft limit of 64 leaves no room for notification-fd 64: it must be above the fd's number"
            ]
        );
    }

    #[test]
    fn umasks_are_octal() {
        for (text, mask) in [("027", 0o027), ("0027", 0o027), ("22", 0o22), ("0", 0), ("777", 0o777)] {
            assert_eq!(parse_umask(text), Ok(mask), "{text}");
        }
        for bad in ["", "8", "0o22", "-1", "01000", "1777", " 22", "u=rwx"] {
            assert!(parse_umask(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn the_initial_user_namespace_maps_every_id() {
        assert!(is_identity_map("         0          0 4294967295\n"));
        assert!(!is_identity_map("         0       1000          1\n"));
        assert!(!is_identity_map("0 0 1\n1 100000 65536\n"));
    }

    #[test]
    fn a_limit_is_loaded_into_run_and_finish_and_a_bad_one_keeps_only_its_service_down() {
        let tree = tempfile::tempdir().unwrap();
        let service = |name: &str, toml: &str| {
            let dir = tree.path().join(name);
            std::fs::create_dir(&dir).unwrap();
            for file in ["run", "finish"] {
                std::fs::write(dir.join(file), "#!/bin/sh\n").unwrap();
                use std::os::unix::fs::PermissionsExt;
                std::fs::set_permissions(dir.join(file), std::fs::Permissions::from_mode(0o755)).unwrap();
            }
            std::fs::write(dir.join("service.toml"), toml).unwrap();
        };
        // Values any machine allows: none above its limits or below its nice.
        service("good", "[limits]\ncore = 0\numask = \"077\"\n");
        service("bad", "[limits]\nnofile = -3\n");
        let scan = super::super::scan_services(tree.path(), &super::super::Defaults::default(), true);
        assert_eq!(scan.broken, ["bad"]);
        assert!(
            scan.errors[0]
                .to_string()
                .ends_with("bad/service.toml:2:10: limits.nofile: must be 0 or more, not -3"),
            "{:?}",
            scan.errors
        );
        let good = &scan.services[0];
        let limits = good.run.limits.as_deref().unwrap();
        assert_eq!(
            (limits.rlimits.clone(), limits.umask),
            (vec![both(Resource::Core, 0)], Some(0o077))
        );
        assert_eq!(good.finish.as_ref().unwrap().limits, good.run.limits);
    }
}
