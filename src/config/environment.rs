//! A service's environment from files: `env-file` (dotenv files), `env-dir`
//! (a runit envdir) and `[secrets]` of service.toml. Each is checked at
//! load, so `baseinit check` and the boot report a problem with its file
//! and line, and read again at each start, so that an edited env file or a
//! rotated secret (Kubernetes updates mounted secrets in place) applies at
//! the service's next start.
//!
//! What a child gets, later entries winning: the container environment,
//! the env files in order, the env dir, the user's HOME, USER and LOGNAME
//! (with `user`), `[environment]`, `[secrets]` (a name may not be in both
//! of the last two). The spec holds paths only, never a value.

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::fmt;
use std::fs;
use std::hash::{Hash, Hasher};
use std::io::{self, Read};
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use serde::de::{self, Deserializer, SeqAccess, Visitor};
use toml::Spanned;

use crate::container_env::Vars;
use crate::spawn::Launch;

use super::raw::RawService;
use super::secrets::read_secret;
use super::{ConfigError, line_column};

/// The largest env file, envdir file or secret read: a file is read at
/// each start, on PID 1's event loop.
pub(super) const MAX_FILE: u64 = 1 << 20;

/// `env-file` as written: one path, or a list of them (each with its span).
#[derive(Debug)]
pub enum EnvFiles {
    One(String),
    Many(Vec<Spanned<String>>),
}

impl<'de> serde::Deserialize<'de> for EnvFiles {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = EnvFiles;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a path, or an array of paths")
            }
            fn visit_str<E: de::Error>(self, s: &str) -> Result<EnvFiles, E> {
                Ok(EnvFiles::One(s.to_owned()))
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<EnvFiles, A::Error> {
                let mut files = Vec::new();
                while let Some(file) = seq.next_element::<Spanned<String>>()? {
                    files.push(file);
                }
                Ok(EnvFiles::Many(files))
            }
        }
        deserializer.deserialize_any(V)
    }
}

/// Where a service's environment comes from beside `[environment]`, read
/// at each start. Paths only: the values are never kept.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct EnvSources {
    /// `env-file`, in order: a later file wins.
    pub files: Vec<PathBuf>,
    /// `env-dir`.
    pub dir: Option<PathBuf>,
    /// `[secrets]`: each variable and the file that holds its value.
    pub secrets: Vec<(OsString, PathBuf)>,
}

impl EnvSources {
    /// What one start of the service gets: `base` (the container
    /// environment) with the env files, then the env dir, applied; and
    /// `launch` with the secrets after its own variables. Every file is
    /// read now. An error names its file (and a secret's variable), never
    /// a value.
    pub fn prepare(&self, launch: &Launch, base: &Vars) -> io::Result<(Launch, Vars)> {
        let mut vars = base.clone();
        for file in &self.files {
            let values = read_env_file(file).map_err(|e| e.into_io("env-file"))?;
            vars.extend(values.into_iter().map(|(name, value)| (name.into(), value.into())));
        }
        if let Some(dir) = &self.dir {
            let changes = read_env_dir(dir).map_err(|mut e| e.swap_remove(0).into_io("env-dir"))?;
            for (name, value) in changes {
                match value {
                    Some(value) => vars.insert(name, value),
                    None => vars.remove(&name),
                };
            }
        }
        let mut launch = launch.clone();
        for (name, path) in &self.secrets {
            let secret = read_secret(path).map_err(|e| e.into_io(&format!("secret {}", name.display())))?;
            launch.env.push((name.clone(), secret.expose()));
        }
        Ok((launch, vars))
    }
}

/// A problem with one file: which, where in it (an env file's syntax), what.
#[derive(Debug)]
pub(super) struct SourceError {
    pub path: PathBuf,
    pub position: Option<(usize, usize)>,
    pub message: String,
    pub kind: io::ErrorKind,
}

impl SourceError {
    pub(super) fn new(path: &Path, kind: io::ErrorKind, message: String) -> Self {
        SourceError {
            path: path.to_owned(),
            position: None,
            message,
            kind,
        }
    }

