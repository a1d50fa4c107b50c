//! A writer for the `newc` cpio format, the one the kernel unpacks as an initramfs.
//!
//! Guests are assembled as a tree of entries (directories, files from the host or from memory,
//! symlinks, device nodes) and written in one pass. Paths are deduplicated (the last addition
//! wins, like a later layer of an overlay), parents are created implicitly, and timestamps are
//! zero so the same inputs give the same bytes (and the same cache key).

use std::collections::BTreeMap;
use std::io::{self, Write};
use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("cannot read {path} for the initramfs: {source}")]
    Read { path: PathBuf, source: io::Error },
    #[error("cannot write the initramfs: {0}")]
    Write(#[from] io::Error),
    #[error(
        "{0:?} is not a valid path inside an initramfs (it must be relative and without `..`)"
    )]
    BadPath(String),
}

pub type Result<T> = std::result::Result<T, Error>;

#[derive(Debug, Clone)]
enum Body {
    Dir,
    Host(PathBuf),
    Bytes(Vec<u8>),
    Symlink(String),
    CharDev(u32, u32),
}

#[derive(Debug, Clone)]
struct Entry {
    mode: u32,
    body: Body,
}

/// An initramfs under construction.
#[derive(Debug, Default, Clone)]
pub struct Archive {
    entries: BTreeMap<String, Entry>,
}

fn norm(path: &str) -> Result<String> {
    let p = path.trim_start_matches('/').trim_end_matches('/');
    if p.is_empty() || p.split('/').any(|c| c == ".." || c.is_empty()) {
        return Err(Error::BadPath(path.to_string()));
    }
    Ok(p.to_string())
}

impl Archive {
    pub fn new() -> Self {
        Self::default()
    }

    fn put(&mut self, path: &str, mode: u32, body: Body) -> Result<()> {
        let p = norm(path)?;
        let mut parent = p.as_str();
        while let Some(i) = parent.rfind('/') {
            parent = &parent[..i];
            self.entries.entry(parent.to_string()).or_insert(Entry {
                mode: 0o040755,
                body: Body::Dir,
            });
        }
        self.entries.insert(p, Entry { mode, body });
        Ok(())
    }

    pub fn dir(&mut self, path: &str, perm: u32) -> Result<()> {
        self.put(path, 0o040000 | perm, Body::Dir)
    }

    /// A file whose content is read from the host when the archive is written.
    pub fn file_from(&mut self, path: &str, host: &Path, perm: u32) -> Result<()> {
        self.put(path, 0o100000 | perm, Body::Host(host.to_path_buf()))
    }

    pub fn file(&mut self, path: &str, data: impl Into<Vec<u8>>, perm: u32) -> Result<()> {
        self.put(path, 0o100000 | perm, Body::Bytes(data.into()))
    }

    pub fn symlink(&mut self, path: &str, target: &str) -> Result<()> {
        self.put(path, 0o120777, Body::Symlink(target.to_string()))
    }

    pub fn char_dev(&mut self, path: &str, perm: u32, major: u32, minor: u32) -> Result<()> {
        self.put(path, 0o020000 | perm, Body::CharDev(major, minor))
    }

    pub fn contains(&self, path: &str) -> bool {
        norm(path)
            .map(|p| self.entries.contains_key(&p))
            .unwrap_or(false)
    }

    /// Copies a host directory tree under `dest` (symlinks kept as symlinks).
    pub fn tree_from(&mut self, dest: &str, host: &Path) -> Result<()> {
        let rd = std::fs::read_dir(host).map_err(|source| Error::Read {
            path: host.to_path_buf(),
            source,
        })?;
        let mut children: Vec<_> = rd.filter_map(|e| e.ok()).collect();
        children.sort_by_key(|e| e.file_name());
        for e in children {
            let name = e.file_name().to_string_lossy().into_owned();
            let hp = e.path();
            let d = format!("{}/{}", dest.trim_end_matches('/'), name);
            let md = std::fs::symlink_metadata(&hp).map_err(|source| Error::Read {
                path: hp.clone(),
                source,
            })?;
            use std::os::unix::fs::PermissionsExt;
            let perm = md.permissions().mode() & 0o7777;
            if md.file_type().is_symlink() {
                let t = std::fs::read_link(&hp).map_err(|source| Error::Read {
                    path: hp.clone(),
                    source,
                })?;
                self.symlink(&d, &t.to_string_lossy())?;
            } else if md.is_dir() {
                self.dir(&d, perm)?;
                self.tree_from(&d, &hp)?;
            } else if md.is_file() {
                self.file_from(&d, &hp, perm)?;
            }
        }
        Ok(())
    }

