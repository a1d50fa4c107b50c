//! The scenarios the matrix runs on each kernel, written over the VM harness's building blocks
//! ([`Run::boot_kernel`], [`Run::load`], [`Run::exec_and_expect_kexec`]), each in a guest of
//! its own so one kernel's panic or hang fails that cell (with the reason) and nothing else.
//!
//! Every kexec is checked twice: the next kernel announces the marker it was given (and QEMU
//! saw no firmware reset), and `uname -r` is the release the matrix expected to boot.

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{ensure, Context, Result};
use serde::Serialize;

use crate::guest::{paths, ExtraFile};
use crate::scenario::{BootOpts, Impl, Kexec, Run};

use super::def::Scenario;
use super::kernels::Kernel;

/// Where a guest gets the other kernel of a cross-version pair.
const NEXT_KERNEL: &str = "/boot/next/vmlinuz";
/// Where a local kernel's own initramfs goes.
const LOCAL_INITRD: &str = "/boot/initrd-local";

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "status", content = "reason", rename_all = "lowercase")]
pub enum Outcome {
    Pass,
    Fail(String),
    Skip(String),
}

/// One kernel × scenario result.
#[derive(Debug, Clone, Serialize)]
pub struct Cell {
    pub scenario: String,
    #[serde(flatten)]
    pub outcome: Outcome,
    pub seconds: f64,
    /// Serial log, QMP transcript and QEMU stderr of a failed run (kept on disk).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub artifacts: Option<PathBuf>,
    /// For a cross-version cell: the kernel kexec'd into.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub target: Option<String>,
    /// The guest never became ready (so the kernel's other scenarios need not be tried).
    #[serde(skip)]
    pub no_boot: bool,
}

/// Why `k` cannot run `s`, if it cannot.
pub fn skip_reason(s: Scenario, k: &Kernel) -> Option<String> {
    let c = &k.config;
    match s {
        Scenario::File if c.kexec_file == Some(false) => {
            Some("CONFIG_KEXEC_FILE is not set: no kexec_file_load".into())
        }
        Scenario::File if k.profile != crate::guest::Profile::Debian => Some(format!(
            "the {} guest has no kexec_file_load, like the kernel it stands for",
            k.profile
        )),
        Scenario::Classic | Scenario::Openrc | Scenario::Cross if c.kexec == Some(false) => {
            Some("CONFIG_KEXEC is not set: no kexec_load".into())
        }
        Scenario::Crash if c.crash_dump == Some(false) => {
            Some("CONFIG_CRASH_DUMP is not set: no capture kernel".into())
        }
        _ => None,
    }
}

/// The `--initrd` arguments of a load in a guest of `k`.
fn initrds(k: &Kernel) -> String {
    let mut s = String::new();
    if k.initrd.is_some() {
        s.push_str(&format!("--initrd {LOCAL_INITRD} "));
    }
    s.push_str(&format!("--initrd {}", paths::INITRAMFS));
    s
}

/// A host file for the guest (read now: the harness takes file contents).
fn host_file(at: &str, host: &Path) -> Result<ExtraFile> {
    let contents = std::fs::read(host)
        .with_context(|| format!("cannot read {} for the guest", host.display()))?;
    Ok(ExtraFile {
        path: at.into(),
        contents,
        mode: 0o644,
    })
}

fn opts_for(k: &Kernel) -> Result<BootOpts> {
    let mut o = BootOpts {
        profile: k.profile,
        ..BootOpts::default()
    };
    if let Some(i) = &k.initrd {
        o.extra_files.push(host_file(LOCAL_INITRD, i)?);
    }
    Ok(o)
}

/// `uname -r` in the guest must be `want`.
fn expect_release(run: &mut Run, want: &str) -> Result<()> {
    let now = run.ok("uname -r")?.trim().to_string();
    ensure!(
        now == want,
        "the kernel running after the kexec is {now:?}, expected {want:?}"
    );
    Ok(())
}

/// Load (`-s` for file, `-c` for classic), exec, check marker, command line and release.
fn load_exec(run: &mut Run, k: &Kernel, flags: &'static str) -> Result<()> {
    let marker = format!("{}-boot2", run.name);
    let cmdline = run.cmdline_for(&marker);
    run.load(
        Kexec::with(Impl::Ours, flags),
        "-l",
        &format!("{} {} --append \"{cmdline}\"", paths::KERNEL, initrds(k)),
    )?;
    run.exec_and_expect_kexec(&format!("{} -e", Impl::Ours.path()), &marker)?;
    let now = run.read("/proc/cmdline")?;
    ensure!(
        now.contains(&format!("kexecrs.marker={marker}")),
        "after the kexec, /proc/cmdline is {now:?}"
    );
    expect_release(run, &k.uname)
}

