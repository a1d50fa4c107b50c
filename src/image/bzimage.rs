//! x86 bzImage: the real-mode setup header of the Linux boot protocol.
//!
//! Field names and offsets follow `Documentation/arch/x86/boot.rst`; offsets
//! are from the start of the file (which is also the start of `boot_params`,
//! the "zero page", since the header is copied there verbatim by loaders).

use serde::Serialize;

use super::compression::Compression;
use super::pe::PeInfo;

/// Offset of the setup header inside the file and inside `boot_params`.
pub const SETUP_HEADER_OFFSET: usize = 0x1f1;
/// `HdrS`, little-endian, at 0x202.
pub const HDRS_MAGIC: u32 = 0x5372_6448;
/// `xloadflags` bits.
pub const XLF_KERNEL_64: u16 = 1 << 0;
pub const XLF_CAN_BE_LOADED_ABOVE_4G: u16 = 1 << 1;
pub const XLF_EFI_HANDOVER_32: u16 = 1 << 2;
pub const XLF_EFI_HANDOVER_64: u16 = 1 << 3;
pub const XLF_EFI_KEXEC: u16 = 1 << 4;
pub const XLF_5LEVEL: u16 = 1 << 5;
pub const XLF_5LEVEL_ENABLED: u16 = 1 << 6;
/// `loadflags` bit 0: the protected-mode code is loaded at 0x100000.
pub const LOADED_HIGH: u8 = 1 << 0;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum Error {
    #[error("file is {len} bytes, too short for an x86 boot sector and setup header (need at least {need})")]
    TooShort { len: usize, need: usize },
    #[error("no boot sector signature 0xAA55 at offset 0x1fe: not an x86 bzImage")]
    NoBootSignature,
    #[error("no \"HdrS\" magic at offset 0x202: not an x86 bzImage (or a pre-2.00 zImage)")]
    NoHdrS,
    #[error("setup_sects={setup_sects} puts the protected-mode kernel at offset {offset:#x}, past the end of the {len}-byte file (truncated image?)")]
    SetupPastEnd {
        setup_sects: u8,
        offset: usize,
        len: usize,
    },
    #[error("syssize says the protected-mode kernel ends at offset {end:#x}, but the file is only {len} bytes (truncated image?)")]
    Truncated { end: u64, len: usize },
    #[error("payload_offset/payload_length put the compressed kernel at {start:#x}..{end:#x}, outside the {len}-byte file (corrupt header or truncated image)")]
    PayloadPastEnd { start: u64, end: u64, len: usize },
    #[error(
        "kernel_version_offset points at {offset:#x}, outside the setup area (corrupt header)"
    )]
    VersionPastEnd { offset: u64 },
    #[error("kernel_info_offset points at {offset:#x}, outside the file or without the \"LToP\" magic (corrupt header)")]
    BadKernelInfo { offset: u64 },
    #[error("the EFI stub's PE header is broken: {0}")]
    Pe(#[from] super::pe::Error),
    #[error("the kernel has no compressed payload (boot protocol before 2.08)")]
    NoPayload,
    #[error("the payload's compression is not recognised")]
    UnknownPayloadCompression,
    #[error("cannot decompress the payload: {0}")]
    Payload(#[from] super::compression::Error),
}

pub type Result<T> = std::result::Result<T, Error>;

/// The setup header, parsed. Fields present only from a given protocol
/// version are `Option`s so that an old kernel is reported faithfully.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SetupHeader {
    /// Boot protocol version, e.g. 0x020f for 2.15.
    pub version: u16,
    /// Number of 512-byte setup sectors after the boot sector (0 means 4).
    pub setup_sects: u8,
    pub root_flags: u16,
    /// Size of the protected-mode code in 16-byte paragraphs.
    pub syssize: u32,
    pub vid_mode: u16,
    pub root_dev: u16,
    pub jump: u16,
    pub kernel_version_offset: u16,
    pub type_of_loader: u8,
    pub loadflags: u8,
    pub code32_start: u32,
    pub ramdisk_image: u32,
    pub ramdisk_size: u32,
    /// 2.03+: highest address an initrd may end at.
    pub initrd_addr_max: Option<u32>,
    /// 2.05+: alignment the kernel must be loaded at if relocated.
    pub kernel_alignment: Option<u32>,
    pub relocatable_kernel: Option<bool>,
    pub min_alignment: Option<u8>,
    /// 2.12+.
    pub xloadflags: Option<u16>,
    /// 2.06+: longest command line the kernel accepts, without the NUL.
    pub cmdline_size: Option<u32>,
    pub hardware_subarch: Option<u32>,
    /// 2.08+: offset and length of the compressed payload, from the start
    /// of the protected-mode code.
    pub payload_offset: Option<u32>,
    pub payload_length: Option<u32>,
    #[serde(with = "super::hex::option")]
    pub setup_data: Option<u64>,
    /// 2.10+.
    #[serde(with = "super::hex::option")]
    pub pref_address: Option<u64>,
    /// 2.10+: memory the kernel needs from its load address while it
    /// decompresses itself; what a loader must reserve.
    pub init_size: Option<u32>,
    /// 2.11+.
    pub handover_offset: Option<u32>,
    /// 2.15+: offset of `kernel_info` from the start of the protected-mode code.
    pub kernel_info_offset: Option<u32>,
}

