//! What the loader needs to know about the running machine, read from
//! `/sys` and `/proc` (or from a copy of them under another root, for tests).
//!
//! Everything is read up front into plain data so that [`super::plan`] is a
//! pure function of the request and this snapshot.

use super::memory::Range;
use std::fs;
use std::io::Read;
use std::path::{Path, PathBuf};

/// Kernel direct-map base without KASLR, used when `/proc/kcore` cannot
/// tell the real one.
pub const DEFAULT_PAGE_OFFSET: u64 = 0xffff_8880_0000_0000;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("cannot read {}: {source}", path.display())]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{}: {what}", path.display())]
    Parse { path: PathBuf, what: String },
    #[error("{} has no entries: this kernel does not export the firmware memory map (CONFIG_FIRMWARE_MEMMAP), which kexec_load needs; use kexec_file_load (kexec -s) instead", path.display())]
    NoMemoryMap { path: PathBuf },
}

pub type Result<T> = std::result::Result<T, Error>;

/// A memory type of the firmware map, as the e820 table names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MemKind {
    Ram,
    Reserved,
    AcpiTables,
    AcpiNvs,
    Unusable,
    Pmem,
    LegacyPmem,
    SoftReserved,
}

impl MemKind {
    /// From the `type` file of `/sys/firmware/memmap/N`. Unknown names are
    /// treated as reserved: the new kernel must not use what we don't know.
    pub fn from_memmap_name(name: &str) -> MemKind {
        match name.trim() {
            "System RAM" => MemKind::Ram,
            "ACPI Tables" => MemKind::AcpiTables,
            "ACPI Non-volatile Storage" => MemKind::AcpiNvs,
            "Unusable memory" => MemKind::Unusable,
            "Persistent Memory" => MemKind::Pmem,
            "Persistent Memory (legacy)" => MemKind::LegacyPmem,
            "Soft Reserved" => MemKind::SoftReserved,
            _ => MemKind::Reserved,
        }
    }

    /// The `type` of a `struct boot_e820_entry`.
    pub fn e820_type(self) -> u32 {
        match self {
            MemKind::Ram => 1,
            MemKind::Reserved => 2,
            MemKind::AcpiTables => 3,
            MemKind::AcpiNvs => 4,
            MemKind::Unusable => 5,
            MemKind::Pmem => 7,
            MemKind::LegacyPmem => 12,
            MemKind::SoftReserved => 0xefff_ffff,
        }
    }
}

/// One entry of the firmware memory map.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MemoryRange {
    pub range: Range,
    pub kind: MemKind,
}

/// One EFI runtime memory region, as `/sys/firmware/efi/runtime-map/N`
/// describes it (the virtual address is the one the running kernel chose,
/// which the new kernel must keep).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EfiMemDesc {
    pub kind: u32,
    pub phys_addr: u64,
    pub virt_addr: u64,
    pub num_pages: u64,
    pub attribute: u64,
}

/// The EFI facts of `/sys/firmware/efi` for the `SETUP_EFI` node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EfiRuntime {
    pub fw_vendor: u64,
    pub config_table: u64,
    pub smbios: u64,
    pub map: Vec<EfiMemDesc>,
}

/// A snapshot of the machine, as `kexec_load` needs it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Machine {
    /// The firmware memory map (`/sys/firmware/memmap`), sorted. This is the
    /// map the new kernel gets, unchanged for a normal kexec.
    pub memmap: Vec<MemoryRange>,
    /// Top-level "System RAM" of `/proc/iomem`: what a crash dump covers.
    pub system_ram: Vec<Range>,
    /// "Crash kernel" ranges of `/proc/iomem` (a low and a high one at most).
    pub crash_reservations: Vec<Range>,
    /// The running kernel's own zero page (`/sys/kernel/boot_params/data`).
    pub boot_params: Option<Vec<u8>>,
    /// ACPI RSDP from the EFI system table (`/sys/firmware/efi/systab`).
    pub efi_acpi_rsdp: Option<u64>,
    /// True when booted through EFI (`/sys/firmware/efi` exists).
    pub efi: bool,
    /// What a new kernel needs to keep using EFI runtime services; `None`
    /// without EFI or without `CONFIG_EFI_RUNTIME_MAP`.
    pub efi_runtime: Option<EfiRuntime>,
    /// Per-CPU crash note buffers (`/sys/devices/system/cpu/cpuN/crash_notes`).
    pub crash_notes: Vec<Range>,
    /// The vmcoreinfo note (`/sys/kernel/vmcoreinfo`).
    pub vmcoreinfo: Option<Range>,
    /// Virtual address of physical 0 in the direct map (from `/proc/kcore`).
    pub page_offset: u64,
    /// Fresh randomness for the new kernel's RNG (`SETUP_RNG_SEED`), drawn
    /// from `getrandom(2)` when the snapshot is taken; `None` if the RNG
    /// could not give it without blocking.
    pub rng_seed: Option<[u8; RNG_SEED_LEN]>,
}

