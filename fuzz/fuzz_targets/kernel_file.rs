//! What the CLI does with the kernel file it is given (`KernelFile::open`):
//! detect the format, check a bzImage's sizes, take a UKI apart, decompress
//! an arm64 `Image.gz`/zboot into a sealed memfd, then describe it (kind,
//! version, architecture, command-line limit) for messages and diagnosis.
//! The bytes reach it through a memfd's `/proc/self/fd` path, so each input
//! costs no disk write.
#![no_main]

use std::io::{Seek, Write};

use kexec::kernel_file::KernelFile;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let fd = nix::sys::memfd::memfd_create(
        c"kexec-fuzz-kernel",
        nix::sys::memfd::MemFdCreateFlag::MFD_CLOEXEC,
    )
    .expect("memfd_create");
    let mut file = std::fs::File::from(fd);
    file.write_all(data).expect("write the memfd");
    file.rewind().expect("rewind");
    let path = std::path::PathBuf::from(format!(
        "/proc/self/fd/{}",
        std::os::fd::AsRawFd::as_raw_fd(&file)
    ));
    match KernelFile::open(&path) {
        Ok(k) => {
            let _ = k.kind();
            let _ = k.version();
            for machine in ["x86_64", "i686", "aarch64", "riscv64"] {
                let _ = k.runs_on(machine);
            }
            let _ = k.hints();
            for crash in [false, true] {
                if let Some((max, what)) = k.cmdline_capacity(crash) {
                    assert!(max <= 1 << 32, "{max}");
                    assert!(!what.is_empty());
                }
            }
        }
        Err(e) => {
            let msg = e.to_string();
            assert!(
                msg.contains("/proc/self/fd/"),
                "the message must name the file: {msg}"
            );
        }
    }
});
