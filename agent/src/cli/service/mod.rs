//! `shoal service create|ls|ps|logs|inspect|update|scale|rollback|rm`: Docker's
//! service verbs, sent to the local agent (a manager) and printed the way
//! Docker prints them. Changes wait for the tasks to run unless `--detach`.
//! Specs are checked here for early errors; the managers check them again
//! and resolve network names.

mod container_flags;
#[cfg(test)]
mod fake_manager;
mod flag_error;
mod flags;
mod logs;
mod mounts;
mod pretty;
mod progress;
mod rows;
mod tasks;
mod values;

use std::path::Path;

use std::collections::BTreeMap;

use anyhow::bail;
use clap::Subcommand;
use shoal_control::api::{ApiRequest, Done, NodeView, ServiceView, TaskView};
use shoal_control::engine::filter::Filters;
use shoal_control::engine::Service;

use super::client;
use super::each::Each;
use super::format;
use flags::{CreateArgs, UpdateArgs, WatchFlags};
use progress::Watch;
/// `service ls`'s table, for `stack services`.
pub(super) use rows::list as services_table;
pub use tasks::{human_duration, TaskListOptions};
pub use values::parse_memory;
use values::parse_scale;

/// How many characters of an id lists show, as Docker does.
const SHORT_ID: usize = 12;

#[derive(Debug, Subcommand)]
pub enum ServiceCommand {
    /// Create a service and wait for its tasks to run; prints its id.
    Create(Box<CreateArgs>),
    /// List services.
    #[command(alias = "list")]
    Ls {
        /// Only display IDs.
        #[arg(short, long)]
        quiet: bool,
        /// Pretty-print services using a Go template, e.g. '{{.Name}}
        /// {{.Replicas}}'; 'table' for Docker's table, 'json' for one JSON
        /// object per service.
        #[arg(long)]
        format: Option<String>,
        /// Filter output based on conditions provided: id=, name=, label=,
        /// mode=replicated|global. Repeatable.
        #[arg(short, long = "filter", value_name = "FILTER")]
        filters: Vec<String>,
    },
    /// List the tasks of one or more services, each slot's history under
    /// its current task.
    Ps {
        /// Services: id, name or unique id prefix.
        #[arg(required = true, value_name = "SERVICE")]
        services: Vec<String>,
        /// Only display task IDs.
        #[arg(short, long)]
        quiet: bool,
        /// Do not truncate output (full ids and errors).
        #[arg(long)]
        no_trunc: bool,
        /// Filter output based on conditions provided: id=, name=, node=,
        /// desired-state=running|shutdown, label=. Repeatable.
        #[arg(short, long = "filter", value_name = "FILTER")]
        filters: Vec<String>,
        /// Pretty-print tasks using a Go template, e.g. '{{.Name}}
        /// {{.CurrentState}}'; 'json' for one JSON object per task.
        #[arg(long)]
        format: Option<String>,
    },
    /// Print the output of a service's tasks, or of one task.
    Logs(logs::LogsArgs),
    /// Display detailed information on one or more services (Docker's
    /// JSON, or text with --pretty).
    Inspect {
        /// Services: id, name or unique id prefix.
        #[arg(required = true, value_name = "SERVICE")]
        services: Vec<String>,
        /// Print the information in a human friendly format.
        #[arg(long, conflicts_with = "format")]
        pretty: bool,
        /// Format the output using a Go template, e.g.
        /// '{{.Spec.Mode.Replicated.Replicas}}'.
        #[arg(short, long)]
        format: Option<String>,
    },
    /// Change a service and wait for its tasks to be replaced.
    Update(Box<UpdateArgs>),
    /// Change the replicas of services: web=3 api=5.
    Scale {
        /// Services and their replicas, e.g. web=3 api=5.
        #[arg(required = true, value_name = "SERVICE=REPLICAS", value_parser = parse_scale)]
        scales: Vec<(String, u64)>,
        #[command(flatten)]
        watch: WatchFlags,
    },
    /// Go back to a service's previous spec.
    Rollback {
        /// The service: id, name or unique id prefix.
        service: String,
        #[command(flatten)]
        watch: WatchFlags,
    },
    /// Remove services and their tasks.
    #[command(alias = "remove")]
    Rm {
        /// Services: id, name or unique id prefix.
        #[arg(required = true, value_name = "SERVICE")]
        services: Vec<String>,
    },
}

