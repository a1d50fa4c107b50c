//! initramfs images: the concatenated, optionally compressed cpio segments
//! the kernel unpacks into its rootfs, and whether early CPU microcode in
//! them will actually be found.
//!
//! The walk mirrors the kernel's `unpack_to_rootfs()`: NUL padding is
//! skipped, an uncompressed newc archive is read to its trailer, anything
//! else must start with a compressor's magic and is one compressed stream.
//! The early microcode loader is stricter (`find_cpio_data()`): it scans
//! only the uncompressed archives at the very start and stops at the first
//! byte that is not a cpio header. A microcode archive that is compressed,
//! or that comes after a compressed segment, is silently ignored: that is
//! the mistake [`microcode_problem`] reports when several initrds are
//! concatenated.

use serde::Serialize;

use super::compression::{self, Compression, MAX_DECOMPRESSED};
use super::cpio;

/// Segments read at most; real images have one to three.
const MAX_SEGMENTS: usize = 256;
/// Entry names kept per segment for the report.
const FIRST_ENTRIES: usize = 8;
/// Where the early microcode loaders look (x86).
pub const MICROCODE_PATHS: [&str; 2] = [
    "kernel/x86/microcode/GenuineIntel.bin",
    "kernel/x86/microcode/AuthenticAMD.bin",
];

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("the initramfs is empty")]
    Empty,
    #[error("invalid magic at offset {offset:#x}: neither a cpio newc archive nor a compressed stream the kernel knows (the kernel would stop unpacking here)")]
    BadMagic { offset: usize },
    #[error("cpio archive in segment {segment} (offset {offset:#x}) is broken: {source}")]
    Cpio {
        segment: usize,
        offset: usize,
        source: cpio::Error,
    },
    #[error("segment {segment} at offset {offset:#x}: {source}")]
    Decompress {
        segment: usize,
        offset: usize,
        source: compression::Error,
    },
    #[error("more than {MAX_SEGMENTS} concatenated segments; refusing to read further")]
    TooManySegments,
}

pub type Result<T> = std::result::Result<T, Error>;

/// One concatenated piece of the initramfs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Segment {
    /// File offset where the segment starts.
    pub offset: u64,
    /// Bytes the segment occupies in the file (compressed size).
    pub length: u64,
    /// `None` for a plain cpio archive.
    pub compression: Option<Compression>,
    /// Number of cpio entries (trailers not counted); `None` when this tool
    /// cannot decompress the segment.
    pub entries: Option<usize>,
    pub first_entries: Vec<String>,
    /// Early microcode files in this segment.
    pub microcode: Vec<String>,
}

/// Where early microcode was found and whether the kernel will see it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Microcode {
    pub present: bool,
    /// Files found, e.g. `kernel/x86/microcode/GenuineIntel.bin`.
    pub files: Vec<String>,
    /// Index of the first segment holding microcode.
    pub segment: Option<usize>,
    pub in_first_segment: bool,
    pub uncompressed: bool,
    /// The early loader will find it: it sits in the leading run of
    /// uncompressed archives.
    pub loadable_early: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct InitramfsReport {
    pub segments: Vec<Segment>,
    /// Sum over the segments that could be read.
    pub total_entries: usize,
    pub microcode: Microcode,
    /// Set when early microcode is present but will not be loaded.
    pub microcode_problem: Option<MicrocodeProblem>,
}

/// Early microcode the kernel will not load, and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, thiserror::Error)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum MicrocodeProblem {
    #[error("early CPU microcode ({file}) is in segment {segment}, which is {compression}-compressed: the kernel only loads early microcode from an uncompressed cpio at the start of the initrd; put an uncompressed microcode cpio first (e.g. pass it as the first initrd)")]
    Compressed {
        file: String,
        segment: usize,
        compression: Compression,
    },
    #[error("early CPU microcode ({file}) is in segment {segment}, after a compressed segment: the kernel stops looking for early microcode at the first compressed segment; move the microcode cpio to the front of the initrd")]
    NotFirst { file: String, segment: usize },
}

