//! Shared pieces of the fuzz targets: a fixed fake machine for the classic
//! loader's planner, so that `classic_plan` fuzzes the planner against a
//! realistic memory layout (RAM below and above 1 MiB, a crash reservation,
//! crash notes, vmcoreinfo) read through the same `Machine::from_root` the
//! CLI uses, instead of a hand-built struct that could drift from it.

use std::path::Path;
use std::sync::OnceLock;

use kexec::classic::Machine;

/// The firmware memory map of the fake machine: (start, inclusive end, type).
const MEMMAP: &[(u64, u64, &str)] = &[
    (0x0, 0x9_fbff, "System RAM"),
    (0x9_fc00, 0x9_ffff, "Reserved"),
    (0xf_0000, 0xf_ffff, "Reserved"),
    (0x10_0000, 0x7ffd_ffff, "System RAM"),
    (0x7ffe_0000, 0x7fff_ffff, "ACPI Tables"),
    (0xfeff_c000, 0xfeff_ffff, "Reserved"),
    (0x1_0000_0000, 0x1_3fff_ffff, "System RAM"),
];

/// `/proc/iomem` of the fake machine, with a 256 MiB crash reservation.
const IOMEM: &str = "00000000-00000fff : Reserved\n\
00001000-0009fbff : System RAM\n\
0009fc00-0009ffff : Reserved\n\
000f0000-000fffff : Reserved\n\
00100000-7ffdffff : System RAM\n  \
01000000-01ffffff : Kernel code\n  \
6f000000-7effffff : Crash kernel\n\
7ffe0000-7fffffff : ACPI Tables\n\
feffc000-feffffff : Reserved\n\
100000000-13fffffff : System RAM\n";

fn write(root: &Path, rel: &str, contents: &[u8]) -> std::io::Result<()> {
    let path = root.join(rel);
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    std::fs::write(path, contents)
}

/// Writes the fake machine's `/sys` and `/proc` files under `root`.
pub fn write_machine_tree(root: &Path) -> std::io::Result<()> {
    for (i, (start, end, kind)) in MEMMAP.iter().enumerate() {
        let dir = format!("sys/firmware/memmap/{i}");
        write(
            root,
            &format!("{dir}/start"),
            format!("{start:#x}\n").as_bytes(),
        )?;
        write(
            root,
            &format!("{dir}/end"),
            format!("{end:#x}\n").as_bytes(),
        )?;
        write(root, &format!("{dir}/type"), format!("{kind}\n").as_bytes())?;
    }
    write(root, "proc/iomem", IOMEM.as_bytes())?;
    // A zero page as the running kernel exports it: VGA text screen info.
    let mut boot_params = vec![0u8; 4096];
    boot_params[0x07] = 80;
    boot_params[0x0e] = 25;
    write(root, "sys/kernel/boot_params/data", &boot_params)?;
    for cpu in 0..2u64 {
        let dir = format!("sys/devices/system/cpu/cpu{cpu}");
        let addr = 0x13f0_0000 + cpu * 0x1000;
        write(
            root,
            &format!("{dir}/crash_notes"),
            format!("{addr:x}\n").as_bytes(),
        )?;
        write(root, &format!("{dir}/crash_notes_size"), b"424\n")?;
    }
    write(root, "sys/kernel/vmcoreinfo", b"2e4d000 1000\n")?;
    Ok(())
}

/// The fake machine, read once through [`Machine::from_root`] from a
/// temporary tree that is removed as soon as it has been read.
pub fn fake_machine() -> &'static Machine {
    static MACHINE: OnceLock<Machine> = OnceLock::new();
    MACHINE.get_or_init(|| {
        let dir = tempfile::Builder::new()
            .prefix("kexec-fuzz-machine")
            .tempdir()
            .expect("a temporary directory for the fake machine");
        write_machine_tree(dir.path()).expect("writing the fake machine");
        Machine::from_root(dir.path()).expect("the fake machine reads back")
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use kexec::classic::{plan, Request};

    fn fixture(name: &str) -> Vec<u8> {
        let path = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../fixtures")
            .join(name);
        std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
    }

    #[test]
    fn the_fake_machine_has_ram_and_a_crash_reservation() {
        let m = fake_machine();
        assert_eq!(m.memmap.len(), MEMMAP.len());
        assert_eq!(m.system_ram.len(), 3);
        assert_eq!(m.crash_reservations.len(), 1);
        assert_eq!(m.crash_notes.len(), 2);
        assert!(m.vmcoreinfo.is_some());
    }

    /// The planner must get past its input checks on this machine, or the
    /// fuzz target would only ever exercise the early errors.
    #[test]
    fn a_valid_bzimage_plans_normal_and_crash_loads() {
        let kernel = fixture("bzimage-2.15-gzip.bin");
        let initrd = fixture("initramfs-gzip.cpio.gz");
        for crash in [false, true] {
            let req = Request {
                kernel: &kernel,
                initrd: Some(&initrd),
                cmdline: b"console=ttyS0",
                crash,
                no_checks: false,
                console: None,
            };
            let plan = plan(&req, fake_machine()).unwrap_or_else(|e| panic!("crash={crash}: {e}"));
            assert!(plan.segments.len() >= 4, "{plan:?}");
        }
    }
}
