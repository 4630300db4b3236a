//! Transactions: what an account asks the ledger to do, signed with its wallet key.
//!
//! A [`Transaction`] names the chain, the sender's compressed secp256k1 public key, the
//! sender's next nonce, the fee it offers, the [`ModuleId`] that executes it and the module's
//! encoded call. A [`SignedTx`] adds an ECDSA signature (compact, low-S) over
//! `hash(Domain::Transaction, codec(tx))`. On the wire and in blocks a signed transaction is
//! [`codec::encode_versioned`] of the [`SignedTx`]; its identifier is [`block::tx_hash`] of
//! those bytes. The sender's account is the P2WPKH program (HASH160 of the compressed key):
//! exactly the bech32 address the wallet shows for that key ([`AccountAddress::to_bech32`]).
//!
//! Decoding untrusted bytes ([`SignedTx::decode`]) checks the size first, then the canonical
//! form, and never panics.
#![deny(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    clippy::arithmetic_side_effects
)]

use bitcoin::hashes::Hash as _;
use primitives::codec;
use primitives::hash::{hash, Domain, Hash32};
use secp256k1::ecdsa::Signature;
use secp256k1::{Message, PublicKey, SecretKey, SECP256K1};
use serde::{Deserialize, Serialize};
use tokenomics::Amount;

use crate::block::{self, MAX_CHAIN_ID_LEN};

/// Default largest encoded signed transaction, in bytes (genesis may set another).
pub const DEFAULT_MAX_TX_BYTES: u32 = 64 * 1024;

/// Length of a compact ECDSA signature.
pub const SIGNATURE_LEN: usize = 64;

/// Which ledger module executes a call. Chain modules use small numbers; modules added by
/// other crates (the market) pick their own, registered with the ledger at start-up.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct ModuleId(pub u16);

impl ModuleId {
    /// Balances, transfers and fee credits.
    pub const BANK: ModuleId = ModuleId(1);
    /// Validators, stake and double-sign evidence.
    pub const STAKING: ModuleId = ModuleId(2);
    /// Devices, address pools and attestations.
    pub const REGISTRY: ModuleId = ModuleId(3);
}

impl core::fmt::Display for ModuleId {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "module {}", self.0)
    }
}

/// An account: the 20-byte P2WPKH witness program (HASH160 of the compressed public key).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct AccountAddress(pub [u8; 20]);

impl AccountAddress {
    /// The account of `key` (the same 20 bytes a bech32 P2WPKH address of the key encodes).
    pub fn from_public_key(key: &PublicKey) -> Self {
        let pubkey_hash = bitcoin::CompressedPublicKey(*key).wpubkey_hash();
        AccountAddress(pubkey_hash.to_byte_array())
    }

    /// The bech32 P2WPKH address of this account on `network`.
    pub fn to_bech32(&self, network: bitcoin::Network) -> String {
        match bitcoin::WitnessProgram::new(bitcoin::WitnessVersion::V0, &self.0) {
            Ok(program) => bitcoin::Address::from_witness_program(program, network).to_string(),
            // A 20-byte version-0 program is always valid.
            Err(_) => hex::encode(self.0),
        }
    }

    /// Parses a bech32 P2WPKH address and checks it belongs to `network`.
    ///
    /// # Errors
    /// [`TxError::Address`] for anything that is not a P2WPKH address of `network`.
    pub fn from_bech32(s: &str, network: bitcoin::Network) -> Result<Self, TxError> {
        let unchecked: bitcoin::Address<bitcoin::address::NetworkUnchecked> = s
            .parse()
            .map_err(|e| TxError::Address(format!("{s:?}: {e}")))?;
        let addr = unchecked
            .require_network(network)
            .map_err(|e| TxError::Address(format!("{s:?}: {e}")))?;
        let program = addr
            .witness_program()
            .filter(|p| p.is_p2wpkh())
            .ok_or_else(|| TxError::Address(format!("{s:?} is not a P2WPKH address")))?;
        let bytes: [u8; 20] = program
            .program()
            .as_bytes()
            .try_into()
            .map_err(|_| TxError::Address(format!("{s:?}: program is not 20 bytes")))?;
        Ok(AccountAddress(bytes))
    }
}

impl core::fmt::Display for AccountAddress {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(&hex::encode(self.0))
    }
}

