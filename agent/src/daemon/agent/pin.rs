//! Managers pin a service's image tag to the digest the registry names
//! now, at `service create` and whenever an update brings a new image (as
//! Swarm does), so every node runs the same bytes: `web:1` is stored as
//! `web:1@sha256:...`. When the registry cannot be asked (no container
//! runtime here, unreachable, refused) the tag stays; the CLI warns.

use shoal_control::error_chain::ErrorChain;
use std::time::Duration;

use shoal_control::api::ApiRequest;

use crate::image::{Credentials, ImageStore, Reference};

/// The longest the registry is waited for.
const RESOLVE_LIMIT: Duration = Duration::from_secs(15);

/// Pins the image of a service create or update in `request` when it
/// names a tag; `images` asks the registry.
pub(super) async fn pin_image(images: Option<&ImageStore>, request: &mut ApiRequest) {
    let spec = match request {
        ApiRequest::ServiceCreate { spec } | ApiRequest::ServiceUpdate { spec, .. } => spec,
        _ => return,
    };
    let Some(container) = spec.task.container.as_mut() else {
        return;
    };
    let Ok(reference) = Reference::parse(&container.image) else {
        return; // the node says why when it pulls
    };
    if reference.digest().is_some() {
        return;
    }
    let Some(images) = images else {
        tracing::warn!(
            image = %container.image,
            "no container runtime on this manager: the image is not pinned to a digest"
        );
        return;
    };
    let resolved = tokio::time::timeout(
        RESOLVE_LIMIT,
        images.resolve_digest(
            &reference,
            // What `--with-registry-auth` carried, if anything.
            &Credentials::from_registry_auth_header(&container.registry_auth.0).unwrap_or_default(),
        ),
    )
    .await;
    match resolved {
        Ok(Ok(digest)) => {
            let tagged = if reference.tag().is_some() {
                container.image.clone()
            } else {
                format!("{}:latest", container.image)
            };
            container.image = format!("{tagged}@{digest}");
        }
        Ok(Err(e)) => {
            tracing::warn!(image = %container.image, "cannot pin the image: {}", e.chain())
        }
        Err(_) => tracing::warn!(
            image = %container.image,
            "cannot pin the image: the registry did not answer within {RESOLVE_LIMIT:?}"
        ),
    }
}
