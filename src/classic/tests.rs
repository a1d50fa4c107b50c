//! Planner tests on a fake machine: a `/sys` + `/proc` tree in a temporary
//! directory read through [`Machine::from_root`], and synthetic bzImage
//! headers. The addresses expected for the QEMU-like machine are those
//! kexec-tools 2.0.25 chose in a real guest with the same memory map.

use super::memory::{Range, MIB};
use super::zeropage::{offsets, read_u32, read_u64};
use super::*;
use crate::image::bzimage::HDRS_MAGIC;
use kexec_purgatory::params::Params;
use sha2::Digest;
use std::fs;
use std::path::Path;

struct Kernel {
    version: u16,
    xloadflags: u16,
    relocatable: bool,
    align: u32,
    pref: u64,
    init_size: u32,
    cmdline_size: u32,
    pm_len: usize,
}

impl Default for Kernel {
    /// Like Debian's 6.1 cloud kernel.
    fn default() -> Self {
        Kernel {
            version: 0x020f,
            xloadflags: 0x7f,
            relocatable: true,
            align: 0x20_0000,
            pref: 0x100_0000,
            init_size: 0x337_8000,
            cmdline_size: 2047,
            // Smaller than the real 0xd827c0 to keep debug-build hashing
            // fast; placement depends on init_size, not on this.
            pm_len: 0x8_27c0,
        }
    }
}

impl Kernel {
    fn image(&self) -> Vec<u8> {
        let mut b = vec![0u8; 1024 + self.pm_len];
        b[0x1f1] = 1; // setup_sects: protected-mode code at 1024
        b[0x1fe..0x200].copy_from_slice(&0xaa55u16.to_le_bytes());
        b[0x200] = 0xeb;
        b[0x201] = 0x6a; // jump: header ends at 0x26c
        b[0x202..0x206].copy_from_slice(&HDRS_MAGIC.to_le_bytes());
        b[0x206..0x208].copy_from_slice(&self.version.to_le_bytes());
        b[0x211] = 1; // LOADED_HIGH
        b[0x22c..0x230].copy_from_slice(&0x7fff_ffffu32.to_le_bytes());
        b[0x230..0x234].copy_from_slice(&self.align.to_le_bytes());
        b[0x234] = self.relocatable as u8;
        b[0x236..0x238].copy_from_slice(&self.xloadflags.to_le_bytes());
        b[0x238..0x23c].copy_from_slice(&self.cmdline_size.to_le_bytes());
        b[0x258..0x260].copy_from_slice(&self.pref.to_le_bytes());
        b[0x260..0x264].copy_from_slice(&self.init_size.to_le_bytes());
        for (i, v) in b[1024..].iter_mut().enumerate() {
            *v = (i * 31 % 251) as u8;
        }
        b
    }
}

/// QEMU's SeaBIOS map for `-m 1G`, as `/sys/firmware/memmap` shows it.
const QEMU_1G: &[(u64, u64, &str)] = &[
    (0, 0x9_fbff, "System RAM"),
    (0x9_fc00, 0x9_ffff, "Reserved"),
    (0xf_0000, 0xf_ffff, "Reserved"),
    (0x10_0000, 0x3ffd_ffff, "System RAM"),
    (0x3ffe_0000, 0x3fff_ffff, "Reserved"),
    (0xfffc_0000, 0xffff_ffff, "Reserved"),
    (0xfd_0000_0000, 0xff_ffff_ffff, "Reserved"),
];

fn write(p: &Path, s: impl AsRef<[u8]>) {
    fs::create_dir_all(p.parent().unwrap()).unwrap();
    fs::write(p, s).unwrap();
}

fn fake_root(map: &[(u64, u64, &str)], crash: Option<(u64, u64)>) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    for (i, (start, end, ty)) in map.iter().enumerate() {
        let d = root.join(format!("sys/firmware/memmap/{i}"));
        write(&d.join("start"), format!("0x{start:x}\n"));
        write(&d.join("end"), format!("0x{end:x}\n"));
        write(&d.join("type"), format!("{ty}\n"));
    }
    let mut iomem = String::new();
    for (start, end, ty) in map {
        iomem.push_str(&format!("{start:08x}-{end:08x} : {ty}\n"));
        if let (Some((cs, ce)), "System RAM") = (crash, *ty) {
            if cs >= *start && ce <= *end {
                iomem.push_str(&format!("  {cs:08x}-{ce:08x} : Crash kernel\n"));
            }
        }
    }
    write(&root.join("proc/iomem"), iomem);
    let mut bp = vec![0u8; 4096];
    bp[0x07] = 80;
    bp[0x0e] = 25;
    bp[0x0f] = 0x22; // not the default 1: proves screen_info was copied
    bp[0x70..0x78].copy_from_slice(&0xf59d0u64.to_le_bytes());
    bp[0x23c..0x240].copy_from_slice(&0u32.to_le_bytes());
    bp[0x240..0x248].copy_from_slice(&0x1234u64.to_le_bytes());
    write(&root.join("sys/kernel/boot_params/data"), bp);
    write(
        &root.join("sys/kernel/vmcoreinfo"),
        "0x0000000002e4d000 1000\n",
    );
    for cpu in 0..2u64 {
        let d = root.join(format!("sys/devices/system/cpu/cpu{cpu}"));
        write(
            &d.join("crash_notes"),
            format!("{:x}\n", 0x3fc1_e8c0 + cpu * 0x4_0000),
        );
        write(&d.join("crash_notes_size"), "336\n");
    }
    dir
}

