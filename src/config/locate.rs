//! Where each key of the merged configuration was written: file, line and column, kept per key
//! path (`servers.web.hosts`, `env.secret[0]`) from the last file that set it, plus the source
//! snippets errors print. Error wording lives in error.rs.

use std::collections::BTreeMap;
use std::fmt;
use std::ops::Range;
use std::path::{Path, PathBuf};

use serde::Serialize;
use toml::de::{DeTable, DeValue};

/// A place in a configuration file. Displays as `deploy.toml:12:3`, the file relative to the
/// current directory when it is under it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Location {
    pub file: PathBuf,
    pub line: usize,
    pub column: usize,
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}:{}:{}",
            display_path(&self.file),
            self.line,
            self.column
        )
    }
}

/// A path as the user would type it: relative to the current directory when it is under it.
pub fn display_path(path: &Path) -> String {
    std::env::current_dir()
        .ok()
        .and_then(|cwd| path.strip_prefix(cwd).ok().map(Path::to_path_buf))
        .filter(|relative| !relative.as_os_str().is_empty())
        .unwrap_or_else(|| path.to_path_buf())
        .display()
        .to_string()
}

/// One configuration file's path and text.
#[derive(Debug, Clone)]
pub struct Source {
    pub path: PathBuf,
    pub text: String,
}

impl Source {
    /// The location of a byte offset: 1-based line and column (in characters).
    pub fn location(&self, offset: usize) -> Location {
        let offset = floor_char_boundary(&self.text, offset);
        let before = &self.text[..offset];
        let line = before.matches('\n').count() + 1;
        let line_start = before.rfind('\n').map_or(0, |index| index + 1);
        Location {
            file: self.path.clone(),
            line,
            column: before[line_start..].chars().count() + 1,
        }
    }

    /// Three lines in rustc's style: an empty gutter, the source line, carets under the span.
    pub fn snippet(&self, span: &Range<usize>) -> String {
        let start = floor_char_boundary(&self.text, span.start);
        let location = self.location(start);
        let line_start = self.text[..start].rfind('\n').map_or(0, |index| index + 1);
        let line_end = self.text[start..]
            .find('\n')
            .map_or(self.text.len(), |index| start + index);
        let line_text = self.text[line_start..line_end].trim_end_matches('\r');
        let end = floor_char_boundary(&self.text, span.end.clamp(start, line_end));
        let carets = self.text[start..end].chars().count().max(1);
        let number = location.line.to_string();
        let gutter = " ".repeat(number.len());
        format!(
            "{gutter} |\n{number} | {line_text}\n{gutter} | {}{}",
            " ".repeat(location.column - 1),
            "^".repeat(carets)
        )
    }
}

/// A span in one of the loaded files.
#[derive(Debug, Clone)]
pub struct Spot {
    pub file: usize,
    pub span: Range<usize>,
}

/// Key path → where it was last written, across the files of one load.
#[derive(Debug, Default)]
pub struct Locator {
    pub sources: Vec<Source>,
    spots: BTreeMap<String, Spot>,
}

impl Locator {
    /// Add a file, record where its keys are, and return its index. Its keys replace those of
    /// earlier files; a key that isn't a table also drops what earlier files had under it (an
    /// array replaces an array, element locations included).
    pub fn add_layer(&mut self, source: Source, table: &DeTable<'_>) -> usize {
        let file = self.sources.len();
        self.sources.push(source);
        self.record_table(file, "", table);
        file
    }

    /// Where `path` was written, if it was.
    #[cfg(test)]
    pub fn spot(&self, path: &str) -> Option<Spot> {
        self.spots.get(path).cloned()
    }

    /// The location of `path`, or of its nearest written parent, or the start of the first file.
    pub fn location(&self, path: &str) -> Location {
        let spot = self.nearest(path);
        self.sources[spot.file].location(spot.span.start)
    }

    /// Location and snippet for `path`, falling back as [`Locator::location`] does.
    pub fn place(&self, path: &str) -> (Location, String) {
        let spot = self.nearest(path);
        let source = &self.sources[spot.file];
        (source.location(spot.span.start), source.snippet(&spot.span))
    }

    fn nearest(&self, path: &str) -> Spot {
        let mut candidate = path;
        loop {
            if let Some(spot) = self.spots.get(candidate) {
                return spot.clone();
            }
            match candidate.rfind(['.', '[']) {
                Some(index) => candidate = &candidate[..index],
                None => {
                    return Spot {
                        file: 0,
                        span: 0..0,
                    };
                }
            }
        }
    }

    fn record_table(&mut self, file: usize, prefix: &str, table: &DeTable<'_>) {
        for (key, value) in table.iter() {
            let path = join_key(prefix, key.get_ref());
            if !value.get_ref().is_table() {
                self.forget_under(&path);
            }
            self.spots.insert(
                path.clone(),
                Spot {
                    file,
                    span: key.span(),
                },
            );
            self.record_value(file, &path, value.get_ref());
        }
    }

    fn record_value(&mut self, file: usize, path: &str, value: &DeValue<'_>) {
        match value {
            DeValue::Table(table) => self.record_table(file, path, table),
            DeValue::Array(array) => {
                for (index, element) in array.iter().enumerate() {
                    let element_path = format!("{path}[{index}]");
                    self.spots.insert(
                        element_path.clone(),
                        Spot {
                            file,
                            span: element.span(),
                        },
                    );
                    self.record_value(file, &element_path, element.get_ref());
                }
            }
            _ => {}
        }
    }