/// Bytes of RNG seed handed to the new kernel, as the kernel's own
/// `kexec_file_load` and kexec-tools pass.
pub const RNG_SEED_LEN: usize = 32;

/// `RNG_SEED_LEN` bytes from the kernel's RNG, or `None` if it is not ready.
fn rng_seed() -> Option<[u8; RNG_SEED_LEN]> {
    let mut seed = [0u8; RNG_SEED_LEN];
    // SAFETY: the buffer is valid for its length.
    let n = unsafe { libc::getrandom(seed.as_mut_ptr().cast(), seed.len(), libc::GRND_NONBLOCK) };
    (n == RNG_SEED_LEN as isize).then_some(seed)
}

impl Machine {
    /// Reads the running machine.
    pub fn from_system() -> std::result::Result<Machine, super::Error> {
        Machine::from_root(Path::new("/"))
    }

    /// Reads `<root>/sys/firmware/memmap`, `<root>/proc/iomem`,
    /// `<root>/sys/kernel/boot_params/data` and the rest under `root`. Only
    /// the memory map is required; what only crash kernels need may be absent.
    pub fn from_root(root: &Path) -> std::result::Result<Machine, super::Error> {
        Ok(Machine::read_root(root)?)
    }

    fn read_root(root: &Path) -> Result<Machine> {
        let memmap = read_memmap(&root.join("sys/firmware/memmap"))?;
        let iomem_path = root.join("proc/iomem");
        let (system_ram, crash_reservations) = match fs::read_to_string(&iomem_path) {
            Ok(s) => parse_iomem(&s),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => (Vec::new(), Vec::new()),
            Err(source) => {
                return Err(Error::Read {
                    path: iomem_path,
                    source,
                })
            }
        };
        let boot_params = fs::read(root.join("sys/kernel/boot_params/data"))
            .ok()
            .filter(|b| !b.is_empty());
        let efi = root.join("sys/firmware/efi").is_dir();
        let efi_acpi_rsdp = fs::read_to_string(root.join("sys/firmware/efi/systab"))
            .ok()
            .and_then(|s| parse_systab_rsdp(&s));
        let efi_runtime = if efi {
            read_efi_runtime(&root.join("sys/firmware/efi"))?
        } else {
            None
        };
        Ok(Machine {
            memmap,
            efi_runtime,
            system_ram,
            crash_reservations,
            boot_params,
            efi_acpi_rsdp,
            efi,
            crash_notes: read_crash_notes(&root.join("sys/devices/system/cpu"))?,
            vmcoreinfo: fs::read_to_string(root.join("sys/kernel/vmcoreinfo"))
                .ok()
                .and_then(|s| parse_vmcoreinfo(&s)),
            page_offset: read_page_offset(&root.join("proc/kcore")).unwrap_or(DEFAULT_PAGE_OFFSET),
            rng_seed: rng_seed(),
        })
    }

    /// True when the running kernel uses 5-level paging: its direct map then
    /// starts below the 4-level kernel half (0xffff800000000000). Paging
    /// mode survives kexec, so the new kernel must support it too.
    pub fn five_level_paging(&self) -> bool {
        self.page_offset < 0xffff_8000_0000_0000
    }

