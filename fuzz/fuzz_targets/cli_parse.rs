//! The `kexec` argument parser (kexec-tools' getopt_long grammar plus the
//! `info`/`check`/`status` subcommands). Input: the arguments, NUL
//! separated, as they sit in `/proc/PID/cmdline`.
#![no_main]

use kexec::cli::{self, Command};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let args: Vec<&str> = if text.is_empty() {
        Vec::new()
    } else {
        text.split('\0').collect()
    };
    match cli::parse(&args) {
        Ok(Command::Kexec(inv)) => {
            let _ = format!("{inv:?}");
        }
        Ok(other) => {
            let _ = format!("{other:?}");
        }
        Err(e) => {
            // Printed as `kexec: {e}`: one line.
            let msg = e.to_string();
            assert!(!msg.is_empty());
        }
    }
});
