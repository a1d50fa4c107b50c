//! `latest-releases.yaml` as `cargo xtask fetch --source alpine` reads it
//! from a mirror: any text gives a list of releases, never a panic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use xtask::fetch::alpine;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    for r in alpine::parse_releases(&text) {
        assert!(!r.sha256.chars().any(|c| c.is_ascii_uppercase()), "{r:?}");
    }
});
