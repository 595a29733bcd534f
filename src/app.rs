//! Wiring: builds each stage's processor and executors from the configuration
//! and runs stages on their own threads under supervision.

use crate::config::{Config, ExecutorsConfig, NotifyConfig, StatusApi};
use crate::domain::CiPlatform;
use crate::executors::argo_rollouts::ArgoRolloutsExecutor;
use crate::executors::checks::ChecksExecutor;
use crate::executors::command::CommandExecutor;
use crate::executors::github::GithubExecutor;
use crate::executors::gitlab::GitlabExecutor;
use crate::executors::http::HttpExecutor;
use crate::executors::kubernetes::KubernetesExecutor;
use crate::executors::notify::ChannelSteps;
use crate::executors::routing;
use crate::executors::step::{Retry, StepExecutor, StepRouter};
use crate::executors::{
    Channels, CommitStatusSink, DryRun, Executor, Executors, StatusTarget, StatusTargets,
};
use crate::kafka::runner::{self, RunStats, RunnerConfig, RunnerError, StageStatus};
use crate::kafka::{ClientSettings, Shutdown};
use crate::stages::categorize::{rules::RulePack, Categorize};
use crate::stages::decide::{policy::Policy, Decide};
use crate::stages::ingest::Ingest;
use crate::stages::notify::{Channel, Notify};
use crate::stages::orchestrate::Orchestrate;
use crate::stages::shadow::Shadow;
use crate::stages::{Processor, StageName};
use crate::topics::Topics;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;
use tokio::runtime::Handle;

/// What the stages decide with: the rule pack and the recovery policy, loaded
/// and validated once at start.
#[derive(Clone)]
pub struct Rules {
    /// Categorization rules.
    pub pack: RulePack,
    /// Recovery strategies.
    pub policy: Arc<Policy>,
    /// The candidate policy of shadow mode, when `shadow.policy_files` names one.
    pub shadow_policy: Option<Arc<Policy>>,
}

impl Rules {
    /// The built-in rule pack and policy.
    pub fn builtin() -> Rules {
        Rules {
            pack: RulePack::default_pack(),
            policy: Arc::new(Policy::default_policy()),
            shadow_policy: None,
        }
    }
}

/// The configured rule packs and policy files over the built-in ones; fails
/// with the file, rule or strategy (and node) and reason.
pub fn rules(config: &Config) -> anyhow::Result<Rules> {
    Ok(Rules {
        pack: RulePack::load_files(&config.categorize.rule_packs)?,
        policy: Arc::new(Policy::load_files(&config.decide.policy_files)?),
        shadow_policy: if config.shadow.policy_files.is_empty() {
            None
        } else {
            Some(Arc::new(Policy::load_files(&config.shadow.policy_files)?))
        },
    })
}

/// A fresh processor for `stage`.
pub fn processor(
    stage: StageName,
    config: &Config,
    topics: &Topics,
    rules: &Rules,
) -> Box<dyn Processor> {
    let pack = &rules.pack;
    match stage {
        StageName::Ingest => Box::new(Ingest::new(topics.clone(), config.ingest.clone())),
        StageName::Categorize => Box::new(Categorize::new(
            topics.clone(),
            config.categorize.clone(),
            pack.clone(),
        )),
        StageName::Decide => Box::new(Decide::new(
            topics.clone(),
            config.decide.clone(),
            rules.policy.clone(),
        )),
        StageName::Orchestrate => Box::new(Orchestrate::new(
            topics.clone(),
            config.orchestrate.clone().without_executors(),
        )),
        StageName::Shadow => Box::new(Shadow::new(
            topics.clone(),
            config.decide.clone(),
            config.orchestrate.clone().without_executors(),
            rules
                .shadow_policy
                .clone()
                .unwrap_or_else(|| rules.policy.clone()),
        )),
        StageName::Notify => Box::new(
            Notify::new(topics.clone(), notification_channels(&config.notify))
                .with_link(config.notify.link_url.clone())
                .with_commit_statuses(status_platforms(config)),
        ),
    }
}

