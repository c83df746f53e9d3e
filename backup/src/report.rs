//! Errors as the CLI prints them: `error:` with the chain as `Caused by:` lines and an optional
//! `hint:`, the same shape as hoist's own, so hoist can relay them untouched.

use std::fmt;

/// An error with a suggestion of what to do.
#[derive(Debug)]
pub struct Hinted {
    pub message: String,
    pub hint: String,
}

impl fmt::Display for Hinted {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for Hinted {}

pub fn hinted(message: impl Into<String>, hint: impl Into<String>) -> anyhow::Error {
    anyhow::Error::new(Hinted {
        message: message.into(),
        hint: hint.into(),
    })
}

/// The report of `err`, ready for stderr.
pub fn render(err: &anyhow::Error) -> String {
    let mut out = format!("error: {err}\n");
    let mut hint = None;
    for cause in err.chain() {
        if let Some(hinted) = cause.downcast_ref::<Hinted>() {
            hint.get_or_insert_with(|| hinted.hint.clone());
        }
    }
    for cause in err.chain().skip(1) {
        out.push_str(&format!("  Caused by: {cause}\n"));
    }
    if let Some(hint) = hint {
        out.push_str(&format!("hint: {hint}\n"));
    }
    out
}