impl ServiceCommand {
    pub async fn run(self, socket: &Path) -> anyhow::Result<()> {
        match self {
            ServiceCommand::Create(args) => create(socket, &args).await,
            ServiceCommand::Ls {
                quiet,
                format,
                filters,
            } => {
                let filters = Filters::parse(&filters)?;
                let services = list(socket).await?;
                print!(
                    "{}",
                    rows::list(&services, &filters, format.as_deref(), quiet)?
                );
                Ok(())
            }
            ServiceCommand::Ps {
                services,
                quiet,
                no_trunc,
                filters,
                format,
            } => {
                let mut all = Vec::new();
                for service in services {
                    all.extend(tasks_of(socket, &service).await?);
                }
                let options = TaskListOptions {
                    quiet,
                    no_trunc,
                    format: format.as_deref(),
                    filters: Filters::parse(&filters)?,
                };
                print_tasks(socket, &all, options).await
            }
            ServiceCommand::Logs(args) => logs::run(socket, &args).await,
            ServiceCommand::Inspect {
                services,
                pretty,
                format,
            } => {
                let each = Each::run(services, |service| async move {
                    inspect(socket, &service).await
                })
                .await;
                let views = &each.answers;
                if pretty {
                    let texts: Vec<String> = views.iter().map(pretty::pretty).collect();
                    print!("{}", texts.join("\n"));
                } else {
                    let services: Vec<Service> = views.iter().map(Service::from).collect();
                    print!("{}", format::inspect(&services, format.as_deref())?);
                }
                each.finish()
            }
            ServiceCommand::Update(args) => update(socket, &args).await,
            ServiceCommand::Scale { scales, watch } => scale(socket, scales, &watch).await,
            ServiceCommand::Rollback { service, watch } => rollback(socket, &service, &watch).await,
            ServiceCommand::Rm { services } => Each::run(services, |service| async move {
                let request = ApiRequest::ServiceRemove {
                    service: service.clone(),
                };
                client::api::<Done>(socket, request).await?;
                println!("{service}");
                Ok(())
            })
            .await
            .finish(),
        }
    }
}

async fn create(socket: &Path, args: &CreateArgs) -> anyhow::Result<()> {
    let mut spec = args.spec()?;
    if args.with_registry_auth {
        super::image::attach_registry_auth(&mut spec)?;
    }
    let request = ApiRequest::ServiceCreate {
        spec: Box::new(spec),
    };
    let service: ServiceView = client::api(socket, request).await?;
    warn_unpinned(&args.spec()?, &service);
    println!("{}", service.id);
    if args.watch.detach {
        return Ok(());
    }
    let watch = Watch::after(&service, &[], service.version);
    progress::watch(socket, watch, &args.watch).await
}

/// Docker's warning when the managers could not pin the image to a digest
/// (the registry could not be asked): each node resolves the tag itself.
fn warn_unpinned(asked: &shoal_control::objects::ServiceSpec, stored: &ServiceView) {
    let image = |spec: &shoal_control::objects::ServiceSpec| {
        spec.task.container.as_ref().map(|c| c.image.clone())
    };
    if let (Some(asked), Some(stored)) = (image(asked), image(&stored.spec)) {
        if !stored.contains('@') {
            eprintln!(
                "image {asked} could not be accessed on a registry to record\n\
                 its digest. Each node will access {asked} independently,\n\
                 possibly leading to different nodes running different\n\
                 versions of the image.\n"
            );
        }
    }
}

async fn update(socket: &Path, args: &UpdateArgs) -> anyhow::Result<()> {
    let before = inspect(socket, &args.service).await?;
    let mut spec = args.apply(&before)?;
    if args.with_registry_auth {
        super::image::attach_registry_auth(&mut spec)?;
    }
    let before_tasks = tasks_of(socket, &before.id).await?;
    let request = ApiRequest::ServiceUpdate {
        service: before.id.clone(),
        spec: Box::new(spec),
        version: Some(before.version),
        force: args.force,
    };
    let after: ServiceView = client::api(socket, request).await?;
    if after.spec.task.container != before.spec.task.container {
        warn_unpinned(&after.spec, &after);
    }
    println!("{}", args.service);
    if args.watch.detach {
        return Ok(());
    }
    let min_version = progress::min_version(&before, &after, args.force);
    progress::watch(
        socket,
        Watch::after(&before, &before_tasks, min_version),
        &args.watch,
    )
    .await
}

