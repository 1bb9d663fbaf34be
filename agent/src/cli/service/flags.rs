//! `service create|update` flags: Docker's spellings (`--publish 8080:80`,
//! `--reserve-memory 64M`, `--update-*`) parsed into a [`ServiceSpec`], and
//! the edits `service update` makes to the spec it read back.

use std::collections::BTreeSet;
use std::time::Duration;

use clap::builder::{PossibleValuesParser, TypedValueParser};
use clap::{Args, ValueEnum};
use shoal_control::api::ServiceView;
use shoal_control::objects::{
    Constraint, EndpointMode, FailureAction, PayloadReference, Placement, PortConfig,
    RestartCondition, ServiceMode, ServiceSpec, Strategy, TaskSpec, UpdateConfig, UpdateOrder,
};

use super::container_flags::{ContainerFlags, TaskRuntime};
use super::flag_error::FlagError;
use super::values::{
    millis, parse_config, parse_constraint, parse_cpus, parse_label, parse_memory, parse_network,
    parse_publish, parse_secret, NetworkFlag,
};
use crate::cli::parse_duration;

/// `--mode`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, ValueEnum)]
pub enum Mode {
    /// As many tasks as --replicas, placed by the scheduler.
    #[default]
    Replicated,
    /// One task on every node that fits.
    Global,
}

/// Placement strategy, resources and restart policy: the same flags for
/// `create` (over the defaults) and `update` (over the current spec).
#[derive(Debug, Default, Args)]
pub struct TaskFlags {
    /// How the scheduler ranks nodes for this service: spread or binpack
    /// (default: the swarm's --scheduling-strategy).
    #[arg(long, value_parser = strategy())]
    strategy: Option<Strategy>,
    /// CPUs reserved per task, counted by the scheduler (e.g. 0.5).
    #[arg(long, value_name = "CPUS", value_parser = parse_cpus)]
    reserve_cpu: Option<u64>,
    /// Memory reserved per task (e.g. 64M, 1.5g).
    #[arg(long, value_name = "BYTES", value_parser = parse_memory)]
    reserve_memory: Option<u64>,
    /// CPUs a task may use (e.g. 1.5).
    #[arg(long, value_name = "CPUS", value_parser = parse_cpus)]
    limit_cpu: Option<u64>,
    /// Memory a task may use (e.g. 256M).
    #[arg(long, value_name = "BYTES", value_parser = parse_memory)]
    limit_memory: Option<u64>,
    /// When a stopped task is replaced.
    #[arg(long, value_name = "CONDITION", value_parser = restart_condition())]
    restart_condition: Option<RestartCondition>,
    /// Wait between restarts (e.g. 5s, 500ms).
    #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
    restart_delay: Option<Duration>,
    /// Restarts per slot before giving up; 0: no limit.
    #[arg(long, value_name = "N")]
    restart_max_attempts: Option<u64>,
}

/// `--update-*`.
#[derive(Debug, Default, Args)]
pub struct UpdateFlags {
    /// Tasks replaced at once; 0: all.
    #[arg(long, value_name = "N")]
    update_parallelism: Option<u64>,
    /// Wait between batches (e.g. 10s).
    #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
    update_delay: Option<Duration>,
    /// What a failed update does.
    #[arg(long, value_name = "ACTION", value_parser = failure_action(&["pause", "continue", "rollback"]))]
    update_failure_action: Option<FailureAction>,
    /// Stop the old task before starting the new one, or the reverse.
    #[arg(long, value_name = "ORDER", value_parser = update_order())]
    update_order: Option<UpdateOrder>,
    /// How long a new task must run to count as updated (e.g. 5s).
    #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
    update_monitor: Option<Duration>,
    /// Share of new tasks that may fail before the failure action (0 to 1).
    #[arg(long, value_name = "RATIO")]
    update_max_failure_ratio: Option<f32>,
}

/// `--rollback-*`: the same settings, for going back to the previous spec.
#[derive(Debug, Default, Args)]
pub struct RollbackFlags {
    /// Tasks rolled back at once; 0: all.
    #[arg(long, value_name = "N")]
    rollback_parallelism: Option<u64>,
    /// Wait between batches.
    #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
    rollback_delay: Option<Duration>,
    /// What a failed rollback does.
    #[arg(long, value_name = "ACTION", value_parser = failure_action(&["pause", "continue"]))]
    rollback_failure_action: Option<FailureAction>,
    /// Stop the old task before starting the new one, or the reverse.
    #[arg(long, value_name = "ORDER", value_parser = update_order())]
    rollback_order: Option<UpdateOrder>,
    /// How long a task must run to count as rolled back.
    #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
    rollback_monitor: Option<Duration>,
    /// Share of tasks that may fail before the failure action (0 to 1).
    #[arg(long, value_name = "RATIO")]
    rollback_max_failure_ratio: Option<f32>,
}

