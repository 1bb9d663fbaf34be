//! Images for the e2e scenarios: a plain-HTTP `docker-registry` on a test
//! host's underlay address, busybox images built with umoci and pushed with
//! skopeo (the agent's test support, shared), the digest the registry holds,
//! and agents started to pull from it with `--insecure-registry`.

#[path = "../../agent/tests/support/registry.rs"]
mod support;

pub use support::{busybox_image, ImageSpec, OciImage, Registry};

use std::path::Path;

use crate::swarm::{form, start_agent_with, text};
use crate::Host;

/// The port the test registry serves on, on its host's underlay address.
pub const REGISTRY_PORT: u16 = 5000;

/// A registry serving on `host`'s underlay address at [`REGISTRY_PORT`],
/// behind basic auth when `credentials` (`user`, `password`) are given.
/// Its `addr` is what agents name with `--insecure-registry`.
pub fn serve_on(host: &Host, credentials: Option<(&str, &str)>) -> Registry {
    Registry::serve(
        format!("{}:{REGISTRY_PORT}", host.addr()),
        Some(host.netns_path()),
        credentials.map(|(user, password)| (user.to_string(), password.to_string())),
    )
}

/// An image spec whose entrypoint is `sh -c script`.
pub fn shell_spec(script: &str) -> ImageSpec {
    ImageSpec {
        entrypoint: vec!["sh".into(), "-c".into(), script.into()],
        ..ImageSpec::default()
    }
}

/// A busybox image in `dir` whose entrypoint is `sh -c script`.
pub fn shell_image(dir: &Path, name: &str, script: &str) -> OciImage {
    busybox_image(dir, name, &shell_spec(script))
}

/// A busybox image whose index page says `body`: its entrypoint prints
/// `serving <hostname>` and the page (to the task's log), then serves
/// `/www` over HTTP with the image's Cmd as httpd's arguments (`-p 80`),
/// as Docker composes them.
pub fn web_image(dir: &Path, name: &str, body: &str) -> OciImage {
    busybox_image(
        dir,
        name,
        &ImageSpec {
            entrypoint: vec![
                "sh".into(),
                "-c".into(),
                "echo serving $(hostname); cat /www/index.html; exec httpd -f -h /www \"$@\""
                    .into(),
                "sh".into(),
            ],
            cmd: vec!["-p".into(), "80".into()],
            files: vec![("www/index.html".into(), format!("{body}\n"))],
            ..ImageSpec::default()
        },
    )
}

/// Starts an agent on each of `nodes` that may pull from the plain-HTTP
/// registry at `registry` (`host:port`).
pub fn start_agents_pulling_from(nodes: &[&Host], registry: &str) {
    for node in nodes {
        start_agent_with(node, &["--insecure-registry", registry]).expect("agent");
    }
}

/// A one-node swarm on `node`, its agent pulling from `registry`.
pub fn single_node_swarm_pulling_from(node: &Host, registry: &Registry) {
    start_agents_pulling_from(&[node], &registry.addr);
    form(node, &[], &[]);
}

/// The manifest digest the registry holds for `image`, asked with skopeo
/// from `host`.
pub fn registry_digest(host: &Host, image: &str) -> String {
    let out = host
        .exec(
            "skopeo",
            &[
                "inspect",
                "--tls-verify=false",
                "--format",
                "{{.Digest}}",
                &format!("docker://{image}"),
            ],
        )
        .expect("skopeo runs");
    assert!(out.status.success(), "{}", text(&out));
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}
