//! VM scenarios: real kernels booted in QEMU, kexec'd by the project's `kexec` (`ours`) and by
//! kexec-tools' (`kexec_tools`), so parity is a test. Run them with `cargo xtask vm-test
//! [FILTER]`; they are `#[ignore]`d so a plain `cargo nextest run` lists them as skipped
//! instead of booting VMs. Each scenario is written once, over a [`Kexec`] value (which binary,
//! which load flags); the `variants!` macro instantiates it for the implementations and modes
//! where it applies.

use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context, Result};
use xtask::guest::{paths, Profile};
use xtask::scenario::{scenario, BootOpts, Impl, Kexec, Run};

fn opts(profile: Profile) -> BootOpts {
    BootOpts {
        profile,
        ..BootOpts::default()
    }
}

/// Loads the guest's own kernel and initramfs with a new command line announcing `marker`.
fn load_with_marker(run: &mut Run, k: Kexec, marker: &str, extra: &str) -> Result<()> {
    let cmdline = run.cmdline_for(marker);
    run.load(
        k,
        "-l",
        &format!(
            "{} --initrd {} {extra} --append \"{cmdline}\"",
            paths::KERNEL,
            paths::INITRAMFS
        ),
    )
}

fn exec(run: &mut Run, k: Kexec, marker: &str) -> Result<Duration> {
    run.exec_and_expect_kexec(&format!("{} -e", k.path()), marker)
}

/// The running kernel's command line must be the one that was loaded.
fn assert_cmdline_has(run: &mut Run, want: &str) -> Result<()> {
    let now = run.read("/proc/cmdline")?;
    ensure!(
        now.contains(want),
        "after the kexec, /proc/cmdline is {now:?}; expected it to contain {want:?}"
    );
    Ok(())
}

/// `kexec -l KERNEL --initrd INITRD --append "… marker"`, then `kexec -e`: the new kernel comes
/// up with the new command line, through kexec (no firmware reset).
fn load_exec(name: &str, k: Kexec, profile: Profile) -> Result<()> {
    scenario(name, opts(profile), |run| {
        let marker = format!("{name}-boot2");
        load_with_marker(run, k, &marker, "")?;
        exec(run, k, &marker)?;
        assert_cmdline_has(run, &format!("kexecrs.marker={marker}"))
    })
}

/// `--console-serial`: the purgatory says it runs on ttyS0 (kexec-tools' words, which ours
/// repeats), between the old kernel's last line and the new one's first. Ours in its default
/// mode: asking for the message picks `kexec_load`, whose purgatory is ours.
fn console_serial(name: &str, k: Kexec) -> Result<()> {
    scenario(name, opts(Profile::Debian), |run| {
        let marker = format!("{name}-boot2");
        load_with_marker(run, k, &marker, "--console-serial --serial ttyS0")?;
        let before = run.vm.console.count(PURGATORY_SAYS);
        exec(run, k, &marker)?;
        let text = run.vm.console.text();
        let said = text.matches(PURGATORY_SAYS).count() - before;
        ensure!(
            said == 1,
            "the purgatory's {PURGATORY_SAYS:?} appeared {said} times on the console"
        );
        let at = text.rfind(PURGATORY_SAYS).unwrap_or(0);
        let new_kernel = text[at..].find("Linux version");
        ensure!(
            new_kernel.is_some(),
            "no new kernel banner after the purgatory's message"
        );
        assert_cmdline_has(run, &format!("kexecrs.marker={marker}"))
    })
}

/// What a purgatory asked for `--console-serial` prints first.
const PURGATORY_SAYS: &str = "I'm in purgatory";

