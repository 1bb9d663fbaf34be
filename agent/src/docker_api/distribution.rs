//! `GET /distribution/{name}/json` (what the registry holds for an image,
//! which the CLI pins its tag to) and the `X-Registry-Auth` header the CLI
//! sends with it and with `service create|update --with-registry-auth`.
//! The header's content is never put in a message or a log.

use axum::extract::{Path, State};
use axum::http::HeaderMap;
use shoal_control::engine::{DistributionInspect, OciDescriptor, OciPlatform};
use shoal_control::objects::RegistryAuth;

use super::http::{ok, Answer, Refusal, RefusalKind};
use super::Api;
use crate::image::{Credentials, ImageError, Reference, RemoteImage};

/// The header Docker's CLI carries registry credentials in.
pub const REGISTRY_AUTH_HEADER: &str = "x-registry-auth";
/// The longest `X-Registry-Auth` read: an AuthConfig with a long token is
/// a few KiB.
const MAX_REGISTRY_AUTH: usize = 16 << 10;
/// The longest the registry is waited for.
const REGISTRY_LIMIT: std::time::Duration = std::time::Duration::from_secs(20);

/// `X-Registry-Auth`, checked: `None` when absent or anonymous (`e30=`,
/// `{}`), else the value as shoal carries it to the nodes.
pub fn registry_auth(headers: &HeaderMap) -> Result<Option<RegistryAuth>, Refusal> {
    let Some(value) = headers.get(REGISTRY_AUTH_HEADER) else {
        return Ok(None);
    };
    let bad = |why: &str| Refusal::invalid(format!("invalid X-Registry-Auth header: {why}"));
    if value.len() > MAX_REGISTRY_AUTH {
        return Err(bad(&format!("longer than {MAX_REGISTRY_AUTH} bytes")));
    }
    let text = value.to_str().map_err(|_| bad("not ASCII"))?.trim();
    match Credentials::from_registry_auth_header(text) {
        Ok(Credentials::Anonymous) => Ok(None),
        Ok(_) => Ok(Some(RegistryAuth(text.to_string()))),
        // The reason names the field, never its value.
        Err(_) => Err(bad(
            "use base64url of a JSON AuthConfig {\"username\", \"password\", \"serveraddress\"}",
        )),
    }
}

/// Docker's status for an image error: 404 not found, 401 refused
/// credentials, 400 a bad reference, 500 the rest (as dockerd).
pub fn image_refusal(e: &ImageError) -> Refusal {
    let kind = match e {
        ImageError::NotFound { .. } | ImageError::NoSuchImage(_) => RefusalKind::NotFound,
        ImageError::Unauthorized { .. } => RefusalKind::Unauthorized,
        ImageError::InvalidReference { .. } | ImageError::InvalidDigest(_) => RefusalKind::Invalid,
        _ => RefusalKind::Internal,
    };
    Refusal::new(kind, e.to_string())
}

/// Docker's JSON for what the registry holds.
pub fn inspect_json(remote: &RemoteImage) -> DistributionInspect {
    DistributionInspect {
        descriptor: OciDescriptor {
            media_type: remote.descriptor.media_type.clone(),
            digest: remote.descriptor.digest.to_string(),
            size: remote.descriptor.size,
        },
        platforms: remote
            .platforms
            .iter()
            .map(|p| OciPlatform {
                architecture: p.architecture.clone(),
                os: p.os.clone(),
                variant: p.variant.clone().unwrap_or_default(),
            })
            .collect(),
    }
}

