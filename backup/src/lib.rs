//! hoist-backup: backups of hoist accessories, taken on the server they run on and streamed to
//! S3-compatible storage. The binary runs in the `hoist-backup` container (one per server with
//! backed-up accessories) with the server's Docker socket; hoist drives it with `docker exec`.
//!
//! Layers: [`spec`] (what hoist asks for, shared with hoist), [`retention`], [`schedule`] and
//! [`manifest`] (pure, also used by hoist); with the `agent` feature, [`store`] (the bucket),
//! [`crypt`] and [`pipeline`] (the byte path), [`dock`] (the engine), [`kind`] (postgres,
//! volume), [`engine`] (backup, list, restore, verify), [`state`] and [`agent`] (the schedule).

pub mod manifest;
pub mod retention;
pub mod schedule;
pub mod spec;

#[cfg(feature = "agent")]
pub mod agent;
#[cfg(feature = "agent")]
pub mod crypt;
#[cfg(feature = "agent")]
pub mod dock;
#[cfg(feature = "agent")]
pub mod engine;
#[cfg(feature = "agent")]
pub mod kind;
#[cfg(feature = "agent")]
pub mod pipeline;
#[cfg(feature = "agent")]
pub mod report;
#[cfg(feature = "agent")]
pub mod state;
#[cfg(feature = "agent")]
pub mod store;
