//! PE/COFF headers, as found in front of an EFI-stub kernel (x86 bzImage,
//! arm64 Image, zboot) and in unified kernel images.
//!
//! Only the headers and the section table are read (through `goblin`): a
//! kernel's PE header is a thin wrapper whose import/export directories are
//! empty, and a loader only needs the entry point, the sections and whether
//! an Authenticode signature is attached (what `kexec_file_load` checks when
//! the kernel enforces signatures).

use serde::Serialize;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum Error {
    #[error("file is {len} bytes, too short for a PE header")]
    TooShort { len: usize },
    #[error("no \"MZ\" DOS header at offset 0: not a PE/EFI executable")]
    NoMz,
    #[error("PE header is malformed: {0}")]
    Malformed(String),
    #[error("the {name} section claims {size} bytes at offset {offset:#x}, past the end of the {len}-byte file (truncated image?)")]
    SectionPastEnd {
        name: String,
        offset: u64,
        size: u64,
        len: usize,
    },
}

pub type Result<T> = std::result::Result<T, Error>;

/// A section as the PE section table declares it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Section {
    pub name: String,
    pub virtual_address: u32,
    pub virtual_size: u32,
    pub file_offset: u32,
    pub file_size: u32,
}

impl Section {
    /// File byte range of the section's contents: the raw data, but no more
    /// than the virtual size (the raw size is padded to the file alignment,
    /// the virtual size is what the producer wrote, e.g. `ukify`).
    pub fn content_range(&self) -> std::ops::Range<usize> {
        let start = self.file_offset as usize;
        let len = if self.virtual_size == 0 {
            self.file_size
        } else {
            self.virtual_size.min(self.file_size)
        };
        start..start + len as usize
    }
}

/// What a kernel loader wants to know about a PE image.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PeInfo {
    /// COFF machine, e.g. "x86_64" or "aarch64" (hex for anything else).
    pub machine: String,
    /// PE32+ (64-bit optional header).
    pub pe32_plus: bool,
    /// Entry point RVA.
    pub entry: u32,
    #[serde(with = "super::hex")]
    pub image_base: u64,
    pub size_of_image: u32,
    pub sections: Vec<Section>,
    /// Size of the attribute certificate table (the security data
    /// directory); non-zero means an Authenticode signature is attached.
    pub certificate_table_size: u32,
    pub signed: bool,
}

impl PeInfo {
    pub fn section(&self, name: &str) -> Option<&Section> {
        self.sections.iter().find(|s| s.name == name)
    }
}

fn machine_name(m: u16) -> String {
    use goblin::pe::header::*;
    match m {
        COFF_MACHINE_X86_64 => "x86_64".into(),
        COFF_MACHINE_X86 => "i386".into(),
        COFF_MACHINE_ARM64 => "aarch64".into(),
        COFF_MACHINE_ARMNT => "arm".into(),
        COFF_MACHINE_RISCV64 => "riscv64".into(),
        COFF_MACHINE_LOONGARCH64 => "loongarch64".into(),
        other => format!("{other:#06x}"),
    }
}

/// True when the file starts with a DOS header whose PE pointer leads to a
/// `PE\0\0` signature; cheap enough for format detection.
pub fn has_pe_header(b: &[u8]) -> bool {
    if !b.starts_with(b"MZ") {
        return false;
    }
    let Some(ptr) = b.get(0x3c..0x40) else {
        return false;
    };
    let ptr = u32::from_le_bytes([ptr[0], ptr[1], ptr[2], ptr[3]]) as usize;
    b.get(ptr..ptr.saturating_add(4)) == Some(b"PE\0\0")
}

