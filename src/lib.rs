//! baseinit: a PID 1 supervisor for container images.
//!
//! The map of the crate, in the order data flows:
//! - [`applets`]: `sv`, `setuser` and `chpst`, by argv[0] or as `baseinit sv`.
//! - [`accounts`]: users and groups, read from /etc/passwd and /etc/group (never NSS).
//! - [`container_env`]: my_init's container environment import and export.
//! - [`envdir`]: runit's envdir format (one file per variable), for `chpst -e` and `env-dir`.
//! - [`check`]: `baseinit check`, validating an image's configuration.
//! - [`cli`]: flags and their environment-variable twins (my_init's names).
//! - [`config`]: service directories and `service.toml` → validated [`config::ServiceSpec`]s.
//! - [`startup`]: which startup scripts run, in what order.
//! - [`service`]: the per-service lifecycle, a pure state machine.
//! - [`supervisor`]: the event loop that turns the machines' actions into syscalls.
//! - [`spawn`]: starting children clean (their system calls: `spawn::raw_syscall`);
//!   [`reaper`]: the one owner of `waitpid`;
//!   [`process_group`]: signalling groups and telling when they are empty.
//! - [`runit`]: runit's protocol, shared by the supervisor and `sv`: the
//!   `supervise/` directory, its status record and its control letters.
//! - [`watch`]: inotify on the service directory.
//! - [`status`]: `baseinit status` and `health`: the snapshot, and what healthy means.
//! - [`shutdown`]: the stop plan and the final kill-all.
//! - [`control_socket`]: the socket `status`, `health` and `sv` ask the running baseinit over.
//! - [`exit`]: child statuses and baseinit's exit-code table.
//! - [`http_probe`]: `[ready] http` and `[health] http`: local URLs, a GET's status line.
//! - [`inherited`]: cleaning up the signal mask, dispositions and fds baseinit inherited.
//! - [`logging`]: baseinit's own log on stderr.
//! - [`logdir`]: runit's svlogd log directories: `current`, rotation, `config`.
//! - [`output`]: services' stdout and stderr, as whole prefixed (or JSON) lines.
//! - [`syslog`]: `/dev/log` (`--syslog`): syslog messages relayed to the output.
//! - [`manual`]: the command lines for the man pages and completions (not used by the init).
//! - [`privileges`]: what baseinit may change of a child's user and groups.
//! - [`resident`]: keeping what PID 1 holds in memory small (boot-only pages let go).

pub mod accounts;
pub mod applets;
pub mod check;
pub mod cli;
pub mod config;
pub mod container_env;
pub mod control_socket;
pub mod envdir;
pub mod exit;
pub mod http_probe;
pub mod inherited;
pub mod logdir;
pub mod logging;
pub mod manual;
pub mod output;
pub mod privileges;
pub mod process_group;
pub mod reaper;
pub mod resident;
pub mod runit;
pub mod service;
pub mod shutdown;
pub mod spawn;
pub mod startup;
pub mod status;
pub mod supervisor;
pub mod syslog;
pub mod watch;