/// The `setup_data` chain of a zero-page segment based at `base`: (type,
/// offset of the node in the segment, data length), head first.
fn setup_nodes(zp: &[u8], base: u64) -> Vec<(u32, usize, u32)> {
    let mut nodes = Vec::new();
    let mut next = read_u64(zp, offsets::SETUP_DATA).unwrap();
    while next != 0 && nodes.len() < 8 {
        let off = (next - base) as usize;
        nodes.push((
            read_u32(zp, off + 8).unwrap(),
            off,
            read_u32(zp, off + 12).unwrap(),
        ));
        next = read_u64(zp, off).unwrap();
    }
    nodes
}

fn qemu_machine() -> Machine {
    let dir = fake_root(QEMU_1G, None);
    Machine::from_root(dir.path()).unwrap()
}

fn req<'a>(kernel: &'a [u8], initrd: Option<&'a [u8]>, cmdline: &'a [u8]) -> Request<'a> {
    Request {
        kernel,
        initrd,
        cmdline,
        crash: false,
        no_checks: false,
        console: None,
    }
}

fn segment_at<'p>(plan: &'p LoadPlan<'_>, mem: u64) -> &'p crate::syscall::Segment<'p> {
    plan.segments
        .iter()
        .find(|s| s.mem == mem)
        .expect("segment at address")
}

fn purgatory_params(plan: &LoadPlan) -> (u64, Vec<u8>) {
    let s = plan
        .segments
        .iter()
        .find(|s| s.mem <= plan.entry && plan.entry < s.mem + s.memsz)
        .unwrap();
    let off = purgatory::PARAMS_OFFSET;
    (s.mem, s.buf[off..off + Params::SIZE].to_vec())
}

/// Word indices of the parameter block's fields.
const ENTRY: usize = std::mem::offset_of!(Params, entry) / 8;
const REGIONS: usize = std::mem::offset_of!(Params, regions) / 8;
const CONSOLE_PORT: usize = std::mem::offset_of!(Params, console_port) / 8;

fn word(b: &[u8], i: usize) -> u64 {
    u64::from_le_bytes(b[i * 8..i * 8 + 8].try_into().unwrap())
}

fn check_invariants(plan: &LoadPlan, allowed: &[Range]) {
    assert!(plan.segments.len() <= 16);
    for w in plan.segments.windows(2) {
        assert!(w[0].mem + w[0].memsz <= w[1].mem, "sorted and disjoint");
    }
    for s in &plan.segments {
        assert_eq!(s.mem % 4096, 0);
        assert_eq!(s.memsz % 4096, 0);
        assert!(s.buf.len() as u64 <= s.memsz);
        let r = Range::new(s.mem, s.mem + s.memsz);
        assert!(
            allowed.iter().any(|a| a.contains_range(&r)),
            "segment {r} outside {allowed:?}"
        );
    }
}

#[test]
fn places_like_kexec_tools_on_a_qemu_machine() {
    let m = qemu_machine();
    let k = Kernel::default().image();
    let initrd = vec![7u8; 0x10_cd1e];
    let plan = plan(&req(&k, Some(&initrd), b"console=ttyS0"), &m).unwrap();
    // kexec-tools 2.0.25 in the same guest: kernel 0x3cc00000, initrd 0x3caf3000.
    assert_eq!(plan.kernel_addr, 0x3cc0_0000);
    let kseg = segment_at(&plan, 0x3cc0_0000);
    assert_eq!(kseg.memsz, 0x337_8000, "init_size is reserved");
    assert_eq!(&*kseg.buf, &k[1024..]);
    let iseg = segment_at(&plan, 0x3caf_3000);
    assert_eq!(&*iseg.buf, &initrd[..]);
    // The kernel and initrd segments point into the caller's buffers (the
    // files' mappings in the CLI): the kernel's copy is the only one.
    assert!(matches!(kseg.buf, std::borrow::Cow::Borrowed(_)));
    assert!(matches!(iseg.buf, std::borrow::Cow::Borrowed(_)));
    assert_eq!(plan.flags, KEXEC_ARCH_X86_64);
    check_invariants(&plan, &[Range::new(MIB, 0x3ffe_0000)]);
}

