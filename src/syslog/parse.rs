//! One syslog datagram in, one [`Message`] out: priority, tag, pid and the
//! text, as local senders write them. Pure; never fails (a datagram it cannot
//! read is all text).
//!
//! What local senders write (looked at on Debian bookworm, util-linux 2.38,
//! glibc 2.36, busybox 1.35; musl's syslog(3) writes what glibc's does):
//! - glibc's and musl's `syslog(3)`, busybox `logger`, util-linux `logger
//!   -u SOCKET` (its default for a local socket):
//!   `<13>Dec  6 10:07:38 mytag[42]: hello` (RFC 3164 without a host);
//! - `logger --rfc3164`: `<13>Dec  6 10:07:38 myhost mytag: hello`;
//! - `logger --rfc5424`: `<13>1 2026-12-06T10:07:38.873872+00:00 myhost
//!   mytag 42 - [timeQuality tzKnown="1"] hello`;
//! - Python's `SysLogHandler`: `<14>hello` (no timestamp; a tag only if
//!   the program puts one in the text).
//!
//! Only what the relay shows is kept: the sender's timestamp and host are
//! skipped (the relay stamps lines itself, and every sender is local), and
//! so is RFC 5424's structured data and MSGID.

use std::borrow::Cow;

/// The longest tag kept (longer ones are cut): RFC 5424's APP-NAME is 48
/// characters at most, and a tag goes into every line's prefix.
pub const MAX_TAG: usize = 64;

/// One datagram, read.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Message<'a> {
    /// 0 (`kern`) to 23 (`local7`).
    pub facility: u8,
    /// 0 (`emerg`) to 7 (`debug`).
    pub severity: u8,
    /// The sender's tag (ident, APP-NAME), when it gave one: no byte at or
    /// below space, no DEL, at most [`MAX_TAG`] bytes.
    pub tag: Option<&'a [u8]>,
    pub pid: Option<u32>,
    /// The message: no trailing newline, CR or NUL; every other control
    /// character but tab written as a visible escape (`\n`, `\r`, `\xHH`),
    /// so that a datagram is always one line. Bytes that are not UTF-8 are
    /// kept as they are.
    pub text: Cow<'a, [u8]>,
}

/// What a datagram without a valid `<PRI>` gets: user.notice.
const DEFAULT_PRI: u8 = 13;

/// Reads one datagram (never fails: without a header, all of it is text).
pub fn parse(datagram: &[u8]) -> Message<'_> {
    let (pri, rest) = match priority(datagram) {
        Some((pri, rest)) => (pri, rest),
        None => {
            return message(DEFAULT_PRI, None, None, datagram);
        }
    };
    if let Some((tag, pid, text)) = rfc5424(rest) {
        return message(pri, tag, pid, text);
    }
    let (tag, pid, text) = rfc3164(rest);
    message(pri, tag, pid, text)
}

fn message<'a>(pri: u8, tag: Option<&'a [u8]>, pid: Option<u32>, text: &'a [u8]) -> Message<'a> {
    Message {
        facility: pri >> 3,
        severity: pri & 7,
        tag: tag.map(|t| &t[..t.len().min(MAX_TAG)]),
        pid,
        text: clean(text),
    }
}

/// `<PRI>`: 1 to 3 digits, at most 191 (facility 23, severity 7); the rest
/// after it.
fn priority(datagram: &[u8]) -> Option<(u8, &[u8])> {
    let rest = datagram.strip_prefix(b"<")?;
    let end = rest.iter().position(|&b| b == b'>')?;
    let digits = &rest[..end];
    if digits.is_empty() || digits.len() > 3 || !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    let pri = digits.iter().fold(0u16, |n, &d| n * 10 + u16::from(d - b'0'));
    let pri = u8::try_from(pri).ok().filter(|&p| p <= 191)?;
    Some((pri, &rest[end + 1..]))
}

type Parts<'a> = (Option<&'a [u8]>, Option<u32>, &'a [u8]);

