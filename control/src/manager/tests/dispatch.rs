//! The dispatcher: heartbeats on the leader and relayed by a follower,
//! assignments, task reports, down detection, and `service logs` through
//! the heartbeats.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use super::*;
use crate::api::{LogChunk, LogCursor, LogLine, LogQuery, LogStream, TaskReport};
use crate::objects::{Task, TaskState};

fn as_node(id: &str) -> Caller {
    Caller::Node {
        node_id: id.into(),
        role: Role::Worker,
    }
}

fn beat(node: &str, tasks: Vec<TaskReport>) -> Heartbeat {
    Heartbeat {
        node_id: node.into(),
        resources: None,
        tasks,
        logs: vec![],
        network_failures: None,
        build_failures: None,
        restart_window_ms: None,
    }
}

fn running(task: &Task) -> TaskReport {
    TaskReport {
        task_id: task.id.clone(),
        state: TaskState::Running,
        message: "started".into(),
        err: None,
        exit_code: None,
        pid: Some(7),
    }
}

/// Creates service `web` with `replicas` tasks and lets the orchestrator
/// place them; returns the tasks.
async fn placed(m: &TestManager, replicas: u64) -> Vec<Task> {
    create_service(m, spec_on("web", "", replicas))
        .await
        .unwrap();
    m.orchestrate_once().await.unwrap();
    m.orchestrate_once().await.unwrap();
    let tasks: Vec<Task> = m.store().read().all().unwrap();
    assert_eq!(tasks.len() as u64, replicas);
    tasks
}

#[tokio::test]
async fn a_heartbeat_gets_the_nodes_assignments_and_its_reports_move_tasks() {
    let swarm = Swarm::new(1, 2);
    let m = swarm.manager(1);
    let tasks = placed(&m, 4).await;
    // A worker's tasks (the manager runs some too).
    let node = tasks
        .iter()
        .filter_map(|t| t.node_id.clone())
        .find(|n| n.starts_with("node"))
        .unwrap();
    let mine: Vec<&Task> = tasks
        .iter()
        .filter(|t| t.node_id.as_deref() == Some(node.as_str()))
        .collect();
    let answer = m
        .heartbeat(&as_node(&node), beat(&node, vec![]))
        .await
        .unwrap();
    let assigned = answer.assignments.unwrap();
    assert_eq!(assigned.len(), mine.len());
    assert!(assigned.iter().all(|a| a.service_name == "web"));
    assert_eq!(answer.role, Role::Worker);
    assert_eq!(answer.managers, vec![manager_identity(1).api_addr()]);
    assert!(answer.gossip.is_some() && answer.networks.is_some());
    // Reports from the task's own node move it; from another they do not.
    let other = if node == "node001" {
        "node002"
    } else {
        "node001"
    };
    let reports: Vec<TaskReport> = mine.iter().map(|t| running(t)).collect();
    m.heartbeat(&as_node(other), beat(other, reports.clone()))
        .await
        .unwrap();
    m.orchestrate_once().await.unwrap();
    let store_tasks: Vec<Task> = swarm.store.read().all().unwrap();
    assert!(store_tasks
        .iter()
        .all(|t| t.status.state != TaskState::Running));
    m.heartbeat(&as_node(&node), beat(&node, reports))
        .await
        .unwrap();
    m.orchestrate_once().await.unwrap();
    let store_tasks: Vec<Task> = swarm.store.read().all().unwrap();
    let now_running = store_tasks
        .iter()
        .filter(|t| t.status.state == TaskState::Running)
        .count();
    assert_eq!(now_running, mine.len());
}

