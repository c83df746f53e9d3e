//! Turns SIGTERM and SIGINT into a [`Shutdown`] trigger. The signals are blocked in every
//! thread and taken synchronously by one thread with sigwait(2): blocked signals are queued
//! even for PID 1, which the kernel would otherwise spare from default-action signals.
//! A second signal exits at once without waiting for open connections.

use std::io;
use std::mem::MaybeUninit;
use std::process;
use std::sync::Arc;
use std::thread;

use crate::log::Log;
use crate::shutdown::Shutdown;

/// SIGTERM and SIGINT, blocked in the calling thread and every thread it spawns afterwards.
#[derive(Clone, Copy)]
pub struct TerminationSignals {
    set: libc::sigset_t,
}

impl TerminationSignals {
    /// Blocks SIGTERM and SIGINT. Call before spawning any thread, so that every thread
    /// inherits the mask and only the handler thread ever takes the signals.
    pub fn block() -> io::Result<TerminationSignals> {
        let mut set = MaybeUninit::<libc::sigset_t>::uninit();
        // SAFETY: sigemptyset initialises the set before sigaddset and pthread_sigmask read
        // it; every pointer is to a live local.
        let set = unsafe {
            libc::sigemptyset(set.as_mut_ptr());
            libc::sigaddset(set.as_mut_ptr(), libc::SIGTERM);
            libc::sigaddset(set.as_mut_ptr(), libc::SIGINT);
            set.assume_init()
        };
        // SAFETY: `set` is initialised; a null old-set pointer is allowed.
        let result = unsafe { libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut()) };
        if result != 0 {
            return Err(io::Error::from_raw_os_error(result));
        }
        Ok(TerminationSignals { set })
    }

    /// Spawns the thread that waits for the signals: the first triggers `shutdown`, a second
    /// one exits the process with status 1.
    pub fn spawn_handler(self, shutdown: Arc<Shutdown>, log: Log) -> io::Result<()> {
        thread::Builder::new()
            .name("signals".to_string())
            .spawn(move || {
                loop {
                    let signal = match self.wait() {
                        Ok(signal) => signal,
                        Err(error) => {
                            log.warn(&format!("Failed to wait for signals: {error}"));
                            return;
                        }
                    };
                    let name = signal_name(signal);
                    // Only this thread triggers outside tests, so check-then-act is safe, and
                    // logging first keeps the lines in order.
                    if shutdown.is_triggered() {
                        log.info(&format!(
                            "received {name} again, exiting without waiting for {} open connection(s)",
                            shutdown.open_connections()
                        ));
                        process::exit(1);
                    }
                    log.info(&format!("received {name}, shutting down"));
                    shutdown.trigger();
                }
            })
            .map(drop)
    }

    fn wait(&self) -> io::Result<libc::c_int> {
        let mut signal: libc::c_int = 0;
        // SAFETY: `self.set` is an initialised signal set and `signal` a live local.
        let result = unsafe { libc::sigwait(&self.set, &mut signal) };
        if result != 0 {
            return Err(io::Error::from_raw_os_error(result));
        }
        Ok(signal)
    }
}

fn signal_name(signal: libc::c_int) -> String {
    match signal {
        libc::SIGTERM => "SIGTERM".to_string(),
        libc::SIGINT => "SIGINT".to_string(),
        other => format!("signal {other}"),
    }
}
