//! OpenRC scenarios: fast reboots through OpenRC services in a guest booted like Alpine
//! (busybox init running `openrc shutdown` for both `reboot` and `poweroff`).
//!
//! The Alpine wiki's two services are run verbatim (`vm/wiki/`) with the project's `kexec` and
//! with kexec-tools' as the `kexec` in `PATH`; the shipped services (`openrc/`) are installed
//! the way the README tells a user to (`kexec install-openrc`). A kexec reboot is proven by the
//! next boot's ready line, a new `boot_id` and no QMP `RESET`; a firmware reboot by `RESET`;
//! a poweroff by QMP `SHUTDOWN`. Run them with `cargo xtask vm-test openrc`.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use xtask::cpio::Archive;
use xtask::guest::Profile;
use xtask::openrc_flow::{
    add_wiki_scripts, must_contain, reboot_expect_kexec, tail, wiki_flow, ALPINE_NAMES,
};
use xtask::scenario::{scenario, BootOpts, Impl, Run, KEXEC_DEADLINE};

/// Where the busybox-built early microcode archive goes, and the file it carries.
const UCODE_IMG: &str = "/boot/intel-ucode.img";
const UCODE_FILE: &str = "kernel/x86/microcode/GenuineIntel.bin";

fn opts() -> BootOpts {
    BootOpts {
        profile: Profile::Debian,
        ..BootOpts::default()
    }
}

/// Sends a reboot or poweroff command to the console.
fn send(run: &mut Run, cmd: &str) -> Result<()> {
    run.vm.console.send(cmd)?;
    Ok(())
}

