//! Watching the proxy from outside: its memory, open files and threads from `/proc/<pid>`, its
//! metrics from the metrics port.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use crate::support;

/// One reading of the proxy process.
pub struct ProcessFigures {
    pub rss_bytes: u64,
    pub peak_rss_bytes: u64,
    pub open_files: usize,
    /// Its runtime's threads and the blocking pool's (file writes of spilled bodies).
    pub threads: usize,
}

impl ProcessFigures {
    pub fn read(pid: u32) -> Self {
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
        let number = |field: &str| {
            status
                .lines()
                .find_map(|line| line.strip_prefix(field))
                .and_then(|rest| {
                    rest.trim()
                        .trim_end_matches("kB")
                        .trim()
                        .parse::<u64>()
                        .ok()
                })
                .unwrap_or(0)
        };
        Self {
            rss_bytes: number("VmRSS:") * 1024,
            peak_rss_bytes: number("VmHWM:") * 1024,
            threads: number("Threads:") as usize,
            open_files: std::fs::read_dir(format!("/proc/{pid}/fd"))
                .map_or(0, |entries| entries.count()),
        }
    }
}

/// The highest VmRSS, open-file and thread counts seen by `sample_peaks`.
#[derive(Default)]
pub struct Peaks {
    pub rss_bytes: AtomicUsize,
    pub open_files: AtomicUsize,
    pub threads: AtomicUsize,
}

/// Samples the proxy every 100 ms until aborted (VmHWM has the true peak; this shows when).
pub async fn sample_peaks(pid: u32, peaks: Arc<Peaks>) {
    let mut every = tokio::time::interval(Duration::from_millis(100));
    loop {
        every.tick().await;
        let figures = ProcessFigures::read(pid);
        peaks
            .rss_bytes
            .fetch_max(figures.rss_bytes as usize, Ordering::Relaxed);
        peaks
            .open_files
            .fetch_max(figures.open_files, Ordering::Relaxed);
        peaks.threads.fetch_max(figures.threads, Ordering::Relaxed);
    }
}

/// One scrape of the metrics port (Prometheus text).
pub struct Metrics(String);

impl Metrics {
    /// Empty (every metric missing) if the port does not answer within 10 s.
    pub async fn scrape(port: u16) -> Self {
        let url = format!("http://127.0.0.1:{port}/metrics");
        let scrape = tokio::time::timeout(Duration::from_secs(10), support::get(&url));
        Self(scrape.await.map(|got| got.body).unwrap_or_default())
    }

    /// The value of the sample `name` whose labels include `labels`.
    pub fn value(&self, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
        self.0.lines().find_map(|line| {
            let rest = line.strip_prefix(name)?;
            let (label_text, value) = match rest.strip_prefix('{') {
                Some(rest) => rest.split_once("} ")?,
                None => ("", rest.strip_prefix(' ')?),
            };
            let matches = labels
                .iter()
                .all(|(key, wanted)| label_text.contains(&format!("{key}=\"{wanted}\"")));
            matches
                .then(|| value.split_whitespace().next()?.parse().ok())
                .flatten()
        })
    }

    pub fn show(&self, name: &str, labels: &[(&str, &str)]) -> String {
        self.value(name, labels)
            .map_or_else(|| "missing".into(), |value| value.to_string())
    }

    pub fn selector(name: &str, labels: &[(&str, &str)]) -> String {
        if labels.is_empty() {
            return name.into();
        }
        let labels: Vec<String> = labels
            .iter()
            .map(|(key, value)| format!("{key}=\"{value}\""))
            .collect();
        format!("{name}{{{}}}", labels.join(","))
    }
}
