//! The CI/CD webhook bridge: verified webhooks in, `CiEvent`s out.

pub mod approvals;
pub mod config;
pub mod server;
pub mod verify;

pub use server::{router, serve, BridgeState};
