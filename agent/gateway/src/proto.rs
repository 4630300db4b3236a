//! The gateway protocol, version 1.
//!
//! One request per bidirectional QUIC stream (ALPN [`ALPN`]): the client writes one frame
//! (`net::frame`, kind [`KIND_REQUEST`]) and finishes its side, the gateway answers with one
//! frame (kind [`KIND_RESPONSE`]). Bodies are [`primitives::codec`] encodings of [`Request`] and
//! [`Response`]. The frame header carries the wire version; the ALPN names the protocol version,
//! so a client and a gateway of different major versions fail the TLS handshake with a clear
//! reason instead of misreading each other. Limits: [`MAX_REQUEST_BYTES`] per request,
//! [`MAX_RESPONSE_BYTES`] per response, [`MAX_QUERY_KEYS`] keys per query, [`MAX_PUT_RECORDS`]
//! records per put, [`MAX_SCAN_ROWS`] rows per scan.
//!
//! | request | answer | what it does |
//! |---|---|---|
//! | `Status` | `Status` | chain id, the agent's account, height, storage nodes |
//! | `Query { keys }` | `Proven` | state values after the latest finalized block, with proofs and the signed header |
//! | `NextNonce { account }` | `Nonce` | the account's next nonce counting its pending transactions (a hint, unproven) |
//! | `Submit { tx, wait_ms }` | `Submitted` | admits a signed transaction; with `wait_ms > 0`, waits that long for its block |
//! | `Put { address, records }` | `Stored` | writes records (their KVS cells) to the storage cluster, one stripe root per record |
//! | `Get { address, key, columns, payment }` | `Record` | one record's cells (a projection if `columns`), paid by a `PayRead` |
//! | `Scan { address, start, end, columns, limit, payment }` | `Rows` | records with `start <= key < end` in key order, paid by a `PayRead` |
//!
//! Every failure is a `Response::Error` with an [`ErrorCode`] and a readable message.

use std::collections::BTreeMap;

use chain::light::{SignedHeader, StateAnswer};
use chain::tx::AccountAddress;
use net::frame::{Decoder, Frame};
use primitives::codec;
use serde::{Deserialize, Serialize};

/// ALPN protocol id (names the major version).
pub const ALPN: &[u8] = b"carchain-gateway/1";
/// Frame kind of a request.
pub const KIND_REQUEST: u8 = 1;
/// Frame kind of a response.
pub const KIND_RESPONSE: u8 = 2;
/// Largest request frame.
pub const MAX_REQUEST_BYTES: usize = 16 << 20;
/// Largest response frame.
pub const MAX_RESPONSE_BYTES: usize = 64 << 20;
/// Most keys in one query.
pub const MAX_QUERY_KEYS: usize = 4096;
/// Most records in one put.
pub const MAX_PUT_RECORDS: usize = 256;
/// Most rows one scan returns.
pub const MAX_SCAN_ROWS: u32 = 10_000;
/// Longest a `Submit` may wait for its block.
pub const MAX_WAIT_MS: u32 = 60_000;

/// A byte string: raw in the binary encoding, base64 in JSON.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Default, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Blob(#[serde(with = "primitives::bytes::base64")] pub Vec<u8>);

impl From<Vec<u8>> for Blob {
    fn from(v: Vec<u8>) -> Self {
        Blob(v)
    }
}

/// Column name → cell bytes, as the KVS stores a record.
pub type Cells = BTreeMap<String, Blob>;

/// One record of a put: its encoded key and cells.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PutRecord {
    /// Order-preserving encoded record key.
    pub key: Blob,
    /// Its cells.
    pub cells: Cells,
}

/// One row of a scan.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Row {
    /// Encoded record key.
    pub key: Blob,
    /// Its cells (the projection asked for).
    pub cells: Cells,
}

