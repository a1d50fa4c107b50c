//! initramfs walking (concatenated, compressed cpio segments), cpio newc
//! archives and the early-microcode checks.
#![no_main]

use kexec::image::{cpio, initramfs};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(a) = cpio::read_archive(data, 0, 64) {
        assert!(
            a.end <= data.len(),
            "archive end {} past {}",
            a.end,
            data.len()
        );
    }
    let _ = cpio::is_newc(data);
    match initramfs::parse(data) {
        Ok(r) => {
            let _ = initramfs::microcode_problem(&r);
            for s in &r.segments {
                assert!(
                    s.offset + s.length <= data.len() as u64,
                    "segment {s:?} past the end of a {}-byte file",
                    data.len()
                );
            }
        }
        Err(e) => {
            let _ = e.to_string();
        }
    }
});
