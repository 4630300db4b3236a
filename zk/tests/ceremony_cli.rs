//! The `zk-ceremony` command line: help text and clear failures (the full ceremony flow is
//! exercised in `ceremony::tests` and by hand, see README).

use std::process::Command;

fn run(args: &[&str]) -> (bool, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_zk-ceremony"))
        .args(args)
        .output()
        .unwrap_or_else(|e| unreachable!("cannot run zk-ceremony: {e}"));
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn help_explains_the_workflow() {
    let (ok, out, _) = run(&["--help"]);
    assert!(ok);
    for word in [
        "new",
        "contribute",
        "verify",
        "export-vk",
        "--data-dir",
        "--json",
    ] {
        assert!(out.contains(word), "help lacks {word}: {out}");
    }
}

#[test]
fn unsupported_trip_count_is_refused() {
    let dir = std::env::temp_dir().join(format!("zk-cer-trips-{}", std::process::id()));
    let (ok, _, err) = run(&[
        "--data-dir",
        dir.to_str().unwrap_or_default(),
        "new",
        "--circuit",
        "mileage",
        "--trips",
        "5",
    ]);
    assert!(!ok);
    assert!(err.contains("not 5"), "{err}");
    assert!(!dir.join("transcript.json").exists());
}

#[test]
fn verify_without_a_ceremony_fails_cleanly() {
    let dir = std::env::temp_dir().join(format!("zk-cer-none-{}", std::process::id()));
    let (ok, _, err) = run(&["--data-dir", dir.to_str().unwrap_or_default(), "verify"]);
    assert!(!ok);
    assert!(err.contains("cannot read"), "{err}");
    assert!(!err.contains("panicked"));
}

#[test]
fn corrupted_transcript_is_a_clear_error() {
    let dir = std::env::temp_dir().join(format!("zk-cer-bad-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap_or_default();
    std::fs::write(dir.join("transcript.json"), b"{not json").unwrap_or_default();
    let (ok, _, err) = run(&["--data-dir", dir.to_str().unwrap_or_default(), "contribute"]);
    assert!(!ok);
    assert!(err.contains("malformed ceremony transcript"), "{err}");
    std::fs::remove_dir_all(&dir).unwrap_or_default();
}
