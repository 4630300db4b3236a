//! The gateway client: one QUIC endpoint, connections to the network file's agents (each
//! certificate pinned), one request per stream under a deadline, and fail-over: a transport
//! failure moves to the next agent, an answer from an agent (even an error) does not.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::Duration;

use chain::light::{SignedHeader, StateAnswer};
use chain::tx::AccountAddress;

use crate::network::{AgentEntry, NetworkFile};
use crate::proto::{
    Blob, Cells, ErrorCode, GatewayStatus, ProtoError, PutRecord, Request, Response, Row, ALPN,
    MAX_RESPONSE_BYTES,
};
use crate::verify::{Proven, Verifier, VerifyError};

/// Why a call failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum GatewayError {
    /// No agent could be reached.
    #[error("no agent reachable: {0}")]
    Unreachable(String),
    /// The agent answered with an error.
    #[error("{message} ({})", code.as_str())]
    Remote {
        /// Its code.
        code: ErrorCode,
        /// Its message.
        message: String,
    },
    /// The answer is malformed.
    #[error("malformed answer: {0}")]
    Proto(#[from] ProtoError),
    /// The answer is of another kind than the request calls for.
    #[error("unexpected answer to {0}")]
    Unexpected(&'static str),
    /// A chain answer failed verification: the agent is faulty or lying.
    #[error("verification failed: {0}")]
    Verify(#[from] VerifyError),
    /// Local setup failed.
    #[error("{0}")]
    Setup(String),
}

impl GatewayError {
    /// Whether this is the chain refusing a transaction with reason code `code` (e.g.
    /// `"duplicate"`, `"nonce_too_low"`).
    pub fn is_rejection(&self, code: &str) -> bool {
        matches!(self, GatewayError::Remote { code: ErrorCode::Rejected, message } if message.starts_with(code))
    }
}

struct Target {
    entry: AgentEntry,
    config: quinn::ClientConfig,
    conn: Mutex<Option<quinn::Connection>>,
}

/// A client of the network's gateways.
pub struct GatewayClient {
    endpoint: quinn::Endpoint,
    targets: Vec<Target>,
    preferred: AtomicUsize,
    timeout: Duration,
}

impl std::fmt::Debug for GatewayClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GatewayClient")
            .field(
                "agents",
                &self
                    .targets
                    .iter()
                    .map(|t| t.entry.gateway)
                    .collect::<Vec<_>>(),
            )
            .finish_non_exhaustive()
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl GatewayClient {
    /// A client of `agents` (tried in order, starting with `first`). Must be called inside a
    /// tokio runtime.
    ///
    /// # Errors
    /// [`GatewayError::Setup`] if the endpoint or a TLS configuration cannot be made.
    pub fn new(
        agents: &[AgentEntry],
        first: usize,
        timeout: Duration,
    ) -> Result<Self, GatewayError> {
        if agents.is_empty() {
            return Err(GatewayError::Setup("no agents given".into()));
        }
        let endpoint = quinn::Endpoint::client(SocketAddr::from(([0, 0, 0, 0], 0)))
            .map_err(|e| GatewayError::Setup(format!("client endpoint: {e}")))?;
        let targets = agents
            .iter()
            .map(|a| {
                Ok(Target {
                    entry: a.clone(),
                    config: net::tls::client_config(Some(&a.cert_sha256), ALPN)
                        .map_err(|e| GatewayError::Setup(format!("{}: {e}", a.name)))?,
                    conn: Mutex::new(None),
                })
            })
            .collect::<Result<Vec<_>, GatewayError>>()?;
        Ok(GatewayClient {
            endpoint,
            preferred: AtomicUsize::new(first.checked_rem(targets.len()).unwrap_or(0)),
            targets,
            timeout,
        })
    }

    /// A client of every agent in `file`, starting with `first`.
    ///
    /// # Errors
    /// See [`GatewayClient::new`].
    pub fn for_network(
        file: &NetworkFile,
        first: usize,
        timeout: Duration,
    ) -> Result<Self, GatewayError> {
        Self::new(&file.agents, first, timeout)
    }

    /// The agent currently used.
    pub fn current(&self) -> &AgentEntry {
        let i = self
            .preferred
            .load(Ordering::Relaxed)
            .checked_rem(self.targets.len())
            .unwrap_or(0);
        #[allow(clippy::indexing_slicing)] // i < len
        &self.targets[i].entry
    }

    async fn connection(&self, t: &Target) -> Result<quinn::Connection, String> {
        if let Some(c) = lock(&t.conn).clone() {
            if c.close_reason().is_none() {
                return Ok(c);
            }
        }
        let c = self
            .endpoint
            .connect_with(t.config.clone(), t.entry.gateway, net::tls::SERVER_NAME)
            .map_err(|e| e.to_string())?
            .await
            .map_err(|e| e.to_string())?;
        *lock(&t.conn) = Some(c.clone());
        Ok(c)
    }

    async fn call_one(&self, t: &Target, frame: &[u8]) -> Result<Vec<u8>, String> {
        let conn = self.connection(t).await?;
        let (mut send, mut recv) = conn.open_bi().await.map_err(|e| e.to_string())?;
        send.write_all(frame).await.map_err(|e| e.to_string())?;
        send.finish().map_err(|e| e.to_string())?;
        recv.read_to_end(MAX_RESPONSE_BYTES.saturating_add(4))
            .await
            .map_err(|e| e.to_string())
    }

    /// Sends `req` to the preferred agent, failing over to the others on transport errors.
    ///
    /// # Errors
    /// [`GatewayError::Unreachable`] if no agent answers; [`GatewayError::Remote`] for an
    /// error answer.
    pub async fn call(&self, req: &Request) -> Result<Response, GatewayError> {
        let frame = req.to_frame()?;
        let n = self.targets.len();
        let start = self.preferred.load(Ordering::Relaxed);
        let mut failures = Vec::new();
        for step in 0..n {
            let i = start.wrapping_add(step).checked_rem(n).unwrap_or(0);
            let Some(t) = self.targets.get(i) else {
                continue;
            };
            let attempt = tokio::time::timeout(self.timeout, self.call_one(t, &frame)).await;
            match attempt {
                Ok(Ok(bytes)) => {
                    self.preferred.store(i, Ordering::Relaxed);
                    return match Response::from_frame(&bytes)? {
                        Response::Error { code, message } => {
                            Err(GatewayError::Remote { code, message })
                        }
                        r => Ok(r),
                    };
                }
                Ok(Err(e)) => failures.push(format!("{}: {e}", t.entry.name)),
                Err(_) => failures.push(format!("{}: timed out", t.entry.name)),
            }
            *lock(&t.conn) = None;
            tracing::debug!(agent = %t.entry.name, "gateway unreachable, failing over");
        }
        Err(GatewayError::Unreachable(failures.join("; ")))
    }

    /// The status of the agent answering.
    ///
    /// # Errors
    /// [`GatewayError`].
    pub async fn status(&self) -> Result<GatewayStatus, GatewayError> {
        match self.call(&Request::Status).await? {
            Response::Status(s) => Ok(s),
            _ => Err(GatewayError::Unexpected("status")),
        }
    }

    /// Raw proven state (unchecked: see [`GatewayClient::query_verified`]).
    ///
    /// # Errors
    /// [`GatewayError`].
    pub async fn query(
        &self,
        keys: &[Vec<u8>],
    ) -> Result<(SignedHeader, Vec<StateAnswer>), GatewayError> {
        let req = Request::Query {
            keys: keys.iter().cloned().map(Blob).collect(),
        };
        match self.call(&req).await? {
            Response::Proven { header, answers } => Ok((*header, answers)),
            _ => Err(GatewayError::Unexpected("query")),
        }
    }

    /// State values of `keys` after the latest finalized block, checked by `verifier`.
    /// A `retry` answer (the chain moved during the query) is retried a few times.
    ///
    /// # Errors
    /// [`GatewayError`]; [`GatewayError::Verify`] if the agent's answer does not check.
    pub async fn query_verified(
        &self,
        verifier: &mut Verifier,
        keys: &[Vec<u8>],
    ) -> Result<Proven, GatewayError> {
        let mut last = None;
        for _ in 0..5 {
            match self.query(keys).await {
                Ok((header, answers)) => return Ok(verifier.check(&header, keys, &answers)?),
                Err(
                    e @ GatewayError::Remote {
                        code: ErrorCode::Retry,
                        ..
                    },
                ) => {
                    last = Some(e);
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
                Err(e) => return Err(e),
            }
        }
        Err(last.unwrap_or(GatewayError::Unexpected("query")))
    }

    /// The next nonce of `account`, counting pending transactions.
    ///
    /// # Errors
    /// [`GatewayError`].
    pub async fn next_nonce(&self, account: AccountAddress) -> Result<u64, GatewayError> {
        match self.call(&Request::NextNonce { account }).await? {
            Response::Nonce(n) => Ok(n),
            _ => Err(GatewayError::Unexpected("next_nonce")),
        }
    }

    /// Submits a signed transaction; with `wait`, waits up to that long for its block.
    ///
    /// # Errors
    /// [`GatewayError`] (a chain refusal is [`ErrorCode::Rejected`]).
    pub async fn submit(
        &self,
        tx: Vec<u8>,
        wait: Duration,
    ) -> Result<([u8; 32], Option<u64>), GatewayError> {
        let wait_ms = u32::try_from(wait.as_millis()).unwrap_or(u32::MAX);
        match self
            .call(&Request::Submit {
                tx: Blob(tx),
                wait_ms,
            })
            .await?
        {
            Response::Submitted { hash, height } => Ok((hash, height)),
            _ => Err(GatewayError::Unexpected("submit")),
        }
    }

    /// Stores records at `address`; returns each record's stripe root, and the durable and
    /// missing shard counts.
    ///
    /// # Errors
    /// [`GatewayError`].
    pub async fn put(
        &self,
        address: &str,
        records: Vec<PutRecord>,
    ) -> Result<(Vec<[u8; 32]>, u32, u32), GatewayError> {
        let req = Request::Put {
            address: address.to_owned(),
            records,
        };
        match self.call(&req).await? {
            Response::Stored {
                roots,
                durable,
                missing,
            } => Ok((roots, durable, missing)),
            _ => Err(GatewayError::Unexpected("put")),
        }
    }

    /// One record's cells (all, or the projection `columns`), paid by `payment`.
    ///
    /// # Errors
    /// [`GatewayError`].
    pub async fn get(
        &self,
        address: &str,
        key: &[u8],
        columns: Option<Vec<String>>,
        payment: Vec<u8>,
    ) -> Result<Option<Cells>, GatewayError> {
        let req = Request::Get {
            address: address.to_owned(),
            key: Blob(key.to_vec()),
            columns,
            payment: Blob(payment),
        };
        match self.call(&req).await? {
            Response::Record(r) => Ok(r),
            _ => Err(GatewayError::Unexpected("get")),
        }
    }

    /// Rows of `address` with `start <= key < end`, paid by `payment`.
    ///
    /// # Errors
    /// [`GatewayError`].
    pub async fn scan(
        &self,
        address: &str,
        start: &[u8],
        end: Option<&[u8]>,
        columns: Option<Vec<String>>,
        limit: u32,
        payment: Vec<u8>,
    ) -> Result<Vec<Row>, GatewayError> {
        let req = Request::Scan {
            address: address.to_owned(),
            start: Blob(start.to_vec()),
            end: end.map(|e| Blob(e.to_vec())),
            columns,
            limit,
            payment: Blob(payment),
        };
        match self.call(&req).await? {
            Response::Rows(r) => Ok(r),
            _ => Err(GatewayError::Unexpected("scan")),
        }
    }
}