/// Waits until QEMU reports `event` over QMP; returns the time waited.
fn wait_qmp_event(run: &Run, event: &str, deadline: Duration, why: &str) -> Result<Duration> {
    let t = Instant::now();
    while run.vm.qmp.count(event) == 0 {
        if t.elapsed() > deadline {
            bail!(
                "no QMP {event} within {deadline:?} ({why}); {}",
                run.vm.artifacts().replace('\n', "; ")
            );
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    Ok(t.elapsed())
}

/// Waits until the machine powered off: QMP `SHUTDOWN`, or QEMU gone with the kernel's
/// `reboot: Power down` as its last word (QEMU exits on a guest poweroff and may close QMP
/// before the event is read).
fn wait_powered_off(run: &Run) -> Result<()> {
    let t = Instant::now();
    loop {
        if run.vm.qmp.count("SHUTDOWN") > 0 {
            return Ok(());
        }
        let text = run.vm.console.text();
        if text.contains("reboot: Power down")
            && (run.vm.qmp.is_closed() || t.elapsed() > Duration::from_secs(30))
        {
            // Either QEMU exited, or the kernel said it powered down and QEMU stays quiet.
            let (running, status) = run
                .vm
                .qmp
                .query_status()
                .unwrap_or((false, "exited".into()));
            if running && status == "running" && !run.vm.qmp.is_closed() {
                bail!("the kernel printed `reboot: Power down` but QEMU still reports the machine as {status}");
            }
            return Ok(());
        }
        if t.elapsed() > KEXEC_DEADLINE {
            bail!(
                "the machine did not power off within {KEXEC_DEADLINE:?}; {}",
                run.vm.artifacts().replace('\n', "; ")
            );
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// Installs the wiki's services exactly as the page says on an alpine-like guest and reboots:
/// the second boot must come through kexec.
fn wiki(name: &str, imp: Impl) -> Result<()> {
    // As on Alpine, whose kernels have no kexec_file_load: the load goes through kexec_load.
    let mut o = BootOpts {
        profile: Profile::AlpineLike,
        ..BootOpts::default()
    };
    add_wiki_scripts(&mut o)?;
    scenario(name, o, |run| wiki_flow(run, imp))
}

#[test]
#[ignore = "boots QEMU guests: run with `cargo xtask vm-test`"]
fn openrc_wiki_ours() -> Result<()> {
    wiki("openrc_wiki_ours", Impl::Ours)
}

#[test]
#[ignore = "boots QEMU guests: run with `cargo xtask vm-test`"]
fn openrc_wiki_kexec_tools() -> Result<()> {
    wiki("openrc_wiki_kexec_tools", Impl::KexecTools)
}

/// `kexec install-openrc` as a new user runs it, then writes `conf` (if any) and restarts
/// `kexec-load` so the configuration applies.
fn install(run: &mut Run, conf: &str) -> Result<String> {
    run.require(xtask::scenario::Impl::Ours)?;
    run.ok(ALPINE_NAMES)?;
    let out = run.ok("kexec install-openrc")?;
    for want in [
        "/etc/init.d/kexec-load",
        "/etc/init.d/kexec-exec",
        "/etc/conf.d/kexec",
        "rc-update add kexec-exec shutdown",
    ] {
        must_contain(&out, want, "kexec install-openrc")?;
    }
    let levels = run.ok("ls /etc/runlevels/default /etc/runlevels/shutdown")?;
    must_contain(&levels, "kexec-load", "kexec-load in the default runlevel")?;
    must_contain(&levels, "kexec-exec", "kexec-exec in the shutdown runlevel")?;
    if !conf.is_empty() {
        // The console takes one line per command: append the settings with printf.
        let lines: Vec<String> = conf.lines().map(|l| format!("'{l}'")).collect();
        run.ok(&format!(
            "printf '%s\\n' {} >> /etc/conf.d/kexec",
            lines.join(" ")
        ))?;
        run.ok("rc-service kexec-load restart")?;
    }
    Ok(out)
}

fn loaded(run: &mut Run) -> Result<String> {
    Ok(run.ok("cat /sys/kernel/kexec_loaded")?.trim().to_string())
}

/// Scenario 3: the shipped services with their defaults, installed as the README says, and
/// the armed reboot (`kexec reboot`), which is what kexecs under busybox init in the default
/// mode (`KEXEC_ON=reboot`). The kernel is loaded during the shutdown. The guest imitates an
/// Alpine kernel (`kexec_file_load` answers ENOSYS), so the load goes through `kexec_load`.
#[test]
#[ignore = "boots QEMU guests: run with `cargo xtask vm-test`"]
fn openrc_install_and_kexec_reboot() -> Result<()> {
    // Like an Alpine kernel: no kexec_file_load, so kexec-rs loads with kexec_load.
    let o = BootOpts {
        profile: Profile::AlpineLike,
        ..BootOpts::default()
    };
    scenario("openrc_install_and_kexec_reboot", o, |run| {
        install(run, "")?;
        if loaded(run)? != "0" {
            bail!("with the default configuration nothing is loaded before the shutdown");
        }
        reboots_loading_at_shutdown(run, "kexec reboot")
    })
}

/// Sends `cmd` (a reboot) with the services' defaults and proves it went through kexec with
/// the kernel loaded during the shutdown.
fn reboots_loading_at_shutdown(run: &mut Run, cmd: &str) -> Result<()> {
    let marker = run.guest.marker.clone();
    let (_, text) = reboot_expect_kexec(run, cmd, &marker)?;
    must_contain(
        &text,
        "kexec-load: loading /boot/vmlinuz-amd64 for a fast reboot",
        "the load at shutdown",
    )?;
    must_contain(&text, "kexec-exec: rebooting with kexec", "kexec-exec")
}

/// Scenario 3, continued: `KEXEC_PRELOAD=yes` with an early-microcode archive and the
/// initramfs. The kernel is loaded at boot; the shutdown only checks that it is current. The
/// new boot's root holds the microcode archive's file (so it was loaded, first: `kexec
/// status` lists it first) and the initramfs (the boot reached its console).
#[test]
#[ignore = "boots QEMU guests: run with `cargo xtask vm-test`"]
fn openrc_preload_microcode_initramfs() -> Result<()> {
    scenario("openrc_preload_microcode_initramfs", opts(), |run| {
        let marker = format!("{}-boot2", run.name);
        run.ok(&format!(
            "mkdir -p /tmp/uc/$(dirname {UCODE_FILE}) && echo kexec-rs-test-microcode > /tmp/uc/{UCODE_FILE} && \
             (cd /tmp/uc && find kernel | cpio -o -H newc > {UCODE_IMG})"
        ))?;
        let conf = format!(
            "KEXEC_PRELOAD=yes\nCMDLINE=\"{}\"",
            run.cmdline_for(&marker)
        );
        install(run, &conf)?;
        if loaded(run)? != "1" {
            bail!("KEXEC_PRELOAD=yes: kexec-load start did not load the kernel");
        }
        let status = run.ok("kexec status")?;
        let ucode = status
            .find(&format!("initrd:  {UCODE_IMG}"))
            .context("kexec status does not list the microcode archive")?;
        let initramfs = status
            .find("initrd:  /boot/initramfs")
            .context("kexec status does not list the initramfs")?;
        if ucode > initramfs {
            bail!("the microcode archive must be the first initrd:\n{status}");
        }
        let (_, text) = reboot_expect_kexec(run, "kexec reboot", &marker)?;
        must_contain(
            &text,
            "kexec-load: preloaded kernel is current",
            "the shutdown path with a preloaded kernel",
        )?;
        if text.contains("for a fast reboot") {
            bail!(
                "KEXEC_PRELOAD=yes, files unchanged: the shutdown loaded the kernel again:\n{}",
                tail(&text, 40)
            );
        }
        let u = run.ok(&format!("cat /{UCODE_FILE}"))?;
        must_contain(
            &u,
            "kexec-rs-test-microcode",
            "the microcode archive's file in the new root",
        )?;
        run.ok("test -x /sbin/kexec && test -x /etc/vm/console")?;
        Ok(())
    })
}

/// Scenario 4: stopping kexec-load by hand (not going down) loads nothing, and drops a
/// preloaded kernel, so the next shutdown is a normal one (the wiki's advice).
#[test]
#[ignore = "boots QEMU guests: run with `cargo xtask vm-test`"]
fn openrc_stop_not_going_down_loads_nothing() -> Result<()> {
    scenario("openrc_stop_not_going_down_loads_nothing", opts(), |run| {
        install(run, "")?;
        let out = run.ok("rc-service kexec-load stop")?;
        must_contain(
            &out,
            "not rebooting or powering off; not loading a kernel",
            "kexec-load stop",
        )?;
        if loaded(run)? != "0" {
            bail!("rc-service kexec-load stop loaded a kernel while the system is not going down");
        }
        run.ok("echo KEXEC_PRELOAD=yes >> /etc/conf.d/kexec && rc-service kexec-load start")?;
        if loaded(run)? != "1" {
            bail!("KEXEC_PRELOAD=yes: kexec-load start did not load the kernel");
        }
        run.ok("rc-service kexec-load stop")?;
        if loaded(run)? != "0" {
            bail!("rc-service kexec-load stop left the preloaded kernel loaded: the next shutdown would kexec");
        }
        run.assert_still_running()
    })
}

/// Scenario 5: in the default mode a poweroff powers off, even with a preloaded kernel.
#[test]
#[ignore = "boots QEMU guests: run with `cargo xtask vm-test`"]
fn openrc_poweroff_powers_off() -> Result<()> {
    scenario("openrc_poweroff_powers_off", opts(), |run| {
        install(run, "KEXEC_PRELOAD=yes")?;
        if loaded(run)? != "1" {
            bail!("KEXEC_PRELOAD=yes: kexec-load start did not load the kernel");
        }
        powers_off(run, "poweroff")
    })
}

/// Sends `cmd` (a poweroff) with a kernel preloaded and proves the machine powered off: no
/// second boot, no firmware reset, and kexec-load saying it will not kexec.
fn powers_off(run: &mut Run, cmd: &str) -> Result<()> {
    let t = Instant::now();
    send(run, cmd)?;
    wait_powered_off(run)?;
    eprintln!(
        "[{}] `{cmd}` -> powered off in {:.1} s",
        run.name,
        t.elapsed().as_secs_f64()
    );
    let text = run.vm.console.text();
    if text.matches("KEXECRS-READY").count() != 1 {
        bail!("a second boot happened after `{cmd}`:\n{}", tail(&text, 40));
    }
    if run.vm.qmp.count("RESET") != 0 {
        bail!("`{cmd}` reset the machine instead of powering it off");
    }
    must_contain(
        &text,
        "this shutdown will not use kexec",
        "kexec-load at poweroff",
    )
}

/// Scenario 6: the kernel file is broken after it was preloaded; at shutdown the reload
/// fails, the stale kernel is dropped, and the machine reboots through the firmware (QMP
/// `RESET`) with the reason on the console.
#[test]
#[ignore = "boots QEMU guests: run with `cargo xtask vm-test`"]
fn openrc_broken_kernel_reboots_through_firmware() -> Result<()> {
    scenario(
        "openrc_broken_kernel_reboots_through_firmware",
        opts(),
        |run| {
            let marker = format!("{}-boot2", run.name);
            install(
                run,
                &format!(
                    "KEXEC_PRELOAD=yes\nCMDLINE=\"{}\"",
                    run.cmdline_for(&marker)
                ),
            )?;
            if loaded(run)? != "1" {
                bail!("KEXEC_PRELOAD=yes: kexec-load start did not load the kernel");
            }
            run.ok("echo 'not a kernel' > /boot/vmlinuz-amd64")?;
            send(run, "kexec reboot")?;
            let t = Instant::now();
            let took = wait_qmp_event(
                run,
                "RESET",
                KEXEC_DEADLINE,
                "a failed load must end in a firmware reboot",
            )?;
            eprintln!(
                "[{}] `kexec reboot` with a broken kernel -> QMP RESET in {:.1} s",
                run.name,
                took.as_secs_f64()
            );
            // The firmware boots the first kernel again (console waits stop at a RESET, so
            // the second kernel's lines are polled for): the time a firmware reboot costs here.
            while run.vm.console.count("Linux version") < 2 {
                if t.elapsed() > KEXEC_DEADLINE {
                    bail!("the firmware reboot did not start a kernel within {KEXEC_DEADLINE:?}");
                }
                std::thread::sleep(Duration::from_millis(100));
            }
            let started = t.elapsed();
            while run.vm.console.count("KEXECRS-READY") < 2 {
                if t.elapsed() > KEXEC_DEADLINE {
                    bail!("the firmware reboot did not reach the guest's console within {KEXEC_DEADLINE:?}");
                }
                std::thread::sleep(Duration::from_millis(200));
            }
            eprintln!(
                "[{}] `kexec reboot` with a broken kernel -> firmware reboot: next kernel started in {:.1} s, ready in {:.1} s",
                run.name,
                started.as_secs_f64(),
                t.elapsed().as_secs_f64()
            );
            let text = run.vm.console.text();
            must_contain(
                &text,
                "kexec-load: loading failed",
                "the reason on the console",
            )?;
            must_contain(
                &text,
                "kexec-exec: no kernel loaded",
                "kexec-exec after the failed load",
            )?;
            if text.contains(&format!("KEXECRS-READY marker={marker}")) {
                bail!("the broken kernel's reboot still went through kexec");
            }
            // Show the reason the user sees.
            for l in text
                .lines()
                .filter(|l| l.contains("kexec:") || l.contains("loading failed"))
            {
                eprintln!("[{}] console: {}", run.name, l.trim());
            }
            Ok(())
        },
    )
}

/// The newer kernel scenario 7 places in /boot.
fn newer_kernel() -> Result<(PathBuf, String)> {
    let root = xtask::cache::default_root();
    let ks = xtask::fetch::read_kernels(&root)?;
    let k = ks
        .into_iter()
        .find(|k| k.name == "debian-6.12-cloud-amd64")
        .with_context(|| {
            format!(
                "debian-6.12-cloud-amd64 is not in {}/kernels.json; run `cargo xtask fetch`",
                root.display()
            )
        })?;
    Ok((k.kernel, k.version))
}

/// Scenario 7: a newer kernel copied over `/boot/vmlinuz-<flavor>` (as a kernel upgrade does)
/// after the old one was preloaded is the one that boots: the shutdown sees the change and
/// reloads. This run uses `KEXEC_ON=always`, the wiki's behaviour, with a plain `reboot`.
#[test]
#[ignore = "boots QEMU guests: run with `cargo xtask vm-test`"]
fn openrc_newer_kernel_boots() -> Result<()> {
    let (kernel, version) = newer_kernel()?;
    // A layer of the first boot only (the kexec'd boot does not need the 11 MB again).
    let layer =
        xtask::workspace_root().join("target/vm-tests/openrc_newer_kernel_boots.layer.cpio");
    std::fs::create_dir_all(layer.parent().context("layer path")?)?;
    let mut a = Archive::new();
    a.file_from("root/vmlinuz-new", &kernel, 0o644)?;
    a.write_file(&layer)?;
    let mut o = opts();
    o.layers.push(layer);
    scenario("openrc_newer_kernel_boots", o, |run| {
        let marker = format!("{}-boot2", run.name);
        let conf = format!(
            "KEXEC_ON=always\nKEXEC_PRELOAD=yes\nCMDLINE=\"{}\"",
            run.cmdline_for(&marker)
        );
        install(run, &conf)?;
        let old = run.ok("uname -r")?.trim().to_string();
        if old == version {
            bail!("the guest already runs {version}; the scenario needs an older kernel first");
        }
        if loaded(run)? != "1" {
            bail!("KEXEC_PRELOAD=yes: kexec-load start did not load the kernel");
        }
        run.ok("cp /root/vmlinuz-new /boot/vmlinuz-amd64")?;
        let (_, text) = reboot_expect_kexec(run, "reboot", &marker)?;
        must_contain(
            &text,
            "for a fast reboot",
            "the reload of the changed kernel at shutdown",
        )?;
        let now = run.ok("uname -r")?.trim().to_string();
        if now != version {
            bail!("after the reboot the kernel is {now}, not the newer {version} placed in /boot");
        }
        eprintln!("[{}] {old} -> {now}", run.name);
        Ok(())
    })
}

/// A guest whose PID 1 is openrc-init (Alpine's alternative to busybox init), shaped like an
/// Alpine kernel. There `openrc-shutdown -r` sets `RC_REBOOT=YES` for the shutdown runlevel,
/// which is what the services' default mode (`KEXEC_ON=reboot`) waits for.
fn openrc_init_opts() -> BootOpts {
    BootOpts {
        profile: Profile::AlpineLike,
        extra_cmdline: vec!["kexecrs.init=openrc".into()],
        ..BootOpts::default()
    }
}

/// Under openrc-init, the shipped services with their defaults: `openrc-shutdown -r now`
/// reboots through kexec (the kernel loaded during the shutdown), with no armed state.
#[test]
#[ignore = "boots QEMU guests: run with `cargo xtask vm-test`"]
fn openrc_init_reboot_kexecs() -> Result<()> {
    scenario("openrc_init_reboot_kexecs", openrc_init_opts(), |run| {
        let pid1 = run.ok("cat /proc/1/comm")?;
        must_contain(&pid1, "openrc-init", "PID 1")?;
        install(run, "")?;
        reboots_loading_at_shutdown(run, "openrc-shutdown -r now")?;
        let pid1 = run.ok("cat /proc/1/comm")?;
        must_contain(&pid1, "openrc-init", "PID 1 after the kexec")?;
        Ok(())
    })
}

/// Under openrc-init, `openrc-shutdown -p now` powers off even with a preloaded kernel: the
/// services see `RC_REBOOT` unset and drop the kernel instead of jumping into it.
#[test]
#[ignore = "boots QEMU guests: run with `cargo xtask vm-test`"]
fn openrc_init_poweroff_powers_off() -> Result<()> {
    scenario(
        "openrc_init_poweroff_powers_off",
        openrc_init_opts(),
        |run| {
            install(run, "KEXEC_PRELOAD=yes")?;
            if loaded(run)? != "1" {
                bail!("KEXEC_PRELOAD=yes: kexec-load start did not load the kernel");
            }
            powers_off(run, "openrc-shutdown -p now")
        },
    )
}
