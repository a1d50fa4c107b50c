//! The kexec system calls, behind a trait so the CLI's logic can be tested
//! without root or a kexec-capable kernel.

/// One piece of memory for `kexec_load`: `buf` is copied to physical address
/// `mem`, and the rest of `memsz` is zero-filled by the kernel.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Segment {
    pub buf: Vec<u8>,
    pub mem: u64,
    pub memsz: u64,
}