/// How `create`, `update`, `scale` and `rollback` wait for the tasks.
#[derive(Debug, Args)]
pub struct WatchFlags {
    /// Return at once instead of waiting for the tasks to run.
    #[arg(short, long)]
    pub detach: bool,
    /// Wait without printing progress.
    #[arg(short, long)]
    pub quiet: bool,
    /// Give up waiting (exit 1) after this long.
    #[arg(long, value_name = "DURATION", value_parser = parse_duration, default_value = "120s")]
    pub timeout: Duration,
}

/// `service create [FLAGS] IMAGE [COMMAND] [ARG...]`, or with `--runtime
/// process`, `service create [FLAGS] [--] CMD ARGS...`.
#[derive(Debug, Args)]
pub struct CreateArgs {
    /// The service's name.
    #[arg(long, allow_hyphen_values = true)]
    pub name: String,
    /// Tasks to run (replicated mode; default 1).
    #[arg(long, value_name = "N")]
    replicas: Option<u64>,
    /// Service mode: replicated or global.
    #[arg(long, value_enum, default_value_t)]
    mode: Mode,
    /// Attach the tasks to a network: NETWORK (name or id), or
    /// name=NETWORK,alias=ALIAS (more names for the service on it);
    /// repeatable.
    #[arg(long = "network", value_name = "NETWORK", value_parser = parse_network)]
    networks: Vec<NetworkFlag>,
    /// How the service's name resolves: vip (one virtual IP per network)
    /// or dnsrr (every task's address, no virtual IP).
    #[arg(long = "endpoint-mode", value_name = "MODE", value_parser = endpoint_mode(), default_value = "vip")]
    endpoint_mode: EndpointMode,
    /// Give the tasks a secret: NAME, or source=NAME,target=PATH,uid=,gid=,mode=
    /// (default /run/secrets/NAME, mode 0444); repeatable.
    #[arg(long = "secret", value_name = "SECRET", value_parser = parse_secret)]
    secrets: Vec<PayloadReference>,
    /// Give the tasks a config, read-only: NAME, or
    /// source=NAME,target=PATH,uid=,gid=,mode= (default /NAME); repeatable.
    #[arg(long = "config", value_name = "CONFIG", value_parser = parse_config)]
    configs: Vec<PayloadReference>,
    /// Publish a port as a node port: [PUBLISHED:]TARGET[/tcp|udp] or
    /// published=P,target=T,protocol=udp,mode=ingress|host (host: only the
    /// nodes running a task accept it, for that task); without PUBLISHED
    /// the swarm picks one from 30000-32767. Repeatable.
    #[arg(short = 'p', long = "publish", value_name = "PORT", value_parser = parse_publish)]
    ports: Vec<PortConfig>,
    /// Set environment variables (KEY=VALUE). Repeatable.
    #[arg(short = 'e', long = "env", value_name = "KEY=VALUE")]
    env: Vec<String>,
    /// Service labels (key=value or key). Repeatable.
    #[arg(long = "label", value_name = "KEY=VALUE", value_parser = parse_label)]
    labels: Vec<(String, String)>,
    /// Placement constraints: node.id, node.hostname, node.role or
    /// node.labels.KEY, then == or !=, then a value. Repeatable; all must
    /// hold.
    #[arg(long = "constraint", value_name = "CONSTRAINT", value_parser = parse_constraint)]
    constraints: Vec<Constraint>,
    /// Add a placement preference: spread=node.labels.KEY. Repeatable,
    /// applied in order.
    #[arg(long = "placement-pref", value_name = "PREF")]
    preferences: Vec<String>,
    #[command(flatten)]
    task: TaskFlags,
    #[command(flatten)]
    update: UpdateFlags,
    #[command(flatten)]
    rollback: RollbackFlags,
    #[command(flatten)]
    pub watch: WatchFlags,
    /// What a task is: a container of IMAGE, or a host process (CMD ARGS...).
    #[arg(long, value_enum, default_value_t)]
    runtime: TaskRuntime,
    #[command(flatten)]
    container: ContainerFlags,
    /// Send registry authentication details (from ~/.docker/config.json)
    /// to the swarm agents that pull the image.
    #[arg(long)]
    pub with_registry_auth: bool,
    /// IMAGE [COMMAND] [ARG...]: the image each task runs, then the command
    /// replacing its Cmd. With --runtime process: the host command and its
    /// arguments.
    #[arg(required = true, trailing_var_arg = true, value_name = "IMAGE")]
    command: Vec<String>,
}