    /// For a failed start: `what` (`env-file`, `secret NAME`) and this.
    fn into_io(self, what: &str) -> io::Error {
        io::Error::new(self.kind, format!("{what}: {self}"))
    }
}

impl fmt::Display for SourceError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.path.display())?;
        if let Some((line, column)) = self.position {
            write!(f, ":{line}:{column}")?;
        }
        write!(f, ": {}", self.message)
    }
}

/// The bytes of `path`, a regular file (symlinks followed) of at most
/// `limit` bytes. Opened without blocking: a FIFO is told by its fstat and
/// never read, so a start cannot hang on one.
pub(super) fn read_small(path: &Path, limit: u64) -> Result<Vec<u8>, SourceError> {
    let fail = |kind, message: String| SourceError::new(path, kind, message);
    let file = match fs::OpenOptions::new()
        .read(true)
        .custom_flags(nix::libc::O_NONBLOCK)
        .open(path)
    {
        Ok(file) => file,
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            return Err(if fs::symlink_metadata(path).is_ok() {
                fail(e.kind(), "dangling symlink: its target does not exist".to_owned())
            } else {
                fail(e.kind(), "does not exist".to_owned())
            });
        }
        Err(e) => return Err(fail(e.kind(), format!("cannot read: {e}"))),
    };
    let meta = file
        .metadata()
        .map_err(|e| fail(e.kind(), format!("cannot read: {e}")))?;
    let too_large = |len: u64| {
        fail(
            io::ErrorKind::InvalidData,
            format!("too large: {len} bytes (the limit is {limit})"),
        )
    };
    if !meta.is_file() {
        return Err(fail(io::ErrorKind::InvalidInput, "not a regular file".to_owned()));
    }
    if meta.len() > limit {
        return Err(too_large(meta.len()));
    }
    let mut bytes = Vec::new();
    file.take(limit + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| fail(e.kind(), format!("cannot read: {e}")))?;
    if bytes.len() as u64 > limit {
        return Err(too_large(bytes.len() as u64));
    }
    Ok(bytes)
}

/// The variables of the dotenv file at `path`, in order (a later one of
/// the same name wins), as dotenvy reads them.
pub(super) fn read_env_file(path: &Path) -> Result<Vec<(String, String)>, SourceError> {
    let bytes = read_small(path, MAX_FILE)?;
    parse_env_file(&bytes).map_err(|(position, message)| SourceError {
        position,
        ..SourceError::new(path, io::ErrorKind::InvalidData, message)
    })
}

/// A dotenv file's problem: where it is (line and column), and what. The
/// message never quotes the file: its values may be secrets.
type EnvFileError = (Option<(usize, usize)>, String);

/// A dotenv file's variables, in order.
fn parse_env_file(bytes: &[u8]) -> Result<Vec<(String, String)>, EnvFileError> {
    let text = match std::str::from_utf8(bytes) {
        Ok(text) => text,
        Err(e) => {
            let valid = String::from_utf8_lossy(&bytes[..e.valid_up_to()]);
            let position = line_column(&valid, e.valid_up_to());
            return Err((Some(position), "not valid UTF-8".to_owned()));
        }
    };
    // An editor's byte order mark: not part of the first name.
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let mut values = Vec::new();
    for item in dotenvy::from_read_iter(text.as_bytes()) {
        match item {
            Ok(pair) => values.push(pair),
            // dotenvy reads on to the end of the file for a quote not closed.
            Err(dotenvy::Error::LineParse(line, index))
                if index >= line.chars().count() && line.contains(['"', '\'']) =>
            {
                return Err((
                    Some(line_column(text, syntax_offset(text, &line, 0))),
                    "not valid dotenv syntax: a quote opened on this line is not closed".to_owned(),
                ));
            }
            Err(dotenvy::Error::LineParse(line, index)) => {
                return Err((
                    Some(line_column(text, syntax_offset(text, &line, index))),
                    "not valid dotenv syntax: expected NAME=value (a name of letters, digits, `_` and `.`; \
                     spaces in a value quoted; quotes closed; `\\` before one of `\\ ' \" $ n` or a space)"
                        .to_owned(),
                ));
            }
            Err(e) => return Err((None, format!("cannot read: {}", safe_message(&e)))),
        }
    }
    Ok(values)
}