fn u8_at(b: &[u8], off: usize) -> u8 {
    b.get(off).copied().unwrap_or(0)
}
fn u16_at(b: &[u8], off: usize) -> u16 {
    u16::from_le_bytes([u8_at(b, off), u8_at(b, off + 1)])
}
fn u32_at(b: &[u8], off: usize) -> u32 {
    u32::from_le_bytes([
        u8_at(b, off),
        u8_at(b, off + 1),
        u8_at(b, off + 2),
        u8_at(b, off + 3),
    ])
}
fn u64_at(b: &[u8], off: usize) -> u64 {
    u32_at(b, off) as u64 | (u32_at(b, off + 4) as u64) << 32
}

impl SetupHeader {
    /// Smallest file that can hold the fields this parser reads.
    pub const MIN_LEN: usize = 0x270;

    /// Parses the header; fails unless both the boot-sector signature and the
    /// `HdrS` magic are present and the setup sectors fit in the file.
    pub fn parse(b: &[u8]) -> Result<Self> {
        if b.len() < 0x206 {
            return Err(Error::TooShort {
                len: b.len(),
                need: 0x206,
            });
        }
        if u32_at(b, 0x202) != HDRS_MAGIC {
            return Err(Error::NoHdrS);
        }
        if u16_at(b, 0x1fe) != 0xaa55 {
            return Err(Error::NoBootSignature);
        }
        let version = u16_at(b, 0x206);
        let at_least = |v: u16| version >= v;
        let h = SetupHeader {
            version,
            setup_sects: u8_at(b, 0x1f1),
            root_flags: u16_at(b, 0x1f2),
            syssize: u32_at(b, 0x1f4),
            vid_mode: u16_at(b, 0x1fa),
            root_dev: u16_at(b, 0x1fc),
            jump: u16_at(b, 0x200),
            kernel_version_offset: u16_at(b, 0x20e),
            type_of_loader: u8_at(b, 0x210),
            loadflags: u8_at(b, 0x211),
            code32_start: u32_at(b, 0x214),
            ramdisk_image: u32_at(b, 0x218),
            ramdisk_size: u32_at(b, 0x21c),
            initrd_addr_max: at_least(0x0203).then(|| u32_at(b, 0x22c)),
            kernel_alignment: at_least(0x0205).then(|| u32_at(b, 0x230)),
            relocatable_kernel: at_least(0x0205).then(|| u8_at(b, 0x234) != 0),
            min_alignment: at_least(0x020a).then(|| u8_at(b, 0x235)),
            xloadflags: at_least(0x020c).then(|| u16_at(b, 0x236)),
            cmdline_size: at_least(0x0206).then(|| u32_at(b, 0x238)),
            hardware_subarch: at_least(0x0207).then(|| u32_at(b, 0x23c)),
            payload_offset: at_least(0x0208).then(|| u32_at(b, 0x248)),
            payload_length: at_least(0x0208).then(|| u32_at(b, 0x24c)),
            setup_data: at_least(0x0209).then(|| u64_at(b, 0x250)),
            pref_address: at_least(0x020a).then(|| u64_at(b, 0x258)),
            init_size: at_least(0x020a).then(|| u32_at(b, 0x260)),
            handover_offset: at_least(0x020b).then(|| u32_at(b, 0x264)),
            kernel_info_offset: at_least(0x020f).then(|| u32_at(b, 0x268)),
        };
        let offset = h.protected_mode_offset();
        if offset > b.len() {
            return Err(Error::SetupPastEnd {
                setup_sects: h.setup_sects,
                offset,
                len: b.len(),
            });
        }
        Ok(h)
    }