#[test]
fn zero_page_fields() {
    let m = qemu_machine();
    let k = Kernel::default().image();
    let initrd = vec![1u8; 5000];
    let plan = plan(&req(&k, Some(&initrd), b"console=ttyS0 quiet"), &m).unwrap();
    let zp = &segment_at(&plan, plan.zero_page_addr).buf;
    assert_eq!(zp[offsets::TYPE_OF_LOADER], 0xd0);
    assert_eq!(zp[offsets::SENTINEL], 0);
    assert_eq!(read_u32(zp, 0x202), Some(HDRS_MAGIC), "setup header copied");
    assert_eq!(read_u32(zp, 0x260), Some(0x337_8000));
    assert_eq!(zp[0x211], 0, "loadflags cleared");
    // Command line right after the zero page, NUL-terminated.
    let cmd = plan.zero_page_addr + 4096;
    assert_eq!(read_u32(zp, offsets::CMD_LINE_PTR), Some(cmd as u32));
    assert_eq!(
        read_u32(zp, offsets::EXT_CMD_LINE_PTR),
        Some((cmd >> 32) as u32)
    );
    assert_eq!(&zp[4096..4096 + 20], b"console=ttyS0 quiet\0");
    // Initrd.
    let initrd_addr = plan
        .segments
        .iter()
        .find(|s| *s.buf == initrd[..])
        .unwrap()
        .mem;
    assert_eq!(
        read_u32(zp, offsets::RAMDISK_IMAGE),
        Some(initrd_addr as u32)
    );
    assert_eq!(read_u32(zp, offsets::RAMDISK_SIZE), Some(5000));
    // e820 = the firmware map, verbatim.
    assert_eq!(zp[offsets::E820_ENTRIES] as usize, QEMU_1G.len());
    let e = offsets::E820_TABLE + 3 * 20;
    assert_eq!(read_u64(zp, e), Some(0x10_0000));
    assert_eq!(read_u64(zp, e + 8), Some(0x3ffe_0000 - 0x10_0000));
    assert_eq!(read_u32(zp, e + 16), Some(1));
    assert_eq!(read_u32(zp, offsets::E820_TABLE + 20 + 16), Some(2));
    // Memory sizes: KiB above 1 MiB of the RAM range spanning 1 MiB.
    assert_eq!(
        read_u32(zp, offsets::ALT_MEM_K),
        Some((0x3ffe_0000 - 0x10_0000) >> 10)
    );
    assert_eq!(
        u16::from_le_bytes([zp[offsets::EXT_MEM_K], zp[offsets::EXT_MEM_K + 1]]),
        0xfc00
    );
    // From the running kernel's boot_params.
    assert_eq!(zp[0x0f], 0x22, "screen_info copied");
    assert_eq!(read_u64(zp, offsets::ACPI_RSDP), Some(0xf59d0));
    assert_eq!(read_u64(zp, offsets::HARDWARE_SUBARCH + 4), Some(0x1234));
    // One setup_data node: the RNG seed drawn with the machine snapshot.
    let nodes = setup_nodes(zp, plan.zero_page_addr);
    assert_eq!(nodes.len(), 1, "{nodes:?}");
    let (kind, off, len) = nodes[0];
    assert_eq!((kind, len), (zeropage::SETUP_RNG_SEED, 32));
    assert!(off >= 4096 + 20 && off % 8 == 0, "after the command line");
    assert_eq!(&zp[off + 16..off + 48], &m.rng_seed.unwrap()[..]);
}

#[test]
fn purgatory_gets_entry_registers_and_a_digest_of_every_other_segment() {
    let m = qemu_machine();
    let k = Kernel::default().image();
    let initrd = vec![3u8; 100_000];
    let plan = plan(&req(&k, Some(&initrd), b"x"), &m).unwrap();
    let (base, p) = purgatory_params(&plan);
    assert_eq!(plan.entry, base + purgatory::ENTRY_OFFSET);
    assert_eq!(word(&p, 0), purgatory::PARAMS_MAGIC);
    assert_eq!(word(&p, 1), 0, "checks enabled");
    let (rsi, rsp, rip) = (
        word(&p, ENTRY + 4),
        word(&p, ENTRY + 6),
        word(&p, ENTRY + 16),
    );
    assert_eq!(rsi, plan.zero_page_addr);
    assert_eq!(rip, plan.kernel_addr + 0x200);
    assert!(rsp > base && rsp <= base + purgatory::MEMSZ && rsp % 16 == 0);
    // Regions: every other segment's data, in address order; then the digest.
    let others: Vec<_> = plan.segments.iter().filter(|s| s.mem != base).collect();
    let mut h = sha2::Sha256::new();
    for (i, s) in others.iter().enumerate() {
        assert_eq!(
            (word(&p, REGIONS + 2 * i), word(&p, REGIONS + 1 + 2 * i)),
            (s.mem, s.buf.len() as u64)
        );
        h.update(&s.buf);
    }
    assert_eq!(word(&p, REGIONS + 2 * others.len() + 1), 0, "list ends");
    let digest: [u8; 32] = h.finalize().into();
    assert_eq!(&p[Params::SIZE - 32..], &digest);
}

