//! Single flag values: Docker's port, size, CPU and label syntaxes parsed
//! for the spec, and printed back the same way for `inspect --pretty`.

use std::time::Duration;

use shoal_control::objects::{Constraint, PayloadReference, PortConfig, Protocol, PublishMode};

use super::flag_error::FlagError;

/// Whole milliseconds, as specs store durations.
pub fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

/// `--publish`: Docker's short form `[PUBLISHED:]TARGET[/tcp|udp]` or its
/// long form `published=P,target=T,protocol=udp,mode=ingress`. A missing
/// published port is 0: the swarm picks one.
pub fn parse_publish(text: &str) -> Result<PortConfig, FlagError> {
    if text.contains('=') {
        return parse_publish_long(text);
    }
    let (ports, protocol) = match text.split_once('/') {
        Some((ports, protocol)) => (ports, parse_protocol(text, protocol)?),
        None => (text, Protocol::Tcp),
    };
    let (published, target) = match ports.split_once(':') {
        Some((published, target)) => (published, target),
        None => ("0", ports),
    };
    Ok(PortConfig {
        protocol,
        target: parse_port(text, target, false)?,
        published: parse_port(text, published, true)?,
        mode: PublishMode::Ingress,
    })
}

fn parse_publish_long(text: &str) -> Result<PortConfig, FlagError> {
    let (mut target, mut published, mut protocol) = (None, 0, Protocol::Tcp);
    let mut mode = PublishMode::Ingress;
    for field in text.split(',') {
        match field.split_once('=') {
            Some(("target", port)) => target = Some(parse_port(text, port, false)?),
            Some(("published", port)) => published = parse_port(text, port, true)?,
            Some(("protocol", proto)) => protocol = parse_protocol(text, proto)?,
            Some(("mode", value)) => {
                mode = value
                    .parse()
                    .map_err(|_| FlagError::PublishMode(text.to_string()))?
            }
            _ => return Err(FlagError::Publish(text.to_string())),
        }
    }
    let target = target.ok_or_else(|| FlagError::Publish(text.to_string()))?;
    Ok(PortConfig {
        protocol,
        target,
        published,
        mode,
    })
}

/// One `--network`: `NETWORK`, or Docker's long syntax
/// `name=NETWORK,alias=A[,alias=B]` (`target=` as `name=`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NetworkFlag {
    pub network: String,
    pub aliases: Vec<String>,
}

pub fn parse_network(text: &str) -> Result<NetworkFlag, FlagError> {
    let bad = || FlagError::Network(text.to_string());
    if !text.contains('=') {
        return if text.is_empty() {
            Err(bad())
        } else {
            Ok(NetworkFlag {
                network: text.to_string(),
                aliases: Vec::new(),
            })
        };
    }
    let (mut network, mut aliases) = (None, Vec::new());
    for field in text.split(',') {
        match field.split_once('=') {
            Some(("name" | "target", name)) if !name.is_empty() => network = Some(name.to_string()),
            Some(("alias", alias)) if !alias.is_empty() => aliases.push(alias.to_string()),
            _ => return Err(bad()),
        }
    }
    Ok(NetworkFlag {
        network: network.ok_or_else(bad)?,
        aliases,
    })
}

fn parse_port(spec: &str, port: &str, zero_ok: bool) -> Result<u16, FlagError> {
    match port.parse::<u16>() {
        Ok(n) if n > 0 || zero_ok => Ok(n),
        _ => Err(FlagError::Port {
            spec: spec.to_string(),
            port: port.to_string(),
        }),
    }
}

fn parse_protocol(spec: &str, protocol: &str) -> Result<Protocol, FlagError> {
    match protocol {
        "tcp" => Ok(Protocol::Tcp),
        "udp" => Ok(Protocol::Udp),
        other => Err(FlagError::Protocol {
            spec: spec.to_string(),
            protocol: other.to_string(),
        }),
    }
}