    /// Writes the archive in newc format, ending with the `TRAILER!!!` entry.
    pub fn write_to<W: Write>(&self, out: &mut W) -> Result<u64> {
        let mut w = Counting { inner: out, n: 0 };
        for (ino, (path, e)) in self.entries.iter().enumerate() {
            let (data, rdev): (std::borrow::Cow<[u8]>, (u32, u32)) = match &e.body {
                Body::Dir => (Vec::new().into(), (0, 0)),
                Body::Bytes(b) => (b.as_slice().into(), (0, 0)),
                Body::Symlink(t) => (t.as_bytes().into(), (0, 0)),
                Body::CharDev(ma, mi) => (Vec::new().into(), (*ma, *mi)),
                Body::Host(p) => (
                    std::fs::read(p)
                        .map_err(|source| Error::Read {
                            path: p.clone(),
                            source,
                        })?
                        .into(),
                    (0, 0),
                ),
            };
            let nlink = if matches!(e.body, Body::Dir) { 2 } else { 1 };
            header(
                &mut w,
                ino as u32 + 1,
                e.mode,
                nlink,
                data.len() as u32,
                rdev,
                path,
            )?;
            w.write_all(&data)?;
            pad(&mut w)?;
        }
        header(&mut w, 0, 0, 1, 0, (0, 0), "TRAILER!!!")?;
        Ok(w.n)
    }

    /// Writes the archive to a file.
    pub fn write_file(&self, path: &Path) -> Result<u64> {
        let f = std::fs::File::create(path)?;
        let mut b = io::BufWriter::new(f);
        let n = self.write_to(&mut b)?;
        b.flush()?;
        Ok(n)
    }
}

struct Counting<'a, W: Write> {
    inner: &'a mut W,
    n: u64,
}

impl<W: Write> Write for Counting<'_, W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.n += n as u64;
        Ok(n)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

fn pad<W: Write>(w: &mut Counting<'_, W>) -> io::Result<()> {
    let r = (4 - (w.n % 4) as usize) % 4;
    w.write_all(&[0u8; 3][..r])
}

fn header<W: Write>(
    w: &mut Counting<'_, W>,
    ino: u32,
    mode: u32,
    nlink: u32,
    size: u32,
    rdev: (u32, u32),
    name: &str,
) -> io::Result<()> {
    let namesize = name.len() as u32 + 1;
    write!(
        w,
        "070701{ino:08x}{mode:08x}{:08x}{:08x}{nlink:08x}{:08x}{size:08x}{:08x}{:08x}{:08x}{:08x}{namesize:08x}{:08x}",
        0, 0, 0, 0, 0, rdev.0, rdev.1, 0
    )?;
    w.write_all(name.as_bytes())?;
    w.write_all(&[0])?;
    pad(w)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The host's GNU cpio must list and extract what we write, byte for byte.
    #[test]
    fn gnu_cpio_reads_our_archive() {
        let dir = tempfile::tempdir().unwrap();
        let mut a = Archive::new();
        a.file("etc/hello", b"hello world\n".to_vec(), 0o644)
            .unwrap();
        a.file("bin/x", vec![7u8; 5], 0o755).unwrap();
        a.symlink("bin/y", "x").unwrap();
        a.char_dev("dev/console", 0o600, 5, 1).unwrap();
        let img = dir.path().join("a.cpio");
        a.write_file(&img).unwrap();
        let out = std::process::Command::new("cpio")
            .args(["-tv", "--quiet"])
            .stdin(std::fs::File::open(&img).unwrap())
            .output()
            .unwrap();
        let list = String::from_utf8_lossy(&out.stdout);
        assert!(out.status.success(), "{list}");
        for want in ["etc/hello", "bin/x", "bin/y -> x", "dev/console", "etc\n"] {
            assert!(list.contains(want.trim_end()), "missing {want} in\n{list}");
        }
        let x = dir.path().join("x");
        std::fs::create_dir(&x).unwrap();
        let st = std::process::Command::new("cpio")
            .args(["-id", "--quiet"])
            .current_dir(&x)
            .stdin(std::fs::File::open(&img).unwrap())
            .status()
            .unwrap();
        assert!(st.success());
        assert_eq!(
            std::fs::read(x.join("etc/hello")).unwrap(),
            b"hello world\n"
        );
    }

    #[test]
    fn rejects_escaping_paths() {
        let mut a = Archive::new();
        assert!(a.file("../x", b"".to_vec(), 0o644).is_err());
        assert!(a.file("", b"".to_vec(), 0o644).is_err());
    }
}
