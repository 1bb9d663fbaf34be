//! `GET /services/{id}/logs`: the tasks' output in Docker's multiplexed
//! stream (an 8-byte header per line: stream, three zeros, the length
//! big-endian), with `timestamps`, `details` (the swarm ids the CLI's
//! pretty mode needs), `tail` and `follow`.

use shoal_control::error_chain::ErrorChain;
use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use axum::body::Body;
use axum::extract::{Path, Query, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::IntoResponse;
use bytes::Bytes;
use shoal_control::api::{
    ApiRequest, LogLine, LogQuery, LogStart, LogStream, ServiceView, TaskLogs, TaskView,
};
use tokio::sync::mpsc;

use super::http::{self, flag, Answer, Refusal, RefusalKind};
use super::Api;

/// A follower asks at most this often.
const FOLLOW_PERIOD: Duration = Duration::from_millis(500);
/// Reads of one answer without `follow`: each makes progress; this bounds
/// the loop whatever the nodes answer.
const MAX_READS: usize = 10_000;

/// What each line carries besides its text.
#[derive(Clone, Copy, Debug, Default)]
struct Style {
    timestamps: bool,
    details: bool,
    stdout: bool,
    stderr: bool,
}

/// One frame of the multiplexed stream.
fn frame(stream: LogStream, payload: &[u8]) -> Bytes {
    let kind = match stream {
        LogStream::Stdout => 1u8,
        LogStream::Stderr => 2u8,
    };
    let len = u32::try_from(payload.len()).unwrap_or(u32::MAX);
    let mut out = Vec::with_capacity(8 + payload.len());
    out.extend_from_slice(&[kind, 0, 0, 0]);
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(&payload[..len as usize]);
    Bytes::from(out)
}

/// The frame of one line of `task`.
fn line_frame(style: Style, service_id: &str, task: &TaskLogs, line: &LogLine) -> Option<Bytes> {
    let wanted = match line.stream {
        LogStream::Stdout => style.stdout,
        LogStream::Stderr => style.stderr,
    };
    if !wanted {
        return None;
    }
    let mut payload = String::new();
    if style.timestamps {
        payload.push_str(&line.timestamp());
        payload.push(' ');
    }
    if style.details {
        // Keys sorted, as Docker writes them; ids need no escaping.
        payload.push_str(&format!(
            "com.docker.swarm.node.id={},com.docker.swarm.service.id={service_id},com.docker.swarm.task.id={} ",
            task.node_id, task.task_id
        ));
    }
    payload.push_str(&line.text);
    payload.push('\n');
    Some(frame(line.stream, payload.as_bytes()))
}

/// Where a reader is between requests.
struct Reader {
    target: String,
    first: LogStart,
    starts: BTreeMap<String, LogStart>,
    done: BTreeSet<String>,
    asked: bool,
}

impl Reader {
    fn query(&self) -> LogQuery {
        LogQuery {
            target: self.target.clone(),
            starts: self.starts.clone(),
            others: if self.asked {
                LogStart::default()
            } else {
                self.first
            },
            done: self.done.clone(),
        }
    }

    /// Records an answer; whether a task has more to read at once.
    fn record(&mut self, tasks: &[TaskLogs]) -> bool {
        for task in tasks {
            if task.error.is_none() {
                self.starts
                    .insert(task.task_id.clone(), LogStart::At(task.next));
            } else if !self.starts.contains_key(&task.task_id) {
                self.starts.insert(task.task_id.clone(), self.first);
            }
            if task.ended && !task.more {
                self.done.insert(task.task_id.clone());
            }
        }
        self.asked = true;
        tasks.iter().any(|t| t.more)
    }
}

/// The service a logs target (a service, or a task) belongs to.
async fn service_of(api: &Api, target: &str) -> Result<String, Refusal> {
    match api
        .ask::<ServiceView>(ApiRequest::ServiceInspect {
            service: target.to_string(),
        })
        .await
    {
        Ok(view) => Ok(view.id),
        Err(e) if e.kind == RefusalKind::NotFound => {
            let services: Vec<ServiceView> = api.ask(ApiRequest::ServiceList).await?;
            for service in services {
                let tasks: Vec<TaskView> = api
                    .ask(ApiRequest::ServicePs {
                        service: service.id.clone(),
                    })
                    .await?;
                if tasks.iter().any(|t| t.id.starts_with(target)) {
                    return Ok(service.id);
                }
            }
            Err(e)
        }
        Err(e) => Err(e),
    }
}

/// `GET /services/{id}/logs?stdout=1&stderr=1&details=1&tail=N&follow=1`.
pub async fn service_logs(
    State(api): State<Api>,
    Path(target): Path<String>,
    Query(query): Query<http::Query>,
) -> Answer {
    let style = Style {
        timestamps: flag(&query, "timestamps"),
        details: flag(&query, "details"),
        stdout: flag(&query, "stdout"),
        stderr: flag(&query, "stderr"),
    };
    if !style.stdout && !style.stderr {
        return Err(Refusal::invalid(
            "Bad parameters: you must choose at least one stream",
        ));
    }
    let first = match query.get("tail").map(String::as_str) {
        None | Some("") | Some("all") => LogStart::default(),
        Some(n) => LogStart::Tail(
            n.parse()
                .map_err(|_| Refusal::invalid(format!("invalid tail `{n}`: a number or all")))?,
        ),
    };
    let follow = flag(&query, "follow");
    let service_id = service_of(&api, &target).await?;
    let mut reader = Reader {
        target,
        first,
        starts: BTreeMap::new(),
        done: BTreeSet::new(),
        asked: false,
    };
    // The first read answers errors (no such service) before the stream.
    let tasks: Vec<TaskLogs> = api
        .ask(ApiRequest::ServiceLogs {
            query: reader.query(),
        })
        .await?;
    let (tx, rx) = mpsc::channel::<Result<Bytes, std::io::Error>>(64);
    tokio::spawn(async move {
        let mut tasks = tasks;
        for _ in 0..MAX_READS {
            for task in &tasks {
                for line in &task.lines {
                    if let Some(frame) = line_frame(style, &service_id, task, line) {
                        if tx.send(Ok(frame)).await.is_err() {
                            return; // The client went away.
                        }
                    }
                }
            }
            let more = reader.record(&tasks);
            if !more {
                if !follow {
                    return;
                }
                tokio::select! {
                    _ = tokio::time::sleep(FOLLOW_PERIOD) => {}
                    _ = tx.closed() => return,
                }
            }
            tasks = match api
                .ask(ApiRequest::ServiceLogs {
                    query: reader.query(),
                })
                .await
            {
                Ok(tasks) => tasks,
                Err(e) => {
                    tracing::debug!("service logs: {}", e.chain());
                    if !follow {
                        return;
                    }
                    Vec::new()
                }
            };
        }
    });
    let stream = tokio_stream::wrappers::ReceiverStream::new(rx);
    Ok((
        StatusCode::OK,
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/vnd.docker.multiplexed-stream"),
        )],
        Body::from_stream(stream),
    )
        .into_response())
}