/// `service update [FLAGS] SERVICE [-- CMD ARGS...]`: only the flags given
/// change the spec.
#[derive(Debug, Args)]
pub struct UpdateArgs {
    /// Tasks to run (replicated services).
    #[arg(long, value_name = "N")]
    replicas: Option<u64>,
    /// Add or update environment variables (KEY=VALUE). Repeatable.
    #[arg(long = "env-add", value_name = "KEY=VALUE")]
    env_add: Vec<String>,
    /// Remove a variable; repeatable.
    #[arg(long = "env-rm", value_name = "KEY")]
    env_rm: Vec<String>,
    /// Add or replace a service label; repeatable.
    #[arg(long = "label-add", value_name = "KEY=VALUE", value_parser = parse_label)]
    label_add: Vec<(String, String)>,
    /// Remove a service label; repeatable.
    #[arg(long = "label-rm", value_name = "KEY")]
    label_rm: Vec<String>,
    /// Add a placement constraint; repeatable.
    #[arg(long = "constraint-add", value_name = "CONSTRAINT", value_parser = parse_constraint)]
    constraint_add: Vec<Constraint>,
    /// Remove a placement constraint; repeatable.
    #[arg(long = "constraint-rm", value_name = "CONSTRAINT", value_parser = parse_constraint)]
    constraint_rm: Vec<Constraint>,
    /// Add a placement preference; repeatable.
    #[arg(long = "placement-pref-add", value_name = "PREF")]
    preference_add: Vec<String>,
    /// Remove a placement preference; repeatable.
    #[arg(long = "placement-pref-rm", value_name = "PREF")]
    preference_rm: Vec<String>,
    /// Add or update a published port (as --publish). Repeatable.
    #[arg(long = "publish-add", value_name = "PORT", value_parser = parse_publish)]
    publish_add: Vec<PortConfig>,
    /// Stop publishing a port, by its target (80, 80/udp, or 8080:80 for
    /// one published port only). Repeatable.
    #[arg(long = "publish-rm", value_name = "PORT", value_parser = parse_publish)]
    publish_rm: Vec<PortConfig>,
    /// Attach to a network (NETWORK or name=NETWORK,alias=ALIAS);
    /// repeatable.
    #[arg(long = "network-add", value_name = "NETWORK", value_parser = parse_network)]
    network_add: Vec<NetworkFlag>,
    /// Change how the service's name resolves: vip or dnsrr.
    #[arg(long = "endpoint-mode", value_name = "MODE", value_parser = endpoint_mode())]
    endpoint_mode: Option<EndpointMode>,
    /// Detach from a network (name or id); repeatable.
    #[arg(long = "network-rm", value_name = "NETWORK")]
    network_rm: Vec<String>,
    /// Add or update a secret (as --secret); repeatable.
    #[arg(long = "secret-add", value_name = "SECRET", value_parser = parse_secret)]
    secret_add: Vec<PayloadReference>,
    /// Remove a secret, by name or id; repeatable.
    #[arg(long = "secret-rm", value_name = "SECRET")]
    secret_rm: Vec<String>,
    /// Add or update a config (as --config); repeatable.
    #[arg(long = "config-add", value_name = "CONFIG", value_parser = parse_config)]
    config_add: Vec<PayloadReference>,
    /// Remove a config, by name or id; repeatable.
    #[arg(long = "config-rm", value_name = "CONFIG")]
    config_rm: Vec<String>,
    #[command(flatten)]
    task: TaskFlags,
    #[command(flatten)]
    update: UpdateFlags,
    #[command(flatten)]
    rollback: RollbackFlags,
    #[command(flatten)]
    pub watch: WatchFlags,
    /// Replace every task, even if nothing changed.
    #[arg(long)]
    pub force: bool,
    /// The service: id, name or unique id prefix.
    pub service: String,
    /// A new image (a container service), pinned to its digest by the
    /// managers.
    #[arg(long, value_name = "IMAGE")]
    image: Option<String>,
    #[command(flatten)]
    container: ContainerFlags,
    /// Send registry authentication details (from ~/.docker/config.json)
    /// to the swarm agents that pull the image.
    #[arg(long)]
    pub with_registry_auth: bool,
    /// New arguments after --: a container's (replacing the image's Cmd),
    /// or a process service's command.
    #[arg(last = true, value_name = "CMD")]
    command: Vec<String>,
}

impl CreateArgs {
    /// The spec these flags describe, checked as the managers will check it.
    pub fn spec(&self) -> Result<ServiceSpec, FlagError> {
        let mode = match (self.mode, self.replicas) {
            (Mode::Global, Some(_)) => return Err(FlagError::ReplicasGlobal(self.name.clone())),
            (Mode::Global, None) => ServiceMode::Global,
            (Mode::Replicated, replicas) => ServiceMode::Replicated {
                replicas: replicas.unwrap_or(1),
            },
        };
        let mut spec = ServiceSpec {
            name: self.name.clone(),
            labels: self.labels.iter().cloned().collect(),
            mode,
            task: TaskSpec {
                env: self.env.clone(),
                placement: Placement {
                    constraints: self.constraints.clone(),
                    preferences: self.preferences.clone(),
                    strategy: None,
                },
                secrets: self.secrets.clone(),
                configs: self.configs.clone(),
                ..TaskSpec::default()
            },
            networks: self.networks.iter().map(|n| n.network.clone()).collect(),
            ports: self.ports.clone(),
            endpoint_mode: self.endpoint_mode,
            network_aliases: self
                .networks
                .iter()
                .filter(|n| !n.aliases.is_empty())
                .map(|n| (n.network.clone(), n.aliases.clone()))
                .collect(),
            update: UpdateConfig::default(),
            rollback: UpdateConfig::default(),
        };
        self.container
            .create(self.runtime, &self.command, &mut spec.task)?;
        self.task.apply(&mut spec.task);
        self.update.edit().apply(&mut spec.update);
        self.rollback.edit().apply(&mut spec.rollback);
        spec.validate()?;
        Ok(spec)
    }
}

