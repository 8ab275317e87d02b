//! Applets: the commands baseinit also answers to, by argv[0] (a symlink named
//! `sv`, `setuser`) or as `baseinit sv …` / `baseinit setuser …`; and runit's
//! `chpst`, also under its daemontools names (`envdir`, `setuidgid`, …).

pub mod chpst;
pub mod setuser;
pub mod sv;
pub mod svlogd;

use std::ffi::OsString;
use std::path::Path;

/// Runs the applet named by argv[0]'s file name, or by the first argument
/// after `baseinit`; None when the call is for the init itself.
pub fn dispatch(args: &[OsString]) -> Option<i32> {
    let name = args
        .first()
        .and_then(|a| Path::new(a).file_name())
        .and_then(|n| n.to_str())?;
    match name {
        "sv" => Some(sv::main(args)),
        "setuser" => Some(setuser::main(args)),
        "svlogd" => Some(svlogd::main(args)),
        name if chpst::NAMES.contains(&name) => Some(chpst::main(args)),
        _ => match args.get(1).and_then(|a| a.to_str()) {
            Some("sv") => Some(sv::main(&args[1..])),
            Some("setuser") => Some(setuser::main(&args[1..])),
            Some("svlogd") => Some(svlogd::main(&args[1..])),
            Some("chpst") => Some(chpst::main(&args[1..])),
            Some("check") => Some(crate::check::main(&args[1..])),
            Some("status") => Some(crate::status::status_main(&args[1..])),
            Some("health") => Some(crate::status::health_main(&args[1..])),
            _ => None,
        },
    }
}
