//! Format detection: which parser a file needs, from its bytes alone.
//!
//! Users hand kexec whatever is in `/boot`, so detection has to tell a kernel
//! from an initramfs, and a kernel image from the many things that are not
//! one (a shared library, a script, a picture) and say what the file looks
//! like instead. Detection never fails; parsing is the parsers' job.

use serde::Serialize;

use super::compression::{self, Compression};
use super::{arm64, cpio, elf, pe, uki};

/// Bytes decompressed to look inside a compressed file.
const PEEK: usize = 4096;

/// A kernel-related format this crate can parse.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// x86 bzImage, with or without an EFI stub PE header.
    Bzimage {
        efi_stub: bool,
    },
    /// ELF kernel.
    Vmlinux,
    /// Uncompressed arm64 Image.
    Arm64Image {
        efi_stub: bool,
    },
    /// arm64 Image inside a gzip/zstd/xz/lz4 stream (`Image.gz`).
    Arm64Compressed {
        compression: Compression,
    },
    /// EFI zboot image (`MZ` + `zimg`).
    Zboot,
    /// Unified kernel image (PE with a `.linux` section).
    Uki,
    /// cpio newc archive, plain or compressed.
    Initramfs {
        compression: Option<Compression>,
    },
    Unknown(LooksLike),
}

/// What a file that is not a kernel image looks like.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum LooksLike {
    Empty,
    Png,
    Jpeg,
    Gif,
    Pdf,
    Zip,
    Script,
    Text,
    Elf(elf::ElfKind),
    /// A PE/EFI executable without a kernel inside.
    PeExecutable,
    /// Compressed data whose contents are neither a kernel nor a cpio.
    Compressed(Compression),
    Data,
}

impl std::fmt::Display for LooksLike {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            LooksLike::Empty => f.write_str("an empty file"),
            LooksLike::Png => f.write_str("a PNG image"),
            LooksLike::Jpeg => f.write_str("a JPEG image"),
            LooksLike::Gif => f.write_str("a GIF image"),
            LooksLike::Pdf => f.write_str("a PDF document"),
            LooksLike::Zip => f.write_str("a zip archive"),
            LooksLike::Script => f.write_str("a script (starts with #!)"),
            LooksLike::Text => f.write_str("a text file"),
            LooksLike::Elf(kind) => f.write_str(kind.describe()),
            LooksLike::PeExecutable => {
                f.write_str("a PE/EFI executable without a .linux section (not a kernel or UKI)")
            }
            LooksLike::Compressed(c) => write!(
                f,
                "{c}-compressed data that holds neither a kernel nor a cpio archive"
            ),
            LooksLike::Data => f.write_str("binary data of no known kernel format"),
        }
    }
}

fn is_text(b: &[u8]) -> bool {
    let sample = &b[..b.len().min(512)];
    !sample.is_empty()
        && sample.iter().all(|&c| {
            c == b'\n' || c == b'\t' || c == b'\r' || (0x20..0x7f).contains(&c) || c >= 0x80
        })
}

/// `HdrS`, or at least an x86 boot sector signature with room for a setup
/// header: a damaged bzImage is still reported as one, with the reason.
fn has_bzimage_magic(b: &[u8]) -> bool {
    b.get(0x202..0x206) == Some(b"HdrS")
        || (b.len() >= 0x206 && b.get(0x1fe..0x200) == Some(&[0x55, 0xaa]))
}

