//! The local terminal of an interactive command (`hoist exec -i`): whether stdin is one, raw
//! mode for the length of a session (restored when the guard drops, on every way out), the
//! terminal's size, and stdin read on a thread of its own: a blocking read cannot be cancelled,
//! and a detached thread does not hold up hoist's exit the way a runtime's blocking task would.

use std::io::{IsTerminal, Read};
use std::os::fd::AsFd;

use rustix::termios::{self, OptionalActions, Termios};
use tokio::sync::mpsc;

/// Whether hoist's stdin and stdout are both a terminal: only then is the remote side given a
/// TTY of its own.
pub fn is_interactive() -> bool {
    std::io::stdin().is_terminal() && std::io::stdout().is_terminal()
}

/// The terminal's size as (rows, columns), when stdout is a terminal that knows it.
pub fn size() -> Option<(u16, u16)> {
    let size = termios::tcgetwinsize(std::io::stdout().as_fd()).ok()?;
    (size.ws_row > 0 && size.ws_col > 0).then_some((size.ws_row, size.ws_col))
}

/// Raw mode on stdin until dropped: every key goes to the remote TTY as typed (Ctrl-C
/// included, which the remote TTY turns into SIGINT there), nothing is echoed locally.
pub struct RawMode {
    saved: Termios,
}

impl RawMode {
    pub fn enable() -> std::io::Result<Self> {
        let stdin = std::io::stdin();
        let saved = termios::tcgetattr(stdin.as_fd())?;
        let mut raw = saved.clone();
        raw.make_raw();
        termios::tcsetattr(stdin.as_fd(), OptionalActions::Now, &raw)?;
        Ok(RawMode { saved })
    }
}

impl Drop for RawMode {
    fn drop(&mut self) {
        // Nothing better to do when the terminal is gone.
        let _ = termios::tcsetattr(std::io::stdin().as_fd(), OptionalActions::Now, &self.saved);
    }
}

/// What hoist's stdin gives, chunk by chunk, read on a detached thread; the channel closes at
/// the end of stdin (or a read error).
pub fn stdin_chunks() -> mpsc::Receiver<Vec<u8>> {
    let (sender, receiver) = mpsc::channel(16);
    std::thread::spawn(move || {
        let mut stdin = std::io::stdin();
        let mut buffer = vec![0u8; 8192];
        loop {
            match stdin.read(&mut buffer) {
                Ok(0) => break,
                Ok(read) => {
                    if sender.blocking_send(buffer[..read].to_vec()).is_err() {
                        break;
                    }
                }
                Err(error) if error.kind() == std::io::ErrorKind::Interrupted => {}
                Err(_) => break,
            }
        }
    });
    receiver
}
