//! chpst's command lines: runit's getopt (djb's sgetopt), its number
//! parsing, and the usage of chpst and of each of its other names.

use std::ffi::OsString;
use std::os::unix::ffi::OsStrExt;
use std::path::PathBuf;

use super::limits::{self, Limits};

/// runit's exit status for a usage error.
pub const USAGE_EXIT: i32 = 100;

/// The usage lines after `usage: NAME`, as Debian's runit 2.1.2 prints them.
pub const USAGE_CHPST: &str = " [-vVP012] [-u user[:group]] [-U user[:group]] [-b argv0] [-e dir] [-/ root] [-n nice] [-l|-L lock] [-m n] [-d n] [-o n] [-p n] [-f n] [-c n] [-t n] prog";
pub const USAGE_SETUIDGID: &str = " account child";
pub const USAGE_ENVUIDGID: &str = " account child";
pub const USAGE_ENVDIR: &str = " dir child";
pub const USAGE_PGRPHACK: &str = " child";
pub const USAGE_SETLOCK: &str = " [ -nNxX ] file program [ arg ... ]";
pub const USAGE_SOFTLIMIT: &str = " [-a allbytes] [-c corebytes] [-d databytes] [-f filebytes] [-l lockbytes] [-m membytes] [-o openfiles] [-p processes] [-r residentbytes] [-s stackbytes] [-t cpusecs] child";

/// chpst's options (Debian's runit 2.1.2; `r` is taken, undocumented).
const CHPST_OPTIONS: &[u8] = b"u:U:b:e:m:d:o:p:f:c:r:t:/:n:l:L:vP012V";
const SOFTLIMIT_OPTIONS: &[u8] = b"a:c:d:f:l:m:o:p:r:s:t:";
const SETLOCK_OPTIONS: &[u8] = b"nNxX";

/// Whether `letter` is a chpst option, and whether it takes an argument.
pub fn option(letter: u8) -> Option<bool> {
    Getopt::new(&[], CHPST_OPTIONS).takes(letter)
}

/// A usage error: what is printed before `usage: NAME`, and which usage.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Usage {
    pub before: Vec<u8>,
    pub usage: &'static str,
}

impl Usage {
    fn of(usage: &'static str) -> Usage {
        Usage {
            before: Vec::new(),
            usage,
        }
    }

    /// All of it, as runit's strerr_die4x writes it (with its blank line).
    pub fn text(&self, progname: &str) -> Vec<u8> {
        let mut text = self.before.clone();
        text.extend_from_slice(format!("usage: {progname}{}\n\n", self.usage).as_bytes());
        text
    }
}

/// Waiting for the lock, or giving up at once.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LockWait {
    Wait,
    NoWait,
}

/// What `chpst` was asked to do.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Options {
    /// `-u`: become this `user[:group…]` or `:uid:gid…`.
    pub set_user: Option<Vec<u8>>,
    /// `-U`: set `UID` and `GID` from it.
    pub env_user: Option<Vec<u8>>,
    /// `-b`: the program's argv[0].
    pub argv0: Option<OsString>,
    /// `-e`: the envdir.
    pub env_dir: Option<PathBuf>,
    pub verbose: bool,
    /// `-P`: a session (and process group) of its own.
    pub pgrp: bool,
    /// `-0`, `-1`, `-2`: close stdin, stdout, stderr.
    pub close: [bool; 3],
    pub limits: Limits,
    /// `-n`: the increment of the nice value.
    pub nice: i64,
    /// `-l` (wait) or `-L` (do not).
    pub lock: Option<(PathBuf, LockWait)>,
    /// `-/`: the new root.
    pub root: Option<PathBuf>,
    /// The program and its arguments.
    pub program: Vec<OsString>,
}

/// One step of djb's getopt.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Got<'a> {
    Opt(u8, Option<&'a [u8]>),
    /// A letter not in the list (`illegal option`).
    Illegal(u8),
    /// An option's argument is missing at the end.
    Missing(u8),
    Done,
}

/// djb's sgetopt over `args` (args[0] is the program name): options come
/// first, clustered or not, their argument attached or next; `--` ends them
/// and is dropped; `-` alone ends them and is kept, as the program.
struct Getopt<'a> {
    args: &'a [OsString],
    spec: &'static [u8],
    index: usize,
    pos: usize,
}

impl<'a> Getopt<'a> {
    fn new(args: &'a [OsString], spec: &'static [u8]) -> Self {
        Getopt {
            args,
            spec,
            index: 1,
            pos: 0,
        }
    }

