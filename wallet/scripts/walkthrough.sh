#!/usr/bin/env bash
# The wallet walk-through a new user does: every command with good input, then bad input that
# must fail with a clear message and a non-zero exit code. Uses a throw-away data directory.
#
#   bash wallet/scripts/walkthrough.sh          (from the repository root; builds the wallet)
#   WALLET_BIN=/path/to/wallet bash wallet/scripts/walkthrough.sh   (use a prebuilt binary)
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/../.." && pwd)
if [[ -z "${WALLET_BIN:-}" ]]; then
    cargo build --quiet --manifest-path "$ROOT/Cargo.toml" -p wallet --bin wallet
    WALLET_BIN="${CARGO_TARGET_DIR:-$ROOT/target}/debug/wallet"
fi
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT
export CARCHAIN_WALLET_PASSWORD='walk-through password'
unset CARCHAIN_WALLET_BIP39_PASSPHRASE

wallet() { "$WALLET_BIN" --data-dir "$WORK/owner" "$@"; }
say() { printf '\n\033[1m== %s\033[0m\n' "$*"; }
show() { printf '\033[2m$ wallet %s\033[0m\n' "$*" >&2; wallet "$@"; }
must_fail() {
    printf '\033[2m$ wallet %s   # must fail\033[0m\n' "$*"
    local code=0
    wallet "$@" >/dev/null 2>"$WORK/err" || code=$?
    if [[ $code -eq 0 ]]; then
        echo "UNEXPECTED SUCCESS: wallet $*" >&2
        exit 1
    fi
    printf '   exit %d: %s\n' "$code" "$(cat "$WORK/err")"
}

say "1. Create a wallet on regtest (the 24 words are printed once)"
show --network regtest init --json | tee "$WORK/init.json"
MNEMONIC=$(jq -r .mnemonic "$WORK/init.json")
FIRST=$(jq -r .first_address "$WORK/init.json")

say "2. Receiving addresses (BIP84) and the RSA reader public key"
show show --count 3

say "3. Register two devices, each with its own address pool"
show device add LBVNU79049SB81546 --pool-size 8
show device add phone-1 --pool-size 4
show device list

say "4. Where do the car's records of a given day live?"
show address LBVNU79049SB81546 --date 20160511
show address LBVNU79049SB81546 --date 20180310 --json

say "5. What the car receives at set-up: pool, user seed, RSA public key"
show device export LBVNU79049SB81546 --json | jq '{vid, network, user_seed: (.user_seed[0:8] + "…"), addresses: (.addresses | length)}'

say "6. Seal the brief's records: the trip and the violation into the car's pool, the VIN as the wallet's own data"
SEEDS="$ROOT/tests/data/seed-records.json"
jq '.[0] | del(.comment)' "$SEEDS" > "$WORK/trip.json"
jq '.[1] | del(.comment)' "$SEEDS" > "$WORK/carvio.json"
jq '.[2] | del(.comment)' "$SEEDS" > "$WORK/vin.json"
show seal "$WORK/trip.json" --vid LBVNU79049SB81546 -o "$WORK/trip.sealed.json"
show seal "$WORK/carvio.json" --vid LBVNU79049SB81546 -o "$WORK/carvio.sealed.json"
show seal "$WORK/vin.json" -o "$WORK/vin.sealed.json"
echo "(the envelope: per-column AES-256-GCM ciphertexts, the record key wrapped with RSA-OAEP for each reader)"
jq -c '{address, format, key, dhash, columns: (.columns | keys), readers: (.readers | keys | length)}' "$WORK/trip.sealed.json"

say "7. Open them again: every column decrypted, dHash checked, address checked against the day"
show open "$WORK/carvio.sealed.json"
show open "$WORK/trip.sealed.json" --columns SPEED,len --json | jq -c .
show open "$WORK/vin.sealed.json" --json | jq -c '{owner, record}'

say "8. Recover from the mnemonic alone into a new directory: same addresses"
printf '%s\n' "$MNEMONIC" | "$WALLET_BIN" --data-dir "$WORK/recovered" --network regtest init --recover --json > "$WORK/rec.json"
"$WALLET_BIN" --data-dir "$WORK/recovered" device add LBVNU79049SB81546 --pool-size 8 >/dev/null
A=$(wallet address LBVNU79049SB81546 --date 20160511 --json | jq -r .address)
B=$("$WALLET_BIN" --data-dir "$WORK/recovered" address LBVNU79049SB81546 --date 20160511 --json | jq -r .address)
[[ "$(jq -r .first_address "$WORK/rec.json")" == "$FIRST" && "$A" == "$B" ]] || { echo "recovery mismatch" >&2; exit 1; }
echo "first address $FIRST and record address $A recomputed from the mnemonic"

say "9. Bad input: clear errors, non-zero exit, never a panic"
must_fail init
must_fail address NO-SUCH-CAR --date 20160511
must_fail address LBVNU79049SB81546 --date 20230229
must_fail device add "bad vid" --pool-size 4
must_fail device add LBVNU79049SB81546
must_fail --network testnet show
CARCHAIN_WALLET_PASSWORD=wrong must_fail show
jq '.columns.SPEED.ciphertext |= ((if startswith("AAAA") then "BBBB" else "AAAA" end) + .[4:])' "$WORK/trip.sealed.json" > "$WORK/tampered.json"
must_fail open "$WORK/tampered.json"
printf '{"format":"trip-gps","key":{}}' > "$WORK/broken.json"
must_fail seal "$WORK/broken.json" --vid LBVNU79049SB81546
must_fail seal "$WORK/vin.json" --vid LBVNU79049SB81546
printf 'abandon abandon abandon\n' > "$WORK/short.txt"
code=0
"$WALLET_BIN" --data-dir "$WORK/bad" init --recover < "$WORK/short.txt" 2>"$WORK/err" >/dev/null || code=$?
[[ $code -ne 0 ]] || { echo "UNEXPECTED SUCCESS: short mnemonic" >&2; exit 1; }
printf '\033[2m$ wallet init --recover < 3 words   # must fail\033[0m\n   exit %d: %s\n' "$code" "$(cat "$WORK/err")"

say "Walk-through complete"
