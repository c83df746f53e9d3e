//! Where the app's log lines go: request and lifecycle lines to stdout, warnings to stderr
//! (what `docker logs` shows), or into memory so tests can assert on them. Write errors are
//! ignored: a closed stdout must never take a connection down.

use std::io::{self, Write};
#[cfg(test)]
use std::sync::{Arc, Mutex, PoisonError};

/// A log sink, cheap to clone into every connection thread.
#[derive(Debug, Clone)]
pub enum Log {
    /// Lines go to stdout, warnings to stderr.
    Stdio,
    /// Lines and warnings are kept in order, warnings prefixed with `warning: `.
    #[cfg(test)]
    Memory(Arc<Mutex<Vec<String>>>),
}

impl Log {
    /// Logs one line (a request, a lifecycle event) to stdout.
    pub fn info(&self, line: &str) {
        match self {
            Log::Stdio => {
                let _ = writeln!(io::stdout().lock(), "{line}");
            }
            #[cfg(test)]
            Log::Memory(lines) => push(lines, line.to_string()),
        }
    }

    /// Logs one warning line to stderr.
    pub fn warn(&self, line: &str) {
        match self {
            Log::Stdio => {
                let _ = writeln!(io::stderr().lock(), "{line}");
            }
            #[cfg(test)]
            Log::Memory(lines) => push(lines, format!("warning: {line}")),
        }
    }
}

#[cfg(test)]
fn push(lines: &Mutex<Vec<String>>, line: String) {
    lines
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .push(line);
}