/// RFC 5424 after the PRI: `VERSION SP TIMESTAMP SP HOSTNAME SP APP-NAME SP
/// PROCID SP MSGID SP STRUCTURED-DATA [SP MSG]`, `-` for a nil value. None
/// when it is not that (then it is read as RFC 3164: `<13>1 thing` from a
/// sender without a timestamp is text).
fn rfc5424(rest: &[u8]) -> Option<Parts<'_>> {
    let (version, rest) = field(rest)?;
    if version.is_empty() || version.len() > 3 || version[0] == b'0' || !version.iter().all(u8::is_ascii_digit) {
        return None;
    }
    let (_timestamp, rest) = field(rest)?;
    let (_host, rest) = field(rest)?;
    let (app, rest) = field(rest)?;
    let (procid, rest) = field(rest)?;
    let (_msgid, rest) = field(rest)?;
    let rest = structured_data(rest)?;
    let text = match rest {
        [] => rest,
        [b' ', text @ ..] => text,
        _ => return None,
    };
    // A BOM says the text is UTF-8; it is not part of it.
    let text = text.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(text);
    let tag = (app != b"-").then_some(app);
    if tag.is_some_and(|t| !t.iter().all(|&b| is_tag_byte(b))) {
        return None;
    }
    let pid = (procid != b"-").then(|| number(procid)).flatten();
    Some((tag, pid, text))
}

/// A header field: up to the next space, which must be there.
fn field(bytes: &[u8]) -> Option<(&[u8], &[u8])> {
    let end = bytes.iter().position(|&b| b == b' ')?;
    (end > 0).then(|| (&bytes[..end], &bytes[end + 1..]))
}

/// Skips STRUCTURED-DATA: `-`, or one or more `[ID PARAM="VALUE" ...]`
/// elements, where `\]`, `\"` and `\\` are escapes inside a value. What
/// follows it; None when it is not well formed.
fn structured_data(bytes: &[u8]) -> Option<&[u8]> {
    if let Some(rest) = bytes.strip_prefix(b"-") {
        return Some(rest);
    }
    let mut at = 0;
    while bytes.get(at) == Some(&b'[') {
        let mut quoted = false;
        at += 1;
        loop {
            match *bytes.get(at)? {
                b'\\' if quoted => at += 1,
                b'"' => quoted = !quoted,
                b']' if !quoted => break,
                _ => {}
            }
            at += 1;
        }
        at += 1;
    }
    (at > 0).then(|| &bytes[at..])
}

/// RFC 3164 as local senders write it: `[TIMESTAMP SP [HOST SP]] [TAG[PID]:
/// SP] MSG`. A host is only looked for after a timestamp, and only when the
/// word after it is a tag (`vm mytag: hello`), as RFC 3164 places it.
fn rfc3164(rest: &[u8]) -> Parts<'_> {
    let (stamped, rest) = match timestamp(rest) {
        Some(after) => (true, after),
        None => (false, rest),
    };
    if let Some(parts) = tag(rest) {
        return parts;
    }
    if stamped
        && let Some(space) = rest.iter().position(|&b| b == b' ')
        && space > 0
        && let Some(parts) = tag(&rest[space + 1..])
    {
        return parts;
    }
    (None, None, rest)
}

/// What follows a timestamp and its space: `Mmm dd hh:mm:ss ` (the day
/// padded with a space or a zero), or an RFC 3339 one (`2026-12-06T…`, as
/// rsyslog's high-precision format writes where RFC 3164 puts it).
fn timestamp(bytes: &[u8]) -> Option<&[u8]> {
    const MONTHS: [&[u8]; 12] = [
        b"Jan", b"Feb", b"Mar", b"Apr", b"May", b"Jun", b"Jul", b"Aug", b"Sep", b"Oct", b"Nov", b"Dec",
    ];
    let digit = |i: usize| bytes.get(i).is_some_and(u8::is_ascii_digit);
    if bytes.len() >= 16 && MONTHS.contains(&&bytes[..3]) {
        let day = bytes[3] == b' ' && (bytes[4] == b' ' || digit(4)) && digit(5);
        let time = bytes[6] == b' '
            && digit(7)
            && digit(8)
            && bytes[9] == b':'
            && digit(10)
            && digit(11)
            && bytes[12] == b':'
            && digit(13)
            && digit(14)
            && bytes[15] == b' ';
        if day && time {
            return Some(&bytes[16..]);
        }
    }
    let rfc3339 = (0..4).all(digit) && bytes.get(4) == Some(&b'-') && bytes.get(10) == Some(&b'T');
    if rfc3339 {
        let (_, rest) = field(bytes)?;
        return Some(rest);
    }
    None
}