#[test]
fn no_checks_sets_skip_checks() {
    let m = qemu_machine();
    let k = Kernel::default().image();
    let mut r = req(&k, None, b"");
    r.no_checks = true;
    let plan = plan(&r, &m).unwrap();
    let (_, p) = purgatory_params(&plan);
    assert_eq!(word(&p, 1), 1);
    assert_eq!(plan.segments.len(), 3, "kernel, zero page, purgatory");
}

#[test]
fn console_serial_reaches_the_purgatory() {
    let m = qemu_machine();
    let k = Kernel::default().image();
    let mut r = req(&k, None, b"");
    let console_words = |r: &Request| {
        let (_, p) = purgatory_params(&plan(r, &m).unwrap());
        (word(&p, CONSOLE_PORT), word(&p, CONSOLE_PORT + 1))
    };
    assert_eq!(console_words(&r), (0, 0), "silent unless asked");
    r.console = Some(SerialConsole {
        port: 0x2f8,
        baud: Some(38_400),
    });
    assert_eq!(console_words(&r), (0x2f8, 3));
    r.console = Some(SerialConsole {
        port: 0x3f8,
        baud: None,
    });
    assert_eq!(
        console_words(&r),
        (0x3f8, 0),
        "no rate: the UART keeps the old kernel's settings"
    );
    r.console = Some(SerialConsole {
        port: 0x3f8,
        baud: Some(12_345),
    });
    assert!(matches!(plan(&r, &m), Err(Error::BadBaud(12_345))));
}

#[test]
fn serial_rates_need_an_exact_divisor_from_1_to_12() {
    let d = SerialConsole::divisor_for;
    assert_eq!(
        [d(115_200), d(57_600), d(38_400), d(14_400), d(9_600)],
        [Some(1), Some(2), Some(3), Some(8), Some(12)]
    );
    for bad in [0, 4_800, 12_345, 230_400, u32::MAX] {
        assert_eq!(d(bad), None, "{bad}");
    }
}

#[test]
fn long_memory_maps_continue_in_setup_e820_ext() {
    let mut map: Vec<(u64, u64, &str)> = vec![
        (0, 0x9_fbff, "System RAM"),
        (0x10_0000, 0x3fff_ffff, "System RAM"),
    ];
    for i in 0..150u64 {
        let s = 0x1_0000_0000 + i * 0x2000;
        map.push((s, s + 0xfff, "Reserved"));
    }
    let dir = fake_root(&map, None);
    let m = Machine::from_root(dir.path()).unwrap();
    let k = Kernel::default().image();
    let plan = plan(&req(&k, None, b"console=ttyS0"), &m).unwrap();
    let zp = &segment_at(&plan, plan.zero_page_addr).buf;
    assert_eq!(zp[offsets::E820_ENTRIES], 128);
    let nodes = setup_nodes(zp, plan.zero_page_addr);
    let &(kind, off, len) = nodes.last().unwrap();
    assert!(off >= 4096 + 14 && off % 8 == 0, "after the command line");
    assert_eq!(kind, 1, "SETUP_E820_EXT");
    assert_eq!(len, 24 * 20);
    assert_eq!(
        read_u64(zp, off + 16 + 23 * 20),
        Some(0x1_0000_0000 + 149 * 0x2000)
    );
}

#[test]
fn crash_kernel_stays_in_the_reservation() {
    let crash = (0x2f00_0000u64, 0x3eff_ffffu64);
    let dir = fake_root(QEMU_1G, Some(crash));
    let m = Machine::from_root(dir.path()).unwrap();
    assert_eq!(
        m.crash_reservations,
        vec![Range::new(0x2f00_0000, 0x3f00_0000)]
    );
    let k = Kernel::default().image();
    let initrd = vec![9u8; 0x10_0000];
    let mut r = req(&k, Some(&initrd), b"console=ttyS0 irqpoll");
    r.crash = true;
    let plan = plan(&r, &m).unwrap();
    assert_eq!(plan.flags, KEXEC_ARCH_X86_64 | KEXEC_ON_CRASH);
    // Inside the reservation, its lowest MiB left to the kernel's control pages.
    check_invariants(&plan, &[Range::new(0x2f10_0000, 0x3f00_0000)]);
    // elfcorehdr= on the command line points at the core header segment.
    let cmd = String::from_utf8(plan.cmdline.clone()).unwrap();
    let k_arg = cmd
        .split_whitespace()
        .find_map(|a| a.strip_prefix("elfcorehdr="))
        .unwrap();
    let hdr_addr = k_arg.strip_suffix('K').unwrap().parse::<u64>().unwrap() << 10;
    let hdr = segment_at(&plan, hdr_addr);
    assert_eq!(&hdr.buf[..4], b"\x7fELF");
    let zp = &segment_at(&plan, plan.zero_page_addr).buf;
    assert!(zp[4096..].starts_with(cmd.as_bytes()));
    // The capture kernel's RAM: below 1 MiB, and the reservation minus the header.
    let n = zp[offsets::E820_ENTRIES] as usize;
    let ram: Vec<(u64, u64)> = (0..n)
        .map(|i| offsets::E820_TABLE + i * 20)
        .filter(|&e| read_u32(zp, e + 16) == Some(1))
        .map(|e| {
            (
                read_u64(zp, e).unwrap(),
                read_u64(zp, e).unwrap() + read_u64(zp, e + 8).unwrap(),
            )
        })
        .collect();
    let mut expect = vec![(0, 0x9_fc00)];
    for r in Range::new(0x2f00_0000, 0x3f00_0000).minus(&Range::new(hdr_addr, hdr_addr + hdr.memsz))
    {
        expect.push((r.start, r.end));
    }
    assert_eq!(ram, expect);
}

