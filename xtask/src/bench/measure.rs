//! Taking one sample of a row, in a guest.
//!
//! Durations inside a guest come from the guest's monotonic clock (`now at … nsecs` in
//! `/proc/timer_list`, read with shell builtins so no process is started for a mark; with
//! `/proc/uptime` as a 10 ms fallback). Durations across a reboot come from the host's clock on
//! the console stream: a mark the guest prints before the command, and the next kernel's ready
//! line, which carries that kernel's own uptime.

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context, Result};

use super::layer;
use super::rows::{Flow, Mode};
use crate::guest::{paths, Profile};
use crate::scenario::{BootOpts, Impl, Kexec, Run, BOOT_DEADLINE, CMD_DEADLINE};

/// Defines `bm` in the console's shell: sets `$BM` to the monotonic clock in nanoseconds.
const DEFINE_MARK: &str = "bm() { BM=; { read -r _; read -r _; read -r _ _ BM _; } \
     </proc/timer_list 2>/dev/null; case \"$BM\" in ''|*[!0-9]*) read -r u _ </proc/uptime; \
     BM=\"${u%.*}${u#*.}0000000\";; esac; }";

/// UEFI firmware for the OVMF row (Debian's `ovmf` package).
pub const OVMF_CODE: &str = "/usr/share/OVMF/OVMF_CODE_4M.fd";
pub const OVMF_VARS: &str = "/usr/share/OVMF/OVMF_VARS_4M.fd";

/// Prepares a booted guest for in-guest timing; returns the clock it uses.
pub fn define_marks(run: &mut Run) -> Result<&'static str> {
    run.ok(DEFINE_MARK)?;
    let fine = run.ok("bm; a=$BM; bm; echo \"$a $BM\"")?;
    let ns: Vec<u64> = fine
        .split_whitespace()
        .filter_map(|w| w.parse().ok())
        .collect();
    ensure!(
        ns.len() == 2 && ns[1] >= ns[0],
        "the guest's clock marks are unusable: {fine:?}"
    );
    let timer_list = run.sh("test -r /proc/timer_list")?.1 == 0;
    Ok(if timer_list {
        "/proc/timer_list (ns)"
    } else {
        "/proc/uptime (10 ms)"
    })
}

/// Runs `cmd` between two clock marks; returns (seconds, exit status, output).
fn timed(run: &mut Run, cmd: &str) -> Result<(f64, i32, String)> {
    let line =
        format!("bm; a=$BM; {cmd} >/tmp/bench.out 2>&1; s=$?; bm; echo \"BENCH\"\"-T $a $BM $s\"");
    let out = run.ok(&line)?;
    let l = out
        .lines()
        .find_map(|l| l.trim().strip_prefix("BENCH-T "))
        .with_context(|| format!("no timing line from `{cmd}`: {out:?}"))?;
    let v: Vec<i64> = l
        .split_whitespace()
        .filter_map(|w| w.parse().ok())
        .collect();
    ensure!(v.len() == 3, "bad timing line from `{cmd}`: {l:?}");
    let secs = (v[1] - v[0]) as f64 / 1e9;
    let status = v[2] as i32;
    let text = if status != 0 {
        run.ok("cat /tmp/bench.out")?
    } else {
        String::new()
    };
    Ok((secs, status, text))
}

/// The load arguments after `-l` and the mode's flags, announcing `marker` when executed.
fn load_args(run: &Run, marker: &str) -> String {
    format!(
        "{} --initrd {} --append \"{}\"",
        paths::KERNEL,
        paths::INITRAMFS,
        run.cmdline_for(marker)
    )
}

/// Unloads whatever is loaded, and checks that it is gone.
fn unload(run: &mut Run) -> Result<()> {
    let _ = run.sh(&format!("{} -u >/dev/null 2>&1", Impl::KexecTools.path()))?;
    let now = run.read("/sys/kernel/kexec_loaded")?;
    ensure!(now == "0", "a kernel is still loaded after `kexec -u`");
    Ok(())
}