impl UpdateArgs {
    /// `view`'s spec with these flags applied, removals before additions
    /// (as Docker does), checked as the managers will check it.
    pub fn apply(&self, view: &ServiceView) -> Result<ServiceSpec, FlagError> {
        let mut spec = view.spec.clone();
        if let Some(replicas) = self.replicas {
            match &mut spec.mode {
                ServiceMode::Replicated { replicas: r } => *r = replicas,
                ServiceMode::Global => return Err(FlagError::ReplicasGlobal(view.name.clone())),
            }
        }

        let env_keys: BTreeSet<&str> = self
            .env_rm
            .iter()
            .chain(&self.env_add)
            .map(|e| env_key(e))
            .collect();
        spec.task.env.retain(|e| !env_keys.contains(env_key(e)));
        spec.task.env.extend(self.env_add.iter().cloned());

        for key in &self.label_rm {
            spec.labels.remove(key);
        }
        spec.labels.extend(self.label_add.iter().cloned());

        let placement = &mut spec.task.placement;
        placement
            .constraints
            .retain(|c| !self.constraint_rm.contains(c) && !self.constraint_add.contains(c));
        placement
            .constraints
            .extend(self.constraint_add.iter().cloned());
        placement
            .preferences
            .retain(|p| !self.preference_rm.contains(p) && !self.preference_add.contains(p));
        placement
            .preferences
            .extend(self.preference_add.iter().cloned());

        spec.ports
            .retain(|p| !self.publish_rm.iter().any(|rm| removes(rm, p)));
        for add in &self.publish_add {
            // A new mapping for a published port replaces the old one.
            spec.ports.retain(|p| {
                p != add
                    && !(add.published != 0
                        && p.published == add.published
                        && p.protocol == add.protocol)
            });
            spec.ports.push(*add);
        }

        // The spec holds network ids and the view their names, in the same
        // order: either may be given.
        for (i, id) in std::mem::take(&mut spec.networks).into_iter().enumerate() {
            let name = view.networks.get(i);
            let is_this = |net: &String| *net == id || Some(net) == name;
            if self.network_rm.iter().any(is_this) {
                spec.network_aliases.remove(&id);
                continue;
            }
            if let Some(network) = self.network_add.iter().find(|n| is_this(&n.network)) {
                return Err(FlagError::NetworkAttached {
                    service: view.name.clone(),
                    network: network.network.clone(),
                });
            }
            spec.networks.push(id);
        }
        for add in &self.network_add {
            spec.networks.push(add.network.clone());
            if !add.aliases.is_empty() {
                spec.network_aliases
                    .insert(add.network.clone(), add.aliases.clone());
            }
        }
        if let Some(mode) = self.endpoint_mode {
            spec.endpoint_mode = mode;
        }

        edit_payloads(&mut spec.task.secrets, &self.secret_rm, &self.secret_add);
        edit_payloads(&mut spec.task.configs, &self.config_rm, &self.config_add);

        self.container
            .update(self.image.as_deref(), &self.command, &mut spec.task)?;
        self.task.apply(&mut spec.task);
        self.update.edit().apply(&mut spec.update);
        self.rollback.edit().apply(&mut spec.rollback);
        spec.validate()?;
        Ok(spec)
    }
}

/// `--secret-rm`/`--secret-add` (and the config ones): removals by name
/// or id first; an added one replaces any of the same name or target.
fn edit_payloads(list: &mut Vec<PayloadReference>, rm: &[String], add: &[PayloadReference]) {
    list.retain(|r| !rm.iter().any(|x| *x == r.name || *x == r.id));
    for new in add {
        list.retain(|r| r.name != new.name && r.path_in_task("/") != new.path_in_task("/"));
        list.push(new.clone());
    }
}

/// Whether `--publish-rm RM` removes `port`: same target and protocol, and
/// the same published port when one was given.
fn removes(rm: &PortConfig, port: &PortConfig) -> bool {
    rm.target == port.target
        && rm.protocol == port.protocol
        && (rm.published == 0 || rm.published == port.published)
}

/// `KEY` of `KEY=VALUE` (or of a bare `KEY`, as `--env-rm` takes it).
fn env_key(entry: &str) -> &str {
    entry.split_once('=').map_or(entry, |(k, _)| k)
}