/// Why a transaction could not be built, encoded, decoded or verified.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum TxError {
    /// The encoded transaction is larger than allowed.
    #[error("transaction of {len} bytes exceeds the {max}-byte limit")]
    TooLarge {
        /// Encoded size.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// The bytes are not a canonically encoded signed transaction.
    #[error("transaction does not decode: {0}")]
    Decode(String),
    /// The chain id is longer than [`MAX_CHAIN_ID_LEN`].
    #[error("chain id longer than {MAX_CHAIN_ID_LEN} bytes")]
    ChainIdTooLong,
    /// The signature is malformed or does not verify for the sender's key.
    #[error("bad signature: {0}")]
    BadSignature(&'static str),
    /// An address string is not a P2WPKH address of the expected network.
    #[error("invalid address {0}")]
    Address(String),
}

/// An unsigned transaction.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Transaction {
    /// The network it is valid on.
    pub chain_id: String,
    /// The sender's compressed secp256k1 key (its account is derived from it).
    pub sender: PublicKey,
    /// The sender's account nonce this transaction consumes.
    pub nonce: u64,
    /// Fee offered (paid from fee credits first, then tokens).
    pub fee: Amount,
    /// The module that executes `call`.
    pub module: ModuleId,
    /// The module's canonically encoded call.
    #[serde(with = "primitives::bytes::base64")]
    pub call: Vec<u8>,
}

impl Transaction {
    /// The sender's account.
    pub fn sender_address(&self) -> AccountAddress {
        AccountAddress::from_public_key(&self.sender)
    }

    /// The canonical bytes that are signed.
    ///
    /// # Errors
    /// [`TxError::ChainIdTooLong`], or [`TxError::Decode`] if encoding fails.
    pub fn sign_bytes(&self) -> Result<Vec<u8>, TxError> {
        if self.chain_id.len() > MAX_CHAIN_ID_LEN {
            return Err(TxError::ChainIdTooLong);
        }
        codec::to_vec(self).map_err(|e| TxError::Decode(e.to_string()))
    }

    /// The digest signed: `hash(Domain::Transaction, sign_bytes)`.
    ///
    /// # Errors
    /// As [`Transaction::sign_bytes`].
    pub fn sighash(&self) -> Result<Hash32, TxError> {
        Ok(hash(Domain::Transaction, &self.sign_bytes()?))
    }

    /// Signs with `secret` (which must be the sender's key for the result to verify).
    ///
    /// # Errors
    /// As [`Transaction::sign_bytes`].
    pub fn sign(self, secret: &SecretKey) -> Result<SignedTx, TxError> {
        let digest = Message::from_digest(self.sighash()?);
        let signature = SECP256K1.sign_ecdsa(&digest, secret).serialize_compact();
        Ok(SignedTx {
            tx: self,
            signature: signature.to_vec(),
        })
    }
}

/// A transaction with the sender's signature.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SignedTx {
    /// The transaction.
    pub tx: Transaction,
    /// Compact (64-byte, low-S) ECDSA signature over [`Transaction::sighash`].
    #[serde(with = "primitives::bytes::base64")]
    pub signature: Vec<u8>,
}

impl SignedTx {
    /// The wire and block form: the versioned canonical encoding.
    ///
    /// # Errors
    /// [`TxError::ChainIdTooLong`] or an encoding failure.
    pub fn encode(&self) -> Result<Vec<u8>, TxError> {
        if self.tx.chain_id.len() > MAX_CHAIN_ID_LEN {
            return Err(TxError::ChainIdTooLong);
        }
        codec::encode_versioned(self).map_err(|e| TxError::Decode(e.to_string()))
    }

    /// Decodes untrusted bytes of at most `max_bytes`. Checks structure only (the signature is
    /// checked by [`SignedTx::verify_signature`]).
    ///
    /// # Errors
    /// [`TxError::TooLarge`], [`TxError::Decode`], [`TxError::ChainIdTooLong`] or
    /// [`TxError::BadSignature`] for a signature of the wrong length.
    pub fn decode(bytes: &[u8], max_bytes: usize) -> Result<SignedTx, TxError> {
        if bytes.len() > max_bytes {
            return Err(TxError::TooLarge {
                len: bytes.len(),
                max: max_bytes,
            });
        }
        let stx: SignedTx =
            codec::decode_versioned(bytes).map_err(|e| TxError::Decode(e.to_string()))?;
        if stx.tx.chain_id.len() > MAX_CHAIN_ID_LEN {
            return Err(TxError::ChainIdTooLong);
        }
        if stx.signature.len() != SIGNATURE_LEN {
            return Err(TxError::BadSignature("signature is not 64 bytes"));
        }
        Ok(stx)
    }

