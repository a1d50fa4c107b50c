//! Every decompressor the image and initramfs parsers use, on streams that
//! need not carry the right magic: the first byte picks the format.
#![no_main]

use kexec::image::compression::{self, Compression};
use libfuzzer_sys::fuzz_target;

const FORMATS: [Compression; 8] = [
    Compression::Gzip,
    Compression::Xz,
    Compression::Zstd,
    Compression::Lz4,
    Compression::Lz4Frame,
    Compression::Lzma,
    Compression::Bzip2,
    Compression::Lzo,
];
const LIMIT: usize = 32 << 20;

fuzz_target!(|data: &[u8]| {
    let Some((&pick, input)) = data.split_first() else {
        return;
    };
    let _ = Compression::from_magic(data);
    let format = FORMATS[usize::from(pick) % FORMATS.len()];
    let _ = Compression::from_name(format.name());
    match compression::decompress_stream(format, input, LIMIT) {
        Ok(d) => {
            assert!(d.data.len() <= LIMIT, "limit exceeded: {}", d.data.len());
            assert!(
                d.consumed <= input.len(),
                "consumed {} of {}",
                d.consumed,
                input.len()
            );
        }
        Err(e) => {
            let _ = e.to_string();
        }
    }
    let _ = compression::peek(format, input, 64);
});