/// One load: `kexec MODE -l …`, seconds in the guest; checks that the kernel was loaded.
pub fn load_once(run: &mut Run, imp: Impl, mode: Mode) -> Result<f64> {
    run.require(imp)?;
    unload(run)?;
    let cmd = Kexec::with(imp, mode.flags()).load_cmd("-l", &load_args(run, "bench-not-executed"));
    let (secs, status, out) = timed(run, &cmd)?;
    ensure!(
        status == 0,
        "`{cmd}` failed with status {status}:\n{}",
        out.trim()
    );
    let loaded = run.read("/sys/kernel/kexec_loaded")?;
    ensure!(loaded == "1", "`{cmd}` exited 0 but nothing is loaded");
    unload(run)?;
    Ok(secs)
}

/// The floor: reading the same bytes a load reads.
pub fn floor_once(run: &mut Run) -> Result<f64> {
    let (secs, status, out) = timed(
        run,
        &format!("cat {} {} >/dev/null", paths::KERNEL, paths::INITRAMFS),
    )?;
    ensure!(
        status == 0,
        "reading the kernel and initramfs failed: {out}"
    );
    Ok(secs)
}

/// Start-up: `runs` × `kexec --version`; seconds per run.
pub fn startup_once(run: &mut Run, imp: Impl, runs: u32) -> Result<f64> {
    run.require(imp)?;
    let v = run.ok(&format!("{} --version", imp.path()))?;
    ensure!(
        !v.trim().is_empty(),
        "`{} --version` printed nothing",
        imp.path()
    );
    let (secs, status, out) = timed(
        run,
        &format!(
            "i=0; while [ $i -lt {runs} ]; do {} --version >/dev/null || break; i=$((i+1)); done; [ $i -eq {runs} ]",
            imp.path()
        ),
    )?;
    ensure!(status == 0, "`{} --version` failed: {out}", imp.path());
    Ok(secs / f64::from(runs))
}

/// The uptime a ready line announces (`… uptime=12.34`), in seconds.
fn uptime_of(line: &str) -> Result<f64> {
    line.split_whitespace()
        .find_map(|w| w.strip_prefix("uptime="))
        .and_then(|u| u.parse().ok())
        .with_context(|| format!("no uptime in the ready line {line:?}"))
}

/// The rest of the first boot's ready line (`Run::boot` returns once its start has arrived).
fn first_ready_line(run: &mut Run) -> Result<String> {
    run.vm
        .console
        .expect("\n", CMD_DEADLINE, "the end of the first ready line")
        .map_err(Into::into)
}

/// The console text of the first boot (up to its ready line).
fn first_boot_text(run: &Run) -> String {
    let pat = format!("KEXECRS-READY marker={} ", run.guest.marker);
    let text = run.vm.console.text();
    let end = text.find(&pat).unwrap_or(text.len());
    text[..end].to_string()
}

/// The console text since the last mark (the shutdown and the next boot).
fn since_mark(run: &Run) -> String {
    let text = run.vm.console.text();
    let at = text.rfind("@@BENCH-MARK").unwrap_or(0);
    text[at..].to_string()
}

/// The number after `key` on a kernel log line, up to `unit`.
fn logged(text: &str, key: &str, unit: &str) -> Option<f64> {
    let at = text.find(key)? + key.len();
    let rest = &text[at..];
    rest[..rest.find(unit)?].trim().parse().ok()
}