    /// The firmware map's RAM ranges.
    pub fn ram(&self) -> impl Iterator<Item = Range> + '_ {
        self.memmap
            .iter()
            .filter(|m| m.kind == MemKind::Ram)
            .map(|m| m.range)
    }
}

fn read_string(path: &Path) -> Result<String> {
    fs::read_to_string(path).map_err(|source| Error::Read {
        path: path.to_owned(),
        source,
    })
}

fn parse_hex(path: &Path, s: &str) -> Result<u64> {
    let t = s.trim();
    let t = t.strip_prefix("0x").unwrap_or(t);
    u64::from_str_radix(t, 16).map_err(|_| Error::Parse {
        path: path.to_owned(),
        what: format!("{:?} is not a hexadecimal address", s.trim()),
    })
}

fn read_memmap(dir: &Path) -> Result<Vec<MemoryRange>> {
    let entries = fs::read_dir(dir).map_err(|source| Error::Read {
        path: dir.to_owned(),
        source,
    })?;
    let mut out = Vec::new();
    for e in entries {
        let e = e.map_err(|source| Error::Read {
            path: dir.to_owned(),
            source,
        })?;
        let p = e.path();
        if !p.is_dir() {
            continue;
        }
        let start = parse_hex(&p.join("start"), &read_string(&p.join("start"))?)?;
        let end = parse_hex(&p.join("end"), &read_string(&p.join("end"))?)?;
        let kind = MemKind::from_memmap_name(&read_string(&p.join("type"))?);
        let range = Range::inclusive(start, end).ok_or_else(|| Error::Parse {
            path: p.clone(),
            what: format!("end {end:#x} is below start {start:#x}"),
        })?;
        out.push(MemoryRange { range, kind });
    }
    if out.is_empty() {
        return Err(Error::NoMemoryMap {
            path: dir.to_owned(),
        });
    }
    out.sort_by_key(|m| m.range);
    Ok(out)
}

/// Top-level "System RAM" and every "Crash kernel" range of `/proc/iomem`.
/// Lines that do not parse are skipped: the file mixes many drivers' names.
pub fn parse_iomem(s: &str) -> (Vec<Range>, Vec<Range>) {
    let mut ram = Vec::new();
    let mut crash = Vec::new();
    for line in s.lines() {
        let nested = line.starts_with(' ');
        let Some((span, name)) = line.trim().split_once(" : ") else {
            continue;
        };
        let Some((a, b)) = span.split_once('-') else {
            continue;
        };
        let (Ok(a), Ok(b)) = (u64::from_str_radix(a, 16), u64::from_str_radix(b, 16)) else {
            continue;
        };
        // Without CAP_SYS_ADMIN the kernel shows every range as 0-0.
        if a == 0 && b == 0 {
            continue;
        }
        let Some(r) = Range::inclusive(a, b) else {
            continue;
        };
        match name.trim() {
            "System RAM" if !nested => ram.push(r),
            "Crash kernel" => crash.push(r),
            _ => {}
        }
    }
    (ram, crash)
}

/// `ACPI20=` (preferred) or `ACPI=` of `/sys/firmware/efi/systab`.
pub fn parse_systab_rsdp(s: &str) -> Option<u64> {
    let find = |key: &str| {
        s.lines().find_map(|l| l.strip_prefix(key)).and_then(|v| {
            let v = v.trim();
            u64::from_str_radix(v.strip_prefix("0x").unwrap_or(v), 16).ok()
        })
    };
    find("ACPI20=").or_else(|| find("ACPI="))
}

/// `/sys/kernel/vmcoreinfo`: "ADDR SIZE", both hexadecimal; the kernel
/// prints the address with `%pa`, so with a `0x` prefix.
pub fn parse_vmcoreinfo(s: &str) -> Option<Range> {
    let hex = |t: &str| u64::from_str_radix(t.strip_prefix("0x").unwrap_or(t), 16).ok();
    let mut it = s.split_whitespace();
    let addr = hex(it.next()?)?;
    let size = hex(it.next()?)?;
    (size > 0).then(|| Range::new(addr, addr.saturating_add(size)))
}

