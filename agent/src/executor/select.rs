//! One [`Runtime`] over the node's runtimes, chosen per task: a task whose
//! launch names an image goes to the container runtime, any other to the
//! process runtime; later calls go to whichever knows the task.

use std::sync::Arc;
use std::time::Duration;

use super::{ExecutorError, Health, Launch, LogMark, ProcessState, Runtime, Stream};

pub struct TaskRuntimes {
    process: Arc<dyn Runtime>,
    /// `None` on a node without runc.
    container: Option<Arc<dyn Runtime>>,
}

impl TaskRuntimes {
    pub fn new(process: Arc<dyn Runtime>, container: Option<Arc<dyn Runtime>>) -> TaskRuntimes {
        TaskRuntimes { process, container }
    }

    /// The runtime that knows `task_id` (the process one by default).
    fn owner(&self, task_id: &str) -> &dyn Runtime {
        match &self.container {
            Some(c) if c.state(task_id).is_some() => c.as_ref(),
            _ => self.process.as_ref(),
        }
    }
}

impl Runtime for TaskRuntimes {
    fn prepare(&self, launch: &Launch) -> Result<(), ExecutorError> {
        match (&launch.container, &self.container) {
            (Some(_), Some(container)) => container.prepare(launch),
            (Some(_), None) => Err(ExecutorError::NoContainerRuntime(launch.task_id.clone())),
            (None, _) => self.process.prepare(launch),
        }
    }

    fn start(&self, launch: &Launch) -> Result<u32, ExecutorError> {
        match (&launch.container, &self.container) {
            (Some(_), Some(container)) => container.start(launch),
            (Some(_), None) => Err(ExecutorError::NoContainerRuntime(launch.task_id.clone())),
            (None, _) => self.process.start(launch),
        }
    }

    fn state(&self, task_id: &str) -> Option<ProcessState> {
        self.container
            .as_ref()
            .and_then(|c| c.state(task_id))
            .or_else(|| self.process.state(task_id))
    }

    fn stop(&self, task_id: &str, grace: Duration) -> Result<(), ExecutorError> {
        self.owner(task_id).stop(task_id, grace)
    }

    fn remove(&self, task_id: &str) -> Result<(), ExecutorError> {
        self.owner(task_id).remove(task_id)
    }

    fn tasks(&self) -> Vec<String> {
        let mut all = self.process.tasks();
        if let Some(c) = &self.container {
            all.extend(c.tasks());
        }
        all.sort();
        all.dedup();
        all
    }

    fn logs(
        &self,
        task_id: &str,
        stream: Stream,
        offset: u64,
        max: usize,
    ) -> Result<(Vec<u8>, u64), ExecutorError> {
        self.owner(task_id).logs(task_id, stream, offset, max)
    }

    fn health(&self, task_id: &str) -> Option<Health> {
        self.owner(task_id).health(task_id)
    }

    fn log_size(&self, task_id: &str, stream: Stream) -> Result<u64, ExecutorError> {
        self.owner(task_id).log_size(task_id, stream)
    }

    fn log_start(&self, task_id: &str, stream: Stream) -> Result<u64, ExecutorError> {
        self.owner(task_id).log_start(task_id, stream)
    }

    fn log_marks(
        &self,
        task_id: &str,
        stream: Stream,
        from: u64,
        to: u64,
    ) -> Result<Vec<LogMark>, ExecutorError> {
        self.owner(task_id).log_marks(task_id, stream, from, to)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::executor::{ContainerConfig, FakeRuntime};

    fn launch(id: &str, container: bool) -> Launch {
        Launch {
            task_id: id.into(),
            command: vec!["sleep".into(), "1".into()],
            env: vec![],
            netns: "/run/netns/x".into(),
            resolv_conf: String::new(),
            limit_nano_cpus: 0,
            limit_memory: 0,
            container: container.then(|| ContainerConfig {
                image: "busybox".into(),
                ..ContainerConfig::default()
            }),
            secrets: Vec::new(),
            configs: Vec::new(),
        }
    }

    #[test]
    fn images_go_to_the_container_runtime_commands_to_the_process_one() {
        let process = Arc::new(FakeRuntime::new());
        let container = Arc::new(FakeRuntime::new());
        let rt = TaskRuntimes::new(process.clone(), Some(container.clone()));
        rt.start(&launch("c1", true)).unwrap();
        rt.start(&launch("p1", false)).unwrap();
        assert_eq!(container.tasks(), vec!["c1"]);
        assert_eq!(process.tasks(), vec!["p1"]);
        assert_eq!(rt.tasks(), vec!["c1", "p1"]);
        rt.stop("c1", Duration::ZERO).unwrap();
        assert!(matches!(
            container.state("c1"),
            Some(ProcessState::Exited(_))
        ));
        assert!(matches!(
            process.state("p1"),
            Some(ProcessState::Running { .. })
        ));
    }

    #[test]
    fn rotated_output_starts_where_the_owning_runtime_says() {
        let process = Arc::new(FakeRuntime::new());
        let rt = TaskRuntimes::new(process.clone(), Some(Arc::new(FakeRuntime::new())));
        rt.start(&launch("p1", false)).unwrap();
        process.push_log("p1", Stream::Stdout, b"line 1\nline 2\n");
        process.rotate_log("p1", Stream::Stdout, 7);
        assert_eq!(rt.log_start("p1", Stream::Stdout).unwrap(), 7);
    }

    #[test]
    fn without_runc_a_container_task_is_refused_clearly() {
        let rt = TaskRuntimes::new(Arc::new(FakeRuntime::new()), None);
        let err = rt.start(&launch("c1", true)).unwrap_err();
        assert!(matches!(err, ExecutorError::NoContainerRuntime(_)));
        assert!(err.to_string().contains("install runc"), "{err}");
    }
}
