//! The content-addressed download cache shared by every worktree and CI run.
//!
//! Downloads are stored once, named by their SHA-256 (`blobs/sha256/<hex>`), and an index
//! (`index.json`) maps what was asked for (a Debian package at an exact version, a URL with a
//! published checksum) to the blob. A re-run that finds its key in the index and the blob on
//! disk downloads nothing. Extracted archives live in `extract/<hex>/`, created atomically
//! (extract into a temporary directory, then rename), so a killed run never leaves a half
//! extracted tree that a later run would trust.

use std::collections::BTreeMap;
use std::fs;
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

/// Errors of the cache: all are about files under the cache root.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(
        "cannot use the cache at {path}: {source} (set KEXEC_RS_CACHE to a writable directory)"
    )]
    Io { path: PathBuf, source: io::Error },
    #[error("the cache index {path} is not valid JSON ({source}); delete it and re-run `cargo xtask fetch`")]
    Index {
        path: PathBuf,
        source: serde_json::Error,
    },
    #[error("{what} has SHA-256 {actual}, but {expected} was published for it: the download is corrupt or was tampered with, and was not used")]
    Checksum {
        what: String,
        expected: String,
        actual: String,
    },
}

pub type Result<T> = std::result::Result<T, Error>;

fn io_err(path: &Path) -> impl FnOnce(io::Error) -> Error + '_ {
    move |source| Error::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// The cache root: `$KEXEC_RS_CACHE`, else `$XDG_CACHE_HOME/kexec-rs`, else
/// `<workspace>/target/vm-cache` (the convention in TEAM.md, shared with the other tasks).
pub fn default_root() -> PathBuf {
    if let Some(p) = std::env::var_os("KEXEC_RS_CACHE").filter(|p| !p.is_empty()) {
        return PathBuf::from(p);
    }
    if let Some(p) = std::env::var_os("XDG_CACHE_HOME").filter(|p| !p.is_empty()) {
        return PathBuf::from(p).join("kexec-rs");
    }
    crate::workspace_root().join("target").join("vm-cache")
}

/// Hex SHA-256 of a file, streamed.
pub fn sha256_file(path: &Path) -> Result<String> {
    let mut f = fs::File::open(path).map_err(io_err(path))?;
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 1 << 16];
    loop {
        let n = f.read(&mut buf).map_err(io_err(path))?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
    }
    Ok(hex::encode(h.finalize()))
}

/// The cache: a root directory with blobs, an index and extraction trees.
#[derive(Debug, Clone)]
pub struct Cache {
    root: PathBuf,
}

