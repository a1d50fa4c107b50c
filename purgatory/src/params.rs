//! The parameter block the loader patches into the purgatory image.
//!
//! This one `#[repr(C)]` definition is shared by both sides: the purgatory
//! reads it at run time and the kexec library writes it into the image's bytes
//! at the offset of the `purgatory_params` symbol. Sharing the type (instead of
//! patching loose symbols) means the two sides cannot disagree about a layout.

/// Maximum number of regions the purgatory can check, like kexec-tools'
/// `sha256_regions` (the kernel allows 16 segments, one of them ours).
pub const MAX_REGIONS: usize = 16;

/// `"KXRSPRG1"`: lets the loader check it is patching the block it expects.
pub const PARAMS_MAGIC: u64 = u64::from_le_bytes(*b"KXRSPRG1");

/// One physical memory range covered by the digest.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Region {
    pub start: u64,
    /// 0 ends the list.
    pub len: u64,
}

/// The registers the new kernel is entered with. The Linux 64-bit boot
/// protocol needs only `rsi` (zero page) and `rip` (`startup_64`); every
/// register is loaded so that other payloads can be entered too.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct EntryRegs {
    pub rax: u64,
    pub rbx: u64,
    pub rcx: u64,
    pub rdx: u64,
    pub rsi: u64,
    pub rdi: u64,
    pub rsp: u64,
    pub rbp: u64,
    pub r8: u64,
    pub r9: u64,
    pub r10: u64,
    pub r11: u64,
    pub r12: u64,
    pub r13: u64,
    pub r14: u64,
    pub r15: u64,
    pub rip: u64,
}

/// The whole block, at symbol `purgatory_params` in the image.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Params {
    /// [`PARAMS_MAGIC`], written by the build; the loader refuses an image
    /// whose block does not start with it.
    pub magic: u64,
    /// Non-zero: do not verify the digest (`kexec -i`).
    pub skip_checks: u64,
    /// I/O port of a 16550 UART to report on (`--console-serial`); 0: silent.
    pub console_port: u64,
    /// Baud rate divisor for that UART (115200 / baud); 0 keeps its settings.
    pub console_divisor: u64,
    pub entry: EntryRegs,
    /// Regions in the order they were hashed; unused ones have `len == 0`.
    pub regions: [Region; MAX_REGIONS],
    /// SHA-256 of all regions, concatenated in order.
    pub digest: [u8; 32],
}

impl Params {
    /// The block as the build writes it: only the magic set.
    pub const EMPTY: Params = Params {
        magic: PARAMS_MAGIC,
        skip_checks: 0,
        console_port: 0,
        console_divisor: 0,
        entry: EntryRegs {
            rax: 0,
            rbx: 0,
            rcx: 0,
            rdx: 0,
            rsi: 0,
            rdi: 0,
            rsp: 0,
            rbp: 0,
            r8: 0,
            r9: 0,
            r10: 0,
            r11: 0,
            r12: 0,
            r13: 0,
            r14: 0,
            r15: 0,
            rip: 0,
        },
        regions: [Region { start: 0, len: 0 }; MAX_REGIONS],
        digest: [0; 32],
    };

    /// Size of the block in bytes, as laid out in the image.
    pub const SIZE: usize = core::mem::size_of::<Params>();

    /// Little-endian bytes of the block, exactly as the purgatory reads them
    /// (x86_64 is little-endian and the struct has no padding). Loader side
    /// only: the image itself never serializes.
    #[cfg(not(purgatory_image))]
    pub fn to_bytes(&self) -> [u8; Self::SIZE] {
        let mut out = [0u8; Self::SIZE];
        let mut words = [0u64; (Self::SIZE - 32) / 8];
        let e = &self.entry;
        let head = [
            self.magic,
            self.skip_checks,
            self.console_port,
            self.console_divisor,
            e.rax,
            e.rbx,
            e.rcx,
            e.rdx,
            e.rsi,
            e.rdi,
            e.rsp,
            e.rbp,
            e.r8,
            e.r9,
            e.r10,
            e.r11,
            e.r12,
            e.r13,
            e.r14,
            e.r15,
            e.rip,
        ];
        let mut n = 0;
        for w in head {
            words[n] = w;
            n += 1;
        }
        for r in self.regions {
            words[n] = r.start;
            words[n + 1] = r.len;
            n += 2;
        }
        for (i, w) in words.iter().enumerate() {
            out[i * 8..i * 8 + 8].copy_from_slice(&w.to_le_bytes());
        }
        out[Self::SIZE - 32..].copy_from_slice(&self.digest);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layout_has_no_padding_and_bytes_match_memory() {
        assert_eq!(Params::SIZE, 8 * 4 + 17 * 8 + MAX_REGIONS * 16 + 32);
        let mut p = Params::EMPTY;
        p.skip_checks = 1;
        p.console_port = 0x3f8;
        p.console_divisor = 12;
        p.entry.rsi = 0x1234_5678_9abc;
        p.entry.rip = 0x0100_0200;
        p.regions[3] = Region {
            start: 0x4000,
            len: 0x2000,
        };
        p.digest[31] = 0xee;
        // SAFETY: Params is repr(C) plain old data without padding (checked above).
        let mem: [u8; Params::SIZE] = unsafe { core::mem::transmute(p) };
        assert_eq!(p.to_bytes(), mem);
    }
}