/// Parses the PE headers and section table. Sections must lie inside the
/// file (a truncated image is an error, not a short section).
pub fn parse(b: &[u8]) -> Result<PeInfo> {
    if b.len() < 0x40 {
        return Err(Error::TooShort { len: b.len() });
    }
    if !b.starts_with(b"MZ") {
        return Err(Error::NoMz);
    }
    // goblin's full parser insists on a DOS stub between the DOS header and
    // the PE signature; kernels put the signature right at 0x40 with no
    // stub, so read the COFF and optional headers from the signature on.
    let ptr = u32::from_le_bytes([b[0x3c], b[0x3d], b[0x3e], b[0x3f]]) as usize;
    let from_pe = b
        .get(ptr..)
        .filter(|r| r.starts_with(b"PE\0\0"))
        .ok_or_else(|| {
            Error::Malformed(format!(
                "no PE signature at the offset {ptr:#x} given at 0x3c"
            ))
        })?;
    let mut offset = 4;
    let coff = goblin::pe::header::CoffHeader::parse(from_pe, &mut offset)
        .map_err(|e| Error::Malformed(format!("COFF header: {e}")))?;
    if coff.size_of_optional_header == 0 {
        return Err(Error::Malformed(
            "no optional header (a COFF object, not an executable)".into(),
        ));
    }
    let opt: goblin::pe::optional_header::OptionalHeader = scroll::Pread::pread(from_pe, offset)
        .map_err(|e: goblin::error::Error| Error::Malformed(format!("optional header: {e}")))?;
    let mut offset = (4 + goblin::pe::header::SIZEOF_COFF_HEADER)
        .saturating_add(coff.size_of_optional_header as usize);
    let table = coff
        .sections(from_pe, &mut offset)
        .map_err(|e| Error::Malformed(format!("section table: {e}")))?;
    let mut sections = Vec::with_capacity(table.len());
    for s in &table {
        let name = match &s.real_name {
            Some(n) => n.clone(),
            None => String::from_utf8_lossy(&s.name)
                .trim_end_matches('\0')
                .to_string(),
        };
        let end = s.pointer_to_raw_data as u64 + s.size_of_raw_data as u64;
        if s.size_of_raw_data != 0 && end > b.len() as u64 {
            return Err(Error::SectionPastEnd {
                name,
                offset: s.pointer_to_raw_data as u64,
                size: s.size_of_raw_data as u64,
                len: b.len(),
            });
        }
        sections.push(Section {
            name,
            virtual_address: s.virtual_address,
            virtual_size: s.virtual_size,
            file_offset: s.pointer_to_raw_data,
            file_size: s.size_of_raw_data,
        });
    }
    let cert = opt
        .data_directories
        .get_certificate_table()
        .map(|d| d.size)
        .unwrap_or(0);
    Ok(PeInfo {
        machine: machine_name(coff.machine),
        pe32_plus: opt.standard_fields.magic == goblin::pe::optional_header::MAGIC_64,
        entry: opt.standard_fields.address_of_entry_point as u32,
        image_base: opt.windows_fields.image_base,
        size_of_image: opt.windows_fields.size_of_image,
        sections,
        certificate_table_size: cert,
        signed: cert != 0,
    })
}

/// Fixture and test helper: a minimal PE32+ header at `pe_offset` with the
/// given sections, written into `b` (which must be large enough).
pub fn write_pe_header(
    b: &mut [u8],
    pe_offset: usize,
    machine: u16,
    entry: u32,
    sections: &[(&str, u32, u32, u32, u32)],
) {
    let put16 = |b: &mut [u8], o: usize, v: u16| b[o..o + 2].copy_from_slice(&v.to_le_bytes());
    let put32 = |b: &mut [u8], o: usize, v: u32| b[o..o + 4].copy_from_slice(&v.to_le_bytes());
    b[0..2].copy_from_slice(b"MZ");
    put32(b, 0x3c, pe_offset as u32);
    // Clear what the header and section table will occupy: fields not
    // written below (data directories, reserved words) must read as zero.
    let end = pe_offset + 4 + 20 + 240 + 40 * sections.len();
    b[pe_offset..end].fill(0);
    let p = pe_offset;
    b[p..p + 4].copy_from_slice(b"PE\0\0");
    let coff = p + 4;
    put16(b, coff, machine);
    put16(b, coff + 2, sections.len() as u16);
    let opt_size: u16 = 112 + 16 * 8;
    put16(b, coff + 16, opt_size);
    put16(b, coff + 18, 0x0206); // executable image, line numbers stripped, debug stripped
    let opt = coff + 20;
    put16(b, opt, 0x20b); // PE32+
    put32(b, opt + 16, entry);
    put32(b, opt + 32, 0x1000); // section alignment
    put32(b, opt + 36, 0x200); // file alignment
    let image_size = sections.iter().map(|s| s.1 + s.2).max().unwrap_or(0x1000);
    put32(b, opt + 56, image_size);
    put32(b, opt + 60, 0x200); // size of headers
    put16(b, opt + 68, 10); // subsystem: EFI application
    put32(b, opt + 108, 16); // number of data directories
    let mut s = opt + opt_size as usize;
    for &(name, vaddr, vsize, foff, fsize) in sections {
        let mut n = [0u8; 8];
        let len = name.len().min(8);
        n[..len].copy_from_slice(&name.as_bytes()[..len]);
        b[s..s + 8].copy_from_slice(&n);
        put32(b, s + 8, vsize);
        put32(b, s + 12, vaddr);
        put32(b, s + 16, fsize);
        put32(b, s + 20, foff);
        put32(b, s + 36, 0x6000_0020);
        s += 40;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Vec<u8> {
        let mut b = vec![0u8; 0x1000];
        write_pe_header(
            &mut b,
            0x80,
            goblin::pe::header::COFF_MACHINE_X86_64,
            0x400,
            &[
                (".text", 0x400, 0x100, 0x400, 0x200),
                (".data", 0x800, 0x10, 0x800, 0x200),
            ],
        );
        b
    }

    #[test]
    fn parses_written_header() {
        let b = sample();
        assert!(has_pe_header(&b));
        let pe = parse(&b).unwrap();
        assert_eq!(pe.machine, "x86_64");
        assert_eq!(pe.entry, 0x400);
        assert!(!pe.signed);
        assert_eq!(pe.sections.len(), 2);
        assert_eq!(pe.section(".data").unwrap().content_range(), 0x800..0x810);
    }

    #[test]
    fn every_truncation_returns() {
        let b = sample();
        for len in 0..b.len() {
            let r = parse(&b[..len]);
            if len < 0xa00 {
                assert!(r.is_err(), "len {len}");
            }
        }
    }
}
