//! Commands that name several objects (`service rm a b`, `network inspect x
//! y`, `node rm`, `secret rm`...) send one request per argument and go on
//! after a failure, as Docker does; the command then fails with every error,
//! one per line, and exits non-zero.

use std::future::Future;

/// What a request per argument gave: the answers, in order, and the errors.
#[derive(Debug)]
pub struct Each<T> {
    pub answers: Vec<T>,
    errors: Vec<String>,
}

impl<T> Each<T> {
    /// Sends `request` for each argument in turn, never stopping at a failure.
    pub async fn run<A, F, Fut>(arguments: impl IntoIterator<Item = A>, mut request: F) -> Each<T>
    where
        F: FnMut(A) -> Fut,
        Fut: Future<Output = anyhow::Result<T>>,
    {
        let mut each = Each {
            answers: Vec::new(),
            errors: Vec::new(),
        };
        for argument in arguments {
            match request(argument).await {
                Ok(answer) => each.answers.push(answer),
                Err(e) => each.failed(&e),
            }
        }
        each
    }

    /// Records a failure found after the requests (a `--watch` that failed).
    pub fn failed(&mut self, e: &anyhow::Error) {
        self.errors.push(format!("{e:#}"));
    }

    /// Fails with every error, one per line, when there was one.
    pub fn finish(self) -> anyhow::Result<()> {
        if self.errors.is_empty() {
            Ok(())
        } else {
            Err(anyhow::anyhow!("{}", self.errors.join("\n")))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn every_argument_is_tried_and_every_error_reported_once() {
        let mut tried = Vec::new();
        let each = Each::run(["a", "missing", "b", "gone"], |name| {
            tried.push(name);
            async move {
                match name {
                    "missing" | "gone" => Err(anyhow::anyhow!("service {name} not found")
                        .context(format!("removing {name}"))),
                    _ => Ok(name.to_uppercase()),
                }
            }
        })
        .await;
        assert_eq!(tried, ["a", "missing", "b", "gone"]);
        assert_eq!(each.answers, ["A", "B"]);
        let e = each.finish().unwrap_err();
        assert_eq!(
            format!("{e:#}"),
            "removing missing: service missing not found\nremoving gone: service gone not found"
        );
    }

    #[tokio::test]
    async fn no_error_is_success() {
        let each: Each<()> = Each::run(["a"], |_| async { Ok(()) }).await;
        assert!(each.finish().is_ok());
    }
}