impl Cache {
    /// Opens (creating) the cache at `root`.
    pub fn open(root: impl Into<PathBuf>) -> Result<Self> {
        let root = root.into();
        for d in ["blobs/sha256", "extract", "tmp"] {
            let p = root.join(d);
            fs::create_dir_all(&p).map_err(io_err(&p))?;
        }
        let tag = root.join("CACHEDIR.TAG");
        if !tag.exists() {
            fs::write(
                &tag,
                "Signature: 8a477f597d28d172789f06886806bc55\n# kexec-rs download cache\n",
            )
            .map_err(io_err(&tag))?;
        }
        let root = root.canonicalize().map_err(io_err(&root))?;
        Ok(Cache { root })
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// A scratch directory inside the cache (same filesystem, so renames into place are atomic).
    pub fn tempdir(&self) -> Result<tempfile::TempDir> {
        let p = self.root.join("tmp");
        tempfile::tempdir_in(&p).map_err(io_err(&p))
    }

    pub fn blob_path(&self, sha256: &str) -> PathBuf {
        self.root.join("blobs/sha256").join(sha256)
    }

    fn index_path(&self) -> PathBuf {
        self.root.join("index.json")
    }

    fn read_index(&self) -> Result<BTreeMap<String, String>> {
        let p = self.index_path();
        match fs::read(&p) {
            Ok(b) => serde_json::from_slice(&b).map_err(|source| Error::Index { path: p, source }),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(BTreeMap::new()),
            Err(e) => Err(Error::Io { path: p, source: e }),
        }
    }

    /// The blob stored under `key`, if it is in the index and still on disk (its content was
    /// verified when it was added; blobs are never modified in place).
    pub fn lookup(&self, key: &str) -> Result<Option<PathBuf>> {
        let idx = self.read_index()?;
        Ok(idx
            .get(key)
            .map(|h| self.blob_path(h))
            .filter(|p| p.is_file()))
    }

    /// Moves `file` into the store and records it under `key`. If `expected_sha256` is given and
    /// does not match, the file is deleted and nothing is recorded.
    pub fn insert(&self, key: &str, file: &Path, expected_sha256: Option<&str>) -> Result<PathBuf> {
        let actual = sha256_file(file)?;
        if let Some(exp) = expected_sha256 {
            if !exp.eq_ignore_ascii_case(&actual) {
                let _ = fs::remove_file(file);
                return Err(Error::Checksum {
                    what: key.to_string(),
                    expected: exp.to_ascii_lowercase(),
                    actual,
                });
            }
        }
        let dest = self.blob_path(&actual);
        if dest.is_file() {
            let _ = fs::remove_file(file);
        } else {
            fs::rename(file, &dest).map_err(io_err(&dest))?;
        }
        self.record(key, &actual)?;
        Ok(dest)
    }

    fn record(&self, key: &str, sha256: &str) -> Result<()> {
        // The index is small; rewrite it whole through a temporary file and a rename so
        // concurrent readers never see a torn file, under an exclusive lock so two fetches
        // (several worktrees share one cache) never lose each other's entries.
        let lock_path = self.root.join("index.lock");
        let lock = fs::File::create(&lock_path).map_err(io_err(&lock_path))?;
        // SAFETY: flock on a file descriptor we own; released when `lock` is dropped.
        if unsafe { libc::flock(std::os::fd::AsRawFd::as_raw_fd(&lock), libc::LOCK_EX) } != 0 {
            return Err(Error::Io {
                path: lock_path,
                source: io::Error::last_os_error(),
            });
        }
        let mut idx = self.read_index()?;
        idx.insert(key.to_string(), sha256.to_string());
        let p = self.index_path();
        let tmp = p.with_extension(format!("json.{}", std::process::id()));
        let mut f = fs::File::create(&tmp).map_err(io_err(&tmp))?;
        let text = serde_json::to_string_pretty(&idx).map_err(|source| Error::Index {
            path: p.clone(),
            source,
        })?;
        f.write_all(text.as_bytes()).map_err(io_err(&tmp))?;
        fs::rename(&tmp, &p).map_err(io_err(&p))
    }

    /// The extraction tree of blob `sha256`, created by `extract(tmpdir)` on first use.
    pub fn extracted<E>(&self, sha256: &str, extract: E) -> anyhow::Result<PathBuf>
    where
        E: FnOnce(&Path) -> anyhow::Result<()>,
    {
        let dest = self.root.join("extract").join(sha256);
        if dest.is_dir() {
            return Ok(dest);
        }
        let tmp = self.tempdir()?;
        let work = tmp.path().join("x");
        fs::create_dir(&work).map_err(io_err(&work))?;
        extract(&work)?;
        match fs::rename(&work, &dest) {
            Ok(()) => Ok(dest),
            // Another run extracted the same blob meanwhile: theirs is as good as ours.
            Err(_) if dest.is_dir() => Ok(dest),
            Err(e) => Err(Error::Io {
                path: dest,
                source: e,
            }
            .into()),
        }
    }

    /// Writes a manifest (`kernels.json`, `userland.json`) at the cache root atomically.
    pub fn write_manifest<T: serde::Serialize>(
        &self,
        name: &str,
        value: &T,
    ) -> anyhow::Result<PathBuf> {
        let p = self.root.join(name);
        let tmp = self.root.join(format!("{name}.{}.tmp", std::process::id()));
        fs::write(&tmp, serde_json::to_string_pretty(value)? + "\n").map_err(io_err(&tmp))?;
        fs::rename(&tmp, &p).map_err(io_err(&p))?;
        Ok(p)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn insert_then_lookup_and_reject_bad_checksum() {
        let dir = tempfile::tempdir().unwrap();
        let cache = Cache::open(dir.path().join("c")).unwrap();
        let f = dir.path().join("a");
        fs::write(&f, b"hello").unwrap();
        let good = "2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824";
        let p = cache.insert("k", &f, Some(good)).unwrap();
        assert_eq!(fs::read(&p).unwrap(), b"hello");
        assert_eq!(cache.lookup("k").unwrap(), Some(p));
        fs::write(&f, b"evil").unwrap();
        let err = cache.insert("k2", &f, Some(good)).unwrap_err();
        assert!(err.to_string().contains("was not used"), "{err}");
        assert!(
            !f.exists(),
            "a file that failed verification must not be kept"
        );
        assert_eq!(cache.lookup("k2").unwrap(), None);
    }
}