/// `--reserve-memory` / `--limit-memory`, as Docker reads sizes: a number,
/// an optional unit b, k, m, g or t (powers of 1024), optionally followed
/// by `i` and/or `b`, any case: `64M`, `64mb`, `1.5GiB`, `512`.
pub fn parse_memory(text: &str) -> Result<u64, FlagError> {
    let bad = || FlagError::Memory(text.to_string());
    let number_end = text
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(number_end);
    let unit = unit.trim_start_matches(' ').to_ascii_lowercase();
    let unit = unit.strip_suffix('b').unwrap_or(&unit);
    let unit = unit.strip_suffix('i').unwrap_or(unit);
    let scale: u64 = match unit {
        "" => 1,
        "k" => 1 << 10,
        "m" => 1 << 20,
        "g" => 1 << 30,
        "t" => 1 << 40,
        _ => return Err(bad()),
    };
    if !number.contains('.') {
        let n: u64 = number.parse().map_err(|_| bad())?;
        return n.checked_mul(scale).ok_or_else(bad);
    }
    let n: f64 = number.parse().map_err(|_| bad())?;
    let bytes = n * scale as f64;
    if !bytes.is_finite() || bytes >= u64::MAX as f64 {
        return Err(bad());
    }
    Ok(bytes as u64)
}

/// `--reserve-cpu` / `--limit-cpu`: decimal CPUs to nano-CPUs, exactly
/// (`0.5` is 500000000); more than 9 decimal places is refused, as Docker
/// does.
pub fn parse_cpus(text: &str) -> Result<u64, FlagError> {
    let bad = || FlagError::Cpus(text.to_string());
    let (whole, fraction) = text.split_once('.').unwrap_or((text, ""));
    let digits = |s: &str| s.bytes().all(|b| b.is_ascii_digit());
    if (whole.is_empty() && fraction.is_empty()) || !digits(whole) || !digits(fraction) {
        return Err(bad());
    }
    let fraction = fraction.trim_end_matches('0');
    if fraction.len() > 9 {
        return Err(FlagError::CpusPrecision(text.to_string()));
    }
    let whole: u64 = if whole.is_empty() {
        0
    } else {
        whole.parse().map_err(|_| bad())?
    };
    let nanos: u64 = if fraction.is_empty() {
        0
    } else {
        let n: u64 = fraction.parse().map_err(|_| bad())?;
        n * 10u64.pow(9 - fraction.len() as u32)
    };
    whole
        .checked_mul(1_000_000_000)
        .and_then(|n| n.checked_add(nanos))
        .ok_or_else(bad)
}

/// `key=value`, or `key` for an empty value.
pub fn parse_label(text: &str) -> Result<(String, String), FlagError> {
    let (key, value) = text.split_once('=').unwrap_or((text, ""));
    if key.is_empty() {
        return Err(FlagError::Label(text.to_string()));
    }
    Ok((key.to_string(), value.to_string()))
}

/// `--constraint KEY==VALUE|KEY!=VALUE`, with the objects' message.
pub fn parse_constraint(text: &str) -> Result<Constraint, String> {
    text.parse()
}

/// `--secret` / `--config`: `NAME`, or Docker's
/// `source=NAME,target=PATH,uid=N,gid=N,mode=0400` (`src` for source; a
/// mode with a leading 0 is octal, as Go's `ParseUint(s, 0, 32)` reads it).
pub fn parse_payload(flag: &'static str, text: &str) -> Result<PayloadReference, FlagError> {
    let bad = || FlagError::Payload {
        flag,
        text: text.to_string(),
    };
    if !text.contains('=') {
        return match text {
            "" => Err(bad()),
            name => Ok(PayloadReference::named(name)),
        };
    }
    let mut reference = PayloadReference::named("");
    for field in text.split(',') {
        let (key, value) = field.split_once('=').ok_or_else(bad)?;
        let number = |v: &str| -> Result<u32, FlagError> {
            let parsed = if let Some(octal) = v.strip_prefix("0o") {
                u32::from_str_radix(octal, 8)
            } else if v.len() > 1 && v.starts_with('0') {
                u32::from_str_radix(&v[1..], 8)
            } else {
                v.parse()
            };
            parsed.map_err(|_| bad())
        };
        match key.trim().to_ascii_lowercase().as_str() {
            "source" | "src" => reference.name = value.to_string(),
            "target" => reference.target = value.to_string(),
            "uid" => reference.uid = number(value)?,
            "gid" => reference.gid = number(value)?,
            "mode" => reference.mode = number(value)?,
            _ => return Err(bad()),
        }
    }
    if reference.name.is_empty() {
        return Err(bad());
    }
    Ok(reference)
}

pub fn parse_secret(text: &str) -> Result<PayloadReference, FlagError> {
    parse_payload("--secret", text)
}

pub fn parse_config(text: &str) -> Result<PayloadReference, FlagError> {
    parse_payload("--config", text)
}

/// `service scale SERVICE=N`.
pub fn parse_scale(text: &str) -> Result<(String, u64), FlagError> {
    match text.split_once('=') {
        Some((service, n)) if !service.is_empty() => n
            .parse()
            .map(|n| (service.to_string(), n))
            .map_err(|_| FlagError::Scale(text.to_string())),
        _ => Err(FlagError::Scale(text.to_string())),
    }
}