fn read_efi_runtime(dir: &Path) -> Result<Option<EfiRuntime>> {
    let Ok(entries) = fs::read_dir(dir.join("runtime-map")) else {
        return Ok(None);
    };
    let mut numbered: Vec<(u32, PathBuf)> = entries
        .filter_map(|e| e.ok())
        .filter_map(|e| Some((e.file_name().to_str()?.parse().ok()?, e.path())))
        .collect();
    numbered.sort();
    let mut map = Vec::new();
    for (_, d) in numbered {
        let field =
            |name: &str| -> Result<u64> { parse_hex(&d.join(name), &read_string(&d.join(name))?) };
        map.push(EfiMemDesc {
            kind: u32::try_from(field("type")?).map_err(|_| Error::Parse {
                path: d.join("type"),
                what: "type does not fit in 32 bits".into(),
            })?,
            phys_addr: field("phys_addr")?,
            virt_addr: field("virt_addr")?,
            num_pages: field("num_pages")?,
            attribute: field("attribute")?,
        });
    }
    let value =
        |name: &str| -> Result<u64> { parse_hex(&dir.join(name), &read_string(&dir.join(name))?) };
    let smbios = fs::read_to_string(dir.join("systab"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("SMBIOS=").map(str::to_owned))
        })
        .and_then(|v| u64::from_str_radix(v.trim().trim_start_matches("0x"), 16).ok())
        .unwrap_or(0);
    Ok(Some(EfiRuntime {
        fw_vendor: value("fw_vendor")?,
        config_table: value("config_table")?,
        smbios,
        map,
    }))
}

fn read_crash_notes(cpu_dir: &Path) -> Result<Vec<Range>> {
    let Ok(entries) = fs::read_dir(cpu_dir) else {
        return Ok(Vec::new());
    };
    let mut cpus: Vec<(u32, PathBuf)> = entries
        .filter_map(|e| e.ok())
        .filter_map(|e| {
            let name = e.file_name().into_string().ok()?;
            let n: u32 = name.strip_prefix("cpu")?.parse().ok()?;
            Some((n, e.path()))
        })
        .collect();
    cpus.sort();
    let mut out = Vec::new();
    for (_, dir) in cpus {
        let notes = dir.join("crash_notes");
        let Ok(addr) = fs::read_to_string(&notes) else {
            continue;
        };
        let addr = parse_hex(&notes, &addr)?;
        let size_path = dir.join("crash_notes_size");
        // Before crash_notes_size existed, the buffer was one page at most.
        let size = match fs::read_to_string(&size_path) {
            Ok(s) => s.trim().parse::<u64>().map_err(|_| Error::Parse {
                path: size_path.clone(),
                what: format!("{:?} is not a size", s.trim()),
            })?,
            Err(_) => 4096,
        };
        out.push(Range::new(addr, addr.saturating_add(size)));
    }
    Ok(out)
}

/// The direct map's base: `p_vaddr - p_paddr` of a RAM segment of
/// `/proc/kcore` (KASLR moves it, so the default is only a fallback).
fn read_page_offset(kcore: &Path) -> Option<u64> {
    let mut head = vec![0u8; 64 * 1024];
    let mut f = fs::File::open(kcore).ok()?;
    let mut n = 0;
    while n < head.len() {
        match f.read(&mut head[n..]) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(_) => return None,
        }
    }
    page_offset_from_kcore(&head[..n])
}