    /// File offset of the protected-mode kernel: after the boot sector and
    /// the setup sectors (`setup_sects == 0` means 4, for old kernels).
    pub fn protected_mode_offset(&self) -> usize {
        let sects = if self.setup_sects == 0 {
            4
        } else {
            self.setup_sects as usize
        };
        (sects + 1) * 512
    }

    /// Length of the setup header as the kernel defines it: from 0x1f1 up
    /// to 0x202 plus the byte at 0x201 (the jump's displacement). This is
    /// how much a loader copies into the zero page.
    pub fn header_len(file: &[u8]) -> usize {
        (0x202 + u8_at(file, 0x201) as usize).saturating_sub(SETUP_HEADER_OFFSET)
    }

    pub fn xloadflag(&self, bit: u16) -> bool {
        self.xloadflags.unwrap_or(0) & bit != 0
    }
}

/// `kernel_info` (protocol 2.15+): a variable-length block in the
/// protected-mode code, for fields that no longer fit in the setup header.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct KernelInfo {
    /// Size of the fixed part.
    pub size: u32,
    /// Size including the variable part.
    pub size_total: u32,
    /// Highest `setup_data` type this kernel understands.
    pub setup_type_max: u32,
}

/// The compressed kernel inside a bzImage.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Payload {
    /// File offset of the payload.
    pub offset: u64,
    pub length: u32,
    /// `None` when no known magic was found (reported as "unknown").
    pub compression: Option<Compression>,
    /// The payload is an uncompressed ELF (`CONFIG_KERNEL_UNCOMPRESSED`).
    pub uncompressed_elf: bool,
}

/// Everything this crate reads from a bzImage.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct BzImage {
    /// Boot protocol version as text, e.g. "2.15" (`header.version` is the
    /// raw 0x020f).
    pub protocol: String,
    pub header: SetupHeader,
    /// "6.1.0-56-cloud-amd64 (debian-kernel@…) #1 SMP … Debian 6.1.192-2 (…)".
    pub kernel_version: Option<String>,
    pub payload: Option<Payload>,
    pub kernel_info: Option<KernelInfo>,
    /// The PE header of the EFI stub, when the file starts with `MZ`.
    pub efi_stub: Option<PeInfo>,
}

/// Longest version string read; the kernel's is well under 256 bytes.
const MAX_VERSION_LEN: usize = 512;

