//! arm64 `Image` headers and the decompression of `Image.gz`/`Image.zst`/
//! zboot payloads that must happen before `kexec_file_load`.
#![no_main]

use kexec::image::arm64;
use libfuzzer_sys::fuzz_target;

/// Output cap while fuzzing: the real cap (512 MiB) is fine for a kernel
/// but would make every decompression bomb an out-of-memory "crash".
const LIMIT: usize = 32 << 20;

fuzz_target!(|data: &[u8]| {
    let _ = arm64::has_magic(data);
    if let Ok(img) = arm64::parse_image(data) {
        let _ = format!("{img:?}");
    }
    match arm64::decompress_bounded(data, LIMIT) {
        Ok(inner) => {
            assert!(inner.len() <= LIMIT.max(data.len()));
            let _ = arm64::parse_image(&inner);
        }
        Err(e) => {
            let _ = e.to_string();
        }
    }
});
