//! `shoal stack deploy|ls|services|ps|rm`: Docker's stack verbs. A deploy
//! reads the compose files (with `.env` and the environment), prints every
//! key shoal does not act on, turns each service into the spec `docker
//! stack deploy` would post (`shoal_control::stack`), and carries out the
//! plan against what the managers have, printing Docker's lines. Stack
//! membership is the `com.docker.stack.namespace` label.

use std::io::Read as _;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use clap::{Args, Subcommand, ValueEnum};
use shoal_control::api::{ApiRequest, NetworkView, NodeView, PayloadView, ServiceView};
use shoal_control::compose::{
    self, ComposeFile, DiskFiles, Environment, FileReader, LoadOptions, ObjectSource, StackObject,
    MAX_FILE_BYTES, NAMESPACE_LABEL,
};
use shoal_control::engine::filter::Filters;
use shoal_control::objects::{PayloadData, MAX_PAYLOAD_BYTES};
use shoal_control::stack::{
    self, Cluster, DeployOptions, DesiredObject, DesiredService, ResolveImage, Step,
};

use super::client;
use super::format::{self, Listing, Row};
use super::service::{self, TaskListOptions};

/// How long `stack rm` waits for the stack's tasks to stop before it
/// removes the stack's networks (a network is in use until then).
const DRAIN_LIMIT: Duration = Duration::from_secs(120);

#[derive(Debug, Subcommand)]
pub enum StackCommand {
    /// Deploy a new stack or update an existing stack from compose files.
    #[command(alias = "up")]
    Deploy(DeployArgs),
    /// List stacks.
    #[command(alias = "list")]
    Ls {
        /// Format output using a Go template, e.g. '{{.Name}}
        /// {{.Services}}'; 'json' for one JSON object per stack.
        #[arg(long)]
        format: Option<String>,
    },
    /// List the services in the stack.
    Services {
        /// The stack.
        stack: String,
        /// Only display IDs.
        #[arg(short, long)]
        quiet: bool,
        /// Format output using a Go template; 'json' for one JSON object
        /// per service.
        #[arg(long)]
        format: Option<String>,
        /// Filter output based on conditions provided: id=, name=, label=,
        /// mode=. Repeatable.
        #[arg(short, long = "filter", value_name = "FILTER")]
        filters: Vec<String>,
    },
    /// List the tasks in the stack.
    Ps {
        /// The stack.
        stack: String,
        /// Only display task IDs.
        #[arg(short, long)]
        quiet: bool,
        /// Do not truncate output.
        #[arg(long)]
        no_trunc: bool,
        /// Filter output based on conditions provided: id=, name=, node=,
        /// desired-state=, label=. Repeatable.
        #[arg(short, long = "filter", value_name = "FILTER")]
        filters: Vec<String>,
        /// Format output using a Go template; 'json' for one JSON object
        /// per task.
        #[arg(long)]
        format: Option<String>,
    },
    /// Remove one or more stacks: their services, then secrets, configs
    /// and networks.
    #[command(aliases = ["remove", "down"])]
    Rm {
        /// The stacks.
        #[arg(required = true, value_name = "STACK")]
        stacks: Vec<String>,
    },
}

#[derive(Debug, Args)]
pub struct DeployArgs {
    /// Path to a Compose file, or "-" to read from stdin; repeatable, later
    /// files merged over earlier ones.
    #[arg(
        short = 'c',
        long = "compose-file",
        required = true,
        value_name = "FILE"
    )]
    compose_files: Vec<PathBuf>,
    /// Prune services that are no longer referenced.
    #[arg(long)]
    prune: bool,
    /// Send registry authentication details to the swarm's nodes.
    #[arg(long)]
    with_registry_auth: bool,
    /// When the managers ask the registry for an image's digest: "changed"
    /// (a new service, or the file names another image), "always" (every
    /// deploy: each service is updated, its tasks replaced only where the
    /// digest moved) or "never" (an unchanged image keeps its digest; a
    /// new one is still pinned by the managers). Docker's default is
    /// "always"; shoal's is "changed", so an unchanged file changes
    /// nothing.
    #[arg(long, value_enum, default_value = "changed")]
    resolve_image: ResolveImageArg,
    /// The stack.
    stack: String,
}