/// Why a kernel's own clock cannot be trusted for "minus its uptime", from its log: under TCG
/// on a loaded host the kernel's TSC calibration sometimes comes out several times too low
/// (seen: `PIT calibration deviates from HPET: 720863 2593995`, then `Using PIT calibration
/// value`), its clock runs that much fast until the watchdog replaces the TSC, and no single
/// rate measured later describes it. Such a sample is dropped, with this reason.
pub fn clock_trouble(boot_log: &str) -> Option<String> {
    if let Some(line) = boot_log.lines().find(|l| {
        l.contains("PIT calibration deviates from HPET") || l.contains("Marking TSC unstable")
    }) {
        return Some(format!(
            "the kernel's TSC clock was miscalibrated ({})",
            line.trim()
        ));
    }
    let detected = logged(boot_log, "tsc: Detected ", "MHz")?;
    let refined = logged(boot_log, "Refined TSC clocksource calibration: ", "MHz")?;
    ((detected / refined - 1.0).abs() > RATE_TOLERANCE).then(|| {
        format!("the kernel's early TSC calibration was {detected} MHz, refined {refined} MHz")
    })
}

/// A guest clock running more than this far from the host's is corrected.
const RATE_TOLERANCE: f64 = 0.05;

/// How fast the guest's clock runs against the host's (1.0 = right), from two `/proc/uptime`
/// readings 2 s apart on the host's clock. Under TCG on a loaded host the kernel's quick TSC
/// calibration can be off several times (seen here: 701 MHz detected for a 2594 MHz TSC, and
/// no refinement), which makes "minus the kernel's uptime" meaningless unless corrected.
fn clock_rate(run: &mut Run) -> Result<f64> {
    let read = |run: &mut Run| -> Result<(Instant, f64)> {
        let a = Instant::now();
        let up = uptime_of(&format!("uptime={}", run.read("/proc/uptime")?))?;
        let b = Instant::now();
        Ok((a + (b - a) / 2, up))
    };
    let (t0, u0) = read(run)?;
    std::thread::sleep(Duration::from_secs(2));
    let (t1, u1) = read(run)?;
    let host = (t1 - t0).as_secs_f64();
    ensure!(
        host > 0.0,
        "no time passed on the host between two readings"
    );
    Ok((u1 - u0) / host)
}

/// The kernel's uptime in host seconds, given its clock's rate.
fn corrected(up: f64, rate: f64) -> f64 {
    if (rate - 1.0).abs() > RATE_TOLERANCE && rate > 0.0 {
        up / rate
    } else {
        up
    }
}

/// A time that subtracts a kernel's uptime cannot be negative: if it is, that kernel's clock
/// was wrong in a way neither correction saw, and the sample is dropped with the reason.
fn plausible(what: &str, secs: f64) -> Result<()> {
    ensure!(
        secs >= 0.0,
        "{what} came out {secs:.3} s: the guest's clock ran fast in a way its log and rate do not show; sample dropped"
    );
    Ok(())
}

/// One transition sample, with the guest clock rates used to correct it.
#[derive(Debug, Clone, Copy)]
pub struct Transition {
    pub cold: f64,
    pub dark: f64,
    pub first_rate: f64,
    pub next_rate: f64,
}

/// Sends `cmd` after a printed mark; returns the host instant the mark arrived.
fn send_marked(run: &mut Run, cmd: &str, returned: bool) -> Result<Instant> {
    let tail = if returned {
        "; echo \"@@EXEC\"\"-RETURNED=$?@@\""
    } else {
        ""
    };
    run.vm
        .console
        .send(&format!("echo \"@@BENCH\"\"-MARK\"; {cmd}{tail}"))?;
    run.vm
        .console
        .expect("@@BENCH-MARK", CMD_DEADLINE, "the mark before the command")?;
    Ok(Instant::now())
}

/// Waits for the ready line with `marker`; returns (host instant it arrived, its uptime).
fn wait_ready(
    run: &mut Run,
    marker: &str,
    deadline: Duration,
    why: &str,
) -> Result<(Instant, f64)> {
    let ready = format!("KEXECRS-READY marker={marker} ");
    let (which, text) = run
        .vm
        .console
        .expect_any(&[&ready, "@@EXEC-RETURNED="], deadline, why)?;
    let t = Instant::now();
    if which == 1 {
        let tail: Vec<&str> = text.lines().rev().take(6).collect();
        bail!(
            "the command returned instead of rebooting; its output:\n{}",
            tail.into_iter().rev().collect::<Vec<_>>().join("\n")
        );
    }
    let rest = run
        .vm
        .console
        .expect("\n", CMD_DEADLINE, "the end of the ready line")?;
    Ok((t, uptime_of(&rest)?))
}

