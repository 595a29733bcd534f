//! The CI/CD webhook bridge: verified webhooks in, `CiEvent`s out.

pub mod verify;
