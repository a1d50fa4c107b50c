//! kexec-rs: load and boot Linux kernels with `kexec_load` and `kexec_file_load`.
//!
//! The library never prints: every function returns data or a typed error whose
//! `Display` is a complete sentence a user can act on. The `kexec` binary
//! (`src/main.rs`) is a thin layer that turns those into output and exit codes.

pub mod check;
pub mod classic;
pub mod cli;
pub mod cmdline;
pub mod diagnose;
pub mod ifdown;
pub mod image;
pub mod initrd;
pub mod input_file;
pub mod kernel_file;
pub mod status;
pub mod syscall;
pub mod sysview;