impl BzImage {
    /// Parses a bzImage and checks that the sizes its header declares fit in
    /// the file: a truncated download or a header with lying sizes is an
    /// error here rather than a mysterious failure after `kexec -e`.
    pub fn parse(b: &[u8]) -> Result<Self> {
        let header = SetupHeader::parse(b)?;
        let pm = header.protected_mode_offset() as u64;
        let len = b.len();
        // Before 2.04 syssize is 16 bits wide; the rest is unrelated data.
        let syssize = if header.version >= 0x0204 {
            header.syssize as u64
        } else {
            header.syssize as u64 & 0xffff
        };
        let end = pm + syssize * 16;
        if end > len as u64 {
            return Err(Error::Truncated { end, len });
        }
        let kernel_version = if header.kernel_version_offset != 0 {
            let offset = header.kernel_version_offset as u64 + 0x200;
            if offset >= pm {
                return Err(Error::VersionPastEnd { offset });
            }
            let start = offset as usize;
            let tail = &b[start..(start + MAX_VERSION_LEN).min(pm as usize)];
            let text = tail.split(|&c| c == 0).next().unwrap_or_default();
            Some(String::from_utf8_lossy(text).into_owned())
        } else {
            None
        };
        let payload = match (header.payload_offset, header.payload_length) {
            (Some(off), Some(length)) if length != 0 => {
                let start = pm + off as u64;
                let end = start + length as u64;
                if end > len as u64 {
                    return Err(Error::PayloadPastEnd { start, end, len });
                }
                let data = &b[start as usize..end as usize];
                Some(Payload {
                    offset: start,
                    length,
                    compression: Compression::from_magic(data),
                    uncompressed_elf: data.starts_with(b"\x7fELF"),
                })
            }
            _ => None,
        };
        let kernel_info = match header.kernel_info_offset {
            Some(off) if off != 0 => {
                let offset = pm + off as u64;
                let at = |i: u64| -> Option<u32> {
                    let o = usize::try_from(offset + i).ok()?;
                    let w = b.get(o..o.checked_add(4)?)?;
                    Some(u32::from_le_bytes([w[0], w[1], w[2], w[3]]))
                };
                match (at(0), at(4), at(8), at(12)) {
                    (Some(0x506f_544c), Some(size), Some(size_total), Some(setup_type_max)) => {
                        Some(KernelInfo {
                            size,
                            size_total,
                            setup_type_max,
                        })
                    }
                    _ => return Err(Error::BadKernelInfo { offset }),
                }
            }
            _ => None,
        };
        let efi_stub = if b.starts_with(b"MZ") && super::pe::has_pe_header(b) {
            Some(super::pe::parse(b)?)
        } else {
            None
        };
        Ok(BzImage {
            protocol: format!("{}.{:02}", header.version >> 8, header.version & 0xff),
            header,
            kernel_version,
            payload,
            kernel_info,
            efi_stub,
        })
    }
}

impl BzImage {
    /// Decompresses the payload: the kernel's own `vmlinux` (an ELF file,
    /// symbols stripped), for gzip, xz, zstd, lz4 and lzma payloads. Not part of
    /// [`BzImage::parse`] because it costs a second or more on a real
    /// kernel; callers that want the ELF facts (or tests cross-checking a
    /// kernel) ask for it.
    pub fn decompress_payload(&self, file: &[u8], limit: usize) -> Result<Vec<u8>> {
        let p = self.payload.as_ref().ok_or(Error::NoPayload)?;
        let start = usize::try_from(p.offset).map_err(|_| Error::NoPayload)?;
        let data = file
            .get(start..start.saturating_add(p.length as usize))
            .ok_or(Error::NoPayload)?;
        if p.uncompressed_elf {
            return Ok(data.to_vec());
        }
        let format = p.compression.ok_or(Error::UnknownPayloadCompression)?;
        Ok(super::compression::decompress(format, data, limit)?)
    }
}

/// Fixture and test helper: a synthetic bzImage with a 2.15 header, the
/// given payload (placed right after the setup sectors) and a version
/// string, `setup_sects` setup sectors and a kernel_info block.
pub fn build(version: u16, setup_sects: u8, version_string: &str, payload: &[u8]) -> Vec<u8> {
    let pm = (setup_sects as usize + 1) * 512;
    let kinfo_rel = 0x40 + payload.len();
    let body = (kinfo_rel + 16).div_ceil(16) * 16;
    let mut b = vec![0u8; pm + body];
    let put16 = |b: &mut [u8], o: usize, v: u16| b[o..o + 2].copy_from_slice(&v.to_le_bytes());
    let put32 = |b: &mut [u8], o: usize, v: u32| b[o..o + 4].copy_from_slice(&v.to_le_bytes());
    b[0x1f1] = setup_sects;
    put32(&mut b, 0x1f4, (body / 16) as u32);
    put16(&mut b, 0x1fe, 0xaa55);
    b[0x200] = 0xeb;
    b[0x201] = 0x6a;
    put32(&mut b, 0x202, HDRS_MAGIC);
    put16(&mut b, 0x206, version);
    put16(&mut b, 0x20e, 0x400 - 0x200);
    b[0x211] = LOADED_HIGH;
    put32(&mut b, 0x214, 0x10_0000);
    put32(&mut b, 0x22c, 0x7fff_ffff);
    put32(&mut b, 0x230, 0x20_0000);
    b[0x234] = 1;
    b[0x235] = 21;
    put16(&mut b, 0x236, 0x7f);
    put32(&mut b, 0x238, 2047);
    put32(&mut b, 0x248, 0x40);
    put32(&mut b, 0x24c, payload.len() as u32);
    b[0x258..0x260].copy_from_slice(&0x100_0000u64.to_le_bytes());
    put32(&mut b, 0x260, 0x337_8000);
    put32(&mut b, 0x264, 0x190);
    put32(&mut b, 0x268, kinfo_rel as u32);
    let v = version_string.as_bytes();
    b[0x400..0x400 + v.len()].copy_from_slice(v);
    b[pm + 0x40..pm + 0x40 + payload.len()].copy_from_slice(payload);
    let k = pm + kinfo_rel;
    b[k..k + 4].copy_from_slice(b"LToP");
    put32(&mut b, k + 4, 16);
    put32(&mut b, k + 8, 16);
    put32(&mut b, k + 12, 0x8000_0009);
    b
}

