//! An ELF `vmlinux` on the classic path: its `PT_LOAD` segments go to their
//! physical addresses and the purgatory enters `startup_64` directly.
//!
//! There is no decompressor and no setup header in a vmlinux, so two things
//! the bzImage path takes from the image are supplied here. The entry point:
//! an x86_64 vmlinux's `e_entry` is already the physical address of
//! `startup_64` (the linker script sets `ENTRY(phys_startup_64)`), which
//! expects what the boot protocol's 64-bit entry does (long mode, identity
//! map, RSI = zero page). And the setup header the zero page starts from: a
//! synthetic protocol 2.15 header that declares just what the kernel proper
//! reads (a 64-bit kernel, the command-line size of `COMMAND_LINE_SIZE`).
//!
//! The kernel runs where it was linked (physically; there is no decompressor
//! to relocate it), so its segments are taken at exactly their addresses, as
//! kexec-tools' ELF loader does. KASLR does not apply to such a boot, and a
//! vmlinux cannot say whether it copes with 5-level paging (a bzImage's
//! xloadflags can), so that check is left to the kernel, as kexec-tools does.
//! Proven in a guest by `cargo xtask vm-test vmlinux_exec`, which boots the
//! vmlinux inside the guest's own bzImage.

use std::borrow::Cow;

use super::memory::{page_align, FreeList, Range, PAGE_SIZE};
use super::{Error, Result};
use crate::image::bzimage::{HDRS_MAGIC, LOADED_HIGH, XLF_CAN_BE_LOADED_ABOVE_4G, XLF_KERNEL_64};
use crate::image::elf;
use crate::syscall::Segment;

/// x86's `COMMAND_LINE_SIZE`, less the NUL.
const CMDLINE_SIZE: u32 = 2047;

/// The vmlinux laid out: its segments, where it starts, and the header the
/// zero page is built from.
pub struct Layout<'a> {
    pub segments: Vec<Segment<'a>>,
    /// Physical address of `startup_64`.
    pub entry: u64,
    /// Lowest physical address the kernel occupies.
    pub base: u64,
}

/// Whether `kernel` is an ELF file (the classic planner's other input).
pub fn is_elf(kernel: &[u8]) -> bool {
    kernel.starts_with(b"\x7fELF")
}

/// A setup header as a bzImage of protocol 2.15 would carry it, for a
/// kernel that has none: `SetupHeader::parse` and `zeropage::build` read it
/// like an image's first page.
pub fn synthetic_header() -> Vec<u8> {
    // As long as a minimal setup area (setup_sects 0 means 4 sectors), so
    // that the header parses like an image's.
    let mut b = vec![0u8; 0x1000];
    let mut put = |off: usize, v: &[u8]| b[off..off + v.len()].copy_from_slice(v);
    put(0x1fe, &0xaa55u16.to_le_bytes());
    // The jump at 0x200 covers the header up to 0x268 (`0x202 + b[0x201]`).
    put(0x200, &[0xeb, 0x66]);
    put(0x202, &HDRS_MAGIC.to_le_bytes());
    put(0x206, &0x020fu16.to_le_bytes());
    put(0x211, &[LOADED_HIGH]);
    put(0x22c, &0x7fff_ffffu32.to_le_bytes());
    put(
        0x236,
        &(XLF_KERNEL_64 | XLF_CAN_BE_LOADED_ABOVE_4G).to_le_bytes(),
    );
    put(0x238, &CMDLINE_SIZE.to_le_bytes());
    b
}

/// Takes the vmlinux's `PT_LOAD` segments out of `free` at their physical
/// addresses (page-aligned; segments sharing a page are merged).
pub fn layout<'a>(kernel: &'a [u8], free: &mut FreeList) -> Result<Layout<'a>> {
    let report = elf::parse(kernel)?;
    if report.machine != "x86_64" || report.class != 64 {
        return Err(Error::ElfNotX86_64(format!(
            "{}-bit {}",
            report.class, report.machine
        )));
    }
    let mut loads: Vec<&elf::Segment> = report
        .load_segments
        .iter()
        .filter(|s| s.memsz > 0)
        .collect();
    if loads.is_empty() {
        return Err(Error::ElfNoSegments);
    }
    loads.sort_by_key(|s| s.paddr);

    // Group segments whose pages touch, so each kexec segment is page aligned
    // and none overlap.
    let mut groups: Vec<Vec<&elf::Segment>> = Vec::new();
    let mut group_end = 0u64;
    for s in loads {
        let start = s.paddr & !(PAGE_SIZE - 1);
        let end = s
            .paddr
            .checked_add(s.memsz)
            .and_then(page_align)
            .ok_or(Error::TooLarge("vmlinux segment"))?;
        match groups.last_mut() {
            Some(g) if start < group_end => g.push(s),
            _ => groups.push(vec![s]),
        }
        group_end = group_end.max(end);
    }

    let mut segments = Vec::with_capacity(groups.len());
    for g in &groups {
        let mem = g[0].paddr & !(PAGE_SIZE - 1);
        let end = g
            .iter()
            .filter_map(|s| s.paddr.checked_add(s.memsz))
            .max()
            .and_then(page_align)
            .ok_or(Error::TooLarge("vmlinux segment"))?;
        let range = Range::new(mem, end);
        if !free.take_exact(range) {
            return Err(Error::ElfAddressTaken(range));
        }
        let data = |s: &elf::Segment| -> &'a [u8] {
            // elf::parse checked that every segment's file bytes are in the
            // file; a segment claiming more file bytes than memory gets only
            // its memory's worth.
            let from = s.offset as usize;
            let len = s.filesz.min(s.memsz) as usize;
            kernel.get(from..from.saturating_add(len)).unwrap_or(&[])
        };
        let buf = match g.as_slice() {
            [s] if s.paddr == mem => Cow::Borrowed(data(s)),
            _ => {
                let last = g
                    .iter()
                    .map(|s| s.paddr - mem + s.filesz.min(s.memsz))
                    .max()
                    .unwrap_or(0);
                let mut v = vec![0u8; last as usize];
                for s in g {
                    let at = (s.paddr - mem) as usize;
                    let d = data(s);
                    v[at..at + d.len()].copy_from_slice(d);
                }
                Cow::Owned(v)
            }
        };
        segments.push(Segment {
            buf,
            mem,
            memsz: end - mem,
        });
    }

    // x86_64's e_entry is physical; accept a virtual one too (some
    // hand-linked kernels), translated through the segment that holds it.
    let physical = |a: u64| segments.iter().any(|s| a >= s.mem && a < s.mem + s.memsz);
    let entry = if physical(report.entry) {
        report.entry
    } else {
        report
            .load_segments
            .iter()
            .find(|s| report.entry >= s.vaddr && report.entry - s.vaddr < s.memsz)
            .map(|s| s.paddr + (report.entry - s.vaddr))
            .filter(|&p| physical(p))
            .ok_or(Error::ElfEntryOutside(report.entry))?
    };
    Ok(Layout {
        base: segments[0].mem,
        segments,
        entry,
    })
}