/// A duration as Go prints it, the way the flags take it: `5s`, `500ms`,
/// `1m30s`, `1.5s`, `0s`.
pub fn format_duration(d: Duration) -> String {
    let ms = millis(d);
    if ms == 0 {
        return "0s".into();
    }
    if ms < 1000 {
        return format!("{ms}ms");
    }
    let (h, m, s, ms) = (ms / 3_600_000, ms / 60_000 % 60, ms / 1000 % 60, ms % 1000);
    let mut out = String::new();
    if h > 0 {
        out.push_str(&format!("{h}h"));
    }
    if h > 0 || m > 0 {
        out.push_str(&format!("{m}m"));
    }
    if ms == 0 {
        out.push_str(&format!("{s}s"));
    } else {
        let fraction = format!("{ms:03}");
        out.push_str(&format!("{s}.{}s", fraction.trim_end_matches('0')));
    }
    out
}

/// Nano-CPUs as the decimal `--reserve-cpu` takes: `0.5`, `2`.
pub fn cpus_text(nanos: u64) -> String {
    let (whole, fraction) = (nanos / 1_000_000_000, nanos % 1_000_000_000);
    if fraction == 0 {
        return whole.to_string();
    }
    let fraction = format!("{fraction:09}");
    format!("{whole}.{}", fraction.trim_end_matches('0'))
}

/// Bytes in binary units, as Docker prints them: `64MiB`, `1.5GiB`, `512B`.
pub fn bytes_text(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit < UNITS.len() - 1 {
        value /= 1024.0;
        unit += 1;
    }
    let number = format!("{value:.2}");
    let number = number.trim_end_matches('0').trim_end_matches('.');
    format!("{number}{}", UNITS[unit])
}

#[cfg(test)]
mod tests {
    use crate::cli::parse_duration;

    use super::*;

    fn tcp(published: u16, target: u16) -> PortConfig {
        PortConfig {
            protocol: Protocol::Tcp,
            target,
            published,
            mode: PublishMode::Ingress,
        }
    }

    #[test]
    fn publish_short_form() {
        assert_eq!(parse_publish("8080:80"), Ok(tcp(8080, 80)));
        assert_eq!(parse_publish("80"), Ok(tcp(0, 80)));
        assert_eq!(parse_publish("0:80/tcp"), Ok(tcp(0, 80)));
        assert_eq!(
            parse_publish("53:5353/udp"),
            Ok(PortConfig {
                protocol: Protocol::Udp,
                target: 5353,
                published: 53,
                mode: PublishMode::Ingress,
            })
        );
    }

    #[test]
    fn publish_long_form() {
        assert_eq!(parse_publish("published=8080,target=80"), Ok(tcp(8080, 80)));
        assert_eq!(
            parse_publish("target=53,protocol=udp,mode=ingress"),
            Ok(PortConfig {
                protocol: Protocol::Udp,
                target: 53,
                published: 0,
                mode: PublishMode::Ingress,
            })
        );
    }

    #[test]
    fn publish_errors_name_the_flag_and_the_fix() {
        assert_eq!(
            parse_publish("8080:0").unwrap_err().to_string(),
            "invalid port `0` in --publish `8080:0`: use a number from 1 to 65535"
        );
        assert!(matches!(
            parse_publish("70000:80"),
            Err(FlagError::Port { port, .. }) if port == "70000"
        ));
        assert!(matches!(parse_publish(":80"), Err(FlagError::Port { .. })));
        assert!(matches!(
            parse_publish("1:2:3"),
            Err(FlagError::Port { .. })
        ));
        assert_eq!(
            parse_publish("80/sctp").unwrap_err().to_string(),
            "invalid protocol `sctp` in --publish `80/sctp`: use tcp or udp"
        );
        assert!(matches!(
            parse_publish("published=80"),
            Err(FlagError::Publish(_))
        ));
        assert!(matches!(
            parse_publish("target=80,color=red"),
            Err(FlagError::Publish(_))
        ));
        let host = parse_publish("mode=host,target=80,published=8080").unwrap();
        assert_eq!(
            (host.mode, host.target, host.published),
            (PublishMode::Host, 80, 8080)
        );
        assert_eq!(
            parse_publish("published=8080,target=80,mode=ingress")
                .unwrap()
                .mode,
            PublishMode::Ingress
        );
        assert_eq!(
            parse_publish("target=80,mode=local").unwrap_err().to_string(),
            "invalid publish mode value in --publish `target=80,mode=local`: must be either 'ingress' or 'host'"
        );
        assert_eq!(
            parse_network("name=app,alias=db,alias=pg").unwrap(),
            NetworkFlag {
                network: "app".into(),
                aliases: vec!["db".into(), "pg".into()]
            }
        );
        assert_eq!(parse_network("app").unwrap().network, "app");
        assert!(parse_network("alias=db").is_err());
        assert!(parse_network("name=app,colour=red").is_err());
        assert!(matches!(
            parse_publish("target=80,mode=bridge"),
            Err(FlagError::PublishMode(_))
        ));
    }

