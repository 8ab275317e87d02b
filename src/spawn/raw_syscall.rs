//! System calls made without libc, for a child that runs in baseinit's
//! memory at the same time as baseinit (see `spawn`): each returns its error
//! instead of storing it in `errno`, which is baseinit's own thread-local
//! variable. Through libc's wrappers, a failed `execve` of a PATH candidate
//! in the child would change `errno` under baseinit's feet.
//!
//! Why not a crate: rustix makes raw calls too, but its `execve` and
//! `sigaction` live in its experimental, doc-hidden `runtime` module (no
//! semver promise), and its `dup2` wants an `OwnedFd` to overwrite fds 0-2.
//! The child needs a dozen calls; one `asm!` block per architecture makes
//! them.
//!
//! Only x86_64 and aarch64 have that block. Elsewhere [`CONCURRENT`] is
//! false: the child is started with CLONE_VFORK (baseinit suspended until
//! it execs, as posix_spawn does), and the calls go through
//! `libc::syscall`, whose `errno` nothing reads meanwhile.
//!
//! Only the child runs these, so they are fenced as `child` is: nothing
//! that could panic.
#![deny(clippy::indexing_slicing, clippy::panic, clippy::unwrap_used, clippy::expect_used)]

use std::ffi::CStr;

use nix::libc;

/// Whether a child may run beside baseinit (no CLONE_VFORK): only where the
/// calls below bypass libc.
pub(crate) const CONCURRENT: bool = cfg!(any(target_arch = "x86_64", target_arch = "aarch64"));

/// The error number of a failed call.
pub(crate) type Errno = i32;

/// The raw call: the kernel's return value, a negated errno on failure.
#[cfg(target_arch = "x86_64")]
#[inline(always)]
unsafe fn call4(nr: libc::c_long, a: usize, b: usize, c: usize, d: usize) -> isize {
    let ret: isize;
    // SAFETY: the caller's (valid arguments for call `nr`). The kernel
    // clobbers rcx and r11 and nothing else; it may read and write memory
    // the arguments point to, which the block's default (no `nomem`)
    // allows.
    unsafe {
        std::arch::asm!(
            "syscall",
            inlateout("rax") nr as isize => ret,
            in("rdi") a,
            in("rsi") b,
            in("rdx") c,
            in("r10") d,
            lateout("rcx") _,
            lateout("r11") _,
            options(nostack, preserves_flags)
        );
    }
    ret
}

#[cfg(target_arch = "aarch64")]
#[inline(always)]
unsafe fn call4(nr: libc::c_long, a: usize, b: usize, c: usize, d: usize) -> isize {
    let ret: isize;
    // SAFETY: the caller's (valid arguments for call `nr`). The kernel
    // returns in x0 and preserves every other register.
    unsafe {
        std::arch::asm!(
            "svc 0",
            in("x8") nr,
            inlateout("x0") a as isize => ret,
            in("x1") b,
            in("x2") c,
            in("x3") d,
            options(nostack, preserves_flags)
        );
    }
    ret
}

/// Call `nr`: its result, or the errno of its failure.
#[cfg(any(target_arch = "x86_64", target_arch = "aarch64"))]
#[inline(always)]
unsafe fn call(nr: libc::c_long, a: usize, b: usize, c: usize, d: usize) -> Result<usize, Errno> {
    // SAFETY: the caller's.
    let ret = unsafe { call4(nr, a, b, c, d) };
    // The kernel's errors are -4095..=-1; anything else is a result (an
    // address may look negative as an isize).
    if (-4095..0).contains(&ret) {
        Err(-ret as Errno)
    } else {
        Ok(ret as usize)
    }
}

#[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
unsafe fn call(nr: libc::c_long, a: usize, b: usize, c: usize, d: usize) -> Result<usize, Errno> {
    // SAFETY: the caller's. Only under CLONE_VFORK (see `CONCURRENT`).
    let ret = unsafe { libc::syscall(nr, a, b, c, d) };
    if ret == -1 {
        Err(nix::errno::Errno::last_raw())
    } else {
        Ok(ret as usize)
    }
}

/// `fd` onto `target` (they must differ), without close-on-exec.
pub(crate) unsafe fn dup3(fd: i32, target: i32) -> Result<(), Errno> {
    // SAFETY: plain integers.
    unsafe { call(libc::SYS_dup3, fd as usize, target as usize, 0, 0) }.map(drop)
}

/// Clears `fd`'s close-on-exec flag.
pub(crate) unsafe fn keep_on_exec(fd: i32) -> Result<(), Errno> {
    // SAFETY: plain integers.
    unsafe { call(libc::SYS_fcntl, fd as usize, libc::F_SETFD as usize, 0, 0) }.map(drop)
}

/// Marks every fd from `first` up close-on-exec (kernels before 5.11 lack
/// the flag: EINVAL).
pub(crate) unsafe fn cloexec_from(first: u32) -> Result<(), Errno> {
    // SAFETY: plain integers.
    unsafe {
        call(
            libc::SYS_close_range,
            first as usize,
            u32::MAX as usize,
            libc::CLOSE_RANGE_CLOEXEC as usize,
            0,
        )
    }
    .map(drop)
}

