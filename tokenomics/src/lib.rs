//! # tokenomics — the token's arithmetic and issuance rules
//!
//! Job: the capped [`Amount`]-style money type, the three issuance phases (automatic, bulk
//! prefetch, free circulation) and the fee schedule, as pure integer code with no I/O, clocks or
//! floats, so the chain's bank module and the economic simulator run the very same rules.
//!
//! May depend on: nothing of CarChain's own.