/// `NAME:`, `NAME[PID]:` or `NAME[PID]` at the start, then a space or the
/// end; NAME has no byte at or below space, no `[`, `]` or `:`. An empty
/// NAME before `:` (musl's syslog(3) with no ident) is no tag. The tag,
/// the pid, and the text after it.
fn tag(bytes: &[u8]) -> Option<Parts<'_>> {
    let end = bytes
        .iter()
        .position(|&b| !is_tag_byte(b) || b == b'[' || b == b']' || b == b':')
        .unwrap_or(bytes.len());
    let name = &bytes[..end];
    let mut rest = &bytes[end..];
    let mut pid = None;
    let mut bracketed = false;
    if let Some(inside) = rest.strip_prefix(b"[") {
        let close = inside.iter().position(|&b| b == b']')?;
        pid = number(&inside[..close]);
        rest = &inside[close + 1..];
        bracketed = true;
    }
    let rest = match rest.strip_prefix(b":") {
        Some(after) => after,
        None if bracketed && !name.is_empty() => rest,
        None => return None,
    };
    let text = match rest {
        [] => rest,
        [b' ', text @ ..] => text,
        _ => return None,
    };
    Some(((!name.is_empty()).then_some(name), pid, text))
}

/// A byte a tag may hold: printable, not a space.
fn is_tag_byte(b: u8) -> bool {
    b > b' ' && b != 0x7f
}

fn number(digits: &[u8]) -> Option<u32> {
    if digits.is_empty() || digits.len() > 10 || !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    digits
        .iter()
        .try_fold(0u32, |n, &d| n.checked_mul(10)?.checked_add(u32::from(d - b'0')))
}

/// The text without trailing newlines, CRs and NULs, and with every other
/// control character but tab made a visible escape: a datagram must stay
/// one line.
fn clean(text: &[u8]) -> Cow<'_, [u8]> {
    let end = text
        .iter()
        .rposition(|&b| !matches!(b, b'\n' | b'\r' | 0))
        .map_or(0, |at| at + 1);
    let text = &text[..end];
    let control = |b: u8| (b < 0x20 && b != b'\t') || b == 0x7f;
    if !text.iter().any(|&b| control(b)) {
        return Cow::Borrowed(text);
    }
    let mut out = Vec::with_capacity(text.len() + 16);
    for &b in text {
        match b {
            b'\n' => out.extend_from_slice(b"\\n"),
            b'\r' => out.extend_from_slice(b"\\r"),
            b if control(b) => {
                const HEX: &[u8; 16] = b"0123456789abcdef";
                out.extend_from_slice(b"\\x");
                out.push(HEX[usize::from(b >> 4)]);
                out.push(HEX[usize::from(b & 0xf)]);
            }
            b => out.push(b),
        }
    }
    Cow::Owned(out)
}

/// syslog(3)'s name of a facility.
pub fn facility_name(facility: u8) -> &'static str {
    const NAMES: [&str; 24] = [
        "kern",
        "user",
        "mail",
        "daemon",
        "auth",
        "syslog",
        "lpr",
        "news",
        "uucp",
        "cron",
        "authpriv",
        "ftp",
        "ntp",
        "security",
        "console",
        "solaris-cron",
        "local0",
        "local1",
        "local2",
        "local3",
        "local4",
        "local5",
        "local6",
        "local7",
    ];
    NAMES.get(usize::from(facility)).copied().unwrap_or("unknown")
}

/// syslog(3)'s name of a severity.
pub fn severity_name(severity: u8) -> &'static str {
    const NAMES: [&str; 8] = ["emerg", "alert", "crit", "err", "warning", "notice", "info", "debug"];
    NAMES.get(usize::from(severity)).copied().unwrap_or("unknown")
}

