//! The dead-letter budget: at most N records per window go to the
//! dead-letter topic; past that the stage pauses until the window ends.

use std::time::{Duration, Instant};

/// Counts dead letters in fixed windows.
#[derive(Debug, Clone)]
pub struct DeadLetterBudget {
    max: u32,
    window: Duration,
    started: Instant,
    used: u32,
}

impl DeadLetterBudget {
    /// `max` dead letters per `window`, starting at `now`.
    pub fn new(max: u32, window: Duration, now: Instant) -> Self {
        DeadLetterBudget {
            max,
            window,
            started: now,
            used: 0,
        }
    }

    /// Takes one dead letter from the budget, or says how long to wait for
    /// the next window (after which the caller calls `take` again).
    pub fn take(&mut self, now: Instant) -> Result<(), Duration> {
        let elapsed = now.saturating_duration_since(self.started);
        if elapsed >= self.window {
            self.started = now;
            self.used = 0;
        }
        if self.used >= self.max {
            return Err(self
                .window
                .saturating_sub(now.saturating_duration_since(self.started)));
        }
        self.used += 1;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_budget_refills_each_window() {
        let t0 = Instant::now();
        let minute = Duration::from_secs(60);
        let mut budget = DeadLetterBudget::new(2, minute, t0);
        assert_eq!(budget.take(t0), Ok(()));
        assert_eq!(budget.take(t0 + Duration::from_secs(1)), Ok(()));
        assert_eq!(
            budget.take(t0 + Duration::from_secs(20)),
            Err(Duration::from_secs(40))
        );
        assert_eq!(budget.take(t0 + minute), Ok(()), "a new window");
        assert_eq!(DeadLetterBudget::new(0, minute, t0).take(t0), Err(minute));
    }
}