/// The notification channels of `notify`, as the notify stage routes them.
pub fn notification_channels(notify: &NotifyConfig) -> Vec<Channel> {
    notify
        .all_channels()
        .iter()
        .map(Channel::from_config)
        .collect()
}

/// The executors the configuration asks for: recovery steps by route, the
/// notification channels' sinks, and commit statuses.
pub fn executors(config: &Config) -> Result<Executors, String> {
    executors_and_router(config).map(|(executors, _)| executors)
}

/// [`executors`], and the step router among them for [`check_routing`]:
/// every client is built once.
pub fn executors_and_router(config: &Config) -> Result<(Executors, Arc<StepRouter>), String> {
    let channels = Arc::new(Channels::from_config(&config.notify)?);
    let notifications: Arc<dyn Executor> = channels.clone();
    let n = &config.notify;
    let target = |name: &str, api: &StatusApi| -> Result<Option<StatusTarget>, String> {
        match &api.token {
            None => Ok(None),
            Some(token) => Ok(Some(StatusTarget {
                api_url: reqwest::Url::parse(&api.api_url)
                    .map_err(|e| format!("notify.{name}.api_url {}: {e}", api.api_url))?,
                token: token.clone(),
                user: api.user.clone(),
            })),
        }
    };
    let statuses = CommitStatusSink::new(
        StatusTargets {
            github: target("github_status", &n.github_status)?,
            gitlab: target("gitlab_status", &n.gitlab_status)?,
            jenkins: target("jenkins_status", &n.jenkins_status)?,
            azure_devops: target("azure_devops_status", &n.azure_devops_status)?,
        },
        Duration::from_millis(config.notify.webhook_timeout_ms),
    )?;
    let router = Arc::new(step_router(&config.orchestrate.executors, channels)?);
    let executors = Executors {
        steps: router.clone(),
        notifications,
        statuses: Arc::new(statuses),
    };
    Ok((executors, router))
}

/// The recovery-step executors of `config`: each configured kind built and
/// checked, every route pointing at a configured kind that supports its
/// action. `channels` are the notification channels `escalate` and `notify`
/// steps may go to.
pub fn step_router(
    config: &ExecutorsConfig,
    channels: Arc<Channels>,
) -> Result<StepRouter, String> {
    let field = |kind: &str, e: String| format!("orchestrate.executors.{kind}: {e}");
    let dry_run: Arc<dyn StepExecutor> = Arc::new(DryRun::new());
    let mut kinds: BTreeMap<&str, Arc<dyn StepExecutor>> = BTreeMap::new();
    kinds.insert("dry_run", dry_run.clone());
    if let Some(c) = &config.http {
        kinds.insert(
            "http",
            Arc::new(HttpExecutor::new(c).map_err(|e| field("http", e))?),
        );
    }
    if let Some(c) = &config.command {
        kinds.insert(
            "command",
            Arc::new(CommandExecutor::new(c).map_err(|e| field("command", e))?),
        );
    }
    if let Some(c) = &config.github {
        kinds.insert(
            "github",
            Arc::new(GithubExecutor::new(c).map_err(|e| field("github", e))?),
        );
    }
    if let Some(c) = &config.gitlab {
        kinds.insert(
            "gitlab",
            Arc::new(GitlabExecutor::new(c).map_err(|e| field("gitlab", e))?),
        );
    }
    if let Some(c) = &config.kubernetes {
        kinds.insert(
            "kubernetes",
            Arc::new(KubernetesExecutor::new(c).map_err(|e| field("kubernetes", e.to_string()))?),
        );
    }
    if let Some(c) = &config.argo_rollouts {
        kinds.insert(
            "argo_rollouts",
            Arc::new(
                ArgoRolloutsExecutor::new(c).map_err(|e| field("argo_rollouts", e.to_string()))?,
            ),
        );
    }
    if let Some(c) = &config.checks {
        kinds.insert(
            "checks",
            Arc::new(ChecksExecutor::new(c).map_err(|e| field("checks", e))?),
        );
    }
    if let Some(routes) = &config.channels {
        kinds.insert(
            "channels",
            Arc::new(ChannelSteps::new(channels, routes).map_err(|e| field("channels", e))?),
        );
    }
    let lookup = |kind: &str, what: &str| -> Result<Arc<dyn StepExecutor>, String> {
        kinds.get(kind).cloned().ok_or_else(|| {
            format!(
                "{what}: executor '{kind}' is not configured (configured: {})",
                kinds.keys().copied().collect::<Vec<_>>().join(", ")
            )
        })
    };
    let mut routes = BTreeMap::new();
    for (action, kind) in &config.routes {
        if !crate::stages::decide::policy::ACTIONS
            .iter()
            .any(|(a, _)| a == action)
        {
            return Err(format!(
                "orchestrate.executors.routes: '{action}' is not an action medic knows"
            ));
        }
        routes.insert(
            action.clone(),
            lookup(kind, &format!("orchestrate.executors.routes.{action}"))?,
        );
    }
    let fallback = lookup(&config.default, "orchestrate.executors.default")?;
    StepRouter::new(
        routes,
        fallback,
        dry_run,
        Retry {
            attempts: config.attempts.max(1),
            initial_backoff: Duration::from_millis(config.initial_backoff_ms),
            max_backoff: Duration::from_millis(config.max_backoff_ms),
        },
    )
    .map_err(|e| format!("orchestrate.executors.routes: {e}"))
}

