//! Port 2377 as an attacker sees it: TLS lets anyone in without a
//! certificate (joining nodes have none), so every method must check its
//! caller. Raft accepts only the current voter the message names.

use std::path::{Path, PathBuf};
use std::time::Duration;

use shoal_control::api::ApiRequest;
use shoal_tests::swarm::{
    cli, cli_ok, form, leader, nodes, reachable_managers, start_agents, wait_for,
};
use shoal_tests::{require_root, Host, Underlay};

use crate::support::{assert_refused, ca, call, identity, raft_id, save_identity, tls};

/// The leader's term, read with a vote request a voter may make (a stale
/// term changes nothing): the legitimate call this suite's refusals are
/// measured against.
fn term(attacker: &Host, target: &str, ca: &Path, voter: &(PathBuf, PathBuf), id: u64) -> u64 {
    let probe = call(
        attacker,
        "raft-vote",
        &tls(target, ca, Some(voter)),
        &["--term", "0", "--candidate", &id.to_string()],
    );
    assert_eq!(
        probe["ok"], true,
        "a current voter's call was refused: {probe}"
    );
    probe["term"]
        .as_u64()
        .unwrap_or_else(|| panic!("no term in {probe}"))
}

/// Three managers, a worker and a host without an agent (the attacker's).
/// Raft calls with no certificate, a worker's, a voter's naming another
/// member, a demoted manager's kept certificate and a removed node's are
/// all refused for who made them, and the leader's term never moves.
#[test]
fn raft_calls_from_anyone_but_the_named_current_voter_are_refused() {
    require_root();
    let ul = Underlay::builder().hosts(5).build().expect("underlay");
    let h: Vec<&Host> = ul.hosts().iter().collect();
    let attacker = h[4];
    start_agents(&h[..4]);
    form(h[0], &[h[1], h[2]], &[h[3]]);
    assert!(
        wait_for(Duration::from_secs(30), || reachable_managers(h[0]) == 3),
        "three managers never became reachable"
    );
    let leader_name = leader(h[0]).expect("a leader");
    let leader_host = *h
        .iter()
        .find(|x| x.name() == leader_name)
        .expect("leader host");
    let others: Vec<&Host> = h[..3]
        .iter()
        .copied()
        .filter(|x| x.name() != leader_name)
        .collect();
    let (voter, doomed) = (others[0], others[1]);
    let target = format!("{}:2377", leader_host.addr());
    let ca = ca(h[0]);
    let voter_id = save_identity(voter, "voter");
    let worker_id = save_identity(h[3], "worker");
    let doomed_id = save_identity(doomed, "doomed");
    let (voter_raft, doomed_raft) = (raft_id(voter), raft_id(doomed));
    let leader_raft = raft_id(leader_host);
    let term0 = term(attacker, &target, &ca, &voter_id, voter_raft);

    let no_cert = tls(&target, &ca, None);
    let big = (1u64 << 40).to_string();
    let attacks = [
        (
            "AppendEntries with no certificate",
            call(
                attacker,
                "raft-append",
                &no_cert,
                &["--term", "1000", "--leader", &voter_raft.to_string()],
            ),
        ),
        (
            "Vote with no certificate",
            call(
                attacker,
                "raft-vote",
                &no_cert,
                &["--term", "1000", "--candidate", &voter_raft.to_string()],
            ),
        ),
        (
            "InstallSnapshot of 1 TiB with no certificate",
            call(
                attacker,
                "raft-snapshot",
                &no_cert,
                &[
                    "--term",
                    "1000",
                    "--leader",
                    &voter_raft.to_string(),
                    "--size",
                    &big,
                ],
            ),
        ),
        (
            "AppendEntries with a worker's certificate",
            call(
                attacker,
                "raft-append",
                &tls(&target, &ca, Some(&worker_id)),
                &["--term", "1000", "--leader", &leader_raft.to_string()],
            ),
        ),
        (
            "AppendEntries with a voter's certificate naming another member",
            call(
                attacker,
                "raft-append",
                &tls(&target, &ca, Some(&voter_id)),
                &["--term", "1000", "--leader", &doomed_raft.to_string()],
            ),
        ),
    ];
    for (what, outcome) in &attacks {
        assert_refused(outcome, what);
    }
    assert_eq!(term(attacker, &target, &ca, &voter_id, voter_raft), term0);
    assert_eq!(leader(h[0]).as_deref(), Some(leader_name.as_str()));

    // A manager demoted: its kept manager certificate no longer speaks Raft.
    cli_ok(leader_host, &["node", "demote", doomed.name()]);
    assert!(
        wait_for(Duration::from_secs(30), || identity(doomed)["role"]
            == "worker"),
        "{} never took its worker role",
        doomed.name()
    );
    let term1 = term(attacker, &target, &ca, &voter_id, voter_raft);
    let demoted = tls(&target, &ca, Some(&doomed_id));
    let raft = doomed_raft.to_string();
    let outcome = call(
        attacker,
        "raft-append",
        &demoted,
        &["--term", "1000", "--leader", &raft],
    );
    assert_refused(
        &outcome,
        "AppendEntries with a demoted manager's certificate",
    );
    assert!(
        outcome["message"]
            .as_str()
            .unwrap_or("")
            .contains("worker now"),
        "{outcome}"
    );
    let outcome = call(
        attacker,
        "raft-vote",
        &demoted,
        &["--term", "1000", "--candidate", &raft],
    );
    assert_refused(&outcome, "Vote with a demoted manager's certificate");

    // Removed: refused as a stranger.
    cli_ok(leader_host, &["node", "rm", "--force", doomed.name()]);
    assert!(
        wait_for(Duration::from_secs(15), || nodes(leader_host).len() == 3),
        "{} was never removed",
        doomed.name()
    );
    let outcome = call(
        attacker,
        "raft-append",
        &demoted,
        &["--term", "1000", "--leader", &raft],
    );
    assert_refused(&outcome, "AppendEntries with a removed node's certificate");
    assert!(
        outcome["message"]
            .as_str()
            .unwrap_or("")
            .contains("not in this swarm"),
        "{outcome}"
    );
    assert_eq!(term(attacker, &target, &ca, &voter_id, voter_raft), term1);
    assert_eq!(leader(h[0]).as_deref(), Some(leader_name.as_str()));
    cli_ok(
        leader_host,
        &[
            "node",
            "update",
            "--label-add",
            "after=attacks",
            h[3].name(),
        ],
    );
}

