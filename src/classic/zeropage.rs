//! The zero page (`struct boot_params`) and what travels in its segment:
//! the command line right after it and the `setup_data` chain after that.
//!
//! Offsets are those of `Documentation/arch/x86/zero-page.rst`. Only what a
//! loader is expected to fill is written; everything else stays zero, and
//! `sentinel` stays 0 so the new kernel trusts the fields we set.

use super::machine::{EfiRuntime, Machine, MemKind, RNG_SEED_LEN};
use super::memory::MIB;
use crate::image::bzimage::{SetupHeader, SETUP_HEADER_OFFSET};

pub const ZERO_PAGE_SIZE: usize = 4096;
/// Entries that fit in the zero page's own e820 table.
pub const E820_MAX_ZEROPAGE: usize = 128;
/// `type_of_loader` 0xD0: "other / undefined" loader, as kexec-tools and the
/// kernel's own kexec loader write. Zero would make the kernel ignore the initrd.
pub const TYPE_OF_LOADER: u8 = 0xd0;
/// `setup_data` type of an e820 table continuation.
pub const SETUP_E820_EXT: u32 = 1;

const OFF_EXT_MEM_K: usize = 0x002;
const OFF_ORIG_VIDEO_COLS: usize = 0x007;
const OFF_ORIG_VIDEO_LINES: usize = 0x00e;
const OFF_ORIG_VIDEO_IS_VGA: usize = 0x00f;
const OFF_ORIG_VIDEO_POINTS: usize = 0x010;
const SCREEN_INFO_LEN: usize = 0x40;
const OFF_ACPI_RSDP: usize = 0x070;
const OFF_EXT_RAMDISK_IMAGE: usize = 0x0c0;
const OFF_EXT_RAMDISK_SIZE: usize = 0x0c4;
const OFF_EXT_CMD_LINE_PTR: usize = 0x0c8;
// struct efi_info: signature, systab, memdesc_size, memdesc_version,
// memmap, memmap_size, systab_hi, memmap_hi (u32 each).
const OFF_EFI_LOADER_SIGNATURE: usize = 0x1c0;
const OFF_EFI_MEMDESC_SIZE: usize = 0x1c8;
const OFF_EFI_MEMDESC_VERSION: usize = 0x1cc;
const OFF_EFI_MEMMAP: usize = 0x1d0;
const OFF_EFI_MEMMAP_SIZE: usize = 0x1d4;
const OFF_EFI_SYSTAB_HI: usize = 0x1d8;
const OFF_EFI_MEMMAP_HI: usize = 0x1dc;
const OFF_ALT_MEM_K: usize = 0x1e0;
const OFF_E820_ENTRIES: usize = 0x1e8;
const OFF_SECURE_BOOT: usize = 0x1ec;
const OFF_SENTINEL: usize = 0x1ef;
const OFF_TYPE_OF_LOADER: usize = 0x210;
const OFF_LOADFLAGS: usize = 0x211;
const OFF_CODE32_START: usize = 0x214;
const OFF_RAMDISK_IMAGE: usize = 0x218;
const OFF_RAMDISK_SIZE: usize = 0x21c;
const OFF_CMD_LINE_PTR: usize = 0x228;
const OFF_HARDWARE_SUBARCH: usize = 0x23c;
const OFF_SETUP_DATA: usize = 0x250;
const OFF_E820_TABLE: usize = 0x2d0;
const E820_ENTRY_SIZE: usize = 20;

/// One `struct boot_e820_entry`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct E820Entry {
    pub addr: u64,
    pub size: u64,
    pub kind: u32,
}

/// Where the other pieces went, for the fields that point at them.
#[derive(Debug, Clone, Copy)]
pub struct Placement {
    /// Physical address of this segment (the zero page itself).
    pub base: u64,
    /// Load address of the protected-mode kernel.
    pub kernel: u64,
    /// Initrd address and length.
    pub initrd: Option<(u64, u64)>,
}

/// Bytes of a `struct efi_setup_data` (kexec ABI): fw_vendor, unused,
/// tables, smbios, 8 reserved words.
const EFI_SETUP_DATA_LEN: usize = 96;
/// Bytes of one `efi_memory_desc_t` as we write them.
pub const EFI_DESC_SIZE: usize = 40;
/// `setup_data` type of the EFI facts a kexec'd kernel reuses.
pub const SETUP_EFI: u32 = 4;
/// `setup_data` type of a seed for the new kernel's RNG.
pub const SETUP_RNG_SEED: u32 = 9;

