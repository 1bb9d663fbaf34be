//! `/services` (create, ls, inspect, update with `version`, rollback, rm)
//! and `/tasks` (ls with Docker's filters, inspect).

use shoal_control::error_chain::ErrorChain;
use std::collections::BTreeMap;

use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::IntoResponse;
use serde::Serialize;
use shoal_control::api::{ApiRequest, Done, ServiceView, TaskView};
use shoal_control::engine::filter::{self, Filters, TaskContext};
use shoal_control::engine::{Converted, Service, ServiceSpec, Task};

use super::cluster::filters;
use super::distribution::registry_auth;
use super::http::{self, body, created, flag, ok, version, Answer, Refusal};
use super::Api;

#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
struct ServiceCreated {
    #[serde(rename = "ID")]
    id: String,
    warnings: Option<Vec<String>>,
}

#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
struct ServiceUpdated {
    warnings: Option<Vec<String>>,
}

fn warnings(list: Vec<String>) -> Option<Vec<String>> {
    (!list.is_empty()).then_some(list)
}

/// `GET /services?filters=...&status=true`.
pub async fn list(State(api): State<Api>, Query(query): Query<http::Query>) -> Answer {
    let filters = filters(&query)?;
    filter::check_services(&filters).map_err(|e| Refusal::invalid(e.chain().to_string()))?;
    let views: Vec<ServiceView> = api.ask(ApiRequest::ServiceList).await?;
    let status = flag(&query, "status");
    let services: Vec<Service> = views
        .iter()
        .map(|v| {
            let mut service = Service::from(v);
            if !status {
                service.service_status = None;
            }
            service
        })
        .filter(|s| filter::service_matches(&filters, s))
        .collect();
    ok(&services)
}

/// `GET /services/{id}`: by id, name or id prefix.
pub async fn inspect(State(api): State<Api>, Path(id): Path<String>) -> Answer {
    let view: ServiceView = api.ask(ApiRequest::ServiceInspect { service: id }).await?;
    ok(&Service::from(&view))
}

/// Docker's spec as shoal's, with the credentials of `X-Registry-Auth`
/// (`--with-registry-auth`) for the nodes that pull the image. Without
/// them an update keeps the ones the service has (`registryAuthFrom=spec`,
/// Docker's default).
fn converted(bytes: &[u8], headers: &HeaderMap) -> Result<Converted, Refusal> {
    let spec: ServiceSpec = body(bytes)?;
    let mut converted = spec
        .to_shoal()
        .map_err(|e| Refusal::invalid(e.chain().to_string()))?;
    if let Some(auth) = registry_auth(headers)? {
        if let Some(container) = converted.spec.task.container.as_mut() {
            container.registry_auth = auth;
        }
    }
    Ok(converted)
}

/// `POST /services/create`: 201 `{"ID", "Warnings"}`.
pub async fn create(State(api): State<Api>, headers: HeaderMap, bytes: Bytes) -> Answer {
    let converted = converted(&bytes, &headers)?;
    let view: ServiceView = api
        .ask(ApiRequest::ServiceCreate {
            spec: Box::new(converted.spec),
        })
        .await?;
    created(&ServiceCreated {
        id: view.id,
        warnings: warnings(converted.warnings),
    })
}

/// `POST /services/{id}/update?version=N[&rollback=previous]`: the whole
/// new spec, refused if the service changed since version N; with
/// `rollback=previous` the server puts the previous spec back.
pub async fn update(
    State(api): State<Api>,
    Path(id): Path<String>,
    Query(query): Query<http::Query>,
    headers: HeaderMap,
    bytes: Bytes,
) -> Answer {
    if query.get("rollback").map(String::as_str) == Some("previous") {
        api.ask::<ServiceView>(ApiRequest::ServiceRollback { service: id })
            .await?;
        return ok(&ServiceUpdated { warnings: None });
    }
    let converted = converted(&bytes, &headers)?;
    api.ask::<ServiceView>(ApiRequest::ServiceUpdate {
        service: id,
        spec: Box::new(converted.spec),
        version: version(&query)?,
        force: false,
    })
    .await?;
    ok(&ServiceUpdated {
        warnings: warnings(converted.warnings),
    })
}