/// Scales each service in turn (going on after a failure, as Docker does),
/// then waits for each.
async fn scale(
    socket: &Path,
    scales: Vec<(String, u64)>,
    flags: &WatchFlags,
) -> anyhow::Result<()> {
    let mut each = Each::run(scales, |(service, replicas)| async move {
        let watch = scale_one(socket, &service, replicas).await?;
        println!("{service} scaled to {replicas}");
        Ok(watch)
    })
    .await;
    if !flags.detach {
        for watch in std::mem::take(&mut each.answers) {
            if let Err(e) = progress::watch(socket, watch, flags).await {
                each.failed(&e);
            }
        }
    }
    each.finish()
}

async fn scale_one(socket: &Path, service: &str, replicas: u64) -> anyhow::Result<Watch> {
    let before = inspect(socket, service).await?;
    if before.spec.replicas().is_none() {
        bail!(
            "service `{}` is global: `service scale` applies only to replicated services",
            before.name
        );
    }
    let before_tasks = tasks_of(socket, &before.id).await?;
    let request = ApiRequest::ServiceScale {
        service: before.id.clone(),
        replicas,
    };
    let after: ServiceView = client::api(socket, request).await?;
    let min_version = progress::min_version(&before, &after, false);
    Ok(Watch::after(&before, &before_tasks, min_version))
}

async fn rollback(socket: &Path, service: &str, flags: &WatchFlags) -> anyhow::Result<()> {
    let before = inspect(socket, service).await?;
    if before.previous_spec.is_none() {
        bail!(
            "service `{}` has no previous spec to roll back to: it was never updated",
            before.name
        );
    }
    let before_tasks = tasks_of(socket, &before.id).await?;
    let request = ApiRequest::ServiceRollback {
        service: before.id.clone(),
    };
    let after: ServiceView = client::api(socket, request).await?;
    println!("{service}");
    if flags.detach {
        return Ok(());
    }
    let min_version = progress::min_version(&before, &after, false);
    let mut watch = Watch::after(&before, &before_tasks, min_version);
    watch.rollback = true;
    progress::watch(socket, watch, flags).await
}

/// `service inspect` of one service.
async fn inspect(socket: &Path, service: &str) -> anyhow::Result<ServiceView> {
    let request = ApiRequest::ServiceInspect {
        service: service.to_string(),
    };
    client::api(socket, request).await
}

/// `service ps` of one service.
pub(super) async fn tasks_of(socket: &Path, service: &str) -> anyhow::Result<Vec<TaskView>> {
    let request = ApiRequest::ServicePs {
        service: service.to_string(),
    };
    client::api(socket, request).await
}

/// `node ps NODE...`: the tasks the managers placed on nodes, in the
/// `service ps` table.
pub async fn node_ps(
    socket: &Path,
    nodes: Vec<String>,
    options: TaskListOptions<'_>,
) -> anyhow::Result<()> {
    let all = tasks_on(socket, nodes).await?;
    print_tasks(socket, &all, options).await
}

/// Every service the managers have (`service ls`).
pub(super) async fn list(socket: &Path) -> anyhow::Result<Vec<ServiceView>> {
    client::api(socket, ApiRequest::ServiceList).await
}

/// The tasks the managers placed on each of `nodes` (`node ps`).
pub(super) async fn tasks_on(
    socket: &Path,
    nodes: impl IntoIterator<Item = String>,
) -> anyhow::Result<Vec<TaskView>> {
    let mut all = Vec::new();
    for node in nodes {
        let tasks: Vec<TaskView> = client::api(socket, ApiRequest::NodePs { node }).await?;
        all.extend(tasks);
    }
    Ok(all)
}

