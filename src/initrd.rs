//! The initrd a load passes: one file as is, or several concatenated.
//!
//! kexec-tools keeps only the last `--initrd`; people need several (CPU
//! microcode first, then the distribution's initramfs). The kernel unpacks
//! concatenated cpio archives in order as long as each one starts 4-byte
//! aligned, so the parts are joined with zero padding to a 4-byte boundary.
//!
//! `kexec_file_load` takes the initrd as a file descriptor, so the join is
//! written into a `memfd`, sealed against any change, and reopened read-only:
//! the kernel refuses (`ETXTBSY`) a file that is open for writing, and the
//! memfd's own descriptor is.

use std::ffi::CString;
use std::fs::File;
use std::io::Write;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd};
use std::path::{Path, PathBuf};

use nix::fcntl::{fcntl, FcntlArg, SealFlag};
use nix::sys::memfd::{memfd_create, MemFdCreateFlag};

use crate::input_file::{Bytes, Input, OpenError};

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("cannot open initrd {path}: {source}; check the path given to --initrd")]
    Open {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot read initrd {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("initrd {path} is a directory; --initrd needs a file (an initramfs image)")]
    Directory { path: PathBuf },
    #[error("cannot create the in-memory file joining the initrds: {0}")]
    Memfd(nix::errno::Errno),
    #[error("cannot write the joined initrds into memory: {0}")]
    Write(std::io::Error),
    #[error("cannot seal the joined initrds: {0}")]
    Seal(nix::errno::Errno),
    #[error(
        "cannot reopen the joined initrds read-only through /proc/self/fd: {0} (is /proc mounted?)"
    )]
    Reopen(std::io::Error),
}

pub type Result<T> = std::result::Result<T, Error>;

/// One part of the initrd: where it came from and how long it is.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Part {
    pub name: String,
    pub len: u64,
}

/// The initrd ready for `kexec_file_load`: a read-only descriptor over the
/// (possibly joined) bytes, and what went into it.
#[derive(Debug)]
pub struct Initrd {
    file: File,
    pub parts: Vec<Part>,
    pub total_len: u64,
}

impl Initrd {
    pub fn fd(&self) -> BorrowedFd<'_> {
        self.file.as_fd()
    }

    /// The initrd's bytes, mapped: the classic path's segment points into
    /// them (a sealed memfd or a regular file, both mappable).
    pub fn bytes(&self) -> std::io::Result<Bytes> {
        Bytes::of(&self.file, &self.file.metadata()?)
    }
}

/// Pads `len` up to the next multiple of 4.
pub fn aligned4(len: u64) -> u64 {
    len.div_ceil(4) * 4
}

/// Joins byte slices as the kernel expects several archives: each part starts
/// at a 4-byte aligned offset, the gaps are zeros.
pub fn join(parts: &[&[u8]]) -> Vec<u8> {
    let mut out = Vec::new();
    for p in parts {
        out.resize(aligned4(out.len() as u64) as usize, 0);
        out.extend_from_slice(p);
    }
    out
}

/// The absolute name of a part, for the load record.
fn display_name(path: &Path) -> String {
    std::fs::canonicalize(path)
        .unwrap_or_else(|_| path.to_owned())
        .display()
        .to_string()
}

fn open_file(path: &Path) -> Result<Input> {
    Input::open(path).map_err(|e| match e {
        OpenError::Directory => Error::Directory {
            path: path.to_owned(),
        },
        OpenError::Io(source) => Error::Open {
            path: path.to_owned(),
            source,
        },
    })
}

/// The bytes of one `--initrd` file, with its name for the load record.
fn read_part(path: &Path) -> Result<(String, Bytes)> {
    part_bytes(path, &open_file(path)?)
}

fn part_bytes(path: &Path, input: &Input) -> Result<(String, Bytes)> {
    let bytes = input.bytes().map_err(|source| Error::Read {
        path: path.to_owned(),
        source,
    })?;
    Ok((display_name(path), bytes))
}

/// Opens the initrd given as paths. One regular file is passed through
/// untouched (no copy); several, or a pipe, are joined into a sealed memfd.
pub fn from_paths(paths: &[PathBuf]) -> Result<Option<Initrd>> {
    if let [one] = paths {
        let input = open_file(one)?;
        if input.is_regular() {
            let len = input.meta.len();
            return Ok(Some(Initrd {
                file: input.file,
                parts: vec![Part {
                    name: one.display().to_string(),
                    len,
                }],
                total_len: len,
            }));
        }
        // A pipe: read it through the descriptor already open (opening it
        // again could leave its writer without a reader for a moment).
        let (name, bytes) = part_bytes(one, &input)?;
        return from_bytes(&[(name, &bytes[..])]).map(Some);
    }
    if paths.is_empty() {
        return Ok(None);
    }
    assemble_parts(None, paths).map(Some)
}