/// Where each piece goes inside the segment.
struct Layout {
    e820_ext: Option<usize>,
    rng_seed: Option<usize>,
    efi_setup: Option<usize>,
    efi_map: Option<usize>,
    len: usize,
}

fn layout(cmdline_len: usize, e820_len: usize, efi_descs: Option<usize>) -> Layout {
    let mut at = (ZERO_PAGE_SIZE + cmdline_len + 1).next_multiple_of(8);
    let ext = e820_len.saturating_sub(E820_MAX_ZEROPAGE);
    let e820_ext = (ext > 0).then(|| {
        let node = at;
        at = (at + 16 + ext * E820_ENTRY_SIZE).next_multiple_of(8);
        node
    });
    // Always laid out; written only when the machine snapshot has a seed.
    let rng_seed = Some(at);
    at += 16 + RNG_SEED_LEN;
    let (efi_setup, efi_map) = match efi_descs {
        Some(n) => {
            let setup = at;
            let map = setup + 16 + EFI_SETUP_DATA_LEN;
            at = map + n * EFI_DESC_SIZE;
            (Some(setup), Some(map))
        }
        None => (None, None),
    };
    Layout {
        e820_ext,
        rng_seed,
        efi_setup,
        efi_map,
        len: at,
    }
}

/// Bytes of the zero-page segment for a command line of `cmdline_len`
/// bytes (without NUL), `e820_len` map entries and, for an EFI hand-over,
/// `efi_descs` runtime map entries.
pub fn segment_len(cmdline_len: usize, e820_len: usize, efi_descs: Option<usize>) -> usize {
    layout(cmdline_len, e820_len, efi_descs).len
}

fn put(b: &mut [u8], off: usize, v: &[u8]) {
    if let Some(dst) = b.get_mut(off..off + v.len()) {
        dst.copy_from_slice(v);
    }
}