impl TaskFlags {
    fn apply(&self, task: &mut TaskSpec) {
        if let Some(strategy) = self.strategy {
            task.placement.strategy = Some(strategy);
        }
        let r = &mut task.resources;
        for (flag, field) in [
            (self.reserve_cpu, &mut r.reserve_nano_cpus),
            (self.reserve_memory, &mut r.reserve_memory),
            (self.limit_cpu, &mut r.limit_nano_cpus),
            (self.limit_memory, &mut r.limit_memory),
        ] {
            if let Some(value) = flag {
                *field = value;
            }
        }
        let restart = &mut task.restart;
        if let Some(condition) = self.restart_condition {
            restart.condition = condition;
        }
        if let Some(delay) = self.restart_delay {
            restart.delay_ms = millis(delay);
        }
        if let Some(attempts) = self.restart_max_attempts {
            restart.max_attempts = (attempts > 0).then_some(attempts);
        }
    }
}

/// The `--update-*` or `--rollback-*` values given, to apply over an
/// [`UpdateConfig`].
struct UpdateConfigEdit {
    parallelism: Option<u64>,
    delay: Option<Duration>,
    failure_action: Option<FailureAction>,
    order: Option<UpdateOrder>,
    monitor: Option<Duration>,
    max_failure_ratio: Option<f32>,
}

impl UpdateConfigEdit {
    fn apply(&self, config: &mut UpdateConfig) {
        if let Some(n) = self.parallelism {
            config.parallelism = n;
        }
        if let Some(delay) = self.delay {
            config.delay_ms = millis(delay);
        }
        if let Some(action) = self.failure_action {
            config.failure_action = action;
        }
        if let Some(order) = self.order {
            config.order = order;
        }
        if let Some(monitor) = self.monitor {
            config.monitor_ms = millis(monitor);
        }
        if let Some(ratio) = self.max_failure_ratio {
            config.max_failure_ratio = ratio;
        }
    }
}

impl UpdateFlags {
    fn edit(&self) -> UpdateConfigEdit {
        UpdateConfigEdit {
            parallelism: self.update_parallelism,
            delay: self.update_delay,
            failure_action: self.update_failure_action,
            order: self.update_order,
            monitor: self.update_monitor,
            max_failure_ratio: self.update_max_failure_ratio,
        }
    }
}

impl RollbackFlags {
    fn edit(&self) -> UpdateConfigEdit {
        UpdateConfigEdit {
            parallelism: self.rollback_parallelism,
            delay: self.rollback_delay,
            failure_action: self.rollback_failure_action,
            order: self.rollback_order,
            monitor: self.rollback_monitor,
            max_failure_ratio: self.rollback_max_failure_ratio,
        }
    }
}

fn strategy() -> impl TypedValueParser<Value = Strategy> {
    PossibleValuesParser::new(["spread", "binpack"]).map(|s| match s.as_str() {
        "binpack" => Strategy::Binpack,
        _ => Strategy::Spread,
    })
}

fn endpoint_mode() -> impl TypedValueParser<Value = EndpointMode> {
    PossibleValuesParser::new(["vip", "dnsrr"]).map(|s| match s.as_str() {
        "dnsrr" => EndpointMode::Dnsrr,
        _ => EndpointMode::Vip,
    })
}

fn restart_condition() -> impl TypedValueParser<Value = RestartCondition> {
    PossibleValuesParser::new(["none", "on-failure", "any"]).map(|s| match s.as_str() {
        "none" => RestartCondition::None,
        "on-failure" => RestartCondition::OnFailure,
        _ => RestartCondition::Any,
    })
}

fn failure_action(
    allowed: &'static [&'static str],
) -> impl TypedValueParser<Value = FailureAction> {
    PossibleValuesParser::new(allowed).map(|s| match s.as_str() {
        "continue" => FailureAction::Continue,
        "rollback" => FailureAction::Rollback,
        _ => FailureAction::Pause,
    })
}

fn update_order() -> impl TypedValueParser<Value = UpdateOrder> {
    PossibleValuesParser::new(["stop-first", "start-first"]).map(|s| match s.as_str() {
        "start-first" => UpdateOrder::StartFirst,
        _ => UpdateOrder::StopFirst,
    })
}

#[cfg(test)]
mod tests {
    use clap::Parser;
    use shoal_control::objects::{Protocol, Resources, RestartPolicy};

    use super::*;

    // A test's parse result, made once per case: its size does not matter.
    #[allow(clippy::large_enum_variant)]
    #[derive(Debug, Parser)]
    enum Verb {
        Create(CreateArgs),
        Update(UpdateArgs),
    }

    /// Parses `shoal service VERB` + `words` as the CLI would.
    fn verb(verb: &str, words: &[&str]) -> Result<Verb, String> {
        let argv = ["shoal", verb].into_iter().chain(words.iter().copied());
        Verb::try_parse_from(argv).map_err(|e| e.to_string())
    }

