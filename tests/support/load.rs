//! Continuous traffic for end-to-end tests: GET `/version` from several threads, each request
//! on a new connection, every failure counted, the versions seen in order.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use super::http_get;

/// Requests to `/version` through the proxy from several threads, each on a new connection,
/// until stopped; every status other than 200 and every I/O error is a failure.
pub struct Load {
    stop: Arc<AtomicBool>,
    ok: Arc<AtomicUsize>,
    failures: Arc<Mutex<Vec<String>>>,
    seen: Arc<Mutex<Vec<String>>>,
    threads: Vec<std::thread::JoinHandle<()>>,
}

impl Load {
    pub fn start(address: String, threads: usize) -> Load {
        Self::start_on(address, "/version", threads)
    }

    /// Requests to `path` instead of `/version`.
    pub fn start_on(address: String, path: &'static str, threads: usize) -> Load {
        let load = Load {
            stop: Arc::new(AtomicBool::new(false)),
            ok: Arc::new(AtomicUsize::new(0)),
            failures: Arc::new(Mutex::new(Vec::new())),
            seen: Arc::new(Mutex::new(Vec::new())),
            threads: Vec::new(),
        };
        let threads = (0..threads)
            .map(|_| {
                let (stop, ok, failures, seen) = (
                    load.stop.clone(),
                    load.ok.clone(),
                    load.failures.clone(),
                    load.seen.clone(),
                );
                let address = address.clone();
                std::thread::spawn(move || {
                    while !stop.load(Ordering::Relaxed) {
                        match http_get(&address, path) {
                            Ok((200, body)) => {
                                ok.fetch_add(1, Ordering::Relaxed);
                                let body = body.trim().to_string();
                                let mut seen = seen.lock().expect("seen");
                                if seen.last() != Some(&body) {
                                    seen.push(body);
                                }
                            }
                            Ok((status, body)) => failures
                                .lock()
                                .expect("failures")
                                .push(format!("{status}: {}", body.trim())),
                            Err(err) => failures.lock().expect("failures").push(err.to_string()),
                        }
                    }
                })
            })
            .collect();
        Load { threads, ..load }
    }

    /// Stop; (successful requests, failures, versions seen in order by any thread).
    pub fn finish(self) -> (usize, Vec<String>, Vec<String>) {
        self.stop.store(true, Ordering::Relaxed);
        for thread in self.threads {
            thread.join().expect("load thread");
        }
        let failures = self.failures.lock().expect("failures").clone();
        let seen = self.seen.lock().expect("seen").clone();
        (self.ok.load(Ordering::Relaxed), failures, seen)
    }

    /// Stop, asserting zero failed requests and at least `min_ok` that got through (`what`
    /// names the run in the messages); returns the versions seen.
    pub fn finish_clean(self, what: &str, min_ok: usize) -> Vec<String> {
        let (ok, failures, seen) = self.finish();
        assert!(
            failures.is_empty(),
            "{what}: {} failed requests of {}: {:?}",
            failures.len(),
            ok + failures.len(),
            &failures[..failures.len().min(10)]
        );
        assert!(ok >= min_ok, "{what}: only {ok} requests got through");
        if seen.len() <= 8 {
            eprintln!("{what}: {ok} requests, 0 failed, versions seen {seen:?}");
        } else {
            eprintln!(
                "{what}: {ok} requests, 0 failed, versions seen {:?} … {:?} ({} changes)",
                &seen[..4],
                &seen[seen.len() - 2..],
                seen.len() - 1
            );
        }
        seen
    }
}