    /// Whether `c` is an option, and whether it takes an argument.
    fn takes(&self, c: u8) -> Option<bool> {
        let mut i = 0;
        while let Some(&letter) = self.spec.get(i) {
            let argument = self.spec.get(i + 1) == Some(&b':');
            if letter == c && letter != b':' {
                return Some(argument);
            }
            i += if argument { 2 } else { 1 };
        }
        None
    }

    fn next(&mut self) -> Got<'a> {
        let args = self.args;
        let Some(mut arg) = args.get(self.index).map(|a| a.as_bytes()) else {
            return Got::Done;
        };
        if self.pos != 0 && self.pos >= arg.len() {
            self.index += 1;
            self.pos = 0;
            match args.get(self.index) {
                Some(next) => arg = next.as_bytes(),
                None => return Got::Done,
            }
        }
        if self.pos == 0 {
            if arg.first() != Some(&b'-') {
                return Got::Done;
            }
            match arg.get(1) {
                None => return Got::Done,
                Some(b'-') => {
                    self.index += 1;
                    return Got::Done;
                }
                Some(_) => self.pos = 1,
            }
        }
        let Some(&c) = arg.get(self.pos) else {
            return Got::Done;
        };
        self.pos += 1;
        match self.takes(c) {
            None => Got::Illegal(c),
            Some(false) => Got::Opt(c, None),
            Some(true) => {
                let attached = arg.get(self.pos..).unwrap_or_default();
                self.index += 1;
                self.pos = 0;
                if !attached.is_empty() {
                    return Got::Opt(c, Some(attached));
                }
                match args.get(self.index) {
                    Some(next) => {
                        self.index += 1;
                        Got::Opt(c, Some(next.as_bytes()))
                    }
                    None => Got::Missing(c),
                }
            }
        }
    }

    /// The arguments after the options.
    fn rest(&self) -> &'a [OsString] {
        self.args.get(self.index..).unwrap_or_default()
    }

    /// What sgetopt prints for a bad option, named by argv[0]'s file name.
    fn complaint(&self, got: Got) -> Vec<u8> {
        let name = self
            .args
            .first()
            .map(|a| a.as_bytes())
            .map(|a| a.rsplit(|&b| b == b'/').next().unwrap_or(a))
            .unwrap_or_default();
        let (what, c) = match got {
            Got::Missing(c) => (&b": option requires an argument -- "[..], c),
            Got::Illegal(c) => (&b": illegal option -- "[..], c),
            _ => return Vec::new(),
        };
        [name, what, &[c, b'\n']].concat()
    }
}

/// runit's scan_ulong over the whole argument: decimal digits only (none
/// is 0), wrapping as C's unsigned long does.
pub fn number(arg: &[u8]) -> Option<u64> {
    let (value, used) = scan_ulong(arg);
    (used == arg.len()).then_some(value)
}

/// The leading decimal digits of `s` (wrapping) and how many there are.
pub fn scan_ulong(s: &[u8]) -> (u64, usize) {
    let used = s.iter().take_while(|b| b.is_ascii_digit()).count();
    let value = s[..used]
        .iter()
        .fold(0u64, |n, &d| n.wrapping_mul(10).wrapping_add(u64::from(d - b'0')));
    (value, used)
}

/// `-n`'s argument: digits with an optional sign.
fn nice(arg: &[u8]) -> Option<i64> {
    match arg.split_first() {
        Some((b'-', digits)) => number(digits).map(|n| (n as i64).wrapping_neg()),
        Some((b'+', digits)) => number(digits).map(|n| n as i64),
        _ => number(arg).map(|n| n as i64),
    }
}

fn path(arg: &[u8]) -> PathBuf {
    PathBuf::from(std::ffi::OsStr::from_bytes(arg))
}

