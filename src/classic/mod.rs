//! The classic `kexec_load` path on x86_64: everything userspace must build
//! itself when the kernel only offers `kexec_load` (as Alpine's kernels do,
//! built without `CONFIG_KEXEC_FILE`).
//!
//! [`plan`] turns a bzImage (or an ELF vmlinux), an initrd and a command line into the segments
//! for `kexec_load`: the protected-mode kernel placed as the boot protocol
//! allows, the initrd, the zero page with the command line, our purgatory
//! (which checks a SHA-256 of the other segments and enters the kernel), and
//! for a crash kernel the ELF core header. It is a pure function of the
//! request and a [`Machine`] snapshot, so it is tested without root or a
//! kexec-capable kernel; the CLI performs the syscall.
//!
//! ```no_run
//! use kexec::classic::{plan, Machine, Request};
//! use kexec::syscall::{KexecSys, LinuxKexec};
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let kernel = std::fs::read("/boot/vmlinuz")?;
//! let initrd = std::fs::read("/boot/initrd.img")?;
//! let machine = Machine::from_system()?;
//! let req = Request { kernel: &kernel, initrd: Some(&initrd), cmdline: b"console=ttyS0", crash: false, no_checks: false, console: None };
//! let p = plan(&req, &machine)?;
//! let mut sys = LinuxKexec::default();
//! sys.kexec_load(p.entry, &p.segments, p.flags)?;
//! # Ok(()) }
//! ```

pub mod crash;
pub mod machine;
pub mod memory;
mod plan;
pub mod purgatory;
mod vmlinux;
pub mod zeropage;

pub use machine::Machine;
pub use plan::plan;

use crate::image::bzimage;
use crate::syscall::Segment;

/// `kexec_load` flag: load the crash (capture) kernel.
pub const KEXEC_ON_CRASH: u64 = 0x1;
/// `kexec_load` flag: the image is for x86_64 (`EM_X86_64 << 16`).
pub const KEXEC_ARCH_X86_64: u64 = 62 << 16;

/// What to load.
#[derive(Debug, Clone, Copy)]
pub struct Request<'a> {
    /// The bzImage file.
    pub kernel: &'a [u8],
    /// The initrd (several are concatenated by the caller).
    pub initrd: Option<&'a [u8]>,
    /// The command line, without a terminating NUL.
    pub cmdline: &'a [u8],
    /// Load a capture kernel into the crash reservation (`kexec -p`).
    pub crash: bool,
    /// Skip the purgatory's SHA-256 check (`kexec -i`).
    pub no_checks: bool,
    /// Where the purgatory reports (`--console-serial`); `None`: silent.
    pub console: Option<SerialConsole>,
}

/// A 16550 UART for the purgatory's messages, as kexec-tools' `--serial` and
/// `--serial-baud` describe it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SerialConsole {
    /// I/O port base (0x3f8 is ttyS0).
    pub port: u16,
    /// Reprogram the UART to this rate; `None` keeps what the old kernel set,
    /// which is what its console already uses.
    pub baud: Option<u32>,
}

impl SerialConsole {
    /// The UART's clock divisor for `baud` (115200 / baud), or `None` when
    /// the rate has no exact divisor between 1 and 12, the range kexec-tools
    /// accepts (115200 down to 9600 baud).
    pub fn divisor_for(baud: u32) -> Option<u16> {
        let d = 115_200u32.checked_div(baud)?;
        (baud * d == 115_200 && (1..=12).contains(&d)).then_some(d as u16)
    }
}

