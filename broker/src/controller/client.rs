//! The broker side of the broker→controller RPCs: sends a `ControllerRpc` to the active
//! controller, learning who that is from NOT_CONTROLLER answers and trying the voters in turn
//! when it does not know (bounded attempts, bounded time per attempt).

use std::collections::HashMap;
use std::time::Duration;

use super::network::PeerClient;
use super::transport::{ControllerReply, ControllerRpc, Request, Response, TransportError};
use super::types::node_id;

/// Why no active controller answered.
#[derive(Debug, thiserror::Error)]
pub enum ControllerClientError {
    #[error("no active controller answered after {attempts} attempts (last error: {last})")]
    NoController { attempts: usize, last: String },
}

/// A client of the controller quorum; keeps one connection per voter it talked to.
pub struct ControllerClient {
    /// The voters' ids and controller addresses.
    voters: Vec<(i32, String)>,
    /// The last known active controller.
    leader: Option<(i32, String)>,
    /// Index into `voters` of the next voter to try without a leader hint.
    next_voter: usize,
    conns: HashMap<String, PeerClient>,
    /// Deadline of one request (a proposal waits for a commit).
    request_timeout: Duration,
    /// Attempts per call before giving up.
    max_attempts: usize,
    /// Pause before retrying when no leader is known (an election is likely running).
    retry_backoff: Duration,
}

impl ControllerClient {
    pub fn new(voters: Vec<(i32, String)>) -> ControllerClient {
        ControllerClient {
            voters,
            leader: None,
            next_voter: 0,
            conns: HashMap::new(),
            // Below the default broker session timeout (9 s), so a frozen (SIGSTOPped) active
            // controller costs a broker one timeout, not its session.
            request_timeout: Duration::from_secs(5),
            max_attempts: 20,
            retry_backoff: Duration::from_millis(200),
        }
    }

    /// The active controller last heard of.
    pub fn leader(&self) -> Option<i32> {
        self.leader.as_ref().map(|(id, _)| *id)
    }

    /// Send `rpc` to the active controller and return its answer (`Applied` or `Heartbeat`).
    pub async fn call(
        &mut self,
        rpc: ControllerRpc,
    ) -> Result<ControllerReply, ControllerClientError> {
        let mut last = String::from("no voters configured");
        for attempt in 0..self.max_attempts {
            let target = match self.leader.clone() {
                Some(t) => t,
                None => {
                    let Some(t) = self
                        .voters
                        .get(self.next_voter % self.voters.len().max(1))
                        .cloned()
                    else {
                        break;
                    };
                    self.next_voter = self.next_voter.wrapping_add(1);
                    t
                }
            };
            let conn = self
                .conns
                .entry(target.1.clone())
                .or_insert_with(|| PeerClient::new(node_id(target.0), target.1.clone()));
            let result = conn
                .call(&Request::Controller(rpc.clone()), self.request_timeout)
                .await;
            match result {
                Ok(Response::Controller(ControllerReply::NotController { leader })) => {
                    last = format!("node {} is not the controller", target.0);
                    let known = leader.filter(|(_, addr)| !addr.is_empty());
                    if known.is_none() || known == Some(target.clone()) {
                        tokio::time::sleep(self.retry_backoff).await;
                        self.leader = None;
                    } else {
                        self.leader = known;
                    }
                }
                Ok(Response::Controller(ControllerReply::Unavailable(e))) => {
                    last = e;
                    self.leader = None;
                    tokio::time::sleep(self.retry_backoff).await;
                }
                Ok(Response::Controller(reply)) => {
                    self.leader = Some(target);
                    return Ok(reply);
                }
                Ok(_) => {
                    last = TransportError::UnexpectedResponse.to_string();
                    self.leader = None;
                }
                Err(e) => {
                    tracing::debug!(attempt, target = target.0, error = %e, "controller RPC failed");
                    last = e.to_string();
                    self.leader = None;
                    tokio::time::sleep(self.retry_backoff).await;
                }
            }
        }
        Err(ControllerClientError::NoController {
            attempts: self.max_attempts,
            last,
        })
    }
}