#[test]
fn crash_without_reservation_is_an_error() {
    let m = qemu_machine();
    let k = Kernel::default().image();
    let mut r = req(&k, None, b"");
    r.crash = true;
    assert!(matches!(plan(&r, &m), Err(Error::NoCrashReservation)));
}

#[test]
fn normal_loads_avoid_the_crash_reservation() {
    let dir = fake_root(QEMU_1G, Some((0x2f00_0000, 0x3eff_ffff)));
    let m = Machine::from_root(dir.path()).unwrap();
    let k = Kernel::default().image();
    let plan = plan(&req(&k, None, b""), &m).unwrap();
    check_invariants(
        &plan,
        &[
            Range::new(MIB, 0x2f00_0000),
            Range::new(0x3f00_0000, 0x3ffe_0000),
        ],
    );
}

#[test]
fn kernels_that_cannot_be_loaded_are_refused() {
    let m = qemu_machine();
    let not64 = Kernel {
        xloadflags: 0,
        ..Kernel::default()
    }
    .image();
    let e = plan(&req(&not64, None, b""), &m).unwrap_err();
    assert!(
        matches!(e, Error::No64BitEntry { xloadflags: 0, .. }),
        "{e}"
    );
    assert!(e.to_string().contains("XLF_KERNEL_64"));
    let old = Kernel {
        version: 0x020b,
        ..Kernel::default()
    }
    .image();
    assert!(matches!(
        plan(&req(&old, None, b""), &m),
        Err(Error::No64BitEntry {
            version: 0x020b,
            ..
        })
    ));
    assert!(matches!(
        plan(&req(b"not a kernel", None, b""), &m),
        Err(Error::Image(_))
    ));
    let odd = Kernel {
        align: 0x30_0000,
        ..Kernel::default()
    }
    .image();
    assert!(matches!(
        plan(&req(&odd, None, b""), &m),
        Err(Error::BadAlignment(0x30_0000))
    ));
    let mut zimage = Kernel::default().image();
    zimage[0x211] = 0;
    assert!(matches!(
        plan(&req(&zimage, None, b""), &m),
        Err(Error::ZImage)
    ));
}

#[test]
fn five_level_paging_needs_a_kernel_that_supports_it() {
    let mut m = qemu_machine();
    m.page_offset = 0xff11_0000_0000_0000;
    assert!(m.five_level_paging());
    let k4 = Kernel {
        xloadflags: 0x7f & !0x20,
        ..Kernel::default()
    }
    .image();
    let e = plan(&req(&k4, None, b""), &m).unwrap_err();
    assert!(matches!(e, Error::No5LevelPaging), "{e}");
    assert!(plan(&req(&Kernel::default().image(), None, b""), &m).is_ok());
    m.page_offset = super::machine::DEFAULT_PAGE_OFFSET;
    assert!(plan(&req(&k4, None, b""), &m).is_ok());
}

/// Found by the `classic_plan` fuzz target: a fixed kernel whose
/// pref_address is not page aligned got a segment kexec_load would refuse.
#[test]
fn fixed_kernels_at_an_unaligned_pref_address_are_refused() {
    let k = Kernel {
        relocatable: false,
        pref: 0x60_0002,
        ..Kernel::default()
    }
    .image();
    let e = plan(&req(&k, None, b""), &qemu_machine()).unwrap_err();
    assert!(matches!(e, Error::UnalignedFixedAddress(0x60_0002)), "{e}");
}

#[test]
fn fixed_kernels_go_to_pref_address_or_fail() {
    let k = Kernel {
        relocatable: false,
        ..Kernel::default()
    }
    .image();
    let plan = plan(&req(&k, None, b""), &qemu_machine()).unwrap();
    assert_eq!(plan.kernel_addr, 0x100_0000);
    // RAM starting at 32 MiB: 16 MiB is not available.
    let map = [
        (0u64, 0x9_fbffu64, "System RAM"),
        (0x200_0000, 0x3fff_ffff, "System RAM"),
    ];
    let dir = fake_root(&map, None);
    let m = Machine::from_root(dir.path()).unwrap();
    let e = super::plan(&req(&k, None, b""), &m).unwrap_err();
    assert!(
        matches!(
            e,
            Error::KernelAddressTaken {
                addr: 0x100_0000,
                ..
            }
        ),
        "{e}"
    );
}

