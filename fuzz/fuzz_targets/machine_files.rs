//! The readers of `/proc/iomem`, `/sys/firmware/efi/systab`,
//! `/sys/kernel/vmcoreinfo` and the `/proc/kcore` ELF header, which the
//! classic loader parses on every load.
#![no_main]

use kexec::classic::machine;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = machine::page_offset_from_kcore(data);
    let text = String::from_utf8_lossy(data);
    let (ram, crash) = machine::parse_iomem(&text);
    for r in ram.iter().chain(&crash) {
        assert!(r.start <= r.end, "inverted range {r:?}");
    }
    let _ = machine::parse_systab_rsdp(&text);
    if let Some(r) = machine::parse_vmcoreinfo(&text) {
        assert!(r.start <= r.end, "inverted range {r:?}");
    }
});
