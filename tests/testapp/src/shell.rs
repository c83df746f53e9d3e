//! `hoist-testapp shell`: a tiny line-oriented interpreter for `hoist exec -i` tests (the image
//! has no shell). It prints a prompt (`testapp$ `) and runs, one per line: `echo WORDS`, `tty`
//! (`tty: yes` when stdin is a terminal, else `tty: no`), `size` (`size: ROWSxCOLUMNS` of that
//! terminal), `wait` (prints `waiting` once SIGINT is blocked, then waits for one and prints
//! `interrupted`) and `exit N`. The end of
//! input exits 0.

use std::io::{BufRead, Write};
use std::process::ExitCode;

pub fn run() -> ExitCode {
    let stdin = std::io::stdin();
    let mut stdout = std::io::stdout();
    let mut lines = stdin.lock().lines();
    loop {
        let _ = write!(stdout, "testapp$ ");
        let _ = stdout.flush();
        let Some(Ok(line)) = lines.next() else {
            return ExitCode::SUCCESS;
        };
        let mut words = line.split_whitespace();
        match words.next() {
            None => {}
            Some("echo") => println!("{}", words.collect::<Vec<_>>().join(" ")),
            Some("tty") => {
                // SAFETY: isatty only reads the descriptor's state.
                let tty = unsafe { libc::isatty(0) } == 1;
                println!("tty: {}", if tty { "yes" } else { "no" });
            }
            Some("size") => match size() {
                Some((rows, columns)) => println!("size: {rows}x{columns}"),
                None => println!("size: unknown"),
            },
            Some("wait") => {
                wait_for_interrupt();
                println!("interrupted");
            }
            Some("exit") => {
                let code = words.next().and_then(|code| code.parse().ok()).unwrap_or(0);
                return ExitCode::from(code);
            }
            Some(other) => println!("unknown command: {other}"),
        }
    }
}

/// The terminal size of stdin, as (rows, columns).
fn size() -> Option<(u16, u16)> {
    // SAFETY: TIOCGWINSZ writes one `winsize` into the struct we own.
    let mut size: libc::winsize = unsafe { std::mem::zeroed() };
    let done = unsafe { libc::ioctl(0, libc::TIOCGWINSZ, &mut size) };
    (done == 0).then_some((size.ws_row, size.ws_col))
}

/// Block SIGINT and wait for one (works as PID 1 too, where an unhandled SIGINT is ignored).
fn wait_for_interrupt() {
    // SAFETY: a signal set on our stack, the calling (only) thread's mask, and sigwait on it.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        libc::sigaddset(&mut set, libc::SIGINT);
        libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut());
        println!("waiting");
        let _ = std::io::stdout().flush();
        let mut signal = 0;
        libc::sigwait(&set, &mut signal);
        libc::pthread_sigmask(libc::SIG_UNBLOCK, &set, std::ptr::null_mut());
    }
}