/// The arguments of `kexec_load`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoadPlan<'a> {
    /// Physical address of the purgatory's entry point.
    pub entry: u64,
    /// Sorted by address, page aligned, non-overlapping.
    pub segments: Vec<Segment<'a>>,
    /// `KEXEC_ARCH_X86_64`, plus `KEXEC_ON_CRASH` for a capture kernel.
    pub flags: u64,
    /// Where the protected-mode kernel goes (its entry is this + 0x200).
    pub kernel_addr: u64,
    /// Where the zero page goes (the command line follows it).
    pub zero_page_addr: u64,
    /// The command line the new kernel gets (with `elfcorehdr=` for a crash kernel).
    pub cmdline: Vec<u8>,
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(
        "serial rate {0} has no exact 16550 divisor: give 115200, 57600, 38400, 19200 or 9600"
    )]
    BadBaud(u32),
    #[error("the kernel is not an x86 bzImage: {0}")]
    Image(#[from] bzimage::Error),
    #[error("the kernel is not a usable ELF vmlinux: {0}")]
    Elf(#[from] crate::image::elf::Error),
    #[error("this ELF kernel is {0}, not x86_64: give an x86_64 vmlinux or bzImage")]
    ElfNotX86_64(String),
    #[error("this ELF kernel has no loadable segments (PT_LOAD): give the vmlinux itself, not a debug or stripped file")]
    ElfNoSegments,
    #[error("this ELF kernel's entry point {0:#x} is outside its loadable segments: the file is damaged or not a vmlinux")]
    ElfEntryOutside(u64),
    #[error("this vmlinux must be loaded where it was linked, {0}, which is not free RAM here: load the bzImage (vmlinuz) instead, which can go anywhere")]
    ElfAddressTaken(memory::Range),
    #[error("a crash kernel must run inside the crash reservation, and an ELF vmlinux runs only where it was linked: load the bzImage (vmlinuz) with -p")]
    ElfCrash,
    #[error("this kernel has no 64-bit entry point (boot protocol {}.{:02}, xloadflags {xloadflags:#x}; kexec_load on x86_64 needs protocol 2.12+ with XLF_KERNEL_64): use a 64-bit kernel", version >> 8, version & 0xff)]
    No64BitEntry { version: u16, xloadflags: u16 },
    #[error("this kernel is a zImage (loadflags LOADED_HIGH clear), which only loads below 1 MiB; use a bzImage")]
    ZImage,
    #[error(
        "the kernel's kernel_alignment {0:#x} is not a power of two: the image header is damaged"
    )]
    BadAlignment(u64),
    #[error("the kernel is not relocatable and must be loaded at its pref_address {0:#x}, which is not page aligned (kexec_load places segments on page boundaries): the image header is damaged")]
    UnalignedFixedAddress(u64),
    #[error("the {0} is too large to place in a 64-bit address space")]
    TooLarge(&'static str),
    #[error("the running kernel uses 5-level paging, which stays on across kexec, and this kernel lacks XLF_5LEVEL: boot the running kernel with no5lvl, or load a kernel built with CONFIG_X86_5LEVEL")]
    No5LevelPaging,
    #[error("the command line contains a NUL byte at offset {0}; remove it")]
    CmdlineNul(usize),
    #[error("the command line is {len} bytes but this kernel accepts at most {max} (cmdline_size); shorten it")]
    CmdlineTooLong { len: usize, max: usize },
    #[error("the kernel is not relocatable and must be loaded at {addr:#x}, but {range} is not free RAM here; use kexec -s or a relocatable kernel")]
    KernelAddressTaken { addr: u64, range: memory::Range },
    #[error("no room for the {what} ({size} bytes{detail}); the largest free range left is {largest} bytes")]
    NoRoom {
        what: &'static str,
        size: u64,
        detail: String,
        largest: u64,
    },
    #[error("no crash kernel reservation in /proc/iomem: boot the running kernel with crashkernel=256M (or more) to load a capture kernel, and run as root so /proc/iomem shows addresses")]
    NoCrashReservation,
    #[error("the firmware memory map has no RAM above 1 MiB to load into")]
    NoRam,
    #[error("cannot build the crash kernel's core header: {0}")]
    Crash(#[from] crash::Error),
    #[error(transparent)]
    Purgatory(#[from] purgatory::Error),
    #[error("cannot read the machine's memory layout: {0}")]
    Machine(#[from] machine::Error),
}

pub type Result<T> = std::result::Result<T, Error>;

#[cfg(test)]
mod tests;