pub(crate) unsafe fn chdir(dir: &CStr) -> Result<(), Errno> {
    // SAFETY: a NUL-terminated string.
    unsafe { call(libc::SYS_chdir, dir.as_ptr() as usize, 0, 0, 0) }.map(drop)
}

/// Puts the calling process in a new process group of its own.
pub(crate) unsafe fn own_process_group() -> Result<(), Errno> {
    // SAFETY: plain integers.
    unsafe { call(libc::SYS_setpgid, 0, 0, 0, 0) }.map(drop)
}

/// setgroups (unless `groups` is None: kept), setgid, setuid, in that
/// order: the kernel's calls, which change only the calling process (libc's,
/// in a process with threads, signal every thread to change too, and those
/// threads are baseinit's).
pub(crate) unsafe fn set_credentials(
    uid: libc::uid_t,
    gid: libc::gid_t,
    groups: Option<&[libc::gid_t]>,
) -> Result<(), Errno> {
    // SAFETY: a pointer and the length of what it points to; integers.
    unsafe {
        if let Some(groups) = groups {
            call(libc::SYS_setgroups, groups.len(), groups.as_ptr() as usize, 0, 0)?;
        }
        call(libc::SYS_setgid, gid as usize, 0, 0, 0)?;
        call(libc::SYS_setuid, uid as usize, 0, 0, 0)?;
    }
    Ok(())
}

/// Sets `signal`'s disposition (`SIG_DFL` or `SIG_IGN`), no flags, empty
/// mask.
pub(crate) unsafe fn set_disposition(signal: i32, disposition: libc::sighandler_t) -> Result<(), Errno> {
    // The kernel's struct sigaction: handler, flags, restorer, mask (x86_64
    // and the generic layout alike); all zero but the handler.
    let action = [disposition as u64, 0, 0, 0];
    // SAFETY: a pointer to a local of the struct's size; no old action.
    unsafe {
        call(
            libc::SYS_rt_sigaction,
            signal as usize,
            action.as_ptr() as usize,
            0,
            8, // the kernel's sigset_t: 64 signals
        )
    }
    .map(drop)
}

/// Unblocks every signal.
pub(crate) unsafe fn unblock_all_signals() -> Result<(), Errno> {
    let empty = 0u64;
    // SAFETY: a pointer to a local 8-byte set; no old mask.
    unsafe {
        call(
            libc::SYS_rt_sigprocmask,
            libc::SIG_SETMASK as usize,
            &raw const empty as usize,
            0,
            8,
        )
    }
    .map(drop)
}

/// Makes `group` the foreground process group of the terminal on `fd`
/// (tcsetpgrp).
pub(crate) unsafe fn set_foreground(fd: i32, group: i32) -> Result<(), Errno> {
    // SAFETY: a pointer to a local pid_t.
    unsafe {
        call(
            libc::SYS_ioctl,
            fd as usize,
            libc::TIOCSPGRP as usize,
            &raw const group as usize,
            0,
        )
    }
    .map(drop)
}

/// Sets this process's soft and hard limit (`[soft, hard]`) of `resource`
/// (prlimit64 on itself: setrlimit with 64-bit values everywhere).
pub(crate) unsafe fn set_rlimit(resource: u32, limit: &[u64; 2]) -> Result<(), Errno> {
    // SAFETY: a pointer to a struct rlimit64 (two u64s); no old value.
    unsafe { call(libc::SYS_prlimit64, 0, resource as usize, limit.as_ptr() as usize, 0) }.map(drop)
}

/// setpriority(PRIO_PROCESS, this process, `nice`): an absolute nice value.
pub(crate) unsafe fn set_nice(nice: i32) -> Result<(), Errno> {
    // SAFETY: plain integers (the kernel reads `nice` as an int).
    unsafe {
        call(
            libc::SYS_setpriority,
            libc::PRIO_PROCESS as usize,
            0,
            nice as isize as usize,
            0,
        )
    }
    .map(drop)
}

/// Sets the file mode creation mask (umask cannot fail).
pub(crate) unsafe fn set_umask(mask: u32) {
    // SAFETY: an integer.
    let _ = unsafe { call(libc::SYS_umask, mask as usize, 0, 0, 0) };
}

/// Opens `path` write-only, close-on-exec: its fd.
pub(crate) unsafe fn open_write(path: &CStr) -> Result<i32, Errno> {
    // SAFETY: a NUL-terminated string (openat: aarch64 has no open).
    unsafe {
        call(
            libc::SYS_openat,
            libc::AT_FDCWD as isize as usize,
            path.as_ptr() as usize,
            (libc::O_WRONLY | libc::O_CLOEXEC) as usize,
            0,
        )
    }
    .map(|fd| fd as i32)
}

pub(crate) unsafe fn close(fd: i32) -> Result<(), Errno> {
    // SAFETY: an integer.
    unsafe { call(libc::SYS_close, fd as usize, 0, 0, 0) }.map(drop)
}

