//! Maintenance modes of a service: running, paused (new requests wait for `resume`, up to the
//! max pause, then get 504) and stopped (503 with a message). The state is persisted.

use std::sync::Mutex;
use std::sync::atomic::{AtomicU8, Ordering};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::sync::watch;

use crate::duration::go;

/// The mode of a service.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    #[default]
    Running,
    Paused,
    Stopped,
}

impl Mode {
    pub fn as_str(self) -> &'static str {
        match self {
            Mode::Running => "running",
            Mode::Paused => "paused",
            Mode::Stopped => "stopped",
        }
    }

    fn from_u8(value: u8) -> Self {
        match value {
            1 => Mode::Paused,
            2 => Mode::Stopped,
            _ => Mode::Running,
        }
    }
}

/// The persisted form.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct PauseState {
    pub mode: Mode,
    pub message: String,
    #[serde(with = "go")]
    pub max_pause: Duration,
}

impl Default for PauseState {
    fn default() -> Self {
        Self {
            mode: Mode::Running,
            message: String::new(),
            max_pause: Duration::from_secs(30),
        }
    }
}

/// What a request does under the current mode.
#[derive(Debug, PartialEq, Eq)]
pub enum Gate {
    Proceed,
    /// Answer 503 with this message.
    Stopped(String),
    /// The pause outlasted the max pause: answer 504.
    PauseExpired,
}

#[derive(Debug)]
pub struct PauseController {
    mode: AtomicU8,
    state: Mutex<PauseState>,
    changes: watch::Sender<Mode>,
}

impl PauseController {
    pub fn new(state: PauseState) -> Self {
        Self {
            mode: AtomicU8::new(state.mode as u8),
            changes: watch::Sender::new(state.mode),
            state: Mutex::new(state),
        }
    }

    pub fn mode(&self) -> Mode {
        Mode::from_u8(self.mode.load(Ordering::Acquire))
    }

    pub fn state(&self) -> PauseState {
        self.lock().clone()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, PauseState> {
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn set(&self, mode: Mode, message: Option<String>, max_pause: Option<Duration>) {
        let mut state = self.lock();
        state.mode = mode;
        if let Some(message) = message {
            state.message = message;
        }
        if let Some(max_pause) = max_pause {
            state.max_pause = max_pause;
        }
        self.mode.store(mode as u8, Ordering::Release);
        self.changes.send_replace(mode);
    }

    /// Puts back a state taken with [`PauseController::state`] (a change that could not be
    /// saved is undone this way).
    pub fn restore(&self, state: PauseState) {
        self.set(state.mode, Some(state.message), Some(state.max_pause));
    }

    pub fn pause(&self, max_pause: Duration) {
        self.set(Mode::Paused, None, Some(max_pause));
    }

    pub fn stop(&self, message: String) {
        self.set(Mode::Stopped, Some(message), None);
    }

    pub fn resume(&self) {
        self.set(Mode::Running, Some(String::new()), None);
    }

    /// Lets a request through, holds it while paused, or turns it away.
    pub async fn gate(&self) -> Gate {
        if self.mode() == Mode::Running {
            return Gate::Proceed;
        }
        let mut changes = self.changes.subscribe();
        let max_pause = self.lock().max_pause;
        let wait = async {
            loop {
                let mode = *changes.borrow_and_update();
                match mode {
                    Mode::Running => return Gate::Proceed,
                    Mode::Stopped => return Gate::Stopped(self.lock().message.clone()),
                    Mode::Paused => {
                        if changes.changed().await.is_err() {
                            return Gate::Proceed;
                        }
                    }
                }
            }
        };
        tokio::time::timeout(max_pause, wait)
            .await
            .unwrap_or(Gate::PauseExpired)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[tokio::test]
    async fn paused_requests_wait_for_resume_or_expire() {
        let controller = Arc::new(PauseController::new(PauseState::default()));
        assert_eq!(controller.gate().await, Gate::Proceed);
        controller.pause(Duration::from_millis(50));
        assert_eq!(controller.gate().await, Gate::PauseExpired);
        controller.pause(Duration::from_secs(5));
        let waiting = {
            let controller = Arc::clone(&controller);
            tokio::spawn(async move { controller.gate().await })
        };
        tokio::time::sleep(Duration::from_millis(20)).await;
        controller.stop("Back soon".into());
        assert_eq!(waiting.await.unwrap(), Gate::Stopped("Back soon".into()));
        controller.resume();
        assert_eq!(controller.gate().await, Gate::Proceed);
    }
}
