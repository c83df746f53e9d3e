//! The dotenv syntax of `.hoist/secrets`: `NAME=value` lines, `export `, `#` comments, single
//! quotes (literal), double quotes (escapes and substitutions), unquoted values (trailing
//! comment stripped). Parsing only: values are kept as parts (text, `${VAR}`, `$(command)`)
//! for secrets.rs to evaluate lazily. Error messages never quote a value.

use std::path::Path;

use super::SecretsError;

/// One `NAME=value` line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Definition {
    pub name: String,
    pub parts: Vec<Part>,
    pub line: usize,
}

/// A piece of a value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Part {
    Text(String),
    /// `${NAME}` or `$NAME`.
    Variable(String),
    /// `$(command)`, run with `sh -c`.
    Command(String),
}

/// Parse a whole file. `file` only names the file in errors.
pub fn parse(text: &str, file: &Path) -> Result<Vec<Definition>, SecretsError> {
    let mut definitions = Vec::new();
    for (index, line) in text.lines().enumerate() {
        let number = index + 1;
        let syntax = |message: String| SecretsError::Syntax {
            path: file.to_path_buf(),
            line: number,
            message,
        };
        let line = line.trim_start_matches('\u{feff}').trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let line = line
            .strip_prefix("export")
            .filter(|rest| rest.starts_with([' ', '\t']))
            .map_or(line, str::trim_start);
        let Some((name, value)) = line.split_once('=') else {
            return Err(syntax(
                "expected `NAME=value` (this line has no `=`)".to_string(),
            ));
        };
        let name = name.trim_end();
        if crate::config::check_env_name(name).is_err() {
            return Err(syntax(
                "invalid name before `=`: use letters, digits and `_`, not starting with a digit"
                    .to_string(),
            ));
        }
        let parts = parse_value(value.trim_start()).map_err(syntax)?;
        definitions.push(Definition {
            name: name.to_string(),
            parts,
            line: number,
        });
    }
    Ok(definitions)
}

/// Parse what follows `=`.
fn parse_value(value: &str) -> Result<Vec<Part>, String> {
    if let Some(rest) = value.strip_prefix('\'') {
        let Some(end) = rest.find('\'') else {
            return Err("missing closing `'`".to_string());
        };
        expect_only_comment(&rest[end + 1..])?;
        return Ok(vec![Part::Text(rest[..end].to_string())]);
    }
    if let Some(rest) = value.strip_prefix('"') {
        let (parts, consumed) = parse_template(rest, true)?;
        expect_only_comment(&rest[consumed..])?;
        return Ok(parts);
    }
    let (mut parts, _) = parse_template(value, false)?;
    if let Some(Part::Text(text)) = parts.last_mut() {
        let trimmed = text.trim_end().len();
        text.truncate(trimmed);
        if text.is_empty() {
            parts.pop();
        }
    }
    Ok(parts)
}

fn expect_only_comment(rest: &str) -> Result<(), String> {
    let rest = rest.trim_start();
    if rest.is_empty() || rest.starts_with('#') {
        Ok(())
    } else {
        Err("unexpected text after the closing quote".to_string())
    }
}

