//! The x86 bzImage setup-header parser and the whole-file checks behind it.
#![no_main]

use kexec::cmdline;
use kexec::image::bzimage::{BzImage, SetupHeader};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(h) = SetupHeader::parse(data) {
        let _ = h.protected_mode_offset();
        let _ = SetupHeader::header_len(data);
        for bit in 0..16 {
            let _ = h.xloadflag(1 << bit);
        }
        // The command-line limit derived from the header, as the CLI does.
        for crash in [false, true] {
            let _ = cmdline::bzimage_capacity("fuzzed", h.cmdline_size, crash);
        }
    }
    match BzImage::parse(data) {
        Ok(b) => {
            let _ = format!("{b:?}");
        }
        Err(e) => {
            let _ = e.to_string();
        }
    }
});