/// Parses chpst's command line. `Err` is a usage error (exit 100).
pub fn chpst(args: &[OsString]) -> Result<Options, Usage> {
    let mut options = Options {
        limits: Limits::default(),
        ..Options::default()
    };
    let mut getopt = Getopt::new(args, CHPST_OPTIONS);
    loop {
        let got = getopt.next();
        let (c, arg) = match got {
            Got::Done => break,
            Got::Illegal(_) | Got::Missing(_) => {
                return Err(Usage {
                    before: getopt.complaint(got),
                    usage: USAGE_CHPST,
                });
            }
            Got::Opt(c, arg) => (c, arg.unwrap_or_default()),
        };
        let limit = || number(arg).map(|n| n as i64).ok_or(Usage::of(USAGE_CHPST));
        match c {
            b'u' => options.set_user = Some(arg.to_vec()),
            b'U' => options.env_user = Some(arg.to_vec()),
            b'b' => options.argv0 = Some(OsString::from(std::ffi::OsStr::from_bytes(arg))),
            b'e' => options.env_dir = Some(path(arg)),
            b'm' => options.limits.memory(limit()?),
            b'd' => options.limits.data = limit()?,
            b'o' => options.limits.nofile = limit()?,
            b'p' => options.limits.nproc = limit()?,
            b'f' => options.limits.fsize = limit()?,
            b'c' => options.limits.core = limit()?,
            b'r' => options.limits.rss = limit()?,
            b't' => options.limits.cpu = limit()?,
            b'/' => options.root = Some(path(arg)),
            b'n' => options.nice = nice(arg).ok_or(Usage::of(USAGE_CHPST))?,
            b'l' | b'L' => {
                if options.lock.is_some() {
                    return Err(Usage::of(USAGE_CHPST));
                }
                let wait = if c == b'l' { LockWait::Wait } else { LockWait::NoWait };
                options.lock = Some((path(arg), wait));
            }
            b'v' => options.verbose = true,
            b'P' => options.pgrp = true,
            b'0' => options.close[0] = true,
            b'1' => options.close[1] = true,
            b'2' => options.close[2] = true,
            // -V: the version line, then the usage.
            _ => {
                let version = format!("$Id: baseinit chpst {} $\n", env!("CARGO_PKG_VERSION"));
                return Err(Usage {
                    before: version.into_bytes(),
                    usage: USAGE_CHPST,
                });
            }
        }
    }
    options.program = getopt.rest().to_vec();
    if options.program.is_empty() {
        return Err(Usage::of(USAGE_CHPST));
    }
    Ok(options)
}

/// `NAME ARG CHILD…` (setuidgid, envuidgid, envdir): no options at all.
pub fn one_then_child<'a>(args: &'a [OsString], usage: &'static str) -> Result<(&'a OsString, &'a [OsString]), Usage> {
    match args {
        [_, first, child @ ..] if !child.is_empty() => Ok((first, child)),
        _ => Err(Usage::of(usage)),
    }
}

/// `pgrphack CHILD…`.
pub fn child(args: &[OsString]) -> Result<&[OsString], Usage> {
    match args {
        [_, child @ ..] if !child.is_empty() => Ok(child),
        _ => Err(Usage::of(USAGE_PGRPHACK)),
    }
}

/// softlimit's options and child. An argument that is not a number (nor
/// `=`, the hard limit) prints chpst's own usage, as runit does.
pub fn softlimit(args: &[OsString]) -> Result<(Limits, &[OsString]), Usage> {
    let mut limits = Limits::default();
    let mut getopt = Getopt::new(args, SOFTLIMIT_OPTIONS);
    loop {
        let got = getopt.next();
        let (c, arg) = match got {
            Got::Done => break,
            Got::Illegal(_) | Got::Missing(_) => {
                return Err(Usage {
                    before: getopt.complaint(got),
                    usage: USAGE_SOFTLIMIT,
                });
            }
            Got::Opt(c, arg) => (c, arg.unwrap_or_default()),
        };
        let value = if arg == b"=" {
            limits::HARD
        } else {
            number(arg).ok_or(Usage::of(USAGE_CHPST))? as i64
        };
        match c {
            b'a' => limits.address_space = value,
            b'c' => limits.core = value,
            b'd' => limits.data = value,
            b'f' => limits.fsize = value,
            b'l' => limits.memlock = value,
            b'm' => limits.memory(value),
            b'o' => limits.nofile = value,
            b'p' => limits.nproc = value,
            b'r' => limits.rss = value,
            b's' => limits.stack = value,
            _ => limits.cpu = value,
        }
    }
    match getopt.rest() {
        [] => Err(Usage::of(USAGE_SOFTLIMIT)),
        child => Ok((limits, child)),
    }
}

/// What setlock was asked for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Setlock<'a> {
    pub file: &'a OsString,
    pub wait: LockWait,
    /// `-x`: exit 0, silently, when the lock cannot be had or the program
    /// cannot be run.
    pub quiet: bool,
    pub child: &'a [OsString],
}

