//! A bounded reader for cpio "newc" archives (`070701`, and `070702` with
//! checksums), the only cpio flavour the kernel unpacks into its rootfs.
//!
//! It exists to answer questions about an initramfs (how many files, which
//! ones come first, is early microcode there) without unpacking it, so it
//! only walks headers and never copies file data.

use serde::Serialize;

/// Size of a newc header: 6 bytes of magic and 13 eight-digit hex fields.
pub const HEADER_LEN: usize = 110;
/// Name of the entry that ends an archive.
pub const TRAILER: &str = "TRAILER!!!";

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum Error {
    #[error(
        "cpio header at offset {offset:#x} is cut short by the end of the data (truncated archive)"
    )]
    TruncatedHeader { offset: usize },
    #[error("no cpio newc magic (070701/070702) at offset {offset:#x}: the archive is corrupt or not a newc cpio (create it with `cpio -H newc`)")]
    BadMagic { offset: usize },
    #[error("cpio header at offset {offset:#x} has a non-hexadecimal {field} field")]
    BadField { offset: usize, field: &'static str },
    #[error("cpio entry at offset {offset:#x} claims a {what} of {size} bytes, past the end of the data (truncated or lying sizes)")]
    PastEnd {
        offset: usize,
        what: &'static str,
        size: u32,
    },
    #[error("cpio entry at offset {offset:#x} has an empty or unterminated name")]
    BadName { offset: usize },
    #[error(
        "cpio archive ends at offset {offset:#x} without a TRAILER!!! entry (truncated archive)"
    )]
    NoTrailer { offset: usize },
}

pub type Result<T> = std::result::Result<T, Error>;

/// One archive member's header.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Entry {
    pub name: String,
    pub mode: u32,
    pub size: u32,
    /// Offset of the header from the start of the archive data.
    pub offset: usize,
    /// Offset of the file contents from the start of the archive data.
    pub data_offset: usize,
}

impl Entry {
    pub fn is_regular_file(&self) -> bool {
        self.mode & 0o170000 == 0o100000
    }
}

/// An archive: entries (without the trailer) and where it ends.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Archive {
    pub entries: Vec<Entry>,
    /// Offset just past the trailer's padding.
    pub end: usize,
}

/// True when the data starts like a newc archive.
pub fn is_newc(b: &[u8]) -> bool {
    b.starts_with(b"070701") || b.starts_with(b"070702")
}

fn align4(n: usize) -> usize {
    n.saturating_add(3) & !3
}

fn hex_field(b: &[u8], offset: usize, index: usize, field: &'static str) -> Result<u32> {
    let start = offset + 6 + index * 8;
    let digits = b
        .get(start..start + 8)
        .ok_or(Error::TruncatedHeader { offset })?;
    let text = std::str::from_utf8(digits).map_err(|_| Error::BadField { offset, field })?;
    u32::from_str_radix(text, 16).map_err(|_| Error::BadField { offset, field })
}

/// Reads one archive starting at `start` in `b`, up to and including its
/// trailer. At most `max_entries` entries are kept (the walk continues, so
/// the end offset is still exact).
pub fn read_archive(b: &[u8], start: usize, max_entries: usize) -> Result<Archive> {
    let mut entries = Vec::new();
    let mut off = start;
    loop {
        if off >= b.len() {
            return Err(Error::NoTrailer { offset: off });
        }
        let header = b
            .get(off..off + HEADER_LEN)
            .ok_or(Error::TruncatedHeader { offset: off })?;
        if !is_newc(header) {
            return Err(Error::BadMagic { offset: off });
        }
        let mode = hex_field(b, off, 1, "mode")?;
        let size = hex_field(b, off, 6, "filesize")?;
        let namesize = hex_field(b, off, 11, "namesize")?;
        let name_start = off + HEADER_LEN;
        let name_bytes = b
            .get(name_start..name_start.saturating_add(namesize as usize))
            .ok_or(Error::PastEnd {
                offset: off,
                what: "name",
                size: namesize,
            })?;
        // The name includes its NUL terminator.
        let name = match name_bytes.split_last() {
            Some((0, name)) if !name.is_empty() => String::from_utf8_lossy(name).into_owned(),
            _ => return Err(Error::BadName { offset: off }),
        };
        let data_offset = align4(name_start + namesize as usize);
        let data_end = data_offset.saturating_add(size as usize);
        if data_end > b.len() {
            return Err(Error::PastEnd {
                offset: off,
                what: "file size",
                size,
            });
        }
        let next = align4(data_end).min(b.len());
        if name == TRAILER {
            return Ok(Archive { entries, end: next });
        }
        if entries.len() < max_entries {
            entries.push(Entry {
                name,
                mode,
                size,
                offset: off - start,
                data_offset: data_offset - start,
            });
        }
        off = next;
    }
}

/// Test and fixture helper: builds a newc archive from (name, contents)
/// pairs, regular files with mode 0644, followed by a trailer.
pub fn build_newc(files: &[(&str, &[u8])]) -> Vec<u8> {
    let mut out = Vec::new();
    let mut push = |name: &str, mode: u32, data: &[u8], ino: u32| {
        let namesize = name.len() + 1;
        let fields = [
            ino,
            mode,
            0,
            0,
            1,
            0,
            data.len() as u32,
            0,
            0,
            0,
            0,
            namesize as u32,
            0,
        ];
        out.extend_from_slice(b"070701");
        for f in fields {
            out.extend_from_slice(format!("{f:08X}").as_bytes());
        }
        out.extend_from_slice(name.as_bytes());
        out.push(0);
        out.resize(align4(out.len()), 0);
        out.extend_from_slice(data);
        out.resize(align4(out.len()), 0);
    };
    for (i, (name, data)) in files.iter().enumerate() {
        let mode = if data.is_empty() && !name.contains('.') {
            0o040755
        } else {
            0o100644
        };
        push(name, mode, data, i as u32 + 1);
    }
    push(TRAILER, 0, &[], 0);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_what_it_builds() {
        let a = build_newc(&[
            ("kernel", b""),
            ("kernel/x86/microcode/GenuineIntel.bin", b"ucode"),
        ]);
        let r = read_archive(&a, 0, 10).unwrap();
        assert_eq!(r.end, a.len());
        assert_eq!(r.entries.len(), 2);
        assert_eq!(r.entries[1].name, "kernel/x86/microcode/GenuineIntel.bin");
        assert_eq!(r.entries[1].size, 5);
        assert!(r.entries[1].is_regular_file());
        assert!(!r.entries[0].is_regular_file());
        let d = r.entries[1].data_offset;
        assert_eq!(&a[d..d + 5], b"ucode");
    }

    #[test]
    fn every_truncation_is_an_error() {
        let a = build_newc(&[("init", b"#!/bin/sh\n"), ("etc", b"")]);
        for len in 0..a.len() - 4 {
            assert!(read_archive(&a[..len], 0, 10).is_err(), "len {len}");
        }
    }

    #[test]
    fn lying_size_is_past_end() {
        let mut a = build_newc(&[("init", b"x")]);
        a[6 + 6 * 8..6 + 7 * 8].copy_from_slice(b"7FFFFFFF");
        assert!(matches!(
            read_archive(&a, 0, 10),
            Err(Error::PastEnd {
                what: "file size",
                ..
            })
        ));
    }
}
