//! What the agent answers its CLI on the Unix socket, and the one typed
//! conversion of an answer to what the request gets.

use serde::{Deserialize, Serialize};
use shoal_control::api::{ApiResponse, UnexpectedAnswer};

use super::{EndpointLine, MembersReport};

/// What the agent answers its CLI.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(tag = "local", content = "answer", rename_all = "snake_case")]
pub enum LocalAnswer {
    /// A cluster answer, or what a membership verb did (`Done`).
    Cluster(ApiResponse),
    /// `members`.
    Members(Box<MembersReport>),
    /// `endpoint ls`.
    Endpoints { endpoints: Vec<EndpointLine> },
}

impl LocalAnswer {
    fn kind(&self) -> &'static str {
        match self {
            LocalAnswer::Cluster(answer) => answer.kind(),
            LocalAnswer::Members(_) => "members",
            LocalAnswer::Endpoints { .. } => "endpoints",
        }
    }

    fn unexpected(&self, expected: &'static str) -> UnexpectedAnswer {
        UnexpectedAnswer {
            expected,
            got: self.kind(),
        }
    }

    /// The cluster answer it carries.
    pub fn into_cluster(self) -> Result<ApiResponse, UnexpectedAnswer> {
        match self {
            LocalAnswer::Cluster(answer) => Ok(answer),
            other => Err(other.unexpected("a cluster answer")),
        }
    }

    pub fn into_members(self) -> Result<MembersReport, UnexpectedAnswer> {
        match self {
            LocalAnswer::Members(report) => Ok(*report),
            other => Err(other.unexpected("members")),
        }
    }

    pub fn into_endpoints(self) -> Result<Vec<EndpointLine>, UnexpectedAnswer> {
        match self {
            LocalAnswer::Endpoints { endpoints } => Ok(endpoints),
            other => Err(other.unexpected("endpoints")),
        }
    }
}
