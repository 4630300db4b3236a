//! Building and signing the transactions wallets and devices send, with the fee the chain will
//! ask: the minimum fee plus the data operation's fee under the genesis fee schedule plus the
//! module's surcharge — computed from the network file's genesis with the same functions the
//! ledger admits transactions with ([`chain::ledger::registry::call_info`], [`Issuance::fee`]),
//! so a client never guesses a fee and never overpays.

use chain::ledger::bank::BankCall;
use chain::ledger::registry::{call_info, RegistryCall};
use chain::ledger::{CallInfo, Genesis};
use chain::tx::{AccountAddress, ModuleId, Transaction};
use primitives::codec;
use secp256k1::{SecretKey, SECP256K1};
use tokenomics::{Amount, Issuance};

/// Why a transaction could not be built.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TxBuildError {
    /// The call is malformed (the chain would refuse it for this reason).
    #[error("{0}")]
    Call(String),
    /// The fee schedule cannot price it.
    #[error("fee: {0}")]
    Fee(String),
    /// Encoding or signing failed.
    #[error("encoding: {0}")]
    Encode(String),
}

/// Signs transactions for one chain, pricing them by its genesis.
#[derive(Debug, Clone)]
pub struct TxBuilder {
    chain_id: String,
    min_tx_fee: Amount,
    device_setup_fee: Amount,
    issuance: Issuance,
}

impl TxBuilder {
    /// A builder for the chain `genesis` starts.
    ///
    /// # Errors
    /// [`TxBuildError::Fee`] if the genesis' token rules are invalid.
    pub fn new(genesis: &Genesis) -> Result<Self, TxBuildError> {
        Ok(TxBuilder {
            chain_id: genesis.chain_id.clone(),
            min_tx_fee: genesis.min_tx_fee,
            device_setup_fee: genesis.device_setup_fee,
            issuance: Issuance::new(genesis.tokenomics.clone())
                .map_err(|e| TxBuildError::Fee(e.to_string()))?,
        })
    }

    /// The chain id transactions name.
    pub fn chain_id(&self) -> &str {
        &self.chain_id
    }

    fn fee_of(&self, info: &CallInfo) -> Result<Amount, TxBuildError> {
        let data = match &info.data_op {
            None => Amount::ZERO,
            Some(op) => self
                .issuance
                .fee(op)
                .map_err(|e| TxBuildError::Fee(e.to_string()))?,
        };
        self.min_tx_fee
            .checked_add(data)
            .and_then(|f| f.checked_add(info.extra_fee))
            .ok_or_else(|| TxBuildError::Fee("the fee overflows the supply cap".into()))
    }

    /// The fee the chain asks for `call`.
    ///
    /// # Errors
    /// [`TxBuildError::Call`] for a malformed call; [`TxBuildError::Fee`].
    pub fn registry_fee(&self, call: &RegistryCall) -> Result<Amount, TxBuildError> {
        let info = call_info(call, self.device_setup_fee)
            .map_err(|r| TxBuildError::Call(r.to_string()))?;
        self.fee_of(&info)
    }

    fn sign(
        &self,
        secret: &SecretKey,
        nonce: u64,
        fee: Amount,
        module: ModuleId,
        call: Vec<u8>,
    ) -> Result<Vec<u8>, TxBuildError> {
        Transaction {
            chain_id: self.chain_id.clone(),
            sender: secret.public_key(SECP256K1),
            nonce,
            fee,
            module,
            call,
        }
        .sign(secret)
        .and_then(|s| s.encode())
        .map_err(|e| TxBuildError::Encode(e.to_string()))
    }

    /// A signed registry transaction from `secret`'s account at `nonce`, paying the minimum fee.
    ///
    /// # Errors
    /// [`TxBuildError`].
    pub fn registry(
        &self,
        secret: &SecretKey,
        nonce: u64,
        call: &RegistryCall,
    ) -> Result<Vec<u8>, TxBuildError> {
        let fee = self.registry_fee(call)?;
        let bytes = codec::to_vec(call).map_err(|e| TxBuildError::Encode(e.to_string()))?;
        self.sign(secret, nonce, fee, ModuleId::REGISTRY, bytes)
    }

    /// A signed token transfer from `secret`'s account at `nonce`, paying the minimum fee.
    ///
    /// # Errors
    /// [`TxBuildError`].
    pub fn transfer(
        &self,
        secret: &SecretKey,
        nonce: u64,
        to: AccountAddress,
        amount: Amount,
    ) -> Result<Vec<u8>, TxBuildError> {
        let bytes = codec::to_vec(&BankCall::Transfer { to, amount })
            .map_err(|e| TxBuildError::Encode(e.to_string()))?;
        let fee = self.fee_of(&CallInfo::default())?;
        self.sign(secret, nonce, fee, ModuleId::BANK, bytes)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use chain::ledger::Ledger;
    use chain::state::MemState;

    #[test]
    fn built_transactions_pay_exactly_what_the_ledger_admits() {
        let genesis = Genesis::example(1, 7);
        let ledger = Ledger::new();
        let (writes, _) = ledger.init_genesis(&genesis).unwrap();
        let mut state = MemState::new();
        state.apply(&writes);
        let b = TxBuilder::new(&genesis).unwrap();
        let key = Genesis::example_key(7, 0);
        let to = AccountAddress([9; 20]);
        let tx = b.transfer(&key, 0, to, Amount::ONE_TOKEN).unwrap();
        let info = ledger.check_tx(&state, &tx).unwrap();
        assert_eq!(info.fee, info.min_fee);
        let read = RegistryCall::PayRead {
            agent: to,
            addresses: 1000,
        };
        let tx = b.registry(&key, 0, &read).unwrap();
        let info = ledger.check_tx(&state, &tx).unwrap();
        assert_eq!(info.fee, info.min_fee);
        assert!(info.min_fee > b.fee_of(&CallInfo::default()).unwrap());
        let bad = RegistryCall::PayRead {
            agent: to,
            addresses: 0,
        };
        assert!(matches!(
            b.registry(&key, 0, &bad),
            Err(TxBuildError::Call(_))
        ));
    }
}