#[test]
fn command_line_limits() {
    let m = qemu_machine();
    let k = Kernel {
        cmdline_size: 16,
        ..Kernel::default()
    }
    .image();
    assert!(plan(&req(&k, None, b"0123456789abcdef"), &m).is_ok());
    let e = plan(&req(&k, None, b"0123456789abcdefg"), &m).unwrap_err();
    assert!(
        matches!(e, Error::CmdlineTooLong { len: 17, max: 16 }),
        "{e}"
    );
    assert!(matches!(
        plan(&req(&k, None, b"a\0b"), &m),
        Err(Error::CmdlineNul(1))
    ));
}

#[test]
fn no_room_is_reported_with_sizes() {
    // 96 MiB: the kernel takes 44..95.5 MiB, leaving 43 MiB below it.
    let map = [
        (0u64, 0x9_fbffu64, "System RAM"),
        (0x10_0000, 0x5ff_ffff, "System RAM"),
    ];
    let dir = fake_root(&map, None);
    let m = Machine::from_root(dir.path()).unwrap();
    let k = Kernel::default().image();
    let initrd = vec![0u8; 48 << 20];
    let e = plan(&req(&k, Some(&initrd), b""), &m).unwrap_err();
    assert!(matches!(e, Error::NoRoom { what: "initrd", .. }), "{e}");
    let small = [
        (0u64, 0x9_fbffu64, "System RAM"),
        (0x10_0000, 0x1ff_ffff, "System RAM"),
    ];
    let dir = fake_root(&small, None);
    let m = Machine::from_root(dir.path()).unwrap();
    assert!(matches!(
        plan(&req(&k, None, b""), &m),
        Err(Error::NoRoom { what: "kernel", .. })
    ));
}

#[test]
fn the_4gib_limit_follows_xloadflags() {
    let map = [
        (0u64, 0x9_fbffu64, "System RAM"),
        (0x10_0000, 0xbfff_ffff, "System RAM"),
        (0x1_0000_0000, 0x1_3fff_ffff, "System RAM"),
    ];
    let dir = fake_root(&map, None);
    let m = Machine::from_root(dir.path()).unwrap();
    let initrd = vec![5u8; 4096];
    let high = Kernel::default().image();
    let plan_high = plan(&req(&high, Some(&initrd), b""), &m).unwrap();
    assert!(plan_high.kernel_addr >= 0x1_0000_0000);
    assert!(plan_high.zero_page_addr < 0x1_0000_0000);
    let low = Kernel {
        xloadflags: 0x1,
        ..Kernel::default()
    }
    .image();
    let plan_low = plan(&req(&low, Some(&initrd), b""), &m).unwrap();
    check_invariants(&plan_low, &[Range::new(MIB, 0xc000_0000)]);
}

#[test]
fn a_missing_memory_map_is_an_error() {
    let dir = tempfile::tempdir().unwrap();
    let e = Machine::from_root(dir.path()).unwrap_err();
    assert!(e.to_string().contains("sys/firmware/memmap"), "{e}");
}

