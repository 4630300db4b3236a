//! # kvs — the erasure-coded key-value storage cluster
//!
//! Job: store sealed records partitioned by address, Reed–Solomon coded across storage nodes,
//! with placement, repair and storage audits; RocksDB on disk by default, HDFS optional.
//!
//! May depend on: `primitives`, `zk`, and `chain` for the index types it must agree with.