/// Checks that every step the loaded policy can reach really runs as
/// configured (see [`routing`]): routed to an executor that accepts its
/// parameters, or simulated on purpose. Fails listing each problem.
/// `router` is the one [`executors_and_router`] built from `config`.
pub fn check_routing(config: &Config, rules: &Rules, router: &StepRouter) -> Result<(), String> {
    let executors = &config.orchestrate.executors;
    let reach = routing::reachable(&rules.policy, config.orchestrate.cleanup_temporary_measures);
    let problems = routing::problems(
        &reach,
        &config.orchestrate.dry_run,
        &executors.routes,
        &executors.default,
        router,
    );
    if problems.is_empty() {
        return Ok(());
    }
    Err(format!(
        "orchestrate.dry_run is {}, but the recovery policy cannot run as configured:\n  - {}",
        config.orchestrate.dry_run.describe(),
        problems.join("\n  - ")
    ))
}

/// CI platforms the configuration can write commit statuses to.
pub fn status_platforms(config: &Config) -> Vec<CiPlatform> {
    config
        .notify
        .status_apis()
        .into_iter()
        .filter_map(|(_, platform, api)| api.token.is_some().then_some(platform))
        .collect()
}

/// Runner settings for `stage` under `config`.
pub fn runner_config(
    stage: StageName,
    config: &Config,
    settings: &ClientSettings,
    topics: &Topics,
) -> RunnerConfig {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    RunnerConfig {
        settings: settings.clone(),
        group: format!("{}.{}", config.kafka.group_prefix, stage),
        instance: config
            .delivery
            .instance_id
            .clone()
            .unwrap_or_else(|| format!("{}-{:08x}", std::process::id(), nanos)),
        delivery: config.delivery.clone(),
        deadletter_topic: topics.deadletter.clone(),
    }
}

/// Starts each of `stages` on its own supervised thread.
pub fn spawn_stages(
    stages: &[StageName],
    config: &Config,
    rules: &Rules,
    settings: &ClientSettings,
    executor: Arc<dyn Executor>,
    rt: Handle,
    shutdown: &Shutdown,
) -> Vec<(StageName, JoinHandle<Result<RunStats, RunnerError>>)> {
    let topics = Topics::new(&config.kafka.topic_prefix);
    stages
        .iter()
        .map(|&stage| {
            let runner = runner_config(stage, config, settings, &topics);
            let (config, topics, rules) = (config.clone(), topics.clone(), rules.clone());
            let (executor, rt, shutdown) = (executor.clone(), rt.clone(), shutdown.clone());
            let handle = std::thread::Builder::new()
                .name(format!("medic-{stage}"))
                .spawn(move || {
                    runner::supervise(
                        runner,
                        || processor(stage, &config, &topics, &rules),
                        executor,
                        rt,
                        shutdown,
                        StageStatus::new(),
                    )
                })
                .expect("spawning a thread only fails when the OS is out of resources");
            (stage, handle)
        })
        .collect()
}