#[tokio::test]
async fn finished_tasks_are_history_and_unassigned_ones_are_not_sent() {
    let swarm = Swarm::new(1, 1);
    let m = swarm.manager(1);
    let tasks = placed(&m, 1).await;
    let mut done = tasks[0].clone();
    done.status.state = TaskState::Complete;
    let mut pending = tasks[0].clone();
    pending.id = "pending".into();
    pending.status.state = TaskState::Pending;
    swarm.store.apply(&Command::put(&done, None).unwrap());
    swarm.store.apply(&Command::put(&pending, None).unwrap());
    let node = done.node_id.clone().unwrap();
    let answer = m
        .heartbeat(&as_node(&node), beat(&node, vec![]))
        .await
        .unwrap();
    assert_eq!(answer.assignments, Some(vec![]));
    assert_eq!(answer.history, Some(vec![done.id]));
}

#[tokio::test]
async fn a_follower_relays_a_heartbeat_that_counts_for_its_node() {
    let swarm = Swarm::new(2, 1);
    let leader = swarm.manager(1);
    let follower = swarm.manager_linked(2, Some(leader.clone()));
    let tasks = placed(&leader, 1).await;
    let node = tasks[0].node_id.clone().unwrap();
    // The node was Down; its heartbeat reaches the follower only.
    let mut down = swarm.node(&node).unwrap();
    down.state = NodeState::Down;
    swarm.store.apply(&Command::put(&down, None).unwrap());
    let answer = follower
        .heartbeat(&as_node(&node), beat(&node, vec![running(&tasks[0])]))
        .await
        .unwrap();
    assert_eq!(answer.assignments.map(|a| a.len()), Some(1));
    // The leader counted it for the node, not for the follower.
    assert!(
        ready(&swarm.node(&node).unwrap()),
        "the node is Ready again"
    );
    leader.orchestrate_once().await.unwrap();
    let task: Task = swarm
        .store
        .read()
        .one::<Task>(&tasks[0].id)
        .unwrap()
        .unwrap()
        .value;
    assert_eq!(task.status.state, TaskState::Running);
    let seen = leader.dispatch().seen.clone();
    assert!(seen.contains_key(&node));
    assert!(
        !seen.contains_key("mgr2"),
        "the follower is not the one heard"
    );
    // A worker cannot relay for another node.
    let refused = leader
        .heartbeat(&as_node("node001"), beat("mgr2", vec![]))
        .await;
    assert_eq!(refused.unwrap_err().code(), ErrorCode::Permission);
}

#[test]
fn silent_nodes_go_down_sooner_when_gossip_lost_them_too() {
    let t0 = Instant::now();
    let nodes = [worker(1), worker(2), worker(3)];
    let mut down = worker(4);
    down.state = NodeState::Down;
    let gossip = GossipView::default();
    gossip.replace(HashMap::from([("node002".to_string(), true)]));
    let seen = HashMap::from([
        ("node001".to_string(), t0),
        ("node002".to_string(), t0),
        ("node003".to_string(), t0 + Duration::from_secs(2)),
    ]);
    let ids = |at: Duration| -> Vec<String> {
        let all: Vec<Node> = nodes.iter().cloned().chain([down.clone()]).collect();
        super::super::dispatcher::silent_nodes(&all, &seen, t0, &gossip, t0 + at, 0)
            .into_iter()
            .map(|n| n.id.clone())
            .collect()
    };
    assert!(ids(Duration::from_millis(1900)).is_empty());
    // node001: silent 2.1 s, gossip lost it. node002: gossip sees it.
    assert_eq!(ids(Duration::from_millis(2100)), vec!["node001"]);
    assert_eq!(ids(Duration::from_millis(4100)), vec!["node001", "node003"]);
    assert_eq!(
        ids(Duration::from_millis(10_100)),
        vec!["node001", "node002", "node003"]
    );
}

#[test]
fn a_node_within_its_announced_restart_window_is_not_marked_down() {
    let t0 = Instant::now();
    let mut restarting = worker(1);
    restarting.restarting_until_ms = Some(40_000);
    let silent = worker(2);
    let seen = HashMap::from([("node001".to_string(), t0), ("node002".to_string(), t0)]);
    let gossip = GossipView::default();
    let all = [restarting, silent];
    let ids = |at: Duration, now_ms: u64| -> Vec<String> {
        super::super::dispatcher::silent_nodes(&all, &seen, t0, &gossip, t0 + at, now_ms)
            .into_iter()
            .map(|n| n.id.clone())
            .collect()
    };
    // 29.9 s of silence, still in the window: only the other node.
    assert_eq!(ids(Duration::from_millis(29_900), 39_900), vec!["node002"]);
    // The window is over and it did not come back: Down at once.
    assert_eq!(
        ids(Duration::from_millis(30_100), 40_100),
        vec!["node001", "node002"]
    );
}

