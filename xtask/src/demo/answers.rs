//! What the demo's web service answers through the routing mesh: each reply
//! is `task=<id> client=<ip>:<port>`, read back here and tallied per node
//! into the summary table. Pure, so it is unit-tested without root.

use std::collections::BTreeMap;
use std::net::Ipv4Addr;

/// How many characters of a task id the table shows (as `service ps`).
const SHORT_ID: usize = 12;

/// One reply of a replica: the task that served it and the client it saw.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Answer {
    pub task: String,
    pub client: Ipv4Addr,
}

impl Answer {
    /// Reads `task=<id> client=<ip>:<port>`; `None` for anything else.
    pub fn parse(body: &str) -> Option<Self> {
        let mut task = None;
        let mut client = None;
        for field in body.split_whitespace() {
            if let Some(id) = field.strip_prefix("task=") {
                task = Some(id.to_string());
            } else if let Some(addr) = field.strip_prefix("client=") {
                let (ip, port) = addr.rsplit_once(':')?;
                port.parse::<u16>().ok()?;
                client = ip.parse().ok();
            }
        }
        Some(Answer {
            task: task.filter(|t| !t.is_empty())?,
            client: client?,
        })
    }
}

/// The requests sent through one node and what came back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeTally {
    pub node: String,
    pub addr: Ipv4Addr,
    pub sent: usize,
    /// Replies per task id.
    pub by_task: BTreeMap<String, usize>,
    /// Replies per client address the backend saw.
    pub clients: BTreeMap<Ipv4Addr, usize>,
    /// Why each failed request failed.
    pub failures: Vec<String>,
}

impl NodeTally {
    pub fn new(node: &str, addr: Ipv4Addr) -> Self {
        NodeTally {
            node: node.to_string(),
            addr,
            sent: 0,
            by_task: BTreeMap::new(),
            clients: BTreeMap::new(),
            failures: Vec::new(),
        }
    }

    /// Counts one request and its outcome.
    pub fn record(&mut self, outcome: Result<Answer, String>) {
        self.sent += 1;
        match outcome {
            Ok(answer) => {
                *self.by_task.entry(answer.task).or_default() += 1;
                *self.clients.entry(answer.client).or_default() += 1;
            }
            Err(why) => self.failures.push(why),
        }
    }

    pub fn answered(&self) -> usize {
        self.sent - self.failures.len()
    }
}

/// A running task as `service ps` names it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TaskLabel {
    pub id: String,
    pub name: String,
    pub node: String,
    pub pid: Option<u32>,
}

/// The summary table: one row per node the requests went through, one
/// column per task (its short id, then `name@node`), and how many replies
/// each task gave through each node. A task that answered but is not in
/// `tasks` gets a column marked `?`.
pub fn table(tallies: &[NodeTally], tasks: &[TaskLabel], port: u16) -> Vec<String> {
    let mut columns: Vec<(String, String, String)> = tasks
        .iter()
        .map(|t| (t.id.clone(), short(&t.id), format!("{}@{}", t.name, t.node)))
        .collect();
    for tally in tallies {
        for id in tally.by_task.keys() {
            if !columns.iter().any(|(known, _, _)| known == id) {
                columns.push((id.clone(), short(id), "?".to_string()));
            }
        }
    }
    let rows: Vec<(String, Vec<String>)> = tallies
        .iter()
        .map(|t| {
            let mut cells: Vec<String> = columns
                .iter()
                .map(|(id, _, _)| t.by_task.get(id).copied().unwrap_or(0).to_string())
                .collect();
            cells.push(format!("{}/{}", t.answered(), t.sent));
            (format!("{} {}:{port}", t.node, t.addr), cells)
        })
        .collect();

    let first = rows
        .iter()
        .map(|(label, _)| label.len())
        .chain(["through".len()])
        .max()
        .unwrap_or(0);
    let mut heads: Vec<(String, String)> = columns
        .iter()
        .map(|(_, id, label)| (id.clone(), label.clone()))
        .collect();
    heads.push(("answered".to_string(), String::new()));
    let widths: Vec<usize> = heads.iter().map(|(a, b)| a.len().max(b.len())).collect();

    let line = |first_cell: &str, cells: Vec<&str>| {
        let mut out = format!("{first_cell:<first$}");
        for (cell, width) in cells.iter().zip(&widths) {
            out.push_str(&format!("  {cell:>width$}"));
        }
        out.trim_end().to_string()
    };
    let mut out = vec![
        line("through", heads.iter().map(|(a, _)| a.as_str()).collect()),
        line("", heads.iter().map(|(_, b)| b.as_str()).collect()),
    ];
    for (label, cells) in &rows {
        out.push(line(label, cells.iter().map(String::as_str).collect()));
    }
    out
}