/// `--reuse-cmdline`: the new kernel gets the running one's command line (same marker, so the
/// proof of a new kernel is a second `Linux version` banner and a fresh uptime).
fn reuse_cmdline(name: &str, k: Kexec, profile: Profile) -> Result<()> {
    scenario(name, opts(profile), |run| {
        let before = run.read("/proc/cmdline")?;
        run.load(
            k,
            "-l",
            &format!(
                "{} --initrd {} --reuse-cmdline",
                paths::KERNEL,
                paths::INITRAMFS
            ),
        )?;
        let marker = run.guest.marker.clone();
        exec(run, k, &marker)?;
        let after = run.read("/proc/cmdline")?;
        ensure!(after == before, "--reuse-cmdline: the new kernel's command line is {after:?}, the old one was {before:?}");
        let banners = run.vm.console.count("Linux version");
        ensure!(
            banners == 2,
            "expected two kernel boots on the console, saw {banners}"
        );
        let up: f64 = run
            .read("/proc/uptime")?
            .split(' ')
            .next()
            .unwrap_or("")
            .parse()
            .unwrap_or(f64::MAX);
        ensure!(
            up < 120.0,
            "uptime {up} s: this is not a freshly booted kernel"
        );
        Ok(())
    })
}

/// Two `--initrd`s are concatenated in order (ours only: kexec-tools keeps only the last).
fn two_initrds(name: &str, k: Kexec, profile: Profile) -> Result<()> {
    scenario(name, opts(profile), |run| {
        let marker = format!("{name}-boot2");
        load_with_marker(
            run,
            k,
            &marker,
            &format!("--initrd {}", paths::EXTRA_INITRD),
        )?;
        exec(run, k, &marker)?;
        // The first initrd gave the whole userland (we are talking to it); the second its file.
        let extra = run.read(paths::EXTRA_MARKER_FILE)?;
        ensure!(
            extra.contains("second initrd"),
            "the second initrd's file holds {extra:?}"
        );
        Ok(())
    })
}

/// `-l -S` reports a loaded kernel (exit 1) and none (exit 0), `-u` unloads, as kexec-tools
/// 2.0.25 does (measured: `-S` alone asks about the crash kernel).
fn unload_status(name: &str, k: Kexec) -> Result<()> {
    scenario(name, opts(Profile::Debian), |run| {
        run.require(k.imp)?;
        let kp = k.path();
        let (_, none) = run.sh(&format!("{kp} -l -S"))?;
        ensure!(
            none == 0,
            "`kexec -l -S` with nothing loaded exited {none}, kexec-tools exits 0"
        );
        load_with_marker(run, k, "unused", "")?;
        let (_, loaded) = run.sh(&format!("{kp} -l -S"))?;
        ensure!(
            loaded == 1,
            "`kexec -l -S` with a kernel loaded exited {loaded}, kexec-tools exits 1"
        );
        let (_, crash) = run.sh(&format!("{kp} -S"))?;
        ensure!(crash == 0, "`kexec -S` (crash kernel) exited {crash} with no crash kernel loaded, kexec-tools exits 0");
        run.ok(&format!("{kp} -u"))?;
        ensure!(
            run.read("/sys/kernel/kexec_loaded")? == "0",
            "after `kexec -u`, /sys/kernel/kexec_loaded is still 1"
        );
        let (_, after) = run.sh(&format!("{kp} -l -S"))?;
        ensure!(
            after == 0,
            "`kexec -l -S` after an unload exited {after}, kexec-tools exits 0"
        );
        run.assert_still_running()
    })
}

/// `kexec -e` with nothing loaded is an error (kexec-tools: "Nothing has been loaded!", exit
/// 1), and nothing reboots.
fn exec_nothing_loaded(name: &str, k: Kexec) -> Result<()> {
    scenario(name, opts(Profile::Debian), |run| {
        run.require(k.imp)?;
        let (out, code) = run.sh(&format!("{} -e", k.path()))?;
        ensure!(
            code == 1,
            "`kexec -e` with nothing loaded exited {code} (kexec-tools exits 1); output:\n{out}"
        );
        ensure!(
            !out.trim().is_empty(),
            "`kexec -e` with nothing loaded failed silently"
        );
        std::thread::sleep(Duration::from_secs(2));
        run.assert_still_running()
    })
}

