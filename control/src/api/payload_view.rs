//! Secrets and configs as `secret inspect` / `config inspect` (and the
//! Engine API) show them: Docker's `swarm.Secret` / `swarm.Config` shape.
//! A secret's view never carries its data; a config's carries it in base64,
//! as Docker does.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::view::rfc3339;
use crate::objects::{Payload, PayloadData, PayloadKind};

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct PayloadView {
    #[serde(rename = "ID")]
    pub id: String,
    pub version: ObjectVersion,
    /// RFC 3339, UTC.
    pub created_at: String,
    pub updated_at: String,
    pub spec: PayloadSpecView,
}

/// Docker's `swarm.Version`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct ObjectVersion {
    pub index: u64,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct PayloadSpecView {
    pub name: String,
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    /// Configs only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data: Option<PayloadData>,
}

impl PayloadView {
    /// The view of `object` at store version `version`.
    pub fn new<K: PayloadKind>(object: &Payload<K>, version: u64) -> PayloadView {
        PayloadView {
            id: object.id.clone(),
            version: ObjectVersion { index: version },
            created_at: rfc3339(object.created_at),
            updated_at: rfc3339(object.updated_at),
            spec: PayloadSpecView {
                name: object.name.clone(),
                labels: object.labels.clone(),
                data: K::SHOWS_DATA.then(|| object.data.clone()),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::objects::{Config, Secret};

    #[test]
    fn secrets_never_show_their_data_and_configs_do() {
        let data = PayloadData(b"hunter2".to_vec());
        let secret =
            Secret::new("s".into(), "pw".into(), BTreeMap::new(), data.clone(), 0).unwrap();
        let json = serde_json::to_string(&PayloadView::new(&secret, 7)).unwrap();
        assert_eq!(
            json,
            r#"{"ID":"s","Version":{"Index":7},"CreatedAt":"1970-01-01T00:00:00Z","UpdatedAt":"1970-01-01T00:00:00Z","Spec":{"Name":"pw","Labels":{}}}"#
        );
        let config = Config::new("c".into(), "app".into(), BTreeMap::new(), data, 0).unwrap();
        let json = serde_json::to_string(&PayloadView::new(&config, 7)).unwrap();
        assert!(json.ends_with(r#""Spec":{"Name":"app","Labels":{},"Data":"aHVudGVyMg=="}}"#));
    }
}
