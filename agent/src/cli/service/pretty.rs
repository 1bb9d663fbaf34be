//! `service inspect --pretty`: a service as text, in the layout of Docker's
//! `--pretty`, with sizes, CPUs and durations written the way the flags take
//! them.

use std::time::Duration;

use shoal_control::api::{ports_column, rfc3339, ServiceView};
use shoal_control::objects::{
    FailureAction, RestartCondition, ServiceMode, UpdateConfig, UpdateOrder, UpdateState,
};

use super::values::{bytes_text, cpus_text, format_duration};

/// Where values start, so they line up.
const VALUE_COLUMN: usize = 20;

/// Lines of `Label: value`, nested by a leading space per level.
#[derive(Default)]
struct Text(String);

impl Text {
    fn title(&mut self, depth: usize, title: &str) {
        self.0.push_str(&format!("{:depth$}{title}:\n", ""));
    }

    fn field(&mut self, depth: usize, label: &str, value: impl std::fmt::Display) {
        let label = format!("{:depth$}{label}:", "");
        let line = format!("{label:<VALUE_COLUMN$} {value}");
        self.0.push_str(line.trim_end());
        self.0.push('\n');
    }
}

/// The text for one service.
pub fn pretty(view: &ServiceView) -> String {
    let spec = &view.spec;
    let mut t = Text::default();
    t.field(0, "ID", &view.id);
    t.field(0, "Name", &view.name);
    if !spec.labels.is_empty() {
        t.title(0, "Labels");
        for (k, v) in &spec.labels {
            t.0.push_str(&format!(" {k}={v}\n"));
        }
    }
    match spec.mode {
        ServiceMode::Replicated { replicas } => {
            t.field(0, "Service Mode", "Replicated");
            t.field(1, "Replicas", replicas);
        }
        ServiceMode::Global => t.field(0, "Service Mode", "Global"),
    }
    t.field(0, "Tasks running", view.replicas());
    if let Some(status) = &view.update_status {
        t.title(0, "UpdateStatus");
        t.field(1, "State", update_state(status.state));
        t.field(1, "Started", rfc3339(status.started_at_ms / 1000));
        if let Some(done) = status.completed_at_ms {
            t.field(1, "Completed", rfc3339(done / 1000));
        }
        t.field(1, "Message", &status.message);
    }
    let placement = &spec.task.placement;
    if !placement.constraints.is_empty()
        || !placement.preferences.is_empty()
        || placement.strategy.is_some()
    {
        t.title(0, "Placement");
        if !placement.constraints.is_empty() {
            let all: Vec<String> = placement
                .constraints
                .iter()
                .map(|c| c.to_string())
                .collect();
            t.field(1, "Constraints", format!("[{}]", all.join(" ")));
        }
        if !placement.preferences.is_empty() {
            t.field(
                1,
                "Preferences",
                format!("[{}]", placement.preferences.join(" ")),
            );
        }
        if let Some(strategy) = placement.strategy {
            t.field(1, "Strategy", strategy);
        }
    }
    update_config(&mut t, "UpdateConfig", &spec.update);
    update_config(&mut t, "RollbackConfig", &spec.rollback);
    t.title(0, "TaskSpec");
    t.field(1, "Command", spec.task.command.join(" "));
    if !spec.task.env.is_empty() {
        t.field(1, "Env", spec.task.env.join(" "));
    }
    let r = &spec.task.resources;
    if *r != Default::default() {
        t.title(0, "Resources");
        for (title, cpus, memory) in [
            ("Reservations", r.reserve_nano_cpus, r.reserve_memory),
            ("Limits", r.limit_nano_cpus, r.limit_memory),
        ] {
            if cpus == 0 && memory == 0 {
                continue;
            }
            t.title(1, title);
            if cpus > 0 {
                t.field(2, "CPU", cpus_text(cpus));
            }
            if memory > 0 {
                t.field(2, "Memory", bytes_text(memory));
            }
        }
    }
    let restart = &spec.task.restart;
    t.title(0, "RestartPolicy");
    t.field(
        1,
        "Condition",
        match restart.condition {
            RestartCondition::None => "none",
            RestartCondition::OnFailure => "on-failure",
            RestartCondition::Any => "any",
        },
    );
    t.field(1, "Delay", millis_text(restart.delay_ms));
    t.field(
        1,
        "Max attempts",
        restart
            .max_attempts
            .map_or_else(|| "unlimited".to_string(), |n| n.to_string()),
    );
    if !view.networks.is_empty() {
        t.field(0, "Networks", view.networks.join(" "));
    }
    t.field(0, "Endpoint Mode", spec.endpoint_mode.to_string());
    if !spec.ports.is_empty() {
        t.field(0, "Ports", ports_column(&spec.ports));
    }
    t.0
}

