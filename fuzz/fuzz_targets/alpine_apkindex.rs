//! The `APKINDEX` text and the dependency resolution over it, as `cargo
//! xtask fetch --source alpine` runs them on a mirror's index: any text and
//! any dependency graph (cycles, self-provides, conflicts) give a result or
//! an error, and resolution terminates.
#![no_main]

use libfuzzer_sys::fuzz_target;
use xtask::fetch::alpine;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let index = alpine::parse_apkindex(&text);
    // Resolve what the guest needs, and every package the index names.
    let mut roots: Vec<&str> = vec!["busybox-static", "openrc", "kexec-tools"];
    roots.extend(index.iter().take(16).map(|r| r.name.as_str()));
    match alpine::resolve(&index, &roots) {
        Ok(found) => {
            let mut names: Vec<&str> = found.iter().map(|r| r.name.as_str()).collect();
            let before = names.len();
            names.sort_unstable();
            names.dedup();
            assert_eq!(names.len(), before, "a package resolved twice");
        }
        Err(e) => {
            let _ = e.to_string();
        }
    }
});