/// alpine-hardened: `kernel.kexec_load_disabled=1` makes loads fail with EPERM: exit 255, an
/// error (ours must name `kexec_load_disabled`), and nothing reboots.
fn load_disabled(name: &str, k: Kexec) -> Result<()> {
    scenario(name, opts(Profile::AlpineHardened), |run| {
        run.require(k.imp)?;
        ensure!(
            run.read("/proc/sys/kernel/kexec_load_disabled")? == "1",
            "the alpine-hardened guest did not set kexec_load_disabled"
        );
        let cmdline = run.cmdline_for("never");
        let load = k.load_cmd(
            "-l",
            &format!(
                "{} --initrd {} --append \"{cmdline}\"",
                paths::KERNEL,
                paths::INITRAMFS
            ),
        );
        let (out, code) = run.sh(&format!("{load} 2>&1"))?;
        ensure!(code == 255, "a load with kexec_load_disabled=1 exited {code} (kexec-tools exits 255); output:\n{out}");
        match k.imp {
            Impl::KexecTools => ensure!(
                out.contains("Operation not permitted"),
                "unexpected kexec-tools message:\n{out}"
            ),
            Impl::Ours => ensure!(
                out.contains("kexec_load_disabled"),
                "the error does not explain kexec_load_disabled:\n{out}"
            ),
        }
        ensure!(
            run.read("/sys/kernel/kexec_loaded")? == "0",
            "something was loaded despite kexec_load_disabled=1"
        );
        let (_, e) = run.sh(&format!("{} -e", k.path()))?;
        ensure!(e != 0, "`kexec -e` after the refused load exited 0");
        run.assert_still_running()
    })
}

/// alpine-like: `kexec -s` (kexec_file_load only) fails with exit 253 (kexec-tools' EFALLBACK)
/// because the syscall answers ENOSYS, and nothing is loaded.
fn file_load_enosys(name: &str, k: Kexec) -> Result<()> {
    scenario(name, opts(Profile::AlpineLike), |run| {
        run.require(k.imp)?;
        let (out, code) = run.sh(&format!(
            "{} -s -l {} --initrd {} --reuse-cmdline 2>&1",
            k.path(),
            paths::KERNEL,
            paths::INITRAMFS
        ))?;
        ensure!(code == 253, "`kexec -s -l` without kexec_file_load exited {code} (kexec-tools exits 253); output:\n{out}");
        ensure!(
            out.contains("kexec_file_load"),
            "the error does not name kexec_file_load:\n{out}"
        );
        ensure!(
            run.read("/sys/kernel/kexec_loaded")? == "0",
            "something was loaded"
        );
        run.assert_still_running()
    })
}

/// A file written to a virtio disk (no explicit sync, no unmount) is intact after `kexec -e`:
/// kexec must sync filesystems before rebooting, as kexec-tools does.
fn disk_persists(name: &str, k: Kexec) -> Result<()> {
    let o = BootOpts {
        disk_mb: Some(64),
        ..opts(Profile::Debian)
    };
    scenario(name, o, |run| {
        run.require(k.imp)?;
        run.ok("mount -t ext4 /dev/vda /mnt")?;
        run.ok("dd if=/dev/urandom of=/mnt/payload bs=64k count=16 2>/dev/null")?;
        let sum = run.ok("sha256sum /mnt/payload")?;
        let sum = sum.split_whitespace().next().unwrap_or("").to_string();
        ensure!(sum.len() == 64, "no checksum from the guest: {sum:?}");
        let marker = format!("{name}-boot2");
        load_with_marker(run, k, &marker, "")?;
        exec(run, k, &marker)?;
        run.ok("mount -t ext4 /dev/vda /mnt")?;
        let after = run.ok("sha256sum /mnt/payload")?;
        ensure!(
            after.contains(&sum),
            "the file written before the kexec changed or vanished: before {sum}, after {after:?}"
        );
        Ok(())
    })
}