/// Every client address the backends saw, with how many replies saw it.
pub fn clients_seen(tallies: &[NodeTally]) -> BTreeMap<Ipv4Addr, usize> {
    let mut all = BTreeMap::new();
    for tally in tallies {
        for (addr, n) in &tally.clients {
            *all.entry(*addr).or_default() += n;
        }
    }
    all
}

fn short(id: &str) -> String {
    id.chars().take(SHORT_ID).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const CLIENT: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 4);

    fn answer(task: &str) -> Result<Answer, String> {
        Ok(Answer {
            task: task.to_string(),
            client: CLIENT,
        })
    }

    #[test]
    fn parses_the_servers_reply() {
        assert_eq!(
            Answer::parse("task=0a1b2c3d4e5f6a7b8c9d client=198.18.0.4:41822\n"),
            Some(Answer {
                task: "0a1b2c3d4e5f6a7b8c9d".into(),
                client: CLIENT
            })
        );
    }

    #[test]
    fn refuses_replies_that_are_not_the_servers() {
        for body in [
            "",
            "<html>502 Bad Gateway</html>",
            "task= client=198.18.0.4:1",
            "task=a client=198.18.0.4",
            "task=a client=nowhere:80",
            "client=198.18.0.4:80",
        ] {
            assert_eq!(Answer::parse(body), None, "{body:?}");
        }
    }

    #[test]
    fn a_tally_counts_replies_per_task_and_client_and_keeps_failures() {
        let mut t = NodeTally::new("h1", Ipv4Addr::new(198, 18, 0, 1));
        t.record(answer("a"));
        t.record(answer("a"));
        t.record(answer("b"));
        t.record(Err("curl exit 7".into()));
        assert_eq!((t.sent, t.answered()), (4, 3));
        assert_eq!(t.by_task.get("a"), Some(&2));
        assert_eq!(clients_seen(&[t.clone()]).get(&CLIENT), Some(&3));
        assert_eq!(t.failures, vec!["curl exit 7".to_string()]);
    }

    #[test]
    fn the_table_has_a_column_per_task_and_a_row_per_node() {
        let mut h1 = NodeTally::new("h1", Ipv4Addr::new(198, 18, 0, 1));
        for task in ["aaaaaaaaaaaaaaaa", "aaaaaaaaaaaaaaaa", "bbbbbbbbbbbbbbbb"] {
            h1.record(answer(task));
        }
        let mut h2 = NodeTally::new("h2", Ipv4Addr::new(198, 18, 0, 2));
        h2.record(answer("cccccccccccccccc"));
        h2.record(Err("timeout".into()));
        let tasks = [
            TaskLabel {
                id: "aaaaaaaaaaaaaaaa".into(),
                name: "web.1".into(),
                node: "h1".into(),
                pid: None,
            },
            TaskLabel {
                id: "bbbbbbbbbbbbbbbb".into(),
                name: "web.2".into(),
                node: "h2".into(),
                pid: None,
            },
        ];
        assert_eq!(
            table(&[h1, h2], &tasks, 8080),
            vec![
                "through             aaaaaaaaaaaa  bbbbbbbbbbbb  cccccccccccc  answered",
                "                        web.1@h1      web.2@h2             ?",
                "h1 198.18.0.1:8080             2             1             0       3/3",
                "h2 198.18.0.2:8080             0             0             1       1/2",
            ]
        );
    }
}
