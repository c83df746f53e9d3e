//! All user-facing output. stdout carries data only (tables, JSON, config snippets); status lines,
//! warnings and progress go to stderr. Library code reports through this type and never prints.

use std::io::Write;

#[derive(Debug, Clone, Copy)]
pub struct Printer {
    quiet: bool,
    verbose: bool,
    json: bool,
}

impl Printer {
    pub fn new(quiet: bool, verbose: u8, json: bool) -> Self {
        Self {
            quiet,
            verbose: verbose > 0,
            json,
        }
    }

    pub fn is_quiet(&self) -> bool {
        self.quiet
    }

    pub fn is_verbose(&self) -> bool {
        self.verbose
    }

    /// Whether commands should print machine-readable JSON on stdout.
    pub fn json(&self) -> bool {
        self.json
    }

    /// A status line on stderr with a right-aligned verb: `    Starting server1 (10.231.7.11)`.
    pub fn status(&self, verb: &str, message: impl AsRef<str>) {
        if self.quiet {
            return;
        }
        let mut err = std::io::stderr().lock();
        let _ = writeln!(err, "{verb:>12} {}", message.as_ref());
    }

    /// Detail shown with `-v` only.
    pub fn detail(&self, message: impl AsRef<str>) {
        if self.verbose && !self.quiet {
            let mut err = std::io::stderr().lock();
            let _ = writeln!(err, "{:>12} {}", "", message.as_ref());
        }
    }

    /// A warning the user can act on; shown even without `-v`.
    pub fn warn(&self, message: impl AsRef<str>) {
        let mut err = std::io::stderr().lock();
        let _ = writeln!(err, "warning: {}", message.as_ref());
    }

    /// Data on stdout. A closed pipe (`hoist sandbox list | head -1`) is not an error.
    pub fn data(&self, text: impl AsRef<str>) {
        let mut out = std::io::stdout().lock();
        let _ = out.write_all(text.as_ref().as_bytes());
        let _ = out.flush();
    }
}

/// `1 host`, `3 hosts`: a count with its noun, for messages.
pub fn plural(count: usize, noun: &str) -> String {
    format!("{count} {noun}{}", if count == 1 { "" } else { "s" })
}

/// Rows as aligned columns, two spaces apart; the first row is the header. A cell may hold
/// several lines: the row grows downwards and the other cells stay on its first line.
pub fn table(rows: &[Vec<String>]) -> String {
    let columns = rows.iter().map(Vec::len).max().unwrap_or(0);
    let widths: Vec<usize> = (0..columns)
        .map(|i| {
            rows.iter()
                .filter_map(|row| row.get(i))
                .flat_map(|cell| cell.lines())
                .map(|line| line.chars().count())
                .max()
                .unwrap_or(0)
        })
        .collect();
    let mut out = String::new();
    for row in rows {
        let height = row
            .iter()
            .map(|cell| cell.lines().count())
            .max()
            .unwrap_or(1)
            .max(1);
        for line_index in 0..height {
            let line: Vec<String> = (0..columns)
                .map(|i| {
                    let text = row
                        .get(i)
                        .and_then(|cell| cell.lines().nth(line_index))
                        .unwrap_or("");
                    format!("{text:<width$}", width = widths[i])
                })
                .collect();
            out.push_str(line.join("  ").trim_end());
            out.push('\n');
        }
    }
    out
}

/// Cuts a byte stream into lines and puts a prefix before each, holding back a partial line
/// until its end arrives; without a prefix it passes everything through at once.
pub struct LinePrefixer {
    prefix: Option<String>,
    partial: Vec<u8>,
}

impl LinePrefixer {
    pub fn new(prefix: Option<String>) -> Self {
        Self {
            prefix,
            partial: Vec::new(),
        }
    }

    /// The complete lines `data` ends (with what was held back), prefixed.
    pub fn push(&mut self, data: &[u8]) -> Vec<u8> {
        let Some(prefix) = &self.prefix else {
            return data.to_vec();
        };
        self.partial.extend_from_slice(data);
        let Some(last_newline) = self.partial.iter().rposition(|&byte| byte == b'\n') else {
            return Vec::new();
        };
        let rest = self.partial.split_off(last_newline + 1);
        let complete = std::mem::replace(&mut self.partial, rest);
        let mut out = Vec::with_capacity(complete.len() + prefix.len() * 4);
        for line in complete.split_inclusive(|&byte| byte == b'\n') {
            out.extend_from_slice(prefix.as_bytes());
            out.extend_from_slice(line);
        }
        out
    }

    /// A partial last line held back, prefixed and ended.
    pub fn finish(&mut self) -> Vec<u8> {
        match &self.prefix {
            Some(prefix) if !self.partial.is_empty() => {
                let mut out = prefix.as_bytes().to_vec();
                out.append(&mut self.partial);
                out.push(b'\n');
                out
            }
            _ => Vec::new(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::LinePrefixer;

    #[test]
    fn table_aligns_columns_and_grows_multi_line_cells() {
        let rows = vec![
            vec![
                "HOST".to_string(),
                "CONTAINERS".to_string(),
                "X".to_string(),
            ],
            vec!["a".to_string(), "one\ntwo".to_string(), "y".to_string()],
        ];
        assert_eq!(
            super::table(&rows),
            "HOST  CONTAINERS  X\na     one         y\n      two\n"
        );
    }

    #[test]
    fn several_hosts_get_each_line_prefixed_even_when_split_across_chunks() {
        let mut prefixer = LinePrefixer::new(Some("[a] ".into()));
        let mut out = prefixer.push(b"one\ntw");
        out.extend(prefixer.push(b"o\nthr"));
        out.extend(prefixer.finish());
        assert_eq!(String::from_utf8_lossy(&out), "[a] one\n[a] two\n[a] thr\n");
        assert!(prefixer.finish().is_empty());

        let mut plain = LinePrefixer::new(None);
        assert_eq!(plain.push(b"par"), b"par");
        assert!(plain.finish().is_empty());
    }
}