/// Prints tasks after resolving what Docker's task filters name: nodes and
/// services by name to their ids, services' labels and versions for
/// `label` and `_up-to-date`.
pub(super) async fn print_tasks(
    socket: &Path,
    tasks: &[TaskView],
    mut options: TaskListOptions<'_>,
) -> anyhow::Result<()> {
    let filters = &mut options.filters;
    if filters.contains("node") {
        let mut ids = Vec::new();
        for node in filters.get("node").map(str::to_string).collect::<Vec<_>>() {
            let request = ApiRequest::NodeInspect { node };
            let node: NodeView = client::api(socket, request).await?;
            ids.push(node.id);
        }
        filters.set("node", ids);
    }
    if filters.contains("service") {
        let mut ids = Vec::new();
        for service in filters
            .get("service")
            .map(str::to_string)
            .collect::<Vec<_>>()
        {
            ids.push(inspect(socket, &service).await?.id);
        }
        filters.set("service", ids);
    }
    let mut services = BTreeMap::new();
    if filters.contains("label") || filters.contains("_up-to-date") {
        for v in list(socket).await? {
            let facts = tasks::ServiceFacts {
                labels: v.spec.labels.clone(),
                version: v.version,
            };
            services.insert(v.id, facts);
        }
    }
    print!("{}", tasks::list(tasks, &options, &services, now_ms())?);
    Ok(())
}

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

#[cfg(test)]
mod tests {
    use serde_json::{json, Value};
    use shoal_control::objects::{ServiceSpec, TaskState, UpdateState, UpdateStatus};

    use super::fake_manager::FakeManager;
    use super::tasks::tests::task;
    use super::*;
    use shoal_control::api::ApiResponse;

    const RUN: TaskState = TaskState::Running;
    const PENDING: TaskState = TaskState::Pending;

    fn view(id: &str, name: &str, command: &[&str], running: u64, desired: u64) -> ServiceView {
        let spec: ServiceSpec = serde_json::from_value(json!({
            "name": name,
            "mode": {"replicated": {"replicas": desired}},
            "task": {"command": command},
            "ports": [{"protocol": "tcp", "target": 80, "published": 8080}],
        }))
        .unwrap();
        ServiceView {
            id: id.into(),
            name: name.into(),
            mode: "replicated".into(),
            running,
            desired,
            version: 1,
            spec,
            networks: vec![],
            previous_spec: None,
            update_status: None,
            created_at: 0,
            updated_at: 0,
            virtual_ips: Vec::new(),
        }
    }

    #[test]
    fn ls_prints_dockers_table() {
        let services = [
            view(
                "zzzzzzzzzzzzzzzzzzzzzzzzz",
                "web",
                &["httpd", "-f", "-p", "80"],
                2,
                3,
            ),
            view(
                "0123456789abcdefghijklmno",
                "batch",
                &[
                    "sh",
                    "-c",
                    "while true; do echo working hard; sleep 1; done",
                ],
                1,
                1,
            ),
        ];
        let none = Filters::default();
        assert_eq!(
            rows::list(&services, &none, None, false).unwrap(),
            "ID             NAME      MODE         REPLICAS   COMMAND                          PORTS\n\
             0123456789ab   batch     replicated   1/1        sh -c while true; do echo w...   *:8080->80/tcp\n\
             zzzzzzzzzzzz   web       replicated   2/3        httpd -f -p 80                   *:8080->80/tcp\n"
        );
        assert_eq!(
            rows::list(&services, &none, None, true).unwrap(),
            "0123456789ab\nzzzzzzzzzzzz\n",
            "-q prints short ids, as Docker's"
        );
        assert_eq!(
            rows::list(&services, &none, Some("{{.Name}}: {{.Replicas}}"), false).unwrap(),
            "batch: 1/1\nweb: 2/3\n"
        );
        let by_name = Filters::parse(&["name=we"]).unwrap();
        assert_eq!(
            rows::list(&services, &by_name, Some("{{.Name}} {{.Mode}}"), false).unwrap(),
            "web replicated\n"
        );
        let row: Value = serde_json::from_str(
            rows::list(&services[..1], &none, Some("json"), false)
                .unwrap()
                .trim(),
        )
        .unwrap();
        assert_eq!(row["Ports"], "*:8080->80/tcp");
        assert_eq!(row["Image"], "");
    }

    #[test]
    fn inspect_is_a_docker_service() {
        let v = view("svc1", "web", &["sleep", "1"], 0, 3);
        let out = format::inspect(
            &[Service::from(&v)],
            Some("{{.Spec.Name}} {{.Spec.Mode.Replicated.Replicas}} {{json .Spec.TaskTemplate.ContainerSpec.Args}}"),
        )
        .unwrap();
        assert_eq!(out, "web 3 [\"sleep\",\"1\"]\n");
    }

