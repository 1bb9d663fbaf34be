//! `/volumes` (list, inspect, remove): this node's named local volumes, as
//! `docker volume ls|inspect|rm` reads them. Volumes are made by the tasks
//! that mount them (`--mount type=volume`), never by `POST
//! /volumes/create`.

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::IntoResponse;
use serde::Serialize;

use super::http::{self, flag, ok, Answer, Refusal, RefusalKind};
use super::Api;
use crate::executor::{VolumeError, VolumeUse};

/// Docker's `Volume`.
#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
struct Volume {
    name: String,
    driver: String,
    mountpoint: String,
    labels: std::collections::BTreeMap<String, String>,
    scope: &'static str,
    options: std::collections::BTreeMap<String, String>,
}

#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
struct VolumeList {
    volumes: Vec<Volume>,
    warnings: Vec<String>,
}

fn volume(v: &VolumeUse) -> Volume {
    Volume {
        name: v.name.clone(),
        driver: v.driver.clone(),
        mountpoint: v.mountpoint.display().to_string(),
        labels: Default::default(),
        scope: "local",
        options: Default::default(),
    }
}

/// `GET /volumes` (filters are not read: a node has few volumes).
pub async fn list(State(api): State<Api>, Query(query): Query<http::Query>) -> Answer {
    if query
        .get("filters")
        .is_some_and(|f| !f.is_empty() && f != "{}")
    {
        return Err(Refusal::invalid(
            "volume filters are not supported by shoal; list without --filter",
        ));
    }
    let containers = api.containers()?;
    ok(&VolumeList {
        volumes: containers.volume_list().iter().map(volume).collect(),
        warnings: Vec::new(),
    })
}

/// `GET /volumes/{name}`.
pub async fn inspect(State(api): State<Api>, Path(name): Path<String>) -> Answer {
    let containers = api.containers()?;
    match containers.volume_list().iter().find(|v| v.name == name) {
        Some(v) => ok(&volume(v)),
        None => Err(Refusal::not_found(format!("get {name}: no such volume"))),
    }
}

/// `DELETE /volumes/{name}[?force=1]`: 204; 409 while a container of this
/// node mounts it.
pub async fn remove(
    State(api): State<Api>,
    Path(name): Path<String>,
    Query(query): Query<http::Query>,
) -> Answer {
    let containers = api.containers()?;
    match containers.volume_remove(&name, flag(&query, "force")) {
        Ok(()) => Ok(StatusCode::NO_CONTENT.into_response()),
        Err(e @ VolumeError::NotFound(_)) => Err(Refusal::not_found(e.to_string())),
        Err(e @ VolumeError::InUse { .. }) => {
            Err(Refusal::new(RefusalKind::Conflict, e.to_string()))
        }
        Err(e @ VolumeError::Io { .. }) => {
            let cause = std::error::Error::source(&e).map_or_else(String::new, |s| s.to_string());
            Err(Refusal::new(RefusalKind::Internal, format!("{e}: {cause}")))
        }
    }
}