/// A request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Request {
    /// The gateway's status.
    Status,
    /// State values after the latest finalized block, with proofs.
    Query {
        /// State keys.
        keys: Vec<Blob>,
    },
    /// The next nonce of `account`, counting its pending transactions.
    NextNonce {
        /// The account.
        account: AccountAddress,
    },
    /// Submits a signed transaction.
    Submit {
        /// The encoded signed transaction.
        tx: Blob,
        /// How long to wait for the block that includes it (0: do not wait).
        wait_ms: u32,
    },
    /// Writes records to the storage cluster.
    Put {
        /// The address (partition).
        address: String,
        /// The records.
        records: Vec<PutRecord>,
    },
    /// Reads one record.
    Get {
        /// The address.
        address: String,
        /// The encoded key.
        key: Blob,
        /// Columns to return (`None`: all).
        columns: Option<Vec<String>>,
        /// A signed `PayRead` transaction covering one address.
        payment: Blob,
    },
    /// Reads a key range of one address.
    Scan {
        /// The address.
        address: String,
        /// First key (inclusive).
        start: Blob,
        /// End key (exclusive; `None`: to the end of the address).
        end: Option<Blob>,
        /// Columns to return (`None`: all).
        columns: Option<Vec<String>>,
        /// Most rows.
        limit: u32,
        /// A signed `PayRead` transaction covering one address.
        payment: Blob,
    },
}

/// What a gateway reports about itself.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GatewayStatus {
    /// The chain id.
    pub chain_id: String,
    /// The agent's account (read fees are paid to it).
    pub agent: AccountAddress,
    /// Last finalized height.
    pub height: u64,
    /// Storage nodes the gateway writes to.
    pub storage_nodes: u32,
}

/// Why a request failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub enum ErrorCode {
    /// The request does not decode or breaks a limit.
    BadRequest,
    /// The chain refused the transaction (the message starts with the chain's reason code).
    Rejected,
    /// The read was not paid for (missing, wrong or refused `PayRead`).
    PaymentRequired,
    /// The storage cluster cannot serve this now (too few nodes).
    Unavailable,
    /// The storage cluster already holds other content under this address and key.
    Conflict,
    /// Nothing is finalized yet, or the chain moved during the query: retry.
    Retry,
    /// The transaction was admitted but not included within the wait.
    Timeout,
    /// A fault inside the agent.
    Internal,
}

impl ErrorCode {
    /// Stable lower-case name.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorCode::BadRequest => "bad_request",
            ErrorCode::Rejected => "rejected",
            ErrorCode::PaymentRequired => "payment_required",
            ErrorCode::Unavailable => "unavailable",
            ErrorCode::Conflict => "conflict",
            ErrorCode::Retry => "retry",
            ErrorCode::Timeout => "timeout",
            ErrorCode::Internal => "internal",
        }
    }
}

/// An answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Response {
    /// The status.
    Status(GatewayStatus),
    /// Proven state values.
    Proven {
        /// The finalized header they are proven against.
        header: Box<SignedHeader>,
        /// One answer per key asked, in order.
        answers: Vec<StateAnswer>,
    },
    /// The next nonce.
    Nonce(u64),
    /// The transaction was admitted.
    Submitted {
        /// Its hash.
        hash: [u8; 32],
        /// The height of its block, if the request waited and it was included.
        height: Option<u64>,
    },
    /// The records were stored.
    Stored {
        /// The stripe root (placement commitment) of each record, in request order.
        roots: Vec<[u8; 32]>,
        /// Shards acknowledged durable.
        durable: u32,
        /// Shards not written yet (repair completes them).
        missing: u32,
    },
    /// One record, or `None` if the address holds no such key.
    Record(Option<Cells>),
    /// Rows of a scan.
    Rows(Vec<Row>),
    /// The request failed.
    Error {
        /// Machine code.
        code: ErrorCode,
        /// Human explanation.
        message: String,
    },
}

impl Response {
    /// An error answer.
    pub fn error(code: ErrorCode, message: impl Into<String>) -> Self {
        Response::Error {
            code,
            message: message.into(),
        }
    }
}

/// Why bytes are not a valid message.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ProtoError {
    /// The frame is malformed, too large, truncated or of the wrong kind.
    #[error("frame: {0}")]
    Frame(String),
    /// The body does not decode.
    #[error("body: {0}")]
    Body(String),
}

fn encode_frame<T: Serialize>(kind: u8, v: &T, limit: usize) -> Result<Vec<u8>, ProtoError> {
    let body = codec::to_vec(v).map_err(|e| ProtoError::Body(e.to_string()))?;
    Frame { kind, body }
        .encode(limit)
        .map_err(|e| ProtoError::Frame(e.to_string()))
}