/// The level of baseinit's JSON lines a severity maps to.
pub fn level(severity: u8) -> &'static str {
    match severity {
        0..=3 => "error",
        4 => "warn",
        5 | 6 => "info",
        _ => "debug",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// (datagram, facility, severity, tag, pid, text).
    type Row = (&'static [u8], u8, u8, Option<&'static str>, Option<u32>, &'static [u8]);

    const TABLE: &[Row] = &[
        // glibc's and musl's syslog(3), busybox logger, `logger -u`.
        (b"<13>Dec  6 10:07:38 mytag: hello", 1, 5, Some("mytag"), None, b"hello"),
        (
            b"<27>Dec  6 10:07:46 pyt[23955]: from glibc",
            3,
            3,
            Some("pyt"),
            Some(23955),
            b"from glibc",
        ),
        (
            b"<23>Dec 16 10:07:38 mytag[22976]: withpid\n",
            2,
            7,
            Some("mytag"),
            Some(22976),
            b"withpid",
        ),
        (
            b"<86>Dec 06 23:59:59 sshd[7]: Accepted key",
            10,
            6,
            Some("sshd"),
            Some(7),
            b"Accepted key",
        ),
        (
            b"<22>Jan  1 00:00:00 postfix/smtpd[99]: connect",
            2,
            6,
            Some("postfix/smtpd"),
            Some(99),
            b"connect",
        ),
        // musl's syslog(3) with no ident: an empty tag.
        (b"<13>Dec  6 10:07:38 : no ident", 1, 5, None, None, b"no ident"),
        // `logger --rfc3164`: a host before the tag.
        (
            b"<13>Dec  6 10:07:38 vm mytag: hello3164",
            1,
            5,
            Some("mytag"),
            None,
            b"hello3164",
        ),
        (
            b"<13>Dec  6 10:07:38 vm mytag[5]: x",
            1,
            5,
            Some("mytag"),
            Some(5),
            b"x",
        ),
        // A timestamp and no tag at all: all text.
        (b"<13>Dec  6 10:07:38 hello world", 1, 5, None, None, b"hello world"),
        (b"<13>Dec  6 10:07:38 hello", 1, 5, None, None, b"hello"),
        // A tag with a pid and no colon.
        (
            b"<13>Dec  6 10:07:38 cron[12] job done",
            1,
            5,
            Some("cron"),
            Some(12),
            b"job done",
        ),
        // A non-numeric pid: the tag stays, no pid.
        (b"<13>Dec  6 10:07:38 app[main]: x", 1, 5, Some("app"), None, b"x"),
        // An RFC 3339 timestamp where RFC 3164 puts one (rsyslog's -o).
        (
            b"<13>2026-12-06T10:07:38.8+00:00 vm app: hi",
            1,
            5,
            Some("app"),
            None,
            b"hi",
        ),
        // No timestamp (Python's SysLogHandler): a tag only first.
        (b"<14>hello", 1, 6, None, None, b"hello"),
        (b"<14>myapp: hello", 1, 6, Some("myapp"), None, b"hello"),
        (
            b"<14>some message: with a colon",
            1,
            6,
            None,
            None,
            b"some message: with a colon",
        ),
        (b"<14>", 1, 6, None, None, b""),
        (b"<0>kernel: oops", 0, 0, Some("kernel"), None, b"oops"),
        (b"<191>x", 23, 7, None, None, b"x"),
        // RFC 5424 (`logger --rfc5424`), structured data skipped.
        (
            b"<13>1 2026-12-06T10:07:38.873872+00:00 vm mytag - - [timeQuality tzKnown=\"1\" isSynced=\"0\"] hello5424",
            1,
            5,
            Some("mytag"),
            None,
            b"hello5424",
        ),
        (
            b"<155>1 2026-12-06T10:07:38.876557+00:00 vm mytag 22975 - [timeQuality tzKnown=\"1\"] withpid",
            19,
            3,
            Some("mytag"),
            Some(22975),
            b"withpid",
        ),
        (b"<13>1 - - mytag - - - bare", 1, 5, Some("mytag"), None, b"bare"),
        (b"<13>1 - - - - - -", 1, 5, None, None, b""),
        (
            b"<13>1 - host app worker-3 ID47 - text",
            1,
            5,
            Some("app"),
            None,
            b"text",
        ),
        (
            b"<13>1 - - app - - [a@1 x=\"]\\\"\"][b@2] [c] not sd",
            1,
            5,
            Some("app"),
            None,
            b"[c] not sd",
        ),
        (
            b"<13>1 - - app 1 - - \xEF\xBB\xBFwith BOM",
            1,
            5,
            Some("app"),
            Some(1),
            b"with BOM",
        ),
        // Not RFC 5424 after all: read as RFC 3164.
        (b"<13>1 thing happened", 1, 5, None, None, b"1 thing happened"),
        (
            b"<13>1 - - app - - [unclosed text",
            1,
            5,
            None,
            None,
            b"1 - - app - - [unclosed text",
        ),
        // No header, or a bad one: user.notice, all text.
        (b"plain text", 1, 5, None, None, b"plain text"),
        (b"<192>too big", 1, 5, None, None, b"<192>too big"),
        (b"<1x>no", 1, 5, None, None, b"<1x>no"),
        (b"<>empty", 1, 5, None, None, b"<>empty"),
        (b"<0013>four digits", 1, 5, None, None, b"<0013>four digits"),
        (b"<13", 1, 5, None, None, b"<13"),
        (b"", 1, 5, None, None, b""),
        // Trailing newlines, CRs and NULs go; inner controls are escaped.
        (b"<13>t: a\r\n\0\0", 1, 5, Some("t"), None, b"a"),
        (b"<13>t: one\ntwo\n", 1, 5, Some("t"), None, b"one\\ntwo"),
        (
            b"<13>t: tab\tbell\x07del\x7f",
            1,
            5,
            Some("t"),
            None,
            b"tab\tbell\\x07del\\x7f",
        ),
        (b"<13>t: cr\rx", 1, 5, Some("t"), None, b"cr\\rx"),
        // Bytes that are not UTF-8 are kept.
        (b"<13>t: caf\xe9 \xff", 1, 5, Some("t"), None, b"caf\xe9 \xff"),
    ];

    #[test]
    fn datagrams_as_local_senders_write_them() {
        for &(datagram, facility, severity, tag, pid, text) in TABLE {
            let m = parse(datagram);
            let got = (
                m.facility,
                m.severity,
                m.tag.map(|t| String::from_utf8_lossy(t).into_owned()),
                m.pid,
                String::from_utf8_lossy(&m.text).into_owned(),
            );
            let want = (
                facility,
                severity,
                tag.map(str::to_owned),
                pid,
                String::from_utf8_lossy(text).into_owned(),
            );
            assert_eq!(got, want, "{}", String::from_utf8_lossy(datagram));
        }
    }

    #[test]
    fn clean_text_is_borrowed() {
        assert!(matches!(parse(b"<13>t: plain").text, Cow::Borrowed(_)));
        assert!(matches!(parse(b"<13>t: two\nlines").text, Cow::Owned(_)));
    }

    #[test]
    fn long_tags_are_cut() {
        let datagram = format!("<13>{}: x", "a".repeat(200));
        assert_eq!(parse(datagram.as_bytes()).tag.map(<[u8]>::len), Some(MAX_TAG));
    }

    #[test]
    fn names_are_syslog_3s() {
        assert_eq!(facility_name(0), "kern");
        assert_eq!(facility_name(3), "daemon");
        assert_eq!(facility_name(9), "cron");
        assert_eq!(facility_name(10), "authpriv");
        assert_eq!(facility_name(16), "local0");
        assert_eq!(facility_name(23), "local7");
        assert_eq!(facility_name(24), "unknown");
        assert_eq!(severity_name(0), "emerg");
        assert_eq!(severity_name(3), "err");
        assert_eq!(severity_name(4), "warning");
        assert_eq!(severity_name(7), "debug");
        assert_eq!(level(2), "error");
        assert_eq!(level(4), "warn");
        assert_eq!(level(6), "info");
        assert_eq!(level(7), "debug");
    }

    proptest::proptest! {
        /// Whatever the bytes: no panic, one line (no newline, CR or other
        /// control but tab in the text), a clean tag, a valid priority.
        #[test]
        fn any_datagram_is_one_line(bytes in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..400)) {
            let m = parse(&bytes);
            proptest::prop_assert!(m.facility <= 23 && m.severity <= 7);
            proptest::prop_assert!(!m.text.iter().any(|&b| (b < 0x20 && b != b'\t') || b == 0x7f));
            if let Some(tag) = m.tag {
                proptest::prop_assert!(!tag.is_empty() && tag.len() <= MAX_TAG && tag.iter().all(|&b| is_tag_byte(b)));
            }
        }

        /// Any text after a glibc header comes back (escaped where it must).
        #[test]
        fn glibc_text_comes_back(text in "[ -~]{0,200}") {
            let datagram = format!("<30>Feb 29 01:02:03 app[1]: {text}");
            let m = parse(datagram.as_bytes());
            proptest::prop_assert_eq!(m.tag, Some(b"app".as_slice()));
            proptest::prop_assert_eq!(m.pid, Some(1));
            proptest::prop_assert_eq!(&*m.text, text.as_bytes());
        }
    }
}
