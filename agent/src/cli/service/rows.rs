//! What `service ls` prints: Docker's service rows (`ID`, `Name`, `Mode`,
//! `Replicas`, `Image`, `Ports`, plus shoal's `Command`), Docker's
//! `service ls` filters, and Docker's PORTS column (consecutive ports
//! merged into ranges).

use serde_json::json;
use shoal_control::api::ServiceView;
use shoal_control::engine::{filter, PortConfig, Service};

use super::super::format::{self, natural_cmp, Listing, Row};
use super::SHORT_ID;

/// How much of the command `service ls` shows.
const COMMAND_WIDTH: usize = 30;

/// `service ls`. Docker's default table shows `IMAGE` where shoal, whose
/// tasks run commands, shows `COMMAND` (both fields exist).
pub const SERVICES: Listing = Listing {
    default_table: "table {{.ID}}\t{{.Name}}\t{{.Mode}}\t{{.Replicas}}\t{{.Command}}\t{{.Ports}}",
    headers: &[
        ("ID", "ID"),
        ("Name", "NAME"),
        ("Mode", "MODE"),
        ("Replicas", "REPLICAS"),
        ("Image", "IMAGE"),
        ("Command", "COMMAND"),
        ("Ports", "PORTS"),
    ],
    row_type: "*service.serviceContext",
};

/// A `service ls` row.
pub fn row(view: &ServiceView, service: &Service) -> Row {
    let image = service
        .spec
        .task_template
        .container_spec
        .as_ref()
        .map(|c| shown_image(&c.image))
        .unwrap_or_default();
    let status = service.service_status.clone().unwrap_or_default();
    Row::new(json!({
        "ID": short_id(&service.id),
        "Name": service.spec.name,
        "Mode": service.spec.mode.name(),
        "Replicas": format!("{}/{}", status.running_tasks, status.desired_tasks),
        "Image": image,
        "Command": ellipsis(&view.spec.task.command.join(" "), COMMAND_WIDTH),
        "Ports": ports_column(&service.endpoint.ports),
    }))
}

/// Docker's IMAGE column of `service ls`: a tagged reference without the
/// digest the deploy pinned, in its familiar form (`busybox:1`, not
/// `docker.io/library/busybox:1@sha256:...`); a reference pinned by digest
/// alone shows whole.
fn shown_image(image: &str) -> String {
    let Some((name, _digest)) = image.split_once('@') else {
        return image.to_string();
    };
    let last = name.rsplit('/').next().unwrap_or(name);
    if !last.contains(':') {
        return image.to_string();
    }
    let familiar = name
        .strip_prefix("docker.io/library/")
        .or_else(|| name.strip_prefix("docker.io/"))
        .unwrap_or(name);
    familiar.to_string()
}

/// `service ls` output: the services that pass `filters`, by name.
pub fn list(
    views: &[ServiceView],
    filters: &filter::Filters,
    format: Option<&str>,
    quiet: bool,
) -> anyhow::Result<String> {
    filter::check_services(filters)?;
    let mut services: Vec<(&ServiceView, Service)> = views
        .iter()
        .map(|v| (v, Service::from(v)))
        .filter(|(_, s)| filter::service_matches(filters, s))
        .collect();
    services.sort_by(|a, b| natural_cmp(&a.1.spec.name, &b.1.spec.name));
    let rows: Vec<Row> = services.iter().map(|(v, s)| row(v, s)).collect();
    Ok(format::list(
        &SERVICES,
        format::resolve(&SERVICES, format, quiet),
        &rows,
    )?)
}

