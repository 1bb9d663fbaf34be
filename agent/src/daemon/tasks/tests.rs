//! The task runner against the recording fake runtime and fake sandboxes.

use std::sync::Mutex;

use shoal_control::objects::{TaskAttachment, TaskSpec};

use super::*;
use crate::executor::FakeRuntime;

#[derive(Default)]
struct FakeSandboxes {
    attached: Mutex<Vec<String>>,
    detached: Mutex<Vec<String>>,
    /// `serve` calls: (task id, serving).
    served: Mutex<Vec<(String, bool)>>,
}

#[tonic::async_trait]
impl Sandboxes for FakeSandboxes {
    async fn attach(&self, a: &Assignment) -> anyhow::Result<PathBuf> {
        if a.networks.iter().any(|n| n.network == "missing") {
            anyhow::bail!("network missing is not known on this node");
        }
        self.attached.lock().unwrap().push(a.task_id.clone());
        Ok(PathBuf::from(format!("/run/netns/sb-{}", a.task_id)))
    }
    async fn detach(&self, task_id: &str) -> anyhow::Result<()> {
        self.detached.lock().unwrap().push(task_id.to_string());
        Ok(())
    }
    async fn serve(&self, a: &Assignment, serving: bool) -> anyhow::Result<()> {
        self.served
            .lock()
            .unwrap()
            .push((a.task_id.clone(), serving));
        Ok(())
    }
    fn listens(&self, _: u32, _: &Assignment) -> bool {
        true
    }
    fn resolv_conf(&self, _: &Assignment) -> String {
        "nameserver 192.0.2.53\n".into()
    }
}

fn assignment(id: &str, desired: TaskState, network: &str) -> Assignment {
    Assignment {
        task_id: id.into(),
        name: format!("web.{id}"),
        service_id: "s".into(),
        service_name: "web".into(),
        desired_state: desired,
        spec: TaskSpec {
            command: vec!["serve".into()],
            env: vec!["A=1".into()],
            ..TaskSpec::default()
        },
        networks: vec![TaskAttachment {
            network: network.into(),
            ip: "10.0.0.2".parse().unwrap(),
            vip: None,
            aliases: Vec::new(),
        }],
        ports: vec![],
        secrets: vec![],
        configs: vec![],
    }
}

struct Rig {
    runtime: Arc<FakeRuntime>,
    sandboxes: Arc<FakeSandboxes>,
    assign: watch::Sender<Option<Vec<Assignment>>>,
    history: watch::Sender<Option<Vec<String>>>,
    reports: watch::Receiver<Vec<TaskReport>>,
    runner: TaskRunner,
}

async fn rig() -> Rig {
    rig_on(Arc::new(FakeRuntime::new())).await
}

async fn rig_on(runtime: Arc<FakeRuntime>) -> Rig {
    let sandboxes = Arc::new(FakeSandboxes::default());
    let (assign, assignments) = watch::channel(None);
    let (history, history_rx) = watch::channel(None);
    let (reports_tx, reports) = watch::channel(Vec::new());
    let runner = TaskRunner::start(
        runtime.clone(),
        sandboxes.clone(),
        assignments,
        history_rx,
        reports_tx,
    )
    .await;
    Rig {
        runtime,
        sandboxes,
        assign,
        history,
        reports,
        runner,
    }
}

