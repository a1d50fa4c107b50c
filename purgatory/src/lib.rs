//! The purgatory of kexec-rs' `kexec_load` path, and what the loader shares with it.
//!
//! After `reboot(LINUX_REBOOT_CMD_KEXEC)` the old kernel copies the segments to
//! their destinations and jumps here, in 64-bit mode on an identity map, with
//! an invalid GDT/IDT, interrupts off and SSE unusable (CR4 has no OSFXSR).
//! This code then:
//! 1. loads its own GDT (flat code at 0x10, data at 0x18, as the Linux boot
//!    protocol asks), reloads CS/DS/ES/SS/FS/GS and switches to its own stack;
//! 2. unless `skip_checks` is set (`kexec -i`), computes the SHA-256 of every
//!    other segment and compares it with the digest the loader stored; on a
//!    mismatch it halts forever rather than jump into a corrupt kernel;
//!    With `--console-serial` it first says so on the serial port, and says why
//!    it halts;
//! 3. loads every general register from the parameter block (for Linux:
//!    RSI = zero page, RIP = load address + 0x200) and jumps.
//!
//! The loader patches [`params::Params`] at symbol `purgatory_params`; the
//! image is position independent (checked at build time by linking it at two
//! addresses), so it runs wherever the loader puts it. The kexec crate's
//! `build.rs` compiles this file with `--cfg purgatory_image` and no SSE, links
//! it with `ld` and flattens it with `objcopy`; see `README.md`. Built
//! normally (for the host), the crate is the parameter layout, the SHA-256
//! and the verification logic, which the host tests exercise.

#![cfg_attr(not(test), no_std)]

pub mod params;
pub mod sha256;
pub mod verify;

#[cfg(purgatory_image)]
mod console;
#[cfg(purgatory_image)]
mod image;
