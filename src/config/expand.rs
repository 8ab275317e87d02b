//! `${VAR}` and `${VAR:-default}` in service.toml's `command`, `user`,
//! `working-directory` and `[environment]` values, expanded at load from
//! the container environment; `$$` is a literal `$`.
//!
//! Deliberately not a shell: no `$VAR`, no nesting, no other operators. A
//! `$` followed by anything but `{` or `$` is kept as it is, so that a
//! command written for a shell (`sh -c 'echo $HOME'`, `$(pwd)`) means what
//! it meant before service.toml expanded anything.

use toml::Spanned;

use crate::container_env::Vars;

use super::ConfigError;
use super::raw::RawService;

/// A problem in one value: the byte offset (in the value) of the `$` at
/// fault, and what is wrong.
#[derive(Debug, PartialEq, Eq)]
pub(super) struct ExpandError {
    pub offset: usize,
    pub message: String,
}

/// `text` with each `${NAME}`, `${NAME:-default}` and `$$` replaced.
/// `${NAME:-default}` gives `default` (taken literally) when NAME is unset
/// or empty, as in the shell.
pub(super) fn expand(text: &str, vars: &Vars) -> Result<String, ExpandError> {
    if !text.contains('$') {
        return Ok(text.to_owned());
    }
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(at) = rest.find('$') {
        out.push_str(&rest[..at]);
        let offset = text.len() - rest.len() + at;
        let error = |message: String| ExpandError { offset, message };
        let after = &rest[at + 1..];
        if let Some(tail) = after.strip_prefix('$') {
            out.push('$');
            rest = tail;
            continue;
        }
        let Some(inner) = after.strip_prefix('{') else {
            // `$VAR`, `$(…)`, a lone `$`: the shell's, left alone.
            out.push('$');
            rest = after;
            continue;
        };
        let Some(close) = inner.find('}') else {
            return Err(error("`${` is not closed by a `}`".to_owned()));
        };
        let body = &inner[..close];
        let (name, default) = match body.split_once(":-") {
            Some((name, default)) => (name, Some(default)),
            None => (body, None),
        };
        if !is_name(name) {
            return Err(error(format!(
                "`${{{body}}}`: write `${{NAME}}` or `${{NAME:-default}}`, NAME of letters, digits and `_` \
                 (no other shell syntax)"
            )));
        }
        let value = vars.get(std::ffi::OsStr::new(name));
        match (value, default) {
            (Some(value), default) if !(value.is_empty() && default.is_some()) => match value.to_str() {
                Some(value) => out.push_str(value),
                None => return Err(error(format!("variable `{name}` is not valid UTF-8"))),
            },
            (_, Some(default)) => out.push_str(default),
            (_, None) => {
                return Err(error(format!(
                    "unknown variable `{name}` in `${{{name}}}`: not in the container environment \
                     (give a default: `${{{name}:-value}}`)"
                )));
            }
        }
        rest = &inner[close + 1..];
    }
    out.push_str(rest);
    Ok(out)
}

/// A shell variable name: `[A-Za-z_][A-Za-z0-9_]*`.
fn is_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars.next().is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// Expands `command`, `user`, `working-directory` and `[environment]` of
/// `raw` in place (their spans kept); each problem is an error at the `$`
/// at fault in `text`, the service.toml.
pub(super) fn expand_raw(
    raw: &mut RawService,
    text: &str,
    vars: &Vars,
    at: &dyn Fn(usize, String) -> ConfigError,
    errors: &mut Vec<ConfigError>,
) {
    // False when the value could not be expanded (its error recorded).
    let mut one = |value: &mut String, token_start: usize, what: &str| {
        if !value.contains('$') {
            return true;
        }
        match expand(value, vars) {
            Ok(expanded) => {
                *value = expanded;
                true
            }
            Err(e) => {
                let offset = position_in_token(text, token_start, value, e.offset);
                errors.push(at(offset, format!("{what}: {}", e.message)));
                false
            }
        }
    };
    if let Some(command) = &mut raw.command {
        let span = command.span();
        if command.get_ref().iter().any(|arg| arg.contains('$')) {
            let starts = element_starts(text, span.clone());
            for (i, arg) in command.get_mut().iter_mut().enumerate() {
                let start = starts.as_ref().and_then(|s| s.get(i).copied()).unwrap_or(span.start);
                one(arg, start, "command");
            }
        }
    }
    for (field, what) in [
        (&mut raw.user, "user"),
        (&mut raw.working_directory, "working-directory"),
    ] {
        if let Some(value) = field {
            let start = value.span().start;
            if !one(value.get_mut(), start, what) {
                // Not checked further: its one error says what is wrong.
                *field = None;
            }
        }
    }
    for (name, value) in raw.environment.iter_mut().flatten() {
        let start = value.span().start;
        one(value.get_mut(), start, &format!("[environment] {name}"));
    }
}

