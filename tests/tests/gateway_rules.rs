//! End to end, at the protocol level, on a devnet of 4 real `agent` processes: what the chain
//! and the gateways refuse. A device put is sealed, stored and attested; the brief's record comes
//! back byte-exact; and then every way to cheat is tried: another reader's key, a forged index
//! answer, a reset not signed by the owner, a put signed by a stale device key, a duplicate,
//! reads without (or with a replayed, or someone else's) payment, malformed requests.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic,
    missing_docs
)]

use std::time::Duration;

use carchain_tests::{seed_record_json, Devnet};
use chain::ledger::registry::{self, Attestation, RegistryCall};
use chain::tx::AccountAddress;
use gateway::cells;
use gateway::proto::{Blob, ErrorCode, PutRecord, Request, Response};
use gateway::{GatewayClient, GatewayError, NetworkFile, TxBuilder, Verifier};
use primitives::record::Record;
use rsa::pkcs8::EncodePublicKey;
use secp256k1::{SecretKey, SECP256K1};

const WAIT: Duration = Duration::from_secs(30);

struct Ctx {
    file: NetworkFile,
    client: GatewayClient,
    tx: TxBuilder,
    verifier: Verifier,
}

/// A put of one record.
fn one(key: &[u8], cells: gateway::proto::Cells) -> Vec<PutRecord> {
    vec![PutRecord {
        key: Blob(key.to_vec()),
        cells,
    }]
}

fn account(k: &SecretKey) -> AccountAddress {
    AccountAddress::from_public_key(&k.public_key(SECP256K1))
}

impl Ctx {
    async fn send(&self, key: &SecretKey, call: &RegistryCall) -> Result<u64, GatewayError> {
        let nonce = self.client.next_nonce(account(key)).await?;
        let tx = self.tx.registry(key, nonce, call).unwrap();
        let (_, height) = self.client.submit(tx, WAIT).await?;
        Ok(height.expect("waited for the block"))
    }

    async fn payment(&self, reader: &SecretKey, agent: AccountAddress) -> Vec<u8> {
        let nonce = self.client.next_nonce(account(reader)).await.unwrap();
        self.tx
            .registry(
                reader,
                nonce,
                &RegistryCall::PayRead {
                    agent,
                    addresses: 1,
                },
            )
            .unwrap()
    }

    async fn attestation(&mut self, address: &AccountAddress, key: &[u8]) -> Option<Attestation> {
        let k = registry::attestation_key(address, key);
        let proven = self
            .client
            .query_verified(&mut self.verifier, &[k])
            .await
            .unwrap();
        gateway::verify::decode("attestation", proven.values[0].as_deref()).unwrap()
    }
}

