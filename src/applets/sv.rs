//! `sv`: runit's service control command, speaking runit's supervise/ protocol.

use std::ffi::OsString;

/// Runs `sv` with `args` (args[0] is the program name); returns its exit status.
pub fn main(_args: &[OsString]) -> i32 {
    eprintln!("sv: not implemented yet");
    100
}
