//! The objects of a swarm as users and agents see them.
//!
//! Each type validates itself; an invalid object never reaches the data plane.

mod mac;
mod network;

pub use mac::{MacAddr, MacParseError};
pub use network::{Endpoint, NetworkError, NetworkSpec, VNI_MAX, VNI_MIN, VXLAN_OVERHEAD};
