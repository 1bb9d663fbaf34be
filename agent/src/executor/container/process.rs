//! Docker's rules for a container's process, from the image's config and
//! the service's overrides: Command replaces Entrypoint (and drops Cmd),
//! Args replace Cmd, Env is the service's with the image's other variables
//! after it, PATH defaults when neither sets it, HOSTNAME is the
//! container's; WorkingDir, User (through the image's passwd and group),
//! StopSignal and Healthcheck are the service's or else the image's.

use std::str::FromStr;
use std::time::Duration;

use nix::sys::signal::Signal;

use super::config::{ContainerConfig, HealthConfig};
use super::user::{self, ResolvedUser};
use crate::image::RunConfig;

/// Docker's PATH for a container whose image sets none.
pub const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";
/// Where `--init`'s binary is mounted, as Docker mounts docker-init.
pub const INIT_PATH: &str = "/sbin/docker-init";

/// Docker's health check defaults.
pub const HEALTH_INTERVAL: Duration = Duration::from_secs(30);
pub const HEALTH_TIMEOUT: Duration = Duration::from_secs(30);
pub const HEALTH_RETRIES: u32 = 3;

/// A resolved health check.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct HealthCheck {
    /// The probe's argv, run in the container.
    pub probe: Vec<String>,
    pub interval: Duration,
    pub timeout: Duration,
    pub start_period: Duration,
    pub retries: u32,
}

/// What the container runs, and how.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProcessPlan {
    pub args: Vec<String>,
    pub env: Vec<String>,
    pub cwd: String,
    pub user: ResolvedUser,
    /// The signal `stop` sends first.
    pub stop_signal: i32,
    pub health: Option<HealthCheck>,
}

/// Applies Docker's rules. `command` is the service's Command; `passwd`
/// and `group` are the image's files (empty when it has none).
pub fn plan(
    image: &RunConfig,
    command: &[String],
    service_env: &[String],
    container: &ContainerConfig,
    passwd: &str,
    group: &str,
) -> Result<ProcessPlan, String> {
    let (entrypoint, cmd) = if !command.is_empty() {
        (command.to_vec(), container.args.clone())
    } else if !container.args.is_empty() {
        (image.entrypoint.clone(), container.args.clone())
    } else {
        (image.entrypoint.clone(), image.cmd.clone())
    };
    let mut args: Vec<String> = entrypoint.into_iter().chain(cmd).collect();
    if args.is_empty() {
        return Err(
            "no command specified: the image has no Entrypoint or Cmd and the service gives none"
                .into(),
        );
    }
    if container.init {
        args = [INIT_PATH.to_string(), "--".to_string()]
            .into_iter()
            .chain(args)
            .collect();
    }
    let cwd = match container.workdir.as_deref().filter(|w| !w.is_empty()) {
        Some(dir) => dir.to_string(),
        None if !image.working_dir.is_empty() => image.working_dir.clone(),
        None => "/".to_string(),
    };
    if !cwd.starts_with('/') {
        return Err(format!(
            "the working directory `{cwd}` is invalid: it needs to be an absolute path"
        ));
    }
    let user_spec = container.user.clone().unwrap_or_else(|| image.user.clone());
    let user = user::resolve(&user_spec, passwd, group)?;
    let stop_signal = parse_signal(
        container
            .stop_signal
            .as_deref()
            .unwrap_or(&image.stop_signal),
    )?;
    let health = resolve_health(container.healthcheck.as_ref(), image)?;
    Ok(ProcessPlan {
        args,
        env: environment(&image.env, service_env, &container.hostname),
        cwd,
        user,
        stop_signal,
        health,
    })
}

fn key(entry: &str) -> &str {
    entry.split_once('=').map_or(entry, |(k, _)| k)
}

/// Docker's environment: PATH (if nobody sets it) and HOSTNAME first, then
/// the service's variables, then the image's that the service leaves out.
pub fn environment(image: &[String], service: &[String], hostname: &str) -> Vec<String> {
    let mut merged: Vec<String> = service
        .iter()
        .filter(|e| e.contains('='))
        .cloned()
        .collect();
    for entry in image {
        if !merged.iter().any(|m| key(m) == key(entry)) {
            merged.push(entry.clone());
        }
    }
    let mut env = Vec::new();
    if !merged.iter().any(|e| key(e) == "PATH") {
        env.push(format!("PATH={DEFAULT_PATH}"));
    }
    if !hostname.is_empty() {
        env.push(format!("HOSTNAME={hostname}"));
    }
    for entry in merged {
        match env.iter_mut().find(|e| key(e) == key(&entry)) {
            Some(existing) => *existing = entry,
            None => env.push(entry),
        }
    }
    env
}

