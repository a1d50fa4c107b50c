//! Kernel image formats: detection and parsing, one module per format, and
//! the two entry points the CLI's `kexec info` uses, [`inspect_bytes`] and
//! [`inspect_path`].
//!
//! Every parser takes a byte slice and returns a typed error on any malformed
//! input; none of them may panic, whatever the bytes (they are fuzzed).

pub mod arm64;
pub mod bzimage;
pub mod compression;
pub mod cpio;
pub mod detect;
pub mod elf;
mod hex;
pub mod initramfs;
pub mod pe;
pub mod report;
pub mod uki;

use std::path::{Path, PathBuf};

pub use detect::{detect, Format, LooksLike};
pub use report::{Image, ImageReport, SCHEMA};

/// Why a file could not be inspected (bytes only; see [`InspectError`] for
/// the file-level error).
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("the file is empty")]
    Empty,
    #[error("not a kernel image or initramfs: it looks like {0}")]
    NotAKernel(LooksLike),
    #[error("bzImage: {0}")]
    BzImage(#[from] bzimage::Error),
    #[error("ELF kernel: {0}")]
    Elf(#[from] elf::Error),
    #[error("arm64 kernel: {0}")]
    Arm64(#[from] arm64::Error),
    #[error("unified kernel image: {0}")]
    Uki(#[from] uki::Error),
    #[error("initramfs: {0}")]
    Initramfs(#[from] initramfs::Error),
    #[error(
        "unified kernel image: the .linux section is itself a UKI; nested UKIs are not supported"
    )]
    NestedUki,
}

pub type Result<T> = std::result::Result<T, Error>;

impl Error {
    /// What the user can do about it, as a short imperative clause.
    pub fn advice(&self) -> &'static str {
        use Error as E;
        match self {
            E::Empty => "re-download or rebuild it",
            E::NotAKernel(_) => "pass a kernel (bzImage, vmlinux, arm64 Image/Image.gz, zboot or UKI) or an initramfs",
            E::BzImage(bzimage::Error::NoHdrS | bzimage::Error::NoBootSignature) => "pass a kernel (bzImage, vmlinux, arm64 Image/Image.gz, zboot or UKI)",
            E::Elf(elf::Error::NoMagic) | E::Arm64(arm64::Error::NoMagic | arm64::Error::NotAnImageInside { .. }) => {
                "pass a kernel (bzImage, vmlinux, arm64 Image/Image.gz, zboot or UKI)"
            }
            E::Arm64(arm64::Error::Decompress(compression::Error::Unsupported { .. })) => "decompress it first",
            E::Initramfs(initramfs::Error::BadMagic { .. }) => "rebuild the initramfs (e.g. with `cpio -H newc`), or check that it was concatenated correctly",
            E::NestedUki => "extract the inner kernel first",
            _ => "the file is truncated or corrupt: re-download it or reinstall the package it came from",
        }
    }
}

/// Inspecting a file failed. `Display` is one line: the file, the reason,
/// and what to do.
#[derive(Debug, thiserror::Error)]
#[error("{}: {reason}; {advice}", path.display())]
pub struct InspectError {
    pub path: PathBuf,
    pub reason: String,
    pub advice: &'static str,
    pub kind: InspectErrorKind,
}

/// The class of an [`InspectError`], for callers that choose exit codes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InspectErrorKind {
    NotFound,
    IsADirectory,
    Unreadable,
    Invalid,
}