#[derive(Clone, Copy, Debug, ValueEnum)]
enum ResolveImageArg {
    Always,
    Changed,
    Never,
}

impl From<ResolveImageArg> for ResolveImage {
    fn from(arg: ResolveImageArg) -> Self {
        match arg {
            ResolveImageArg::Always => ResolveImage::Always,
            ResolveImageArg::Changed => ResolveImage::Changed,
            ResolveImageArg::Never => ResolveImage::Never,
        }
    }
}

impl StackCommand {
    pub async fn run(self, socket: &Path) -> anyhow::Result<()> {
        match self {
            StackCommand::Deploy(args) => deploy(socket, &args).await,
            StackCommand::Ls { format } => {
                let services = service::list(socket).await?;
                print!("{}", stack_list(&services, format.as_deref())?);
                Ok(())
            }
            StackCommand::Services {
                stack,
                quiet,
                format,
                filters,
            } => {
                let services = stack_services(socket, &stack).await?;
                if services.is_empty() {
                    eprintln!("Nothing found in stack: {stack}");
                    return Ok(());
                }
                let filters = Filters::parse(&filters)?;
                print!(
                    "{}",
                    service::services_table(&services, &filters, format.as_deref(), quiet)?
                );
                Ok(())
            }
            StackCommand::Ps {
                stack,
                quiet,
                no_trunc,
                filters,
                format,
            } => {
                let mut tasks = Vec::new();
                for s in stack_services(socket, &stack).await? {
                    tasks.extend(service::tasks_of(socket, &s.id).await?);
                }
                if tasks.is_empty() {
                    bail!("nothing found in stack: {stack}");
                }
                let options = TaskListOptions {
                    quiet,
                    no_trunc,
                    format: format.as_deref(),
                    filters: Filters::parse(&filters)?,
                };
                service::print_tasks(socket, &tasks, options).await
            }
            StackCommand::Rm { stacks } => {
                let mut errors = Vec::new();
                for stack in stacks {
                    if let Err(e) = remove(socket, &stack).await {
                        errors.push(format!("{e:#}"));
                    }
                }
                if !errors.is_empty() {
                    bail!("{}", errors.join("\n"));
                }
                Ok(())
            }
        }
    }
}

/// `stack ls`: Docker's NAME and SERVICES columns.
const STACKS: Listing = Listing {
    default_table: "table {{.Name}}\t{{.Services}}",
    headers: &[("Name", "NAME"), ("Services", "SERVICES")],
    row_type: "*formatter.stackContext",
};

fn stack_list(services: &[ServiceView], format: Option<&str>) -> anyhow::Result<String> {
    let mut stacks = stack::stack_names(services);
    stacks.sort_by(|a, b| format::natural_cmp(&a.0, &b.0));
    let rows: Vec<Row> = stacks
        .iter()
        .map(|(name, count)| {
            Row::new(serde_json::json!({"Name": name, "Services": count.to_string()}))
        })
        .collect();
    Ok(format::list(
        &STACKS,
        format::resolve(&STACKS, format, false),
        &rows,
    )?)
}

async fn stack_services(socket: &Path, stack: &str) -> anyhow::Result<Vec<ServiceView>> {
    Ok(service::list(socket)
        .await?
        .into_iter()
        .filter(|s| s.spec.labels.get(NAMESPACE_LABEL).map(String::as_str) == Some(stack))
        .collect())
}

/// What the managers have now.
async fn cluster(socket: &Path) -> anyhow::Result<Cluster> {
    Ok(Cluster {
        services: service::list(socket).await?,
        networks: client::api::<Vec<NetworkView>>(socket, ApiRequest::NetworkList).await?,
        secrets: client::api::<Vec<PayloadView>>(socket, ApiRequest::SecretList).await?,
        configs: client::api::<Vec<PayloadView>>(socket, ApiRequest::ConfigList).await?,
    })
}

