//! Categorizes log lines from standard input with the default rule pack, with
//! no Kafka involved — the same core the categorize stage runs, so what this
//! prints is what medic would decide for those lines.
//!
//! ```sh
//! kubectl logs deploy/checkout --previous | cargo run --example categorize_offline -- checkout/production
//! ```

use medic::config::CategorizeConfig;
use medic::domain::{DeploymentKey, Signal};
use medic::stages::categorize::rules::RulePack;
use medic::stages::categorize::Categorize;
use medic::stages::{Action, Processor};
use medic::topics::Topics;
use std::io::BufRead;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let key_arg = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "unknown/production".into());
    let key = DeploymentKey::parse(&key_arg).ok_or("the argument must be service/environment")?;
    let config = CategorizeConfig::default();
    let quiet = config.window_quiet_ms;
    let mut stage = Categorize::new(Topics::default(), config, RulePack::default_pack());
    for (i, line) in std::io::stdin().lock().lines().enumerate() {
        let signal = Signal::plain_text(&key, "stdin", i as i64, &line?, i as i64);
        stage.handle(&signal, 0)?;
    }
    // Close the window as if the deployment had gone quiet.
    let closed = stage.on_timer(quiet)?;
    let mut reported = false;
    for action in closed {
        if let Action::Emit(out) = action {
            if let Some(bytes) = out.value.filter(|_| out.topic.ends_with(".failures")) {
                let failure: medic::domain::CategorizedFailure = medic::codec::decode(&bytes)?;
                println!("{}", serde_json::to_string_pretty(&failure)?);
                reported = true;
            }
        }
    }
    if !reported {
        println!("no rule matched: medic would report no failure for these lines");
    }
    Ok(())
}