/// Joins in-memory parts and then the files at `paths` into one sealed memfd.
fn assemble_parts(first: Option<(String, &[u8])>, paths: &[PathBuf]) -> Result<Initrd> {
    let files = paths
        .iter()
        .map(|p| read_part(p))
        .collect::<Result<Vec<_>>>()?;
    let named: Vec<(String, &[u8])> = first
        .into_iter()
        .chain(files.iter().map(|(n, d)| (n.clone(), &d[..])))
        .collect();
    from_bytes(&named)
}

/// The initrd of a load: an initrd embedded in the kernel file (a UKI's
/// `.initrd`) first, then the `--initrd` files in order.
pub fn assemble(embedded: Option<(String, &[u8])>, paths: &[PathBuf]) -> Result<Option<Initrd>> {
    match embedded {
        None => from_paths(paths),
        Some(part) => assemble_parts(Some(part), paths).map(Some),
    }
}

/// Whether the early-microcode check is worth reading the initrd for: it
/// was assembled from several parts, or a part is named like microcode.
pub fn wants_microcode_check(initrd: &Initrd) -> bool {
    initrd.parts.len() > 1
        || initrd
            .parts
            .iter()
            .any(|p| p.name.contains("ucode") || p.name.contains("microcode"))
}

/// Early microcode the kernel will ignore in this initrd, if any. Reads the
/// initrd back through its descriptor; unreadable or unparsable initrds give
/// no warning (the kernel is the judge of those).
pub fn microcode_problem(initrd: &Initrd) -> Option<crate::image::initramfs::MicrocodeProblem> {
    let data = initrd.bytes().ok()?;
    let report = crate::image::initramfs::parse(&data).ok()?;
    crate::image::initramfs::microcode_problem(&report)
}

/// Joins named in-memory parts (e.g. a UKI's `.initrd` and extra files) into
/// a sealed, read-only memfd.
pub fn from_bytes(parts: &[(String, &[u8])]) -> Result<Initrd> {
    let slices: Vec<&[u8]> = parts.iter().map(|(_, d)| *d).collect();
    let joined = join(&slices);
    let file = sealed_memfd("kexec-initrd", &joined)?;
    Ok(Initrd {
        file,
        parts: parts
            .iter()
            .map(|(n, d)| Part {
                name: n.clone(),
                len: d.len() as u64,
            })
            .collect(),
        total_len: joined.len() as u64,
    })
}

