//! Types shared by shoal's eBPF programs and the agent: map names, map keys and
//! values, and the constants both sides must agree on. Every type here is
//! `#[repr(C)]` with explicit padding, so the bytes the kernel sees are the
//! bytes both sides wrote.
#![cfg_attr(not(test), no_std)]

pub mod flow;
pub mod mesh;
