//! Placement: where each segment goes, and the segments themselves.
//!
//! Order matters only for who gets the highest addresses: the kernel first
//! (it is the largest and has the strictest alignment), then the initrd, the
//! crash core header, the zero page and the purgatory. All of them sit above
//! 1 MiB; for a crash kernel they stay inside the reservation, above its
//! lowest megabyte, which the kernel needs for its own control pages.

use super::memory::{page_align, FreeList, Range, MIB, PAGE_SIZE};
use super::purgatory::{self, Params, Region};
use super::vmlinux;
use super::zeropage::{self, E820Entry, Placement};
use super::{
    crash, Error, LoadPlan, Machine, Request, Result, SerialConsole, KEXEC_ARCH_X86_64,
    KEXEC_ON_CRASH,
};
use crate::image::bzimage::{
    SetupHeader, LOADED_HIGH, XLF_5LEVEL, XLF_CAN_BE_LOADED_ABOVE_4G, XLF_EFI_KEXEC, XLF_KERNEL_64,
};
use crate::syscall::Segment;
use sha2::{Digest, Sha256};
use std::borrow::Cow;

const FOUR_GIB: u64 = 1 << 32;
/// `startup_64` is at this offset from the load address (boot protocol ABI).
const STARTUP_64: u64 = 0x200;
/// kexec-tools keeps initrds at or above 16 MiB, out of the way of the
/// kernel's fixed low allocations.
const INITRD_MIN: u64 = 16 * MIB;
/// Default `cmdline_size` before protocol 2.06.
const OLD_CMDLINE_SIZE: usize = 255;

