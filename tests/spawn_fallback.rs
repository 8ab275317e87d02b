//! Starting children where a clone in shared memory is refused: the real
//! binary as PID 1 under a seccomp filter that fails every `clone` with
//! CLONE_VM but neither CLONE_THREAD nor CLONE_VFORK with EINVAL, as qemu's
//! user-mode emulation does. The filter is installed in baseinit's parent
//! (before `unshare` execs) and inherited, so the binary has no test hook:
//! it must fall back to fork by itself, with the same clean start and the
//! same failure reports as without the filter.
#![allow(clippy::disallowed_methods)]
#![cfg(any(target_arch = "x86_64", target_arch = "aarch64"))]

mod common;

use std::fs;
use std::os::unix::process::CommandExt;
use std::process::Command;
use std::time::Duration;

use common::{Baseinit, Capability, Mode, Tree, children_of, require, wait_for};
use nix::libc;

const LONG: Duration = Duration::from_secs(30);

/// The debug line baseinit logs once when it falls back.
const FELL_BACK: &str = "clone(CLONE_VM) refused (Invalid argument (os error 22)): children start by fork";

/// One BPF instruction.
fn op(code: u32, k: u32, jt: u8, jf: u8) -> libc::sock_filter {
    libc::sock_filter {
        code: code as u16,
        jt,
        jf,
        k,
    }
}

/// Makes `command`'s process, and all it starts, fail with EINVAL each
/// `clone` whose flags have CLONE_VM without CLONE_THREAD or CLONE_VFORK
/// (threads, and vfork as shells and posix_spawn use it, still work).
fn refuse_shared_memory_clones(command: &mut Command) {
    #[cfg(target_arch = "x86_64")]
    const ARCH: u32 = 0xc000_003e; // AUDIT_ARCH_X86_64
    #[cfg(target_arch = "aarch64")]
    const ARCH: u32 = 0xc000_00b7; // AUDIT_ARCH_AARCH64
    // struct seccomp_data: nr at 0, arch at 4, args[0] at 16 (its low half
    // on these little-endian machines: every flag below is in it).
    let load = |offset| op(libc::BPF_LD | libc::BPF_W | libc::BPF_ABS, offset, 0, 0);
    let allow = op(libc::BPF_RET | libc::BPF_K, libc::SECCOMP_RET_ALLOW, 0, 0);
    let if_set_skip = |bits: i32, skip| op(libc::BPF_JMP | libc::BPF_JSET | libc::BPF_K, bits as u32, 0, skip);
    let filter = vec![
        load(4),
        op(libc::BPF_JMP | libc::BPF_JEQ | libc::BPF_K, ARCH, 1, 0),
        allow,
        load(0),
        op(
            libc::BPF_JMP | libc::BPF_JEQ | libc::BPF_K,
            libc::SYS_clone as u32,
            1,
            0,
        ),
        allow,
        load(16),
        // A thread or a vfork: allowed (jt), else on to the next test.
        if_set_skip(libc::CLONE_THREAD | libc::CLONE_VFORK, 1),
        allow,
        // CLONE_VM: refused (jt), else allowed.
        if_set_skip(libc::CLONE_VM, 1),
        op(
            libc::BPF_RET | libc::BPF_K,
            libc::SECCOMP_RET_ERRNO | libc::EINVAL as u32,
            0,
            0,
        ),
        allow,
    ];
    // SAFETY: in the forked child before exec: two prctl calls on memory
    // allocated before the fork, which the closure owns.
    unsafe {
        command.pre_exec(move || {
            let program = libc::sock_fprog {
                len: filter.len() as u16,
                filter: filter.as_ptr().cast_mut(),
            };
            if libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0
                || libc::prctl(libc::PR_SET_SECCOMP, libc::SECCOMP_MODE_FILTER, &raw const program) != 0
            {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
}

/// (SigBlk, SigIgn, fds, process group) of a live process.
fn child_state(pid: i32) -> Option<(String, String, Vec<i32>, i32)> {
    let status = fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let field = |key: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(key))
            .map(|v| v.trim().to_owned())
    };
    let mut fds: Vec<i32> = fs::read_dir(format!("/proc/{pid}/fd"))
        .ok()?
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
        .collect();
    fds.sort();
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let pgrp = stat.rsplit_once(')')?.1.split_whitespace().nth(2)?.parse().ok()?;
    Some((field("SigBlk:")?, field("SigIgn:")?, fds, pgrp))
}

/// A tree with a service that runs (`sleep 60`, which opens nothing of its
/// own) and one whose program does not exist, retried quickly.
fn tree() -> Tree {
    let tree = Tree::new();
    tree.service_file("probe", "service.toml", "command = [\"sleep\", \"60\"]\n", 0o644);
    tree.service_file(
        "ghost",
        "service.toml",
        "command = [\"no-such-binary-anywhere\"]\n[backoff]\ninitial = \"50ms\"\nmax = \"100ms\"\nreset-after = \"1ns\"\n",
        0o644,
    );
    tree
}

/// Runs baseinit on `tree` (verbose, from a dirty parent, plus `setup`)
/// until the ghost has failed to start twice and the probe sleeps;
/// checks the probe's clean start; stops it. Its stderr.
fn run(tree: &Tree, setup: impl FnOnce(&mut Command)) -> String {
    let init = Baseinit::start_with(Mode::Pid1, &tree.args(&["--verbose"]), |command| {
        common::dirty_inheritance(command);
        setup(command);
    });
    let me = init.pid();
    let probe = wait_for("the probe to run", LONG, || {
        children_of(me)
            .into_iter()
            .map(|(pid, _)| pid)
            .find(|pid| fs::read(format!("/proc/{pid}/cmdline")).is_ok_and(|c| c == b"sleep\x0060\0"))
    });
    wait_for("two failed starts of the ghost", LONG, || {
        (init.stderr_so_far().matches("service ghost: cannot start").count() >= 2).then_some(())
    });
    // `sleep` opens locale data for a moment as it starts: judge it once it
    // sleeps, in the system call it ends in.
    wait_for("the probe to sleep", LONG, || common::in_nanosleep(probe).then_some(()));
    let (blocked, ignored, fds, pgrp) = child_state(probe).expect("the probe's state");
    assert_eq!(blocked, "0000000000000000", "signal mask");
    assert_eq!(ignored, "0000000000000000", "ignored signals");
    assert_eq!(fds, [0, 1, 2], "only fds 0-2");
    assert_eq!(pgrp, probe, "its own process group");
    init.stop(LONG).stderr
}

/// The first "cannot start" line of the ghost, without its timestamp.
fn ghost_error(stderr: &str) -> String {
    let line = stderr
        .lines()
        .find(|l| l.contains("service ghost: cannot start"))
        .unwrap_or_else(|| panic!("no ghost line in:\n{stderr}"));
    line[line.find("service ghost").expect("found above")..].to_owned()
}

#[test]
fn where_the_kernel_refuses_a_shared_memory_clone_children_start_by_fork_just_as_clean() {
    require!(Capability::Namespaces);
    let tree = tree();
    let refused = run(&tree, refuse_shared_memory_clones);
    // The filter did refuse, and baseinit said so once.
    assert_eq!(refused.matches(FELL_BACK).count(), 1, "stderr:\n{refused}");
    let normal = run(&tree, |_| {});
    assert!(!normal.contains("children start by fork"), "stderr:\n{normal}");
    // A missing program is reported the same either way.
    assert_eq!(ghost_error(&refused), ghost_error(&normal));
    assert!(
        ghost_error(&refused).ends_with("No such file or directory (os error 2)"),
        "{}",
        ghost_error(&refused)
    );
}
