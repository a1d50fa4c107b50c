//! What a capture (crash) kernel needs beyond a normal load: the ELF core
//! header describing the crashed kernel's memory, and a memory map that
//! confines the capture kernel to the crash reservation.
//!
//! Follows the kernel's own `kexec_file_load` loader
//! (`arch/x86/kernel/crash.c`): one `PT_NOTE` per CPU's crash notes, one for
//! vmcoreinfo, one `PT_LOAD` per System RAM range minus the reservation and
//! minus the low 1 MiB (modern kernels reserve it, so no backup copy is needed).

use super::machine::{Machine, MemKind};
use super::memory::{Range, MIB};
use super::zeropage::E820Entry;

const EHDR_SIZE: usize = 64;
const PHDR_SIZE: usize = 56;
const PT_LOAD: u32 = 1;
const PT_NOTE: u32 = 4;
const ET_CORE: u16 = 4;
const EM_X86_64: u16 = 62;
const PF_RWX: u32 = 7;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum Error {
    #[error("no CPU crash notes under /sys/devices/system/cpu/cpu*/crash_notes: the running kernel lacks CONFIG_CRASH_DUMP/CONFIG_KEXEC, or /sys is not mounted")]
    NoCrashNotes,
    #[error("/sys/kernel/vmcoreinfo is missing or empty: the running kernel was built without CONFIG_VMCORE_INFO, so a dump could not be analysed")]
    NoVmcoreinfo,
    #[error("/proc/iomem lists no \"System RAM\" (run as root: the addresses are hidden from other users)")]
    NoSystemRam,
    #[error("the ELF core header would need {0} program headers, more than ELF allows")]
    TooManyHeaders(usize),
}

/// The memory a dump should contain: System RAM minus the crash
/// reservations and minus the low 1 MiB.
pub fn dump_ranges(machine: &Machine) -> Vec<Range> {
    let low = Range::new(0, MIB);
    let mut out: Vec<Range> = machine.system_ram.clone();
    for cut in machine
        .crash_reservations
        .iter()
        .chain(std::iter::once(&low))
    {
        out = out.iter().flat_map(|r| r.minus(cut)).collect();
    }
    out
}

/// Size of the header for `machine`, known before its address is chosen.
pub fn header_len(machine: &Machine) -> usize {
    EHDR_SIZE + PHDR_SIZE * (machine.crash_notes.len() + 1 + dump_ranges(machine).len())
}

/// Builds the ELF64 `ET_CORE` header the capture kernel reads at `elfcorehdr=`.
pub fn elf_core_header(machine: &Machine) -> Result<Vec<u8>, Error> {
    if machine.crash_notes.is_empty() {
        return Err(Error::NoCrashNotes);
    }
    let vmcoreinfo = machine.vmcoreinfo.ok_or(Error::NoVmcoreinfo)?;
    let ram = dump_ranges(machine);
    if ram.is_empty() {
        return Err(Error::NoSystemRam);
    }
    let phnum = machine.crash_notes.len() + 1 + ram.len();
    let phnum16 = u16::try_from(phnum).map_err(|_| Error::TooManyHeaders(phnum))?;
    let mut b = Vec::with_capacity(header_len(machine));
    b.extend_from_slice(b"\x7fELF");
    b.extend_from_slice(&[2, 1, 1, 0]); // 64-bit, little-endian, version 1, SysV
    b.extend_from_slice(&[0; 8]);
    b.extend_from_slice(&ET_CORE.to_le_bytes());
    b.extend_from_slice(&EM_X86_64.to_le_bytes());
    b.extend_from_slice(&1u32.to_le_bytes()); // e_version
    b.extend_from_slice(&0u64.to_le_bytes()); // e_entry
    b.extend_from_slice(&(EHDR_SIZE as u64).to_le_bytes()); // e_phoff
    b.extend_from_slice(&0u64.to_le_bytes()); // e_shoff
    b.extend_from_slice(&0u32.to_le_bytes()); // e_flags
    b.extend_from_slice(&(EHDR_SIZE as u16).to_le_bytes());
    b.extend_from_slice(&(PHDR_SIZE as u16).to_le_bytes());
    b.extend_from_slice(&phnum16.to_le_bytes());
    b.extend_from_slice(&[0; 6]); // e_shentsize, e_shnum, e_shstrndx
    let mut phdr = |ty: u32, flags: u32, paddr: u64, vaddr: u64, len: u64| {
        b.extend_from_slice(&ty.to_le_bytes());
        b.extend_from_slice(&flags.to_le_bytes());
        b.extend_from_slice(&paddr.to_le_bytes()); // p_offset: old memory is read by physical address
        b.extend_from_slice(&vaddr.to_le_bytes());
        b.extend_from_slice(&paddr.to_le_bytes());
        b.extend_from_slice(&len.to_le_bytes());
        b.extend_from_slice(&len.to_le_bytes());
        b.extend_from_slice(&0u64.to_le_bytes());
    };
    for n in &machine.crash_notes {
        phdr(PT_NOTE, 0, n.start, 0, n.len());
    }
    phdr(PT_NOTE, 0, vmcoreinfo.start, 0, vmcoreinfo.len());
    for r in &ram {
        phdr(
            PT_LOAD,
            PF_RWX,
            r.start,
            machine.page_offset.wrapping_add(r.start),
            r.len(),
        );
    }
    Ok(b)
}

