//! Error reports at the CLI edge: `error: <what>`, `  Caused by: <why>` lines, then `hint: <what to
//! do>`, and the exit status that goes with them. Library code attaches hints with [`HintExt`]
//! (or, for `ConfigError`, its own `hint()`); only `main` prints reports.

use std::fmt;
use std::process::ExitCode;

/// How the process ends (uv-style): 0 success, 1 a failure caused by input or remote state,
/// 2 bad arguments or an unexpected internal error. clap already exits 2 on usage errors.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExitStatus {
    Success,
    Failure,
    Error,
    /// A command hoist ran for the user (`hoist exec`) exited with this status.
    Command(u8),
}

impl From<ExitStatus> for ExitCode {
    fn from(status: ExitStatus) -> Self {
        match status {
            ExitStatus::Success => ExitCode::from(0),
            ExitStatus::Failure => ExitCode::from(1),
            ExitStatus::Error => ExitCode::from(2),
            ExitStatus::Command(code) => ExitCode::from(code),
        }
    }
}

/// An error with advice for the user. Displays as the error it wraps, so a report never repeats
/// a line; the hint is printed once, after the causes.
#[derive(Debug)]
pub struct Hinted {
    inner: anyhow::Error,
    hint: String,
}

impl fmt::Display for Hinted {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.inner, f)
    }
}

impl std::error::Error for Hinted {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        let inner: &(dyn std::error::Error + Send + Sync + 'static) = self.inner.as_ref();
        inner.source()
    }
}

/// Attach a hint (what the user can do about it) to an error.
pub trait HintExt<T> {
    fn hint(self, hint: impl Into<String>) -> anyhow::Result<T>;
}

impl<T, E> HintExt<T> for Result<T, E>
where
    E: Into<anyhow::Error>,
{
    fn hint(self, hint: impl Into<String>) -> anyhow::Result<T> {
        self.map_err(|err| with_hint(err, hint))
    }
}

/// Attach a hint to an error already in hand.
pub fn with_hint(err: impl Into<anyhow::Error>, hint: impl Into<String>) -> anyhow::Error {
    anyhow::Error::new(Hinted {
        inner: err.into(),
        hint: hint.into(),
    })
}

/// Build an error that carries a hint, for failures detected by hoist itself.
pub fn hinted(message: impl fmt::Display, hint: impl Into<String>) -> anyhow::Error {
    anyhow::Error::new(Hinted {
        inner: anyhow::anyhow!("{message}"),
        hint: hint.into(),
    })
}

/// Render a report the way the user reads it.
pub fn render(err: &anyhow::Error) -> String {
    let mut out = String::new();
    let mut hints = Vec::new();
    for (index, cause) in err.chain().enumerate() {
        if let Some(hinted) = cause.downcast_ref::<Hinted>() {
            hints.push(hinted.hint.clone());
        }
        // Configuration errors carry their own advice, so `?` on `config::load` keeps it.
        if let Some(hint) = cause
            .downcast_ref::<crate::config::ConfigError>()
            .and_then(crate::config::ConfigError::hint)
        {
            hints.push(hint);
        }
        let text = cause.to_string();
        if index == 0 {
            out.push_str(&format!("error: {text}\n"));
        } else {
            out.push_str(&format!("  Caused by: {text}\n"));
        }
    }
    for hint in hints {
        out.push_str(&format!("\nhint: {hint}\n"));
    }
    out
}

pub fn print_error(err: &anyhow::Error) {
    eprint!("{}", render(err));
}

/// Failures exit 1 (bad input, unreachable server, failed deploy). Usage errors exit 2 from clap;
/// a failure to start at all exits 2 from `main`.
pub fn exit_status_for(err: &anyhow::Error) -> ExitStatus {
    match err.downcast_ref::<CommandExited>() {
        Some(exited) => ExitStatus::Command(u8::try_from(exited.code).unwrap_or(1).max(1)),
        None => ExitStatus::Failure,
    }
}

/// A command run for the user exited non-zero: hoist exits with the same status.
#[derive(Debug, thiserror::Error)]
#[error("`{command}` exited with status {code}{on}")]
pub struct CommandExited {
    pub command: String,
    pub code: i64,
    /// ` on `host`` and the like.
    pub on: String,
}

#[cfg(test)]
mod tests {
    use super::*;
    use anyhow::Context;

    #[test]
    fn report_lists_causes_then_hint() {
        let err: Result<(), std::io::Error> = Err(std::io::Error::other("connection refused"));
        let err = err
            .hint("start dockerd")
            .context("Failed to reach the local Docker engine")
            .unwrap_err();
        assert_eq!(
            render(&err),
            "error: Failed to reach the local Docker engine\n  Caused by: connection refused\n\nhint: start dockerd\n"
        );
    }

    #[test]
    fn hinted_error_is_not_printed_twice() {
        let err = hinted(
            "Sandbox `x` does not exist",
            "run `hoist sandbox up --name x`",
        );
        assert_eq!(
            render(&err),
            "error: Sandbox `x` does not exist\n\nhint: run `hoist sandbox up --name x`\n"
        );
    }
}