fn update_config(t: &mut Text, title: &str, config: &UpdateConfig) {
    t.title(0, title);
    t.field(1, "Parallelism", config.parallelism);
    if config.delay_ms > 0 {
        t.field(1, "Delay", millis_text(config.delay_ms));
    }
    t.field(
        1,
        "On failure",
        match config.failure_action {
            FailureAction::Pause => "pause",
            FailureAction::Continue => "continue",
            FailureAction::Rollback => "rollback",
        },
    );
    t.field(1, "Monitoring Period", millis_text(config.monitor_ms));
    t.field(1, "Max failure ratio", config.max_failure_ratio);
    t.field(
        1,
        "Update order",
        match config.order {
            UpdateOrder::StopFirst => "stop-first",
            UpdateOrder::StartFirst => "start-first",
        },
    );
}

fn update_state(state: UpdateState) -> &'static str {
    match state {
        UpdateState::Updating => "updating",
        UpdateState::Paused => "paused",
        UpdateState::Completed => "completed",
        UpdateState::RollbackStarted => "rollback_started",
        UpdateState::RollbackPaused => "rollback_paused",
        UpdateState::RollbackCompleted => "rollback_completed",
    }
}

fn millis_text(ms: u64) -> String {
    format_duration(Duration::from_millis(ms))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pretty_shows_the_spec() {
        let spec = serde_json::from_value(serde_json::json!({
            "name": "web",
            "labels": {"team": "web"},
            "mode": {"replicated": {"replicas": 3}},
            "task": {
                "command": ["httpd", "-f"],
                "env": ["A=1"],
                "resources": {"reserve_memory": 67108864u64, "reserve_nano_cpus": 500000000u64},
                "placement": {"constraints": [{"key": "node.role", "equal": true, "value": "worker"}]}
            },
            "ports": [{"protocol": "tcp", "target": 80, "published": 8080}],
        }))
        .unwrap();
        let view = ServiceView {
            id: "abc".into(),
            name: "web".into(),
            mode: "replicated".into(),
            running: 2,
            desired: 3,
            version: 1,
            spec,
            networks: vec!["front".into()],
            previous_spec: None,
            update_status: None,
            created_at: 0,
            updated_at: 0,
            virtual_ips: Vec::new(),
        };
        let text = pretty(&view);
        for expected in [
            "ID:                  abc\n",
            "Service Mode:        Replicated\n Replicas:           3\n",
            "Tasks running:       2/3\n",
            " Constraints:        [node.role==worker]\n",
            "UpdateConfig:\n Parallelism:        1\n On failure:         pause\n Monitoring Period:  5s\n",
            " Command:            httpd -f\n",
            "Resources:\n Reservations:\n  CPU:               0.5\n  Memory:            64MiB\n",
            " Max attempts:       unlimited\n",
            "Networks:            front\n",
            "Endpoint Mode:       vip\n",
            "Ports:               *:8080->80/tcp\n",
        ] {
            assert!(text.contains(expected), "{expected:?} not in\n{text}");
        }
    }
}
