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