/// The byte offset in `text` of what is at `offset` in `value`, the
/// decoded string whose TOML token starts at `token_start`: the `$`s of the
/// value and of the token are matched in order. When they cannot be (an
/// escape such as `\u0024` wrote one), the token's start.
fn position_in_token(text: &str, token_start: usize, value: &str, offset: usize) -> usize {
    let Some(token) = text.get(token_start..) else {
        return token_start;
    };
    let token = token_text(token);
    let raw_dollars: Vec<usize> = token.match_indices('$').map(|(i, _)| i).collect();
    let dollars = value.matches('$').count();
    let nth = value.get(..offset).map_or(0, |before| before.matches('$').count());
    match raw_dollars.get(nth) {
        Some(i) if raw_dollars.len() == dollars => token_start + i,
        _ => token_start,
    }
}

/// A TOML string token at the start of `text`: up to its closing quote
/// (`"`, `'`, or a tripled one), or the rest of the line when it cannot be
/// told.
fn token_text(text: &str) -> &str {
    for quote in ["\"\"\"", "'''", "\"", "'"] {
        if let Some(body) = text.strip_prefix(quote) {
            let end = if quote == "\"" {
                // Skip escaped quotes.
                let mut escaped = false;
                body.char_indices()
                    .find(|&(_, c)| {
                        let end = c == '"' && !escaped;
                        escaped = c == '\\' && !escaped;
                        end
                    })
                    .map(|(i, _)| i)
            } else {
                body.find(quote)
            };
            return &text[..quote.len() + end.unwrap_or(body.len())];
        }
    }
    text.lines().next().unwrap_or_default()
}

/// Where each string of the array whose token is `text[span]` starts in
/// `text`: the array parsed again on its own, with spans.
fn element_starts(text: &str, span: std::ops::Range<usize>) -> Option<Vec<usize>> {
    #[derive(serde::Deserialize)]
    struct Array {
        x: Vec<Spanned<String>>,
    }
    const PREFIX: &str = "x = ";
    let array = text.get(span.clone())?;
    let parsed: Array = toml::from_str(&format!("{PREFIX}{array}")).ok()?;
    Some(
        parsed
            .x
            .iter()
            .map(|s| span.start + s.span().start.saturating_sub(PREFIX.len()))
            .collect(),
    )
}

#[cfg(test)]
mod tests {
    use std::ffi::OsString;

    use super::*;

    fn vars() -> Vars {
        [("HOST", "db.local"), ("EMPTY", ""), ("PORT", "5432"), ("_U1", "u")]
            .into_iter()
            .map(|(k, v)| (OsString::from(k), OsString::from(v)))
            .collect()
    }

    #[test]
    fn expansions() {
        let table = [
            ("plain", "plain"),
            ("${HOST}", "db.local"),
            ("${HOST}:${PORT}", "db.local:5432"),
            ("x${_U1}y", "xuy"),
            ("${MISSING:-fallback}", "fallback"),
            ("${MISSING:-}", ""),
            ("${EMPTY:-used when empty}", "used when empty"),
            ("${EMPTY}", ""),
            ("${HOST:-ignored}", "db.local"),
            (
                "${MISSING:-a default: with $ and :- inside}",
                "a default: with $ and :- inside",
            ),
            ("$$", "$"),
            ("$${HOST}", "${HOST}"),
            ("cost: $$5 on ${HOST}", "cost: $5 on db.local"),
            ("é${PORT}é", "é5432é"),
            // What a shell reads is left to the shell.
            ("$HOST", "$HOST"),
            ("end $", "end $"),
            ("$(date) ${PORT}", "$(date) 5432"),
            ("echo $1 $@", "echo $1 $@"),
        ];
        for (text, want) in table {
            assert_eq!(expand(text, &vars()).as_deref(), Ok(want), "{text}");
        }
    }

