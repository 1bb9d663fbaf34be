//! Image references read as Docker reads them: `nginx` is
//! `docker.io/library/nginx:latest`, a first component with a `.` or a `:`
//! (or `localhost`) names a registry, a digest pins the bytes. The grammar
//! is the distribution project's: lowercase path components joined by
//! `.`, `_`, `__` or dashes, a tag of at most 128 word characters.

use std::fmt;
use std::str::FromStr;

use super::digest::Digest;
use super::error::ImageError;

/// Docker Hub's canonical name.
pub const DOCKER_HUB: &str = "docker.io";
/// What `docker.io` means on the wire.
const DOCKER_HUB_ENDPOINT: &str = "registry-1.docker.io";
const DEFAULT_TAG: &str = "latest";
/// The whole name (registry and path) may not be longer.
const MAX_NAME: usize = 255;
const MAX_TAG: usize = 128;

/// A normalized image reference: always a registry and a repository, and a
/// tag, a digest, or both.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Reference {
    registry: String,
    repository: String,
    tag: Option<String>,
    digest: Option<Digest>,
}

impl Reference {
    /// Parses and normalizes as `docker pull` does; a reference with
    /// neither tag nor digest gets `latest`.
    pub fn parse(text: &str) -> Result<Reference, ImageError> {
        let invalid = |reason: &str| ImageError::InvalidReference {
            reference: text.to_string(),
            reason: reason.to_string(),
        };
        if text.is_empty() {
            return Err(invalid("it is empty"));
        }
        let (rest, digest) = match text.split_once('@') {
            Some((rest, digest)) => (rest, Some(Digest::parse(digest)?)),
            None => (text, None),
        };
        // A tag follows the last `:` that comes after the last `/` (a `:`
        // before it is a registry's port).
        let last_slash = rest.rfind('/').map_or(0, |i| i + 1);
        let (name, tag) = match rest[last_slash..].rfind(':') {
            Some(i) => {
                let at = last_slash + i;
                (&rest[..at], Some(&rest[at + 1..]))
            }
            None => (rest, None),
        };
        if let Some(tag) = tag {
            check_tag(tag).map_err(|r| invalid(&r))?;
        }
        let (registry, path) = split_registry(name);
        if registry.is_empty() && path.is_empty() {
            return Err(invalid("it has no repository name"));
        }
        let registry = match registry {
            "" | "index.docker.io" => DOCKER_HUB.to_string(),
            other => {
                check_registry(other).map_err(|r| invalid(&r))?;
                other.to_string()
            }
        };
        if path.chars().any(|c| c.is_ascii_uppercase()) {
            return Err(invalid("repository name must be lowercase"));
        }
        for component in path.split('/') {
            check_component(component).map_err(|r| invalid(&r))?;
        }
        let repository = if registry == DOCKER_HUB && !path.contains('/') {
            format!("library/{path}")
        } else {
            path.to_string()
        };
        if registry.len() + 1 + repository.len() > MAX_NAME {
            return Err(invalid(
                "repository name must not be more than 255 characters",
            ));
        }
        let tag = match (tag, &digest) {
            (Some(tag), _) => Some(tag.to_string()),
            (None, Some(_)) => None,
            (None, None) => Some(DEFAULT_TAG.to_string()),
        };
        Ok(Reference {
            registry,
            repository,
            tag,
            digest,
        })
    }

    /// `docker.io`, `registry.example.com:5000`...
    pub fn registry(&self) -> &str {
        &self.registry
    }

    /// The host (and port) actually dialled: Docker Hub's API lives on
    /// `registry-1.docker.io`.
    pub fn endpoint(&self) -> &str {
        if self.registry == DOCKER_HUB {
            DOCKER_HUB_ENDPOINT
        } else {
            &self.registry
        }
    }

    /// `library/nginx`, `team/app`...
    pub fn repository(&self) -> &str {
        &self.repository
    }

    pub fn tag(&self) -> Option<&str> {
        self.tag.as_deref()
    }

    pub fn digest(&self) -> Option<&Digest> {
        self.digest.as_ref()
    }

    /// `docker.io/library/nginx`.
    pub fn name(&self) -> String {
        format!("{}/{}", self.registry, self.repository)
    }

    /// The same repository pinned to `digest` (the tag dropped), as a
    /// manager resolves a tag before scheduling.
    pub fn with_digest(&self, digest: Digest) -> Reference {
        Reference {
            tag: None,
            digest: Some(digest),
            ..self.clone()
        }
    }

    /// `name:tag` when the reference has a tag.
    pub fn tagged_name(&self) -> Option<String> {
        self.tag.as_ref().map(|t| format!("{}:{t}", self.name()))
    }

