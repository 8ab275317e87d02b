//! `[secrets]` of service.toml: variables whose value is a file's content
//! (Docker's and Kubernetes' mounted secrets), and the [`Secret`] type that
//! keeps such a value out of every print.

use std::ffi::OsString;
use std::fmt;
use std::os::unix::ffi::OsStringExt;
use std::path::Path;

use super::environment::{MAX_FILE, SourceError, read_small};

/// A secret's value. Its `Debug` and `Display` print `<secret>`; nothing
/// else of it is derived, so no log line, error or `{:?}` can show it.
pub struct Secret(OsString);

impl Secret {
    /// The value itself, for the child's environment only.
    pub fn expose(self) -> OsString {
        self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<secret>")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<secret>")
    }
}

/// Reads the secret file at `path`: a regular file of at most [`MAX_FILE`]
/// bytes (symlinks followed, as Kubernetes mounts them), without a NUL
/// byte; one trailing newline (`\n` or `\r\n`) is dropped, as `echo` and
/// editors add one. An error names the file, never its content.
pub(super) fn read_secret(path: &Path) -> Result<Secret, SourceError> {
    let mut bytes = read_small(path, MAX_FILE)?;
    if bytes.contains(&0) {
        return Err(SourceError::new(
            path,
            std::io::ErrorKind::InvalidData,
            "holds a NUL byte, which no environment variable can".to_owned(),
        ));
    }
    if bytes.last() == Some(&b'\n') {
        bytes.pop();
        if bytes.last() == Some(&b'\r') {
            bytes.pop();
        }
    }
    Ok(Secret(OsString::from_vec(bytes)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_secret_prints_as_a_placeholder_only() {
        let secret = Secret(OsString::from("hunter2-value"));
        assert_eq!(format!("{secret:?}"), "<secret>");
        assert_eq!(format!("{secret}"), "<secret>");
        assert_eq!(format!("{:?}", Some(("NAME", &secret))), "Some((\"NAME\", <secret>))");
        assert_eq!(secret.expose(), "hunter2-value");
    }

    #[test]
    fn secret_files_are_read_whole_less_one_trailing_newline() {
        let dir = tempfile::tempdir().unwrap();
        // The file's content → the value, or the start of the error.
        type Want = Result<&'static [u8], &'static str>;
        let table: [(&[u8], Want); 8] = [
            (b"pw", Ok(b"pw")),
            (b"pw\n", Ok(b"pw")),
            (b"pw\r\n", Ok(b"pw")),
            (b"pw\n\n", Ok(b"pw\n")),
            (b"two\nlines\n", Ok(b"two\nlines")),
            (b"", Ok(b"")),
            (b"\xff\xfe binary", Ok(b"\xff\xfe binary")),
            (b"a\0b", Err("holds a NUL byte")),
        ];
        for (i, (content, want)) in table.into_iter().enumerate() {
            let path = dir.path().join(format!("s{i}"));
            std::fs::write(&path, content).unwrap();
            let got = read_secret(&path).map(|s| s.expose().into_vec()).map_err(|e| e.message);
            match want {
                Ok(want) => assert_eq!(got.as_deref(), Ok(want), "{content:?}"),
                Err(want) => assert!(got.as_ref().is_err_and(|e| e.starts_with(want)), "{content:?}: {got:?}"),
            }
        }
    }

    #[test]
    fn a_missing_huge_or_special_secret_file_is_an_error_without_its_content() {
        let dir = tempfile::tempdir().unwrap();
        let huge = dir.path().join("huge");
        std::fs::File::create(&huge).unwrap().set_len(MAX_FILE + 1).unwrap();
        let fifo = dir.path().join("fifo");
        nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::S_IRWXU).unwrap();
        let dangling = dir.path().join("dangling");
        std::os::unix::fs::symlink("/nonexistent/baseinit-secret", &dangling).unwrap();
        let at_limit = dir.path().join("at-limit");
        std::fs::write(&at_limit, vec![b'x'; MAX_FILE as usize]).unwrap();
        let table = [
            (dir.path().join("missing"), "does not exist"),
            (huge, "too large: 1048577 bytes (the limit is 1048576)"),
            // A FIFO is never waited on.
            (fifo, "not a regular file"),
            (dir.path().to_owned(), "not a regular file"),
            (dangling, "dangling symlink"),
        ];
        for (path, want) in table {
            let e = read_secret(&path).unwrap_err();
            assert_eq!(e.path, path);
            assert!(e.message.starts_with(want), "{}: {}", path.display(), e.message);
        }
        assert_eq!(read_secret(&at_limit).unwrap().expose().len() as u64, MAX_FILE);
    }
}