    /// `service create LINE` (split on spaces).
    fn create(line: &str) -> Result<ServiceSpec, String> {
        let words: Vec<&str> = line.split_whitespace().collect();
        match verb("create", &words)? {
            Verb::Create(args) => args.spec().map_err(|e| e.to_string()),
            Verb::Update(_) => unreachable!(),
        }
    }

    /// `service update WORDS...` applied to `view`.
    fn update_words(view: &ServiceView, words: &[&str]) -> Result<ServiceSpec, String> {
        match verb("update", words)? {
            Verb::Update(args) => args.apply(view).map_err(|e| e.to_string()),
            Verb::Create(_) => unreachable!(),
        }
    }

    /// `service update LINE` (split on spaces) applied to `view`.
    fn update(view: &ServiceView, line: &str) -> Result<ServiceSpec, String> {
        update_words(view, &line.split_whitespace().collect::<Vec<_>>())
    }

    fn tcp(published: u16, target: u16) -> PortConfig {
        PortConfig {
            protocol: Protocol::Tcp,
            target,
            published,
            mode: Default::default(),
        }
    }

    fn view(spec: ServiceSpec, networks: &[&str]) -> ServiceView {
        ServiceView {
            id: "svc1".into(),
            name: spec.name.clone(),
            mode: "replicated".into(),
            running: 0,
            desired: 1,
            version: 4,
            spec,
            networks: networks.iter().map(|n| n.to_string()).collect(),
            previous_spec: None,
            update_status: None,
            created_at: 0,
            updated_at: 0,
            virtual_ips: Vec::new(),
        }
    }

    #[test]
    fn constraint_errors_reach_the_user() {
        let err = create("--name web --constraint node.zone==a sleep 1").unwrap_err();
        assert!(
            err.contains(
                "invalid constraint key `node.zone`: use node.id, node.hostname, node.role or node.labels.KEY"
            ),
            "{err}"
        );
        let err = create("--name web --constraint node.role=manager sleep").unwrap_err();
        assert!(err.contains("use KEY==VALUE or KEY!=VALUE"), "{err}");
    }

    #[test]
    fn create_builds_the_spec_from_docker_flags() {
        let spec = create(
            "--name web --replicas 3 --network front -p 8080:80 -e A=1 --label team=web \
             --constraint node.role==worker --placement-pref spread=node.labels.zone \
             --strategy binpack --reserve-cpu 0.5 --reserve-memory 64M --limit-memory 128m \
             --restart-condition on-failure --restart-delay 500ms --restart-max-attempts 3 \
             --update-parallelism 2 --update-order start-first \
             --rollback-failure-action continue --runtime process -- httpd -p 80",
        )
        .unwrap();
        assert_eq!(spec.mode, ServiceMode::Replicated { replicas: 3 });
        assert_eq!(spec.task.command, ["httpd", "-p", "80"]);
        assert_eq!(spec.task.env, ["A=1"]);
        assert_eq!(spec.labels["team"], "web");
        assert_eq!(spec.networks, ["front"]);
        assert_eq!(spec.ports, [tcp(8080, 80)]);
        assert_eq!(
            spec.task.placement.constraints[0].to_string(),
            "node.role==worker"
        );
        assert_eq!(spec.task.placement.preferences, ["spread=node.labels.zone"]);
        assert_eq!(spec.task.placement.strategy, Some(Strategy::Binpack));
        assert_eq!(
            spec.task.resources,
            Resources {
                reserve_nano_cpus: 500_000_000,
                reserve_memory: 64 << 20,
                limit_nano_cpus: 0,
                limit_memory: 128 << 20,
            }
        );
        assert_eq!(
            spec.task.restart,
            RestartPolicy {
                condition: RestartCondition::OnFailure,
                delay_ms: 500,
                max_attempts: Some(3)
            }
        );
        assert_eq!(spec.update.parallelism, 2);
        assert_eq!(spec.update.order, UpdateOrder::StartFirst);
        assert_eq!(spec.update.monitor_ms, 5_000, "defaults kept");
        assert_eq!(spec.rollback.failure_action, FailureAction::Continue);
    }

