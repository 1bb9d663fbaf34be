//! `/secrets` and `/configs`: create (201 `{"ID"}`), list with Docker's
//! filters, inspect (a secret never with its data), update of the labels
//! only (`stack deploy` re-sends the same data), and delete (204), as the
//! same typed requests as `shoal secret|config`.

use shoal_control::error_chain::ErrorChain;
use std::collections::BTreeMap;

use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use serde::{Deserialize, Serialize};
use shoal_control::api::{ApiRequest, Done, PayloadClass, PayloadView};
use shoal_control::engine::filter;
use shoal_control::objects::PayloadData;

use super::cluster::filters;
use super::http::{self, body, created, no_content, ok, version, Answer, Refusal};
use super::Api;

/// Docker's `SecretSpec` / `ConfigSpec` as a create or update sends it.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
struct PayloadSpec {
    name: String,
    labels: Option<BTreeMap<String, String>>,
    data: Option<String>,
    driver: Option<Driver>,
    templating: Option<Driver>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
struct Driver {
    name: String,
}

#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
struct Created {
    #[serde(rename = "ID")]
    id: String,
}

fn decode(spec: &PayloadSpec) -> Result<Option<PayloadData>, Refusal> {
    if spec.driver.as_ref().is_some_and(|d| !d.name.is_empty()) {
        return Err(Refusal::invalid(
            "Driver is not supported by shoal (secrets are kept in the managers' store); leave it out",
        ));
    }
    if spec.templating.as_ref().is_some_and(|d| !d.name.is_empty()) {
        return Err(Refusal::invalid(
            "Templating is not supported by shoal; leave it out",
        ));
    }
    spec.data
        .as_deref()
        .map(|d| {
            PayloadData::from_base64(d).map_err(|e| {
                Refusal::invalid(format!("invalid Data (base64 expected): {}", e.chain()))
            })
        })
        .transpose()
}

async fn create(api: Api, class: PayloadClass, bytes: Bytes) -> Answer {
    let spec: PayloadSpec = body(&bytes)?;
    let data = decode(&spec)?.unwrap_or_default();
    let labels = spec.labels.unwrap_or_default();
    let name = spec.name;
    let request = match class {
        PayloadClass::Secret => ApiRequest::SecretCreate { name, labels, data },
        PayloadClass::Config => ApiRequest::ConfigCreate { name, labels, data },
    };
    let made: PayloadView = api.ask(request).await?;
    created(&Created { id: made.id })
}

async fn list(api: Api, class: PayloadClass, query: http::Query) -> Answer {
    let filters = filters(&query)?;
    filter::check_payloads(&filters).map_err(|e| Refusal::invalid(e.chain().to_string()))?;
    let request = match class {
        PayloadClass::Secret => ApiRequest::SecretList,
        PayloadClass::Config => ApiRequest::ConfigList,
    };
    let mut items: Vec<PayloadView> = api.ask(request).await?;
    items.retain(|p| filter::payload_matches(&filters, p));
    ok(&items)
}

async fn inspect(api: Api, class: PayloadClass, id: String) -> Answer {
    let request = match class {
        PayloadClass::Secret => ApiRequest::SecretInspect { secret: id },
        PayloadClass::Config => ApiRequest::ConfigInspect { config: id },
    };
    let item: PayloadView = api.ask(request).await?;
    ok(&item)
}

async fn remove(api: Api, class: PayloadClass, id: String) -> Answer {
    let request = match class {
        PayloadClass::Secret => ApiRequest::SecretRemove { secret: id },
        PayloadClass::Config => ApiRequest::ConfigRemove { config: id },
    };
    api.ask::<Done>(request).await?;
    no_content()
}

async fn update(
    api: Api,
    class: PayloadClass,
    id: String,
    query: http::Query,
    bytes: Bytes,
) -> Answer {
    let spec: PayloadSpec = body(&bytes)?;
    let data = decode(&spec)?;
    let _: PayloadView = api
        .ask(ApiRequest::PayloadUpdate {
            class,
            name_or_id: id,
            version: version(&query)?,
            labels: spec.labels.unwrap_or_default(),
            data,
        })
        .await?;
    ok(&serde_json::Value::Null)
}

/// `POST /secrets/create`.
pub async fn secret_create(State(api): State<Api>, bytes: Bytes) -> Answer {
    create(api, PayloadClass::Secret, bytes).await
}

/// `GET /secrets?filters=`.
pub async fn secret_list(State(api): State<Api>, Query(q): Query<http::Query>) -> Answer {
    list(api, PayloadClass::Secret, q).await
}

/// `GET /secrets/{id}`.
pub async fn secret_inspect(State(api): State<Api>, Path(id): Path<String>) -> Answer {
    inspect(api, PayloadClass::Secret, id).await
}

/// `DELETE /secrets/{id}`.
pub async fn secret_remove(State(api): State<Api>, Path(id): Path<String>) -> Answer {
    remove(api, PayloadClass::Secret, id).await
}

/// `POST /secrets/{id}/update?version=N`.
pub async fn secret_update(
    State(api): State<Api>,
    Path(id): Path<String>,
    Query(q): Query<http::Query>,
    bytes: Bytes,
) -> Answer {
    update(api, PayloadClass::Secret, id, q, bytes).await
}

/// `POST /configs/create`.
pub async fn config_create(State(api): State<Api>, bytes: Bytes) -> Answer {
    create(api, PayloadClass::Config, bytes).await
}

/// `GET /configs?filters=`.
pub async fn config_list(State(api): State<Api>, Query(q): Query<http::Query>) -> Answer {
    list(api, PayloadClass::Config, q).await
}

/// `GET /configs/{id}`.
pub async fn config_inspect(State(api): State<Api>, Path(id): Path<String>) -> Answer {
    inspect(api, PayloadClass::Config, id).await
}

/// `DELETE /configs/{id}`.
pub async fn config_remove(State(api): State<Api>, Path(id): Path<String>) -> Answer {
    remove(api, PayloadClass::Config, id).await
}

/// `POST /configs/{id}/update?version=N`.
pub async fn config_update(
    State(api): State<Api>,
    Path(id): Path<String>,
    Query(q): Query<http::Query>,
    bytes: Bytes,
) -> Answer {
    update(api, PayloadClass::Config, id, q, bytes).await
}
