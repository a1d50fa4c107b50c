//! kexec-rs project automation, as a library so integration tests (`xtask/tests/`) drive the
//! same code as `cargo xtask …`.
//!
//! One module per task: [`fetch`] fills the [`cache`]; [`guest`] turns cached packages into a
//! bootable initramfs ([`cpio`]); [`qemu`] boots it and [`console`] + [`qmp`] drive and observe
//! it; [`vm_test`] runs the scenario suite through cargo-nextest; [`matrix`] runs the core
//! scenarios over many kernels; [`tools`] checks the host.

pub mod bench;
pub mod cache;
pub mod console;
pub mod cpio;
pub mod fetch;
pub mod fixtures;
pub mod fuzz;
pub mod guest;
pub mod matrix;
pub mod openrc_flow;
pub mod qemu;
pub mod qmp;
pub mod scenario;
pub mod tools;
pub mod vm_test;

use std::path::PathBuf;

/// The workspace root (the parent of the xtask crate).
pub fn workspace_root() -> PathBuf {
    let here = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    here.parent().map(PathBuf::from).unwrap_or(here)
}
