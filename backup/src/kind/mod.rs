//! What each kind of accessory data is and how it is taken, put back and checked: `postgres`
//! (dumps run inside the accessory) and `volume` (a named volume's files). Both stream through
//! [`crate::pipeline`]; each part is committed only once its source says it succeeded.

pub mod postgres;
pub mod volume;

use bollard::Docker;

use crate::crypt::Key;
use crate::store::Store;

/// What a kind needs to take or put back one backup.
pub struct Job<'a> {
    pub docker: &'a Docker,
    pub store: &'a Store,
    pub key: Option<&'a Key>,
    pub level: i32,
    /// The backup's id.
    pub id: &'a str,
    /// The accessory's container.
    pub container: &'a str,
    /// The agent's own image, for helper containers.
    pub agent_image: &'a str,
    pub accessory: &'a str,
}

/// Progress lines, to stderr (the agent's log, or the user's terminal through hoist).
pub fn say(message: impl AsRef<str>) {
    eprintln!("{}", message.as_ref());
}
