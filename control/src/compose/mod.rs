//! Compose files for stacks (version 3.x and the Compose Specification):
//! parsing, variable interpolation, merging several `-c` files, the typed
//! model, and the stack's namespaced names as `docker stack deploy` gives
//! them.
//!
//! The flow: [`load`] parses each file into a located YAML tree, interpolates
//! it from an [`Environment`], merges the trees in order, and reads the
//! result into a [`Project`], with a [`Warning`] for every key it reads but
//! does not act on; [`plan`] names the project as a [`Stack`].
//!
//! This part is pure: it never talks to the network or the store and it
//! reads no file except through the [`FileReader`] it is given (the compose
//! files and the `env_file:`s they name). Turning a [`Stack`] into requests
//! is the deploy step's job, not this one's.

mod deploy;
mod dotenv;
mod error;
mod interpolate;
mod merge;
mod model;
mod mounts;
mod parts;
mod path;
mod ports;
mod project;
mod read;
mod service;
mod source;
mod stack;
mod top_level;
mod units;
mod yaml;

pub use dotenv::{parse_env_file, Environment};
pub use error::{ComposeError, Location, ResourceKind, Subject, Warning, WarningKind, YamlProblem};
pub use interpolate::{substitute, Substituted, TemplateError};
pub use model::*;
pub use project::{load, load_paths, ComposeFile, LoadOptions, Loaded};
pub use service::UNSUPPORTED_KEYS;
pub use source::{DiskFiles, FileReader, MemoryFiles, MAX_FILE_BYTES};
pub use stack::{
    check_stack_name, config_path, plan, secret_path, Stack, StackAttachment, StackFileReference,
    StackMount, StackNetwork, StackObject, StackService, StackVolume, DEFAULT_FILE_MODE,
    DEFAULT_NETWORK, DEFAULT_NETWORK_DRIVER, IMAGE_LABEL, MAX_SERVICE_NAME, NAMESPACE_LABEL,
};
pub use units::{parse_bytes, parse_duration};