#[test]
fn efi_machines_hand_over_the_runtime_map_to_kernels_that_take_it() {
    let dir = fake_root(QEMU_1G, None);
    let root = dir.path();
    let efi = root.join("sys/firmware/efi");
    write(
        &efi.join("systab"),
        "ACPI20=0x3f77d014\nACPI=0x3f77d000\nSMBIOS=0x3f520000\n",
    );
    write(&efi.join("fw_vendor"), "0x3f6ab018\n");
    write(&efi.join("runtime"), "0x3f6aaa98\n");
    write(&efi.join("config_table"), "0x3f6a9018\n");
    for (i, (ty, phys, virt, pages)) in [
        (5u32, 0x3f4ec000u64, 0xfffffffeee000000u64, 0x10u64),
        (6, 0x3f500000, 0xfffffffeee010000, 0x20),
    ]
    .iter()
    .enumerate()
    {
        let d = efi.join(format!("runtime-map/{i}"));
        write(&d.join("type"), format!("0x{ty:x}\n"));
        write(&d.join("phys_addr"), format!("0x{phys:x}\n"));
        write(&d.join("virt_addr"), format!("0x{virt:x}\n"));
        write(&d.join("num_pages"), format!("0x{pages:x}\n"));
        write(&d.join("attribute"), "0x800000000000000f\n");
    }
    // The running kernel's efi_info: "EL64", systab, a non-empty memmap.
    let mut bp = fs::read(root.join("sys/kernel/boot_params/data")).unwrap();
    bp[0x1c0..0x1c4].copy_from_slice(b"EL64");
    bp[0x1c4..0x1c8].copy_from_slice(&0x3f6a_a018u32.to_le_bytes());
    bp[0x1cc..0x1d0].copy_from_slice(&1u32.to_le_bytes());
    bp[0x1d4..0x1d8].copy_from_slice(&0x1b00u32.to_le_bytes());
    bp[0x70..0x78].copy_from_slice(&0u64.to_le_bytes());
    write(&root.join("sys/kernel/boot_params/data"), bp);
    let m = Machine::from_root(root).unwrap();
    assert!(m.efi);
    assert_eq!(m.efi_acpi_rsdp, Some(0x3f77_d014));
    assert_eq!(m.efi_runtime.as_ref().unwrap().map.len(), 2);

    let k = Kernel::default().image();
    let plan = plan(&req(&k, None, b"console=ttyS0"), &m).unwrap();
    let zp = &segment_at(&plan, plan.zero_page_addr).buf;
    assert_eq!(read_u64(zp, offsets::ACPI_RSDP), Some(0x3f77_d014));
    assert_eq!(
        &zp[offsets::EFI_LOADER_SIGNATURE..offsets::EFI_LOADER_SIGNATURE + 4],
        b"EL64"
    );
    assert_eq!(
        read_u32(zp, offsets::EFI_LOADER_SIGNATURE + 4),
        Some(0x3f6a_a018),
        "efi_systab"
    );
    assert_eq!(read_u32(zp, offsets::EFI_MEMDESC_SIZE), Some(40));
    assert_eq!(read_u32(zp, offsets::EFI_MEMMAP_SIZE), Some(80));
    let map = read_u32(zp, offsets::EFI_MEMMAP).unwrap() as u64 - plan.zero_page_addr;
    let d1 = map as usize + 40;
    assert_eq!(read_u32(zp, d1), Some(6));
    assert_eq!(read_u64(zp, d1 + 8), Some(0x3f50_0000));
    assert_eq!(read_u64(zp, d1 + 16), Some(0xffff_fffe_ee01_0000));
    assert_eq!(read_u64(zp, d1 + 24), Some(0x20));
    // The SETUP_EFI node heads the setup_data chain.
    let node = (read_u64(zp, offsets::SETUP_DATA).unwrap() - plan.zero_page_addr) as usize;
    assert_eq!(read_u32(zp, node + 8), Some(4));
    assert_eq!(read_u32(zp, node + 12), Some(96));
    assert_eq!(read_u64(zp, node + 16), Some(0x3f6a_b018), "fw_vendor");
    assert_eq!(read_u64(zp, node + 32), Some(0x3f6a_9018), "tables");
    assert_eq!(read_u64(zp, node + 40), Some(0x3f52_0000), "smbios");

    // A kernel without XLF_EFI_KEXEC boots without EFI: no efi_info, no node.
    let old = Kernel {
        xloadflags: 0x7f & !0x10,
        ..Kernel::default()
    }
    .image();
    let plan = super::plan(&req(&old, None, b""), &m).unwrap();
    let zp = &segment_at(&plan, plan.zero_page_addr).buf;
    assert_eq!(read_u32(zp, offsets::EFI_LOADER_SIGNATURE), Some(0));
    assert_eq!(
        setup_nodes(zp, plan.zero_page_addr)
            .iter()
            .map(|n| n.0)
            .collect::<Vec<_>>(),
        [zeropage::SETUP_RNG_SEED]
    );
    assert_eq!(
        read_u64(zp, offsets::ACPI_RSDP),
        Some(0x3f77_d014),
        "ACPI still found"
    );
}

/// Whatever the header says, planning returns a result or an error, never a
/// panic (the inputs are user files; the image parsers are fuzzed the same way).
#[test]
fn mutated_headers_never_panic() {
    let m = qemu_machine();
    let base = Kernel {
        pm_len: 0x2000,
        ..Kernel::default()
    }
    .image();
    let mut seed = 0x2545_f491_4f6c_dd1du64;
    let mut next = move || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    for _ in 0..3000 {
        let mut k = base.clone();
        for _ in 0..(next() % 8 + 1) {
            let at = 0x1f0 + (next() % 0x80) as usize;
            k[at] = next() as u8;
        }
        let len = if next() % 4 == 0 {
            (next() % k.len() as u64) as usize
        } else {
            k.len()
        };
        let initrd = [1u8; 10];
        let mut r = req(&k[..len], Some(&initrd), b"console=ttyS0");
        r.crash = next() % 8 == 0;
        let _ = plan(&r, &m);
    }
}

