//! A pseudo-terminal to drive an interactive command as a person would: the command runs with
//! the terminal as its stdin, stdout and controlling terminal (so resizing it sends SIGWINCH),
//! stderr piped apart; the test types into it, waits for what appears, resizes it, and reads
//! the exit status.

use std::fs::File;
use std::io::{Read, Write};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::process::CommandExt;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

pub struct Pty {
    master: File,
    child: Child,
    /// Everything the command wrote to the terminal so far.
    screen: Arc<Mutex<Vec<u8>>>,
    /// How much of `screen` earlier waits consumed.
    seen: usize,
}

fn winsize(rows: u16, columns: u16) -> libc::winsize {
    libc::winsize {
        ws_row: rows,
        ws_col: columns,
        ws_xpixel: 0,
        ws_ypixel: 0,
    }
}

impl Pty {
    /// Start `command` on a new terminal of `rows` x `columns`.
    pub fn spawn(mut command: Command, rows: u16, columns: u16) -> Pty {
        let (mut master, mut slave) = (0, 0);
        let size = winsize(rows, columns);
        // SAFETY: openpty writes two descriptors we then own; the name and termios are unused.
        let opened = unsafe {
            libc::openpty(
                &mut master,
                &mut slave,
                std::ptr::null_mut(),
                std::ptr::null(),
                &size,
            )
        };
        assert_eq!(opened, 0, "openpty: {}", std::io::Error::last_os_error());
        // SAFETY: both descriptors are fresh from openpty and owned here only.
        let (master, slave) = unsafe { (File::from_raw_fd(master), OwnedFd::from_raw_fd(slave)) };
        let io = |fd: &OwnedFd| Stdio::from(fd.try_clone().expect("dup the terminal"));
        command
            .stdin(io(&slave))
            .stdout(io(&slave))
            .stderr(Stdio::piped());
        // SAFETY: only async-signal-safe calls between fork and exec: a new session whose
        // controlling terminal is the new one (stdin).
        unsafe {
            command.pre_exec(|| {
                if libc::setsid() < 0 || libc::ioctl(0, libc::TIOCSCTTY, 0) < 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let child = command.spawn().expect("start the command on the terminal");
        drop(slave);
        let screen = Arc::new(Mutex::new(Vec::new()));
        let mut reader = master.try_clone().expect("dup the terminal's master");
        let written = Arc::clone(&screen);
        std::thread::spawn(move || {
            let mut buffer = [0u8; 4096];
            // Ends with EIO once the command and its children closed the terminal.
            while let Ok(read) = reader.read(&mut buffer) {
                if read == 0 {
                    break;
                }
                written.lock().unwrap().extend_from_slice(&buffer[..read]);
            }
        });
        Pty {
            master,
            child,
            screen,
            seen: 0,
        }
    }

    /// Type `keys`.
    pub fn type_keys(&mut self, keys: &str) {
        self.master
            .write_all(keys.as_bytes())
            .expect("write to the terminal");
    }

    /// Wait until `text` appears after what earlier waits saw; returns the screen up to it.
    pub fn wait_for(&mut self, text: &str, timeout: Duration) -> String {
        let deadline = Instant::now() + timeout;
        loop {
            let screen = String::from_utf8_lossy(&self.screen.lock().unwrap()).into_owned();
            let from = self.seen.min(screen.len());
            if let Some(at) = screen[from..].find(text) {
                self.seen = from + at + text.len();
                return screen[..self.seen].to_string();
            }
            if Instant::now() > deadline {
                panic!("`{text}` did not appear within {timeout:?}; the terminal shows:\n{screen}");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Everything the terminal showed so far.
    pub fn screen(&self) -> String {
        String::from_utf8_lossy(&self.screen.lock().unwrap()).into_owned()
    }

    /// Resize the terminal (the command gets SIGWINCH).
    pub fn resize(&mut self, rows: u16, columns: u16) {
        let size = winsize(rows, columns);
        // SAFETY: TIOCSWINSZ reads one winsize from our stack.
        let done = unsafe { libc::ioctl(self.master.as_raw_fd(), libc::TIOCSWINSZ, &size) };
        assert_eq!(done, 0, "resize: {}", std::io::Error::last_os_error());
    }

    /// Wait for the command to exit (at most `timeout`); its status, stderr and what the
    /// terminal showed.
    pub fn wait(mut self, timeout: Duration) -> (ExitStatus, String, String) {
        let deadline = Instant::now() + timeout;
        let status = loop {
            if let Some(status) = self.child.try_wait().expect("wait for the command") {
                break status;
            }
            if Instant::now() > deadline {
                let _ = self.child.kill();
                panic!(
                    "the command did not exit within {timeout:?}; the terminal shows:\n{}",
                    self.screen()
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        let mut stderr = String::new();
        if let Some(mut pipe) = self.child.stderr.take() {
            let _ = pipe.read_to_string(&mut stderr);
        }
        (status, stderr, self.screen())
    }
}