    /// `shoal service LINE` as the CLI parses it.
    fn command(line: &str) -> ServiceCommand {
        #[derive(Debug, clap::Parser)]
        struct Line {
            #[command(subcommand)]
            command: ServiceCommand,
        }
        let words = std::iter::once("service").chain(line.split_whitespace());
        <Line as clap::Parser>::try_parse_from(words)
            .unwrap()
            .command
    }

    fn ps_count(seen: &[ApiRequest]) -> usize {
        seen.iter()
            .filter(|r| matches!(r, ApiRequest::ServicePs { .. }))
            .count()
    }

    /// Whether `req` or one before it changed the service.
    fn after_update(req: &ApiRequest, seen: &[ApiRequest]) -> bool {
        std::iter::once(req).chain(seen).any(|r| {
            matches!(
                r,
                ApiRequest::ServiceUpdate { .. } | ApiRequest::ServiceScale { .. }
            )
        })
    }

    fn at_version(mut t: TaskView, version: u64) -> TaskView {
        t.spec_version = version;
        t.id = format!("{}-v{version}", t.id);
        t
    }

    #[tokio::test]
    async fn create_waits_until_the_tasks_run() {
        let fake = FakeManager::start("create", |req, seen| {
            let v = view("svc1", "web", &["sleep", "1000"], 0, 2);
            let state = if ps_count(seen) < 2 { PENDING } else { RUN };
            match req {
                ApiRequest::ServiceCreate { .. } | ApiRequest::ServiceInspect { .. } => {
                    Ok(ApiResponse::Service {
                        service: Box::new(v),
                    })
                }
                ApiRequest::ServicePs { service } if service == "svc1" => Ok(ApiResponse::Tasks {
                    tasks: vec![task("web.1", 1, RUN, state), task("web.2", 2, RUN, state)],
                }),
                other => Err(format!("unexpected {other:?}")),
            }
        })
        .await;
        command("create --name web --replicas 2 -q --timeout 5s --runtime process -- sleep 1000")
            .run(fake.socket())
            .await
            .unwrap();
        let seen = fake.requests();
        assert!(
            matches!(&seen[0], ApiRequest::ServiceCreate { spec }
                if spec.name == "web" && spec.replicas() == Some(2)),
            "{seen:?}"
        );
        assert_eq!(ps_count(&seen), 3, "polled until both tasks ran");
    }

    #[tokio::test]
    async fn create_gives_up_and_says_why() {
        let fake = FakeManager::start("stuck", |req, _| match req {
            ApiRequest::ServiceCreate { .. } | ApiRequest::ServiceInspect { .. } => {
                Ok(ApiResponse::Service {
                    service: Box::new(view("svc1", "web", &["sleep"], 0, 1)),
                })
            }
            ApiRequest::ServicePs { .. } => {
                let mut t = task("web.1", 1, RUN, PENDING);
                t.message = "no suitable node (insufficient memory on 3 nodes)".into();
                Ok(ApiResponse::Tasks { tasks: vec![t] })
            }
            other => Err(format!("unexpected {other:?}")),
        })
        .await;
        let err = command("create --name web -q --timeout 600ms --runtime process sleep")
            .run(fake.socket())
            .await
            .unwrap_err()
            .to_string();
        assert!(
            err.starts_with(
                "service `web` did not converge within 600ms: 0 of 1 tasks running\n  \
                 web.1: pending: no suitable node (insufficient memory on 3 nodes)\n"
            ),
            "{err}"
        );
    }