/// Parse text with `$` substitutions. In double quotes (`quoted`), backslash escapes apply and
/// the value ends at the closing `"`; unquoted, it ends at the end of the line or at a `#`
/// after whitespace. Returns the parts and the bytes consumed (including the closing quote).
fn parse_template(input: &str, quoted: bool) -> Result<(Vec<Part>, usize), String> {
    let mut parts = Vec::new();
    let mut text = String::new();
    let mut chars = input.char_indices().peekable();
    // A `#` right after `=` is part of the value (passwords may start with one).
    let mut previous_is_space = false;
    while let Some((index, c)) = chars.next() {
        match c {
            '"' if quoted => {
                flush(&mut parts, &mut text);
                return Ok((parts, index + 1));
            }
            '\\' if quoted => match chars.next() {
                Some((_, 'n')) => text.push('\n'),
                Some((_, escaped @ ('"' | '\\' | '$'))) => text.push(escaped),
                Some((_, other)) => {
                    text.push('\\');
                    text.push(other);
                }
                None => return Err("missing closing `\"`".to_string()),
            },
            '#' if !quoted && previous_is_space => break,
            '$' => {
                let rest = &input[index + 1..];
                if let Some(braced) = rest.strip_prefix('{') {
                    let end = braced
                        .find('}')
                        .ok_or_else(|| "missing `}` after `${`".to_string())?;
                    let name = &braced[..end];
                    crate::config::check_env_name(name)
                        .map_err(|_| "invalid variable name in `${...}`".to_string())?;
                    flush(&mut parts, &mut text);
                    parts.push(Part::Variable(name.to_string()));
                    skip(&mut chars, index + 1 + 1 + end + 1);
                } else if let Some(command) = rest.strip_prefix('(') {
                    let end = command_end(command)
                        .ok_or_else(|| "missing `)` closing `$(`".to_string())?;
                    flush(&mut parts, &mut text);
                    parts.push(Part::Command(command[..end].to_string()));
                    skip(&mut chars, index + 1 + 1 + end + 1);
                } else if rest.starts_with(|c: char| c.is_ascii_alphabetic() || c == '_') {
                    let end = rest
                        .find(|c: char| !c.is_ascii_alphanumeric() && c != '_')
                        .unwrap_or(rest.len());
                    flush(&mut parts, &mut text);
                    parts.push(Part::Variable(rest[..end].to_string()));
                    skip(&mut chars, index + 1 + end);
                } else {
                    text.push('$');
                }
            }
            other => text.push(other),
        }
        previous_is_space = c.is_whitespace();
    }
    if quoted {
        return Err("missing closing `\"`".to_string());
    }
    flush(&mut parts, &mut text);
    Ok((parts, input.len()))
}

/// Advance `chars` to byte offset `to`.
fn skip(chars: &mut std::iter::Peekable<std::str::CharIndices<'_>>, to: usize) {
    while chars.peek().is_some_and(|(index, _)| *index < to) {
        chars.next();
    }
}

/// The byte offset of the `)` that closes a `$(` whose content starts `command`, counting
/// nested parentheses outside quotes.
fn command_end(command: &str) -> Option<usize> {
    let mut depth = 0usize;
    let mut quote: Option<char> = None;
    for (index, c) in command.char_indices() {
        match (quote, c) {
            (Some(open), c) if c == open => quote = None,
            (Some(_), _) => {}
            (None, '\'' | '"') => quote = Some(c),
            (None, '(') => depth += 1,
            (None, ')') if depth == 0 => return Some(index),
            (None, ')') => depth -= 1,
            _ => {}
        }
    }
    None
}