/// Builds the segment: zero page, NUL-terminated `cmdline` at `base + 4096`,
/// then a `SETUP_E820_EXT` node when the map has more than 128 entries, a
/// `SETUP_RNG_SEED` node (the new kernel's RNG is ready from its first
/// instruction instead of gathering entropy again, as after a `kexec -s` or a
/// kexec-tools load), then (with `efi`) a `SETUP_EFI` node and the EFI
/// runtime memory map.
pub fn build(
    kernel: &[u8],
    machine: &Machine,
    cmdline: &[u8],
    e820: &[E820Entry],
    at: Placement,
    efi: Option<&EfiRuntime>,
) -> Vec<u8> {
    let lay = layout(cmdline.len(), e820.len(), efi.map(|e| e.map.len()));
    let mut b = vec![0u8; lay.len];

    // screen_info: the running kernel's (which carries an EFI or VESA
    // framebuffer's description), else an 80x25 VGA text console.
    match machine
        .boot_params
        .as_deref()
        .and_then(|p| p.get(..SCREEN_INFO_LEN))
    {
        Some(si) => put(&mut b, 0, si),
        None => {
            b[OFF_ORIG_VIDEO_COLS] = 80;
            b[OFF_ORIG_VIDEO_LINES] = 25;
            b[OFF_ORIG_VIDEO_IS_VGA] = 1;
            put(&mut b, OFF_ORIG_VIDEO_POINTS, &16u16.to_le_bytes());
        }
    }

    // The setup header, verbatim from the image: 0x1f1 .. 0x202 + [0x201].
    let hdr_end = (SETUP_HEADER_OFFSET + SetupHeader::header_len(kernel))
        .min(ZERO_PAGE_SIZE)
        .min(kernel.len());
    if let Some(h) = kernel.get(SETUP_HEADER_OFFSET..hdr_end) {
        put(&mut b, SETUP_HEADER_OFFSET, h);
    }
    b[OFF_SENTINEL] = 0;
    b[OFF_TYPE_OF_LOADER] = TYPE_OF_LOADER;
    b[OFF_LOADFLAGS] = 0;
    put(&mut b, OFF_CODE32_START, &(at.kernel as u32).to_le_bytes());

    // Command line right after the zero page.
    let cmd_addr = at.base + ZERO_PAGE_SIZE as u64;
    put(&mut b, ZERO_PAGE_SIZE, cmdline);
    put(&mut b, OFF_CMD_LINE_PTR, &(cmd_addr as u32).to_le_bytes());
    put(
        &mut b,
        OFF_EXT_CMD_LINE_PTR,
        &((cmd_addr >> 32) as u32).to_le_bytes(),
    );

    if let Some((addr, len)) = at.initrd {
        put(&mut b, OFF_RAMDISK_IMAGE, &(addr as u32).to_le_bytes());
        put(
            &mut b,
            OFF_EXT_RAMDISK_IMAGE,
            &((addr >> 32) as u32).to_le_bytes(),
        );
        put(&mut b, OFF_RAMDISK_SIZE, &(len as u32).to_le_bytes());
        put(
            &mut b,
            OFF_EXT_RAMDISK_SIZE,
            &((len >> 32) as u32).to_le_bytes(),
        );
    } else {
        put(&mut b, OFF_RAMDISK_IMAGE, &[0; 8]);
    }

    // Facts about the platform the new kernel cannot probe by itself.
    if let Some(p) = machine.boot_params.as_deref() {
        // hardware_subarch (u32) and hardware_subarch_data (u64).
        if let Some(v) = p.get(OFF_HARDWARE_SUBARCH..OFF_HARDWARE_SUBARCH + 12) {
            put(&mut b, OFF_HARDWARE_SUBARCH, v);
        }
    }
    let rsdp = machine
        .efi_acpi_rsdp
        .or_else(|| {
            machine
                .boot_params
                .as_deref()
                .and_then(|p| p.get(OFF_ACPI_RSDP..OFF_ACPI_RSDP + 8))
                .map(|s| u64::from_le_bytes(s.try_into().unwrap_or([0; 8])))
        })
        .unwrap_or(0);
    put(&mut b, OFF_ACPI_RSDP, &rsdp.to_le_bytes());

    // Memory map: the first 128 entries here, the rest in a setup_data node.
    let mut ext_mem_k = 0u64;
    for (i, e) in e820.iter().enumerate() {
        if e.kind == MemKind::Ram.e820_type()
            && e.addr <= MIB
            && e.addr.saturating_add(e.size) > MIB
        {
            ext_mem_k = (e.addr.saturating_add(e.size) - MIB) >> 10;
        }
        let mut ent = [0u8; E820_ENTRY_SIZE];
        ent[0..8].copy_from_slice(&e.addr.to_le_bytes());
        ent[8..16].copy_from_slice(&e.size.to_le_bytes());
        ent[16..20].copy_from_slice(&e.kind.to_le_bytes());
        if i < E820_MAX_ZEROPAGE {
            put(&mut b, OFF_E820_TABLE + i * E820_ENTRY_SIZE, &ent);
        } else {
            let node = (ZERO_PAGE_SIZE + cmdline.len() + 1).next_multiple_of(8);
            put(
                &mut b,
                node + 16 + (i - E820_MAX_ZEROPAGE) * E820_ENTRY_SIZE,
                &ent,
            );
        }
    }
    b[OFF_E820_ENTRIES] = e820.len().min(E820_MAX_ZEROPAGE) as u8;
    put(
        &mut b,
        OFF_ALT_MEM_K,
        &(ext_mem_k.min(u32::MAX as u64) as u32).to_le_bytes(),
    );
    put(
        &mut b,
        OFF_EXT_MEM_K,
        &(ext_mem_k.min(0xfc00) as u16).to_le_bytes(),
    );

    // setup_data nodes, each pushed at the head of the chain.
    let mut setup_data = 0u64;
    let mut push_node = |b: &mut Vec<u8>, node: usize, ty: u32, len: usize| {
        put(b, node, &setup_data.to_le_bytes());
        put(b, node + 8, &ty.to_le_bytes());
        put(b, node + 12, &(len as u32).to_le_bytes());
        setup_data = at.base + node as u64;
    };
    if let Some(node) = lay.e820_ext {
        push_node(
            &mut b,
            node,
            SETUP_E820_EXT,
            (e820.len() - E820_MAX_ZEROPAGE) * E820_ENTRY_SIZE,
        );
    }
    if let (Some(seed), Some(node)) = (machine.rng_seed, lay.rng_seed) {
        put(&mut b, node + 16, &seed);
        push_node(&mut b, node, SETUP_RNG_SEED, RNG_SEED_LEN);
    }
    if let (Some(efi), Some(node), Some(map)) = (efi, lay.efi_setup, lay.efi_map) {
        // What the running kernel was told about EFI, then the runtime map
        // with the virtual addresses it chose, which the new kernel keeps.
        if let Some(p) = machine.boot_params.as_deref() {
            for (off, len) in [
                (OFF_EFI_LOADER_SIGNATURE, 8),
                (OFF_EFI_MEMDESC_VERSION, 4),
                (OFF_EFI_SYSTAB_HI, 4),
            ] {
                if let Some(v) = p.get(off..off + len) {
                    put(&mut b, off, v);
                }
            }
            if let Some(&v) = p.get(OFF_SECURE_BOOT) {
                b[OFF_SECURE_BOOT] = v;
            }
        }
        for (i, d) in efi.map.iter().enumerate() {
            let o = map + i * EFI_DESC_SIZE;
            put(&mut b, o, &d.kind.to_le_bytes());
            put(&mut b, o + 8, &d.phys_addr.to_le_bytes());
            put(&mut b, o + 16, &d.virt_addr.to_le_bytes());
            put(&mut b, o + 24, &d.num_pages.to_le_bytes());
            put(&mut b, o + 32, &d.attribute.to_le_bytes());
        }
        let map_addr = at.base + map as u64;
        put(
            &mut b,
            OFF_EFI_MEMDESC_SIZE,
            &(EFI_DESC_SIZE as u32).to_le_bytes(),
        );
        put(&mut b, OFF_EFI_MEMMAP, &(map_addr as u32).to_le_bytes());
        put(
            &mut b,
            OFF_EFI_MEMMAP_HI,
            &((map_addr >> 32) as u32).to_le_bytes(),
        );
        put(
            &mut b,
            OFF_EFI_MEMMAP_SIZE,
            &((efi.map.len() * EFI_DESC_SIZE) as u32).to_le_bytes(),
        );
        let data = node + 16;
        put(&mut b, data, &efi.fw_vendor.to_le_bytes());
        put(&mut b, data + 16, &efi.config_table.to_le_bytes());
        put(&mut b, data + 24, &efi.smbios.to_le_bytes());
        push_node(&mut b, node, SETUP_EFI, EFI_SETUP_DATA_LEN);
    }
    put(&mut b, OFF_SETUP_DATA, &setup_data.to_le_bytes());
    b
}