    #[test]
    fn create_defaults_and_early_errors() {
        let spec = create("--name web --runtime process sleep 1000").unwrap();
        assert_eq!(spec.mode, ServiceMode::Replicated { replicas: 1 });
        assert_eq!(spec.task.command, ["sleep", "1000"]);
        assert_eq!(spec.task.container, None);
        assert_eq!(spec.task.restart, RestartPolicy::default());
        assert_eq!(spec.update, UpdateConfig::default());
        assert_eq!(spec.rollback, UpdateConfig::default());

        let global = create("--name agent --mode global top").unwrap();
        assert_eq!(global.mode, ServiceMode::Global);
        assert_eq!(
            create("--name a --mode global --replicas 2 top").unwrap_err(),
            "--replicas applies only to replicated services, and service `a` is global"
        );
        assert!(create("--name web").is_err(), "a command is required");
        for (line, message) in [
            ("--name -bad top", "invalid service name `-bad`"),
            ("--name w -e NOVALUE top", "use KEY=VALUE"),
            (
                "--name w --update-max-failure-ratio 2 top",
                "between 0 and 1",
            ),
            (
                "--name w --rollback-failure-action rollback top",
                "[possible values: pause, continue]",
            ),
            (
                "--name w --reserve-memory 2g --limit-memory 1g top",
                "above the limit",
            ),
            (
                "--name w --reserve-memory lots top",
                "invalid memory size `lots`",
            ),
            ("--name w -p 80/sctp top", "use tcp or udp"),
        ] {
            let err = create(line).unwrap_err();
            assert!(err.contains(message), "{line}: {err}");
        }
    }

    #[test]
    fn an_image_comes_first_with_dockers_override_rules() {
        let spec = create(
            "--name web --entrypoint /bin/httpd -u app:extra -w /srv --read-only --init \
             --hostname web-1 --cap-add NET_ADMIN --cap-drop CHOWN --stop-signal SIGQUIT \
             --limit-pids 64 --health-cmd true --health-interval 2s --health-retries 2 \
             registry:5000/web:1 -f -p 80",
        )
        .unwrap();
        let c = spec.task.container.clone().expect("a container");
        assert_eq!(c.image, "registry:5000/web:1");
        assert_eq!(c.args, ["-f", "-p", "80"], "after the image: its Cmd");
        assert_eq!(spec.task.command, ["/bin/httpd"], "--entrypoint");
        assert_eq!(
            (c.user.as_str(), c.workdir.as_str(), c.hostname.as_str()),
            ("app:extra", "/srv", "web-1")
        );
        assert!(c.read_only && c.init);
        assert_eq!(
            (c.cap_add, c.cap_drop),
            (vec!["NET_ADMIN".to_string()], vec!["CHOWN".to_string()])
        );
        assert_eq!((c.stop_signal.as_str(), c.pids_limit), ("SIGQUIT", 64));
        let h = c.healthcheck.expect("a health check");
        assert_eq!(h.test, ["CMD-SHELL", "true"]);
        assert_eq!(
            (h.interval_ms, h.retries, h.timeout_ms),
            (Some(2000), Some(2), None)
        );

        let plain = create("--name web busybox").unwrap();
        let c = plain.task.container.expect("a container");
        assert!(
            plain.task.command.is_empty() && c.args.is_empty(),
            "the image's own"
        );
        assert!(c.healthcheck.is_none(), "the image's HEALTHCHECK");

        let err = create("--name web --runtime process --user app top").unwrap_err();
        assert!(err.contains("need a container task"), "{err}");
        let err = create("--name web --no-healthcheck --health-cmd true busybox").unwrap_err();
        assert!(err.contains("conflicts"), "{err}");
    }

    #[test]
    fn update_changes_the_image_args_and_container_flags_given() {
        let base = create("--name web --cap-add NET_ADMIN busybox:1 httpd -f").unwrap();
        let v = view(base.clone(), &[]);
        let spec = update(
            &v,
            "--image busybox:2 --cap-drop NET_ADMIN --no-healthcheck --read-only web",
        )
        .unwrap();
        let c = spec.task.container.expect("still a container");
        assert_eq!(c.image, "busybox:2");
        assert_eq!(c.args, ["httpd", "-f"], "kept");
        assert!(c.cap_add.is_empty() && c.cap_drop == ["NET_ADMIN"]);
        assert!(c.read_only);
        assert!(c.healthcheck.expect("set").disabled());
        let spec = update(&v, "web -- httpd -f -p 8080").unwrap();
        assert_eq!(
            spec.task.container.expect("c").args,
            ["httpd", "-f", "-p", "8080"]
        );

        let process = view(create("--name p --runtime process top").unwrap(), &[]);
        let err = update(&process, "--image busybox p").unwrap_err();
        assert!(err.contains("need a container task"), "{err}");
    }

