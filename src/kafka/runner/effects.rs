//! Side effects ([`Action::Execute`]): started on the async runtime, at most
//! [`MAX_EFFECTS`] at a time for stages that can resume them, one at a time
//! otherwise; their results handed back between records.

use super::*;

impl Pipeline {
    /// Runs `request` on the runtime; its result comes back through
    /// [`finish_effects`](Self::finish_effects). Log lines of the call carry
    /// the span of the record that asked for it.
    pub(super) fn start_effect(&mut self, request: crate::stages::EffectRequest) {
        use tracing::Instrument;
        let executor = self.executor.clone();
        let done = self.effects_tx.clone();
        let call =
            async move { executor.execute(&request).await }.instrument(tracing::Span::current());
        let call = self.rt.spawn(call);
        self.rt.spawn(async move {
            let result = call.await.map_err(|e| match e.try_into_panic() {
                Ok(panic) => panic_text(panic.as_ref()),
                Err(_) => "the executor call was cancelled".to_string(),
            });
            // The runner may have stopped; then nobody needs the result.
            let _ = done.send(result);
        });
        self.effects_running += 1;
    }

    /// Hands the results of finished effects to the stage and acts on what
    /// it answers; with `wait`, first waits for one to finish. An executor
    /// that panicked stops the runner, like a panic in the stage: the step is
    /// started again, with the same key, from the last commit.
    pub(super) fn finish_effects(
        &mut self,
        consumer: &BaseConsumer<StageContext>,
        wait: bool,
    ) -> Result<(), RunnerError> {
        let mut wait = wait;
        // Called after every record: most stages have nothing running.
        while self.effects_running > 0 {
            let done = if wait {
                wait = false;
                self.effects_rx.recv().map_err(|_| {
                    RunnerError::Restart(format!("{}: effect results lost", self.stage))
                })?
            } else {
                match self.effects_rx.try_recv() {
                    Ok(done) => done,
                    Err(_) => return Ok(()),
                }
            };
            self.effects_running -= 1;
            let result = done.map_err(|panic| {
                RunnerError::Restart(format!("{}: executor panicked: {panic}", self.stage))
            })?;
            let more = self
                .processor
                .on_effect(result, wall_clock())
                .map_err(|e| self.fatal(e))?;
            self.run_actions(consumer, more)?;
        }
        Ok(())
    }

    /// Waits for every running effect and hands its result to the stage;
    /// effects the results ask for are not started.
    pub(super) fn drain(
        &mut self,
        consumer: &BaseConsumer<StageContext>,
    ) -> Result<(), RunnerError> {
        self.draining = true;
        let mut result = Ok(());
        while result.is_ok() && self.effects_running > 0 {
            result = self.finish_effects(consumer, true);
        }
        self.draining = false;
        result
    }

    /// Waits for running effects without looking at their results (the
    /// runner is stopping on an error): no call is still under way when the
    /// next owner starts the unanswered steps again.
    pub(super) fn abandon_effects(&mut self) {
        while self.effects_running > 0 && self.effects_rx.recv().is_ok() {
            self.effects_running -= 1;
        }
    }
}