/// A vmlinux-shaped ELF: `startup_64` `entry_off` bytes into a text segment
/// at 16 MiB, a per-CPU segment with vaddr 0 right behind it, and a data
/// segment sharing the per-CPU segment's last page.
fn vmlinux(entry_physical: bool) -> Vec<u8> {
    use crate::image::elf;
    let text = vec![0x90u8; 0x3000];
    let base = elf::build(
        goblin::elf::header::ET_EXEC,
        goblin::elf::header::EM_X86_64,
        0xffff_ffff_8100_0000,
        0x100_0000,
        &text,
        &[],
        false,
    );
    let mut b = base;
    // Append two more PT_LOADs by rewriting the program header table: the
    // builder makes one, so the file is rebuilt by hand here.
    let phoff = u64::from_le_bytes(b[32..40].try_into().unwrap()) as usize;
    let code_off = u64::from_le_bytes(b[phoff + 8..phoff + 16].try_into().unwrap());
    let percpu = vec![0x11u8; 0x1800];
    let data = vec![0x22u8; 0x900];
    let percpu_off = b.len() as u64;
    b.extend_from_slice(&percpu);
    let data_off = b.len() as u64;
    b.extend_from_slice(&data);
    // New program headers at the end of the file.
    let new_ph = b.len();
    let ph = |off: u64, vaddr: u64, paddr: u64, filesz: u64, memsz: u64| {
        let mut p = Vec::new();
        p.extend_from_slice(&1u32.to_le_bytes()); // PT_LOAD
        p.extend_from_slice(&7u32.to_le_bytes()); // rwx
        for v in [off, vaddr, paddr, filesz, memsz, 0x1000] {
            p.extend_from_slice(&v.to_le_bytes());
        }
        p
    };
    b.extend(ph(
        code_off,
        0xffff_ffff_8100_0000,
        0x100_0000,
        text.len() as u64,
        text.len() as u64,
    ));
    b.extend(ph(percpu_off, 0, 0x100_3000, 0x1800, 0x1800));
    b.extend(ph(
        data_off,
        0xffff_ffff_8100_4800,
        0x100_4800,
        0x900,
        0x2000,
    ));
    b[32..40].copy_from_slice(&(new_ph as u64).to_le_bytes());
    b[56..58].copy_from_slice(&3u16.to_le_bytes());
    let entry: u64 = if entry_physical {
        0x100_0b53
    } else {
        0xffff_ffff_8100_0b53
    };
    b[24..32].copy_from_slice(&entry.to_le_bytes());
    b
}

#[test]
fn a_vmlinux_goes_where_it_was_linked_and_is_entered_at_startup_64() {
    let m = qemu_machine();
    for physical in [true, false] {
        let k = vmlinux(physical);
        let initrd = vec![5u8; 0x4000];
        let plan = plan(&req(&k, Some(&initrd), b"console=ttyS0"), &m).unwrap();
        // Text alone (borrowed from the file), then per-CPU and data merged
        // into one page-aligned segment because they share a page.
        let text = segment_at(&plan, 0x100_0000);
        assert_eq!((text.buf.len(), text.memsz), (0x3000, 0x3000));
        assert!(matches!(text.buf, std::borrow::Cow::Borrowed(_)));
        let rest = segment_at(&plan, 0x100_3000);
        assert_eq!(
            rest.memsz, 0x4000,
            "up to the data segment's page-aligned end"
        );
        assert_eq!(rest.buf.len(), 0x1800 + 0x900);
        assert!(rest.buf[..0x1800].iter().all(|&b| b == 0x11));
        assert!(rest.buf[0x1800..].iter().all(|&b| b == 0x22));
        let (_, p) = purgatory_params(&plan);
        assert_eq!(
            word(&p, ENTRY + 16),
            0x100_0b53,
            "RIP = physical startup_64"
        );
        assert_eq!(word(&p, ENTRY + 4), plan.zero_page_addr, "RSI = zero page");
        // The zero page carries a synthetic 2.15 header the kernel reads.
        let zp = &segment_at(&plan, plan.zero_page_addr).buf;
        assert_eq!(read_u32(zp, 0x202), Some(HDRS_MAGIC));
        assert_eq!(&zp[0x206..0x208], &0x020fu16.to_le_bytes());
        assert_eq!(zp[offsets::TYPE_OF_LOADER], 0xd0);
        assert_eq!(&zp[4096..4096 + 14], b"console=ttyS0\0");
        check_invariants(&plan, &[Range::new(MIB, 0x3ffe_0000)]);
    }
}

#[test]
fn vmlinux_refusals_say_why() {
    let m = qemu_machine();
    let k = vmlinux(true);
    let mut r = req(&k, None, b"");
    r.crash = true;
    assert!(matches!(plan(&r, &m), Err(Error::ElfCrash)));
    let arm = crate::image::elf::build(
        goblin::elf::header::ET_EXEC,
        goblin::elf::header::EM_AARCH64,
        0xffff_8000_0800_0000,
        0x4008_0000,
        &[0u8; 64],
        &[],
        false,
    );
    let e = plan(&req(&arm, None, b""), &m).unwrap_err();
    assert!(e.to_string().contains("aarch64"), "{e}");
    // Linked where this machine has no RAM: named with its address.
    let mut far = vmlinux(true);
    let phoff = u64::from_le_bytes(far[32..40].try_into().unwrap()) as usize;
    far[phoff + 24..phoff + 32].copy_from_slice(&0x8000_0000u64.to_le_bytes());
    let e = plan(&req(&far, None, b""), &m).unwrap_err();
    assert!(
        matches!(e, Error::ElfAddressTaken(r) if r.start == 0x8000_0000),
        "{e}"
    );
    assert!(e.to_string().contains("load the bzImage"), "{e}");
}
