//! Raft groups of real members in one process: forming, replicating,
//! restarting, losing leaders and quorum, catching up by snapshot, forced
//! recovery and optimistic concurrency.

mod harness;

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::json;

use super::*;
use crate::store::{force_new_cluster, Command, Plain, Response};
use harness::{set, tuning, Cluster};

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn three_members_replicate_forward_and_restart_from_disk() {
    let mut c = Cluster::new(3, tuning()).await;
    let leader = c.wait_leader(Duration::from_secs(5)).await;
    assert_eq!(c.node(2).leader().map(|(id, _)| id), Some(leader));
    let members = c.node(leader).members();
    assert_eq!(members.len(), 3, "{members:?}");
    assert!(members.iter().all(|m| m.voter));

    // A follower sends writers to the leader, with its address.
    let follower = *c.live_ids().iter().find(|id| **id != leader).unwrap();
    match c.node(follower).write(set("node", "x", json!(0))).await {
        Err(WriteError::ForwardToLeader {
            leader_id,
            leader_addr,
        }) => {
            assert_eq!(leader_id, leader);
            assert_eq!(leader_addr, c.addrs[&leader]);
        }
        other => panic!("expected a forward to the leader, got {other:?}"),
    }

    let mut last = 0;
    for i in 0..20 {
        match c.node(leader).write(set("node", i, json!({"n": i}))).await {
            Ok(Response::Ok { version }) => last = version,
            other => panic!("write {i}: {other:?}"),
        }
    }
    c.wait_applied(last, Duration::from_secs(5)).await;
    for id in c.live_ids() {
        assert_eq!(c.node(id).read().count("node"), 20, "member {id}");
    }

    // A stopped follower keeps its state on disk and catches up after.
    c.kill(follower).await;
    for i in 20..25 {
        last = match c
            .client()
            .write(set("node", i, json!({"n": i})), Duration::from_secs(10))
            .await
        {
            Ok(Response::Ok { version }) => version,
            other => panic!("write {i}: {other:?}"),
        };
    }
    c.start(follower).await;
    let restarted = c.node(follower).read();
    assert_eq!(restarted.count("node"), 20, "state read back from disk");
    assert_eq!(
        restarted
            .get_as::<serde_json::Value>("node", "7")
            .unwrap()
            .unwrap()
            .value,
        json!({"n": 7})
    );
    c.wait_applied(last, Duration::from_secs(10)).await;
    assert_eq!(c.node(follower).read().count("node"), 25);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_new_leader_is_elected_quickly_after_the_leader_dies() {
    let mut c = Cluster::new(3, tuning()).await;
    let mut times = Vec::new();
    for round in 0..7 {
        let old = c.wait_leader(Duration::from_secs(5)).await;
        let old_term = c.node(old).metrics().term;
        let killed_at = Instant::now();
        c.kill(old).await;
        let new = c.wait_leader(Duration::from_secs(5)).await;
        let took = killed_at.elapsed();
        assert_ne!(new, old);
        assert!(c.node(new).metrics().term > old_term);
        println!("failover round {round}: manager {old} -> {new} in {took:?}");
        times.push(took);
        // The new leader commits with one member down, and the old one rejoins.
        let resp = c
            .node(new)
            .write(set("round", round, json!(round)))
            .await
            .unwrap();
        c.start(old).await;
        if let Response::Ok { version } = resp {
            c.wait_applied(version, Duration::from_secs(10)).await;
        }
    }
    // The last new leader counted the leader it knew before the last
    // failover and itself.
    let last = c.wait_leader(Duration::from_secs(5)).await;
    let changes = c.node(last).metrics().leader_changes;
    assert!(changes >= 2, "the leader counted {changes} leader changes");
    let median = median(times.clone());
    println!(
        "leader failover: median {median:?} over {} runs (all: {times:?})",
        times.len()
    );
    assert!(
        median < Duration::from_secs(2),
        "median failover {median:?}"
    );
}

#[test]
fn a_leader_change_is_a_new_known_leader() {
    use crate::raft::node::is_leader_change;
    assert!(is_leader_change(None, Some(1)));
    assert!(is_leader_change(Some(1), Some(2)));
    assert!(!is_leader_change(Some(1), Some(1)));
    assert!(!is_leader_change(Some(1), None));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn without_quorum_writes_fail_fast_and_reads_still_answer() {
    // Once with the leader among the dead, once with it the survivor.
    for leader_dies in [true, false] {
        let mut c = Cluster::new(3, tuning()).await;
        let leader = c.wait_leader(Duration::from_secs(5)).await;
        let Response::Ok { version } = c
            .node(leader)
            .write(set("cluster", "c", json!("before")))
            .await
            .unwrap()
        else {
            panic!("write refused");
        };
        c.wait_applied(version, Duration::from_secs(5)).await;
        let survivor = if leader_dies {
            *c.live_ids().iter().find(|id| **id != leader).unwrap()
        } else {
            leader
        };
        for id in c.live_ids() {
            if id != survivor {
                c.kill(id).await;
            }
        }
        // Past the lease and the election timeout, nobody can lead.
        tokio::time::sleep(Duration::from_millis(1500)).await;
        let node = c.node(survivor);
        let start = Instant::now();
        let err = node
            .write(set("cluster", "c", json!("after")))
            .await
            .unwrap_err();
        let took = start.elapsed();
        println!("leader_dies={leader_dies}: write failed after {took:?}: {err}");
        assert!(
            matches!(
                err,
                WriteError::NoLeader { .. } | WriteError::Timeout { .. }
            ),
            "{err:?}"
        );
        assert!(
            err.to_string()
                .contains("no quorum: 1 of 3 managers reachable"),
            "{err}"
        );
        assert!(took < Duration::from_secs(4), "{took:?}");
        let objects = node.read();
        assert_eq!(
            objects.get("cluster", "c").unwrap().value,
            json!("before"),
            "reads answer without quorum"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn acknowledged_writes_survive_the_loss_of_the_leader() {
    let mut c = Cluster::new(3, tuning()).await;
    let leader = c.wait_leader(Duration::from_secs(5)).await;
    let client = c.client();
    let acked = Arc::new(Mutex::new(Vec::new()));
    let mut writers = Vec::new();
    for w in 0..4 {
        let (client, acked) = (client.clone(), acked.clone());
        writers.push(tokio::spawn(async move {
            let mut failed = 0;
            for i in 0..150 {
                let id = format!("w{w}-{i}");
                match client
                    .write(set("task", &id, json!(i)), Duration::from_secs(10))
                    .await
                {
                    Ok(Response::Ok { .. }) => acked.lock().unwrap().push(id),
                    Ok(other) => panic!("{other:?}"),
                    Err(_) => failed += 1,
                }
            }
            failed
        }));
    }
    // Kill the leader in the middle of the stream.
    while acked.lock().unwrap().len() < 150 {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    c.kill(leader).await;
    let mut failed = 0;
    for w in writers {
        failed += w.await.unwrap();
    }
    let acked = acked.lock().unwrap().clone();
    println!(
        "{} writes acknowledged, {failed} gave up, leader {leader} killed after 150",
        acked.len()
    );
    assert!(acked.len() > 300, "the survivors kept accepting writes");

    let start = Instant::now();
    for id in c.live_ids() {
        loop {
            let objects = c.node(id).read();
            let missing: Vec<&String> = acked
                .iter()
                .filter(|t| objects.get("task", t).is_none())
                .collect();
            if missing.is_empty() {
                break;
            }
            assert!(
                start.elapsed() < Duration::from_secs(10),
                "member {id} lacks {} acknowledged writes, e.g. {:?}",
                missing.len(),
                &missing[..missing.len().min(5)]
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn five_members_tolerate_two_losses_but_not_three() {
    let mut c = Cluster::new(5, tuning()).await;
    let leader = c.wait_leader(Duration::from_secs(5)).await;
    let other = *c.live_ids().iter().find(|id| **id != leader).unwrap();
    c.kill(leader).await;
    c.kill(other).await;
    let resp = c
        .client()
        .write(set("service", "web", json!(1)), Duration::from_secs(10))
        .await;
    assert!(matches!(resp, Ok(Response::Ok { .. })), "{resp:?}");

    let third = c.wait_leader(Duration::from_secs(5)).await;
    c.kill(third).await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    for id in c.live_ids() {
        let start = Instant::now();
        let err = c
            .node(id)
            .write(set("service", "web", json!(2)))
            .await
            .unwrap_err();
        assert!(
            matches!(
                err,
                WriteError::NoLeader { .. } | WriteError::Timeout { .. }
            ),
            "{err:?}"
        );
        assert!(
            err.to_string()
                .contains("no quorum: 2 of 5 managers reachable"),
            "{err}"
        );
        assert!(start.elapsed() < Duration::from_secs(4));
        assert_eq!(
            c.node(id).read().get("service", "web").unwrap().value,
            json!(1)
        );
    }
}

/// The state is larger than 16 MiB and the log behind it is purged, so the
/// new member can only catch up through a snapshot, streamed in 1 MiB chunks
/// with a 1 s deadline per chunk, over a link slow enough (8 MiB/s) that the
/// whole transfer takes longer than that: Swarm's fixed deadline failure.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_new_voter_catches_up_through_a_large_chunked_snapshot() {
    let tuning = RaftTuning {
        snapshot_every: 8,
        keep_logs_after_snapshot: 0,
        snapshot_chunk_timeout: Duration::from_secs(1),
        write_timeout: Duration::from_secs(10),
        ..tuning()
    };
    let mut c = Cluster::empty(tuning);
    c.start(1).await;
    c.node(1).initialize().await.unwrap();
    let blob = "x".repeat(8 << 10);
    let (batches, per_batch) = (22, 100);
    for b in 0..batches {
        let cmd = Command::Batch(
            (0..per_batch)
                .map(|i| set("blob", format!("{b}-{i}"), json!(blob)))
                .collect(),
        );
        assert!(c.node(1).write(cmd).await.unwrap().is_ok());
    }
    let total = batches * per_batch;
    // Let the policy snapshot and purge.
    let start = Instant::now();
    while c.node(1).metrics().purged_index.is_none() {
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "log never purged"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    c.start_throttled(2, Some(8 << 20)).await;
    let started = Instant::now();
    let addr = c.addrs[&2].clone();
    c.node(1).add_voter(2, &addr).await.unwrap();
    let took = started.elapsed();
    let stats = c.node(2).service_stats();
    let chunks = stats
        .snapshot_chunks_received
        .load(std::sync::atomic::Ordering::Relaxed);
    let bytes: usize = c
        .node(1)
        .read()
        .list("blob")
        .map(|(_, v)| v.value.as_str().map_or(0, str::len))
        .sum();
    let installed = stats
        .snapshots_installed
        .load(std::sync::atomic::Ordering::Relaxed);
    let largest = stats
        .largest_snapshot_bytes
        .load(std::sync::atomic::Ordering::Relaxed);
    let longest = stats
        .longest_snapshot_transfer_ms
        .load(std::sync::atomic::Ordering::Relaxed);
    println!(
        "new voter caught up on {bytes} bytes of objects in {took:?}: \
         {installed} snapshot(s) installed, the largest {largest} bytes, {chunks} chunks in all, \
         longest transfer {longest} ms with a 1000 ms limit per chunk"
    );
    // One transfer of 16+ chunks, each within 1 s, the whole taking longer.
    assert!(largest >= 16 << 20, "largest snapshot {largest} bytes");
    assert!(longest > 1000, "longest transfer {longest} ms");
    assert!(bytes >= 16 << 20);
    assert_eq!(c.node(2).read().count("blob"), total);
    assert!(c.node(2).members().iter().all(|m| m.voter));

    // The new voter takes part in later writes.
    let Response::Ok { version } = c
        .node(1)
        .write(set("node", "after", json!(1)))
        .await
        .unwrap()
    else {
        panic!("write refused");
    };
    c.wait_applied(version, Duration::from_secs(5)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn force_new_cluster_keeps_every_object_and_accepts_writes_alone() {
    let mut c = Cluster::new(3, tuning()).await;
    let leader = c.wait_leader(Duration::from_secs(5)).await;
    let mut last = 0;
    for i in 0..10 {
        if let Ok(Response::Ok { version }) =
            c.node(leader).write(set("service", i, json!(i))).await
        {
            last = version;
        }
    }
    c.wait_applied(last, Duration::from_secs(5)).await;
    let survivor = *c.live_ids().iter().find(|id| **id != leader).unwrap();
    for id in c.live_ids() {
        c.kill(id).await;
    }

    let addr = c.addrs[&survivor].clone();
    let kept = force_new_cluster(&c.dir(survivor), survivor, &addr, Arc::new(Plain)).unwrap();
    assert_eq!(kept.objects, 10);
    c.start(survivor).await;
    assert_eq!(c.wait_leader(Duration::from_secs(5)).await, survivor);
    let node = c.node(survivor);
    assert_eq!(node.read().count("service"), 10);
    assert_eq!(
        node.members(),
        vec![Member {
            raft_id: survivor,
            addr,
            voter: true
        }]
    );
    let resp = node.write(set("service", "new", json!(1))).await.unwrap();
    assert!(
        matches!(resp, Response::Ok { version } if version > last),
        "{resp:?}"
    );

    // Another member's id is refused on this directory.
    c.kill(survivor).await;
    let err = force_new_cluster(
        &c.dir(survivor),
        survivor + 10,
        "127.0.0.1:1",
        Arc::new(Plain),
    )
    .unwrap_err();
    assert!(
        matches!(err, crate::store::StoreError::WrongMember { .. }),
        "{err}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn expect_version_makes_conflicting_writes_fail() {
    let c = Cluster::new(1, tuning()).await;
    let node = c.node(1);
    let create = |v: i64, expect| Command::Set {
        kind: "node".into(),
        id: "n1".into(),
        value: json!(v),
        expect_version: expect,
    };
    let Response::Ok { version: v1 } = node.write(create(1, Some(0))).await.unwrap() else {
        panic!("create refused");
    };
    assert_eq!(
        node.write(create(2, Some(0))).await.unwrap(),
        Response::Conflict {
            kind: "node".into(),
            id: "n1".into(),
            current: Some(v1)
        }
    );
    let Response::Ok { version: v2 } = node.write(create(2, Some(v1))).await.unwrap() else {
        panic!("update refused");
    };
    // Two writers that read v1: the second loses.
    assert!(matches!(
        node.write(create(3, Some(v1))).await.unwrap(),
        Response::Conflict { current: Some(v), .. } if v == v2
    ));
    assert!(matches!(
        node.write(Command::delete("node", "n1", Some(v1)))
            .await
            .unwrap(),
        Response::Conflict { .. }
    ));
    assert!(node
        .write(Command::delete("node", "n1", Some(v2)))
        .await
        .unwrap()
        .is_ok());
    assert!(matches!(
        node.write(Command::delete("node", "n1", None))
            .await
            .unwrap(),
        Response::NotFound { .. }
    ));
    // Refused before reaching the log.
    assert!(matches!(
        node.write(set("", "x", json!(1))).await,
        Err(WriteError::Invalid(_))
    ));
    let huge = set("blob", "big", json!("x".repeat(MAX_COMMAND_BYTES)));
    assert!(matches!(
        node.write(huge).await,
        Err(WriteError::TooLarge { .. })
    ));
}

/// `cargo test -p shoal-control --release -- --ignored --nocapture write_throughput`
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
#[ignore = "benchmark: run with --ignored --nocapture"]
async fn write_throughput() {
    let members: u64 = std::env::var("MEMBERS")
        .ok()
        .and_then(|m| m.parse().ok())
        .unwrap_or(3);
    let c = Cluster::new(members, tuning()).await;
    let leader = c.node(c.wait_leader(Duration::from_secs(5)).await);
    for writers in [1usize, 64] {
        let run = Duration::from_secs(5);
        let start = Instant::now();
        let mut tasks = Vec::new();
        for w in 0..writers {
            let leader = leader.clone();
            tasks.push(tokio::spawn(async move {
                let mut n = 0u64;
                while start.elapsed() < run {
                    let cmd = set(
                        "task",
                        format!("{w}-{n}"),
                        json!({"state": "running", "n": n}),
                    );
                    assert!(leader.write(cmd).await.unwrap().is_ok());
                    n += 1;
                }
                n
            }));
        }
        let mut total = 0;
        for t in tasks {
            total += t.await.unwrap();
        }
        let secs = start.elapsed().as_secs_f64();
        println!(
            "3 managers, {writers} concurrent writers: {total} writes in {secs:.1}s = {:.0} writes/s",
            total as f64 / secs
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn removed_voters_leave_the_group_and_a_removed_leader_hands_over() {
    let mut c = Cluster::new(3, tuning()).await;
    let leader = c.wait_leader(Duration::from_secs(5)).await;
    let follower = *c.live_ids().iter().find(|id| **id != leader).unwrap();

    c.node(leader).remove_voter(follower).await.unwrap();
    let ids = |n: &RaftNode| n.members().iter().map(|m| m.raft_id).collect::<Vec<_>>();
    assert!(!ids(&c.node(leader)).contains(&follower));
    c.kill(follower).await;
    // Two voters left: both are needed, and both are there.
    let resp = c.node(leader).write(set("node", "a", json!(1))).await;
    assert!(matches!(resp, Ok(Response::Ok { .. })), "{resp:?}");
    // Removing it again does nothing.
    c.node(leader).remove_voter(follower).await.unwrap();

    // The leader removes itself: the other member takes over alone.
    c.node(leader).remove_voter(leader).await.unwrap();
    let other = *c.live_ids().iter().find(|id| **id != leader).unwrap();
    let start = Instant::now();
    while c.node(other).metrics().role != RaftRole::Leader {
        assert!(start.elapsed() < Duration::from_secs(5), "no hand-over");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(ids(&c.node(other)), vec![other]);
    let resp = c.node(other).write(set("node", "b", json!(2))).await;
    assert!(matches!(resp, Ok(Response::Ok { .. })), "{resp:?}");
    assert_eq!(c.node(other).read().count("node"), 2);
}