/// Where dotenvy stops reading `text`, if it does for a line's syntax: the
/// (logical) line or value it was reading, and the character index in it.
fn syntax_error(text: &str) -> Option<(String, usize)> {
    dotenvy::from_read_iter(text.as_bytes()).find_map(|item| match item {
        Err(dotenvy::Error::LineParse(line, index)) => Some((line, index)),
        _ => None,
    })
}

/// dotenvy's message for an error other than a line's syntax (whose own
/// message would quote the line).
fn safe_message(e: &dotenvy::Error) -> String {
    match e {
        dotenvy::Error::LineParse(_, index) => format!("a line does not parse (at index {index})"),
        other => other.to_string(),
    }
}

/// The byte offset in `text` where dotenvy stopped with `Syntax(line,
/// index)`. dotenvy does not say which line: it is the last line of the
/// shortest prefix of whole lines that stops the same way (found by
/// bisection: a prefix ending before it parses, or stops inside a quoted
/// value, elsewhere).
fn syntax_offset(text: &str, line: &str, index: usize) -> usize {
    let mut ends: Vec<usize> = text.match_indices('\n').map(|(i, _)| i + 1).collect();
    if ends.last() != Some(&text.len()) {
        ends.push(text.len());
    }
    let same = |lines: usize| {
        let end = ends.get(lines - 1).copied().unwrap_or(text.len());
        matches!(syntax_error(&text[..end]), Some((l, i)) if l == line && i == index)
    };
    let (mut low, mut high) = (1, ends.len());
    while low < high {
        let mid = (low + high) / 2;
        if same(mid) {
            high = mid;
        } else {
            low = mid + 1;
        }
    }
    let end = ends.get(low - 1).copied().unwrap_or(text.len());
    let start = low.checked_sub(2).and_then(|i| ends.get(i)).copied().unwrap_or(0);
    // `line` is the whole line, or the value part of it (the end).
    let found = text[..end]
        .rfind(line)
        .filter(|at| *at + line.len() >= start)
        .unwrap_or(start);
    let within = line.char_indices().nth(index).map_or(line.len(), |(i, _)| i);
    found + within
}

/// The changes the envdir `dir` makes, by name: a value, or None to unset
/// (an empty file). Names starting with `.` are skipped (Kubernetes keeps
/// its `..data` there). Every problem, each with its file.
pub(super) fn read_env_dir(dir: &Path) -> Result<Vec<(OsString, Option<OsString>)>, Vec<SourceError>> {
    let entries = match fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) => {
            let message = match e.kind() {
                io::ErrorKind::NotFound => "does not exist".to_owned(),
                io::ErrorKind::NotADirectory => "not a directory".to_owned(),
                _ => format!("cannot read: {e}"),
            };
            return Err(vec![SourceError::new(dir, e.kind(), message)]);
        }
    };
    let mut names = Vec::new();
    let mut errors = Vec::new();
    for entry in entries {
        match entry {
            Ok(entry) => names.push(entry.file_name()),
            Err(e) => errors.push(SourceError::new(dir, e.kind(), format!("cannot read: {e}"))),
        }
    }
    names.sort();
    let mut changes = Vec::new();
    for name in names {
        if name.as_bytes().starts_with(b".") {
            continue;
        }
        let path = dir.join(&name);
        if name.as_bytes().contains(&b'=') {
            errors.push(SourceError::new(
                &path,
                io::ErrorKind::InvalidInput,
                "a variable's name cannot hold '='".to_owned(),
            ));
            continue;
        }
        match read_small(&path, MAX_FILE) {
            Ok(content) => {
                let value = crate::envdir::value(&content).map(OsString::from_vec);
                changes.push((name, value));
            }
            Err(e) => errors.push(e),
        }
    }
    if errors.is_empty() { Ok(changes) } else { Err(errors) }
}

