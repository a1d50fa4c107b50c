//! Building the new kernel's command line (`--append`, `--reuse-cmdline`,
//! the bzImage's `cmdline_size`): any text gives a valid line or a typed
//! error, and a valid line keeps the promises the loader relies on.
//!
//! Input: one flag byte (bit 0 crash, bit 1 `--reuse-cmdline`, bit 2 a
//! capacity, bit 3 no `--append`), a little-endian u16 capacity, then
//! `/proc/cmdline` and the `--append` text separated by the first 0x1e.
#![no_main]

use kexec::cmdline::{self, BuildError, Cmdline, Request};
use libfuzzer_sys::fuzz_target;

fn key(param: &str) -> &str {
    param.split('=').next().unwrap_or(param).trim_matches('"')
}

fuzz_target!(|data: &[u8]| {
    let [flags, c0, c1, rest @ ..] = data else {
        return;
    };
    let crash = flags & 1 != 0;
    let reuse = flags & 2 != 0;
    let capacity = (flags & 4 != 0).then(|| usize::from(u16::from_le_bytes([*c0, *c1])));
    let (proc_part, append_part) = match rest.iter().position(|&b| b == 0x1e) {
        Some(i) => (&rest[..i], &rest[i + 1..]),
        None => (rest, &[][..]),
    };
    let proc_cmdline = String::from_utf8_lossy(proc_part).into_owned();
    let append = (flags & 8 == 0).then(|| String::from_utf8_lossy(append_part).into_owned());

    let reused = cmdline::reusable(&proc_cmdline, crash);
    for p in cmdline::split_params(&reused) {
        assert_ne!(key(p), "BOOT_IMAGE", "BOOT_IMAGE= kept in {reused:?}");
        assert!(
            !(crash && key(p) == "crashkernel"),
            "crashkernel= kept in {reused:?}"
        );
    }

    let req = Request { append, reuse };
    let cap = capacity.map(|n| (n, "the fuzzed kernel".to_string()));
    match cmdline::build(&req, || Ok(proc_cmdline.clone()), crash, cap) {
        Ok(line) => {
            let s = line.as_str();
            assert!(
                !s.contains(['\0', '\n', '\r']),
                "invalid byte kept in {s:?}"
            );
            assert_eq!(s.matches('"').count() % 2, 0, "unbalanced quotes in {s:?}");
            if let Some(max) = capacity {
                assert!(
                    s.len() <= max,
                    "{} bytes exceed the capacity {max}",
                    s.len()
                );
            }
            assert_eq!(s.len(), line.as_bytes().len());
        }
        Err(BuildError::Invalid(e)) => {
            let _ = e.to_string();
        }
        Err(e @ BuildError::ProcCmdline(_)) => {
            panic!("reading /proc/cmdline cannot fail here: {e}")
        }
    }

    // The builder used piecewise, as the CLI's UKI path does.
    let mut line = Cmdline::new(capacity.map(|n| (n, "the fuzzed kernel".to_string())));
    for part in String::from_utf8_lossy(rest).split('\x1e') {
        let before = line.as_str().to_string();
        if line.push(part).is_err() {
            assert_eq!(
                line.as_str(),
                before,
                "a rejected part must leave the line unchanged"
            );
        }
    }
    for crash in [false, true] {
        let (max, what) = cmdline::bzimage_capacity("fuzzed", capacity.map(|n| n as u32), crash);
        assert!(max <= capacity.unwrap_or(255).max(255));
        assert!(!what.is_empty());
    }
});
