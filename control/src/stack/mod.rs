//! `stack deploy`'s work between a compose file and the managers, as the
//! docker CLI does it on the client side: each service of a named
//! [`crate::compose::Stack`] becomes the Docker Engine `ServiceSpec`
//! `docker stack deploy` would post ([`convert`]), which
//! [`crate::engine`]'s `to_shoal` turns into shoal's spec, so both clients
//! give the same services by construction; networks, secrets and configs
//! become their create requests; and [`plan`] compares all of it with what
//! the cluster has, to create what is missing, update only what changed
//! and (with `--prune`) remove what the file no longer names.
//!
//! This part is pure: it reads no file and sends no request. The CLI reads
//! the files, asks the managers what exists, and carries out the plan.

mod convert;
mod error;
mod plan;

pub use convert::{network_request, service_spec, ServiceConversion};
pub use error::StackError;
pub use plan::{
    plan_deploy, plan_remove, stack_names, Cluster, DeployOptions, DeployPlan, DesiredObject,
    DesiredService, RemovePlan, ResolveImage, Step,
};
