//! Crash-safe file writes: a temporary file in the same directory, fsync, rename, fsync the
//! directory. A reader sees either the old file or the new one, never a torn mix.

use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::path::Path;

use crate::error::{Result, WalletError};

/// Permission bits for every file the wallet writes: owner read/write only.
pub const PRIVATE_MODE: u32 = 0o600;

/// Atomically replaces `path` with `bytes`, the new file having mode 0600.
///
/// # Errors
/// [`WalletError::Io`] if the directory is missing or not writable.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    let dir = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    let name = path
        .file_name()
        .and_then(|n| n.to_str())
        .ok_or_else(|| WalletError::Malformed {
            what: "file path",
            detail: format!("{} has no file name", path.display()),
        })?;
    let nonce: u64 = rand::random();
    let tmp = dir.join(format!(".{name}.{}.{nonce:016x}.tmp", std::process::id()));
    let result = write_then_rename(&tmp, path, dir, bytes);
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result
}

fn write_then_rename(tmp: &Path, path: &Path, dir: &Path, bytes: &[u8]) -> Result<()> {
    let mut file = create_private(tmp)?;
    file.write_all(bytes).map_err(|e| WalletError::io(tmp, e))?;
    file.sync_all().map_err(|e| WalletError::io(tmp, e))?;
    drop(file);
    fs::rename(tmp, path).map_err(|e| WalletError::io(path, e))?;
    sync_dir(dir)
}

#[cfg(unix)]
fn create_private(path: &Path) -> Result<File> {
    use std::os::unix::fs::OpenOptionsExt;
    OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(PRIVATE_MODE)
        .open(path)
        .map_err(|e| WalletError::io(path, e))
}

#[cfg(not(unix))]
fn create_private(path: &Path) -> Result<File> {
    OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(path)
        .map_err(|e| WalletError::io(path, e))
}

#[cfg(unix)]
fn sync_dir(dir: &Path) -> Result<()> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| WalletError::io(dir, e))
}

#[cfg(not(unix))]
fn sync_dir(_dir: &Path) -> Result<()> {
    Ok(())
}

/// Creates `dir` (and parents) with mode 0700 if it does not exist.
pub fn ensure_private_dir(dir: &Path) -> Result<()> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::DirBuilderExt;
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .map_err(|e| WalletError::io(dir, e))
    }
    #[cfg(not(unix))]
    {
        fs::create_dir_all(dir).map_err(|e| WalletError::io(dir, e))
    }
}

/// Reads a whole file, mapping "not found" and other failures to [`WalletError::Io`].
pub fn read(path: &Path) -> Result<Vec<u8>> {
    fs::read(path).map_err(|e| WalletError::io(path, e))
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    #[test]
    fn replaces_content_and_leaves_no_temp_files() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("f.json");
        write_atomic(&p, b"one").unwrap();
        write_atomic(&p, b"two").unwrap();
        assert_eq!(fs::read(&p).unwrap(), b"two");
        let names: Vec<_> = fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, vec![std::ffi::OsString::from("f.json")]);
    }

    #[cfg(unix)]
    #[test]
    fn files_are_owner_only() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("secret");
        write_atomic(&p, b"x").unwrap();
        let mode = fs::metadata(&p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
    }

    #[test]
    fn missing_directory_is_an_io_error() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("nope").join("f");
        assert!(matches!(
            write_atomic(&p, b"x"),
            Err(WalletError::Io { .. })
        ));
    }
}