pub(crate) fn getpid() -> i32 {
    // SAFETY: no arguments; getpid cannot fail.
    unsafe { call(libc::SYS_getpid, 0, 0, 0, 0) }.map_or(0, |pid| pid as i32)
}

/// One write(2) of `bytes`: how many went.
pub(crate) unsafe fn write(fd: i32, bytes: &[u8]) -> Result<usize, Errno> {
    // SAFETY: a pointer and the length of what it points to.
    unsafe { call(libc::SYS_write, fd as usize, bytes.as_ptr() as usize, bytes.len(), 0) }
}

/// Replaces the program; returns only with why it could not.
///
/// # Safety
/// `argv` and `envp` are arrays of pointers to NUL-terminated strings, each
/// ended by a null pointer.
pub(crate) unsafe fn execve(file: &CStr, argv: *const *const libc::c_char, envp: *const *const libc::c_char) -> Errno {
    // SAFETY: the caller's.
    match unsafe {
        call(
            libc::SYS_execve,
            file.as_ptr() as usize,
            argv as usize,
            envp as usize,
            0,
        )
    } {
        Err(errno) => errno,
        Ok(_) => libc::EINVAL, // execve returns only on failure
    }
}

/// Ends the process with `code`, as `_exit` does.
pub(crate) fn exit(code: i32) -> ! {
    loop {
        // SAFETY: an integer; exit_group does not return.
        let _ = unsafe { call(libc::SYS_exit_group, code as usize, 0, 0, 0) };
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, reason = "tests")]
mod tests {
    use super::*;

    // The child's calls, checked here in the test process where each is
    // harmless, for what they return (the errno, not -1) and what they do.

    #[test]
    fn errors_come_back_as_errno_values() {
        // SAFETY: calls on fds and paths this test owns or that do not exist.
        unsafe {
            assert_eq!(dup3(-1, 1000), Err(libc::EBADF));
            assert_eq!(chdir(c"/no/such/dir"), Err(libc::ENOENT));
            let argv = [std::ptr::null()];
            assert_eq!(execve(c"/no/such/program", argv.as_ptr(), argv.as_ptr()), libc::ENOENT);
            assert_eq!(execve(c"/", argv.as_ptr(), argv.as_ptr()), libc::EACCES);
            assert_eq!(write(-1, b"x"), Err(libc::EBADF));
            assert_eq!(set_disposition(libc::SIGKILL, libc::SIG_IGN), Err(libc::EINVAL));
        }
    }

    #[test]
    fn a_failed_call_leaves_errno_alone() {
        // The point of the module: errno is the caller's thread-local, and
        // in a child sharing baseinit's memory it is baseinit's.
        nix::errno::Errno::set_raw(libc::EDOM);
        // SAFETY: calls that fail on arguments that do not exist.
        unsafe {
            assert_eq!(chdir(c"/no/such/dir"), Err(libc::ENOENT));
            let argv = [std::ptr::null()];
            assert_eq!(execve(c"/no/such/program", argv.as_ptr(), argv.as_ptr()), libc::ENOENT);
            assert_eq!(dup3(-1, 1000), Err(libc::EBADF));
        }
        assert_eq!(nix::errno::Errno::last_raw(), libc::EDOM);
    }

    #[test]
    fn fd_calls_do_what_they_say() {
        let (reader, writer) = nix::unistd::pipe().unwrap();
        use std::os::fd::AsRawFd;
        let w = writer.as_raw_fd();
        // SAFETY: fds this test owns; the copies are closed below.
        unsafe {
            let copy = libc::fcntl(w, libc::F_DUPFD_CLOEXEC, 100);
            assert!(copy >= 100);
            keep_on_exec(copy).unwrap();
            assert_eq!(libc::fcntl(copy, libc::F_GETFD) & libc::FD_CLOEXEC, 0);
            let target = copy + 1;
            dup3(copy, target).unwrap();
            assert_eq!(write(target, b"ok").unwrap(), 2);
            libc::close(copy);
            libc::close(target);
        }
        let mut buf = [0u8; 2];
        assert_eq!(nix::unistd::read(&reader, &mut buf).unwrap(), 2);
        assert_eq!(&buf, b"ok");
        assert_eq!(getpid(), std::process::id() as i32);
    }

    #[test]
    fn limit_calls_return_their_errno() {
        let (soft, hard) = nix::sys::resource::getrlimit(nix::sys::resource::Resource::RLIMIT_CORE).unwrap();
        nix::errno::Errno::set_raw(libc::EDOM);
        // SAFETY: calls that fail, or set this process's core limit to what
        // it is; a path that does not exist.
        unsafe {
            assert_eq!(set_rlimit(9999, &[0, 0]), Err(libc::EINVAL));
            if soft > 0 {
                assert_eq!(set_rlimit(4, &[soft, soft - 1]), Err(libc::EINVAL), "soft above hard");
            }
            assert_eq!(set_rlimit(4, &[soft, hard]), Ok(()));
            assert_eq!(open_write(c"/no/such/file"), Err(libc::ENOENT));
            assert_eq!(close(-1), Err(libc::EBADF));
        }
        assert_eq!(nix::errno::Errno::last_raw(), libc::EDOM);
    }
}