/// `crashkernel=256M`, `kexec -p`, a sysrq crash: the capture kernel boots and `/proc/vmcore`
/// is an ELF core.
fn crash(run: &mut Run, k: &Kernel) -> Result<()> {
    let marker = format!("{}-capture", run.name);
    let cmdline = format!(
        "{} irqpoll nr_cpus=1 reset_devices",
        run.cmdline_for(&marker)
    );
    run.load(
        Kexec::OURS,
        "-p",
        &format!("{} {} --append \"{cmdline}\"", paths::KERNEL, initrds(k)),
    )?;
    run.exec_and_expect_kexec("echo c > /proc/sysrq-trigger", &marker)?;
    let magic = run.ok("head -c 4 /proc/vmcore | tail -c 3")?;
    ensure!(
        magic.trim() == "ELF",
        "/proc/vmcore does not start with an ELF header: {magic:?}"
    );
    expect_release(run, &k.uname)
}

/// Boot `from`, load `to` (auto mode: the syscall the running kernel offers), exec, and check
/// that `to` is what runs.
fn cross(run: &mut Run, to: &Kernel) -> Result<()> {
    let marker = format!("{}-boot2", run.name);
    let cmdline = run.cmdline_for(&marker);
    run.load(
        Kexec::OURS,
        "-l",
        &format!(
            "{NEXT_KERNEL} --initrd {} --append \"{cmdline}\"",
            paths::INITRAMFS
        ),
    )?;
    run.exec_and_expect_kexec(&format!("{} -e", Impl::Ours.path()), &marker)?;
    expect_release(run, &to.uname)
}

/// A job: one guest.
#[derive(Debug, Clone)]
pub enum Job {
    /// Scenario `s` on kernel `k` (index into the run's kernels).
    On { k: usize, s: Scenario },
    /// Boot kernel `from`, kexec into `to`.
    Cross { from: usize, to: usize },
}

/// A console line without escape sequences and control characters.
fn clean(line: &str) -> String {
    let mut out = String::new();
    let mut chars = line.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            // CSI sequences (`ESC [ … letter`) and two-character escapes (`ESC c`).
            if chars.peek() == Some(&'[') {
                chars.next();
                for d in chars.by_ref() {
                    if d.is_ascii_alphabetic() {
                        break;
                    }
                }
            } else {
                chars.next();
            }
        } else if !c.is_control() {
            out.push(c);
        }
    }
    out.trim().to_string()
}

/// What the console says about a guest that failed: the kernel's panic line if there is one
/// (without its timestamp), else its last line (where a hung boot stopped).
pub fn console_clue(serial: &str) -> Option<String> {
    if let Some(p) = serial
        .lines()
        .find(|l| l.contains("Kernel panic - not syncing"))
    {
        let p = clean(p);
        let p = match p.find("Kernel panic") {
            Some(i) => p[i..].to_string(),
            None => p,
        };
        return Some(format!("console: {p}"));
    }
    let last = serial.lines().map(clean).rev().find(|l| !l.is_empty())?;
    let last: String = last.chars().take(160).collect();
    Some(format!("console ends with: {last}"))
}

/// Makes an error one line: its first line, what the console shows (the panic line, or the
/// last line of a hung boot; a crash scenario's deliberate panic aside).
fn one_line(e: &anyhow::Error, dir: &Path, expect_panic: bool) -> String {
    let full = format!("{e:#}");
    let mut first = full.lines().next().unwrap_or("failed").trim().to_string();
    // The harness appends the artifact paths; the report gives the directory instead.
    if let Some(i) = first.find("; serial log:") {
        first.truncate(i);
    }
    let serial = std::fs::read(dir.join("serial.log"))
        .map(|b| String::from_utf8_lossy(&b).into_owned())
        .unwrap_or_default();
    let serial = if expect_panic {
        // Only what came after the deliberate crash can explain a failed capture.
        match serial.rfind("sysrq: Trigger a crash") {
            Some(i) => serial[i..].lines().skip(1).collect::<Vec<_>>().join("\n"),
            None => serial,
        }
    } else {
        serial
    };
    match console_clue(&serial) {
        Some(c) => format!("{first} [{c}]"),
        None => first,
    }
}

