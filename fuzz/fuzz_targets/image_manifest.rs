//! Fuzzes what a registry or an archive hands the image store as JSON: a
//! manifest or index (any content type), the platform choice in an index,
//! an image config, and the `X-Registry-Auth` header. No panic; whatever
//! parses keeps its invariants (digests well formed, sizes not negative).

#![no_main]

use libfuzzer_sys::fuzz_target;
use shoal_agent::image::{parse_manifest, Credentials, Digest, ImageConfig, Manifest, Platform};

const CONTENT_TYPES: [Option<&str>; 4] = [
    None,
    Some("application/vnd.oci.image.index.v1+json"),
    Some("application/vnd.docker.distribution.manifest.v2+json"),
    Some("application/json; charset=utf-8"),
];

fuzz_target!(|data: &[u8]| {
    let content_type = CONTENT_TYPES[data.first().map_or(0, |b| *b as usize % 4)];
    match parse_manifest(data, content_type, "fuzz") {
        Ok(Manifest::Image(image)) => {
            for d in std::iter::once(&image.config).chain(&image.layers) {
                assert!(Digest::parse(d.digest.as_str()).is_ok());
            }
        }
        Ok(Manifest::Index(entries)) => {
            let _ = shoal_agent::image::select_platform(&entries, &Platform::current());
        }
        Err(_) => {}
    }
    if let Ok(config) = ImageConfig::parse(data, "fuzz") {
        assert!(config.diff_ids().is_ok());
        let _ = config.exposed_ports();
    }
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = Credentials::from_registry_auth_header(text);
        let _ = Credentials::from_docker_config(data, "docker.io");
    }
});
