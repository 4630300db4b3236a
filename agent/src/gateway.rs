//! The gateway server: devices and wallets speak the `gateway` protocol to it over QUIC (see
//! `gateway::proto` for the request table). Chain answers come from the node's store with
//! proofs; records go to and come from the storage cluster; reads are served only against a
//! signed `PayRead` transaction naming this agent, which the node admits first (a replayed or
//! unfunded payment is refused by the same admission every transaction goes through).

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result};
use chain::ledger::bank;
use chain::ledger::registry::RegistryCall;
use chain::node::query::{prove_latest, QueryError};
use chain::node::NodeHandle;
use chain::tx::{AccountAddress, ModuleId, SignedTx};
use gateway::cells;
use gateway::proto::{
    Blob, Cells, ErrorCode, GatewayStatus, PutRecord, Request, Response, Row, ALPN,
    MAX_PUT_RECORDS, MAX_QUERY_KEYS, MAX_REQUEST_BYTES, MAX_SCAN_ROWS, MAX_WAIT_MS,
};
use kvs::net::tls::Identity;
use kvs::{KvsError, ReadStats};
use primitives::RecordKey;

use crate::storage::Storage;

/// Request kinds, for metrics.
const KINDS: [&str; 7] = [
    "status",
    "query",
    "next_nonce",
    "submit",
    "put",
    "get",
    "scan",
];

fn kind_index(r: &Request) -> usize {
    match r {
        Request::Status => 0,
        Request::Query { .. } => 1,
        Request::NextNonce { .. } => 2,
        Request::Submit { .. } => 3,
        Request::Put { .. } => 4,
        Request::Get { .. } => 5,
        Request::Scan { .. } => 6,
    }
}

/// Counters the `/metrics` endpoint exports.
#[derive(Debug, Default)]
pub struct Metrics {
    requests: [AtomicU64; 7],
    errors: [AtomicU64; 7],
    micros: [AtomicU64; 7],
    malformed: AtomicU64,
    records_put: AtomicU64,
    bytes_put: AtomicU64,
    rows_read: AtomicU64,
    reads_paid: AtomicU64,
    payments_refused: AtomicU64,
}

impl Metrics {
    /// The counters in the Prometheus text format.
    pub fn render(&self, out: &mut String) {
        use std::fmt::Write as _;
        let get = |a: &AtomicU64| a.load(Ordering::Relaxed);
        let per_kind =
            |out: &mut String, name: &str, help: &str, values: &[AtomicU64; 7], micros: bool| {
                let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} counter");
                for (k, a) in KINDS.iter().zip(values) {
                    let v = get(a);
                    if micros {
                        let _ = writeln!(
                            out,
                            "{name}{{kind=\"{k}\"}} {}.{:06}",
                            v / 1_000_000,
                            v % 1_000_000
                        );
                    } else {
                        let _ = writeln!(out, "{name}{{kind=\"{k}\"}} {v}");
                    }
                }
            };
        per_kind(
            out,
            "carchain_gateway_requests_total",
            "Gateway requests served, by kind.",
            &self.requests,
            false,
        );
        per_kind(
            out,
            "carchain_gateway_errors_total",
            "Gateway requests answered with an error, by kind.",
            &self.errors,
            false,
        );
        per_kind(
            out,
            "carchain_gateway_request_seconds_total",
            "Time spent serving requests, by kind.",
            &self.micros,
            true,
        );
        for (name, help, v) in [
            (
                "carchain_gateway_malformed_total",
                "Requests that did not decode.",
                &self.malformed,
            ),
            (
                "carchain_gateway_records_put_total",
                "Records written to the storage cluster.",
                &self.records_put,
            ),
            (
                "carchain_gateway_bytes_put_total",
                "Cell bytes written to the storage cluster.",
                &self.bytes_put,
            ),
            (
                "carchain_gateway_rows_read_total",
                "Records returned by gets and scans.",
                &self.rows_read,
            ),
            (
                "carchain_gateway_reads_paid_total",
                "Reads served against an admitted payment.",
                &self.reads_paid,
            ),
            (
                "carchain_gateway_payments_refused_total",
                "Reads refused for a missing or refused payment.",
                &self.payments_refused,
            ),
        ] {
            let _ = writeln!(
                out,
                "# HELP {name} {help}\n# TYPE {name} counter\n{name} {}",
                get(v)
            );
        }
    }
}