    #[test]
    fn update_applies_only_the_flags_given() {
        let base = create(
            "--name web -e A=1 -e B=2 -p 8080:80 -p 53/udp --constraint node.role==worker \
             --runtime process sleep 1000",
        )
        .unwrap();
        let v = view(base.clone(), &[]);
        assert_eq!(update(&v, "web").unwrap(), base);

        let spec = update(
            &v,
            "--env-rm A --env-add B=3 --env-add C=4 --publish-rm 80 --publish-add 9090:90 \
             --constraint-rm node.role==worker --replicas 5 --update-delay 10s --reserve-cpu 1 \
             web -- sleep 5",
        )
        .unwrap();
        assert_eq!(spec.task.env, ["B=3", "C=4"]);
        assert_eq!(
            spec.ports,
            [
                PortConfig {
                    protocol: Protocol::Udp,
                    target: 53,
                    published: 0,
                    mode: Default::default(),
                },
                tcp(9090, 90)
            ]
        );
        assert!(spec.task.placement.constraints.is_empty());
        assert_eq!(spec.mode, ServiceMode::Replicated { replicas: 5 });
        assert_eq!(spec.update.delay_ms, 10_000);
        assert_eq!(spec.task.resources.reserve_nano_cpus, 1_000_000_000);
        assert_eq!(spec.task.command, ["sleep", "5"]);
        assert_eq!(spec.task.restart, base.task.restart, "untouched");
        assert_eq!(spec.rollback, base.rollback, "untouched");
        let spaced = update_words(&v, &["--constraint-rm", "node.role == worker", "web"]);
        assert!(spaced.unwrap().task.placement.constraints.is_empty());
    }

    #[test]
    fn publish_rm_matches_target_and_protocol() {
        let mut base = create("--name web -p 8080:80 -p 80/udp top").unwrap();
        base.ports.push(tcp(8081, 80));
        let v = view(base, &[]);
        let spec = update(&v, "--publish-rm 80/udp web").unwrap();
        assert_eq!(spec.ports, [tcp(8080, 80), tcp(8081, 80)]);
        let spec = update(&v, "--publish-rm 8081:80 web").unwrap();
        assert_eq!(spec.ports.len(), 2);
        assert!(!spec.ports.contains(&tcp(8081, 80)));
        let spec = update(&v, "--publish-rm 80 web").unwrap();
        assert_eq!(spec.ports.len(), 1);
        // A new target for a published port replaces the old mapping.
        let spec = update(&v, "--publish-add 8080:81 web").unwrap();
        assert!(spec.ports.contains(&tcp(8080, 81)));
        assert!(!spec.ports.contains(&tcp(8080, 80)));
    }

    #[test]
    fn secrets_and_configs_parse_like_docker_and_update_by_name() {
        let spec = create(
            "--name web --secret pw --secret source=tls,target=/etc/tls.key,uid=1000,gid=2,mode=0400 \
             --config src=site,target=/www/index.html busybox",
        )
        .unwrap();
        assert_eq!(spec.task.secrets[0], PayloadReference::named("pw"));
        let tls = &spec.task.secrets[1];
        assert_eq!(
            (
                tls.name.as_str(),
                tls.target.as_str(),
                tls.uid,
                tls.gid,
                tls.mode
            ),
            ("tls", "/etc/tls.key", 1000, 2, 0o400)
        );
        assert_eq!(spec.task.configs[0].target, "/www/index.html");
        assert_eq!(spec.task.configs[0].mode, 0o444, "Docker's default");
        assert!(create("--name web --secret target=/x busybox")
            .unwrap_err()
            .contains("invalid --secret `target=/x`"));
        assert!(create("--name web --secret source=pw,mode=rw busybox").is_err());

        let mut base = spec.clone();
        base.task.secrets[0].id = "id-pw".into();
        let v = view(base, &[]);
        let spec = update(
            &v,
            "--secret-rm id-pw --secret-add source=tls,target=/k web",
        )
        .unwrap();
        assert_eq!(spec.task.secrets.len(), 1, "{:?}", spec.task.secrets);
        assert_eq!(
            spec.task.secrets[0].target, "/k",
            "re-added replaces by name"
        );
        let spec = update(&v, "--config-rm site web").unwrap();
        assert!(spec.task.configs.is_empty());
    }

    #[test]
    fn update_networks_by_name_or_id() {
        let mut base = create("--name web top").unwrap();
        base.networks = vec!["id-front".into(), "id-back".into()];
        let v = view(base, &["front", "back"]);
        let spec = update(&v, "--network-rm front --network-add extra web").unwrap();
        assert_eq!(spec.networks, ["id-back", "extra"]);
        let spec = update(&v, "--network-rm id-back web").unwrap();
        assert_eq!(spec.networks, ["id-front"]);
        assert_eq!(
            update(&v, "--network-add back web").unwrap_err(),
            "service `web` is already attached to network `back`"
        );
        let spec = update(&v, "--network-rm back --network-add back web").unwrap();
        assert_eq!(spec.networks, ["id-front", "back"]);
    }

    #[test]
    fn update_refuses_replicas_for_global_services_and_checks_the_result() {
        let v = view(create("--name agent --mode global top").unwrap(), &[]);
        assert_eq!(
            update(&v, "--replicas 3 agent").unwrap_err(),
            "--replicas applies only to replicated services, and service `agent` is global"
        );
        assert!(update(&v, "--env-add X agent")
            .unwrap_err()
            .contains("invalid environment variable `X`"));
        let spec = update(&v, "--label-add a=b --restart-max-attempts 0 agent").unwrap();
        assert_eq!(spec.labels["a"], "b");
        assert_eq!(spec.task.restart.max_attempts, None);
    }
}