    #[test]
    fn memory_units_like_docker() {
        assert_eq!(parse_memory("512"), Ok(512));
        assert_eq!(parse_memory("512b"), Ok(512));
        assert_eq!(parse_memory("64k"), Ok(64 << 10));
        assert_eq!(parse_memory("64M"), Ok(64 << 20));
        assert_eq!(parse_memory("64MB"), Ok(64 << 20));
        assert_eq!(parse_memory("64mib"), Ok(64 << 20));
        assert_eq!(parse_memory("64 m"), Ok(64 << 20));
        assert_eq!(parse_memory("1.5g"), Ok(3 << 29));
        assert_eq!(parse_memory("2G"), Ok(2 << 30));
        for bad in ["", "m", "64x", "1.2.3m", "-1", "64mm"] {
            assert_eq!(
                parse_memory(bad),
                Err(FlagError::Memory(bad.into())),
                "{bad}"
            );
        }
        assert!(parse_memory("99999999999t").is_err());
    }

    #[test]
    fn cpus_are_exact_decimals() {
        assert_eq!(parse_cpus("0.5"), Ok(500_000_000));
        assert_eq!(parse_cpus(".25"), Ok(250_000_000));
        assert_eq!(parse_cpus("2"), Ok(2_000_000_000));
        assert_eq!(parse_cpus("1.000000001"), Ok(1_000_000_001));
        assert_eq!(parse_cpus("1.50000000000"), Ok(1_500_000_000));
        assert_eq!(
            parse_cpus("0.0000000001").unwrap_err().to_string(),
            "CPU count `0.0000000001` is too precise: use at most 9 decimal places"
        );
        for bad in ["", ".", "-1", "1,5", "one", "1e3"] {
            assert_eq!(parse_cpus(bad), Err(FlagError::Cpus(bad.into())), "{bad}");
        }
    }

    #[test]
    fn labels_and_scales() {
        assert_eq!(parse_label("a=b=c"), Ok(("a".into(), "b=c".into())));
        assert_eq!(parse_label("flag"), Ok(("flag".into(), String::new())));
        assert_eq!(
            parse_label("=x").unwrap_err().to_string(),
            "invalid label `=x`: use key=value"
        );
        assert_eq!(parse_scale("web=3"), Ok(("web".into(), 3)));
        assert_eq!(
            parse_scale("web").unwrap_err().to_string(),
            "invalid scale `web`: use SERVICE=REPLICAS, e.g. web=3"
        );
        assert!(parse_scale("=3").is_err());
        assert!(parse_scale("web=-1").is_err());
    }

    #[test]
    fn durations_print_as_they_are_typed() {
        for (ms, text) in [
            (0, "0s"),
            (500, "500ms"),
            (5_000, "5s"),
            (1_500, "1.5s"),
            (90_000, "1m30s"),
            (3_600_000, "1h0m0s"),
        ] {
            assert_eq!(format_duration(Duration::from_millis(ms)), text);
        }
        assert_eq!(
            parse_duration(&format_duration(Duration::from_secs(90))),
            Ok(Duration::from_secs(90))
        );
    }

    #[test]
    fn sizes_and_cpus_read_back_as_typed() {
        assert_eq!(bytes_text(64 << 20), "64MiB");
        assert_eq!(bytes_text(3 << 29), "1.5GiB");
        assert_eq!(bytes_text(512), "512B");
        assert_eq!(parse_memory(&bytes_text(64 << 20)), Ok(64 << 20));
        assert_eq!(cpus_text(500_000_000), "0.5");
        assert_eq!(cpus_text(2_000_000_000), "2");
        assert_eq!(cpus_text(1_000_000_001), "1.000000001");
        assert_eq!(parse_cpus(&cpus_text(1_250_000_000)), Ok(1_250_000_000));
    }
}