/// Writes `data` into a memfd, seals it, and returns a read-only reopen of it
/// (the writable descriptor is closed before returning).
pub fn sealed_memfd(name: &str, data: &[u8]) -> Result<File> {
    let cname = CString::new(name).unwrap_or_else(|_| c"kexec".to_owned());
    let fd = memfd_create(
        &cname,
        MemFdCreateFlag::MFD_CLOEXEC | MemFdCreateFlag::MFD_ALLOW_SEALING,
    )
    .map_err(Error::Memfd)?;
    let mut writable = File::from(fd);
    writable.write_all(data).map_err(Error::Write)?;
    fcntl(
        writable.as_raw_fd(),
        FcntlArg::F_ADD_SEALS(
            SealFlag::F_SEAL_SHRINK
                | SealFlag::F_SEAL_GROW
                | SealFlag::F_SEAL_WRITE
                | SealFlag::F_SEAL_SEAL,
        ),
    )
    .map_err(Error::Seal)?;
    let readonly =
        File::open(format!("/proc/self/fd/{}", writable.as_raw_fd())).map_err(Error::Reopen)?;
    drop(writable);
    Ok(readonly)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;

    #[test]
    fn join_pads_each_part_to_four_bytes() {
        assert_eq!(
            join(&[b"abc", b"de", b"fghij"]),
            b"abc\0de\0\0fghij".to_vec()
        );
        assert_eq!(join(&[b"abcd", b"e"]), b"abcde".to_vec());
        assert!(join(&[]).is_empty());
    }

    #[test]
    fn several_paths_become_one_sealed_read_only_memfd() {
        let dir = tempfile::tempdir().unwrap();
        let a = dir.path().join("intel-ucode.img");
        let b = dir.path().join("initramfs-lts");
        std::fs::write(&a, b"UCODE").unwrap();
        std::fs::write(&b, b"INITRAMFS").unwrap();
        let initrd = from_paths(&[a.clone(), b.clone()]).unwrap().unwrap();
        assert_eq!(initrd.total_len, 8 + 9);
        assert_eq!(
            initrd.parts[0],
            Part {
                name: a.display().to_string(),
                len: 5
            }
        );
        let mut f = File::from(initrd.fd().try_clone_to_owned().unwrap());
        let mut buf = Vec::new();
        f.read_to_end(&mut buf).unwrap();
        assert_eq!(buf, b"UCODE\0\0\0INITRAMFS");
        // Sealed: no writer can change what the kernel reads.
        let seals = fcntl(initrd.fd().as_raw_fd(), FcntlArg::F_GET_SEALS).unwrap();
        assert_ne!(seals & libc::F_SEAL_WRITE, 0);
        // Read-only: the kernel refuses files open for writing.
        let flags = fcntl(initrd.fd().as_raw_fd(), FcntlArg::F_GETFL).unwrap();
        assert_eq!(flags & libc::O_ACCMODE, libc::O_RDONLY);
    }

    #[test]
    fn one_path_is_passed_through() {
        let dir = tempfile::tempdir().unwrap();
        let a = dir.path().join("initrd");
        std::fs::write(&a, b"x").unwrap();
        let initrd = from_paths(&[a]).unwrap().unwrap();
        assert_eq!(initrd.total_len, 1);
        assert!(from_paths(&[]).unwrap().is_none());
    }

    #[test]
    fn embedded_initrd_comes_first() {
        let dir = tempfile::tempdir().unwrap();
        let a = dir.path().join("extra");
        std::fs::write(&a, b"EXTRA").unwrap();
        let initrd = assemble(Some((".initrd of linux.efi".into(), b"UKI")), &[a])
            .unwrap()
            .unwrap();
        let mut buf = Vec::new();
        File::from(initrd.fd().try_clone_to_owned().unwrap())
            .read_to_end(&mut buf)
            .unwrap();
        assert_eq!(buf, b"UKI\0EXTRA");
        assert_eq!(initrd.parts[0].name, ".initrd of linux.efi");
    }

    /// A newc cpio archive with the given files and a trailer.
    fn newc(files: &[(&str, &[u8])]) -> Vec<u8> {
        let mut cpio = Vec::new();
        let trailer: (&str, &[u8]) = ("TRAILER!!!", b"");
        for (i, (name, data)) in files.iter().copied().chain([trailer]).enumerate() {
            let namez = format!("{name}\0");
            let fields = [
                i + 1,
                0o100644,
                0,
                0,
                1,
                0,
                data.len(),
                0,
                0,
                0,
                0,
                namez.len(),
                0,
            ];
            cpio.extend_from_slice(b"070701");
            for f in fields {
                cpio.extend_from_slice(format!("{f:08x}").as_bytes());
            }
            cpio.extend_from_slice(namez.as_bytes());
            cpio.resize(aligned4(cpio.len() as u64) as usize, 0);
            cpio.extend_from_slice(data);
            cpio.resize(aligned4(cpio.len() as u64) as usize, 0);
        }
        cpio
    }

    #[test]
    fn compressed_microcode_is_reported() {
        use std::io::Write;
        let cpio = newc(&[("kernel/x86/microcode/GenuineIntel.bin", b"UCODE")]);
        let dir = tempfile::tempdir().unwrap();
        let plain = dir.path().join("intel-ucode.img");
        std::fs::write(&plain, &cpio).unwrap();
        let initrd = from_paths(std::slice::from_ref(&plain)).unwrap().unwrap();
        assert!(wants_microcode_check(&initrd));
        assert_eq!(microcode_problem(&initrd), None);
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        gz.write_all(&cpio).unwrap();
        let packed = dir.path().join("intel-ucode.img.gz");
        std::fs::write(&packed, gz.finish().unwrap()).unwrap();
        let initrd = from_paths(&[packed]).unwrap().unwrap();
        let problem = microcode_problem(&initrd).expect("compressed microcode is a problem");
        assert!(problem.to_string().contains("compressed"), "{problem}");
        // Misplaced: a compressed archive first, the microcode after it.
        let other = dir.path().join("initramfs-lts");
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        gz.write_all(&newc(&[("init", b"#!/bin/sh\n")])).unwrap();
        std::fs::write(&other, gz.finish().unwrap()).unwrap();
        let initrd = from_paths(&[other, plain]).unwrap().unwrap();
        assert!(microcode_problem(&initrd).is_some());
    }

    #[test]
    fn errors_name_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("nope.img");
        let err = from_paths(&[missing.clone(), missing.clone()]).unwrap_err();
        assert!(err.to_string().contains("nope.img"), "{err}");
        let err = from_paths(&[dir.path().to_owned()]).unwrap_err();
        assert!(matches!(err, Error::Directory { .. }), "{err}");
    }

    #[test]
    fn a_piped_initrd_is_staged_in_a_memfd() {
        // `--initrd <(zcat initramfs.gz)`: the kernel takes only regular files.
        let (r, mut w) = std::io::pipe().unwrap();
        std::io::Write::write_all(&mut w, b"PIPED-INITRD").unwrap();
        drop(w);
        let path = PathBuf::from(format!("/proc/self/fd/{}", r.as_raw_fd()));
        let i = from_paths(&[path]).unwrap().unwrap();
        assert_eq!(i.total_len, 12);
        assert_eq!(&*i.bytes().unwrap(), b"PIPED-INITRD");
        assert!(
            i.file.metadata().unwrap().is_file(),
            "a memfd, not the pipe"
        );
    }
}