impl Rig {
    /// Waits (bounded) until the reports satisfy `cond`.
    async fn until(&mut self, cond: impl Fn(&[TaskReport]) -> bool) -> Vec<TaskReport> {
        for _ in 0..200 {
            let now = self.reports.borrow().clone();
            if cond(&now) {
                return now;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        panic!("reports never matched: {:?}", self.reports.borrow());
    }
}

fn state_of(reports: &[TaskReport], id: &str) -> Option<TaskState> {
    reports.iter().find(|r| r.task_id == id).map(|r| r.state)
}

#[tokio::test]
async fn assigned_tasks_start_in_their_sandbox_and_report_running() {
    let mut r = rig().await;
    r.assign
        .send(Some(vec![assignment("t1", TaskState::Running, "net")]))
        .unwrap();
    let reports = r
        .until(|rs| state_of(rs, "t1") == Some(TaskState::Running))
        .await;
    assert!(reports[0].pid.is_some());
    let launch = &r.runtime.launches()[0];
    assert_eq!(launch.netns, PathBuf::from("/run/netns/sb-t1"));
    // The task's own variables come after those naming it, so they win.
    assert_eq!(launch.env.last(), Some(&"A=1".to_string()));
    assert!(launch.env.contains(&"SHOAL_TASK_ID=t1".to_string()));
    assert_eq!(launch.resolv_conf, "nameserver 192.0.2.53\n");
    assert_eq!(
        *r.sandboxes.attached.lock().unwrap(),
        vec!["t1".to_string()]
    );
    r.runner.stop().await;
}

#[tokio::test]
async fn exits_are_reported_with_codes_and_endpoints_withdrawn() {
    let mut r = rig().await;
    r.assign
        .send(Some(vec![
            assignment("ok", TaskState::Running, "net"),
            assignment("bad", TaskState::Running, "net"),
        ]))
        .unwrap();
    r.until(|rs| rs.iter().filter(|x| x.state == TaskState::Running).count() == 2)
        .await;
    r.runtime.exit("ok", Exit::Code(0));
    r.runtime.exit("bad", Exit::Code(3));
    let rs = r.until(|rs| rs.iter().all(|x| x.state.is_final())).await;
    let bad = rs.iter().find(|x| x.task_id == "bad").unwrap();
    assert_eq!((bad.state, bad.exit_code), (TaskState::Failed, Some(3)));
    assert_eq!(bad.err.as_deref(), Some("task: non-zero exit (3)"));
    assert_eq!(state_of(&rs, "ok"), Some(TaskState::Complete));
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert_eq!(r.sandboxes.detached.lock().unwrap().len(), 2);
    // Once the managers drop the final tasks, the runtime forgets them.
    r.assign.send(Some(vec![])).unwrap();
    r.until(|rs| rs.is_empty()).await;
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert_eq!(r.runtime.removes().len(), 2);
    r.runner.stop().await;
}

#[tokio::test]
async fn tasks_wanted_stopped_or_unlisted_are_stopped_and_reported_shutdown() {
    let mut r = rig().await;
    r.assign
        .send(Some(vec![
            assignment("a", TaskState::Running, "net"),
            assignment("b", TaskState::Running, "net"),
        ]))
        .unwrap();
    r.until(|rs| rs.iter().filter(|x| x.state == TaskState::Running).count() == 2)
        .await;
    r.assign
        .send(Some(vec![assignment("a", TaskState::Shutdown, "net")]))
        .unwrap();
    // `a` is reported shut down while listed; `b`, no longer listed, is
    // stopped and then forgotten (the managers no longer want its state).
    let rs = r
        .until(|rs| state_of(rs, "a") == Some(TaskState::Shutdown) && state_of(rs, "b").is_none())
        .await;
    assert_eq!(rs.len(), 1);
    assert_eq!(rs[0].exit_code, Some(143));
    let stopped: Vec<String> = r.runtime.stops().into_iter().map(|(id, _)| id).collect();
    assert!(stopped.contains(&"a".to_string()) && stopped.contains(&"b".to_string()));
    r.runner.stop().await;
}

#[tokio::test]
async fn a_sandbox_that_cannot_be_built_fails_the_task_with_the_reason() {
    let mut r = rig().await;
    r.assign
        .send(Some(vec![assignment("t", TaskState::Running, "missing")]))
        .unwrap();
    let rs = r
        .until(|rs| state_of(rs, "t") == Some(TaskState::Failed))
        .await;
    assert!(
        rs[0].err.as_deref().unwrap().contains("network missing"),
        "{rs:?}"
    );
    assert!(r.runtime.launches().is_empty());
    r.runner.stop().await;
}

#[tokio::test]
async fn a_restarted_runner_adopts_running_tasks_and_stops_unlisted_ones() {
    let runtime = Arc::new(FakeRuntime::new());
    runtime.adopt("old", ProcessState::Running { pid: 77 });
    let mut r = rig_on(runtime).await;
    let first = r.reports.borrow_and_update().clone();
    assert_eq!(state_of(&first, "old"), Some(TaskState::Running));
    assert_eq!(first[0].pid, Some(77));
    // The managers no longer list it: it is stopped and forgotten.
    r.assign.send(Some(vec![])).unwrap();
    r.until(|rs| rs.is_empty()).await;
    assert_eq!(r.runtime.stops()[0].0, "old");
    r.runner.stop().await;
}

#[tokio::test]
async fn finished_tasks_in_the_managers_history_keep_their_logs_unreported() {
    let mut r = rig().await;
    r.assign
        .send(Some(vec![assignment("t1", TaskState::Running, "net")]))
        .unwrap();
    r.until(|rs| state_of(rs, "t1") == Some(TaskState::Running))
        .await;
    r.runtime.exit("t1", Exit::Code(2));
    r.until(|rs| state_of(rs, "t1") == Some(TaskState::Failed))
        .await;
    // Failed in the store: no longer listed, but in the history.
    r.history.send(Some(vec!["t1".into()])).unwrap();
    r.assign.send(Some(vec![])).unwrap();
    r.until(|rs| rs.is_empty()).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(r.runtime.removes().is_empty());
    assert!(r.runtime.state("t1").is_some());
    // Out of the history (the managers deleted it): forgotten, logs and all.
    r.history.send(Some(vec![])).unwrap();
    for _ in 0..200 {
        if !r.runtime.removes().is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(r.runtime.removes(), ["t1".to_string()]);
    r.runner.stop().await;
}

#[tokio::test]
async fn an_adopted_exited_task_is_reported_only_while_listed() {
    let runtime = Arc::new(FakeRuntime::new());
    runtime.adopt("done", ProcessState::Exited(Exit::Signal(15)));
    runtime.adopt("ended", ProcessState::Exited(Exit::Code(0)));
    let mut r = rig_on(runtime).await;
    // A stop the managers asked for must not come back as a failure.
    assert!(r.reports.borrow_and_update().is_empty());
    r.history.send(Some(vec!["done".into()])).unwrap();
    r.assign
        .send(Some(vec![assignment("ended", TaskState::Running, "net")]))
        .unwrap();
    let rs = r
        .until(|rs| state_of(rs, "ended") == Some(TaskState::Complete))
        .await;
    assert_eq!(rs.len(), 1);
    assert!(r.runtime.state("done").is_some());
    assert!(r.runtime.launches().is_empty());
    r.runner.stop().await;
}

fn served(r: &Rig) -> Vec<(String, bool)> {
    r.sandboxes.served.lock().unwrap().clone()
}

#[tokio::test]
async fn a_task_without_a_health_check_serves_once_it_listens() {
    let mut r = rig().await;
    r.assign
        .send(Some(vec![assignment("t1", TaskState::Running, "net")]))
        .unwrap();
    r.until(|rs| state_of(rs, "t1") == Some(TaskState::Running))
        .await;
    for _ in 0..200 {
        if !served(&r).is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(served(&r), vec![("t1".to_string(), true)]);
}

#[tokio::test]
async fn a_task_with_a_health_check_joins_the_mesh_only_once_healthy() {
    let runtime = Arc::new(FakeRuntime::new());
    runtime.set_health("t1", HealthStatus::Starting);
    let mut r = rig_on(runtime.clone()).await;
    r.assign
        .send(Some(vec![assignment("t1", TaskState::Running, "net")]))
        .unwrap();
    r.until(|rs| {
        rs.iter()
            .any(|t| t.task_id == "t1" && t.state == TaskState::Starting && t.pid.is_some())
    })
    .await;
    // Several health polls go by: still starting, not a backend.
    tokio::time::sleep(POLL * 4).await;
    assert_eq!(
        state_of(&r.reports.borrow(), "t1"),
        Some(TaskState::Starting)
    );
    assert!(
        served(&r).is_empty(),
        "served before healthy: {:?}",
        served(&r)
    );
    runtime.set_health("t1", HealthStatus::Healthy);
    r.until(|rs| state_of(rs, "t1") == Some(TaskState::Running))
        .await;
    for _ in 0..200 {
        if !served(&r).is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(served(&r), vec![("t1".to_string(), true)]);
}

#[tokio::test]
async fn an_unhealthy_task_leaves_its_published_ports_before_it_is_stopped() {
    use shoal_control::objects::{PortConfig, Protocol};
    let runtime = Arc::new(FakeRuntime::new());
    runtime.set_health("t1", HealthStatus::Healthy);
    let mut r = rig_on(runtime.clone()).await;
    let mut a = assignment("t1", TaskState::Running, "net");
    a.ports = vec![PortConfig {
        protocol: Protocol::Tcp,
        target: 80,
        published: 8080,
        mode: Default::default(),
    }];
    r.assign.send(Some(vec![a])).unwrap();
    r.until(|rs| state_of(rs, "t1") == Some(TaskState::Running))
        .await;
    for _ in 0..200 {
        if !served(&r).is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(served(&r), vec![("t1".to_string(), true)]);
    runtime.set_health("t1", HealthStatus::Unhealthy);
    let reports = r
        .until(|rs| state_of(rs, "t1") == Some(TaskState::Failed))
        .await;
    let failed = reports.iter().find(|t| t.task_id == "t1").unwrap();
    assert_eq!(failed.err.as_deref(), Some("task: unhealthy container"));
    // Out of the load balancers first (the drain), stopped after.
    for _ in 0..300 {
        if !runtime.stops().is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(
        served(&r),
        vec![("t1".to_string(), true), ("t1".to_string(), false)]
    );
    assert_eq!(runtime.stops().len(), 1, "stopped once");
    assert!(r.sandboxes.detached.lock().unwrap().contains(&"t1".into()));
}
