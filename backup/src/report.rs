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

/// The report of `err`, ready for stderr. A cause whose text the previous one already holds
/// (clients that print their source inside their own message) is left out.
pub fn render(err: &anyhow::Error) -> String {
    let mut out = format!("error: {err}\n");
    let hint = err
        .downcast_ref::<Hinted>()
        .or_else(|| err.chain().find_map(|cause| cause.downcast_ref::<Hinted>()))
        .map(|hinted| hinted.hint.clone());
    let mut previous = err.to_string();
    for cause in err.chain().skip(1) {
        let text = cause.to_string();
        if !previous.contains(&text) {
            out.push_str(&format!("  Caused by: {text}\n"));
        }
        previous = text;
    }
    if let Some(hint) = hint {
        out.push_str(&format!("hint: {hint}\n"));
    }
    out
}
