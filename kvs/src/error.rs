//! The crate's error type.

/// Everything that can go wrong in the KVS.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum KvsError {
    /// The on-disk RocksDB backend failed.
    #[cfg(feature = "rocksdb")]
    #[error("rocksdb: {0}")]
    Rocks(#[from] rocksdb::Error),
    /// The HDFS backend failed.
    #[error("hdfs: {0}")]
    Hdfs(String),
    /// A local file (write-ahead log, membership file) could not be read or written.
    #[error("io: {0}")]
    Io(#[from] std::io::Error),
    /// Bytes read from storage or the network do not decode.
    #[error("malformed {what}: {detail}")]
    Malformed {
        /// Which structure failed to decode.
        what: &'static str,
        /// Why.
        detail: &'static str,
    },
    /// Invalid erasure-coding parameters.
    #[error("invalid coding parameters k={k} m={m}")]
    InvalidParams {
        /// Data shards.
        k: usize,
        /// Parity shards.
        m: usize,
    },
    /// The Reed–Solomon library refused an operation.
    #[error("reed-solomon: {0}")]
    Coding(String),
    /// A shard's content does not match its commitment.
    #[error("corrupt shard {index} of stripe {stripe}")]
    CorruptShard {
        /// Stripe root (hex).
        stripe: String,
        /// Shard index.
        index: u8,
    },
    /// Fewer than k verified shards could be found.
    #[error("stripe {stripe} unreadable: {have} verified shards, need {need}")]
    NotEnoughShards {
        /// Stripe root (hex).
        stripe: String,
        /// Verified shards found.
        have: usize,
        /// Shards needed (k).
        need: usize,
    },
    /// A write did not reach its durability quorum.
    #[error("write quorum not met: {durable} shards durable, need {need}; missing {missing:?}")]
    QuorumNotMet {
        /// Shards acknowledged durable.
        durable: usize,
        /// Required quorum.
        need: usize,
        /// Shard indices not written.
        missing: Vec<u8>,
    },
    /// The address and key already hold a record (records are immutable).
    #[error("duplicate record for this address and key")]
    Duplicate,
    /// A stored record disagrees with its index entry.
    #[error("record does not match its index entry: {0}")]
    IndexMismatch(&'static str),
    /// A requested column is not in the record.
    #[error("no column named {0:?}")]
    NoSuchColumn(String),
    /// The node is unreachable or stopped.
    #[error("node {0} unavailable")]
    Unavailable(String),
    /// The node does not store data for this address (private mode).
    #[error("address {0} not admitted by this node's storage mode")]
    NotAdmitted(String),
    /// Too few nodes in the membership for the coding parameters.
    #[error("need {need} nodes for placement, membership has {have}")]
    TooFewNodes {
        /// Needed (k+m).
        need: usize,
        /// Available.
        have: usize,
    },
    /// A request exceeds a size limit.
    #[error("{what} of {size} bytes exceeds the limit of {limit}")]
    TooLarge {
        /// What was too large.
        what: &'static str,
        /// Its size.
        size: usize,
        /// The limit.
        limit: usize,
    },
    /// A membership file could not be parsed.
    #[error("membership: {0}")]
    Membership(String),
    /// A remote node reported an error.
    #[error("node {node}: {message}")]
    Remote {
        /// The node.
        node: String,
        /// Its message.
        message: String,
    },
    /// A frame could not be encoded or decoded.
    #[error(transparent)]
    Frame(#[from] crate::net::frame::FrameError),
    /// A network or TLS failure.
    #[error("network: {0}")]
    Net(String),
    /// Arithmetic overflow on sizes or fees.
    #[error("arithmetic overflow in {0}")]
    Overflow(&'static str),
}

/// Result alias for the crate.
pub type Result<T, E = KvsError> = std::result::Result<T, E>;

impl From<net::NetError> for KvsError {
    fn from(e: net::NetError) -> Self {
        match e {
            net::NetError::Frame(f) => KvsError::Frame(f),
            net::NetError::Io(io) => KvsError::Io(io),
            net::NetError::Fingerprint(why) => {
                KvsError::Membership(format!("certificate fingerprint is {why}"))
            }
            other => KvsError::Net(other.to_string()),
        }
    }
}

impl KvsError {
    pub(crate) fn malformed(what: &'static str, detail: &'static str) -> Self {
        KvsError::Malformed { what, detail }
    }
}