/// What the gateway serves from.
pub struct Gateway {
    /// The chain node.
    pub node: NodeHandle,
    /// The storage node and cluster client.
    pub storage: Arc<Storage>,
    /// The agent's account (read payments must name it).
    pub account: AccountAddress,
    /// Address network (bech32 prefixes).
    pub network: bitcoin::Network,
    /// Chain id.
    pub chain_id: String,
    /// Counters.
    pub metrics: Metrics,
}

impl std::fmt::Debug for Gateway {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Gateway")
            .field("account", &self.account)
            .field("chain_id", &self.chain_id)
            .finish_non_exhaustive()
    }
}

fn err(code: ErrorCode, message: impl Into<String>) -> Response {
    Response::error(code, message)
}

fn storage_error(e: &KvsError) -> Response {
    match e {
        KvsError::Duplicate => err(
            ErrorCode::Conflict,
            "the storage cluster already holds other content under this address and key",
        ),
        KvsError::NotEnoughShards { .. } | KvsError::Unavailable(_) | KvsError::Net(_) => {
            err(ErrorCode::Unavailable, format!("storage: {e}"))
        }
        other => err(ErrorCode::Internal, format!("storage: {other}")),
    }
}

/// The column names of a projection, as the cluster takes them (`None`: every column).
fn projection(columns: Option<&[String]>) -> Option<Vec<&str>> {
    columns.map(|v| v.iter().map(String::as_str).collect())
}

fn to_cells(raw: std::collections::BTreeMap<String, Vec<u8>>) -> Cells {
    raw.into_iter().map(|(k, v)| (k, Blob(v))).collect()
}

impl Gateway {
    /// The status answer.
    ///
    /// # Errors
    /// The store fails.
    pub fn status(&self) -> Result<GatewayStatus> {
        let head = self.node.shared.store.require_head()?;
        Ok(GatewayStatus {
            chain_id: self.chain_id.clone(),
            agent: self.account,
            height: head.height,
            storage_nodes: u32::try_from(self.storage.cluster.members().1.len())
                .unwrap_or(u32::MAX),
        })
    }

    fn address(&self, address: &str) -> Result<AccountAddress, Response> {
        AccountAddress::from_bech32(address, self.network).map_err(|e| {
            err(
                ErrorCode::BadRequest,
                format!("{address:?} is not an address of this network: {e}"),
            )
        })
    }

    /// Admits a `PayRead` naming this agent for at least `addresses` addresses.
    async fn check_payment(&self, payment: &[u8], addresses: u64) -> Result<(), Response> {
        let refuse = |m: String| {
            self.metrics
                .payments_refused
                .fetch_add(1, Ordering::Relaxed);
            Err(err(ErrorCode::PaymentRequired, m))
        };
        let max = usize::try_from(chain::tx::DEFAULT_MAX_TX_BYTES).unwrap_or(usize::MAX);
        let Ok(stx) = SignedTx::decode(payment, max) else {
            return refuse("the payment is not a signed transaction".into());
        };
        if stx.tx.module != ModuleId::REGISTRY {
            return refuse("the payment is not a registry PayRead".into());
        }
        match primitives::from_slice::<RegistryCall>(&stx.tx.call) {
            Ok(RegistryCall::PayRead {
                agent,
                addresses: paid,
            }) => {
                if agent != self.account {
                    return refuse(format!(
                        "the payment names agent {}, this agent is {}",
                        agent.to_bech32(self.network),
                        self.account.to_bech32(self.network)
                    ));
                }
                if paid < addresses {
                    return refuse(format!(
                        "the payment covers {paid} addresses, the read traverses {addresses}"
                    ));
                }
            }
            _ => return refuse("the payment is not a registry PayRead".into()),
        }
        match self.node.submit(payment.to_vec()).await {
            Ok(_) => {
                self.metrics.reads_paid.fetch_add(1, Ordering::Relaxed);
                Ok(())
            }
            Err(r) => refuse(format!("the payment was refused: {r}")),
        }
    }