/// setlock's options, file and child. As daemontools' setlock (which
/// runit's chpst documents it emulates): `-n` gives up at once when the lock
/// is held, `-N` (the default) waits.
pub fn setlock(args: &[OsString]) -> Result<Setlock<'_>, Usage> {
    let (mut wait, mut quiet) = (LockWait::Wait, false);
    let mut getopt = Getopt::new(args, SETLOCK_OPTIONS);
    loop {
        match getopt.next() {
            Got::Done => break,
            Got::Opt(b'n', _) => wait = LockWait::NoWait,
            Got::Opt(b'N', _) => wait = LockWait::Wait,
            Got::Opt(b'x', _) => quiet = true,
            Got::Opt(b'X', _) => quiet = false,
            got => {
                return Err(Usage {
                    before: getopt.complaint(got),
                    usage: USAGE_SETLOCK,
                });
            }
        }
    }
    match getopt.rest() {
        [file, child @ ..] if !child.is_empty() => Ok(Setlock {
            file,
            wait,
            quiet,
            child,
        }),
        _ => Err(Usage::of(USAGE_SETLOCK)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn os(list: &[&str]) -> Vec<OsString> {
        list.iter().map(OsString::from).collect()
    }

    fn parse(list: &[&str]) -> Result<Options, Usage> {
        chpst(&os(list))
    }

    fn complaint(list: &[&str]) -> String {
        String::from_utf8(parse(list).unwrap_err().before).unwrap()
    }

    #[test]
    fn options_come_first_clustered_or_not_with_attached_or_separate_arguments() {
        let o = parse(&[
            "chpst",
            "-vP012",
            "-unobody:nogroup",
            "-U",
            "www",
            "-e",
            "env",
            "prog",
            "-x",
        ])
        .unwrap();
        assert!(o.verbose && o.pgrp && o.close == [true; 3]);
        assert_eq!(o.set_user.as_deref(), Some(&b"nobody:nogroup"[..]));
        assert_eq!(o.env_user.as_deref(), Some(&b"www"[..]));
        assert_eq!(o.env_dir, Some(PathBuf::from("env")));
        assert_eq!(o.program, os(&["prog", "-x"]));
        let o = parse(&["chpst", "-/", "/srv", "-b", "name", "-Llk", "--", "-prog"]).unwrap();
        assert_eq!(o.root, Some(PathBuf::from("/srv")));
        assert_eq!(o.argv0, Some(OsString::from("name")));
        assert_eq!(o.lock, Some((PathBuf::from("lk"), LockWait::NoWait)));
        assert_eq!(o.program, os(&["-prog"]));
        // `-` alone ends the options and is the program.
        assert_eq!(parse(&["chpst", "-v", "-", "x"]).unwrap().program, os(&["-", "x"]));
        // An option's argument may start with `-`.
        assert_eq!(
            parse(&["chpst", "-u", "-v", "p"]).unwrap().set_user.as_deref(),
            Some(&b"-v"[..])
        );
    }

    #[test]
    fn limits_and_nice() {
        let o = parse(&[
            "chpst", "-m", "1000", "-d", "5", "-o20", "-p", "3", "-f4", "-c0", "-r", "6", "-t7", "p",
        ])
        .unwrap();
        let l = o.limits;
        assert_eq!((l.data, l.stack, l.memlock, l.address_space), (5, 1000, 1000, 1000));
        assert_eq!((l.nofile, l.nproc, l.fsize, l.core, l.rss, l.cpu), (20, 3, 4, 0, 6, 7));
        // An empty number is 0; wrapping as unsigned long does.
        assert_eq!(parse(&["chpst", "-o", "", "p"]).unwrap().limits.nofile, 0);
        assert_eq!(
            parse(&["chpst", "-o", "18446744073709551615", "p"])
                .unwrap()
                .limits
                .nofile,
            -1
        );
        assert_eq!(
            parse(&["chpst", "-o", "18446744073709551616", "p"])
                .unwrap()
                .limits
                .nofile,
            0
        );
        assert_eq!(parse(&["chpst", "p"]).unwrap().limits, Limits::default());
        for (arg, want) in [("5", 5), ("+5", 5), ("-5", -5), ("", 0), ("-", 0), ("+", 0)] {
            assert_eq!(parse(&["chpst", "-n", arg, "p"]).unwrap().nice, want, "{arg}");
        }
        for bad in [["-o", "1k"], ["-m", "-1"], ["-n", "--5"], ["-n", "+-5"], ["-t", " 1"]] {
            let err = parse(&["chpst", bad[0], bad[1], "p"]).unwrap_err();
            assert_eq!(err, Usage::of(USAGE_CHPST), "{bad:?}");
        }
    }

    #[test]
    fn usage_errors_say_what_sgetopt_says() {
        assert_eq!(
            complaint(&["/usr/bin/chpst", "-C", "/", "p"]),
            "chpst: illegal option -- C\n"
        );
        assert_eq!(complaint(&["chpst", "-vx", "p"]), "chpst: illegal option -- x\n");
        assert_eq!(complaint(&["chpst", "-:"]), "chpst: illegal option -- :\n");
        assert_eq!(complaint(&["chpst", "-u"]), "chpst: option requires an argument -- u\n");
        assert_eq!(
            complaint(&["chpst", "-v", "-e"]),
            "chpst: option requires an argument -- e\n"
        );
        assert_eq!(complaint(&["chpst"]), "");
        assert_eq!(complaint(&["chpst", "-v"]), "");
        assert_eq!(complaint(&["chpst", "--"]), "");
        assert_eq!(complaint(&["chpst", "-l", "a", "-L", "b", "p"]), "");
        assert!(complaint(&["chpst", "-V", "p"]).starts_with("$Id: baseinit chpst "));
        let usage = parse(&["chpst"]).unwrap_err().text("chpst");
        assert_eq!(
            String::from_utf8(usage).unwrap(),
            format!("usage: chpst{USAGE_CHPST}\n\n")
        );
    }

    #[test]
    fn the_other_names_take_their_daemontools_arguments() {
        let args = os(&["envdir", "d", "p", "a"]);
        let (dir, rest) = one_then_child(&args, USAGE_ENVDIR).unwrap();
        assert_eq!((dir, rest), (&OsString::from("d"), &args[2..]));
        assert!(one_then_child(&os(&["envdir", "d"]), USAGE_ENVDIR).is_err());
        assert!(one_then_child(&os(&["envdir"]), USAGE_ENVDIR).is_err());
        assert_eq!(child(&os(&["pgrphack", "p"])).unwrap(), &os(&["p"])[..]);
        assert!(child(&os(&["pgrphack"])).is_err());

        let args = os(&["softlimit", "-o", "10", "-m=", "-s", "5", "p"]);
        let (limits, rest) = softlimit(&args).unwrap();
        assert_eq!(
            (limits.nofile, limits.data, limits.stack, limits.address_space),
            (10, -1, 5, -1)
        );
        assert_eq!(rest, &os(&["p"])[..]);
        assert_eq!(
            softlimit(&os(&["softlimit", "-o", "x", "p"])).unwrap_err(),
            Usage::of(USAGE_CHPST)
        );
        let err = softlimit(&os(&["softlimit", "-u", "1", "p"])).unwrap_err();
        assert_eq!(
            (err.before, err.usage),
            (b"softlimit: illegal option -- u\n".to_vec(), USAGE_SOFTLIMIT)
        );
        assert_eq!(
            softlimit(&os(&["softlimit", "-o", "1"])).unwrap_err(),
            Usage::of(USAGE_SOFTLIMIT)
        );

        let args = os(&["setlock", "-nx", "f", "p"]);
        let lock = setlock(&args).unwrap();
        assert_eq!(
            (lock.file, lock.wait, lock.quiet),
            (&OsString::from("f"), LockWait::NoWait, true)
        );
        let args = os(&["setlock", "-n", "-N", "-x", "-X", "f", "p"]);
        let lock = setlock(&args).unwrap();
        assert_eq!((lock.wait, lock.quiet), (LockWait::Wait, false));
        assert_eq!(setlock(&os(&["setlock", "f"])).unwrap_err(), Usage::of(USAGE_SETLOCK));
        assert_eq!(
            setlock(&os(&["setlock", "-q", "f", "p"])).unwrap_err().usage,
            USAGE_SETLOCK
        );
    }

    #[test]
    fn numbers_are_scanned_as_runit_does() {
        assert_eq!(scan_ulong(b"12:3"), (12, 2));
        assert_eq!(scan_ulong(b":3"), (0, 0));
        assert_eq!(number(b"007"), Some(7));
        assert_eq!(number(b""), Some(0));
        assert_eq!(number(b"1 "), None);
    }
}