/// `SIGQUIT`, `QUIT`, `3` -> 3; empty is SIGTERM.
pub fn parse_signal(text: &str) -> Result<i32, String> {
    let text = text.trim();
    if text.is_empty() {
        return Ok(Signal::SIGTERM as i32);
    }
    if let Ok(n) = text.parse::<i32>() {
        return Signal::try_from(n)
            .map(|s| s as i32)
            .map_err(|_| format!("invalid stop signal `{text}`"));
    }
    let upper = text.to_ascii_uppercase();
    let name = if upper.starts_with("SIG") {
        upper
    } else {
        format!("SIG{upper}")
    };
    Signal::from_str(&name)
        .map(|s| s as i32)
        .map_err(|_| format!("invalid stop signal `{text}`"))
}

/// The service's health check over the image's, with Docker's defaults;
/// `None` when there is none or it is `NONE`.
pub fn resolve_health(
    service: Option<&HealthConfig>,
    image: &RunConfig,
) -> Result<Option<HealthCheck>, String> {
    let image_hc = image.healthcheck.as_ref();
    let test = match service.filter(|s| !s.test.is_empty()) {
        Some(s) => s.test.clone(),
        None => image_hc.map(|h| h.test.clone()).unwrap_or_default(),
    };
    let probe = match test.split_first() {
        None => return Ok(None),
        Some((kind, _)) if kind == "NONE" => return Ok(None),
        Some((kind, rest)) if kind == "CMD" && !rest.is_empty() => rest.to_vec(),
        Some((kind, rest)) if kind == "CMD-SHELL" && rest.len() == 1 => {
            vec!["/bin/sh".into(), "-c".into(), rest[0].clone()]
        }
        Some(_) => return Err(format!("invalid health check test {test:?}: use [\"CMD\", ...], [\"CMD-SHELL\", command] or [\"NONE\"]")),
    };
    let pick = |own: Option<Duration>, from_image: Option<Duration>, default: Duration| {
        own.filter(|d| !d.is_zero())
            .or(from_image)
            .unwrap_or(default)
    };
    let retries = service
        .and_then(|s| s.retries)
        .filter(|r| *r > 0)
        .or_else(|| {
            image_hc
                .and_then(|h| u32::try_from(h.retries).ok())
                .filter(|r| *r > 0)
        })
        .unwrap_or(HEALTH_RETRIES);
    Ok(Some(HealthCheck {
        probe,
        interval: pick(
            service.and_then(|s| s.interval),
            image_hc.and_then(|h| h.interval()),
            HEALTH_INTERVAL,
        ),
        timeout: pick(
            service.and_then(|s| s.timeout),
            image_hc.and_then(|h| h.timeout()),
            HEALTH_TIMEOUT,
        ),
        start_period: pick(
            service.and_then(|s| s.start_period),
            image_hc.and_then(|h| h.start_period()),
            Duration::ZERO,
        ),
        retries,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::image::ImageHealthcheck;

    fn s(v: &[&str]) -> Vec<String> {
        v.iter().map(|x| x.to_string()).collect()
    }

    fn nginx() -> RunConfig {
        RunConfig {
            entrypoint: s(&["/docker-entrypoint.sh"]),
            cmd: s(&["nginx", "-g", "daemon off;"]),
            env: s(&["PATH=/usr/sbin:/usr/bin", "NGINX_VERSION=1.25", "LANG=C"]),
            working_dir: "/srv".into(),
            stop_signal: "SIGQUIT".into(),
            ..RunConfig::default()
        }
    }

    fn run(command: &[&str], args: &[&str]) -> Vec<String> {
        let container = ContainerConfig {
            args: s(args),
            ..ContainerConfig::default()
        };
        plan(&nginx(), &s(command), &[], &container, "", "")
            .unwrap()
            .args
    }

    #[test]
    fn image_entrypoint_and_cmd_by_default() {
        assert_eq!(
            run(&[], &[]),
            s(&["/docker-entrypoint.sh", "nginx", "-g", "daemon off;"])
        );
    }

    #[test]
    fn args_replace_cmd_only() {
        assert_eq!(
            run(&[], &["nginx", "-T"]),
            s(&["/docker-entrypoint.sh", "nginx", "-T"])
        );
    }

    #[test]
    fn command_replaces_entrypoint_and_drops_cmd() {
        assert_eq!(run(&["/bin/sh"], &[]), s(&["/bin/sh"]));
        assert_eq!(
            run(&["/bin/sh"], &["-c", "id"]),
            s(&["/bin/sh", "-c", "id"])
        );
    }

    #[test]
    fn nothing_to_run_is_an_error() {
        let empty = RunConfig::default();
        let err = plan(&empty, &[], &[], &ContainerConfig::default(), "", "").unwrap_err();
        assert!(err.contains("no command"), "{err}");
    }

    #[test]
    fn init_goes_first() {
        let container = ContainerConfig {
            init: true,
            ..ContainerConfig::default()
        };
        let p = plan(&nginx(), &[], &[], &container, "", "").unwrap();
        assert_eq!(
            &p.args[..3],
            &s(&[INIT_PATH, "--", "/docker-entrypoint.sh"])[..]
        );
    }

    #[test]
    fn env_merges_service_over_image_with_docker_order() {
        let env = environment(
            &s(&["PATH=/usr/bin", "A=image", "B=image"]),
            &s(&["A=service", "C=service", "NOVALUE"]),
            "web-1",
        );
        assert_eq!(
            env,
            s(&[
                "HOSTNAME=web-1",
                "A=service",
                "C=service",
                "PATH=/usr/bin",
                "B=image"
            ])
        );
        let env = environment(&s(&["A=1"]), &[], "");
        assert_eq!(env, s(&[&format!("PATH={DEFAULT_PATH}"), "A=1"]));
        // A service may even override HOSTNAME.
        let env = environment(&[], &s(&["HOSTNAME=x", "PATH=/p"]), "h");
        assert_eq!(env, s(&["HOSTNAME=x", "PATH=/p"]));
    }

    #[test]
    fn workdir_user_and_stop_signal_come_from_image_unless_overridden() {
        let passwd = "root:x:0:0::/root:/bin/sh\nnginx:x:101:101::/var/cache/nginx:/bin/false\n";
        let mut image = nginx();
        image.user = "nginx".into();
        let p = plan(&image, &[], &[], &ContainerConfig::default(), passwd, "").unwrap();
        assert_eq!(p.cwd, "/srv");
        assert_eq!((p.user.uid, p.user.gid), (101, 101));
        assert_eq!(p.stop_signal, libc::SIGQUIT);
        let container = ContainerConfig {
            user: Some("0:0".into()),
            workdir: Some("/tmp".into()),
            stop_signal: Some("USR1".into()),
            ..ContainerConfig::default()
        };
        let p = plan(&image, &[], &[], &container, passwd, "").unwrap();
        assert_eq!(
            (p.user.uid, p.cwd.as_str(), p.stop_signal),
            (0, "/tmp", libc::SIGUSR1)
        );
        let relative = ContainerConfig {
            workdir: Some("tmp".into()),
            ..ContainerConfig::default()
        };
        assert!(plan(&image, &[], &[], &relative, passwd, "").is_err());
    }

    #[test]
    fn signals_parse_by_name_or_number() {
        assert_eq!(parse_signal(""), Ok(libc::SIGTERM));
        assert_eq!(parse_signal("SIGKILL"), Ok(libc::SIGKILL));
        assert_eq!(parse_signal("quit"), Ok(libc::SIGQUIT));
        assert_eq!(parse_signal("2"), Ok(libc::SIGINT));
        assert!(parse_signal("SIGNOPE").is_err());
        assert!(parse_signal("999").is_err());
    }

    #[test]
    fn health_merges_service_image_and_defaults() {
        let mut image = nginx();
        image.healthcheck = Some(ImageHealthcheck {
            test: s(&["CMD-SHELL", "wget -q -O- localhost"]),
            interval: 5_000_000_000,
            retries: 2,
            ..ImageHealthcheck::default()
        });
        let hc = resolve_health(None, &image).unwrap().unwrap();
        assert_eq!(hc.probe, s(&["/bin/sh", "-c", "wget -q -O- localhost"]));
        assert_eq!(hc.interval, Duration::from_secs(5));
        assert_eq!(hc.timeout, HEALTH_TIMEOUT);
        assert_eq!(hc.retries, 2);
        let service = HealthConfig {
            test: s(&["CMD", "true"]),
            interval: Some(Duration::from_millis(500)),
            retries: Some(1),
            ..HealthConfig::default()
        };
        let hc = resolve_health(Some(&service), &image).unwrap().unwrap();
        assert_eq!(hc.probe, s(&["true"]));
        assert_eq!((hc.interval, hc.retries), (Duration::from_millis(500), 1));
        let none = HealthConfig {
            test: s(&["NONE"]),
            ..HealthConfig::default()
        };
        assert_eq!(resolve_health(Some(&none), &image).unwrap(), None);
        assert_eq!(resolve_health(None, &nginx()).unwrap(), None);
        let bad = HealthConfig {
            test: s(&["CMD-SHELL"]),
            ..HealthConfig::default()
        };
        assert!(resolve_health(Some(&bad), &image).is_err());
    }
}
