//! The `kexec` argument parser (kexec-tools' getopt_long grammar plus the
//! `info`/`check`/`status` subcommands), through `cli::parse_os`, the entry
//! `main` uses. Input: the arguments as raw bytes, NUL separated, as they sit
//! in `/proc/PID/cmdline` — so not necessarily UTF-8, like file names.
#![no_main]

use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;

use kexec::cli::{self, UsageError};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let args: Vec<&OsStr> = if data.is_empty() {
        Vec::new()
    } else {
        data.split(|&b| b == 0).map(OsStr::from_bytes).collect()
    };
    match cli::parse_os(&args) {
        Ok(command) => {
            let _ = format!("{command:?}");
        }
        Err(e) => {
            // Printed as `kexec: {e}`.
            assert!(!e.to_string().is_empty());
            if let UsageError::NotUtf8(shown) = &e {
                assert!(args.iter().any(|a| a.to_str().is_none()), "{shown}");
            }
        }
    }
});
