//! Docker's placeholders in a service's `--hostname` (`{{.Service.Name}}`,
//! `{{.Task.Slot}}`, `{{.Node.Hostname}}`...): checked when the spec is
//! admitted, filled in per task when the managers hand it to its node.

use super::ServiceSpecError;

/// What a task's placeholders stand for.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TaskNames<'a> {
    pub service_id: &'a str,
    pub service_name: &'a str,
    pub task_id: &'a str,
    /// 0 for a global service's task.
    pub slot: u64,
    pub node_id: &'a str,
    pub node_hostname: &'a str,
}

impl TaskNames<'_> {
    /// Docker's `.Task.Name`: `SERVICE.SLOT.TASKID` (a global task has the
    /// node id where the slot would be).
    fn task_name(&self) -> String {
        if self.slot > 0 {
            format!("{}.{}.{}", self.service_name, self.slot, self.task_id)
        } else {
            format!("{}.{}.{}", self.service_name, self.node_id, self.task_id)
        }
    }

    fn value(&self, field: &str) -> Option<String> {
        Some(match field {
            ".Service.ID" => self.service_id.to_string(),
            ".Service.Name" => self.service_name.to_string(),
            ".Task.ID" => self.task_id.to_string(),
            ".Task.Name" => self.task_name(),
            ".Task.Slot" => self.slot.to_string(),
            ".Node.ID" => self.node_id.to_string(),
            ".Node.Hostname" => self.node_hostname.to_string(),
            _ => return None,
        })
    }
}

/// The parts of a template: literal text and `{{ .Field }}`s.
fn parts(template: &str) -> Result<Vec<(bool, &str)>, String> {
    let mut parts = Vec::new();
    let mut rest = template;
    while let Some(start) = rest.find("{{") {
        parts.push((false, &rest[..start]));
        let after = &rest[start + 2..];
        let Some(end) = after.find("}}") else {
            return Err("`{{` without `}}`".into());
        };
        parts.push((true, after[..end].trim()));
        rest = &after[end + 2..];
    }
    if rest.contains("}}") {
        return Err("`}}` without `{{`".into());
    }
    parts.push((false, rest));
    Ok(parts)
}

/// Fills the placeholders of `template` for one task.
pub fn render(template: &str, names: &TaskNames) -> Result<String, String> {
    let mut out = String::new();
    for (field, text) in parts(template)? {
        if field {
            let value = names.value(text).ok_or_else(|| {
                format!(
                    "unknown placeholder `{{{{{text}}}}}`: use .Service.ID, .Service.Name, \
                     .Task.ID, .Task.Name, .Task.Slot, .Node.ID or .Node.Hostname"
                )
            })?;
            out.push_str(&value);
        } else {
            out.push_str(text);
        }
    }
    Ok(out)
}

/// Checks a `--hostname`: its placeholders are known, its text is what a
/// hostname may hold (the kernel's 64-byte limit is checked once filled).
pub fn validate(template: &str) -> Result<(), ServiceSpecError> {
    let bad = || ServiceSpecError::Hostname(template.to_string());
    let example = TaskNames {
        slot: 1,
        ..TaskNames::default()
    };
    render(template, &example).map_err(|_| bad())?;
    let literal_ok = parts(template)
        .map_err(|_| bad())?
        .iter()
        .all(|(field, text)| {
            *field
                || text
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
        });
    if !literal_ok || (!template.contains("{{") && template.len() > 64) {
        return Err(bad());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names() -> TaskNames<'static> {
        TaskNames {
            service_id: "svc1",
            service_name: "web",
            task_id: "t0k3n",
            slot: 2,
            node_id: "n0d3",
            node_hostname: "host-a",
        }
    }

    #[test]
    fn placeholders_are_filled_as_docker_fills_them() {
        let got = render(
            "{{.Service.Name}}-{{ .Task.Slot }}.{{.Node.Hostname}}",
            &names(),
        );
        assert_eq!(got.unwrap(), "web-2.host-a");
        assert_eq!(render("{{.Task.Name}}", &names()).unwrap(), "web.2.t0k3n");
        assert_eq!(
            render("{{.Service.ID}}{{.Task.ID}}{{.Node.ID}}", &names()).unwrap(),
            "svc1t0k3nn0d3"
        );
        let global = TaskNames { slot: 0, ..names() };
        assert_eq!(render("{{.Task.Name}}", &global).unwrap(), "web.n0d3.t0k3n");
        assert_eq!(render("plain", &names()).unwrap(), "plain");
    }

    #[test]
    fn unknown_placeholders_and_bad_text_are_refused() {
        assert!(validate("{{.Service.Name}}-{{.Task.Slot}}").is_ok());
        assert!(validate("web-1").is_ok());
        assert!(validate("{{.Service.Labels}}").is_err());
        assert!(validate("{{.Task.Slot").is_err());
        assert!(validate("a}}").is_err());
        assert!(validate("web/{{.Task.Slot}}").is_err());
        assert!(validate(&"a".repeat(65)).is_err());
    }
}