/// `GET /distribution/{name}/json`: asked of the registry by this node's
/// image store, with the caller's `X-Registry-Auth` if any.
pub async fn distribution(
    State(api): State<Api>,
    Path(name): Path<String>,
    headers: HeaderMap,
) -> Answer {
    let Some(image) = name.strip_suffix("/json") else {
        return Err(Refusal::not_found("page not found"));
    };
    let reference = Reference::parse(image).map_err(|e| image_refusal(&e))?;
    let credentials = match registry_auth(&headers)? {
        Some(auth) => {
            Credentials::from_registry_auth_header(&auth.0).map_err(|e| image_refusal(&e))?
        }
        None => Credentials::Anonymous,
    };
    let store = api.images()?;
    let remote = tokio::time::timeout(
        REGISTRY_LIMIT,
        store.inspect_remote(&reference, &credentials),
    )
    .await
    .map_err(|_| {
        Refusal::new(
            RefusalKind::Internal,
            format!(
                "{}: the registry did not answer within {REGISTRY_LIMIT:?}",
                reference.familiar()
            ),
        )
    })?
    .map_err(|e| image_refusal(&e))?;
    ok(&inspect_json(&remote))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::image::{Descriptor, Digest, Platform};
    use axum::http::HeaderValue;
    use base64::Engine;

    fn header(value: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(REGISTRY_AUTH_HEADER, HeaderValue::from_str(value).unwrap());
        h
    }

    #[test]
    fn registry_auth_is_read_checked_and_never_echoed() {
        assert_eq!(registry_auth(&HeaderMap::new()).unwrap(), None);
        assert_eq!(registry_auth(&header("e30=")).unwrap(), None, "{{}}");
        let value = base64::engine::general_purpose::URL_SAFE
            .encode(r#"{"username":"u","password":"s3cret-pw","serveraddress":"r:5000"}"#);
        assert_eq!(
            registry_auth(&header(&value)).unwrap(),
            Some(RegistryAuth(value.clone()))
        );
        let garbage = base64::engine::general_purpose::URL_SAFE.encode(r#"{"password":7}"#);
        let err = registry_auth(&header(&garbage)).unwrap_err();
        assert_eq!(err.status().as_u16(), 400);
        assert!(!err.message.contains('7'), "{}", err.message);
        let huge = "A".repeat(MAX_REGISTRY_AUTH + 1);
        assert_eq!(
            registry_auth(&header(&huge)).unwrap_err().status().as_u16(),
            400
        );
    }

    #[test]
    fn image_errors_get_dockers_status_codes() {
        let reference = |message: &str| (String::from("r/web:1"), message.to_string());
        let (r, m) = reference("manifest unknown");
        assert_eq!(
            image_refusal(&ImageError::NotFound {
                reference: r,
                message: m
            })
            .status()
            .as_u16(),
            404
        );
        let (r, m) = reference("unauthorized");
        assert_eq!(
            image_refusal(&ImageError::Unauthorized {
                reference: r,
                message: m
            })
            .status()
            .as_u16(),
            401
        );
        let (r, m) = reference("connection refused");
        assert_eq!(
            image_refusal(&ImageError::Unreachable {
                reference: r,
                message: m
            })
            .status()
            .as_u16(),
            500
        );
        assert_eq!(
            image_refusal(&Reference::parse("UPPER:x").unwrap_err())
                .status()
                .as_u16(),
            400
        );
    }

    #[test]
    fn remote_images_become_dockers_json() {
        let digest = Digest::parse(
            "sha256:0d17b565c37bcbd895e9d92315a05c1c3c9a29f762b011a10c54a66cd53c9b31",
        )
        .unwrap();
        let remote = RemoteImage {
            descriptor: Descriptor {
                media_type: "application/vnd.oci.image.manifest.v1+json".into(),
                digest: digest.clone(),
                size: 480,
            },
            platforms: vec![Platform {
                os: "linux".into(),
                architecture: "amd64".into(),
                variant: None,
            }],
        };
        let json = serde_json::to_value(inspect_json(&remote)).unwrap();
        assert_eq!(
            json,
            serde_json::json!({"Descriptor": {"mediaType": "application/vnd.oci.image.manifest.v1+json",
                "digest": digest.to_string(), "size": 480},
                "Platforms": [{"architecture": "amd64", "os": "linux"}]})
        );
    }
}
