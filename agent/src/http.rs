//! The agent's HTTP API for apps, meant for loopback: JSON over HTTP/1.1.
//!
//! | route | answer |
//! |---|---|
//! | `GET /health` | `200 {"status":"ok",…}` while the node runs, `503` once it stopped |
//! | `GET /metrics` | Prometheus text: gateway counters, chain height, peers, mempool |
//! | `GET /v1/status` | the gateway status (chain id, agent account, height, storage nodes) |
//! | `GET /v1/state?keys=HEX,HEX` | state values after the latest finalized block, with proofs and the signed header |
//! | `GET /v1/record?address=A&key=HEX&payment=HEX[&columns=A,B]` | one record's ciphertext cells (base64), paid by a signed `PayRead` |
//! | `POST /v1/tx` | body: a hex signed transaction; `?wait_ms=N` waits for its block |
//!
//! Errors are `{"error": code, "message": text}` with a matching HTTP status. The same
//! handlers as the QUIC gateway answer, so both APIs enforce the same limits and payments.

use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::{Context as _, Result};
use axum::extract::{Query, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response as HttpResponse};
use axum::routing::{get, post};
use axum::{Json, Router};
use gateway::proto::{Blob, ErrorCode, Request, Response};
use serde::Deserialize;
use serde_json::json;

use crate::gateway::Gateway;

fn status_of(code: ErrorCode) -> StatusCode {
    match code {
        ErrorCode::BadRequest => StatusCode::BAD_REQUEST,
        ErrorCode::Rejected | ErrorCode::Conflict => StatusCode::CONFLICT,
        ErrorCode::PaymentRequired => StatusCode::PAYMENT_REQUIRED,
        ErrorCode::Unavailable | ErrorCode::Retry => StatusCode::SERVICE_UNAVAILABLE,
        ErrorCode::Timeout => StatusCode::GATEWAY_TIMEOUT,
        _ => StatusCode::INTERNAL_SERVER_ERROR,
    }
}

fn bad(message: impl Into<String>) -> HttpResponse {
    answer(Response::error(ErrorCode::BadRequest, message))
}

fn answer(resp: Response) -> HttpResponse {
    match resp {
        Response::Error { code, message } => (
            status_of(code),
            Json(json!({"error": code.as_str(), "message": message})),
        )
            .into_response(),
        Response::Status(s) => Json(s).into_response(),
        Response::Proven { header, answers } => {
            Json(json!({"header": header, "answers": answers})).into_response()
        }
        Response::Submitted { hash, height } => {
            Json(json!({"hash": hex::encode(hash), "height": height})).into_response()
        }
        Response::Record(cells) => Json(json!({ "cells": cells })).into_response(),
        other => Json(json!({"answer": format!("{other:?}")})).into_response(),
    }
}

fn hex_arg(name: &str, v: &str) -> std::result::Result<Vec<u8>, String> {
    hex::decode(v.trim()).map_err(|_| format!("{name} is not hex"))
}

async fn health(State(gw): State<Arc<Gateway>>) -> HttpResponse {
    match gw.node.status().await {
        Some(s) => {
            Json(json!({"status": "ok", "height": s.height, "peers": s.peers})).into_response()
        }
        None => (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(json!({"status": "stopped"})),
        )
            .into_response(),
    }
}

async fn metrics(State(gw): State<Arc<Gateway>>) -> HttpResponse {
    use std::fmt::Write as _;
    let mut out = String::new();
    gw.metrics.render(&mut out);
    if let Some(s) = gw.node.status().await {
        for (name, help, v) in [
            ("carchain_chain_height", "Last committed height.", s.height),
            (
                "carchain_chain_round",
                "Consensus round at the working height.",
                u64::from(s.round),
            ),
            (
                "carchain_chain_peers",
                "Connected consensus peers.",
                s.peers as u64,
            ),
            (
                "carchain_chain_mempool_txs",
                "Pending transactions.",
                s.mempool as u64,
            ),
            (
                "carchain_chain_refused_non_validator_total",
                "Consensus messages refused from non-validators.",
                s.refused_non_validator,
            ),
        ] {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} gauge\n{name} {v}");
        }
    }
    let n = gw.storage.cluster.members().1.len();
    let _ = writeln!(
        out,
        "# HELP carchain_storage_nodes Storage nodes in the placement set.\n# TYPE carchain_storage_nodes gauge\ncarchain_storage_nodes {n}"
    );
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], out).into_response()
}

async fn status(State(gw): State<Arc<Gateway>>) -> HttpResponse {
    answer(gw.handle(Request::Status).await)
}

#[derive(Debug, Deserialize)]
struct StateArgs {
    keys: String,
}

async fn state(State(gw): State<Arc<Gateway>>, Query(a): Query<StateArgs>) -> HttpResponse {
    let mut keys = Vec::new();
    for k in a.keys.split(',').filter(|k| !k.is_empty()) {
        match hex_arg("a key", k) {
            Ok(k) => keys.push(Blob(k)),
            Err(m) => return bad(m),
        }
    }
    answer(gw.handle(Request::Query { keys }).await)
}

#[derive(Debug, Deserialize)]
struct RecordArgs {
    address: String,
    key: String,
    payment: String,
    columns: Option<String>,
}

async fn record(State(gw): State<Arc<Gateway>>, Query(a): Query<RecordArgs>) -> HttpResponse {
    let key = match hex_arg("key", &a.key) {
        Ok(k) => k,
        Err(m) => return bad(m),
    };
    let payment = match hex_arg("payment", &a.payment) {
        Ok(p) => p,
        Err(m) => return bad(m),
    };
    let columns = a
        .columns
        .map(|c| c.split(',').map(str::to_owned).collect::<Vec<_>>());
    answer(
        gw.handle(Request::Get {
            address: a.address,
            key: Blob(key),
            columns,
            payment: Blob(payment),
        })
        .await,
    )
}

#[derive(Debug, Deserialize)]
struct TxArgs {
    wait_ms: Option<u32>,
}

async fn tx(State(gw): State<Arc<Gateway>>, Query(a): Query<TxArgs>, body: String) -> HttpResponse {
    match hex_arg("the body", &body) {
        Ok(tx) => answer(
            gw.handle(Request::Submit {
                tx: Blob(tx),
                wait_ms: a.wait_ms.unwrap_or(0),
            })
            .await,
        ),
        Err(m) => bad(m),
    }
}

/// The router over `gw`.
pub fn router(gw: Arc<Gateway>) -> Router {
    Router::new()
        .route("/health", get(health))
        .route("/metrics", get(metrics))
        .route("/v1/status", get(status))
        .route("/v1/state", get(state))
        .route("/v1/record", get(record))
        .route("/v1/tx", post(tx))
        .layer(axum::extract::DefaultBodyLimit::max(1 << 20))
        .with_state(gw)
}

/// Binds `addr` and serves the API until the process ends; returns the bound address.
///
/// # Errors
/// The address cannot be bound.
pub async fn start(gw: Arc<Gateway>, addr: SocketAddr) -> Result<SocketAddr> {
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .with_context(|| format!("binding the HTTP API on {addr}"))?;
    let bound = listener.local_addr()?;
    tokio::spawn(async move {
        if let Err(e) = axum::serve(listener, router(gw)).await {
            tracing::warn!(error = %e, "the HTTP API stopped");
        }
    });
    Ok(bound)
}