/// Crash kernel: boot with `crashkernel=256M`, `kexec -p`, panic through sysrq; the capture
/// kernel boots (through kexec, no firmware) and `/proc/vmcore` holds an ELF core.
fn crash_kernel(name: &str, k: Kexec) -> Result<()> {
    let o = BootOpts {
        extra_cmdline: vec!["crashkernel=256M".into()],
        ..opts(Profile::Debian)
    };
    scenario(name, o, |run| {
        let marker = format!("{name}-capture");
        let cmdline = format!(
            "{} irqpoll nr_cpus=1 reset_devices",
            run.cmdline_for(&marker)
        );
        run.load(
            k,
            "-p",
            &format!(
                "{} --initrd {} --append \"{cmdline}\"",
                paths::KERNEL,
                paths::INITRAMFS
            ),
        )?;
        run.exec_and_expect_kexec("echo c > /proc/sysrq-trigger", &marker)?;
        run.ok("test -e /proc/vmcore")?;
        // The ELF header of a 64-bit x86_64 core file: magic, ELFCLASS64, e_type ET_CORE,
        // e_machine EM_X86_64.
        let dump = run.ok("od -An -tx1 -N20 /proc/vmcore")?;
        let bytes: Vec<u8> = dump
            .split_whitespace()
            .filter_map(|b| u8::from_str_radix(b, 16).ok())
            .collect();
        ensure!(
            bytes.len() == 20
                && bytes[..4] == [0x7f, b'E', b'L', b'F']
                && bytes[4] == 2
                && bytes[16] == 4
                && bytes[18] == 0x3e,
            "/proc/vmcore does not start with a 64-bit x86_64 ELF core header: {dump:?}"
        );
        Ok(())
    })
}

/// The ELF vmlinux inside the guest's own bzImage (its decompressed payload), as an
/// initramfs layer putting it at `/boot/vmlinux`: a layer, so `/boot/initramfs` (what the
/// next kernel unpacks) stays as small as in every other scenario.
fn vmlinux_layer(name: &str) -> Result<std::path::PathBuf> {
    let k = xtask::scenario::kernel()?;
    let bytes =
        std::fs::read(&k.kernel).with_context(|| format!("cannot read {}", k.kernel.display()))?;
    let z = kexec::image::bzimage::BzImage::parse(&bytes)?;
    let vmlinux = z.decompress_payload(&bytes, 512 << 20)?;
    let mut a = xtask::cpio::Archive::new();
    a.dir("boot", 0o755)?;
    a.file("boot/vmlinux", vmlinux, 0o644)?;
    let path = xtask::workspace_root()
        .join("target/vm-tests")
        .join(format!("{name}-vmlinux.cpio"));
    std::fs::create_dir_all(path.parent().context("no parent")?)?;
    a.write_file(&path)?;
    Ok(path)
}

/// An ELF vmlinux instead of the bzImage: `kexec_load` puts its segments where it was linked
/// and enters `startup_64`; in the default mode `kexec_file_load` refuses it (x86 takes only
/// bzImages) and the load falls back to `kexec_load`.
fn vmlinux_exec(name: &str, k: Kexec) -> Result<()> {
    let mut o = opts(Profile::Debian);
    o.layers.push(vmlinux_layer(name)?);
    scenario(name, o, |run| {
        let marker = format!("{name}-boot2");
        let cmdline = run.cmdline_for(&marker);
        run.load(
            k,
            "-l",
            &format!(
                "/boot/vmlinux --initrd {} --append \"{cmdline}\"",
                paths::INITRAMFS
            ),
        )?;
        exec(run, k, &marker)?;
        assert_cmdline_has(run, &format!("kexecrs.marker={marker}"))
    })
}

