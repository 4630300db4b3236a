//! Every parser of untrusted input returns an error rather than panicking.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use proptest::prelude::*;
use wallet::{DeviceList, Keystore, MnemonicPhrase, RecordDate, UserSeed, Vid, WalletError};

proptest! {
    #[test]
    fn keystore_parser_never_panics(text in ".{0,400}") {
        let _ = Keystore::from_json(&text);
    }

    #[test]
    fn keystore_parser_survives_structured_garbage(
        version in any::<u64>(),
        log_n in any::<u8>(),
        r in any::<u32>(),
        p in any::<u32>(),
        salt in "[0-9a-f]{0,80}",
        nonce in "[0-9a-fx]{0,30}",
        ct in "[0-9a-f]{0,64}",
        network in "(bitcoin|testnet|regtest|x)",
    ) {
        let json = serde_json::json!({
            "version": version, "network": network,
            "kdf": {"name": "scrypt", "log_n": log_n, "r": r, "p": p, "salt": salt},
            "cipher": {"name": "chacha20poly1305", "nonce": nonce},
            "ciphertext": ct,
        });
        if let Ok(ks) = Keystore::from_json(&json.to_string()) {
            prop_assert!(ks.kdf_params().log_n <= 24);
            // Whatever parses must fail to open cleanly, never panic (cheap costs only).
            if ks.kdf_params().log_n <= 12 && ks.kdf_params().r <= 8 {
                prop_assert!(matches!(ks.open(b"pw"), Err(WalletError::WrongPassword)));
            }
        }
    }

    #[test]
    fn device_list_parser_never_panics(text in ".{0,400}") {
        let _ = DeviceList::from_json(&text);
    }

    #[test]
    fn small_parsers_never_panic(text in "\\PC{0,40}") {
        let _ = RecordDate::parse(&text);
        let _ = Vid::new(&text);
        let _ = UserSeed::from_hex(&text);
        let _ = MnemonicPhrase::parse(&text);
    }

    #[test]
    fn mnemonic_parser_rejects_random_word_lists(
        words in proptest::collection::vec("[a-z]{3,8}", 12..=24)
    ) {
        // Random words are almost never all in the BIP39 list with a valid checksum;
        // either way the result is a value or a typed error.
        match MnemonicPhrase::parse(&words.join(" ")) {
            Ok(m) => prop_assert!(matches!(m.word_count(), 12 | 15 | 18 | 21 | 24)),
            Err(e) => prop_assert!(matches!(
                e,
                WalletError::InvalidMnemonic(_) | WalletError::MnemonicLength(_)
            )),
        }
    }
}
