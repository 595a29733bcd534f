//! A shutdown flag shared by every stage thread.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

/// Set once on SIGINT/SIGTERM (or by a test); runners check it between polls,
/// finish the record in hand, commit and return.
#[derive(Debug, Clone, Default)]
pub struct Shutdown(Arc<AtomicBool>);

impl Shutdown {
    /// A flag that is not set.
    pub fn new() -> Self {
        Shutdown::default()
    }

    /// Asks every runner holding a clone to stop.
    pub fn trigger(&self) {
        self.0.store(true, Ordering::SeqCst);
    }

    /// Whether a stop was asked for.
    pub fn is_triggered(&self) -> bool {
        self.0.load(Ordering::SeqCst)
    }
}