/// Validates `env-file`, `env-dir` and `[secrets]` of the service in `dir`
/// (each file read once, its values dropped). Returns the sources, None
/// when it has none, and a hash of what the env files and the env dir hold
/// now, for the fingerprint (a rescan restarts the service when it
/// changes). Secrets are not hashed: a rotated one applies at the next
/// start without a restart of its own.
pub(super) fn sources(
    name: &str,
    dir: &Path,
    raw: &RawService,
    at: &dyn Fn(usize, String) -> ConfigError,
    errors: &mut Vec<ConfigError>,
) -> (Option<EnvSources>, u64) {
    let mut hasher = std::hash::DefaultHasher::new();
    let mut sources = EnvSources::default();
    // A problem in a file: at the file's own line for its syntax, else at
    // the key that names it.
    let problem = |e: SourceError, what: &str, start: usize| match e.position {
        Some(_) => ConfigError {
            position: e.position,
            ..ConfigError::new(&e.path, format!("{} ({what} of service {name})", e.message))
        },
        None => at(start, format!("{what}: {e}")),
    };
    let files: Vec<(&str, usize)> = match &raw.env_file {
        None => Vec::new(),
        Some(files) => match files.get_ref() {
            EnvFiles::One(file) => vec![(file.as_str(), files.span().start)],
            EnvFiles::Many(list) => list.iter().map(|f| (f.get_ref().as_str(), f.span().start)).collect(),
        },
    };
    for (file, start) in files {
        if file.is_empty() {
            errors.push(at(start, "env-file: the path is empty".to_owned()));
            continue;
        }
        let path = under(dir, file);
        match read_env_file(&path) {
            Ok(values) => values.hash(&mut hasher),
            Err(e) => errors.push(problem(e, "env-file", start)),
        }
        sources.files.push(path);
    }
    if let Some(env_dir) = &raw.env_dir {
        let start = env_dir.span().start;
        if env_dir.get_ref().is_empty() {
            errors.push(at(start, "env-dir: the path is empty".to_owned()));
        } else {
            let path = under(dir, env_dir.get_ref());
            match read_env_dir(&path) {
                Ok(changes) => changes.hash(&mut hasher),
                Err(problems) => {
                    for e in problems {
                        errors.push(problem(e, "env-dir", start));
                    }
                }
            }
            sources.dir = Some(path);
        }
    }
    let environment: &BTreeMap<String, Spanned<String>> = match &raw.environment {
        Some(environment) => environment,
        None => &BTreeMap::new(),
    };
    for (name, file) in raw.secrets.iter().flatten() {
        let start = file.span().start;
        if name.is_empty() || name.contains('=') || name.contains('\0') {
            errors.push(at(
                start,
                format!("[secrets] name {name:?} cannot be an environment variable (empty, or holds '=' or NUL)"),
            ));
            continue;
        }
        if environment.contains_key(name) {
            errors.push(at(
                start,
                format!("`{name}` is in both [environment] and [secrets]: keep one"),
            ));
        }
        if file.get_ref().is_empty() {
            errors.push(at(start, format!("secret {name}: the path is empty")));
            continue;
        }
        let path = under(dir, file.get_ref());
        if let Err(e) = read_secret(&path) {
            errors.push(problem(e, &format!("secret {name}"), start));
        }
        sources.secrets.push((name.into(), path));
    }
    if sources == EnvSources::default() {
        (None, 0)
    } else {
        (Some(sources), hasher.finish())
    }
}