    /// Docker's short form: `nginx:latest` for
    /// `docker.io/library/nginx:latest`, `team/app:1` on Docker Hub, the
    /// full name elsewhere.
    pub fn familiar(&self) -> String {
        let mut name = if self.registry == DOCKER_HUB {
            self.repository
                .strip_prefix("library/")
                .filter(|rest| !rest.contains('/'))
                .unwrap_or(&self.repository)
                .to_string()
        } else {
            self.name()
        };
        if let Some(tag) = &self.tag {
            name.push(':');
            name.push_str(tag);
        }
        if let Some(digest) = &self.digest {
            name.push('@');
            name.push_str(digest.as_str());
        }
        name
    }

    /// The reference as the registry client wants it.
    pub(crate) fn to_oci(&self) -> oci_client::Reference {
        let registry = self.endpoint().to_string();
        let repository = self.repository.clone();
        match (&self.tag, &self.digest) {
            (_, Some(digest)) => {
                oci_client::Reference::with_digest(registry, repository, digest.to_string())
            }
            (Some(tag), None) => oci_client::Reference::with_tag(registry, repository, tag.clone()),
            (None, None) => {
                oci_client::Reference::with_tag(registry, repository, DEFAULT_TAG.into())
            }
        }
    }
}

impl fmt::Display for Reference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.name())?;
        if let Some(tag) = &self.tag {
            write!(f, ":{tag}")?;
        }
        if let Some(digest) = &self.digest {
            write!(f, "@{digest}")?;
        }
        Ok(())
    }
}

impl FromStr for Reference {
    type Err = ImageError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Reference::parse(s)
    }
}

/// Splits `name` into a registry (empty for Docker Hub's implied one) and
/// a path, by Docker's rule: the first component names a registry when it
/// holds a `.` or a `:`, or is `localhost`, or has an uppercase letter.
fn split_registry(name: &str) -> (&str, &str) {
    match name.split_once('/') {
        Some((first, rest))
            if first.contains(['.', ':'])
                || first == "localhost"
                || first.chars().any(|c| c.is_ascii_uppercase()) =>
        {
            (first, rest)
        }
        _ => ("", name),
    }
}

/// `[a-z0-9]+` runs joined by one separator: `.`, `_`, `__` or dashes.
fn check_component(component: &str) -> Result<(), String> {
    let bad = || format!("`{component}` is not a valid repository path component");
    let bytes = component.as_bytes();
    if bytes.is_empty() {
        return Err("a repository path component is empty".into());
    }
    let alnum = |b: u8| b.is_ascii_lowercase() || b.is_ascii_digit();
    if !alnum(bytes[0]) || !alnum(bytes[bytes.len() - 1]) {
        return Err(bad());
    }
    let mut i = 0;
    while i < bytes.len() {
        if alnum(bytes[i]) {
            i += 1;
            continue;
        }
        let start = i;
        while i < bytes.len() && !alnum(bytes[i]) {
            i += 1;
        }
        let sep = &component[start..i];
        let dashes = sep.bytes().all(|b| b == b'-');
        if !(sep == "." || sep == "_" || sep == "__" || dashes) {
            return Err(bad());
        }
    }
    Ok(())
}

/// A host name or IP (IPv6 in brackets) and an optional port.
fn check_registry(registry: &str) -> Result<(), String> {
    let bad = || format!("`{registry}` is not a valid registry host[:port]");
    let (host, port) = if let Some(rest) = registry.strip_prefix('[') {
        let (host, after) = rest.split_once(']').ok_or_else(bad)?;
        if host.parse::<std::net::Ipv6Addr>().is_err() {
            return Err(bad());
        }
        (None, after.strip_prefix(':').map(Some).unwrap_or(None))
    } else {
        match registry.split_once(':') {
            Some((host, port)) => (Some(host), Some(port)),
            None => (Some(registry), None),
        }
    };
    if let Some(port) = port {
        if port.is_empty() || port.len() > 5 || !port.bytes().all(|b| b.is_ascii_digit()) {
            return Err(bad());
        }
    }
    if let Some(host) = host {
        let label_ok = |l: &str| {
            !l.is_empty()
                && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
                && !l.starts_with('-')
                && !l.ends_with('-')
        };
        if host.is_empty() || !host.split('.').all(label_ok) {
            return Err(bad());
        }
    }
    Ok(())
}

