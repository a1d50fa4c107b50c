//! The ELF vmlinux parser (program headers, notes, build id).
#![no_main]

use kexec::image::elf;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    match elf::parse(data) {
        Ok(r) => {
            let _ = format!("{r:?}");
        }
        Err(e) => {
            let _ = e.to_string();
        }
    }
});