    /// Verifies the signature against the sender's key (high-S signatures are refused, so a
    /// third party cannot re-sign a transaction into a different identifier).
    ///
    /// # Errors
    /// [`TxError::BadSignature`].
    pub fn verify_signature(&self) -> Result<(), TxError> {
        let sig = Signature::from_compact(&self.signature)
            .map_err(|_| TxError::BadSignature("malformed signature"))?;
        let digest = Message::from_digest(self.tx.sighash()?);
        SECP256K1
            .verify_ecdsa(&digest, &sig, &self.tx.sender)
            .map_err(|_| TxError::BadSignature("signature does not verify for the sender"))
    }

    /// The transaction's identifier: [`block::tx_hash`] of its encoding.
    ///
    /// # Errors
    /// As [`SignedTx::encode`].
    pub fn hash(&self) -> Result<Hash32, TxError> {
        Ok(block::tx_hash(&self.encode()?))
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

    fn key(i: u8) -> SecretKey {
        SecretKey::from_slice(&[i.max(1); 32]).unwrap()
    }

    fn tx(i: u8) -> Transaction {
        Transaction {
            chain_id: "carchain-test".into(),
            sender: key(i).public_key(SECP256K1),
            nonce: 7,
            fee: Amount::from_base_units(1_000).unwrap(),
            module: ModuleId::BANK,
            call: vec![1, 2, 3],
        }
    }

    #[test]
    fn sign_encode_decode_verify_round_trip() {
        let stx = tx(1).sign(&key(1)).unwrap();
        let bytes = stx.encode().unwrap();
        let back = SignedTx::decode(&bytes, DEFAULT_MAX_TX_BYTES as usize).unwrap();
        assert_eq!(back, stx);
        back.verify_signature().unwrap();
        assert_eq!(back.hash().unwrap(), block::tx_hash(&bytes));
    }

    #[test]
    fn wrong_key_or_tampered_field_fails_verification() {
        let stx = tx(1).sign(&key(2)).unwrap();
        assert!(matches!(
            stx.verify_signature(),
            Err(TxError::BadSignature(_))
        ));
        let mut stx = tx(1).sign(&key(1)).unwrap();
        stx.tx.nonce += 1;
        assert!(stx.verify_signature().is_err());
        let mut stx = tx(1).sign(&key(1)).unwrap();
        stx.tx.chain_id = "carchain-other".into();
        assert!(stx.verify_signature().is_err());
    }

    #[test]
    fn oversize_and_trailing_bytes_are_refused() {
        let bytes = tx(1).sign(&key(1)).unwrap().encode().unwrap();
        assert!(matches!(
            SignedTx::decode(&bytes, bytes.len() - 1),
            Err(TxError::TooLarge { .. })
        ));
        let mut longer = bytes.clone();
        longer.push(0);
        assert!(matches!(
            SignedTx::decode(&longer, 1 << 20),
            Err(TxError::Decode(_))
        ));
    }

    #[test]
    fn bech32_address_matches_the_wallet_form() {
        let pk = key(3).public_key(SECP256K1);
        let a = AccountAddress::from_public_key(&pk);
        let expected =
            bitcoin::Address::p2wpkh(&bitcoin::CompressedPublicKey(pk), bitcoin::Network::Regtest)
                .to_string();
        assert_eq!(a.to_bech32(bitcoin::Network::Regtest), expected);
        assert!(expected.starts_with("bcrt1q"));
        assert_eq!(
            AccountAddress::from_bech32(&expected, bitcoin::Network::Regtest).unwrap(),
            a
        );
        assert!(AccountAddress::from_bech32(&expected, bitcoin::Network::Bitcoin).is_err());
        assert!(
            AccountAddress::from_bech32("bcrt1qnotanaddress", bitcoin::Network::Regtest).is_err()
        );
    }

    proptest! {
        #[test]
        fn decoding_arbitrary_bytes_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..400)) {
            let _ = SignedTx::decode(&bytes, 1 << 16);
        }

        #[test]
        fn decoding_mutated_transactions_never_panics(pos in any::<usize>(), val in any::<u8>(), cut in any::<usize>()) {
            let mut bytes = tx(1).sign(&key(1)).unwrap().encode().unwrap();
            let n = bytes.len();
            bytes[pos % n] = val;
            bytes.truncate(n - cut % n);
            if let Ok(stx) = SignedTx::decode(&bytes, 1 << 16) {
                let _ = stx.verify_signature();
            }
        }
    }
}