#[cfg(test)]
mod tests {
    use super::*;
    use shoal_control::api::LogCursor;

    #[test]
    fn frames_are_dockers_multiplexed_stream() {
        let f = frame(LogStream::Stderr, b"hi\n");
        assert_eq!(&f[..], &[2, 0, 0, 0, 0, 0, 0, 3, b'h', b'i', b'\n']);
        let task = TaskLogs {
            task_id: "t1".into(),
            name: "web.1".into(),
            slot: 1,
            node_id: "n1".into(),
            node: "h1".into(),
            lines: vec![],
            next: LogCursor::default(),
            more: false,
            ended: false,
            error: None,
        };
        let line = LogLine {
            stream: LogStream::Stdout,
            time_ns: Some(1_000_000_007),
            text: "hello".into(),
        };
        let style = Style {
            timestamps: true,
            details: true,
            stdout: true,
            stderr: false,
        };
        let f = line_frame(style, "s1", &task, &line).unwrap();
        assert_eq!(f[0], 1);
        assert_eq!(
            std::str::from_utf8(&f[8..]).unwrap(),
            "1970-01-01T00:00:01.000000007Z com.docker.swarm.node.id=n1,com.docker.swarm.service.id=s1,com.docker.swarm.task.id=t1 hello\n"
        );
        let stderr = LogLine {
            stream: LogStream::Stderr,
            ..line
        };
        assert!(line_frame(style, "s1", &task, &stderr).is_none());
    }
}
