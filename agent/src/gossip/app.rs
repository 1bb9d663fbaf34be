//! The hook that lets application state (the endpoint tables) ride the
//! simulation: each node holds an `AppNode` that hears member changes and
//! broadcasts, may broadcast and exchange stream messages itself, and is
//! rebuilt empty when its node restarts (`TableNode` is the real one).

use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;

use crate::gossip::membership::MemberId;

/// What an application asks the simulated node to do.
#[derive(Clone, Debug, PartialEq)]
pub enum AppOutput {
    /// Gossip this payload to every member (`Membership::broadcast`).
    Broadcast(Bytes),
    /// Send this to `to` over a stream (anti-entropy); it arrives in
    /// `AppNode::on_stream` there.
    Stream { to: SocketAddr, bytes: Bytes },
}

/// Application state held by each simulated node.
pub trait AppNode {
    /// A member came up (or back with a new identity).
    fn on_member_up(&mut self, _member: &MemberId, _now: Duration) -> Vec<AppOutput> {
        Vec::new()
    }
    /// A member was declared dead.
    fn on_member_down(&mut self, _member: &MemberId, _now: Duration) -> Vec<AppOutput> {
        Vec::new()
    }
    /// A payload another member broadcast.
    fn on_broadcast(&mut self, _payload: &[u8], _now: Duration) -> Vec<AppOutput> {
        Vec::new()
    }
    /// A stream message from another member's application.
    fn on_stream(&mut self, _from: SocketAddr, _bytes: &[u8], _now: Duration) -> Vec<AppOutput> {
        Vec::new()
    }
    /// Called on every membership tick (about once a second).
    fn on_tick(&mut self, _now: Duration) -> Vec<AppOutput> {
        Vec::new()
    }
}

/// No application state: membership only.
#[derive(Clone, Copy, Debug, Default)]
pub struct NoApp;

impl AppNode for NoApp {}