fn flush(parts: &mut Vec<Part>, text: &mut String) {
    if !text.is_empty() {
        parts.push(Part::Text(std::mem::take(text)));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use Part::{Command, Text, Variable};

    fn one(line: &str) -> Vec<Part> {
        let defs = parse(line, Path::new(".hoist/secrets")).expect("parses");
        assert_eq!(defs.len(), 1, "{line}");
        defs.into_iter().next().map(|d| d.parts).unwrap_or_default()
    }

    fn text(value: &str) -> Vec<Part> {
        vec![Text(value.to_string())]
    }

    #[test]
    fn unquoted_values_are_trimmed_and_lose_trailing_comments() {
        assert_eq!(one("A=hello world  # note"), text("hello world"));
        assert_eq!(one("A = x#y"), text("x#y"));
        assert_eq!(one("export A=1"), text("1"));
        assert_eq!(one("A="), Vec::<Part>::new());
        assert_eq!(one("A=#hash"), text("#hash"));
    }

    #[test]
    fn single_quotes_are_literal() {
        assert_eq!(
            one("A='$(rm -rf /) ${X} \\n' # c"),
            text("$(rm -rf /) ${X} \\n")
        );
    }

    #[test]
    fn double_quotes_have_escapes_and_substitutions() {
        assert_eq!(
            one(r#"A="a\n\"b\" \\ \$X ${Y} $Z-$(echo "(x)")" # c"#),
            vec![
                Text("a\n\"b\" \\ $X ".into()),
                Variable("Y".into()),
                Text(" ".into()),
                Variable("Z".into()),
                Text("-".into()),
                Command("echo \"(x)\"".into()),
            ]
        );
    }

    #[test]
    fn unquoted_substitutions() {
        assert_eq!(
            one("URL=postgres://u:${PW}@db/x"),
            vec![
                Text("postgres://u:".into()),
                Variable("PW".into()),
                Text("@db/x".into()),
            ]
        );
        assert_eq!(
            one("T=$(op read op://a/b # not a comment)"),
            vec![Command("op read op://a/b # not a comment".into())]
        );
        assert_eq!(one("P=5$"), text("5$"));
    }

    #[test]
    fn comments_blank_lines_and_lines_are_counted() {
        let defs = parse("# c\n\nA=1\n  # d\nB=2\n", Path::new("f")).expect("parses");
        assert_eq!(
            defs.iter()
                .map(|d| (d.name.as_str(), d.line))
                .collect::<Vec<_>>(),
            [("A", 3), ("B", 5)]
        );
    }

    #[test]
    fn syntax_errors_name_the_line_but_not_the_value() {
        for (bad, why) in [
            ("A=1\nsupersecretvalue", "no `=`"),
            ("1A=x", "invalid name"),
            ("A='supersecretvalue", "closing `'`"),
            ("A=\"supersecretvalue", "closing `\"`"),
            ("A=${supersecretvalue", "`}`"),
            ("A=$(supersecretvalue", "`)`"),
            ("A=\"x\" supersecretvalue", "after the closing quote"),
        ] {
            let err = parse(bad, Path::new(".hoist/secrets"))
                .expect_err(bad)
                .to_string();
            assert!(err.contains(why), "{bad}: {err}");
            assert!(err.contains(".hoist/secrets:"), "{err}");
            assert!(!err.contains("supersecretvalue"), "{err}");
        }
    }

    mod properties {
        use proptest::prelude::*;

        use super::*;

        /// Marks the value in generated lines, to find it in error messages.
        const MARK: &str = "zq9value9qz";

        proptest! {
            #[test]
            fn dotenv_parsing_never_panics(
                text in any::<String>(),
                lines in prop::collection::vec(
                    "(export )?[A-Za-z_0-9]{0,4} ?= ?[\"'$(){}#a-zA-Z0-9 \\\\é]{0,24}",
                    0..6,
                ),
            ) {
                let _ = parse(&text, Path::new(".hoist/secrets"));
                let _ = parse(&lines.join("\n"), Path::new(".hoist/secrets"));
            }

            #[test]
            fn errors_never_quote_the_value(
                before in "[\"'$(){}#a-z \\\\]{0,12}",
                after in "[\"'$(){}#a-z \\\\]{0,12}",
            ) {
                let line = format!("SECRET={before}{MARK}{after}");
                if let Err(err) = parse(&line, Path::new(".hoist/secrets")) {
                    prop_assert!(!err.to_string().contains(MARK), "{line}: {err}");
                }
            }

            #[test]
            fn single_quoted_values_are_taken_literally(value in "[^'\\n\\r]{0,40}") {
                let line = format!("A='{value}'");
                let parsed = parse(&line, Path::new("f")).map(|defs| {
                    defs.into_iter().map(|d| d.parts).collect::<Vec<_>>()
                });
                prop_assert_eq!(parsed.ok(), Some(vec![vec![Text(value)]]));
            }
        }
    }
}
