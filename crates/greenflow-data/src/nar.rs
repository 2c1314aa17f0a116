//! Nix's identity of a directory: the sha256 of its NAR serialisation, and the fixed-output store path Nix gives it.
//!
//! The serialisation follows Nix's `src/libutil/archive.cc` (`dump`): strings are a little-endian u64 length, the
//! bytes and zero padding to 8; a directory lists its entries sorted by name bytes; a regular file is `executable`
//! when its owner may execute it; only types, names, contents and link targets count (no times, owners or other
//! mode bits). The store path follows `src/libstore/store-api.cc` (`makeFixedOutputPath`, `makeStorePath`) for a
//! recursive sha256 with no references: `sha256("source:sha256:<hex>:/nix/store:<name>")`, folded to 20 bytes, in
//! Nix's base32. `nix hash path` and `nix-store --add-fixed --recursive sha256` are the oracles of the tests.

use std::fs;
use std::io::{self, Read};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use base64::Engine;
use sha2::{Digest, Sha256};

/// The default Nix store directory.
pub const STORE_DIR: &str = "/nix/store";

/// The sha256 of a path's NAR serialisation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NarHash(pub [u8; 32]);

impl NarHash {
    /// Hashes the NAR serialisation of `path` (a file, a symlink or a directory tree), streaming.
    pub fn of_path(path: &Path) -> io::Result<Self> {
        let mut sink = HashSink { hasher: Sha256::new(), buffer: vec![0; 1 << 20] };
        sink.string(b"nix-archive-1");
        sink.node(path)?;
        Ok(Self(sink.hasher.finalize().into()))
    }

    /// `sha256-<base64>`, as `nix hash path` prints it and flake locks record it.
    pub fn sri(&self) -> String {
        format!("sha256-{}", base64::engine::general_purpose::STANDARD.encode(self.0))
    }

    /// Nix's base32 form (`nix hash path --base32`, `nix-hash --type sha256 --base32`).
    pub fn nix_base32(&self) -> String {
        nix_base32(&self.0)
    }

    /// Lower-case hex.
    pub fn hex(&self) -> String {
        hex(&self.0)
    }

    /// The store path of `name` added as a recursive sha256 fixed-output path with this hash and no references, as
    /// `nix-store --add-fixed --recursive sha256` or `builtins.path { recursive = true; sha256 = ...; }` gives it.
    pub fn fixed_output_store_path(&self, name: &str) -> String {
        let fingerprint = format!("source:sha256:{}:{STORE_DIR}:{name}", self.hex());
        let digest: [u8; 32] = Sha256::digest(fingerprint.as_bytes()).into();
        let mut folded = [0u8; 20];
        for (i, byte) in digest.iter().enumerate() {
            folded[i % 20] ^= byte;
        }
        format!("{STORE_DIR}/{}-{name}", nix_base32(&folded))
    }
}

/// Lower-case hex of `bytes`.
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Nix's base32 (`src/libutil/hash.cc`, `printHash32`): its own alphabet, the last 5-bit group first.
pub fn nix_base32(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 32] = b"0123456789abcdfghijklmnpqrsvwxyz";
    let len = (bytes.len() * 8).div_ceil(5);
    (0..len)
        .rev()
        .map(|n| {
            let bit = n * 5;
            let (i, j) = (bit / 8, bit % 8);
            let low = u16::from(bytes[i]) >> j;
            let high = bytes.get(i + 1).map_or(0, |&b| u16::from(b) << (8 - j));
            char::from(ALPHABET[usize::from((low | high) & 0x1f)])
        })
        .collect()
}

struct HashSink {
    hasher: Sha256,
    buffer: Vec<u8>,
}

impl HashSink {
    fn raw(&mut self, bytes: &[u8]) {
        self.hasher.update(bytes);
    }

    fn padding(&mut self, len: u64) {
        let pad = (8 - len % 8) % 8;
        self.raw(&[0u8; 8][..pad as usize]);
    }

    fn string(&mut self, bytes: &[u8]) {
        self.raw(&(bytes.len() as u64).to_le_bytes());
        self.raw(bytes);
        self.padding(bytes.len() as u64);
    }

    fn node(&mut self, path: &Path) -> io::Result<()> {
        let meta = fs::symlink_metadata(path)?;
        self.string(b"(");
        self.string(b"type");
        let kind = meta.file_type();
        if kind.is_symlink() {
            self.string(b"symlink");
            self.string(b"target");
            self.string(fs::read_link(path)?.as_os_str().as_bytes());
        } else if kind.is_dir() {
            self.string(b"directory");
            let mut names: Vec<_> = fs::read_dir(path)?.map(|e| e.map(|e| e.file_name())).collect::<Result<_, _>>()?;
            names.sort_by(|a, b| a.as_bytes().cmp(b.as_bytes()));
            for name in names {
                self.string(b"entry");
                self.string(b"(");
                self.string(b"name");
                self.string(name.as_bytes());
                self.string(b"node");
                self.node(&path.join(&name))?;
                self.string(b")");
            }
        } else if kind.is_file() {
            self.string(b"regular");
            if meta.permissions().mode() & 0o100 != 0 {
                self.string(b"executable");
                self.string(b"");
            }
            self.string(b"contents");
            self.contents(path, meta.len())?;
        } else {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("`{}` is neither a file, a directory nor a symlink; Nix cannot store it", path.display()),
            ));
        }
        self.string(b")");
        Ok(())
    }

    fn contents(&mut self, path: &Path, expected: u64) -> io::Result<()> {
        let mut file = fs::File::open(path)?;
        self.raw(&expected.to_le_bytes());
        let mut total = 0u64;
        loop {
            let n = file.read(&mut self.buffer)?;
            if n == 0 {
                break;
            }
            total += n as u64;
            self.hasher.update(&self.buffer[..n]);
        }
        if total != expected {
            return Err(io::Error::other(format!("`{}` changed while it was hashed", path.display())));
        }
        self.padding(total);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base32_matches_nix_for_known_hashes() {
        // `nix-hash --to-base32 --type sha256` of the sha256 of the empty string.
        let empty: [u8; 32] = Sha256::digest(b"").into();
        assert_eq!(nix_base32(&empty), "0mdqa9w1p6cmli6976v4wi0sw9r4p5prkj7lzfd1877wk11c9c73");
    }
}