    fn forget_under(&mut self, path: &str) {
        let dotted = format!("{path}.");
        let indexed = format!("{path}[");
        self.spots
            .retain(|key, _| !key.starts_with(&dotted) && !key.starts_with(&indexed));
    }
}

/// Append a key to a dotted path, quoting it when it isn't a bare TOML key.
pub fn join_key(prefix: &str, key: &str) -> String {
    let bare = !key.is_empty()
        && key
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
    let key = if bare {
        key.to_string()
    } else {
        format!("{key:?}")
    };
    if prefix.is_empty() {
        key
    } else {
        format!("{prefix}.{key}")
    }
}

/// What an error span points at: the key path and whether the span is the key itself (an
/// unknown key) or its value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    pub path: String,
    pub is_key: bool,
}

/// The deepest key or value of `table` whose span contains `offset`.
pub fn find_target(table: &DeTable<'_>, offset: usize) -> Option<Target> {
    let mut best: Option<(usize, Target)> = None;
    search_table(table, "", offset, &mut best);
    best.map(|(_, target)| target)
}

fn search_table(
    table: &DeTable<'_>,
    prefix: &str,
    offset: usize,
    best: &mut Option<(usize, Target)>,
) {
    for (key, value) in table.iter() {
        let path = join_key(prefix, key.get_ref());
        consider(&key.span(), offset, &path, true, best);
        search_value(value.get_ref(), &value.span(), &path, offset, best);
    }
}

fn search_value(
    value: &DeValue<'_>,
    span: &Range<usize>,
    path: &str,
    offset: usize,
    best: &mut Option<(usize, Target)>,
) {
    match value {
        DeValue::Table(table) => {
            consider(span, offset, path, false, best);
            search_table(table, path, offset, best);
        }
        DeValue::Array(array) => {
            consider(span, offset, path, false, best);
            for (index, element) in array.iter().enumerate() {
                let element_path = format!("{path}[{index}]");
                search_value(
                    element.get_ref(),
                    &element.span(),
                    &element_path,
                    offset,
                    best,
                );
            }
        }
        _ => consider(span, offset, path, false, best),
    }
}

fn consider(
    span: &Range<usize>,
    offset: usize,
    path: &str,
    is_key: bool,
    best: &mut Option<(usize, Target)>,
) {
    let contains = span.contains(&offset) || (span.is_empty() && span.start == offset);
    if !contains {
        return;
    }
    let length = span.len();
    if best
        .as_ref()
        .is_none_or(|(best_length, _)| length < *best_length)
    {
        *best = Some((
            length,
            Target {
                path: path.to_string(),
                is_key,
            },
        ));
    }
}

fn floor_char_boundary(text: &str, offset: usize) -> usize {
    let mut offset = offset.min(text.len());
    while !text.is_char_boundary(offset) {
        offset -= 1;
    }
    offset
}

#[cfg(test)]
mod tests {
    use super::*;

    fn source(text: &str) -> Source {
        Source {
            path: PathBuf::from("/nowhere/deploy.toml"),
            text: text.to_string(),
        }
    }

    #[test]
    fn snippet_points_at_span() {
        let text = "service = \"x\"\n[servers.web]\nhots = [\"a\"]\n";
        let offset = text.find("hots").expect("present");
        let snippet = source(text).snippet(&(offset..offset + 4));
        assert_eq!(snippet, "  |\n3 | hots = [\"a\"]\n  | ^^^^");
        let location = source(text).location(offset);
        assert_eq!((location.line, location.column), (3, 1));
    }

    #[test]
    fn finds_deepest_key_or_value() {
        let text = "[servers.web]\nhosts = [\"a\", 1]\n[proxy.healthcheck]\ninterval = \"1x\"\n";
        let table = DeTable::parse(text).expect("parses");
        let at = |needle: &str| {
            find_target(table.get_ref(), text.find(needle).expect("present")).expect("found")
        };
        assert_eq!(at("1]").path, "servers.web.hosts[1]");
        assert_eq!(at("\"1x\"").path, "proxy.healthcheck.interval");
        let text = "[env]\nsecret = { x = 1 }\n";
        let table = DeTable::parse(text).expect("parses");
        let offset = text.find('{').expect("present");
        let found = find_target(table.get_ref(), offset).expect("found");
        assert_eq!(found.path, "env.secret");
        let key = at("interval");
        assert_eq!(key.path, "proxy.healthcheck.interval");
        assert!(key.is_key);
    }

    #[test]
    fn later_layers_replace_arrays_and_merge_tables() {
        let mut locator = Locator::default();
        let base = "[servers.web]\nhosts = [\"a\", \"b\"]\ncmd = \"x\"\n";
        let over = "[servers.web]\nhosts = [\"c\"]\n";
        let base_table = DeTable::parse(base).expect("parses");
        let over_table = DeTable::parse(over).expect("parses");
        locator.add_layer(source(base), base_table.get_ref());
        locator.add_layer(source(over), over_table.get_ref());
        assert_eq!(locator.spot("servers.web.hosts").map(|s| s.file), Some(1));
        assert_eq!(locator.spot("servers.web.cmd").map(|s| s.file), Some(0));
        assert!(locator.spot("servers.web.hosts[1]").is_none());
        // A missing key falls back to its parent table.
        assert_eq!(locator.location("servers.web.labels").line, 1);
    }

    #[test]
    fn keys_with_dots_are_quoted_in_paths() {
        assert_eq!(join_key("labels", "com.acme"), "labels.\"com.acme\"");
        assert_eq!(join_key("", "web"), "web");
    }
}