/// The capture kernel's memory map: RAM below 1 MiB, every non-RAM range of
/// the firmware map (ACPI tables and NVS must stay reachable), and the crash
/// reservations as RAM except for the ELF core header, which the capture
/// kernel must not overwrite before it has read it.
pub fn e820(machine: &Machine, elfcorehdr: Range) -> Vec<E820Entry> {
    let low = Range::new(0, MIB);
    let mut out = Vec::new();
    for m in &machine.memmap {
        if m.kind == MemKind::Ram {
            if let Some(r) = m.range.intersect(&low) {
                out.push(E820Entry {
                    addr: r.start,
                    size: r.len(),
                    kind: MemKind::Ram.e820_type(),
                });
            }
        } else {
            out.push(E820Entry {
                addr: m.range.start,
                size: m.range.len(),
                kind: m.kind.e820_type(),
            });
        }
    }
    for c in &machine.crash_reservations {
        for r in c.minus(&elfcorehdr) {
            out.push(E820Entry {
                addr: r.start,
                size: r.len(),
                kind: MemKind::Ram.e820_type(),
            });
        }
    }
    out.sort_by_key(|e| e.addr);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::classic::machine::MemoryRange;

    fn machine() -> Machine {
        Machine {
            memmap: vec![
                MemoryRange {
                    range: Range::new(0, 0x9fc00),
                    kind: MemKind::Ram,
                },
                MemoryRange {
                    range: Range::new(0x9fc00, 0xa0000),
                    kind: MemKind::Reserved,
                },
                MemoryRange {
                    range: Range::new(0x100000, 0x3ffe0000),
                    kind: MemKind::Ram,
                },
                MemoryRange {
                    range: Range::new(0x3ffe0000, 0x40000000),
                    kind: MemKind::Reserved,
                },
            ],
            system_ram: vec![
                Range::new(0x1000, 0x9fc00),
                Range::new(0x100000, 0x3ffe0000),
            ],
            crash_reservations: vec![Range::new(0x2f000000, 0x3f000000)],
            crash_notes: vec![
                Range::new(0x3fc1e8c0, 0x3fc1e8c0 + 0x150),
                Range::new(0x3fc5e8c0, 0x3fc5e8c0 + 0x150),
            ],
            vmcoreinfo: Some(Range::new(0x2e4d000, 0x2e4e000)),
            page_offset: 0xffff_8880_0000_0000,
            ..Machine::default()
        }
    }

    #[test]
    fn header_lists_notes_vmcoreinfo_and_ram_outside_the_reservation() {
        let m = machine();
        let h = elf_core_header(&m).unwrap();
        assert_eq!(h.len(), header_len(&m));
        let elf = goblin::elf::Elf::parse(&h).unwrap();
        assert_eq!(elf.header.e_type, goblin::elf::header::ET_CORE);
        assert_eq!(elf.header.e_machine, goblin::elf::header::EM_X86_64);
        let notes: Vec<_> = elf
            .program_headers
            .iter()
            .filter(|p| p.p_type == PT_NOTE)
            .collect();
        assert_eq!(notes.len(), 3);
        assert_eq!(notes[2].p_paddr, 0x2e4d000);
        let loads: Vec<(u64, u64)> = elf
            .program_headers
            .iter()
            .filter(|p| p.p_type == PT_LOAD)
            .map(|p| (p.p_paddr, p.p_paddr + p.p_memsz))
            .collect();
        // Low 1 MiB dropped; the reservation cut out of the big range.
        assert_eq!(
            loads,
            vec![(0x100000, 0x2f000000), (0x3f000000, 0x3ffe0000)]
        );
        let first = elf
            .program_headers
            .iter()
            .find(|p| p.p_type == PT_LOAD)
            .unwrap();
        assert_eq!(first.p_vaddr, 0xffff_8880_0010_0000);
        assert_eq!(first.p_offset, 0x100000);
    }

    #[test]
    fn missing_crash_facts_are_errors() {
        let mut m = machine();
        m.vmcoreinfo = None;
        assert_eq!(elf_core_header(&m), Err(Error::NoVmcoreinfo));
        m.crash_notes.clear();
        assert_eq!(elf_core_header(&m), Err(Error::NoCrashNotes));
    }

    #[test]
    fn e820_is_low_ram_reserved_and_reservation_minus_header() {
        let m = machine();
        let hdr = Range::new(0x3efff000, 0x3f000000);
        let e = e820(&m, hdr);
        let ram: Vec<(u64, u64)> = e
            .iter()
            .filter(|e| e.kind == 1)
            .map(|e| (e.addr, e.addr + e.size))
            .collect();
        assert_eq!(ram, vec![(0, 0x9fc00), (0x2f000000, 0x3efff000)]);
        assert!(e.iter().any(|e| e.kind == 2 && e.addr == 0x3ffe0000));
    }
}
