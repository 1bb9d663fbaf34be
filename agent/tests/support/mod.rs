//! Helpers shared by the agent's root tests.

pub mod container;
pub mod registry;