#[cfg(test)]
mod tests {
    use super::*;

    fn minimal(version: u16) -> Vec<u8> {
        let mut b = vec![0u8; 0x1000];
        b[0x1f1] = 3;
        b[0x1fe..0x200].copy_from_slice(&0xaa55u16.to_le_bytes());
        b[0x202..0x206].copy_from_slice(&HDRS_MAGIC.to_le_bytes());
        b[0x206..0x208].copy_from_slice(&version.to_le_bytes());
        b
    }

    #[test]
    fn old_protocol_has_no_new_fields() {
        let h = SetupHeader::parse(&minimal(0x0202)).unwrap();
        assert_eq!(h.cmdline_size, None);
        assert_eq!(h.protected_mode_offset(), 4 * 512);
    }

    #[test]
    fn rejects_every_truncation_without_panicking() {
        let b = minimal(0x020f);
        for len in 0..b.len() {
            let _ = SetupHeader::parse(&b[..len]);
        }
        assert!(matches!(
            SetupHeader::parse(&b[..0x100]),
            Err(Error::TooShort { .. })
        ));
        assert!(matches!(
            SetupHeader::parse(&b[..0x300]),
            Err(Error::SetupPastEnd { .. })
        ));
    }

    #[test]
    fn built_image_round_trips() {
        let b = build(
            0x020f,
            3,
            "6.6.0-test (me@host) #1",
            &[0x02, 0x21, 0x4c, 0x18, 1, 2, 3],
        );
        let z = BzImage::parse(&b).unwrap();
        assert_eq!(z.kernel_version.as_deref(), Some("6.6.0-test (me@host) #1"));
        assert_eq!(
            z.payload.as_ref().unwrap().compression,
            Some(Compression::Lz4)
        );
        assert_eq!(
            z.kernel_info,
            Some(KernelInfo {
                size: 16,
                size_total: 16,
                setup_type_max: 0x8000_0009
            })
        );
        assert!(z.efi_stub.is_none());
        assert_eq!(z.header.cmdline_size, Some(2047));
    }

    #[test]
    fn every_truncation_of_a_built_image_is_an_error() {
        let b = build(0x020f, 3, "6.6.0", b"\x1f\x8b\x08\x00rest");
        for len in 0..b.len() {
            assert!(BzImage::parse(&b[..len]).is_err(), "len {len}");
        }
    }

    #[test]
    fn payload_decompresses_to_what_was_compressed() {
        use std::io::Write;
        let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        e.write_all(b"\x7fELF pretend vmlinux").unwrap();
        let b = build(0x020f, 3, "6.6.0", &e.finish().unwrap());
        let z = BzImage::parse(&b).unwrap();
        assert_eq!(
            z.decompress_payload(&b, 1 << 20).unwrap(),
            b"\x7fELF pretend vmlinux"
        );
        let lz4 = build(0x020f, 3, "6.6.0", &[0x02, 0x21, 0x4c, 0x18, 0]);
        let z = BzImage::parse(&lz4).unwrap();
        assert!(matches!(
            z.decompress_payload(&lz4, 1 << 20),
            Err(Error::Payload(_))
        ));
    }

    #[test]
    fn lying_payload_length_is_an_error() {
        let mut b = build(0x020f, 3, "6.6.0", b"\x1f\x8b\x08\x00rest");
        b[0x24c..0x250].copy_from_slice(&0x100_0000u32.to_le_bytes());
        assert!(matches!(
            BzImage::parse(&b),
            Err(Error::PayloadPastEnd { .. })
        ));
    }
}