/// `[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}`.
fn check_tag(tag: &str) -> Result<(), String> {
    let word = |b: u8| b.is_ascii_alphanumeric() || b == b'_';
    let ok = !tag.is_empty()
        && tag.len() <= MAX_TAG
        && word(tag.as_bytes()[0])
        && tag.bytes().all(|b| word(b) || b == b'.' || b == b'-');
    if ok {
        Ok(())
    } else {
        Err(format!(
            "`{tag}` is not a valid tag (1-128 letters, digits, `_`, `.` and `-`, not starting with `.` or `-`)"
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const HEX: &str = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

    fn full(text: &str) -> String {
        Reference::parse(text).expect(text).to_string()
    }

    #[test]
    fn docker_hub_names_are_normalized() {
        assert_eq!(full("nginx"), "docker.io/library/nginx:latest");
        assert_eq!(full("nginx:1.25"), "docker.io/library/nginx:1.25");
        assert_eq!(full("team/app:v1"), "docker.io/team/app:v1");
        assert_eq!(full("docker.io/nginx"), "docker.io/library/nginx:latest");
        assert_eq!(
            full("index.docker.io/library/nginx"),
            "docker.io/library/nginx:latest"
        );
        assert_eq!(full("a/b/c"), "docker.io/a/b/c:latest");
    }

    #[test]
    fn registries_are_recognized_by_dot_colon_or_localhost() {
        let r = Reference::parse("127.0.0.1:5000/bb:1").unwrap();
        assert_eq!(r.registry(), "127.0.0.1:5000");
        assert_eq!(r.repository(), "bb");
        assert_eq!(r.tag(), Some("1"));
        assert_eq!(r.endpoint(), "127.0.0.1:5000");
        assert_eq!(full("localhost/app"), "localhost/app:latest");
        assert_eq!(full("localhost:5000/app"), "localhost:5000/app:latest");
        assert_eq!(
            full("registry.example.com/team/app"),
            "registry.example.com/team/app:latest"
        );
        assert_eq!(full("[::1]:5000/app:2"), "[::1]:5000/app:2");
        // Without a dot, colon or localhost, the first part is a path.
        assert_eq!(full("myhost/app"), "docker.io/myhost/app:latest");
        assert_eq!(
            Reference::parse("nginx").unwrap().endpoint(),
            "registry-1.docker.io"
        );
    }

    #[test]
    fn digests_pin_and_keep_no_default_tag() {
        let r = Reference::parse(&format!("nginx@sha256:{HEX}")).unwrap();
        assert_eq!(r.tag(), None);
        assert_eq!(r.digest().unwrap().hex(), HEX);
        assert_eq!(
            r.to_string(),
            format!("docker.io/library/nginx@sha256:{HEX}")
        );
        let both = Reference::parse(&format!("host:5000/app:1.0@sha256:{HEX}")).unwrap();
        assert_eq!(both.tag(), Some("1.0"));
        assert_eq!(both.registry(), "host:5000");
        assert_eq!(both.familiar(), format!("host:5000/app:1.0@sha256:{HEX}"));
    }

    #[test]
    fn familiar_names_drop_docker_hub_and_library() {
        assert_eq!(
            Reference::parse("nginx").unwrap().familiar(),
            "nginx:latest"
        );
        assert_eq!(
            Reference::parse("team/app:2").unwrap().familiar(),
            "team/app:2"
        );
        assert_eq!(
            Reference::parse("localhost:5000/x").unwrap().familiar(),
            "localhost:5000/x:latest"
        );
        let pinned = Reference::parse("nginx:1")
            .unwrap()
            .with_digest(Digest::parse(&format!("sha256:{HEX}")).unwrap());
        assert_eq!(pinned.familiar(), format!("nginx@sha256:{HEX}"));
    }

    #[test]
    fn invalid_references_are_refused_with_a_reason() {
        for bad in [
            "",
            "Nginx",
            "nginx:",
            "nginx:-x",
            ":tag",
            "a//b",
            "-a",
            "a-",
            "a..b",
            "a___b",
            "nginx@sha256:abc",
            "nginx@md5:0123",
            "host:port/app",
            "host:5000000/app",
            "bad_host.com/app",
            "/abs",
            "trailing/",
        ] {
            assert!(Reference::parse(bad).is_err(), "{bad:?} should be refused");
        }
        let long = format!("a/{}", "b".repeat(260));
        assert!(Reference::parse(&long).is_err());
        assert!(Reference::parse(&format!("a:{}", "t".repeat(129))).is_err());
        let err = Reference::parse("Nginx").unwrap_err().to_string();
        assert!(err.contains("must be lowercase"), "{err}");
    }

    #[test]
    fn separators_follow_the_grammar() {
        for good in ["a.b", "a_b", "a__b", "a-b", "a---b", "a0", "0a"] {
            assert!(check_component(good).is_ok(), "{good}");
        }
        for bad in ["a._b", "a.-b", "_a", "a.", "A"] {
            assert!(check_component(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn the_registry_client_dials_docker_hubs_endpoint() {
        let r = Reference::parse("nginx:1").unwrap().to_oci();
        assert_eq!(r.registry(), "registry-1.docker.io");
        assert_eq!(r.repository(), "library/nginx");
        assert_eq!(r.tag(), Some("1"));
    }
}
