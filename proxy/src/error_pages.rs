//! Error pages the proxy answers with itself (404, 413, 500, 502, 503, 504): built-in HTML, or a
//! service's own `<status>.html` from its `--error-pages` directory, where `{{ .Message }}` is
//! replaced by the stop message (HTML-escaped).

use std::collections::HashMap;
use std::path::Path;

use bytes::Bytes;
use http::StatusCode;

/// Statuses a page can be given for.
pub const STATUSES: [u16; 7] = [400, 404, 413, 500, 502, 503, 504];

/// A set of custom pages loaded from a directory; statuses without a file use the built-in page.
#[derive(Debug, Clone, Default)]
pub struct ErrorPages {
    custom: HashMap<u16, String>,
}

impl ErrorPages {
    /// Loads `<status>.html` files from `directory`. A missing directory is an error; missing files
    /// are not.
    pub fn load(directory: &Path) -> std::io::Result<Self> {
        if !directory.is_dir() {
            return Err(std::io::Error::new(
                std::io::ErrorKind::NotFound,
                format!(
                    "error pages directory {} does not exist",
                    directory.display()
                ),
            ));
        }
        let mut custom = HashMap::new();
        for status in STATUSES {
            let path = directory.join(format!("{status}.html"));
            match std::fs::read_to_string(&path) {
                Ok(page) => {
                    custom.insert(status, page);
                }
                Err(error) if error.kind() == std::io::ErrorKind::NotFound => {}
                Err(error) => return Err(error),
            }
        }
        Ok(Self { custom })
    }

    /// The page for `status`, with `message` filled in.
    pub fn render(&self, status: StatusCode, message: &str) -> Bytes {
        let escaped = escape_html(message);
        if let Some(template) = self.custom.get(&status.as_u16()) {
            return Bytes::from(fill(template, &escaped));
        }
        builtin(status, &escaped)
    }
}

/// The built-in page for `status`.
pub fn builtin(status: StatusCode, escaped_message: &str) -> Bytes {
    let (title, text) = match status.as_u16() {
        400 => ("Bad request", "The request could not be understood."),
        404 => ("Not found", "No service is deployed at this address."),
        413 => (
            "Request too large",
            "The request body is larger than this service accepts.",
        ),
        500 => (
            "Internal error",
            "Something went wrong while handling the request.",
        ),
        502 => ("Bad gateway", "The application could not be reached."),
        503 => (
            "Service unavailable",
            "The service is temporarily unavailable.",
        ),
        504 => (
            "Gateway timeout",
            "The application took too long to respond.",
        ),
        _ => ("Error", "The request could not be completed."),
    };
    let message = if escaped_message.is_empty() {
        String::new()
    } else {
        format!("<p>{escaped_message}</p>")
    };
    Bytes::from(format!(
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head><meta charset=\"utf-8\"><title>{code} {title}</title>\
         <style>body{{font-family:system-ui,sans-serif;margin:4rem auto;max-width:36rem;color:#222}}</style>\
         </head>\n<body><h1>{title}</h1><p>{text}</p>{message}</body>\n</html>\n",
        code = status.as_u16()
    ))
}

fn fill(template: &str, message: &str) -> String {
    template
        .replace("{{ .Message }}", message)
        .replace("{{.Message}}", message)
}

fn escape_html(text: &str) -> String {
    let mut escaped = String::with_capacity(text.len());
    for character in text.chars() {
        match character {
            '&' => escaped.push_str("&amp;"),
            '<' => escaped.push_str("&lt;"),
            '>' => escaped.push_str("&gt;"),
            '"' => escaped.push_str("&quot;"),
            '\'' => escaped.push_str("&#39;"),
            other => escaped.push(other),
        }
    }
    escaped
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn custom_pages_override_and_escape_the_message() {
        let directory = tempfile::tempdir().unwrap();
        std::fs::write(directory.path().join("503.html"), "<b>{{ .Message }}</b>").unwrap();
        let pages = ErrorPages::load(directory.path()).unwrap();
        let page = pages.render(StatusCode::SERVICE_UNAVAILABLE, "Back <soon>");
        assert_eq!(&page[..], b"<b>Back &lt;soon&gt;</b>");
        let fallback = pages.render(StatusCode::NOT_FOUND, "");
        assert!(String::from_utf8_lossy(&fallback).contains("Not found"));
        assert!(ErrorPages::load(&directory.path().join("missing")).is_err());
    }
}