/// Reads the segments of an initramfs.
pub fn parse(b: &[u8]) -> Result<InitramfsReport> {
    if b.iter().all(|&c| c == 0) {
        return Err(Error::Empty);
    }
    let mut segments = Vec::new();
    let mut off = 0usize;
    while off < b.len() {
        if b[off] == 0 {
            off += 1;
            continue;
        }
        if segments.len() == MAX_SEGMENTS {
            return Err(Error::TooManySegments);
        }
        let index = segments.len();
        let rest = &b[off..];
        if cpio::is_newc(rest) {
            let archive = cpio::read_archive(b, off, usize::MAX).map_err(|source| Error::Cpio {
                segment: index,
                offset: off,
                source,
            })?;
            segments.push(segment_from(
                off as u64,
                (archive.end - off) as u64,
                None,
                Some(&archive.entries),
            ));
            off = archive.end;
            continue;
        }
        let Some(format) = Compression::from_magic(rest) else {
            return Err(Error::BadMagic { offset: off });
        };
        match compression::decompress_stream(format, rest, MAX_DECOMPRESSED) {
            Ok(d) => {
                let entries = read_archives(&d.data).map_err(|source| Error::Cpio {
                    segment: index,
                    offset: off,
                    source,
                })?;
                segments.push(segment_from(
                    off as u64,
                    d.consumed as u64,
                    Some(format),
                    Some(&entries),
                ));
                off += d.consumed.max(1);
            }
            Err(compression::Error::Unsupported { .. }) => {
                // The stream's end is unknown without decoding it: the rest
                // of the file is this segment.
                segments.push(segment_from(
                    off as u64,
                    rest.len() as u64,
                    Some(format),
                    None,
                ));
                break;
            }
            Err(source) => {
                return Err(Error::Decompress {
                    segment: index,
                    offset: off,
                    source,
                })
            }
        }
    }
    let total_entries = segments.iter().filter_map(|s| s.entries).sum();
    let microcode = microcode_facts(&segments);
    let microcode_problem = problem_of(&segments);
    Ok(InitramfsReport {
        segments,
        total_entries,
        microcode,
        microcode_problem,
    })
}

/// All archives in a decompressed stream (several may be concatenated
/// inside one compressed segment, separated by NUL padding).
fn read_archives(data: &[u8]) -> std::result::Result<Vec<cpio::Entry>, cpio::Error> {
    let mut entries = Vec::new();
    let mut off = 0;
    while off < data.len() {
        if data[off] == 0 {
            off += 1;
            continue;
        }
        let a = cpio::read_archive(data, off, usize::MAX)?;
        entries.extend(a.entries);
        off = a.end.max(off + 1);
    }
    Ok(entries)
}

fn segment_from(
    offset: u64,
    length: u64,
    compression: Option<Compression>,
    entries: Option<&[cpio::Entry]>,
) -> Segment {
    let list = entries.unwrap_or_default();
    Segment {
        offset,
        length,
        compression,
        entries: entries.map(<[cpio::Entry]>::len),
        first_entries: list
            .iter()
            .take(FIRST_ENTRIES)
            .map(|e| e.name.clone())
            .collect(),
        microcode: list
            .iter()
            .filter(|e| MICROCODE_PATHS.contains(&e.name.as_str()))
            .map(|e| e.name.clone())
            .collect(),
    }
}

fn microcode_facts(segments: &[Segment]) -> Microcode {
    let files: Vec<String> = segments
        .iter()
        .flat_map(|s| s.microcode.iter().cloned())
        .collect();
    let segment = segments.iter().position(|s| !s.microcode.is_empty());
    let leading_plain = segments
        .iter()
        .take_while(|s| s.compression.is_none())
        .count();
    Microcode {
        present: !files.is_empty(),
        files,
        segment,
        in_first_segment: segment == Some(0),
        uncompressed: segment.is_some_and(|i| segments[i].compression.is_none()),
        loadable_early: segments
            .iter()
            .take(leading_plain)
            .any(|s| !s.microcode.is_empty()),
    }
}