/// Stops the guest; removes its directory, or keeps it and says where when `result` failed.
fn finish<T>(run: Run, result: Result<T>) -> Result<T> {
    run.vm.stop();
    match result {
        Ok(v) => {
            if std::env::var_os("KEXEC_RS_KEEP").is_none() {
                let _ = std::fs::remove_dir_all(&run.dir);
            }
            Ok(v)
        }
        Err(e) => Err(e.context(format!(
            "run kept in {}; {}",
            run.dir.display(),
            run.vm.artifacts().replace('\n', "; ")
        ))),
    }
}

/// A fresh guest, a load with `imp`/`mode`, `kexec -e`: (cold boot, dark time) in seconds.
pub fn transition_once(name: &str, imp: Impl, mode: Mode) -> Result<Transition> {
    let mut run = Run::boot(name, BootOpts::default())?;
    let result = (|| {
        run.require(imp)?;
        let first_up = uptime_of(&first_ready_line(&mut run)?)?;
        if let Some(why) = clock_trouble(&first_boot_text(&run)) {
            bail!("first boot: {why}; sample dropped");
        }
        let first_rate = clock_rate(&mut run)?;
        let cold = run.booted.as_secs_f64() - corrected(first_up, first_rate);
        plausible("cold boot", cold)?;
        let marker = format!("{name}-next");
        let args = load_args(&run, &marker);
        run.load(Kexec::with(imp, mode.flags()), "-l", &args)?;
        let t0 = send_marked(&mut run, &format!("{} -e", imp.path()), true)?;
        let deadline = run.kexec_deadline;
        let (t1, up) = wait_ready(
            &mut run,
            &marker,
            deadline,
            "the kexec'd kernel announcing itself",
        )?;
        run.assert_no_firmware_reboot()?;
        if let Some(why) = clock_trouble(&since_mark(&run)) {
            bail!("kexec'd kernel: {why}; sample dropped");
        }
        let next_rate = clock_rate(&mut run)?;
        let dark = (t1 - t0).as_secs_f64() - corrected(up, next_rate);
        plausible("dark time", dark)?;
        Ok(Transition {
            cold,
            dark,
            first_rate,
            next_rate,
        })
    })();
    finish(run, result)
}

/// QEMU arguments for OVMF, with a fresh copy of the variable store in `dir`.
fn ovmf_args(dir: &Path, name: &str) -> Result<Vec<String>> {
    crate::tools::ensure_file(OVMF_CODE, "ovmf", true)?;
    std::fs::create_dir_all(dir)?;
    let vars = dir.join(format!("{name}-OVMF_VARS.fd"));
    std::fs::copy(OVMF_VARS, &vars)
        .with_context(|| format!("cannot copy {OVMF_VARS} to {}", vars.display()))?;
    Ok(vec![
        "-drive".into(),
        format!("if=pflash,format=raw,readonly=on,file={OVMF_CODE}"),
        "-drive".into(),
        format!("if=pflash,format=raw,file={}", vars.display()),
    ])
}

