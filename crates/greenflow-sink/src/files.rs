//! Small file helpers: private files (mode 0600), generated secrets, directory sizes.

use std::fs;
use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::Path;

use greenflow_config::Secret;
use rand::distr::{Alphanumeric, SampleString};

use crate::error::SinkError;

/// Creates a directory and its parents.
pub fn ensure_dir(path: &Path) -> Result<(), SinkError> {
    fs::create_dir_all(path).map_err(SinkError::io("create directory", path))
}

/// Writes a file readable only by its owner, replacing it atomically.
pub fn write_private(path: &Path, contents: &str) -> Result<(), SinkError> {
    write_with_mode(path, contents, 0o600)
}

/// Writes a file readable by anyone (generated configuration without secrets), replacing it atomically.
pub fn write_public(path: &Path, contents: &str) -> Result<(), SinkError> {
    write_with_mode(path, contents, 0o644)
}

fn write_with_mode(path: &Path, contents: &str, mode: u32) -> Result<(), SinkError> {
    if let Some(parent) = path.parent() {
        ensure_dir(parent)?;
    }
    // A name of its own per writer, so that concurrent writers never share a half-written file.
    static COUNTER: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let n = COUNTER.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let mut tmp_name = path.file_name().unwrap_or_default().to_owned();
    tmp_name.push(format!(".{}-{n}.tmp", std::process::id()));
    let tmp = path.with_file_name(tmp_name);
    let mut file = fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(mode)
        .open(&tmp)
        .map_err(SinkError::io("write", &tmp))?;
    file.set_permissions(fs::Permissions::from_mode(mode)).map_err(SinkError::io("set permissions of", &tmp))?;
    file.write_all(contents.as_bytes()).map_err(SinkError::io("write", &tmp))?;
    file.sync_all().map_err(SinkError::io("write", &tmp))?;
    fs::rename(&tmp, path).map_err(SinkError::io("write", path))
}

/// Reads a secret kept in `path`, or generates a strong one there (mode 0600) on first use.
pub fn load_or_generate_secret(path: &Path) -> Result<Secret, SinkError> {
    match fs::read_to_string(path) {
        Ok(text) if !text.trim().is_empty() => {
            let mode = fs::metadata(path).map_err(SinkError::io("read", path))?.permissions().mode();
            if mode & 0o077 != 0 {
                tracing::warn!(path = %path.display(), "secret file was readable by others; restricting it to 0600");
                fs::set_permissions(path, fs::Permissions::from_mode(0o600))
                    .map_err(SinkError::io("set permissions of", path))?;
            }
            Ok(Secret::new(text.trim()))
        }
        Ok(_) => generate_secret(path),
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => generate_secret(path),
        Err(source) => Err(SinkError::Io { action: "read", path: path.to_owned(), source }),
    }
}

fn generate_secret(path: &Path) -> Result<Secret, SinkError> {
    let secret = Alphanumeric.sample_string(&mut rand::rng(), 32);
    write_private(path, &secret)?;
    tracing::info!(path = %path.display(), "generated a new secret");
    Ok(Secret::new(secret))
}

/// The last `lines` lines of the text file at `path` (empty if it cannot be read): a log's last words for a message.
pub fn tail_lines(path: &Path, lines: usize) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

/// The total size of the files below `path` (0 if it does not exist).
pub fn dir_size(path: &Path) -> u64 {
    walkdir::WalkDir::new(path)
        .into_iter()
        .filter_map(Result::ok)
        .filter_map(|entry| entry.metadata().ok())
        .filter(|meta| meta.is_file())
        .map(|meta| meta.len())
        .sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_secret_is_private_and_stable() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("secrets/pw");
        let first = load_or_generate_secret(&path).unwrap();
        assert_eq!(first.expose().len(), 32);
        assert_eq!(fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o600);
        let second = load_or_generate_secret(&path).unwrap();
        assert_eq!(first, second);
    }

    #[test]
    fn loose_permissions_are_tightened() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("pw");
        fs::write(&path, "hunter2hunter2\n").unwrap();
        fs::set_permissions(&path, fs::Permissions::from_mode(0o644)).unwrap();
        assert_eq!(load_or_generate_secret(&path).unwrap().expose(), "hunter2hunter2");
        assert_eq!(fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o600);
    }
}
