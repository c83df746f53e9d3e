//! Progress of work on several hosts at once. On a terminal: one indicatif spinner line per host,
//! showing its current step. Otherwise (pipes, CI, `-v`, `--json`): plain lines on stderr, one
//! per finished host, plus one per step with `-v`. Commands report through this and the
//! [`Printer`]; nothing else draws on the terminal.

use std::io::IsTerminal;
use std::time::Duration;

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};

use crate::printer::Printer;

pub struct Reporter {
    printer: Printer,
    bars: Option<MultiProgress>,
}

/// The progress line of one host.
pub struct HostProgress<'a> {
    reporter: &'a Reporter,
    host: String,
    bar: Option<ProgressBar>,
}

impl Reporter {
    /// Spinners only when stderr is a terminal and nothing asked for plain output.
    pub fn new(printer: Printer) -> Self {
        let interactive = std::io::stderr().is_terminal()
            && !printer.is_quiet()
            && !printer.is_verbose()
            && !printer.json()
            && std::env::var_os("CI").is_none();
        Self {
            printer,
            bars: interactive
                .then(|| MultiProgress::with_draw_target(ProgressDrawTarget::stderr())),
        }
    }

    pub fn host(&self, host: &str) -> HostProgress<'_> {
        let bar = self.bars.as_ref().map(|bars| {
            let bar = bars.add(ProgressBar::new_spinner());
            bar.set_style(
                ProgressStyle::with_template("{spinner} {prefix:>16} {wide_msg}")
                    .unwrap_or_else(|_| ProgressStyle::default_spinner()),
            );
            bar.set_prefix(host.to_string());
            bar.enable_steady_tick(Duration::from_millis(100));
            bar
        });
        HostProgress {
            reporter: self,
            host: host.to_string(),
            bar,
        }
    }
}

impl HostProgress<'_> {
    /// A step has started on this host ("pulling", "starting").
    pub fn step(&self, step: impl AsRef<str>) {
        tracing::debug!(host = %self.host, step = step.as_ref(), "step");
        match &self.bar {
            Some(bar) => bar.set_message(step.as_ref().to_string()),
            None => self
                .reporter
                .printer
                .detail(format!("{}: {}", self.host, step.as_ref())),
        }
    }

    /// The host is done; the line stays with `message`.
    pub fn done(&self, message: impl AsRef<str>) {
        self.finish("  ", "Done", message.as_ref());
    }

    /// The host failed; the line stays with `message`.
    pub fn failed(&self, message: impl AsRef<str>) {
        self.finish("✗ ", "Failed", message.as_ref());
    }

    /// End the spinner with `mark` in its place, or print a plain status line with `verb`.
    fn finish(&self, mark: &str, verb: &str, message: &str) {
        match &self.bar {
            Some(bar) => {
                bar.set_style(
                    ProgressStyle::with_template(&format!("{mark}{{prefix:>16}} {{wide_msg}}"))
                        .unwrap_or_else(|_| ProgressStyle::default_spinner()),
                );
                bar.finish_with_message(message.to_string());
            }
            None => self
                .reporter
                .printer
                .status(verb, format!("{}: {message}", self.host)),
        }
    }
}
