//! `setuser USER COMMAND [ARGS…]`: run a command as another user (my_init's).

use std::ffi::OsString;

/// Runs `setuser` with `args` (args[0] is the program name); returns its exit
/// status when it could not exec the command.
pub fn main(_args: &[OsString]) -> i32 {
    eprintln!("setuser: not implemented yet");
    1
}