    /// What every read checks before touching storage: an address of this network, and a
    /// payment for one address that the node admits.
    async fn paid_read(&self, address: &str, payment: &Blob) -> Result<(), Response> {
        self.address(address)?;
        self.check_payment(&payment.0, 1).await
    }

    async fn submit(&self, tx: Vec<u8>, wait_ms: u32) -> Response {
        let mut commits = self.node.subscribe();
        let hash = match self.node.submit(tx).await {
            Ok(h) => h,
            Err(r) => return err(ErrorCode::Rejected, r.to_string()),
        };
        if wait_ms == 0 {
            return Response::Submitted { hash, height: None };
        }
        let wait = Duration::from_millis(u64::from(wait_ms.min(MAX_WAIT_MS)));
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            match tokio::time::timeout_at(deadline, commits.recv()).await {
                Ok(Ok(c)) if c.txs.contains(&hash) => {
                    return Response::Submitted {
                        hash,
                        height: Some(c.height),
                    }
                }
                Ok(Ok(_)) | Ok(Err(tokio::sync::broadcast::error::RecvError::Lagged(_))) => {}
                Ok(Err(_)) => return err(ErrorCode::Internal, "the node stopped"),
                Err(_) => {
                    return err(
                        ErrorCode::Timeout,
                        format!(
                            "admitted as {} but not in a block within {wait_ms} ms",
                            hex::encode(hash)
                        ),
                    )
                }
            }
        }
    }

    fn check_put(&self, address: &str, records: &[PutRecord]) -> Result<(), Response> {
        self.address(address)?;
        if records.is_empty() || records.len() > MAX_PUT_RECORDS {
            return Err(err(
                ErrorCode::BadRequest,
                format!("a put carries 1 to {MAX_PUT_RECORDS} records"),
            ));
        }
        let mut keys = std::collections::BTreeSet::new();
        for r in records {
            let key = RecordKey::decode(&r.key.0).map_err(|e| {
                err(
                    ErrorCode::BadRequest,
                    format!("a record key does not decode: {e}"),
                )
            })?;
            if !keys.insert(&r.key) {
                return Err(err(ErrorCode::BadRequest, "the put names one key twice"));
            }
            let sealed = cells::from_cells(&r.cells)
                .map_err(|e| err(ErrorCode::BadRequest, format!("record cells: {e}")))?;
            if sealed.address != address || sealed.key != key {
                return Err(err(
                    ErrorCode::BadRequest,
                    "a sealed record is bound to another address or key than it is put under",
                ));
            }
        }
        Ok(())
    }

    async fn put(&self, address: String, records: Vec<PutRecord>) -> Response {
        if let Err(r) = self.check_put(&address, &records) {
            return r;
        }
        let n = records.len() as u64;
        let bytes: u64 = records.iter().map(|r| cells::stored_size(&r.cells)).sum();
        let recs: Vec<kvs::Record> = records
            .into_iter()
            .map(|r| kvs::Record::new(r.key.0, r.cells.into_iter().map(|(k, v)| (k, v.0))))
            .collect();
        let keys: Vec<Vec<u8>> = recs.iter().map(|r| r.key.clone()).collect();
        let res = self
            .storage
            .run(move |c| c.put_batch(&address, &recs))
            .await;
        match res {
            Err(e) => err(ErrorCode::Internal, e.to_string()),
            Ok(Err(e)) => storage_error(&e),
            Ok(Ok(receipt)) => {
                let mut roots = Vec::with_capacity(keys.len());
                for k in &keys {
                    match receipt.entries.iter().find(|(ek, _)| ek == k) {
                        Some((_, e)) => roots.push(e.root),
                        None => {
                            return err(ErrorCode::Internal, "the storage receipt lacks a record")
                        }
                    }
                }
                self.metrics.records_put.fetch_add(n, Ordering::Relaxed);
                self.metrics.bytes_put.fetch_add(bytes, Ordering::Relaxed);
                Response::Stored {
                    roots,
                    durable: u32::try_from(receipt.durable.len()).unwrap_or(u32::MAX),
                    missing: u32::try_from(receipt.missing.len()).unwrap_or(u32::MAX),
                }
            }
        }
    }

    async fn get(
        &self,
        address: String,
        key: Blob,
        columns: Option<Vec<String>>,
        payment: Blob,
    ) -> Response {
        if let Err(r) = self.paid_read(&address, &payment).await {
            return r;
        }
        let res = self
            .storage
            .run(move |c| {
                let cols = projection(columns.as_deref());
                c.get(&address, &key.0, cols.as_deref(), &mut ReadStats::default())
            })
            .await;
        match res {
            Err(e) => err(ErrorCode::Internal, e.to_string()),
            Ok(Err(e)) => storage_error(&e),
            Ok(Ok(found)) => {
                if found.is_some() {
                    self.metrics.rows_read.fetch_add(1, Ordering::Relaxed);
                }
                Response::Record(found.map(to_cells))
            }
        }
    }

    async fn scan(
        &self,
        address: String,
        start: Blob,
        end: Option<Blob>,
        columns: Option<Vec<String>>,
        limit: u32,
        payment: Blob,
    ) -> Response {
        if limit == 0 || limit > MAX_SCAN_ROWS {
            return err(
                ErrorCode::BadRequest,
                format!("a scan returns 1 to {MAX_SCAN_ROWS} rows"),
            );
        }
        if let Err(r) = self.paid_read(&address, &payment).await {
            return r;
        }
        let res = self
            .storage
            .run(move |c| {
                let cols = projection(columns.as_deref());
                c.scan(
                    &address,
                    &start.0,
                    end.as_ref().map(|e| e.0.as_slice()),
                    cols.as_deref(),
                    usize::try_from(limit).unwrap_or(usize::MAX),
                    &mut ReadStats::default(),
                )
            })
            .await;
        match res {
            Err(e) => err(ErrorCode::Internal, e.to_string()),
            Ok(Err(e)) => storage_error(&e),
            Ok(Ok(rows)) => {
                self.metrics
                    .rows_read
                    .fetch_add(rows.len() as u64, Ordering::Relaxed);
                Response::Rows(
                    rows.into_iter()
                        .map(|(k, c)| Row {
                            key: Blob(k),
                            cells: to_cells(c),
                        })
                        .collect(),
                )
            }
        }
    }

    /// Proven state values (also used by the HTTP API).
    pub async fn query(&self, keys: Vec<Vec<u8>>) -> Response {
        if keys.is_empty() || keys.len() > MAX_QUERY_KEYS {
            return err(
                ErrorCode::BadRequest,
                format!("a query asks 1 to {MAX_QUERY_KEYS} keys"),
            );
        }
        let store = self.node.shared.store.clone();
        match tokio::task::spawn_blocking(move || prove_latest(&store, &keys)).await {
            Err(e) => err(ErrorCode::Internal, e.to_string()),
            Ok(Ok(p)) => Response::Proven {
                header: Box::new(p.header),
                answers: p.answers,
            },
            Ok(Err(e @ (QueryError::NothingFinalized | QueryError::Busy(_)))) => {
                err(ErrorCode::Retry, e.to_string())
            }
            Ok(Err(e)) => err(ErrorCode::Internal, e.to_string()),
        }
    }

    fn next_nonce(&self, account: &AccountAddress) -> Response {
        let shared = &self.node.shared;
        let committed = match bank::account(&*shared.store, account) {
            Ok(a) => a.nonce,
            Err(e) => return err(ErrorCode::Internal, e.to_string()),
        };
        let pending = shared
            .mempool
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .pending_next_nonce(account);
        Response::Nonce(pending.map_or(committed, |p| p.max(committed)))
    }

    /// Answers one request.
    pub async fn handle(&self, req: Request) -> Response {
        let kind = kind_index(&req);
        let started = Instant::now();
        let resp = match req {
            Request::Status => match self.status() {
                Ok(s) => Response::Status(s),
                Err(e) => err(ErrorCode::Internal, e.to_string()),
            },
            Request::Query { keys } => self.query(keys.into_iter().map(|b| b.0).collect()).await,
            Request::NextNonce { account } => self.next_nonce(&account),
            Request::Submit { tx, wait_ms } => self.submit(tx.0, wait_ms).await,
            Request::Put { address, records } => self.put(address, records).await,
            Request::Get {
                address,
                key,
                columns,
                payment,
            } => self.get(address, key, columns, payment).await,
            Request::Scan {
                address,
                start,
                end,
                columns,
                limit,
                payment,
            } => {
                self.scan(address, start, end, columns, limit, payment)
                    .await
            }
        };
        let m = &self.metrics;
        if let Some(a) = m.requests.get(kind) {
            a.fetch_add(1, Ordering::Relaxed);
        }
        if matches!(resp, Response::Error { .. }) {
            if let Some(a) = m.errors.get(kind) {
                a.fetch_add(1, Ordering::Relaxed);
            }
        }
        if let Some(a) = m.micros.get(kind) {
            a.fetch_add(
                u64::try_from(started.elapsed().as_micros()).unwrap_or(u64::MAX),
                Ordering::Relaxed,
            );
        }
        resp
    }

    /// Answers one request frame (malformed input gets a `bad_request` answer).
    pub async fn handle_frame(&self, bytes: &[u8]) -> Response {
        match Request::from_frame(bytes) {
            Ok(req) => self.handle(req).await,
            Err(e) => {
                self.metrics.malformed.fetch_add(1, Ordering::Relaxed);
                err(ErrorCode::BadRequest, format!("malformed request: {e}"))
            }
        }
    }
}