/// `path` relative to the service directory `dir` (an absolute one as it
/// is), without its `./` parts, so messages name the file plainly.
fn under(dir: &Path, path: &str) -> PathBuf {
    dir.join(
        Path::new(path)
            .components()
            .filter(|c| *c != std::path::Component::CurDir)
            .collect::<PathBuf>(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The variables, or the (line, column) of the problem and its message.
    type Parsed = Result<Vec<(String, String)>, ((usize, usize), String)>;

    fn parsed(text: impl AsRef<[u8]>) -> Parsed {
        parse_env_file(text.as_ref()).map_err(|(position, message)| (position.unwrap_or_default(), message))
    }

    #[test]
    fn env_files_are_read_as_dotenvy_reads_them() {
        let table: [(&str, &[(&str, &str)]); 8] = [
            ("A=1\n# comment\n\nexport B=2\n", &[("A", "1"), ("B", "2")]),
            (
                "A='single $X'\nB=\"double\\nline\"\n",
                &[("A", "single $X"), ("B", "double\nline")],
            ),
            ("A=1 # trailing comment\n", &[("A", "1")]),
            ("A=\"multi\nline\"\nB=2\n", &[("A", "multi\nline"), ("B", "2")]),
            ("A=1\r\nB=2\r\n", &[("A", "1"), ("B", "2")]),
            ("\u{feff}A=1", &[("A", "1")]),
            ("A=1\nA=2\n", &[("A", "1"), ("A", "2")]),
            ("A=\nB.C=x\n", &[("A", ""), ("B.C", "x")]),
        ];
        for (text, want) in table {
            let want: Vec<(String, String)> = want.iter().map(|(k, v)| ((*k).into(), (*v).into())).collect();
            assert_eq!(parsed(text), Ok(want), "{text:?}");
        }
    }

    #[test]
    fn a_syntax_error_is_at_its_own_line_and_column() {
        let table = [
            ("A=1\nB=two words\nC=3\n", (2, 7)),
            ("A=1\nNOT A LINE\n", (2, 5)),
            ("A=1\n\n# x\n1A=2\n", (4, 1)),
            ("A=\"multi\nline\"\nB=2\nC=x y\n", (4, 5)),
            ("A=1\nB='never closed\nC=3\n", (2, 1)),
            ("A=1\nB=\"never closed", (2, 1)),
            ("A=1\nNO_EQUALS\n", (2, 10)),
            ("A=1\nB=\"bad \\q escape\"\n", (2, 9)),
            ("A=1\nA=1\nA=1 x\n", (3, 5)),
            ("\u{feff}A b\n", (1, 3)),
            ("A=1\nB=é x\n", (2, 5)),
        ];
        for (text, want) in table {
            let (position, message) = parsed(text).unwrap_err();
            assert_eq!(position, want, "{text:?}");
            assert!(message.starts_with("not valid dotenv syntax"), "{message}");
        }
        let ((line, column), message) = parsed(b"A=1\nB=\xff").unwrap_err();
        assert_eq!(((line, column), message.as_str()), ((2, 3), "not valid UTF-8"));
    }

    #[test]
    fn a_syntax_error_never_quotes_the_file() {
        let (_, message) = parsed("PASSWORD=hunter2 oops\n").unwrap_err();
        assert!(!message.contains("hunter2"), "{message}");
    }

    #[test]
    fn an_env_dir_is_read_as_runits_envdir() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path();
        fs::write(dir.join("SET"), "value \nrest").unwrap();
        fs::write(dir.join("EMPTY"), "").unwrap();
        fs::write(dir.join("BLANK"), "\n").unwrap();
        fs::write(dir.join("NUL"), "a\0b").unwrap();
        fs::write(dir.join(".hidden"), "x").unwrap();
        fs::create_dir(dir.join("..data")).unwrap();
        std::os::unix::fs::symlink("SET", dir.join("LINKED")).unwrap();
        let changes = read_env_dir(dir).unwrap();
        let os = |s: &str| OsString::from(s);
        assert_eq!(
            changes,
            [
                (os("BLANK"), Some(os(""))),
                (os("EMPTY"), None),
                (os("LINKED"), Some(os("value"))),
                (os("NUL"), Some(os("a\nb"))),
                (os("SET"), Some(os("value"))),
            ]
        );
        fs::create_dir(dir.join("SUB")).unwrap();
        fs::write(dir.join("A=B"), "x").unwrap();
        std::os::unix::fs::symlink("/nonexistent/baseinit", dir.join("GONE")).unwrap();
        let errors: Vec<String> = read_env_dir(dir)
            .unwrap_err()
            .iter()
            .map(|e| e.to_string().replace(&format!("{}/", dir.display()), ""))
            .collect();
        assert_eq!(
            errors,
            [
                "A=B: a variable's name cannot hold '='",
                "GONE: dangling symlink: its target does not exist",
                "SUB: not a regular file",
            ]
        );
        let missing = read_env_dir(&dir.join("missing")).unwrap_err();
        assert_eq!(missing[0].message, "does not exist");
        let file = read_env_dir(&dir.join("SET")).unwrap_err();
        assert_eq!(file[0].message, "not a directory");
    }

    /// A tree whose services each have one bad input: every problem is an
    /// error of its own service, with its file and position; the good
    /// service loads; no message and no `{:?}` of a spec holds a value.
    #[test]
    fn each_bad_input_is_an_error_of_its_service_at_its_place() {
        use std::os::unix::fs::PermissionsExt;
        const VALUE: &str = "SECRET-VALUE-d41d8cd9";
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path();
        let service = |name: &str, toml: &str| {
            let dir = root.join(name);
            fs::create_dir_all(&dir).unwrap();
            fs::write(dir.join("run"), "#!/bin/sh\n").unwrap();
            fs::set_permissions(dir.join("run"), fs::Permissions::from_mode(0o755)).unwrap();
            fs::write(dir.join("service.toml"), toml).unwrap();
            dir
        };
        let good = service(
            "good",
            "env-file = [\"a.env\", \"b.env\"]\nenv-dir = \"env\"\n[secrets]\nPASSWORD = \"pw\"\n",
        );
        fs::write(good.join("a.env"), format!("TOKEN={VALUE}\n")).unwrap();
        fs::write(good.join("b.env"), "B=1\n").unwrap();
        fs::create_dir(good.join("env")).unwrap();
        fs::write(good.join("env/X"), VALUE).unwrap();
        fs::write(good.join("pw"), format!("{VALUE}\n")).unwrap();
        service("missing-file", "env-file = \"nope.env\"\n");
        let syntax = service("syntax", "env-file = \"app.env\"\n");
        fs::write(syntax.join("app.env"), format!("A=1\nPASSWORD={VALUE} oops\n")).unwrap();
        service("missing-secret", "[secrets]\nDB = \"/nonexistent/baseinit/db\"\n");
        let huge = service("huge-secret", "secrets = { DB = \"db\" }\n");
        fs::File::create(huge.join("db"))
            .unwrap()
            .set_len(MAX_FILE + 1)
            .unwrap();
        let both = service("both", "[environment]\nDB = \"x\"\n[secrets]\nDB = \"pw\"\n");
        fs::write(both.join("pw"), "x").unwrap();
        let bad_dir = service("bad-dir", "env-dir = \"env\"\n");
        fs::create_dir_all(bad_dir.join("env/SUB")).unwrap();
        service("no-dir", "\n\nenv-dir = \"/nonexistent/baseinit\"\n");
        service("unknown-var", "working-directory = \"${NOT_SET_ANYWHERE}\"\n");
        let scan = super::super::scan_services_in(root, &super::super::Defaults::default(), true, &Vars::new());
        let errors: Vec<String> = scan
            .errors
            .iter()
            .map(|e| e.to_string().replace(&format!("{}/", root.display()), ""))
            .collect();
        let want = [
            "bad-dir/service.toml:1:11: env-dir: bad-dir/env/SUB: not a regular file",
            "both/service.toml:4:6: `DB` is in both [environment] and [secrets]: keep one",
            "huge-secret/service.toml:1:18: secret DB: huge-secret/db: too large: 1048577 bytes",
            "missing-file/service.toml:1:12: env-file: missing-file/nope.env: does not exist",
            "missing-secret/service.toml:2:6: secret DB: /nonexistent/baseinit/db: does not exist",
            "no-dir/service.toml:3:11: env-dir: /nonexistent/baseinit: does not exist",
            "syntax/app.env:2:32: not valid dotenv syntax: expected NAME=value",
            "unknown-var/service.toml:1:22: working-directory: unknown variable `NOT_SET_ANYWHERE`",
        ];
        assert_eq!(errors.len(), want.len(), "{errors:#?}");
        for (got, want) in errors.iter().zip(want) {
            assert!(got.starts_with(want), "got {got:?}\nwant {want:?}...");
        }
        assert!(errors[6].ends_with("(env-file of service syntax)"), "{}", errors[6]);
        assert_eq!(scan.broken.len(), 8);
        assert!(scan.errors.iter().all(|e| e.service.is_some()));
        let good = &scan.services[0];
        assert_eq!(good.name, "good");
        let sources = good.env_sources.as_ref().unwrap();
        assert_eq!(sources.files.len(), 2);
        assert_eq!(sources.secrets, [("PASSWORD".into(), good.dir.join("pw"))]);
        for text in errors
            .iter()
            .cloned()
            .chain([format!("{:?}", scan.services), format!("{:?}", scan)])
        {
            assert!(!text.contains(VALUE), "{text}");
        }
    }

    /// Each source over the one before: container environment < env-file
    /// (a later file winning) < env-dir (an empty file unsets) <
    /// [environment] < [secrets].
    #[test]
    fn each_source_wins_over_the_ones_before() {
        let tmp = tempfile::tempdir().unwrap();
        let path = |name: &str| tmp.path().join(name);
        fs::write(
            path("1.env"),
            "FILE1=1\nFILES=first\nBASE='from file'\nDIR=\"from file\"\n",
        )
        .unwrap();
        fs::write(path("2.env"), "FILES=second\n").unwrap();
        fs::create_dir(path("env")).unwrap();
        fs::write(path("env/DIR"), "from dir\n").unwrap();
        fs::write(path("env/GONE"), "").unwrap();
        fs::write(path("env/OWN"), "from dir").unwrap();
        fs::write(path("secret"), "s3cret\n").unwrap();
        let sources = EnvSources {
            files: vec![path("1.env"), path("2.env")],
            dir: Some(path("env")),
            secrets: vec![("PASSWORD".into(), path("secret"))],
        };
        let base: Vars = [("BASE", "container"), ("GONE", "container"), ("KEEP", "container")]
            .into_iter()
            .map(|(k, v)| (k.into(), v.into()))
            .collect();
        let launch = Launch {
            env: vec![("OWN".into(), "from [environment]".into())],
            ..Launch::program(vec!["x".into()])
        };
        let (launch, vars) = sources.prepare(&launch, &base).unwrap();
        let want: Vars = [
            ("BASE", "from file"),
            ("DIR", "from dir"),
            ("FILE1", "1"),
            ("FILES", "second"),
            ("KEEP", "container"),
            ("OWN", "from dir"),
        ]
        .into_iter()
        .map(|(k, v)| (k.into(), v.into()))
        .collect();
        assert_eq!(vars, want);
        // [environment] and [secrets] come after, in the launch's own list
        // (and the user's identity between: see spawn's child_env).
        assert_eq!(
            launch.env,
            [
                ("OWN".into(), "from [environment]".into()),
                ("PASSWORD".into(), "s3cret".into())
            ]
        );
        // Read again at each start.
        fs::write(path("secret"), "rotated").unwrap();
        let (launch, _) = sources.prepare(&Launch::program(vec!["x".into()]), &base).unwrap();
        assert_eq!(launch.env, [("PASSWORD".into(), "rotated".into())]);
        fs::remove_file(path("secret")).unwrap();
        let e = sources.prepare(&launch, &base).unwrap_err();
        assert_eq!(
            e.to_string(),
            format!("secret PASSWORD: {}: does not exist", path("secret").display())
        );
        assert_eq!(e.kind(), io::ErrorKind::NotFound);
    }
}