#[test]
fn a_restart_window_is_bounded_and_only_a_stopping_agent_opens_one() {
    let mut hb = beat("node001", vec![]);
    assert_eq!(
        super::super::dispatcher::restart_window_after(&hb, 1_000),
        None
    );
    hb.restart_window_ms = Some(30_000);
    assert_eq!(
        super::super::dispatcher::restart_window_after(&hb, 1_000),
        Some(31_000)
    );
    hb.restart_window_ms = Some(u64::MAX);
    assert_eq!(
        super::super::dispatcher::restart_window_after(&hb, 1_000),
        Some(1_000 + crate::api::MAX_RESTART_WINDOW_MS)
    );
}

#[tokio::test]
async fn a_restarting_node_keeps_its_tasks_until_it_is_back() {
    let swarm = Swarm::new(1, 2);
    let m = swarm.manager(1);
    let Some(long_ago) = Instant::now().checked_sub(Duration::from_secs(5)) else {
        return;
    };
    m.detect_down_once(long_ago).await;
    // node001's agent stops for a restart and says so in its last heartbeat.
    let mut last = beat("node001", vec![]);
    last.restart_window_ms = Some(30_000);
    m.heartbeat(&as_node("node001"), last).await.unwrap();
    m.heartbeat(&as_node("node002"), beat("node002", vec![]))
        .await
        .unwrap();
    let until = swarm.node("node001").unwrap().restarting_until_ms;
    assert!(until.is_some(), "the window is in the store");
    // 10 s of silence from both: the silent one goes Down, the
    // restarting one stays Ready.
    m.detect_down_once(Instant::now() + Duration::from_secs(10))
        .await;
    assert!(ready(&swarm.node("node001").unwrap()));
    assert_eq!(swarm.node("node002").unwrap().state, NodeState::Down);
    // Back: its next heartbeat closes the window.
    m.heartbeat(&as_node("node001"), beat("node001", vec![]))
        .await
        .unwrap();
    let back = swarm.node("node001").unwrap();
    assert!(ready(&back));
    assert_eq!(back.restarting_until_ms, None);
}

#[tokio::test]
async fn a_new_leader_waits_before_judging_anyone() {
    let swarm = Swarm::new(1, 1);
    let m = swarm.manager(1);
    let t0 = Instant::now();
    m.detect_down_once(t0).await;
    m.detect_down_once(t0 + Duration::from_millis(1500)).await;
    assert!(ready(&swarm.node("node001").unwrap()));
    m.detect_down_once(t0 + Duration::from_millis(2100)).await;
    assert_eq!(swarm.node("node001").unwrap().state, NodeState::Down);
}

#[tokio::test]
async fn the_leader_marks_silent_nodes_down_and_heartbeats_bring_them_back() {
    let swarm = Swarm::new(1, 2);
    let m = swarm.manager(1);
    // Leader for a while already.
    let Some(long_ago) = Instant::now().checked_sub(Duration::from_secs(5)) else {
        return;
    };
    m.detect_down_once(long_ago).await;
    m.heartbeat(&as_node("node001"), beat("node001", vec![]))
        .await
        .unwrap();
    let now = Instant::now();
    m.detect_down_once(now + Duration::from_millis(100)).await;
    assert!(ready(&swarm.node("node001").unwrap()), "it heartbeated");
    assert_eq!(swarm.node("node002").unwrap().state, NodeState::Down);
    // Gossip still sees node001 alive: it gets 10 s.
    swarm
        .gossip
        .replace(HashMap::from([("node001".to_string(), true)]));
    m.detect_down_once(now + Duration::from_secs(5)).await;
    assert!(ready(&swarm.node("node001").unwrap()));
    m.detect_down_once(now + Duration::from_secs(11)).await;
    assert_eq!(swarm.node("node001").unwrap().state, NodeState::Down);
    // Its next heartbeat brings it back.
    m.heartbeat(&as_node("node001"), beat("node001", vec![]))
        .await
        .unwrap();
    assert!(ready(&swarm.node("node001").unwrap()));
    // A follower never marks anyone.
    swarm.lead(2);
    m.detect_down_once(now + Duration::from_secs(60)).await;
    assert!(ready(&swarm.node("node001").unwrap()));
}