    #[test]
    fn errors_point_at_the_dollar_and_name_the_variable() {
        let table = [
            ("${NOPE}", 0, "unknown variable `NOPE` in `${NOPE}`"),
            ("a ${HOST} ${NOPE}", 10, "unknown variable `NOPE`"),
            ("${HOST", 0, "`${` is not closed"),
            ("${}", 0, "`${}`: write `${NAME}`"),
            ("${1X}", 0, "`${1X}`: write"),
            ("${HOST-x}", 0, "`${HOST-x}`: write"),
            ("${HOST:=x}", 0, "`${HOST:=x}`: write"),
            ("${A B}", 0, "`${A B}`: write"),
            ("é ${NOPE}", 3, "unknown variable `NOPE`"),
        ];
        for (text, offset, message) in table {
            let e = expand(text, &vars()).unwrap_err();
            assert_eq!(e.offset, offset, "{text}: {e:?}");
            assert!(e.message.starts_with(message), "{text}: {e:?}");
        }
    }

    #[test]
    fn a_dollar_is_found_in_its_toml_token() {
        // (the service.toml, the value as decoded, the value's offset) →
        // the text's offset.
        let table = [
            ("a = \"x${B}\"", "x${B}", 1, 6),
            ("a = 'x${B}'", "x${B}", 1, 6),
            ("a = \"\\t${B}\"", "\t${B}", 1, 7),
            ("a = \"\"\"\n${B}\"\"\"", "${B}", 0, 8),
            ("a = \"$$ ${B}\"", "$$ ${B}", 3, 8),
            // `\u0024` is a `$` the token does not show: the token's start.
            ("a = \"\\u0024{B}\"", "${B}", 0, 4),
            ("a = \"\\\"${B}\" # $", "\"${B}", 1, 7),
        ];
        for (text, value, offset, want) in table {
            assert_eq!(position_in_token(text, 4, value, offset), want, "{text}");
        }
    }

    #[test]
    fn array_elements_are_found_where_they_are_written() {
        let text = "command = [\n  \"a\", # one\n  'b${X}',\n]\n";
        let start = text.find('[').unwrap();
        let starts = element_starts(text, start..text.len() - 1).unwrap();
        assert_eq!(starts, [text.find("\"a\"").unwrap(), text.find("'b").unwrap()]);
    }

    #[test]
    fn a_service_toml_is_expanded_in_place_with_positions() {
        let text = "command = [\"run\", \"--db=${HOST}:${PORT}\", \"${NOPE}\"]\n\
                    user = \"${USER_NAME:-app}\"\n\
                    working-directory = \"/srv/${HOST}\"\n\
                    [environment]\n\
                    URL = \"postgres://${HOST}\"\n\
                    SHELL_S = \"$HOME\"\n\
                    BAD = \"${HOME-x}\"\n";
        let mut raw: RawService = toml::from_str(text).unwrap();
        let path = std::path::Path::new("service.toml");
        let at = |offset: usize, message: String| ConfigError::at(path, text, offset, message);
        let mut errors = Vec::new();
        expand_raw(&mut raw, text, &vars(), &at, &mut errors);
        let errors: Vec<String> = errors.iter().map(ToString::to_string).collect();
        assert_eq!(errors.len(), 2, "{errors:#?}");
        assert!(
            errors[0].starts_with("service.toml:1:44: command: unknown variable `NOPE`"),
            "{errors:#?}"
        );
        assert!(
            errors[1].starts_with("service.toml:7:8: [environment] BAD: `${HOME-x}`: write"),
            "{errors:#?}"
        );
        assert_eq!(raw.command.unwrap().into_inner()[1], "--db=db.local:5432");
        assert_eq!(raw.user.unwrap().into_inner(), "app");
        assert_eq!(raw.working_directory.unwrap().into_inner(), "/srv/db.local");
        let environment = raw.environment.unwrap();
        assert_eq!(environment["URL"].get_ref(), "postgres://db.local");
        assert_eq!(environment["SHELL_S"].get_ref(), "$HOME", "left for a shell");
    }
}