fn problem_of(segments: &[Segment]) -> Option<MicrocodeProblem> {
    let leading_plain = segments
        .iter()
        .take_while(|s| s.compression.is_none())
        .count();
    if segments
        .iter()
        .take(leading_plain)
        .any(|s| !s.microcode.is_empty())
    {
        return None;
    }
    let (index, seg) = segments
        .iter()
        .enumerate()
        .find(|(_, s)| !s.microcode.is_empty())?;
    let file = seg.microcode.first().cloned().unwrap_or_default();
    Some(match seg.compression {
        Some(compression) => MicrocodeProblem::Compressed {
            file,
            segment: index,
            compression,
        },
        None => MicrocodeProblem::NotFirst {
            file,
            segment: index,
        },
    })
}

/// The problem with early microcode in this initramfs, if any: the check
/// the CLI runs when it is handed (or concatenates) initrds.
///
/// ```
/// use kexec::image::{cpio, initramfs};
///
/// let ucode = cpio::build_newc(&[("kernel/x86/microcode/GenuineIntel.bin", b"..")]);
/// let rest = cpio::build_newc(&[("init", b"#!/bin/sh\n")]);
/// let good = initramfs::parse(&initramfs::concatenate(&[&ucode, &rest])).unwrap();
/// assert!(initramfs::microcode_problem(&good).is_none());
/// ```
pub fn microcode_problem(report: &InitramfsReport) -> Option<MicrocodeProblem> {
    report.microcode_problem.clone()
}

/// Concatenates initrds the way the kernel expects several archives in one
/// initrd: each part starts 4-byte aligned (cpio headers must be).
pub fn concatenate(parts: &[&[u8]]) -> Vec<u8> {
    let mut out = Vec::with_capacity(parts.iter().map(|p| p.len() + 3).sum());
    for p in parts {
        out.resize(out.len().div_ceil(4) * 4, 0);
        out.extend_from_slice(p);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn gzip(data: &[u8]) -> Vec<u8> {
        let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
        e.write_all(data).unwrap();
        e.finish().unwrap()
    }
    fn ucode() -> Vec<u8> {
        cpio::build_newc(&[
            ("kernel", b""),
            ("kernel/x86", b""),
            ("kernel/x86/microcode", b""),
            (MICROCODE_PATHS[0], b"\x01\x00\x00\x00ucode"),
        ])
    }
    fn main_archive() -> Vec<u8> {
        cpio::build_newc(&[("init", b"#!/bin/sh\nexec sh\n"), ("bin", b"")])
    }

    #[test]
    fn microcode_first_and_plain_is_fine() {
        let img = concatenate(&[&ucode(), &gzip(&main_archive())]);
        let r = parse(&img).unwrap();
        assert_eq!(r.segments.len(), 2);
        assert_eq!(r.segments[1].compression, Some(Compression::Gzip));
        assert_eq!(r.segments[1].entries, Some(2));
        assert_eq!(r.total_entries, 6);
        assert!(
            r.microcode.loadable_early && r.microcode.in_first_segment && r.microcode.uncompressed
        );
        assert_eq!(microcode_problem(&r), None);
    }

    #[test]
    fn compressed_microcode_is_a_problem() {
        let img = concatenate(&[&gzip(&ucode()), &gzip(&main_archive())]);
        let r = parse(&img).unwrap();
        let p = microcode_problem(&r).unwrap();
        assert!(
            matches!(p, MicrocodeProblem::Compressed { segment: 0, .. }),
            "{p}"
        );
        assert!(p.to_string().contains("uncompressed"));
    }

    #[test]
    fn microcode_after_compressed_segment_is_a_problem() {
        let img = concatenate(&[&gzip(&main_archive()), &ucode()]);
        let r = parse(&img).unwrap();
        assert!(matches!(
            microcode_problem(&r),
            Some(MicrocodeProblem::NotFirst { segment: 1, .. })
        ));
    }

    #[test]
    fn garbage_after_an_archive_is_bad_magic() {
        let mut img = main_archive();
        img.extend_from_slice(b"garbage!");
        assert!(matches!(parse(&img), Err(Error::BadMagic { .. })));
    }

    #[test]
    fn every_truncation_returns() {
        let img = concatenate(&[&ucode(), &gzip(&main_archive())]);
        for len in 0..img.len() {
            let _ = parse(&img[..len]);
        }
        assert!(parse(&img[..100]).is_err());
    }
}