/// Builds the `kexec_load` arguments for `req` on `machine`.
pub fn plan<'a>(req: &Request<'a>, machine: &Machine) -> Result<LoadPlan<'a>> {
    if !purgatory::available() {
        return Err(purgatory::Error::Missing.into());
    }
    // A vmlinux has no setup header: it gets a synthetic one (see vmlinux.rs).
    let elf = vmlinux::is_elf(req.kernel);
    if elf && req.crash {
        return Err(Error::ElfCrash);
    }
    let header: Cow<'_, [u8]> = if elf {
        Cow::Owned(vmlinux::synthetic_header())
    } else {
        Cow::Borrowed(req.kernel)
    };
    let hdr = SetupHeader::parse(&header)?;
    check_loadable(&hdr)?;
    // A vmlinux does not declare whether it copes with 5-level paging (only
    // a bzImage's xloadflags do); distribution kernels are built with
    // CONFIG_X86_5LEVEL, and kexec-tools does not check either.
    if machine.five_level_paging() && !elf && !hdr.xloadflag(XLF_5LEVEL) {
        return Err(Error::No5LevelPaging);
    }
    if let Some(i) = req.cmdline.iter().position(|&c| c == 0) {
        return Err(Error::CmdlineNul(i));
    }
    let cmdline_max = hdr.cmdline_size.map_or(OLD_CMDLINE_SIZE, |s| s as usize);
    let above_4g = hdr.xloadflag(XLF_CAN_BE_LOADED_ABOVE_4G);
    let limit = if above_4g { u64::MAX } else { FOUR_GIB };

    let mut free = if req.crash {
        if machine.crash_reservations.is_empty() {
            return Err(Error::NoCrashReservation);
        }
        let mut f = FreeList::new(machine.crash_reservations.iter().copied());
        for c in &machine.crash_reservations {
            f.remove(Range::new(c.start, c.start.saturating_add(MIB)));
        }
        f
    } else {
        let mut f = FreeList::new(machine.ram());
        for c in &machine.crash_reservations {
            f.remove(*c);
        }
        f
    };
    free.remove(Range::new(0, MIB));
    if free.ranges().is_empty() {
        return Err(if req.crash {
            Error::NoRoom {
                what: "crash kernel",
                size: 0,
                detail: " in the crash reservation".into(),
                largest: 0,
            }
        } else {
            Error::NoRam
        });
    }

    // The protected-mode kernel: it needs init_size from its load address
    // while it decompresses itself. A vmlinux goes where it was linked.
    let (kernel_segments, kernel_addr, rip) = if elf {
        let l = vmlinux::layout(req.kernel, &mut free)?;
        (l.segments, l.base, l.entry)
    } else {
        let pm = req.kernel.get(hdr.protected_mode_offset()..).unwrap_or(&[]);
        let pm_len = pm.len() as u64;
        let kernel_memsz = page_align(pm_len.max(u64::from(hdr.init_size.unwrap_or(0))))
            .ok_or(Error::TooLarge("kernel (init_size)"))?;
        let kernel_addr = place_kernel(&hdr, &mut free, kernel_memsz, limit)?;
        let seg = Segment {
            buf: Cow::Borrowed(pm),
            mem: kernel_addr,
            memsz: kernel_memsz,
        };
        (vec![seg], kernel_addr, kernel_addr + STARTUP_64)
    };

    // The initrd, page aligned, below initrd_addr_max unless the kernel
    // takes it anywhere.
    let initrd = match req.initrd.filter(|i| !i.is_empty()) {
        None => None,
        Some(data) => {
            let size = page_align(data.len() as u64).ok_or(Error::TooLarge("initrd"))?;
            let max_end = if above_4g {
                u64::MAX
            } else {
                u64::from(hdr.initrd_addr_max.unwrap_or(0x37ff_ffff)).saturating_add(1)
            };
            let addr = free
                .take_top_down(size, PAGE_SIZE, INITRD_MIN, max_end)
                .or_else(|| free.take_top_down(size, PAGE_SIZE, MIB, max_end))
                .ok_or_else(|| no_room("initrd", size, &free, format!(" below {max_end:#x}")))?;
            Some((addr, data))
        }
    };

    // A capture kernel's core header, and its address on the command line.
    let mut cmdline = req.cmdline.to_vec();
    let mut core_header = None;
    let e820: Vec<E820Entry> = if req.crash {
        let hdr_len = page_align(crash::header_len(machine) as u64).unwrap_or(u64::MAX);
        let at = free
            .take_top_down(hdr_len, PAGE_SIZE, MIB, limit)
            .ok_or_else(|| {
                no_room(
                    "ELF core header",
                    hdr_len,
                    &free,
                    " in the crash reservation".into(),
                )
            })?;
        let bytes = crash::elf_core_header(machine)?;
        let range = Range::new(at, at + hdr_len);
        if !cmdline.is_empty() {
            cmdline.push(b' ');
        }
        cmdline.extend_from_slice(format!("elfcorehdr={}K", at >> 10).as_bytes());
        core_header = Some((at, bytes));
        crash::e820(machine, range)
    } else {
        machine
            .memmap
            .iter()
            .map(|m| E820Entry {
                addr: m.range.start,
                size: m.range.len(),
                kind: m.kind.e820_type(),
            })
            .collect()
    };
    if cmdline.len() > cmdline_max {
        return Err(Error::CmdlineTooLong {
            len: cmdline.len(),
            max: cmdline_max,
        });
    }

    // EFI runtime services survive only if the new kernel knows the kexec
    // hand-over (XLF_EFI_KEXEC) and the running one was booted through EFI;
    // otherwise the new kernel boots without EFI, finding ACPI through
    // acpi_rsdp_addr.
    let efi = machine.efi_runtime.as_ref().filter(|_| {
        hdr.xloadflag(XLF_EFI_KEXEC)
            && machine
                .boot_params
                .as_deref()
                .and_then(|p| zeropage::read_u32(p, zeropage::offsets::EFI_MEMMAP_SIZE))
                .is_some_and(|n| n != 0)
    });

    // The zero page with the command line and setup_data behind it. Kept
    // below 4 GiB: older kernels read only the low half of its pointers.
    let zp_size =
        page_align(
            zeropage::segment_len(cmdline.len(), e820.len(), efi.map(|e| e.map.len())) as u64,
        )
        .unwrap_or(u64::MAX);
    let zp_addr = free
        .take_top_down(zp_size, PAGE_SIZE, MIB, FOUR_GIB)
        .ok_or_else(|| no_room("zero page", zp_size, &free, " below 4 GiB".into()))?;
    let zp = zeropage::build(
        &header,
        machine,
        &cmdline,
        &e820,
        Placement {
            base: zp_addr,
            kernel: kernel_addr,
            initrd: initrd.map(|(a, d)| (a, d.len() as u64)),
        },
        efi,
    );

    let mut segments = kernel_segments;
    if let Some((addr, data)) = initrd {
        segments.push(Segment {
            buf: Cow::Borrowed(data),
            mem: addr,
            memsz: page_align(data.len() as u64).unwrap_or(0),
        });
    }
    segments.push(Segment {
        buf: Cow::Owned(zp),
        mem: zp_addr,
        memsz: zp_size,
    });
    if let Some((addr, bytes)) = core_header {
        let memsz = page_align(bytes.len() as u64).unwrap_or(0);
        segments.push(Segment {
            buf: Cow::Owned(bytes),
            mem: addr,
            memsz,
        });
    }
    segments.sort_by_key(|s| s.mem);

    // The purgatory last: its parameters describe all the others.
    let purg_size = page_align(purgatory::MEMSZ).unwrap_or(u64::MAX);
    let purg_addr = free
        .take_top_down(purg_size, PAGE_SIZE, MIB, FOUR_GIB)
        .ok_or_else(|| no_room("purgatory", purg_size, &free, String::new()))?;
    let mut params = purgatory_params(
        &segments,
        req.no_checks,
        rip,
        zp_addr,
        (purg_addr + purgatory::MEMSZ) & !15,
    )?;
    if let Some(c) = req.console {
        params.console_port = u64::from(c.port);
        params.console_divisor = match c.baud {
            None => 0,
            Some(b) => SerialConsole::divisor_for(b)
                .ok_or(Error::BadBaud(b))?
                .into(),
        };
    }
    let image = purgatory::image_at(purg_addr, &params)?;
    segments.push(Segment {
        buf: Cow::Owned(image),
        mem: purg_addr,
        memsz: purg_size,
    });
    segments.sort_by_key(|s| s.mem);

    Ok(LoadPlan {
        entry: purg_addr + purgatory::ENTRY_OFFSET,
        segments,
        flags: KEXEC_ARCH_X86_64 | if req.crash { KEXEC_ON_CRASH } else { 0 },
        kernel_addr,
        zero_page_addr: zp_addr,
        cmdline,
    })
}

