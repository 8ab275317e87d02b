//! runit's protocol, defined once for both of its sides in baseinit: the
//! supervisor, which keeps each service's `supervise/` directory as runsv
//! does, and the `sv` applet, which reads it and writes commands to it.
//!
//! Named after runit, not "supervise", so that it is not taken for the
//! supervisor (the event loop). It depends on no other module of the crate:
//! the supervisor and the applet depend on it, and the supervisor tags the
//! commands read with a token of its own type.
//!
//! - [`status`]: the 20-byte `supervise/status` record, its TAI64N clock, the
//!   `stat` text and runit's three states.
//! - [`control`]: the one-letter commands of `supervise/control`.
//! - [`supervise_dir`]: the directory itself: the lock, the FIFOs, the state
//!   files, and reading the commands sent.

pub mod control;
pub mod status;
pub mod supervise_dir;

pub use control::Command;
pub use status::{RunState, Status};
pub use supervise_dir::{Supervise, open_control, read_commands};