/// The compose files: `-` is stdin; relative paths in them start at the
/// first file's directory (the current one for stdin).
fn read_compose_files(paths: &[PathBuf]) -> anyhow::Result<(Vec<ComposeFile>, PathBuf)> {
    let mut files = Vec::new();
    for path in paths {
        let content = if path == Path::new("-") {
            let mut text = String::new();
            std::io::stdin()
                .take(MAX_FILE_BYTES + 1)
                .read_to_string(&mut text)
                .context("reading the compose file from stdin")?;
            if text.len() as u64 > MAX_FILE_BYTES {
                bail!("the compose file on stdin is larger than {MAX_FILE_BYTES} bytes");
            }
            text
        } else {
            DiskFiles.read(path)?.with_context(|| {
                format!(
                    "cannot read compose file `{}`: no such file",
                    path.display()
                )
            })?
        };
        files.push(ComposeFile {
            name: path.display().to_string(),
            content,
        });
    }
    let first = paths.first().context("no compose file given")?;
    let working_dir = if first == Path::new("-") {
        std::env::current_dir()?
    } else {
        std::path::absolute(first)?
            .parent()
            .map(Path::to_path_buf)
            .unwrap_or_default()
    };
    Ok((files, working_dir))
}

/// A secret's or config's data from the file (`None` for an external one).
fn object_data(object: &StackObject) -> anyhow::Result<Option<PayloadData>> {
    let data = match &object.source {
        ObjectSource::External => return Ok(None),
        ObjectSource::Inline(text) => text.as_bytes().to_vec(),
        ObjectSource::File(path) => {
            let mut data = Vec::new();
            std::fs::File::open(path)
                .and_then(|f| f.take(MAX_PAYLOAD_BYTES as u64 + 1).read_to_end(&mut data))
                .with_context(|| format!("reading {} for {}", path.display(), object.name))?;
            data
        }
    };
    if data.len() > MAX_PAYLOAD_BYTES {
        bail!(
            "{}: the data is over the limit of {MAX_PAYLOAD_BYTES} bytes (500 KB)",
            object.name
        );
    }
    Ok(Some(PayloadData(data)))
}

async fn deploy(socket: &Path, args: &DeployArgs) -> anyhow::Result<()> {
    let (files, working_dir) = read_compose_files(&args.compose_files)?;
    let mut env = Environment::from_vars(std::env::vars());
    env.add_dotenv_file(&working_dir.join(".env"), &DiskFiles)?;
    let loaded = compose::load(
        &files,
        &LoadOptions {
            working_dir: &working_dir,
            env: &env,
            files: &DiskFiles,
        },
    )?;
    for warning in &loaded.warnings {
        eprintln!("{warning}");
    }
    let planned = compose::plan(&args.stack, &loaded.project)?;

    let mut services = Vec::new();
    let mut spec_warnings = std::collections::BTreeMap::new();
    for service in &planned.services {
        let converted = stack::service_spec(service)?;
        for warning in &converted.warnings {
            eprintln!("{warning}");
        }
        let shoal = converted
            .spec
            .to_shoal()
            .map_err(|source| stack::StackError::Spec {
                service: service.key.clone(),
                source,
            })?;
        spec_warnings.insert(service.name.clone(), shoal.warnings);
        services.push(DesiredService {
            image: service.image.clone(),
            spec: shoal.spec,
        });
    }
    let networks = planned
        .networks
        .iter()
        .map(|n| {
            let request = if n.external {
                None
            } else {
                Some(stack::network_request(n)?)
            };
            Ok((n.name.clone(), request))
        })
        .collect::<Result<Vec<_>, stack::StackError>>()?;
    let desired = |objects: &[StackObject]| -> anyhow::Result<Vec<DesiredObject>> {
        objects
            .iter()
            .map(|o| {
                Ok(DesiredObject {
                    name: o.name.clone(),
                    labels: o.labels.clone(),
                    data: object_data(o)?,
                })
            })
            .collect()
    };
    let secrets = desired(&planned.secrets)?;
    let configs = desired(&planned.configs)?;

    let cluster = cluster(socket).await?;
    let plan = stack::plan_deploy(
        &args.stack,
        &networks,
        &secrets,
        &configs,
        &services,
        &cluster,
        DeployOptions {
            prune: args.prune,
            resolve_image: args.resolve_image.into(),
        },
    )?;
    for step in &plan.steps {
        run_step(socket, step, args.with_registry_auth).await?;
        if let Step::CreateService { spec } | Step::UpdateService { spec, .. } = step {
            for warning in spec_warnings.get(&spec.name).into_iter().flatten() {
                eprintln!("{warning}");
            }
        }
    }
    Ok(())
}