/// `variants!(scenario_fn(args…) { test_name: kexec, … })` makes one `#[test]` per variant,
/// named `scenario_fn::test_name` (filter with `cargo xtask vm-test scenario_fn` or `ours`).
macro_rules! variants {
    ($f:ident $args:tt { $($test:ident : $k:expr),+ $(,)? }) => {
        variants!(@mod $f, $f, $args { $($test : $k),+ });
    };
    ($m:ident = $f:ident $args:tt { $($test:ident : $k:expr),+ $(,)? }) => {
        variants!(@mod $m, $f, $args { $($test : $k),+ });
    };
    (@mod $m:ident, $f:ident, $args:tt { $($test:ident : $k:expr),+ }) => {
        mod $m {
            use super::*;
            $(
                #[test]
                #[ignore = "boots QEMU guests: run with `cargo xtask vm-test`"]
                fn $test() -> Result<()> {
                    variants!(@call $f, concat!(stringify!($m), "-", stringify!($test)), $k, $args)
                }
            )+
        }
    };
    (@call $f:ident, $name:expr, $k:expr, ($($arg:expr),*)) => {
        super::$f($name, $k $(, $arg)*)
    };
}

const OURS: Kexec = Kexec::OURS;
const OURS_CLASSIC: Kexec = Kexec::with(Impl::Ours, "-c");
const OURS_CLASSIC_NO_CHECKS: Kexec = Kexec::with(Impl::Ours, "-c -i");
const OURS_FILE: Kexec = Kexec::with(Impl::Ours, "-s");
const KEXEC_TOOLS: Kexec = Kexec::KEXEC_TOOLS;
const KEXEC_TOOLS_FILE: Kexec = Kexec::with(Impl::KexecTools, "-s");

variants!(load_exec(Profile::Debian) {
    ours: OURS,
    ours_classic: OURS_CLASSIC,
    ours_classic_no_checks: OURS_CLASSIC_NO_CHECKS,
    ours_file: OURS_FILE,
    kexec_tools: KEXEC_TOOLS,
    kexec_tools_file: KEXEC_TOOLS_FILE,
});
variants!(load_exec_alpine_like = load_exec(Profile::AlpineLike) { ours: OURS, kexec_tools: KEXEC_TOOLS });
variants!(reuse_cmdline(Profile::Debian) { ours: OURS, ours_classic: OURS_CLASSIC, kexec_tools: KEXEC_TOOLS });
variants!(reuse_cmdline_alpine_like = reuse_cmdline(Profile::AlpineLike) { ours: OURS, kexec_tools: KEXEC_TOOLS });
// kexec-tools keeps only the last --initrd, so this one is ours only.
variants!(two_initrds(Profile::Debian) { ours: OURS, ours_classic: OURS_CLASSIC });
variants!(two_initrds_alpine_like = two_initrds(Profile::AlpineLike) { ours: OURS });
variants!(unload_status() { ours: OURS, kexec_tools: KEXEC_TOOLS });
variants!(exec_nothing_loaded() { ours: OURS, kexec_tools: KEXEC_TOOLS });
variants!(load_disabled() { ours: OURS, kexec_tools: KEXEC_TOOLS });
variants!(file_load_enosys() { ours: OURS, kexec_tools: KEXEC_TOOLS });
variants!(disk_persists() { ours: OURS, kexec_tools: KEXEC_TOOLS });
// kexec-tools' ELF loader takes an initrd only with --args-linux.
variants!(vmlinux_exec() {
    ours: OURS,
    ours_classic: OURS_CLASSIC,
    kexec_tools: Kexec::with(Impl::KexecTools, "--args-linux"),
});
variants!(console_serial() { ours: OURS, kexec_tools: KEXEC_TOOLS });
variants!(crash_kernel() { ours: OURS, ours_classic: OURS_CLASSIC, kexec_tools: KEXEC_TOOLS });

/// alpine-hardened: `kexec check` reports the disabled loads with Alpine's fix and exits
/// non-zero (ours only: kexec-tools has no `check`).
#[test]
#[ignore = "boots QEMU guests: run with `cargo xtask vm-test`"]
fn check_reports_load_disabled() -> Result<()> {
    scenario(
        "check_reports_load_disabled",
        opts(Profile::AlpineHardened),
        |run| {
            run.require(Impl::Ours)?;
            let (out, code) = run.sh(&format!("{} check 2>&1", paths::OURS))?;
            ensure!(
                code != 0,
                "`kexec check` exited 0 with kexec_load_disabled=1:\n{out}"
            );
            ensure!(
                out.contains("kexec_load_disabled"),
                "`kexec check` does not name kexec_load_disabled:\n{out}"
            );
            ensure!(
                out.contains("update-extlinux"),
                "`kexec check` does not give Alpine's fix (update-extlinux):\n{out}"
            );
            run.assert_still_running()
        },
    )
}