fn decode_frame<T: for<'de> Deserialize<'de>>(
    kind: u8,
    bytes: &[u8],
    limit: usize,
) -> Result<T, ProtoError> {
    let mut d = Decoder::new(limit);
    d.feed(bytes);
    let frame = d
        .next_frame()
        .map_err(|e| ProtoError::Frame(e.to_string()))?
        .ok_or_else(|| ProtoError::Frame("truncated".into()))?;
    if d.next_frame()
        .map_err(|e| ProtoError::Frame(e.to_string()))?
        .is_some()
        || d.needed().map_err(|e| ProtoError::Frame(e.to_string()))? != 4
    {
        return Err(ProtoError::Frame("trailing bytes after the frame".into()));
    }
    if frame.kind != kind {
        return Err(ProtoError::Frame(format!(
            "kind {} where {kind} was expected",
            frame.kind
        )));
    }
    codec::from_slice(&frame.body).map_err(|e| ProtoError::Body(e.to_string()))
}

impl Request {
    /// The request as one frame.
    ///
    /// # Errors
    /// It does not encode or exceeds [`MAX_REQUEST_BYTES`].
    pub fn to_frame(&self) -> Result<Vec<u8>, ProtoError> {
        encode_frame(KIND_REQUEST, self, MAX_REQUEST_BYTES)
    }

    /// Decodes a request frame (network input: every malformed case is an error).
    ///
    /// # Errors
    /// [`ProtoError`].
    pub fn from_frame(bytes: &[u8]) -> Result<Self, ProtoError> {
        decode_frame(KIND_REQUEST, bytes, MAX_REQUEST_BYTES)
    }
}

impl Response {
    /// The response as one frame.
    ///
    /// # Errors
    /// It does not encode or exceeds [`MAX_RESPONSE_BYTES`].
    pub fn to_frame(&self) -> Result<Vec<u8>, ProtoError> {
        encode_frame(KIND_RESPONSE, self, MAX_RESPONSE_BYTES)
    }

    /// Decodes a response frame.
    ///
    /// # Errors
    /// [`ProtoError`].
    pub fn from_frame(bytes: &[u8]) -> Result<Self, ProtoError> {
        decode_frame(KIND_RESPONSE, bytes, MAX_RESPONSE_BYTES)
    }
}

#[cfg(test)]
#[allow(
    clippy::unwrap_used,
    clippy::indexing_slicing,
    clippy::arithmetic_side_effects
)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn sample() -> Request {
        let mut cells = Cells::new();
        cells.insert(String::new(), Blob(vec![1, 2, 3]));
        cells.insert("GPS".into(), Blob(vec![9; 40]));
        Request::Put {
            address: "bc1qexample".into(),
            records: vec![PutRecord {
                key: Blob(vec![0x10, 0x20]),
                cells,
            }],
        }
    }

    #[test]
    fn requests_and_responses_round_trip() {
        let r = sample();
        assert_eq!(Request::from_frame(&r.to_frame().unwrap()).unwrap(), r);
        let a = Response::Stored {
            roots: vec![[7; 32]],
            durable: 4,
            missing: 0,
        };
        assert_eq!(Response::from_frame(&a.to_frame().unwrap()).unwrap(), a);
    }

    #[test]
    fn a_response_is_not_accepted_as_a_request_and_trailing_bytes_are_refused() {
        let a = Response::Nonce(3).to_frame().unwrap();
        assert!(matches!(Request::from_frame(&a), Err(ProtoError::Frame(_))));
        let mut r = Request::Status.to_frame().unwrap();
        r.push(0);
        assert!(Request::from_frame(&r).is_err());
        let r = Request::Status.to_frame().unwrap();
        assert!(Request::from_frame(&r[..r.len() - 1]).is_err());
    }

    #[test]
    fn an_oversized_request_is_refused_before_decoding() {
        let big = Request::Submit {
            tx: Blob(vec![0; MAX_REQUEST_BYTES]),
            wait_ms: 0,
        };
        assert!(big.to_frame().is_err());
        let mut forged = u32::try_from(MAX_REQUEST_BYTES + 10)
            .unwrap()
            .to_be_bytes()
            .to_vec();
        forged.extend_from_slice(&[1, KIND_REQUEST]);
        assert!(Request::from_frame(&forged).is_err());
    }

    proptest! {
        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
            let _ = Request::from_frame(&bytes);
            let _ = Response::from_frame(&bytes);
        }

        #[test]
        fn any_flipped_byte_is_an_error_or_another_valid_request(i in 0usize..64, x in 1u8..=255) {
            let f = sample().to_frame().unwrap();
            let mut g = f.clone();
            let i = i % g.len();
            g[i] ^= x;
            if let Ok(r) = Request::from_frame(&g) {
                prop_assert_ne!(r, sample());
            }
        }
    }
}
