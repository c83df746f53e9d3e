//! The shutdown signal shared by the accept loop and every connection thread: a flag plus a
//! wake-up socket that stays readable once triggered, so a thread blocked in poll(2) wakes at
//! once; and the count of open connections a graceful drain waits for. Turning OS signals
//! into a trigger is signals.rs's job.

use std::io::{self, Write};
use std::os::fd::{AsRawFd, RawFd};
use std::os::unix::net::UnixStream;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex, PoisonError};
use std::time::{Duration, Instant};

#[derive(Debug)]
pub struct Shutdown {
    triggered: AtomicBool,
    /// Becomes readable (and stays so: nobody reads it) when shutdown is triggered.
    wake_reader: UnixStream,
    wake_writer: UnixStream,
    open_connections: Mutex<usize>,
    connection_closed: Condvar,
}

/// Counts one open connection until dropped.
#[derive(Debug)]
pub struct ConnectionGuard {
    shutdown: Arc<Shutdown>,
}

/// What [`wait_readable`] saw first.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Readiness {
    /// The descriptor has data, a pending connection, EOF or an error: read it to find out.
    Readable,
    ShuttingDown,
    TimedOut,
}

impl Shutdown {
    pub fn new() -> io::Result<Shutdown> {
        let (wake_reader, wake_writer) = UnixStream::pair()?;
        Ok(Shutdown {
            triggered: AtomicBool::new(false),
            wake_reader,
            wake_writer,
            open_connections: Mutex::new(0),
            connection_closed: Condvar::new(),
        })
    }

    /// Starts the shutdown; returns `false` if it had already started.
    pub fn trigger(&self) -> bool {
        if self.triggered.swap(true, Ordering::SeqCst) {
            return false;
        }
        // Cannot fail short of fd exhaustion; the flag alone still stops new requests.
        let _ = (&self.wake_writer).write_all(&[1]);
        true
    }

    pub fn is_triggered(&self) -> bool {
        self.triggered.load(Ordering::SeqCst)
    }

    pub fn track_connection(self: &Arc<Self>) -> ConnectionGuard {
        *self.lock_open_connections() += 1;
        ConnectionGuard {
            shutdown: Arc::clone(self),
        }
    }

    pub fn open_connections(&self) -> usize {
        *self.lock_open_connections()
    }

    /// Waits until every tracked connection has closed or `timeout` passes; returns how many
    /// are still open.
    pub fn wait_for_connections(&self, timeout: Duration) -> usize {
        let open = self.lock_open_connections();
        let (open, _) = self
            .connection_closed
            .wait_timeout_while(open, timeout, |open| *open > 0)
            .unwrap_or_else(PoisonError::into_inner);
        *open
    }

    fn lock_open_connections(&self) -> std::sync::MutexGuard<'_, usize> {
        self.open_connections
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }
}

impl Drop for ConnectionGuard {
    fn drop(&mut self) {
        *self.shutdown.lock_open_connections() -= 1;
        self.shutdown.connection_closed.notify_all();
    }
}

/// Waits until `fd` is readable, `shutdown` (if given) is triggered, or `timeout` (if given)
/// passes. A readable `fd` wins over a shutdown seen at the same moment, so bytes a client
/// already sent still get served.
pub fn wait_readable(
    fd: RawFd,
    shutdown: Option<&Shutdown>,
    timeout: Option<Duration>,
) -> io::Result<Readiness> {
    let deadline = timeout.map(|timeout| Instant::now() + timeout);
    let mut fds = [
        libc::pollfd {
            fd,
            events: libc::POLLIN,
            revents: 0,
        },
        libc::pollfd {
            fd: shutdown.map_or(-1, |shutdown| shutdown.wake_reader.as_raw_fd()),
            events: libc::POLLIN,
            revents: 0,
        },
    ];
    loop {
        let timeout_ms = match deadline {
            None => -1,
            Some(deadline) => {
                let remaining = deadline.saturating_duration_since(Instant::now());
                // Round up so a sub-millisecond remainder does not spin.
                i32::try_from(remaining.as_micros().div_ceil(1000)).unwrap_or(i32::MAX)
            }
        };
        // SAFETY: `fds` is a valid, writable array of two pollfd for the whole call; poll
        // ignores entries with a negative fd.
        let ready = unsafe { libc::poll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, timeout_ms) };
        if ready < 0 {
            let error = io::Error::last_os_error();
            if error.kind() == io::ErrorKind::Interrupted {
                continue;
            }
            return Err(error);
        }
        if fds[0].revents != 0 {
            return Ok(Readiness::Readable);
        }
        if fds[1].revents != 0 {
            return Ok(Readiness::ShuttingDown);
        }
        if ready == 0 && deadline.is_some_and(|deadline| Instant::now() >= deadline) {
            return Ok(Readiness::TimedOut);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::thread;

    #[test]
    fn trigger_wakes_a_waiting_thread_and_only_counts_once() {
        let shutdown = Arc::new(Shutdown::new().unwrap());
        let (idle, _peer) = UnixStream::pair().unwrap();
        let waiter = {
            let shutdown = Arc::clone(&shutdown);
            thread::spawn(move || wait_readable(idle.as_raw_fd(), Some(&shutdown), None))
        };
        thread::sleep(Duration::from_millis(20));
        assert!(shutdown.trigger());
        assert!(!shutdown.trigger());
        assert_eq!(waiter.join().unwrap().unwrap(), Readiness::ShuttingDown);
    }

    #[test]
    fn readable_data_wins_and_timeouts_expire() {
        let shutdown = Shutdown::new().unwrap();
        let (reader, mut writer) = UnixStream::pair().unwrap();
        let fd = reader.as_raw_fd();
        let short = Some(Duration::from_millis(10));
        assert_eq!(
            wait_readable(fd, Some(&shutdown), short).unwrap(),
            Readiness::TimedOut
        );
        shutdown.trigger();
        writer.write_all(b"x").unwrap();
        assert_eq!(
            wait_readable(fd, Some(&shutdown), short).unwrap(),
            Readiness::Readable
        );
    }

    #[test]
    fn waits_for_tracked_connections_to_close() {
        let shutdown = Arc::new(Shutdown::new().unwrap());
        let guard = shutdown.track_connection();
        assert_eq!(shutdown.wait_for_connections(Duration::from_millis(10)), 1);
        let closer = thread::spawn(move || {
            thread::sleep(Duration::from_millis(20));
            drop(guard);
        });
        assert_eq!(shutdown.wait_for_connections(Duration::from_secs(5)), 0);
        closer.join().unwrap();
    }
}