/// Reads back a little-endian field, for tests and diagnostics.
pub fn read_u32(b: &[u8], off: usize) -> Option<u32> {
    b.get(off..off + 4)
        .and_then(|s| s.try_into().ok())
        .map(u32::from_le_bytes)
}

pub fn read_u64(b: &[u8], off: usize) -> Option<u64> {
    b.get(off..off + 8)
        .and_then(|s| s.try_into().ok())
        .map(u64::from_le_bytes)
}

/// Offsets the tests (and the CLI's debug output) may want by name.
pub mod offsets {
    pub const EXT_MEM_K: usize = super::OFF_EXT_MEM_K;
    pub const ACPI_RSDP: usize = super::OFF_ACPI_RSDP;
    pub const ALT_MEM_K: usize = super::OFF_ALT_MEM_K;
    pub const E820_ENTRIES: usize = super::OFF_E820_ENTRIES;
    pub const SENTINEL: usize = super::OFF_SENTINEL;
    pub const TYPE_OF_LOADER: usize = super::OFF_TYPE_OF_LOADER;
    pub const RAMDISK_IMAGE: usize = super::OFF_RAMDISK_IMAGE;
    pub const RAMDISK_SIZE: usize = super::OFF_RAMDISK_SIZE;
    pub const CMD_LINE_PTR: usize = super::OFF_CMD_LINE_PTR;
    pub const EXT_CMD_LINE_PTR: usize = super::OFF_EXT_CMD_LINE_PTR;
    pub const EXT_RAMDISK_IMAGE: usize = super::OFF_EXT_RAMDISK_IMAGE;
    pub const HARDWARE_SUBARCH: usize = super::OFF_HARDWARE_SUBARCH;
    pub const SETUP_DATA: usize = super::OFF_SETUP_DATA;
    pub const E820_TABLE: usize = super::OFF_E820_TABLE;
    pub const EFI_LOADER_SIGNATURE: usize = super::OFF_EFI_LOADER_SIGNATURE;
    pub const EFI_MEMDESC_SIZE: usize = super::OFF_EFI_MEMDESC_SIZE;
    pub const EFI_MEMMAP: usize = super::OFF_EFI_MEMMAP;
    pub const EFI_MEMMAP_SIZE: usize = super::OFF_EFI_MEMMAP_SIZE;
}