/// Prints the step's line and sends its request; Docker's words when it
/// fails.
async fn run_step(socket: &Path, step: &Step, with_registry_auth: bool) -> anyhow::Result<()> {
    if let Some(message) = step.message() {
        println!("{message}");
    }
    let Some(mut request) = step.request() else {
        return Ok(());
    };
    if with_registry_auth {
        if let ApiRequest::ServiceCreate { spec } | ApiRequest::ServiceUpdate { spec, .. } =
            &mut request
        {
            super::image::attach_registry_auth(spec)?;
        }
    }
    let failed = match step {
        Step::CreateNetwork { name, .. } => format!("failed to create network {name}"),
        Step::CreatePayload { class, name, .. } => {
            format!("failed to create {} {name}", word(*class))
        }
        Step::UpdatePayload { class, name, .. } => {
            format!("failed to update {} {name}", word(*class))
        }
        Step::CreateService { spec } => format!("failed to create service {}", spec.name),
        Step::UpdateService { spec, .. } => format!("failed to update service {}", spec.name),
        Step::RemoveService { name, .. } => format!("failed to remove service {name}"),
        Step::RemoveNetwork { name, .. } => format!("failed to remove network {name}"),
        Step::RemovePayload { class, name, .. } => {
            format!("failed to remove {} {name}", word(*class))
        }
        Step::KeepService { .. } => String::new(),
    };
    let request = shoal_control::api::LocalRequest::Api(request);
    let answer = async { anyhow::Ok(client::call(socket, &request).await?.into_cluster()?) };
    answer.await.context(failed)?;
    Ok(())
}

fn word(class: shoal_control::api::PayloadClass) -> &'static str {
    match class {
        shoal_control::api::PayloadClass::Secret => "secret",
        shoal_control::api::PayloadClass::Config => "config",
    }
}

/// `stack rm STACK`: services, secrets and configs, then (once the tasks
/// have stopped) networks; goes on after a failure and says so at the end.
async fn remove(socket: &Path, stack: &str) -> anyhow::Result<()> {
    let plan = stack::plan_remove(stack, &cluster(socket).await?);
    if plan.is_empty() {
        eprintln!("Nothing found in stack: {stack}");
        return Ok(());
    }
    let mut failed = false;
    for step in &plan.steps {
        if let Err(e) = run_step(socket, step, false).await {
            eprintln!("{e:#}");
            failed = true;
        }
    }
    if !plan.networks.is_empty() {
        wait_for_tasks(socket, &plan).await?;
    }
    for step in &plan.networks {
        if let Err(e) = run_step(socket, step, false).await {
            eprintln!("{e:#}");
            failed = true;
        }
    }
    if failed {
        bail!("failed to remove some resources from stack: {stack}");
    }
    Ok(())
}

/// Waits (at most [`DRAIN_LIMIT`]) until no task of the removed services
/// holds an address on a network.
async fn wait_for_tasks(socket: &Path, plan: &stack::RemovePlan) -> anyhow::Result<()> {
    let start = Instant::now();
    loop {
        let nodes: Vec<NodeView> = client::api(socket, ApiRequest::NodeList).await?;
        let tasks = service::tasks_on(socket, nodes.into_iter().map(|n| n.id)).await?;
        let draining = plan.draining(&tasks);
        if draining == 0 || start.elapsed() > DRAIN_LIMIT {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}