/// Runs one job in `dir`; never panics, never returns early without a cell.
pub fn run_job(job: &Job, kernels: &[Kernel], dir: &Path, name: &str) -> Cell {
    let t = Instant::now();
    let (k, opts, scenario) = match job {
        Job::On { k, s } => (&kernels[*k], opts_for(&kernels[*k]), s.name().to_string()),
        Job::Cross { from, to } => {
            let o = opts_for(&kernels[*from]).and_then(|mut o| {
                o.extra_files
                    .push(host_file(NEXT_KERNEL, &kernels[*to].entry.kernel)?);
                Ok(o)
            });
            let dir = if to > from { "up" } else { "down" };
            (&kernels[*from], o, format!("cross-{dir}"))
        }
    };
    let crash_kernel = matches!(
        job,
        Job::On {
            s: Scenario::Crash,
            ..
        }
    );
    let openrc = matches!(
        job,
        Job::On {
            s: Scenario::Openrc,
            ..
        }
    );
    let booted = opts.and_then(|mut opts| {
        if crash_kernel {
            opts.extra_cmdline.push("crashkernel=256M".into());
        }
        if openrc {
            // The wiki's flow as on Alpine: no kexec_file_load, so kexec_load does the work.
            opts.profile = crate::guest::Profile::AlpineLike;
            crate::openrc_flow::add_wiki_scripts(&mut opts)?;
        }
        Run::boot_kernel(name, &k.entry, dir, opts)
    });
    let mut run = match booted {
        Ok(r) => r,
        Err(e) => {
            return Cell {
                scenario,
                outcome: Outcome::Fail(format!("did not boot: {}", one_line(&e, dir, false))),
                seconds: t.elapsed().as_secs_f64(),
                artifacts: Some(dir.to_path_buf()),
                target: None,
                no_boot: true,
            }
        }
    };
    let target = match job {
        Job::Cross { to, .. } => Some(kernels[*to].label.clone()),
        Job::On { .. } => None,
    };
    let result = match job {
        Job::On {
            s: Scenario::File, ..
        } => load_exec(&mut run, k, "-s"),
        Job::On {
            s: Scenario::Classic,
            ..
        } => load_exec(&mut run, k, "-c"),
        Job::On {
            s: Scenario::Crash, ..
        } => crash(&mut run, k),
        Job::On {
            s: Scenario::Openrc,
            ..
        } => crate::openrc_flow::wiki_flow(&mut run, Impl::Ours)
            .and_then(|()| expect_release(&mut run, &k.uname)),
        Job::On { s, .. } => Err(anyhow::anyhow!("scenario {} has no runner", s.name())),
        Job::Cross { to, .. } => cross(&mut run, &kernels[*to]),
    };
    run.vm.stop();
    let seconds = t.elapsed().as_secs_f64();
    let cell = match result {
        Ok(()) => {
            if std::env::var_os("KEXEC_RS_KEEP").is_none() {
                let _ = std::fs::remove_dir_all(dir);
            }
            Cell {
                scenario,
                outcome: Outcome::Pass,
                seconds,
                artifacts: None,
                target: None,
                no_boot: false,
            }
        }
        Err(e) => Cell {
            scenario,
            outcome: Outcome::Fail(one_line(
                &e,
                dir,
                matches!(
                    job,
                    Job::On {
                        s: Scenario::Crash,
                        ..
                    }
                ),
            )),
            seconds,
            artifacts: Some(dir.to_path_buf()),
            target: None,
            no_boot: false,
        },
    };
    Cell { target, ..cell }
}

#[cfg(test)]
mod tests {
    use super::console_clue;

    #[test]
    fn the_console_clue_is_the_panic_line_or_where_a_boot_stopped() {
        let panicked = "[    0.000000] Linux version 6.1.0\r\n[    2.345678] Kernel panic - not syncing: VFS: Unable to mount root fs on unknown-block(0,0)\r\n[    2.4] ---[ end Kernel panic ]---\r\n";
        assert_eq!(
            console_clue(panicked).unwrap(),
            "console: Kernel panic - not syncing: VFS: Unable to mount root fs on unknown-block(0,0)"
        );
        let hung = "\u{1b}c\u{1b}[?7l\u{1b}[2J\u{1b}[0mSeaBIOS (version 1.16.2)\r\nBooting from ROM..\r\n\r\n";
        assert_eq!(
            console_clue(hung).unwrap(),
            "console ends with: Booting from ROM.."
        );
        assert!(console_clue("").is_none());
    }
}