pub fn page_offset_from_kcore(b: &[u8]) -> Option<u64> {
    let u16_at = |o: usize| {
        b.get(o..o.checked_add(2)?)
            .and_then(|s| s.try_into().ok())
            .map(u16::from_le_bytes)
    };
    let u32_at = |o: usize| {
        b.get(o..o.checked_add(4)?)
            .and_then(|s| s.try_into().ok())
            .map(u32::from_le_bytes)
    };
    let u64_at = |o: usize| {
        b.get(o..o.checked_add(8)?)
            .and_then(|s| s.try_into().ok())
            .map(u64::from_le_bytes)
    };
    if b.get(0..4)? != b"\x7fELF" || *b.get(4)? != 2 {
        return None;
    }
    let phoff = usize::try_from(u64_at(0x20)?).ok()?;
    let phentsize = usize::from(u16_at(0x36)?);
    let phnum = usize::from(u16_at(0x38)?);
    (0..phnum).find_map(|i| {
        let p = phoff.checked_add(i.checked_mul(phentsize)?)?;
        let (ty, vaddr, paddr) = (
            u32_at(p)?,
            u64_at(p.checked_add(0x10)?)?,
            u64_at(p.checked_add(0x18)?)?,
        );
        // PT_LOAD of the direct map: a physical address, and below the
        // kernel text mapping (which is where KCORE_TEXT lives).
        (ty == 1
            && paddr != u64::MAX
            && (0xff00_0000_0000_0000..0xffff_ffff_8000_0000).contains(&vaddr)
            && vaddr > paddr)
            .then(|| vaddr - paddr)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn iomem_takes_top_level_ram_and_crash_ranges() {
        let s = "00000000-00000fff : Reserved\n\
                 00001000-0009fbff : System RAM\n\
                 00100000-3ffdffff : System RAM\n  \
                 01000000-01ffffff : Kernel code\n  \
                 2f000000-3effffff : Crash kernel\n\
                 fd000000-fdffffff : 0000:00:02.0\n\
                 garbage line\n";
        let (ram, crash) = parse_iomem(s);
        assert_eq!(
            ram,
            vec![
                Range::new(0x1000, 0x9fc00),
                Range::new(0x100000, 0x3ffe0000)
            ]
        );
        assert_eq!(crash, vec![Range::new(0x2f000000, 0x3f000000)]);
        // What a non-root user sees: nothing usable.
        let hidden = "00000000-00000000 : System RAM\n  00000000-00000000 : Crash kernel\n";
        assert_eq!(parse_iomem(hidden), (vec![], vec![]));
    }

    #[test]
    fn systab_prefers_acpi20() {
        assert_eq!(
            parse_systab_rsdp("MPS=0x1\nACPI=0xf0000\nACPI20=0x7fb7e014\n"),
            Some(0x7fb7e014)
        );
        assert_eq!(parse_systab_rsdp("ACPI=0xf0000\n"), Some(0xf0000));
        assert_eq!(parse_systab_rsdp("SMBIOS=0x1\n"), None);
    }

    #[test]
    fn vmcoreinfo_is_two_hex_numbers() {
        assert_eq!(
            parse_vmcoreinfo("2e4d000 1000\n"),
            Some(Range::new(0x2e4d000, 0x2e4e000))
        );
        assert_eq!(parse_vmcoreinfo("zz 10"), None);
    }

    #[test]
    fn kcore_page_offset_and_garbage() {
        let mut b = vec![0u8; 0x40 + 2 * 56];
        b[0..4].copy_from_slice(b"\x7fELF");
        b[4] = 2;
        b[0x20..0x28].copy_from_slice(&0x40u64.to_le_bytes());
        b[0x36..0x38].copy_from_slice(&56u16.to_le_bytes());
        b[0x38..0x3a].copy_from_slice(&2u16.to_le_bytes());
        // KCORE_TEXT first, then a RAM segment at physical 0x100000.
        let text = 0x40;
        b[text..text + 4].copy_from_slice(&1u32.to_le_bytes());
        b[text + 0x10..text + 0x18].copy_from_slice(&0xffff_ffff_8100_0000u64.to_le_bytes());
        b[text + 0x18..text + 0x20].copy_from_slice(&0x100_0000u64.to_le_bytes());
        let ram = 0x40 + 56;
        b[ram..ram + 4].copy_from_slice(&1u32.to_le_bytes());
        b[ram + 0x10..ram + 0x18].copy_from_slice(&0xffff_9a00_0010_0000u64.to_le_bytes());
        b[ram + 0x18..ram + 0x20].copy_from_slice(&0x10_0000u64.to_le_bytes());
        assert_eq!(page_offset_from_kcore(&b), Some(0xffff_9a00_0000_0000));
        for len in 0..b.len() {
            let _ = page_offset_from_kcore(&b[..len]);
        }
        assert_eq!(page_offset_from_kcore(b"not an elf"), None);
    }
}