fn check_loadable(hdr: &SetupHeader) -> Result<()> {
    if hdr.version < 0x020c || !hdr.xloadflag(XLF_KERNEL_64) {
        return Err(Error::No64BitEntry {
            version: hdr.version,
            xloadflags: hdr.xloadflags.unwrap_or(0),
        });
    }
    if hdr.loadflags & LOADED_HIGH == 0 {
        return Err(Error::ZImage);
    }
    Ok(())
}

fn place_kernel(hdr: &SetupHeader, free: &mut FreeList, memsz: u64, limit: u64) -> Result<u64> {
    let pref = hdr.pref_address.unwrap_or(MIB).max(MIB);
    if hdr.relocatable_kernel != Some(true) {
        // kexec_load refuses a segment that does not start on a page
        // (EADDRNOTAVAIL); say why here instead.
        if pref % PAGE_SIZE != 0 {
            return Err(Error::UnalignedFixedAddress(pref));
        }
        let r = Range::new(pref, pref.saturating_add(memsz));
        if r.end <= limit && free.take_exact(r) {
            return Ok(pref);
        }
        return Err(Error::KernelAddressTaken {
            addr: pref,
            range: r,
        });
    }
    let align = u64::from(hdr.kernel_alignment.unwrap_or(0)).max(PAGE_SIZE);
    if !align.is_power_of_two() {
        return Err(Error::BadAlignment(align));
    }
    // A relocatable 64-bit kernel decompresses at max(load address,
    // LOAD_PHYSICAL_ADDR = pref_address): loading it lower would let it
    // write outside what we reserved.
    free.take_top_down(memsz, align, pref, limit)
        .ok_or_else(|| {
            no_room(
                "kernel",
                memsz,
                free,
                format!(" aligned to {align:#x}, above {pref:#x}"),
            )
        })
}

fn no_room(what: &'static str, size: u64, free: &FreeList, detail: String) -> Error {
    Error::NoRoom {
        what,
        size,
        detail,
        largest: free.largest(),
    }
}

/// Entry registers and the digest over every segment's data, in address
/// order. Each region is the bytes we supply (`buf`), not the zero-filled
/// tail up to `memsz`: that tail is written by the kernel, not by us, and
/// for the kernel segment it is most of `init_size`, so leaving it out cuts
/// the purgatory's work (in the dark, between the two kernels) by about 3x.
fn purgatory_params(
    segments: &[Segment<'_>],
    no_checks: bool,
    rip: u64,
    rsi: u64,
    rsp: u64,
) -> Result<Params> {
    let mut p = Params::EMPTY;
    p.entry.rip = rip;
    p.entry.rsi = rsi;
    p.entry.rsp = rsp;
    if no_checks {
        p.skip_checks = 1;
        return Ok(p);
    }
    let regions: Vec<&Segment<'_>> = segments.iter().filter(|s| !s.buf.is_empty()).collect();
    if regions.len() > p.regions.len() {
        return Err(purgatory::Error::TooManyRegions(regions.len()).into());
    }
    let mut h = Sha256::new();
    for (slot, s) in p.regions.iter_mut().zip(&regions) {
        *slot = Region {
            start: s.mem,
            len: s.buf.len() as u64,
        };
        h.update(&s.buf);
    }
    p.digest = h.finalize().into();
    Ok(p)
}