/// Docker's PORTS column: `*:8080->80/tcp`, consecutive ports as ranges
/// (`*:8080-8081->80-81/tcp`), by protocol then published port.
pub fn ports_column(ports: &[PortConfig]) -> String {
    let mut ports: Vec<&PortConfig> = ports
        .iter()
        .filter(|p| p.publish_mode == "ingress")
        .collect();
    ports.sort_by(|a, b| {
        a.protocol
            .cmp(&b.protocol)
            .then(a.published_port.cmp(&b.published_port))
    });
    // (published start, published end, target start, target end, protocol)
    let mut ranges: Vec<(u32, u32, u32, u32, &str)> = Vec::new();
    for p in ports {
        if let Some(r) = ranges.last_mut() {
            let is_range = r.3 != r.2;
            let overlaps = p.target_port <= r.3;
            let continues = p.protocol == r.4
                && p.published_port.wrapping_sub(r.1) <= 1
                && p.target_port.wrapping_sub(r.3) <= 1
                && !(is_range && overlaps);
            if continues {
                r.1 = p.published_port;
                r.3 = p.target_port;
                continue;
            }
        }
        ranges.push((
            p.published_port,
            p.published_port,
            p.target_port,
            p.target_port,
            &p.protocol,
        ));
    }
    let span = |start: u32, end: u32| {
        if end > start {
            format!("{start}-{end}")
        } else {
            start.to_string()
        }
    };
    ranges
        .iter()
        .map(|r| format!("*:{}->{}/{}", span(r.0, r.1), span(r.2, r.3), r.4))
        .collect::<Vec<_>>()
        .join(", ")
}

/// The first 12 characters of an id.
pub fn short_id(id: &str) -> String {
    id.chars().take(SHORT_ID).collect()
}

/// `text` cut to `width` characters, ending in `...` when cut.
pub fn ellipsis(text: &str, width: usize) -> String {
    if text.chars().count() <= width {
        return text.to_string();
    }
    let kept: String = text.chars().take(width.saturating_sub(3)).collect();
    format!("{kept}...")
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_image_column_drops_the_pinned_digest_as_docker_does() {
        let digest = "sha256:df0508407eae4917249b4b601cd217c6b603310f9dcbf404774cd4169093ec94";
        assert_eq!(
            super::shown_image(&format!("198.18.0.2:5000/stackweb:1@{digest}")),
            "198.18.0.2:5000/stackweb:1"
        );
        assert_eq!(
            super::shown_image(&format!("docker.io/library/busybox:1@{digest}")),
            "busybox:1"
        );
        let by_digest = format!("198.18.0.2:5000/stackweb@{digest}");
        assert_eq!(super::shown_image(&by_digest), by_digest);
        assert_eq!(super::shown_image("busybox"), "busybox");
    }

    use super::*;

    fn port(protocol: &str, published: u32, target: u32) -> PortConfig {
        PortConfig {
            protocol: protocol.into(),
            target_port: target,
            published_port: published,
            publish_mode: "ingress".into(),
            ..PortConfig::default()
        }
    }

    #[test]
    fn ports_merge_into_ranges_as_dockers() {
        assert_eq!(ports_column(&[]), "");
        assert_eq!(ports_column(&[port("tcp", 8080, 80)]), "*:8080->80/tcp");
        assert_eq!(
            ports_column(&[
                port("tcp", 8081, 81),
                port("tcp", 8080, 80),
                port("udp", 53, 53)
            ]),
            "*:8080-8081->80-81/tcp, *:53->53/udp"
        );
        assert_eq!(
            ports_column(&[port("tcp", 8080, 80), port("tcp", 9090, 90)]),
            "*:8080->80/tcp, *:9090->90/tcp"
        );
        let mut host = port("tcp", 7000, 70);
        host.publish_mode = "host".into();
        assert_eq!(
            ports_column(&[host.clone()]),
            "",
            "host ports are not the mesh's"
        );
        // docker/cli's serviceContext.Ports() prints ingress ports only: a
        // host-mode port is left out even beside ingress ones, and never
        // joins their range.
        let mut next = port("tcp", 8081, 81);
        next.publish_mode = "host".into();
        assert_eq!(
            ports_column(&[port("tcp", 8080, 80), next, host, port("tcp", 8082, 82)]),
            "*:8080->80/tcp, *:8082->82/tcp"
        );
    }

    #[test]
    fn ellipsis_cuts_long_text() {
        assert_eq!(ellipsis("short", 30), "short");
        assert_eq!(ellipsis("abcdefghij", 8), "abcde...");
        assert_eq!(ellipsis("abcdefgh", 8), "abcdefgh");
    }
}
