//! Double-sign evidence the node's vote keeper finds becomes a staking transaction: the node
//! signs it with its own validator key (whose account pays the fee) and puts it in its mempool,
//! from where it is gossiped and included like any transaction; the staking module then slashes
//! and removes the offender.

use secp256k1::{SecretKey, SECP256K1};

use crate::block::ChainContext;
use crate::consensus::Evidence;
use crate::ledger::bank;
use crate::ledger::staking::StakingCall;
use crate::ledger::{Ledger, RejectCode, Rejection};
use crate::state::StateView;
use crate::tx::{AccountAddress, ModuleId, Transaction};

/// The signed staking transaction reporting `evidence`, from `secret`'s account at the nonce
/// after its committed and `pending` transactions, paying the minimum fee of `view`'s state.
///
/// # Errors
/// A [`Rejection`] if the state cannot be read or the transaction cannot be encoded.
pub fn evidence_transaction(
    view: &dyn StateView,
    secret: &SecretKey,
    evidence: &Evidence<ChainContext>,
    pending: Option<u64>,
) -> Result<Vec<u8>, Rejection> {
    let internal = |e: String| Rejection::new(RejectCode::State, e);
    let params = Ledger::params(view).map_err(|e| internal(e.to_string()))?;
    let public = secret.public_key(SECP256K1);
    let account = AccountAddress::from_public_key(&public);
    let committed = bank::account(view, &account)
        .map_err(|e| internal(e.to_string()))?
        .nonce;
    let fee = bank::min_fee(view, &params, None).map_err(|e| internal(e.to_string()))?;
    let call = primitives::codec::to_vec(&StakingCall::Evidence(Box::new(evidence.clone())))
        .map_err(|e| internal(e.to_string()))?;
    let tx = Transaction {
        chain_id: params.chain_id.clone(),
        sender: public,
        nonce: pending.map_or(committed, |p| p.max(committed)),
        fee,
        module: ModuleId::STAKING,
        call,
    };
    tx.sign(secret)
        .and_then(|s| s.encode())
        .map_err(|e| internal(e.to_string()))
}