#[tokio::test]
async fn service_logs_go_out_in_a_heartbeat_answer_and_come_back_in_the_next() {
    let swarm = Swarm::new(1, 1);
    let m = swarm.manager(1);
    let tasks = placed(&m, 1).await;
    let node = tasks[0].node_id.clone().unwrap();
    let query = LogQuery {
        target: "web".into(),
        ..LogQuery::default()
    };
    let asking = {
        let m = m.clone();
        tokio::spawn(async move { local(&m, ApiRequest::ServiceLogs { query }).await })
    };
    // The node's next heartbeat carries the fetch...
    let fetch = loop {
        let answer = m
            .heartbeat(&as_node(&node), beat(&node, vec![]))
            .await
            .unwrap();
        if let Some(f) = answer.log_fetches.into_iter().next() {
            break f;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    };
    assert_eq!(fetch.task_id, tasks[0].id);
    // ...and the one after brings the lines.
    let mut hb = beat(&node, vec![]);
    hb.logs = vec![LogChunk {
        fetch_id: fetch.id,
        task_id: fetch.task_id.clone(),
        lines: vec![LogLine {
            stream: LogStream::Stdout,
            time_ns: None,
            text: "hello".into(),
        }],
        next: LogCursor {
            stdout: 6,
            stderr: 0,
        },
        ..LogChunk::default()
    }];
    m.heartbeat(&as_node(&node), hb).await.unwrap();
    let answer = asking.await.unwrap().unwrap();
    let ApiResponse::Logs { tasks: logs } = answer else {
        panic!("{answer:?}")
    };
    assert_eq!(logs.len(), 1);
    assert_eq!(logs[0].lines[0].text, "hello");
    assert_eq!(logs[0].next.stdout, 6);
    let missing = local(
        &m,
        ApiRequest::ServiceLogs {
            query: LogQuery {
                target: "nope".into(),
                ..LogQuery::default()
            },
        },
    )
    .await;
    assert_eq!(
        missing.unwrap_err().to_string(),
        "no such task or service: nope"
    );
}

fn task_on(node: &str, state: TaskState) -> Task {
    Task {
        id: "t1".into(),
        service_id: "s".into(),
        service_name: "web".into(),
        slot: 1,
        node_id: Some(node.into()),
        spec: crate::objects::TaskSpec::default(),
        spec_version: 1,
        networks: vec![],
        desired_state: TaskState::Running,
        status: crate::objects::TaskStatus {
            state,
            timestamp_ms: 5,
            ..Default::default()
        },
        not_before_ms: 0,
        attempt: 0,
        created_at_ms: 0,
        host_ports: Vec::new(),
    }
}

#[test]
fn reports_move_tasks_forward_only_and_only_from_their_node() {
    let mut t = task_on("n1", TaskState::Assigned);
    let report = |state| TaskReport {
        task_id: t.id.clone(),
        state,
        message: "started".into(),
        err: None,
        exit_code: None,
        pid: Some(42),
    };
    let (running, failed) = (report(TaskState::Running), report(TaskState::Failed));
    assert!(apply_report(&mut t, "n1", &running, 10));
    assert_eq!(
        (t.status.state, t.status.timestamp_ms, t.status.pid),
        (TaskState::Running, 10, Some(42))
    );
    // The same report again changes nothing.
    assert!(!apply_report(&mut t, "n1", &running, 11));
    assert!(!apply_report(&mut t, "n2", &failed, 12));
    let mut orphaned = task_on("n1", TaskState::Orphaned);
    assert!(!apply_report(&mut orphaned, "n1", &running, 13));
}

#[tokio::test]
async fn sandbox_and_port_failures_are_kept_bounded_and_shown_by_network_inspect() {
    use crate::objects::{BuildFailures, SandboxFailure};
    let swarm = Swarm::new(1, 2);
    let m = swarm.manager(1);
    let app = create_network(&m, "app").await;
    create_service(&m, spec_on("web", "app", 4)).await.unwrap();
    m.orchestrate_once().await.unwrap();
    m.orchestrate_once().await.unwrap();
    let tasks: Vec<Task> = m.store().read().all().unwrap();
    let node = tasks
        .iter()
        .filter_map(|t| t.node_id.clone())
        .find(|n| n.starts_with("node"))
        .unwrap();
    let mine = tasks
        .iter()
        .find(|t| t.node_id.as_deref() == Some(node.as_str()))
        .unwrap();
    let other = tasks
        .iter()
        .find(|t| t.node_id.as_deref() != Some(node.as_str()))
        .unwrap();
    let sandbox = |network: &str, task: &str| SandboxFailure {
        network: network.into(),
        task_id: task.into(),
        error: "x".repeat(2000),
    };
    let mut hb = beat(&node, vec![]);
    hb.build_failures = Some(BuildFailures {
        sandboxes: vec![
            sandbox(&app.id, &mine.id),
            // Not this node's task, not a network of the swarm: dropped.
            sandbox(&app.id, &other.id),
            sandbox("nonesuch", &mine.id),
        ],
        ports: [
            ("8080/tcp", "map full"),
            ("8080/sctp", "bad"),
            ("0/udp", "bad"),
            ("junk", "bad"),
        ]
        .into_iter()
        .map(|(p, e)| (p.to_string(), e.to_string()))
        .collect(),
    });
    m.heartbeat(&as_node(&node), hb.clone()).await.unwrap();
    let kept = swarm.node(&node).unwrap().build_failures;
    assert_eq!(kept.sandboxes.len(), 1);
    assert_eq!(kept.sandboxes[0].task_id, mine.id);
    assert_eq!(
        kept.sandboxes[0].error.chars().count(),
        super::super::dispatcher::MAX_NETWORK_ERROR_CHARS
    );
    assert_eq!(kept.ports.keys().collect::<Vec<_>>(), ["8080/tcp"]);

    let inspect = |name: &str| ApiRequest::NetworkInspect {
        name_or_id: name.into(),
    };
    let ApiResponse::Network { network } = local(&m, inspect("app")).await.unwrap() else {
        panic!("not a network")
    };
    assert_eq!(network.failures.len(), 1, "{:?}", network.failures);
    let failure = &network.failures[0];
    assert_eq!(failure.node_id, node);
    assert_eq!(failure.task_id.as_deref(), Some(mine.id.as_str()));
    assert_eq!(failure.port, None);
    let json = serde_json::to_value(&*network).unwrap();
    assert_eq!(json["Failures"][0]["TaskID"], mine.id.as_str());
    // The mesh's ports show on the ingress network.
    let ApiResponse::Network { network } = local(&m, inspect("ingress")).await.unwrap() else {
        panic!("not a network")
    };
    let ports: Vec<(Option<&str>, &str)> = network
        .failures
        .iter()
        .map(|f| (f.port.as_deref(), f.error.as_str()))
        .collect();
    assert_eq!(ports, [(Some("8080/tcp"), "map full")]);

    // Level: an empty report clears them.
    hb.build_failures = Some(BuildFailures::default());
    m.heartbeat(&as_node(&node), hb).await.unwrap();
    assert!(swarm.node(&node).unwrap().build_failures.is_empty());
    let ApiResponse::Network { network } = local(&m, inspect("app")).await.unwrap() else {
        panic!("not a network")
    };
    assert!(network.failures.is_empty());
}
