//! Manifests as registries and archives send them: an image manifest (OCI
//! or Docker schema 2) naming a config and layers, or an index (OCI image
//! index or Docker manifest list) naming one manifest per platform, of
//! which this node's is picked. Bytes from the network: bounded, parsed
//! into owned types, every digest checked for form.

use serde::Deserialize;

use super::digest::Digest;
use super::error::ImageError;

/// The largest manifest or index accepted.
pub const MAX_MANIFEST: u64 = 4 << 20;

pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
pub const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
pub const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
pub const DOCKER_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";
const DOCKER_SCHEMA1: &str = "application/vnd.docker.distribution.manifest.v1+json";
const DOCKER_SCHEMA1_SIGNED: &str = "application/vnd.docker.distribution.manifest.v1+prettyjws";

/// Every manifest kind this store reads, for a registry's `Accept`.
pub const ACCEPTED: &[&str] = &[OCI_MANIFEST, OCI_INDEX, DOCKER_MANIFEST, DOCKER_LIST];

/// How a layer's bytes are compressed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Compression {
    None,
    Gzip,
    Zstd,
}

/// A blob a manifest points to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Descriptor {
    pub media_type: String,
    pub digest: Digest,
    pub size: u64,
}

/// One image's manifest.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ImageManifest {
    pub config: Descriptor,
    pub layers: Vec<Descriptor>,
}

/// A platform as an index names it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Platform {
    pub os: String,
    pub architecture: String,
    pub variant: Option<String>,
}

impl Platform {
    /// The platform of this node, in OCI's words (`linux/amd64`).
    pub fn current() -> Platform {
        let architecture = match std::env::consts::ARCH {
            "x86_64" => "amd64",
            "aarch64" => "arm64",
            "x86" => "386",
            "arm" => "arm",
            "powerpc64" => "ppc64le",
            "s390x" => "s390x",
            "riscv64" => "riscv64",
            other => other,
        };
        Platform {
            os: "linux".into(),
            architecture: architecture.into(),
            variant: (architecture == "arm64").then(|| "v8".to_string()),
        }
    }
}

impl std::fmt::Display for Platform {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.os, self.architecture)?;
        if let Some(v) = &self.variant {
            write!(f, "/{v}")?;
        }
        Ok(())
    }
}

/// One entry of an index.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IndexEntry {
    pub descriptor: Descriptor,
    pub platform: Option<Platform>,
    /// `org.opencontainers.image.ref.name`, in an OCI layout's index.
    pub ref_name: Option<String>,
}

/// What a manifest document turned out to be.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Manifest {
    Image(ImageManifest),
    Index(Vec<IndexEntry>),
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawDescriptor {
    #[serde(default)]
    media_type: String,
    digest: String,
    #[serde(default)]
    size: i64,
    #[serde(default)]
    platform: Option<RawPlatform>,
    #[serde(default)]
    annotations: Option<std::collections::BTreeMap<String, String>>,
}