#[test]
fn the_data_path_refuses_every_way_to_cheat() {
    let net = Devnet::start(4);
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let file = NetworkFile::load(&net.network_file()).unwrap();
        let network = file.bitcoin_network().unwrap();
        let client = GatewayClient::for_network(&file, 0, Duration::from_secs(20)).unwrap();
        let mut ctx = Ctx {
            tx: TxBuilder::new(&file.genesis).unwrap(),
            verifier: Verifier::from_genesis(&file.genesis).unwrap(),
            client,
            file,
        };
        let agent0 = AccountAddress::from_bech32(&ctx.file.agents[0].account, network).unwrap();

        // The owner, funded by the faucet; an intruder, funded too.
        let owner = SecretKey::new(&mut rand::thread_rng());
        let intruder = SecretKey::new(&mut rand::thread_rng());
        net.fund(&account(&owner).to_bech32(network), 100);
        net.fund(&account(&intruder).to_bech32(network), 100);
        let rsa_owner = rsa::RsaPrivateKey::new(&mut rand::thread_rng(), 2048).unwrap();
        let rsa_other = rsa::RsaPrivateKey::new(&mut rand::thread_rng(), 2048).unwrap();
        let spki = rsa_owner
            .to_public_key()
            .to_public_key_der()
            .unwrap()
            .as_bytes()
            .to_vec();

        // Device setup and pool registration, by the owner.
        let vid = "LBVNU79049SB81546".to_string();
        let device = SecretKey::new(&mut rand::thread_rng());
        ctx.send(
            &owner,
            &RegistryCall::Setup {
                vid: vid.clone(),
                rsa_spki: spki,
                device_key: device.public_key(SECP256K1),
                agent: agent0,
            },
        )
        .await
        .unwrap();
        ctx.send(
            &owner,
            &RegistryCall::SetDup {
                vid: vid.clone(),
                commitment: [7; 32],
                size: 8,
                valid_until: u64::MAX,
            },
        )
        .await
        .unwrap();

        // The device seals the brief's trip for the owner, stores it and attests it.
        let pool_addr = SecretKey::new(&mut rand::thread_rng());
        let address = account(&pool_addr);
        let addr_text = address.to_bech32(network);
        let record = Record::from_json_str(&seed_record_json(0)).unwrap();
        let sealed = primitives::envelope::seal(
            &record,
            &addr_text,
            &[&rsa_owner.to_public_key()],
            &mut rand::thread_rng(),
        )
        .unwrap();
        let cells_out = cells::to_cells(&sealed).unwrap();
        let key = record.key().encode();
        let (roots, durable, _) = ctx
            .client
            .put(&addr_text, one(&key, cells_out.clone()))
            .await
            .unwrap();
        assert!(
            durable >= 3,
            "a write quorum of RS(2,2) is 3 shards, got {durable}"
        );
        let attest = |signer_vid: &str| RegistryCall::Attest {
            vid: signer_vid.to_string(),
            address,
            key: key.clone(),
            dhash: sealed.dhash,
            size: cells::stored_size(&cells_out),
            metres: 0,
            format: "trip-gps".into(),
            placement: roots[0],
        };
        ctx.send(&device, &attest(&vid)).await.unwrap();
        let entry = ctx.attestation(&address, &key).await.expect("attested");
        assert_eq!(entry.dhash, sealed.dhash);
        assert_eq!(entry.writer, account(&device));
        assert_eq!(entry.placement, roots[0]);

        // The owner reads it back: byte-exact, and only the owner's key opens it.
        let pay = ctx.payment(&owner, agent0).await;
        let got = ctx
            .client
            .get(&addr_text, &key, None, pay.clone())
            .await
            .unwrap()
            .expect("the record is stored");
        let opened = cells::from_cells(&got).unwrap();
        assert_eq!(opened.dhash, entry.dhash);
        let plain = opened.open(&rsa_owner).unwrap();
        assert_eq!(plain, record);
        assert_eq!(
            primitives::codec::to_vec(&plain.canonical_columns()).unwrap(),
            primitives::codec::to_vec(&record.canonical_columns()).unwrap()
        );
        assert!(
            opened.open(&rsa_other).is_err(),
            "another wallet's key opened the record"
        );

        // The same payment again is a replay: refused.
        let replay = ctx.client.get(&addr_text, &key, None, pay).await;
        assert!(
            matches!(
                replay,
                Err(GatewayError::Remote {
                    code: ErrorCode::PaymentRequired,
                    ..
                })
            ),
            "{replay:?}"
        );
        // No payment, or a payment to another agent: refused.
        let none = ctx.client.get(&addr_text, &key, None, Vec::new()).await;
        assert!(matches!(
            none,
            Err(GatewayError::Remote {
                code: ErrorCode::PaymentRequired,
                ..
            })
        ));
        let elsewhere = ctx.payment(&owner, account(&intruder)).await;
        let other = ctx.client.get(&addr_text, &key, None, elsewhere).await;
        assert!(matches!(
            other,
            Err(GatewayError::Remote {
                code: ErrorCode::PaymentRequired,
                ..
            })
        ));

        // A forged index answer does not pass the wallet's checks.
        let k = registry::attestation_key(&address, &key);
        let (header, mut answers) = ctx.client.query(std::slice::from_ref(&k)).await.unwrap();
        let mut forged = entry.clone();
        forged.dhash = [0xAB; 32];
        answers[0].value = Some(primitives::codec::to_vec(&forged).unwrap());
        assert!(ctx
            .verifier
            .check(&header, std::slice::from_ref(&k), &answers)
            .is_err());
        let (mut header, answers) = ctx.client.query(std::slice::from_ref(&k)).await.unwrap();
        header.header.state_root = [0xCD; 32];
        assert!(ctx.verifier.check(&header, &[k], &answers).is_err());

        // A reset not signed by the owner is refused; the owner's is accepted.
        let new_device = SecretKey::new(&mut rand::thread_rng());
        let reset = RegistryCall::Reset {
            vid: vid.clone(),
            device_key: new_device.public_key(SECP256K1),
            agent: agent0,
            rsa_spki: None,
        };
        let refused = ctx.send(&intruder, &reset).await;
        assert!(
            refused
                .as_ref()
                .is_err_and(|e| e.is_rejection("unauthorized")),
            "{refused:?}"
        );
        ctx.send(&owner, &reset).await.unwrap();

        // A put signed by the stale device key is refused.
        let violation = Record::from_json_str(&seed_record_json(1)).unwrap();
        let vkey = violation.key().encode();
        let stale = RegistryCall::Attest {
            vid: vid.clone(),
            address,
            key: vkey.clone(),
            dhash: violation.dhash(),
            size: 100,
            metres: 0,
            format: "carvio".into(),
            placement: [1; 32],
        };
        let refused = ctx.send(&device, &stale).await;
        assert!(
            refused
                .as_ref()
                .is_err_and(|e| e.is_rejection("unauthorized")),
            "{refused:?}"
        );
        assert!(ctx.attestation(&address, &vkey).await.is_none());

        // A duplicate attestation is refused with a clear reason, even by the current key.
        let dup = ctx.send(&new_device, &attest(&vid)).await;
        assert!(
            dup.as_ref().is_err_and(|e| e.is_rejection("duplicate")),
            "{dup:?}"
        );
        assert!(dup.unwrap_err().to_string().contains("already attested"));
        // Other content under the same (address, key) is refused by the storage cluster.
        let resealed = primitives::envelope::seal(
            &Record::from_json_str(&seed_record_json(0).replace("0,23,52", "9,99,99")).unwrap(),
            &addr_text,
            &[&rsa_owner.to_public_key()],
            &mut rand::thread_rng(),
        )
        .unwrap();
        let conflict = ctx
            .client
            .put(&addr_text, one(&key, cells::to_cells(&resealed).unwrap()))
            .await;
        assert!(
            matches!(
                conflict,
                Err(GatewayError::Remote {
                    code: ErrorCode::Conflict,
                    ..
                })
            ),
            "{conflict:?}"
        );
        // The same bytes again are an idempotent retry.
        let again = ctx
            .client
            .put(&addr_text, one(&key, cells_out.clone()))
            .await
            .unwrap();
        assert_eq!(again.0, roots);

        // Malformed and mis-bound requests get a clear error and the agent keeps serving.
        let bad_addr = ctx
            .client
            .put("not-an-address", one(&key, cells_out.clone()))
            .await;
        assert!(matches!(
            bad_addr,
            Err(GatewayError::Remote {
                code: ErrorCode::BadRequest,
                ..
            })
        ));
        let other_addr = account(&intruder).to_bech32(network);
        let misbound = ctx
            .client
            .put(&other_addr, one(&key, cells_out.clone()))
            .await;
        assert!(matches!(
            misbound,
            Err(GatewayError::Remote {
                code: ErrorCode::BadRequest,
                ..
            })
        ));
        let garbage = ctx
            .client
            .call(&Request::Submit {
                tx: Blob(vec![1, 2, 3]),
                wait_ms: 0,
            })
            .await;
        assert!(matches!(
            garbage,
            Err(GatewayError::Remote {
                code: ErrorCode::Rejected,
                ..
            })
        ));
        assert!(matches!(
            ctx.client.call(&Request::Status).await,
            Ok(Response::Status(_))
        ));
    });
}
