//! A service's secrets and configs in Docker's spec
//! (`ContainerSpec.Secrets` / `.Configs`) and in shoal's, both ways. The
//! file's `Name` is the target: relative ones go under `/run/secrets`
//! (secrets) or `/` (configs), as in Docker. A config used by the runtime
//! (a Windows credential spec) is refused by name.

use super::container::{ConfigReference, SecretReference, SecretReferenceFileTarget};
use super::to_shoal::SpecError;
use crate::objects::PayloadReference;

/// Docker's secrets as shoal's references (ids and names as given; the
/// managers check them).
pub fn secrets_to_shoal(refs: &[SecretReference]) -> Result<Vec<PayloadReference>, SpecError> {
    refs.iter()
        .map(|r| {
            reference(
                &r.secret_id,
                &r.secret_name,
                r.file.as_ref(),
                "TaskTemplate.ContainerSpec.Secrets.File",
            )
        })
        .collect()
}

/// Docker's configs as shoal's references.
pub fn configs_to_shoal(refs: &[ConfigReference]) -> Result<Vec<PayloadReference>, SpecError> {
    refs.iter()
        .map(|r| {
            if r.runtime.is_some() {
                return Err(SpecError::Unsupported {
                    field: "TaskTemplate.ContainerSpec.Configs.Runtime",
                });
            }
            reference(
                &r.config_id,
                &r.config_name,
                r.file.as_ref(),
                "TaskTemplate.ContainerSpec.Configs.File",
            )
        })
        .collect()
}

fn reference(
    id: &str,
    name: &str,
    file: Option<&SecretReferenceFileTarget>,
    field: &'static str,
) -> Result<PayloadReference, SpecError> {
    let Some(file) = file else {
        return Err(SpecError::Invalid {
            field,
            reason: "a file target is required".into(),
        });
    };
    let number = |text: &str| -> Result<u32, SpecError> {
        if text.is_empty() {
            return Ok(0);
        }
        text.parse().map_err(|_| SpecError::Invalid {
            field,
            reason: format!("UID/GID `{text}` is not a number"),
        })
    };
    Ok(PayloadReference {
        id: id.to_string(),
        name: name.to_string(),
        target: file.name.clone(),
        uid: number(&file.uid)?,
        gid: number(&file.gid)?,
        mode: file.mode,
    })
}

fn file(r: &PayloadReference) -> SecretReferenceFileTarget {
    SecretReferenceFileTarget {
        name: if r.target.is_empty() {
            r.name.clone()
        } else {
            r.target.clone()
        },
        uid: r.uid.to_string(),
        gid: r.gid.to_string(),
        mode: r.mode,
    }
}

/// shoal's secret references in Docker's shape.
pub fn secrets_from_shoal(refs: &[PayloadReference]) -> Vec<SecretReference> {
    refs.iter()
        .map(|r| SecretReference {
            file: Some(file(r)),
            secret_id: r.id.clone(),
            secret_name: r.name.clone(),
        })
        .collect()
}

/// shoal's config references in Docker's shape.
pub fn configs_from_shoal(refs: &[PayloadReference]) -> Vec<ConfigReference> {
    refs.iter()
        .map(|r| ConfigReference {
            file: Some(file(r)),
            runtime: None,
            config_id: r.id.clone(),
            config_name: r.name.clone(),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn references_round_trip_through_dockers_shape() {
        let docker: Vec<SecretReference> = serde_json::from_str(
            r#"[{"File":{"Name":"db_password","UID":"0","GID":"0","Mode":292},"SecretID":"7x2qv4fyfmwhvwkeqoicfsgk0","SecretName":"db_password"}]"#,
        )
        .unwrap();
        let shoal = secrets_to_shoal(&docker).unwrap();
        assert_eq!(
            shoal[0].path_in_task(crate::objects::SECRETS_BASE),
            "/run/secrets/db_password"
        );
        assert_eq!(shoal[0].mode, 0o444);
        assert_eq!(secrets_from_shoal(&shoal), docker);

        let runtime: Vec<ConfigReference> =
            serde_json::from_str(r#"[{"Runtime":{},"ConfigID":"c","ConfigName":"cred"}]"#).unwrap();
        assert_eq!(
            configs_to_shoal(&runtime).unwrap_err().to_string(),
            "TaskTemplate.ContainerSpec.Configs.Runtime is not supported by shoal; leave it out of the service spec"
        );
        let no_file = vec![SecretReference {
            secret_name: "s".into(),
            ..SecretReference::default()
        }];
        assert!(secrets_to_shoal(&no_file).is_err());
    }
}