#[derive(Deserialize)]
struct RawPlatform {
    #[serde(default)]
    os: String,
    #[serde(default)]
    architecture: String,
    #[serde(default)]
    variant: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawManifest {
    #[serde(default)]
    schema_version: Option<i64>,
    #[serde(default)]
    media_type: Option<String>,
    #[serde(default)]
    config: Option<RawDescriptor>,
    #[serde(default)]
    layers: Option<Vec<RawDescriptor>>,
    #[serde(default)]
    manifests: Option<Vec<RawDescriptor>>,
}

impl RawDescriptor {
    fn into_descriptor(self, what: &str) -> Result<Descriptor, ImageError> {
        let size = u64::try_from(self.size)
            .map_err(|_| ImageError::malformed(what, format!("negative size {}", self.size)))?;
        Ok(Descriptor {
            media_type: self.media_type,
            digest: Digest::parse(&self.digest)?,
            size,
        })
    }
}

/// Parses a manifest or index. `content_type` is the registry's header
/// when there is one; the document's own `mediaType` wins over it.
pub fn parse(bytes: &[u8], content_type: Option<&str>, what: &str) -> Result<Manifest, ImageError> {
    if bytes.len() as u64 > MAX_MANIFEST {
        return Err(ImageError::TooLarge {
            what: what.into(),
            limit: MAX_MANIFEST,
        });
    }
    let raw: RawManifest =
        serde_json::from_slice(bytes).map_err(|e| ImageError::malformed(what, e))?;
    let media_type = raw
        .media_type
        .clone()
        .or_else(|| content_type.map(|c| c.split(';').next().unwrap_or("").trim().to_string()))
        .unwrap_or_default();
    let unsupported = |reason: String| ImageError::UnsupportedManifest {
        reference: what.into(),
        reason,
    };
    if media_type == DOCKER_SCHEMA1
        || media_type == DOCKER_SCHEMA1_SIGNED
        || raw.schema_version == Some(1)
    {
        return Err(unsupported(
            "Docker schema 1 manifests are deprecated and not supported; push the image again with a current client".into(),
        ));
    }
    if raw.schema_version.is_some_and(|v| v != 2) {
        return Err(unsupported(format!(
            "schema version {:?}",
            raw.schema_version
        )));
    }
    let is_index = match media_type.as_str() {
        OCI_INDEX | DOCKER_LIST => true,
        OCI_MANIFEST | DOCKER_MANIFEST => false,
        // OCI allows leaving mediaType out: tell by the fields.
        "" | "application/json" => raw.manifests.is_some(),
        other => return Err(unsupported(format!("media type `{other}`"))),
    };
    if is_index {
        let entries = raw
            .manifests
            .ok_or_else(|| ImageError::malformed(what, "an index without `manifests`"))?;
        let entries = entries
            .into_iter()
            .map(|d| {
                let platform = d.platform.as_ref().map(|p| Platform {
                    os: p.os.clone(),
                    architecture: p.architecture.clone(),
                    variant: p.variant.clone(),
                });
                let ref_name = d
                    .annotations
                    .as_ref()
                    .and_then(|a| a.get("org.opencontainers.image.ref.name").cloned());
                Ok(IndexEntry {
                    descriptor: d.into_descriptor(what)?,
                    platform,
                    ref_name,
                })
            })
            .collect::<Result<Vec<_>, ImageError>>()?;
        return Ok(Manifest::Index(entries));
    }
    let config = raw
        .config
        .ok_or_else(|| ImageError::malformed(what, "an image manifest without `config`"))?
        .into_descriptor(what)?;
    let layers = raw
        .layers
        .unwrap_or_default()
        .into_iter()
        .map(|d| d.into_descriptor(what))
        .collect::<Result<Vec<_>, _>>()?;
    for layer in &layers {
        layer_compression(&layer.media_type).map_err(&unsupported)?;
    }
    Ok(Manifest::Image(ImageManifest { config, layers }))
}

/// The media type of a manifest `parse` read as `parsed`: its own
/// `mediaType`, else OCI's (which lets it be left out).
pub fn media_type(bytes: &[u8], parsed: &Manifest) -> String {
    #[derive(Deserialize)]
    #[serde(rename_all = "camelCase")]
    struct Typed {
        #[serde(default)]
        media_type: Option<String>,
    }
    serde_json::from_slice::<Typed>(bytes)
        .ok()
        .and_then(|t| t.media_type)
        .filter(|t| !t.is_empty())
        .unwrap_or_else(|| {
            match parsed {
                Manifest::Index(_) => OCI_INDEX,
                Manifest::Image(_) => OCI_MANIFEST,
            }
            .to_string()
        })
}

/// The compression a layer media type announces; an error for layers that
/// are no tar (foreign Windows layers, encrypted layers...).
pub fn layer_compression(media_type: &str) -> Result<Compression, String> {
    Ok(match media_type {
        "application/vnd.oci.image.layer.v1.tar"
        | "application/vnd.oci.image.layer.nondistributable.v1.tar" => Compression::None,
        "application/vnd.oci.image.layer.v1.tar+gzip"
        | "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip"
        | "application/vnd.docker.image.rootfs.diff.tar.gzip"
        | "application/vnd.docker.image.rootfs.diff.tar" => Compression::Gzip,
        "application/vnd.oci.image.layer.v1.tar+zstd"
        | "application/vnd.oci.image.layer.nondistributable.v1.tar+zstd" => Compression::Zstd,
        // Archives may not say; the bytes are sniffed when unpacking.
        "" => Compression::None,
        other => return Err(format!("layer media type `{other}` is not a tar layer")),
    })
}

/// The entry of `entries` for `platform`: the same OS and architecture,
/// the variant when the index gives one (an entry without a variant is
/// taken when none matches exactly). Attestation entries
/// (`unknown/unknown`) never match.
pub fn select_platform<'a>(
    entries: &'a [IndexEntry],
    platform: &Platform,
) -> Option<&'a IndexEntry> {
    let candidates = entries.iter().filter(|e| {
        e.platform
            .as_ref()
            .is_some_and(|p| p.os == platform.os && p.architecture == platform.architecture)
    });
    let mut fallback = None;
    for entry in candidates {
        let variant = entry.platform.as_ref().and_then(|p| p.variant.as_ref());
        match (variant, &platform.variant) {
            (Some(v), Some(want)) if v == want => return Some(entry),
            (None, _) => {
                fallback = fallback.or(Some(entry));
            }
            (Some(_), None) => {
                fallback = fallback.or(Some(entry));
            }
            _ => {}
        }
    }
    fallback
}

