//! Why a `service create|update` flag's value is refused, before anything
//! is sent.

use shoal_control::objects::ServiceSpecError;
use thiserror::Error;

/// Why a flag's value is refused, before anything is sent.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum FlagError {
    #[error(
        "invalid --publish `{0}`: use [PUBLISHED:]TARGET[/tcp|udp] or published=P,target=T[,protocol=udp]"
    )]
    Publish(String),
    #[error("invalid port `{port}` in --publish `{spec}`: use a number from 1 to 65535")]
    Port { spec: String, port: String },
    #[error("invalid protocol `{protocol}` in --publish `{spec}`: use tcp or udp")]
    Protocol { spec: String, protocol: String },
    #[error("invalid publish mode value in --publish `{0}`: must be either 'ingress' or 'host'")]
    PublishMode(String),
    #[error("invalid --network `{0}`: use NETWORK or name=NETWORK,alias=ALIAS")]
    Network(String),
    #[error("invalid memory size `{0}`: use bytes with an optional unit b, k, m, g or t, e.g. 64M or 1.5g")]
    Memory(String),
    #[error("invalid CPU count `{0}`: use a decimal number of CPUs, e.g. 0.5 or 2")]
    Cpus(String),
    #[error("CPU count `{0}` is too precise: use at most 9 decimal places")]
    CpusPrecision(String),
    #[error("invalid label `{0}`: use key=value")]
    Label(String),
    #[error("invalid scale `{0}`: use SERVICE=REPLICAS, e.g. web=3")]
    Scale(String),
    #[error("--replicas applies only to replicated services, and service `{0}` is global")]
    ReplicasGlobal(String),
    #[error("service `{service}` is already attached to network `{network}`")]
    NetworkAttached { service: String, network: String },
    #[error(
        "the container flags (--image, --entrypoint, --user, --health-*...) need a container \
         task: drop --runtime process, or recreate the service from an image"
    )]
    NeedsContainer,
    #[error("\"service create\" requires at least 1 argument: IMAGE [COMMAND] [ARG...] (or --runtime process -- CMD ARGS...)")]
    NoImage,
    #[error("--no-healthcheck conflicts with --health-cmd")]
    HealthConflict,
    #[error("invalid {flag} `{text}`: use NAME or source=NAME[,target=PATH][,uid=N][,gid=N][,mode=0444]")]
    Payload { flag: &'static str, text: String },
    #[error(transparent)]
    Spec(#[from] ServiceSpecError),
}
