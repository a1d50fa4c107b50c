//! VM scenarios: real kernels booted in QEMU, kexec'd by the project's `kexec` and by
//! kexec-tools'. Run them with `cargo xtask vm-test [FILTER]` (they are `#[ignore]`d so a plain
//! `cargo nextest run` lists them as skipped instead of booting VMs).

use anyhow::{bail, Result};
use xtask::guest::{paths, Profile};
use xtask::scenario::{scenario, BootOpts, Impl, Run};

fn opts(profile: Profile) -> BootOpts {
    BootOpts {
        profile,
        ..BootOpts::default()
    }
}

/// `kexec -l KERNEL --initrd INITRD --append "… marker"` then `kexec -e`: the new kernel comes
/// up with the new command line, through kexec (no firmware reset).
fn load_exec(name: &str, imp: Impl, profile: Profile) -> Result<()> {
    scenario(name, opts(profile), |run: &mut Run| {
        run.require(imp)?;
        let marker = format!("{name}-boot2");
        let cmdline = run.cmdline_for(&marker);
        run.ok(&format!(
            "{} -l {} --initrd {} --append \"{cmdline}\"",
            imp.path(),
            paths::KERNEL,
            paths::INITRAMFS
        ))?;
        run.exec_and_expect_kexec(&format!("{} -e", imp.path()), &marker)?;
        let now = run.ok("cat /proc/cmdline")?;
        if !now.contains(&format!("kexecrs.marker={marker}")) {
            bail!(
                "after the kexec, /proc/cmdline is {now:?}, not the command line that was loaded"
            );
        }
        Ok(())
    })
}

#[test]
#[ignore = "boots QEMU guests: run with `cargo xtask vm-test`"]
fn load_exec_kexec_tools() -> Result<()> {
    load_exec("load_exec_kexec_tools", Impl::KexecTools, Profile::Debian)
}

#[test]
#[ignore = "boots QEMU guests: run with `cargo xtask vm-test`"]
fn load_exec_ours() -> Result<()> {
    load_exec("load_exec_ours", Impl::Ours, Profile::Debian)
}