/// The harness itself: a firmware reboot is seen as a QMP RESET and a second SeaBIOS banner,
/// so "no RESET" really distinguishes a kexec.
#[test]
#[ignore = "boots QEMU guests: run with `cargo xtask vm-test`"]
fn harness_detects_firmware_reboot() -> Result<()> {
    scenario(
        "harness_detects_firmware_reboot",
        opts(Profile::Debian),
        |run| {
            run.vm.console.set_abort(None);
            run.vm.console.send("reboot -f")?;
            let marker = run.guest.marker.clone();
            run.expect_ready(
                &marker,
                xtask::scenario::BOOT_DEADLINE,
                "the guest coming back after a firmware reboot",
            )?;
            let resets = run.vm.qmp.count("RESET");
            let banners = run.vm.console.count("SeaBIOS (version");
            ensure!(resets >= 1, "no QMP RESET event after `reboot -f`");
            ensure!(
                banners == 2,
                "{banners} SeaBIOS banners after one firmware reboot"
            );
            ensure!(
                run.assert_no_firmware_reboot().is_err(),
                "the kexec check did not notice the firmware reboot"
            );
            Ok(())
        },
    )
}

/// The harness itself: a scenario waiting for the wrong marker fails within its deadline and
/// says where the serial log and QMP transcript are.
#[test]
#[ignore = "boots QEMU guests: run with `cargo xtask vm-test`"]
fn harness_wrong_marker_fails_in_time() -> Result<()> {
    let deadline = Duration::from_secs(30);
    let t = Instant::now();
    let result = scenario(
        "harness_wrong_marker-expected_failure",
        opts(Profile::Debian),
        |run| {
            load_with_marker(run, Kexec::KEXEC_TOOLS, "harness-right-marker", "")?;
            run.kexec_deadline = deadline;
            exec(run, Kexec::KEXEC_TOOLS, "harness-WRONG-marker").map(drop)
        },
    );
    let took = t.elapsed();
    let Err(e) = result else {
        bail!("a scenario waiting for a marker that never comes passed")
    };
    let msg = format!("{e:#}");
    eprintln!("expected failure after {:.1} s: {msg}", took.as_secs_f64());
    // The wait itself must have ended at its own 30 s deadline (its error says how long it
    // waited), whatever the machine's load did to the boot before it.
    let waited: f64 = msg
        .split("timed out after ")
        .nth(1)
        .and_then(|r| r.split('s').next())
        .and_then(|n| n.trim().parse().ok())
        .with_context(|| format!("the failure is not a deadline: {msg}"))?;
    ensure!(
        (30.0..40.0).contains(&waited),
        "the wrong-marker wait ended after {waited} s, not at its 30 s deadline"
    );
    ensure!(
        msg.contains("serial log:") && msg.contains("QMP transcript:"),
        "the failure does not print the artifact paths: {msg}"
    );
    let log = xtask::workspace_root()
        .join("target/vm-tests/harness_wrong_marker-expected_failure/serial.log");
    ensure!(
        log.is_file(),
        "the serial log {} was not kept",
        log.display()
    );
    let text = std::fs::read_to_string(&log)?;
    ensure!(
        text.contains("KEXECRS-READY marker=harness_wrong_marker-expected_failure-boot1")
            && text.contains("kexec-tools -e"),
        "the kept log is not this run's console (first boot and `kexec -e` missing)"
    );
    // Never the 240 s default deadline: a bound with room for a slow boot on a loaded machine.
    ensure!(
        took < xtask::scenario::BOOT_DEADLINE + Duration::from_secs(60),
        "the failing scenario took {took:?}"
    );
    let _ = std::fs::remove_dir_all(log.parent().unwrap_or(&log));
    Ok(())
}
