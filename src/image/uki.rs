//! Unified kernel images (UKI): an EFI stub PE whose sections carry the
//! kernel (`.linux`), initrd (`.initrd`), command line (`.cmdline`) and
//! identity (`.osrel`, `.uname`), as built by systemd's `ukify`.
//!
//! kexec-tools 2.0.30 and later load a UKI by taking those sections apart;
//! this module finds them so the CLI can do the same: the byte ranges of
//! `.linux` and `.initrd` and the command line text.

use std::ops::Range;

use serde::Serialize;

use super::pe::{self, PeInfo};

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum Error {
    #[error("{0}")]
    Pe(#[from] pe::Error),
    #[error("PE file has no .linux section: not a unified kernel image")]
    NoLinuxSection,
    #[error("the .linux section is empty")]
    EmptyLinux,
}

pub type Result<T> = std::result::Result<T, Error>;

/// A file byte range, as serialised in reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct ByteRange {
    pub offset: u64,
    pub size: u64,
}

impl ByteRange {
    pub fn range(&self) -> Range<usize> {
        self.offset as usize..(self.offset + self.size) as usize
    }
}

impl From<Range<usize>> for ByteRange {
    fn from(r: Range<usize>) -> Self {
        ByteRange {
            offset: r.start as u64,
            size: (r.end - r.start) as u64,
        }
    }
}

/// The parts of a UKI a loader needs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Uki {
    pub pe: PeInfo,
    pub linux: ByteRange,
    pub initrd: Option<ByteRange>,
    /// `.cmdline` text, trailing NULs and newlines removed.
    pub cmdline: Option<String>,
    /// `PRETTY_NAME` from `.osrel` (or its `NAME`).
    pub os_pretty_name: Option<String>,
    /// `.uname`: the embedded kernel's `uname -r`.
    pub uname: Option<String>,
}

fn text(b: &[u8]) -> String {
    let t = b.split(|&c| c == 0).next().unwrap_or_default();
    String::from_utf8_lossy(t).trim_end().to_string()
}

fn os_release_value(osrel: &str, key: &str) -> Option<String> {
    osrel.lines().find_map(|l| {
        let v = l.strip_prefix(key)?.strip_prefix('=')?;
        Some(v.trim_matches(|c| c == '"' || c == '\'').to_string())
    })
}

/// True when `b` is a PE file with a `.linux` section.
pub fn is_uki(b: &[u8]) -> bool {
    pe::has_pe_header(b) && pe::parse(b).is_ok_and(|p| p.section(".linux").is_some())
}

pub fn parse(b: &[u8]) -> Result<Uki> {
    let pe = pe::parse(b)?;
    let content = |name: &str| pe.section(name).map(|s| s.content_range());
    let linux = content(".linux").ok_or(Error::NoLinuxSection)?;
    if linux.is_empty() {
        return Err(Error::EmptyLinux);
    }
    // pe::parse checked every section's raw data against the file size.
    let slice = |r: &Range<usize>| b.get(r.clone()).unwrap_or_default();
    let cmdline = content(".cmdline").map(|r| text(slice(&r)));
    let osrel = content(".osrel").map(|r| text(slice(&r)));
    let os_pretty_name = osrel
        .as_deref()
        .and_then(|o| os_release_value(o, "PRETTY_NAME").or_else(|| os_release_value(o, "NAME")));
    let uname = content(".uname").map(|r| text(slice(&r)));
    let initrd = content(".initrd")
        .filter(|r| !r.is_empty())
        .map(ByteRange::from);
    Ok(Uki {
        linux: linux.into(),
        initrd,
        cmdline,
        os_pretty_name,
        uname,
        pe,
    })
}

/// Fixture and test helper: a UKI-shaped PE with the given sections, each
/// placed at a 512-byte aligned file offset.
pub fn build(sections: &[(&str, &[u8])]) -> Vec<u8> {
    let mut b = vec![0u8; 0x400];
    let mut table = Vec::new();
    let mut vaddr = 0x1000u32;
    for (name, data) in sections {
        let off = b.len();
        let padded = data.len().div_ceil(0x200) * 0x200;
        b.extend_from_slice(data);
        b.resize(off + padded, 0);
        table.push((*name, vaddr, data.len() as u32, off as u32, padded as u32));
        vaddr += (data.len() as u32).div_ceil(0x1000).max(1) * 0x1000;
    }
    pe::write_pe_header(
        &mut b,
        0x80,
        goblin::pe::header::COFF_MACHINE_X86_64,
        0x1000,
        &table,
    );
    b
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_sections() {
        let b = build(&[
            (".osrel", b"NAME=Test\nPRETTY_NAME=\"Test OS 1\"\n"),
            (".cmdline", b"console=ttyS0 quiet\n\0"),
            (".uname", b"6.6.0-test\n"),
            (".linux", b"KERNEL"),
            (".initrd", b"INITRD"),
        ]);
        let u = parse(&b).unwrap();
        assert_eq!(u.cmdline.as_deref(), Some("console=ttyS0 quiet"));
        assert_eq!(u.os_pretty_name.as_deref(), Some("Test OS 1"));
        assert_eq!(u.uname.as_deref(), Some("6.6.0-test"));
        assert_eq!(&b[u.linux.range()], b"KERNEL");
        assert_eq!(&b[u.initrd.unwrap().range()], b"INITRD");
    }

    #[test]
    fn plain_pe_is_not_a_uki() {
        let b = build(&[(".text", b"code")]);
        assert!(!is_uki(&b));
        assert_eq!(parse(&b), Err(Error::NoLinuxSection));
    }

    #[test]
    fn every_truncation_is_an_error() {
        let b = build(&[(".linux", b"KERNEL"), (".initrd", b"INITRD")]);
        for len in 0..b.len() {
            assert!(parse(&b[..len]).is_err(), "len {len}");
        }
    }
}
