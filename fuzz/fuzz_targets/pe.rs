//! PE/COFF headers, unified kernel images and arm64 EFI zboot headers: the
//! three readers of the `MZ` family, each given the same bytes.
#![no_main]

use kexec::image::{arm64, pe, uki};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = pe::has_pe_header(data);
    if let Ok(info) = pe::parse(data) {
        // Every non-empty section range the parser hands out must lie in
        // the file (an empty section's offset is meaningless in PE).
        for s in &info.sections {
            let r = s.content_range();
            assert!(
                r.is_empty() || data.get(r.clone()).is_some(),
                "section {} range {r:?} is outside a {}-byte file",
                s.name,
                data.len()
            );
        }
        let _ = info.section(".linux");
    }
    let _ = uki::is_uki(data);
    match uki::parse(data) {
        Ok(u) => {
            // uki::parse refuses an empty .linux and drops an empty .initrd.
            assert!(
                data.get(u.linux.range()).is_some(),
                ".linux outside the file"
            );
            if let Some(i) = &u.initrd {
                assert!(data.get(i.range()).is_some(), ".initrd outside the file");
            }
        }
        Err(e) => {
            let _ = e.to_string();
        }
    }
    let _ = arm64::is_zboot(data);
    if let Ok(z) = arm64::Zboot::parse(data) {
        assert_eq!(z.payload(data).len(), z.payload_size as usize);
    }
});
