//! # wallet — the owner's wallet
//!
//! Job: BIP39/BIP32 HD keys and BIP84 Bitcoin addresses, the per-device address pools and user
//! seed, RSA reader keys, the encrypted keystore file, and the `wallet` command-line tool.
//!
//! May depend on: `primitives`, and later `chain` (light client) and `kvs` (reads).
