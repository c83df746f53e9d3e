//! The proxy-wide budget for buffered bodies: how many bytes all buffered request and response
//! bodies together may keep in memory and on disk, and the directory their spill files live in.
//! `body.rs` asks it before keeping a chunk; a buffer gives back what it took when it is dropped.
//! Per-request limits (`--buffer-memory`, `--max-request-body`) are the service's and live in
//! its options; this is what keeps many clients together from exhausting the host.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use crate::metrics::Metrics;

/// Where buffered bytes are kept, for the budget and its metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Place {
    Memory,
    Disk,
}

impl Place {
    pub fn label(self) -> &'static str {
        match self {
            Place::Memory => "memory",
            Place::Disk => "disk",
        }
    }
}

/// Bytes granted to buffers, against the two limits.
#[derive(Debug)]
pub struct BufferBudget {
    directory: PathBuf,
    memory_limit: u64,
    disk_limit: u64,
    memory: AtomicU64,
    disk: AtomicU64,
    metrics: Option<Arc<Metrics>>,
}

impl BufferBudget {
    /// A budget of `memory_limit` bytes in memory and `disk_limit` bytes of spill files in
    /// `directory`, reporting to `metrics`.
    pub fn new(
        directory: PathBuf,
        memory_limit: u64,
        disk_limit: u64,
        metrics: Option<Arc<Metrics>>,
    ) -> Self {
        Self {
            directory,
            memory_limit,
            disk_limit,
            memory: AtomicU64::new(0),
            disk: AtomicU64::new(0),
            metrics,
        }
    }

    /// No proxy-wide limit, spilling to the system's temporary directory: for unit tests.
    pub fn unlimited() -> Arc<Self> {
        Arc::new(Self::new(std::env::temp_dir(), u64::MAX, u64::MAX, None))
    }

    /// The spill directory.
    pub fn directory(&self) -> &Path {
        &self.directory
    }

    /// Creates the spill directory (mode 0700) and removes whatever an earlier run left in it.
    /// Returns how many entries were removed.
    pub fn prepare(&self) -> std::io::Result<usize> {
        self.create()?;
        let mut removed = 0;
        for entry in std::fs::read_dir(&self.directory)? {
            let path = entry?.path();
            let result = if path.is_dir() {
                std::fs::remove_dir_all(&path)
            } else {
                std::fs::remove_file(&path)
            };
            result?;
            removed += 1;
        }
        Ok(removed)
    }

    /// Creates the directory (0700) and leaves what is in it: a proxy handing over to this one
    /// may still be spilling there.
    pub fn create(&self) -> std::io::Result<()> {
        use std::os::unix::fs::PermissionsExt;
        std::fs::create_dir_all(&self.directory)?;
        std::fs::set_permissions(&self.directory, std::fs::Permissions::from_mode(0o700))
    }

    /// A new spill file: unnamed where the system allows it (O_TMPFILE), so nothing is left
    /// behind even if the proxy is killed.
    pub fn spill_file(&self) -> std::io::Result<std::fs::File> {
        tempfile::tempfile_in(&self.directory)
    }

    /// Takes `bytes` from the budget of `place`; false (and counted) when it would go over.
    pub fn take(&self, place: Place, bytes: u64) -> bool {
        let (counter, limit) = self.counter(place);
        let granted = counter
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |used| {
                used.checked_add(bytes).filter(|total| *total <= limit)
            })
            .is_ok();
        if let Some(metrics) = &self.metrics {
            if granted {
                metrics.buffered_bytes(place.label(), bytes as i64);
            } else {
                metrics.buffer_budget_exceeded(place.label());
            }
        }
        granted
    }

    /// Gives back `bytes` taken from `place`.
    pub fn give(&self, place: Place, bytes: u64) {
        if bytes == 0 {
            return;
        }
        let (counter, _) = self.counter(place);
        let _ = counter.fetch_update(Ordering::AcqRel, Ordering::Acquire, |used| {
            Some(used.saturating_sub(bytes))
        });
        if let Some(metrics) = &self.metrics {
            metrics.buffered_bytes(place.label(), -(bytes as i64));
        }
    }

    /// Bytes in use in `place` now.
    pub fn used(&self, place: Place) -> u64 {
        self.counter(place).0.load(Ordering::Acquire)
    }

    fn counter(&self, place: Place) -> (&AtomicU64, u64) {
        match place {
            Place::Memory => (&self.memory, self.memory_limit),
            Place::Disk => (&self.disk, self.disk_limit),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grants_up_to_the_limit_and_takes_back() {
        let budget = BufferBudget::new(std::env::temp_dir(), 10, 0, None);
        assert!(budget.take(Place::Memory, 6));
        assert!(!budget.take(Place::Memory, 5), "6 + 5 is over 10");
        assert!(budget.take(Place::Memory, 4));
        assert!(!budget.take(Place::Disk, 1), "no disk budget");
        budget.give(Place::Memory, 10);
        assert_eq!(budget.used(Place::Memory), 0);
        assert!(budget.take(Place::Memory, 10));
    }

    #[test]
    fn prepare_empties_the_directory() {
        let home = tempfile::tempdir().unwrap();
        let directory = home.path().join("buffers");
        let budget = BufferBudget::new(directory.clone(), 1, 1, None);
        assert_eq!(budget.prepare().unwrap(), 0);
        std::fs::write(directory.join("left-over"), b"x").unwrap();
        std::fs::create_dir(directory.join("dir")).unwrap();
        assert_eq!(budget.prepare().unwrap(), 2);
        assert_eq!(std::fs::read_dir(&directory).unwrap().count(), 0);
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&directory).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o700);
    }
}
