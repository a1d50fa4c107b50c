//! The archives `cargo xtask fetch --source alpine` opens: `APKINDEX.tar.gz`
//! (gzip members holding tar streams) and `.apk` packages checked against
//! their index record. Corrupt downloads must be errors, never panics.
#![no_main]

use libfuzzer_sys::fuzz_target;
use xtask::fetch::alpine::{self, ApkRecord};

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = alpine::read_apkindex(data) {
        let _ = alpine::parse_apkindex(&text);
    }
    // A record whose checksum cannot match: the package's structure (gzip
    // members, control tar) is read before the checksum refuses it.
    let rec = ApkRecord {
        checksum: "Q1AAAAAAAAAAAAAAAAAAAAAAAAAAA=".into(),
        name: "fuzzed".into(),
        version: "1-r0".into(),
        size: 0,
        depends: Vec::new(),
        provides: Vec::new(),
    };
    if let Err(e) = alpine::verify_apk(data, &rec) {
        let _ = format!("{e:#}");
    }
});