/// The platforms an index offers, for an error message.
pub fn offered(entries: &[IndexEntry]) -> String {
    let names: Vec<String> = entries
        .iter()
        .filter_map(|e| e.platform.as_ref())
        .filter(|p| p.os != "unknown")
        .map(|p| p.to_string())
        .collect();
    if names.is_empty() {
        "no platform".into()
    } else {
        names.join(", ")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(n: u8) -> String {
        format!("sha256:{}", format!("{n:02x}").repeat(32))
    }

    #[test]
    fn docker_v2s2_manifest_parses() {
        let doc = format!(
            r#"{{"schemaVersion":2,"mediaType":"{DOCKER_MANIFEST}",
            "config":{{"mediaType":"application/vnd.docker.container.image.v1+json","size":1469,"digest":"{}"}},
            "layers":[{{"mediaType":"application/vnd.docker.image.rootfs.diff.tar.gzip","size":3,"digest":"{}"}}]}}"#,
            d(1),
            d(2)
        );
        let Manifest::Image(m) = parse(doc.as_bytes(), None, "x").unwrap() else {
            panic!("not an image manifest")
        };
        assert_eq!(m.config.digest.as_str(), d(1));
        assert_eq!(m.layers.len(), 1);
        assert_eq!(m.layers[0].size, 3);
        assert_eq!(
            layer_compression(&m.layers[0].media_type),
            Ok(Compression::Gzip)
        );
    }

    #[test]
    fn oci_index_without_media_type_is_told_by_its_fields() {
        let doc = format!(
            r#"{{"schemaVersion":2,"manifests":[
              {{"mediaType":"{OCI_MANIFEST}","digest":"{}","size":10,"platform":{{"os":"linux","architecture":"arm64","variant":"v8"}}}},
              {{"mediaType":"{OCI_MANIFEST}","digest":"{}","size":10,"platform":{{"os":"linux","architecture":"amd64"}}}},
              {{"mediaType":"{OCI_MANIFEST}","digest":"{}","size":10,"platform":{{"os":"unknown","architecture":"unknown"}}}}]}}"#,
            d(1),
            d(2),
            d(3)
        );
        let Manifest::Index(entries) = parse(doc.as_bytes(), None, "x").unwrap() else {
            panic!("not an index")
        };
        let amd64 = Platform {
            os: "linux".into(),
            architecture: "amd64".into(),
            variant: None,
        };
        assert_eq!(
            select_platform(&entries, &amd64)
                .unwrap()
                .descriptor
                .digest
                .as_str(),
            d(2)
        );
        let arm = Platform {
            os: "linux".into(),
            architecture: "arm64".into(),
            variant: Some("v8".into()),
        };
        assert_eq!(
            select_platform(&entries, &arm)
                .unwrap()
                .descriptor
                .digest
                .as_str(),
            d(1)
        );
        let s390 = Platform {
            os: "linux".into(),
            architecture: "s390x".into(),
            variant: None,
        };
        assert!(select_platform(&entries, &s390).is_none());
        assert_eq!(offered(&entries), "linux/arm64/v8, linux/amd64");
    }

    #[test]
    fn content_type_header_decides_when_the_document_is_silent() {
        let doc = format!(
            r#"{{"schemaVersion":2,"config":{{"digest":"{}","size":1}},"layers":[]}}"#,
            d(1)
        );
        assert!(matches!(
            parse(
                doc.as_bytes(),
                Some("application/vnd.oci.image.manifest.v1+json; charset=utf-8"),
                "x"
            ),
            Ok(Manifest::Image(_))
        ));
    }

    #[test]
    fn schema1_bad_digests_and_huge_documents_are_refused() {
        let s1 = r#"{"schemaVersion":1,"name":"x","fsLayers":[]}"#;
        assert!(matches!(
            parse(s1.as_bytes(), None, "x"),
            Err(ImageError::UnsupportedManifest { .. })
        ));
        let bad =
            r#"{"schemaVersion":2,"config":{"digest":"sha256:../../etc","size":1},"layers":[]}"#;
        assert!(matches!(
            parse(bad.as_bytes(), None, "x"),
            Err(ImageError::InvalidDigest(_))
        ));
        let neg = format!(
            r#"{{"schemaVersion":2,"config":{{"digest":"{}","size":-1}},"layers":[]}}"#,
            d(1)
        );
        assert!(parse(neg.as_bytes(), None, "x").is_err());
        let huge = vec![b' '; (MAX_MANIFEST + 1) as usize];
        assert!(matches!(
            parse(&huge, None, "x"),
            Err(ImageError::TooLarge { .. })
        ));
        let foreign = format!(
            r#"{{"schemaVersion":2,"mediaType":"{DOCKER_MANIFEST}","config":{{"digest":"{}","size":1}},
            "layers":[{{"mediaType":"application/vnd.docker.image.rootfs.foreign.diff.tar.gzip","digest":"{}","size":1}}]}}"#,
            d(1),
            d(2)
        );
        assert!(matches!(
            parse(foreign.as_bytes(), None, "x"),
            Err(ImageError::UnsupportedManifest { .. })
        ));
    }

    #[test]
    fn layer_media_types_name_their_compression() {
        assert_eq!(
            layer_compression("application/vnd.oci.image.layer.v1.tar"),
            Ok(Compression::None)
        );
        assert_eq!(
            layer_compression("application/vnd.oci.image.layer.v1.tar+zstd"),
            Ok(Compression::Zstd)
        );
        assert!(layer_compression("application/vnd.oci.image.layer.v1.tar+encrypted").is_err());
    }
}
