//! x86 bzImage: the real-mode setup header of the Linux boot protocol.
//!
//! Field names and offsets follow `Documentation/arch/x86/boot.rst`; offsets
//! are from the start of the file (which is also the start of `boot_params`,
//! the "zero page", since the header is copied there verbatim by loaders).

use serde::Serialize;

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
    pub setup_data: Option<u64>,
    /// 2.10+.
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
}