/// Control calls with a demoted manager's kept certificate, and with a
/// removed node's, are refused at once (the store is asked on every call,
/// not only the certificate's OU).
#[test]
fn control_calls_with_a_demoted_or_removed_certificate_are_refused() {
    require_root();
    let ul = Underlay::builder().hosts(3).build().expect("underlay");
    let h: Vec<&Host> = ul.hosts().iter().collect();
    let attacker = h[2];
    start_agents(&h[..2]);
    form(h[0], &[h[1]], &[]);
    assert!(
        wait_for(Duration::from_secs(30), || reachable_managers(h[0]) == 2),
        "two managers never became reachable"
    );
    let target = format!("{}:2377", h[0].addr());
    let ca = ca(h[0]);
    let kept = save_identity(h[1], "kept");
    let list = serde_json::to_string(&ApiRequest::NodeList).expect("json");
    let as_kept = tls(&target, &ca, Some(&kept));
    let before = call(attacker, "control", &as_kept, &["--request", &list]);
    assert_eq!(
        before["ok"], true,
        "a manager's own call was refused: {before}"
    );

    // At once: the demotion's commit is what the next call is checked
    // against, before the node even learns its new role.
    cli_ok(h[0], &["node", "demote", h[1].name()]);
    assert_refused(
        &call(attacker, "control", &as_kept, &["--request", &list]),
        "node ls with a demoted manager's certificate, right after the demotion",
    );
    assert!(
        wait_for(Duration::from_secs(30), || identity(h[1])["role"]
            == "worker"),
        "h2 never took its worker role"
    );
    assert_refused(
        &call(attacker, "control", &as_kept, &["--request", &list]),
        "node ls with a demoted manager's certificate",
    );
    cli_ok(h[0], &["node", "rm", "--force", h[1].name()]);
    assert_refused(
        &call(attacker, "control", &as_kept, &["--request", &list]),
        "node ls with a removed node's certificate",
    );
    assert!(cli(h[0], &["node", "ls"]).status.success());
}