    #[tokio::test]
    async fn update_sends_the_version_it_read_and_waits_for_new_tasks() {
        let fake = FakeManager::start("update", |req, seen| {
            let mut v = view("svc1", "web", &["sleep"], 1, 1);
            v.version = 4;
            if after_update(req, seen) {
                v.version = 5;
                v.spec.task.env = vec!["B=2".into()];
            }
            // Old tasks still run at the first poll after the update.
            let tasks_version = if ps_count(seen) >= 2 { 5 } else { 4 };
            match req {
                ApiRequest::ServiceInspect { .. } | ApiRequest::ServiceUpdate { .. } => {
                    Ok(ApiResponse::Service {
                        service: Box::new(v),
                    })
                }
                ApiRequest::ServicePs { .. } => Ok(ApiResponse::Tasks {
                    tasks: vec![at_version(task("web.1", 1, RUN, RUN), tasks_version)],
                }),
                other => Err(format!("unexpected {other:?}")),
            }
        })
        .await;
        command("update --env-add B=2 -q --timeout 5s web")
            .run(fake.socket())
            .await
            .unwrap();
        let seen = fake.requests();
        let update = seen
            .iter()
            .find_map(|r| match r {
                ApiRequest::ServiceUpdate {
                    service,
                    spec,
                    version,
                    force,
                } => Some((service, spec, version, force)),
                _ => None,
            })
            .unwrap();
        assert_eq!(update.0, "svc1");
        assert_eq!(update.1.task.env, ["B=2"]);
        assert_eq!((update.2, update.3), (&Some(4), &false));
        assert_eq!(ps_count(&seen), 3, "one poll before, two after the update");
    }

    #[tokio::test]
    async fn a_paused_update_is_an_error() {
        let fake = FakeManager::start("paused", |req, seen| {
            let mut v = view("svc1", "web", &["sleep"], 1, 1);
            if after_update(req, seen) {
                v.version = 2;
                v.update_status = Some(UpdateStatus {
                    state: UpdateState::Paused,
                    started_at_ms: 1,
                    completed_at_ms: None,
                    message: "update paused due to failure or early termination of task abc".into(),
                });
            }
            match req {
                ApiRequest::ServiceInspect { .. } | ApiRequest::ServiceUpdate { .. } => {
                    Ok(ApiResponse::Service {
                        service: Box::new(v),
                    })
                }
                ApiRequest::ServicePs { .. } => Ok(ApiResponse::Tasks {
                    tasks: vec![task("web.1", 1, RUN, RUN)],
                }),
                other => Err(format!("unexpected {other:?}")),
            }
        })
        .await;
        let err = command("update -q --timeout 5s web -- sleep 5")
            .run(fake.socket())
            .await
            .unwrap_err();
        assert_eq!(
            err.to_string(),
            "service `web`: update paused: update paused due to failure or early termination of task abc"
        );
    }

    #[tokio::test]
    async fn scale_counts_the_tasks_it_keeps() {
        let fake = FakeManager::start("scale", |req, seen| {
            let scaled = after_update(req, seen);
            let mut v = view("svc1", "web", &["sleep"], 1, if scaled { 2 } else { 1 });
            v.version = if scaled { 5 } else { 4 };
            match req {
                ApiRequest::ServiceInspect { .. } => Ok(ApiResponse::Service {
                    service: Box::new(v),
                }),
                ApiRequest::ServiceScale { replicas: 2, .. } => Ok(ApiResponse::Service {
                    service: Box::new(v),
                }),
                ApiRequest::ServicePs { .. } => {
                    let mut tasks = vec![at_version(task("web.1", 1, RUN, RUN), 4)];
                    if scaled {
                        tasks.push(at_version(task("web.2", 2, RUN, RUN), 5));
                    }
                    Ok(ApiResponse::Tasks { tasks })
                }
                other => Err(format!("unexpected {other:?}")),
            }
        })
        .await;
        command("scale web=2 -q --timeout 5s")
            .run(fake.socket())
            .await
            .unwrap();
        assert!(fake.requests().contains(&ApiRequest::ServiceScale {
            service: "svc1".into(),
            replicas: 2
        }));
    }

    #[tokio::test]
    async fn rm_goes_on_after_an_error() {
        let fake = FakeManager::start("rm", |req, _| match req {
            ApiRequest::ServiceRemove { service } if service == "missing" => {
                Err("service `missing` not found".into())
            }
            ApiRequest::ServiceRemove { service } => Ok(ApiResponse::Done {
                message: service.clone(),
            }),
            other => Err(format!("unexpected {other:?}")),
        })
        .await;
        let err = command("rm a missing b")
            .run(fake.socket())
            .await
            .unwrap_err();
        assert_eq!(err.to_string(), "service `missing` not found");
        assert_eq!(fake.requests().len(), 3);
    }
}
