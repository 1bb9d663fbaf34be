//! Docker's `DistributionInspect` (`GET /distribution/{name}/json`): what
//! a registry holds for an image reference, which the CLI uses to pin a tag
//! to its digest before `service create` and `update`. Its fields are OCI's
//! (lowercase), not Docker's PascalCase.

use serde::{Deserialize, Serialize};

/// The answer: the manifest's descriptor and the platforms it serves.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct DistributionInspect {
    pub descriptor: OciDescriptor,
    pub platforms: Vec<OciPlatform>,
}

/// An OCI descriptor of the manifest (or index) the tag names.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct OciDescriptor {
    pub media_type: String,
    pub digest: String,
    pub size: u64,
}

/// An OCI platform.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct OciPlatform {
    pub architecture: String,
    pub os: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub variant: String,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::samples::round_trip;

    #[test]
    fn distribution_answers_read_like_dockers() {
        let single: DistributionInspect = round_trip(
            r#"{"Descriptor":{"mediaType":"application/vnd.docker.distribution.manifest.v2+json","digest":"sha256:0d17b565c37bcbd895e9d92315a05c1c3c9a29f762b011a10c54a66cd53c9b31","size":1570},"Platforms":[{"architecture":"amd64","os":"linux"}]}"#,
        );
        assert_eq!(single.platforms[0].os, "linux");
        let index: DistributionInspect = round_trip(
            r#"{"Descriptor":{"mediaType":"application/vnd.oci.image.index.v1+json","digest":"sha256:0d17b565c37bcbd895e9d92315a05c1c3c9a29f762b011a10c54a66cd53c9b31","size":900},"Platforms":[{"architecture":"amd64","os":"linux"},{"architecture":"arm64","os":"linux","variant":"v8"}]}"#,
        );
        assert_eq!(index.platforms[1].variant, "v8");
    }
}