async fn serve_stream(gw: Arc<Gateway>, mut send: quinn::SendStream, mut recv: quinn::RecvStream) {
    let resp = match recv.read_to_end(MAX_REQUEST_BYTES.saturating_add(4)).await {
        Ok(bytes) => gw.handle_frame(&bytes).await,
        Err(quinn::ReadToEndError::TooLong) => {
            gw.metrics.malformed.fetch_add(1, Ordering::Relaxed);
            let _ = recv.stop(0u32.into());
            err(
                ErrorCode::BadRequest,
                format!("request larger than {MAX_REQUEST_BYTES} bytes"),
            )
        }
        Err(e) => {
            tracing::debug!(error = %e, "gateway stream failed");
            return;
        }
    };
    let frame = match resp.to_frame() {
        Ok(f) => f,
        Err(e) => match err(ErrorCode::Internal, format!("answer too large: {e}")).to_frame() {
            Ok(f) => f,
            Err(_) => return,
        },
    };
    if send.write_all(&frame).await.is_ok() {
        let _ = send.finish();
        let _ = send.stopped().await;
    }
}

/// A running gateway endpoint.
#[derive(Debug)]
pub struct Server {
    endpoint: quinn::Endpoint,
}

impl Server {
    /// Serves `gw` on `addr` with `identity` (clients pin its certificate).
    ///
    /// # Errors
    /// The endpoint cannot bind.
    pub fn start(gw: Arc<Gateway>, identity: &Identity, addr: SocketAddr) -> Result<Self> {
        let endpoint = quinn::Endpoint::server(identity.server_config(ALPN)?, addr)
            .with_context(|| format!("binding the gateway on {addr}"))?;
        let ep = endpoint.clone();
        tokio::spawn(async move {
            while let Some(incoming) = ep.accept().await {
                let gw = gw.clone();
                tokio::spawn(async move {
                    let conn = match incoming.await {
                        Ok(c) => c,
                        Err(e) => {
                            tracing::debug!(error = %e, "gateway handshake failed");
                            return;
                        }
                    };
                    while let Ok((send, recv)) = conn.accept_bi().await {
                        tokio::spawn(serve_stream(gw.clone(), send, recv));
                    }
                });
            }
        });
        Ok(Server { endpoint })
    }

    /// The bound address.
    ///
    /// # Errors
    /// The endpoint has no local address.
    pub fn local_addr(&self) -> Result<SocketAddr> {
        Ok(self.endpoint.local_addr()?)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.endpoint.close(0u32.into(), b"stopping");
    }
}