/// `DELETE /services/{id}`.
pub async fn remove(State(api): State<Api>, Path(id): Path<String>) -> Answer {
    api.ask::<Done>(ApiRequest::ServiceRemove { service: id })
        .await?;
    Ok(StatusCode::OK.into_response())
}

/// What the task filters need of a task's service.
struct ServiceFacts {
    name: String,
    labels: BTreeMap<String, String>,
}

/// The tasks the filters may keep, and the facts of their services: one
/// `service ps` per service asked for (or per service), or `node ps`.
async fn tasks_for(
    api: &Api,
    filters: &Filters,
) -> Result<(Vec<TaskView>, BTreeMap<String, ServiceFacts>), Refusal> {
    let services: Vec<ServiceView> = api.ask(ApiRequest::ServiceList).await?;
    let facts: BTreeMap<String, ServiceFacts> = services
        .iter()
        .map(|s| {
            (
                s.id.clone(),
                ServiceFacts {
                    name: s.name.clone(),
                    labels: s.spec.labels.clone(),
                },
            )
        })
        .collect();
    let asked: Vec<&str> = filters.get("service").collect();
    let nodes: Vec<&str> = filters.get("node").collect();
    let mut tasks = Vec::new();
    if asked.is_empty() && nodes.len() == 1 {
        let node = nodes[0].to_string();
        tasks = api.ask(ApiRequest::NodePs { node }).await?;
    } else {
        for service in &services {
            let wanted =
                asked.is_empty() || asked.iter().any(|a| *a == service.id || *a == service.name);
            if wanted {
                let more: Vec<TaskView> = api
                    .ask(ApiRequest::ServicePs {
                        service: service.id.clone(),
                    })
                    .await?;
                tasks.extend(more);
            }
        }
    }
    Ok((tasks, facts))
}

/// Docker's task, if it passes `filters` (the `service` filter also takes
/// a service's name, as Docker's server does).
fn kept(
    view: &TaskView,
    filters: &Filters,
    facts: &BTreeMap<String, ServiceFacts>,
) -> Option<Task> {
    let task = Task::from(view);
    let fact = facts.get(&view.service_id);
    let service_name = fact.map_or("", |f| f.name.as_str());
    let mut by_id = filters.clone();
    let services: Vec<String> = filters
        .get("service")
        .map(|s| {
            facts
                .iter()
                .find(|(_, f)| f.name == s)
                .map_or_else(|| s.to_string(), |(id, _)| id.clone())
        })
        .collect();
    if !services.is_empty() {
        by_id.set("service", services);
    }
    let context = TaskContext {
        service_name,
        service_labels: fact.map(|f| &f.labels),
        up_to_date: view.up_to_date,
    };
    filter::task_matches(&by_id, &task, &context).then_some(task)
}

/// `GET /tasks?filters=...`.
pub async fn task_list(State(api): State<Api>, Query(query): Query<http::Query>) -> Answer {
    let filters = filters(&query)?;
    filter::check_tasks(&filters).map_err(|e| Refusal::invalid(e.chain().to_string()))?;
    let (views, facts) = tasks_for(&api, &filters).await?;
    let tasks: Vec<Task> = views
        .iter()
        .filter_map(|v| kept(v, &filters, &facts))
        .collect();
    ok(&tasks)
}

/// `GET /tasks/{id}`: by id or unique id prefix.
pub async fn task_inspect(State(api): State<Api>, Path(id): Path<String>) -> Answer {
    let (views, _) = tasks_for(&api, &Filters::default()).await?;
    let matching: Vec<&TaskView> = views.iter().filter(|t| t.id.starts_with(&id)).collect();
    match matching.as_slice() {
        [one] => ok(&Task::from(*one)),
        [] => Err(Refusal::not_found(format!("No such task: {id}"))),
        _ => match matching.iter().find(|t| t.id == id) {
            Some(exact) => ok(&Task::from(*exact)),
            None => Err(Refusal::invalid(format!(
                "task prefix {id} is ambiguous; give more of its id"
            ))),
        },
    }
}
