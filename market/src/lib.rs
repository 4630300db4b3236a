//! # market — data-market contracts
//!
//! Job: ownership sales, usage-right (compute) sales and paid data sales settled by zk proofs,
//! as a chain module plus the off-chain protocol steps.
//!
//! May depend on: `primitives`, `chain`, `kvs`, `zk`, `tokenomics`.