/// A fresh guest set up for `flow`, then `reboot`: seconds until the next userspace, and
/// that minus the next kernel's uptime (the shutdown, the handover and any firmware), and the
/// next kernel's clock rate.
pub fn reboot_once(name: &str, flow: Flow, work: &Path) -> Result<(f64, f64, f64)> {
    // The flows measured are Alpine's (the wiki's services and ours), so the guest is shaped
    // like an Alpine kernel: no kexec_file_load (CONFIG_KEXEC_FILE off), which makes
    // kexec-tools and `kexec` both use kexec_load with their own purgatory, as on Alpine.
    // The firmware rows boot the same guest so every row shuts down and boots alike.
    let mut opts = BootOpts {
        profile: Profile::AlpineLike,
        ..BootOpts::default()
    };
    if let Some(l) = layer::build(flow, work)? {
        opts.layers.push(l);
    }
    if flow == Flow::Ovmf {
        opts.qemu_args = ovmf_args(work, name)?;
    }
    let mut run = Run::boot(name, opts)?;
    let result = (|| {
        if !flow.is_kexec() {
            // A firmware reset is what this row measures, not a failure.
            run.vm.console.set_abort(None);
        }
        if flow == Flow::ServicesPreload {
            let loaded = run.read("/sys/kernel/kexec_loaded")?;
            ensure!(
                loaded == "1",
                "KEXEC_PRELOAD=yes: no kernel was loaded at boot"
            );
        }
        let marker = run.guest.marker.clone();
        let t0 = send_marked(&mut run, "reboot", false)?;
        let (t1, up) = wait_ready(&mut run, &marker, BOOT_DEADLINE, "the guest after `reboot`")?;
        let resets = run.vm.qmp.count("RESET");
        let banners = run.vm.console.count("Linux version");
        if flow.is_kexec() {
            ensure!(resets == 0, "the {flow:?} reboot went through the firmware ({resets} QMP RESET): the services did not kexec");
        } else {
            ensure!(resets >= 1, "no QMP RESET after a firmware reboot");
        }
        ensure!(
            banners >= 2,
            "only {banners} kernel banner(s): no second kernel booted"
        );
        let total = (t1 - t0).as_secs_f64();
        let rate = clock_rate(&mut run)?;
        // The latency is the host's; only the split needs the next kernel's clock.
        let outside = match clock_trouble(&since_mark(&run)) {
            Some(why) => {
                eprintln!("bench: {name}: no 'outside the next kernel' figure: {why}");
                f64::NAN
            }
            None => total - corrected(up, rate),
        };
        Ok((total, outside, rate))
    })();
    finish(run, result)
}

/// Boots the guest the load and start-up rows share.
pub fn boot_for_loads(name: &str) -> Result<(Run, &'static str)> {
    let mut run = Run::boot(name, BootOpts::default())?;
    match define_marks(&mut run) {
        Ok(clock) => Ok((run, clock)),
        Err(e) => finish(run, Err(e)),
    }
}

/// Stops the load guest.
pub fn done_with(run: Run) {
    let _ = finish(run, Ok(()));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clock_trouble_from_the_log() {
        let pit = "[    0.028000] tsc: PIT calibration deviates from HPET: 720863 2593995\r\n\
                   [    0.028000] tsc: Detected 720.863 MHz processor\r\n";
        assert!(clock_trouble(pit).unwrap().contains("720863"));
        let refined = "tsc: Detected 701.641 MHz processor\r\n\
                       tsc: Refined TSC clocksource calibration: 2596.098 MHz\r\n";
        assert!(clock_trouble(refined).unwrap().contains("701.641"));
        let good = "tsc: Detected 2594.339 MHz processor\r\n\
                    tsc: Refined TSC clocksource calibration: 2596.105 MHz\r\n";
        assert_eq!(clock_trouble(good), None);
        assert_eq!(clock_trouble(""), None);
    }

    #[test]
    fn uptime_and_rate() {
        assert_eq!(
            uptime_of("KEXECRS-READY marker=m kernel=k uptime=12.34").unwrap(),
            12.34
        );
        assert!(uptime_of("no uptime").is_err());
        assert_eq!(corrected(10.0, 1.01), 10.0);
        assert!((corrected(10.0, 2.0) - 5.0).abs() < 1e-9);
        assert!(plausible("x", -0.1).is_err() && plausible("x", 0.0).is_ok());
    }
}