/// One line: error text from dependencies may contain newlines.
fn one_line(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// Reports what `b` is. Unknown formats are an error that says what the
/// bytes look like.
///
/// ```
/// use kexec::image::{self, cpio, Image};
///
/// let initrd = cpio::build_newc(&[("init", b"#!/bin/sh\n")]);
/// let report = image::inspect_bytes(&initrd).unwrap();
/// assert!(matches!(report.image, Image::Initramfs(_)));
/// assert_eq!(serde_json::to_value(&report).unwrap()["format"], "initramfs");
///
/// let err = image::inspect_bytes(b"\x89PNG\r\n\x1a\n....").unwrap_err();
/// assert_eq!(err.to_string(), "not a kernel image or initramfs: it looks like a PNG image");
/// ```
pub fn inspect_bytes(b: &[u8]) -> Result<ImageReport> {
    inspect_at_depth(b, 0)
}

fn inspect_at_depth(b: &[u8], depth: u32) -> Result<ImageReport> {
    let size = b.len() as u64;
    let image = match detect(b) {
        Format::Unknown(LooksLike::Empty) => return Err(Error::Empty),
        Format::Unknown(looks) => return Err(Error::NotAKernel(looks)),
        Format::Bzimage { .. } => Image::Bzimage(bzimage::BzImage::parse(b)?),
        Format::Vmlinux => Image::Vmlinux(elf::parse(b)?),
        Format::Arm64Image { .. } => Image::Arm64Image(arm64::parse_image(b)?),
        Format::Arm64Compressed { compression } => {
            let inner = arm64::decompress(b)?;
            Image::Arm64Compressed {
                compression,
                decompressed_size: inner.len() as u64,
                image: arm64::parse_image(&inner)?,
            }
        }
        Format::Zboot => {
            let zboot = arm64::Zboot::parse(b)?;
            let efi = if pe::has_pe_header(b) {
                Some(pe::parse(b).map_err(arm64::Error::Pe)?)
            } else {
                None
            };
            let inner = arm64::decompress(b)?;
            Image::Zboot {
                zboot,
                efi,
                decompressed_size: inner.len() as u64,
                image: arm64::parse_image(&inner)?,
            }
        }
        Format::Uki => {
            if depth > 0 {
                return Err(Error::NestedUki);
            }
            let uki = uki::parse(b)?;
            let linux = b.get(uki.linux.range()).unwrap_or_default();
            let kernel = Box::new(inspect_at_depth(linux, depth + 1)?);
            Image::Uki { uki, kernel }
        }
        Format::Initramfs { .. } => Image::Initramfs(initramfs::parse(b)?),
    };
    Ok(ImageReport::new(size, image))
}

/// Largest file [`inspect_path`] reads into memory.
pub const MAX_FILE_SIZE: u64 = 4 << 30;

/// Reads and inspects a file; every failure names the file.
///
/// ```
/// let err = kexec::image::inspect_path("/nonexistent/vmlinuz".as_ref()).unwrap_err();
/// assert_eq!(err.to_string(), "/nonexistent/vmlinuz: no such file; check the path");
/// ```
pub fn inspect_path(path: &Path) -> std::result::Result<ImageReport, InspectError> {
    let fail = |kind, reason: String, advice| InspectError {
        path: path.to_path_buf(),
        reason: one_line(&reason),
        advice,
        kind,
    };
    let meta = std::fs::metadata(path).map_err(|e| match e.kind() {
        std::io::ErrorKind::NotFound => fail(
            InspectErrorKind::NotFound,
            "no such file".into(),
            "check the path",
        ),
        _ => fail(
            InspectErrorKind::Unreadable,
            format!("cannot read it: {e}"),
            "check its permissions (are you root?)",
        ),
    })?;
    if meta.is_dir() {
        return Err(fail(
            InspectErrorKind::IsADirectory,
            "is a directory, not a kernel image".into(),
            "pass a file inside it, such as /boot/vmlinuz-$(uname -r)",
        ));
    }
    // A device or FIFO could be endless (/dev/zero): only read files.
    if !meta.is_file() {
        return Err(fail(
            InspectErrorKind::Invalid,
            "is not a regular file (a device, FIFO or socket)".into(),
            "pass a kernel image or initramfs file",
        ));
    }
    if meta.len() > MAX_FILE_SIZE {
        return Err(fail(
            InspectErrorKind::Invalid,
            format!("is {} bytes, larger than any kernel or initramfs this tool reads ({MAX_FILE_SIZE} bytes)", meta.len()),
            "pass a kernel image or initramfs file",
        ));
    }
    let bytes = std::fs::read(path).map_err(|e| {
        fail(
            InspectErrorKind::Unreadable,
            format!("cannot read it: {e}"),
            "check its permissions (are you root?)",
        )
    })?;
    let mut report = inspect_bytes(&bytes)
        .map_err(|e| fail(InspectErrorKind::Invalid, e.to_string(), e.advice()))?;
    report.path = Some(path.display().to_string());
    Ok(report)
}