/// Identifies the format of `b`.
pub fn detect(b: &[u8]) -> Format {
    if b.is_empty() {
        return Format::Unknown(LooksLike::Empty);
    }
    if has_bzimage_magic(b) {
        return Format::Bzimage {
            efi_stub: pe::has_pe_header(b),
        };
    }
    if b.starts_with(b"\x7fELF") {
        return match elf::parse(b) {
            Ok(r) if r.kind != elf::ElfKind::Kernel => Format::Unknown(LooksLike::Elf(r.kind)),
            // A broken ELF is still meant as one: let the parser say why.
            _ => Format::Vmlinux,
        };
    }
    if arm64::is_zboot(b) {
        return Format::Zboot;
    }
    if arm64::has_magic(b) {
        return Format::Arm64Image {
            efi_stub: b.starts_with(b"MZ"),
        };
    }
    if b.starts_with(b"MZ") {
        return if uki::is_uki(b) {
            Format::Uki
        } else {
            Format::Unknown(LooksLike::PeExecutable)
        };
    }
    // The kernel skips NUL padding before an archive; so does detection.
    let after_padding = &b[b.iter().take_while(|&&c| c == 0).count()..];
    if cpio::is_newc(after_padding) {
        return Format::Initramfs { compression: None };
    }
    if after_padding.len() < b.len() {
        if let Some(c) = Compression::from_magic(after_padding) {
            if compression::peek(c, after_padding, PEEK).is_some_and(|inner| cpio::is_newc(&inner))
            {
                return Format::Initramfs {
                    compression: Some(c),
                };
            }
        }
    }
    if let Some(c) = Compression::from_magic(b) {
        return match compression::peek(c, b, PEEK) {
            Some(inner) if arm64::has_magic(&inner) => Format::Arm64Compressed { compression: c },
            Some(inner) if cpio::is_newc(&inner) => Format::Initramfs {
                compression: Some(c),
            },
            Some(_) => Format::Unknown(LooksLike::Compressed(c)),
            // Cannot look inside (bzip2, lzo): most likely an initramfs.
            None => Format::Initramfs {
                compression: Some(c),
            },
        };
    }
    let looks = if b.starts_with(b"\x89PNG\r\n\x1a\n") {
        LooksLike::Png
    } else if b.starts_with(&[0xff, 0xd8, 0xff]) {
        LooksLike::Jpeg
    } else if b.starts_with(b"GIF8") {
        LooksLike::Gif
    } else if b.starts_with(b"%PDF") {
        LooksLike::Pdf
    } else if b.starts_with(b"PK\x03\x04") {
        LooksLike::Zip
    } else if b.starts_with(b"#!") {
        LooksLike::Script
    } else if is_text(b) {
        LooksLike::Text
    } else {
        LooksLike::Data
    };
    Format::Unknown(looks)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tells_apart_what_is_not_a_kernel() {
        assert_eq!(detect(b""), Format::Unknown(LooksLike::Empty));
        assert_eq!(
            detect(b"\x89PNG\r\n\x1a\n\0\0"),
            Format::Unknown(LooksLike::Png)
        );
        assert_eq!(
            detect(b"#!/bin/sh\necho hi\n"),
            Format::Unknown(LooksLike::Script)
        );
        assert_eq!(detect(b"hello\n"), Format::Unknown(LooksLike::Text));
        assert_eq!(detect(&[0u8, 1, 2, 3]), Format::Unknown(LooksLike::Data));
    }

    #[test]
    fn finds_kernels_and_initramfs() {
        let img = arm64::build_image(0, 0x1000, 0xa, &[0; 16]);
        assert_eq!(detect(&img), Format::Arm64Image { efi_stub: false });
        let cpio = cpio::build_newc(&[("init", b"x")]);
        assert_eq!(detect(&cpio), Format::Initramfs { compression: None });
        let mut padded = vec![0u8; 8];
        padded.extend_from_slice(&cpio);
        assert_eq!(detect(&padded), Format::Initramfs { compression: None });
        let bz = super::super::bzimage::build(0x020f, 3, "6.6", b"\x1f\x8b");
        assert_eq!(detect(&bz), Format::Bzimage { efi_stub: false });
    }

    #[test]
    fn never_panics_on_prefixes() {
        let bz = super::super::bzimage::build(0x020f, 3, "6.6", b"\x1f\x8b");
        for len in 0..bz.len() {
            let _ = detect(&bz[..len]);
        }
    }
}
