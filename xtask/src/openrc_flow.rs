//! The OpenRC flows scenarios share: the Alpine wiki's two services installed step by step, and
//! a reboot proven to go through kexec. Used by the OpenRC scenarios (`xtask/tests/openrc.rs`)
//! and by the kernel matrix, so both run the same flow.

use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

use crate::guest::ExtraFile;
use crate::scenario::{BootOpts, Impl, Run, KEXEC_DEADLINE};

/// Alpine names its boot files after the kernel flavor, the last `-` part of `uname -r`
/// (`amd64` for the Debian cloud kernels the guests run): the services pick them by that name.
pub const ALPINE_NAMES: &str =
    "f=$(uname -r | awk -F- '{print $NF}'); ln -sf vmlinuz /boot/vmlinuz-$f; ln -sf initramfs /boot/initramfs-$f";

pub fn boot_id(run: &mut Run) -> Result<String> {
    Ok(run
        .ok("cat /proc/sys/kernel/random/boot_id")?
        .trim()
        .to_string())
}

/// Sends `cmd` (a reboot) and proves that the next kernel came up through kexec: the ready
/// line with `marker`, a new boot_id, and no firmware reset. Returns the time from the command
/// to the new kernel's ready line, and everything the console printed meanwhile (the services'
/// messages during the shutdown).
pub fn reboot_expect_kexec(run: &mut Run, cmd: &str, marker: &str) -> Result<(Duration, String)> {
    let before = boot_id(run)?;
    let t = Instant::now();
    run.vm.console.send(cmd)?;
    // The next kernel's first line: the shutdown plus the jump, without its boot.
    let mut text = run.vm.console.expect(
        "Linux version",
        KEXEC_DEADLINE,
        &format!("the next kernel starting after `{cmd}`"),
    )?;
    let started = t.elapsed();
    let ready = format!("KEXECRS-READY marker={marker} ");
    text += &run.vm.console.expect(
        &ready,
        KEXEC_DEADLINE,
        &format!("the next kernel after `{cmd}`"),
    )?;
    let took = t.elapsed();
    run.kexec_times.push(took);
    run.assert_no_firmware_reboot()?;
    let after = boot_id(run)?;
    if after == before {
        bail!("the ready line came, but the boot_id is unchanged ({after}): no reboot happened");
    }
    eprintln!(
        "[{}] `{cmd}` -> next kernel started in {:.1} s, ready in {:.1} s (through kexec)",
        run.name,
        started.as_secs_f64(),
        took.as_secs_f64()
    );
    Ok((took, text))
}

pub fn must_contain(text: &str, needle: &str, what: &str) -> Result<()> {
    if !text.contains(needle) {
        bail!(
            "{what}: the console did not show {needle:?}; it showed:\n{}",
            tail(text, 40)
        );
    }
    Ok(())
}

pub fn tail(text: &str, n: usize) -> String {
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

/// Puts the wiki's two scripts (`vm/wiki/`, restored verbatim) into the guest under
/// `/root/wiki/`, not executable: making them so is one of the wiki's steps.
pub fn add_wiki_scripts(o: &mut BootOpts) -> Result<()> {
    let root = crate::workspace_root();
    for svc in ["kexec-load", "kexec-exec"] {
        let p = root.join("vm/wiki").join(svc);
        let contents = std::fs::read(&p).with_context(|| format!("cannot read {}", p.display()))?;
        o.extra_files.push(ExtraFile {
            path: format!("/root/wiki/{svc}"),
            contents,
            mode: 0o644,
        });
    }
    Ok(())
}

/// The wiki's steps, one by one, with `kexec` in `PATH` being the project's or kexec-tools'
/// (`imp`), then `reboot`: the next boot must come through kexec with the reused command line,
/// and the console must show both services at work.
pub fn wiki_flow(run: &mut Run, imp: Impl) -> Result<()> {
    match imp {
        Impl::KexecTools => {
            // Parity: kexec-tools' binary is the `kexec` the verbatim scripts find.
            run.ok("ln -sf /usr/sbin/kexec-tools /sbin/kexec")?;
            let v = run.ok("kexec --version")?;
            must_contain(&v, "kexec-tools", "kexec in PATH is kexec-tools")?;
        }
        Impl::Ours => run.require(Impl::Ours)?,
    }
    run.ok(ALPINE_NAMES)?;
    run.ok("cp /root/wiki/kexec-load /root/wiki/kexec-exec /etc/init.d/")?;
    run.ok("chmod a+x /etc/init.d/kexec-load")?;
    run.ok("chmod a+x /etc/init.d/kexec-exec")?;
    run.ok("rc-update add kexec-load default")?;
    run.ok("rc-update add kexec-exec shutdown")?;
    run.ok("rc-service kexec-load start")?;
    // Not one of the wiki's steps: this guest's (Debian's) OpenRC can cache a dependency
    // tree without services added within the same second, and `openrc shutdown` then stops
    // nothing (measured). A person typing the steps is slower than that; a script is not.
    run.ok("rc-update -u")?;
    // --reuse-cmdline: the next boot announces the same marker; boot_id tells them apart.
    let marker = run.guest.marker.clone();
    let (_, text) = reboot_expect_kexec(run, "reboot", &marker)?;
    must_contain(
        &text,
        "kexec-load: loading kernel for faster reboot",
        "the wiki's kexec-load ran at shutdown",
    )?;
    must_contain(
        &text,
        "kexec-exec: Using kexec for faster reboot",
        "the wiki's kexec-exec ran",
    )?;
    Ok(())
}
