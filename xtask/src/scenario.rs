//! The building blocks of VM scenarios (used by `xtask/tests/vm.rs`): boot a guest of a given
//! profile, run commands on its console, kexec with a chosen implementation, and prove what
//! kind of reboot happened.
//!
//! The kexec implementation is a value ([`Impl`]), so each scenario is written once and run
//! with the project's `kexec` and with kexec-tools' (parity as a test). Every run owns a
//! directory under `target/vm-tests/`; it is deleted when the scenario passes and kept, with
//! its serial log and QMP transcript paths printed, when it fails (or always with
//! `KEXEC_RS_KEEP=1`).

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

use crate::fetch::KernelEntry;
use crate::guest::{self, Guest, Profile};
use crate::qemu::{Accel, Vm};

/// Generous deadlines: the machine is shared and TCG is slow; these bound a hung guest, they
/// are not timing assertions.
pub const BOOT_DEADLINE: Duration = Duration::from_secs(240);
pub const KEXEC_DEADLINE: Duration = Duration::from_secs(240);
pub const CMD_DEADLINE: Duration = Duration::from_secs(120);

/// Which `kexec` binary runs in the guest.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Impl {
    /// The project's `kexec` (static, `/sbin/kexec`).
    Ours,
    /// kexec-tools' `kexec`, the reference.
    KexecTools,
}

impl Impl {
    pub fn path(self) -> &'static str {
        match self {
            Impl::Ours => guest::paths::OURS,
            Impl::KexecTools => guest::paths::KEXEC_TOOLS,
        }
    }
    pub fn name(self) -> &'static str {
        match self {
            Impl::Ours => "kexec-rs",
            Impl::KexecTools => "kexec-tools",
        }
    }
}

/// A `kexec` as a scenario uses it: which binary, and the extra flags every load gets
/// (`-c` forces the classic `kexec_load`, `-i` skips the purgatory's digest check, `-s` forces
/// `kexec_file_load`). Same flags for both binaries, since ours is a drop-in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Kexec {
    pub imp: Impl,
    pub load_flags: &'static str,
}

impl Kexec {
    pub const OURS: Kexec = Kexec {
        imp: Impl::Ours,
        load_flags: "",
    };
    pub const KEXEC_TOOLS: Kexec = Kexec {
        imp: Impl::KexecTools,
        load_flags: "",
    };

    pub const fn with(imp: Impl, load_flags: &'static str) -> Kexec {
        Kexec { imp, load_flags }
    }

    pub fn path(self) -> &'static str {
        self.imp.path()
    }

    /// The command for a load: `kexec MODE FLAGS ARGS` (MODE `-l` or `-p`).
    pub fn load_cmd(self, mode: &str, args: &str) -> String {
        let mut c = format!("{} {mode}", self.imp.path());
        if !self.load_flags.is_empty() {
            c.push(' ');
            c.push_str(self.load_flags);
        }
        c.push(' ');
        c.push_str(args);
        c
    }

    pub fn describe(self) -> String {
        if self.load_flags.is_empty() {
            self.imp.name().to_string()
        } else {
            format!("{} {}", self.imp.name(), self.load_flags)
        }
    }
}

/// Options for a boot.
#[derive(Debug, Clone)]
pub struct BootOpts {
    pub profile: Profile,
    pub extra_cmdline: Vec<String>,
    pub memory_mb: u32,
    /// Size of a fresh raw virtio disk to attach, in MiB.
    pub disk_mb: Option<u64>,
    /// Extra newc archives appended to the guest's initramfs (their files win), e.g. services
    /// a benchmark installs.
    pub layers: Vec<PathBuf>,
    /// Extra QEMU arguments (e.g. UEFI firmware flash drives).
    pub qemu_args: Vec<String>,
    /// Files added to the guest (in its userland layer).
    pub extra_files: Vec<guest::ExtraFile>,
}

impl Default for BootOpts {
    fn default() -> Self {
        BootOpts {
            profile: Profile::Debian,
            extra_cmdline: Vec::new(),
            memory_mb: 1024,
            disk_mb: None,
            layers: Vec::new(),
            qemu_args: Vec::new(),
            extra_files: Vec::new(),
        }
    }
}

/// One scenario run: a directory, a booted guest, and what it needs to kexec.
pub struct Run {
    pub name: String,
    pub dir: PathBuf,
    pub guest: Guest,
    pub vm: Vm,
    pub started: Instant,
    /// From QEMU's start to the first ready line on the host's clock.
    pub booted: Duration,
    pub ours_missing: Option<String>,
    /// Deadline for the next kernel to announce itself after an exec.
    pub kexec_deadline: Duration,
    /// QEMU start → first console ready line.
    pub boot_time: Option<Duration>,
    /// Each exec command → the next kernel's ready line.
    pub kexec_times: Vec<Duration>,
    boots: u32,
}

/// The kernel scenarios run on: `KEXEC_RS_VM_KERNEL` (a `name` in kernels.json), else the
/// Debian 6.1 cloud kernel.
pub fn kernel() -> Result<KernelEntry> {
    let want =
        std::env::var("KEXEC_RS_VM_KERNEL").unwrap_or_else(|_| "debian-6.1-cloud-amd64".into());
    let root = crate::cache::default_root();
    let ks = crate::fetch::read_kernels(&root)?;
    ks.into_iter().find(|k| k.name == want).with_context(|| {
        format!(
            "kernel {want} is not in {}/kernels.json; run `cargo xtask fetch`",
            root.display()
        )
    })
}

impl Run {
    /// Builds the guest for this scenario and boots it; returns once its console is ready.
    pub fn boot(name: &str, opts: BootOpts) -> Result<Run> {
        let dir = crate::workspace_root().join("target/vm-tests").join(name);
        Run::boot_kernel(name, &kernel()?, &dir, opts)
    }

    /// Like [`Run::boot`], on a kernel chosen by the caller and in a run directory of its own
    /// (`cargo xtask matrix` boots many kernels, not the one `KEXEC_RS_VM_KERNEL` names).
    pub fn boot_kernel(name: &str, k: &KernelEntry, dir: &Path, opts: BootOpts) -> Result<Run> {
        let dir = dir.to_path_buf();
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir)?;
        let user = guest::Userland::from_manifest(&crate::fetch::read_userland(
            &crate::cache::default_root(),
        )?)?;
        let bins = guest::build_binaries()?;
        let built = guest::build_initramfs(k, &user, &bins, &opts.extra_files, &dir)?;
        if !opts.layers.is_empty() {
            let mut bytes = std::fs::read(&built.initrd)?;
            for l in &opts.layers {
                bytes.extend(
                    std::fs::read(l).with_context(|| format!("cannot read {}", l.display()))?,
                );
            }
            std::fs::write(&built.initrd, &bytes)?;
        }
        let disk = match opts.disk_mb {
            Some(mb) => {
                let p = dir.join("disk.img");
                let f = std::fs::File::create(&p)?;
                f.set_len(mb << 20)?;
                duct::cmd!("mkfs.ext4", "-q", "-F", &p)
                    .stdout_null()
                    .run()
                    .context("mkfs.ext4 failed (install e2fsprogs)")?;
                Some(p)
            }
            None => None,
        };
        let guest = Guest {
            kernel: k.kernel.clone(),
            initrd: built.initrd,
            profile: opts.profile,
            marker: format!("{name}-boot1"),
            extra_cmdline: opts.extra_cmdline,
            memory_mb: opts.memory_mb,
            disk,
        };
        let accel = crate::qemu::resolve_accel(Accel::Auto, Some(&k.kernel));
        let started = Instant::now();
        let vm = Vm::start_with(&guest, accel, &dir, &opts.qemu_args)?;
        let mut run = Run {
            name: name.to_string(),
            dir,
            guest,
            vm,
            started,
            booted: Duration::ZERO,
            ours_missing: bins.ours.err(),
            kexec_deadline: KEXEC_DEADLINE,
            boot_time: None,
            kexec_times: Vec::new(),
            boots: 0,
        };
        let marker = run.guest.marker.clone();
        run.expect_ready(&marker, BOOT_DEADLINE, "first boot of the guest")?;
        run.booted = started.elapsed();
        run.boot_time = Some(run.booted);
        eprintln!(
            "[{name}] booted ({}) in {:.1} s",
            run.guest.profile,
            started.elapsed().as_secs_f64()
        );
        Ok(run)
    }

    /// Waits for the console's ready line with `marker`.
    pub fn expect_ready(&mut self, marker: &str, deadline: Duration, reason: &str) -> Result<()> {
        let pat = format!("KEXECRS-READY marker={marker} ");
        self.vm.console.expect(&pat, deadline, reason)?;
        self.boots += 1;
        Ok(())
    }

    /// Runs a shell command in the guest: (output, exit status).
    pub fn sh(&mut self, cmd: &str) -> Result<(String, i32)> {
        Ok(self.vm.console.run(cmd, CMD_DEADLINE)?)
    }

    /// Runs a command that must succeed; returns its output.
    pub fn ok(&mut self, cmd: &str) -> Result<String> {
        let (out, code) = self.sh(cmd)?;
        if code != 0 {
            bail!("`{cmd}` failed in the guest with exit status {code}:\n{out}");
        }
        Ok(out)
    }

    /// The command line a kexec should pass for a boot announcing `marker` (the guest's
    /// profile, without boot-only extras such as `crashkernel=`).
    pub fn cmdline_for(&self, marker: &str) -> String {
        let mut g = self.guest.clone();
        g.extra_cmdline.clear();
        g.cmdline_with(marker)
    }

    /// Reads a one-line value from the guest (e.g. a sysfs flag).
    pub fn read(&mut self, path: &str) -> Result<String> {
        Ok(self.ok(&format!("cat {path}"))?.trim().to_string())
    }

    /// Loads with `k` (`mode` is `-l` or `-p`) and checks it really loaded: exit status 0 and
    /// the kernel's own flag (`/sys/kernel/kexec_loaded`, or `kexec_crash_loaded` for `-p`).
    pub fn load(&mut self, k: Kexec, mode: &str, args: &str) -> Result<()> {
        self.require(k.imp)?;
        let cmd = k.load_cmd(mode, args);
        let (out, code) = self.sh(&format!("{cmd} 2>&1"))?;
        if code != 0 {
            bail!(
                "{} failed to load: `{cmd}` exited with {code}:\n{out}",
                k.describe()
            );
        }
        let flag = if mode == "-p" {
            "/sys/kernel/kexec_crash_loaded"
        } else {
            "/sys/kernel/kexec_loaded"
        };
        let v = self.read(flag)?;
        if v != "1" {
            bail!("`{cmd}` exited 0, but {flag} is {v:?}: nothing was loaded");
        }
        Ok(())
    }

    /// Fails early with a clear reason when the project's `kexec` is not in the guest.
    pub fn require(&self, imp: Impl) -> Result<()> {
        if imp == Impl::Ours {
            if let Some(why) = &self.ours_missing {
                bail!("the project's kexec could not be built, so the guest has none: {why}");
            }
        }
        Ok(())
    }

    /// Sends `kexec -e` (or any command that should end in a kexec reboot) and proves that the
    /// next kernel came up through kexec: its marker on the console, no QMP `RESET`, and still
    /// exactly one SeaBIOS banner.
    pub fn exec_and_expect_kexec(&mut self, cmd: &str, marker: &str) -> Result<Duration> {
        let t = Instant::now();
        // If the command returns, no reboot is coming: say so at once instead of waiting.
        self.vm
            .console
            .send(&format!("{cmd}; echo \"@@EXEC\"\"-RETURNED=$?@@\""))?;
        let ready = format!("KEXECRS-READY marker={marker} ");
        let reason = format!("the kexec'd kernel announcing itself after `{cmd}`");
        let (which, text) = self.vm.console.expect_any(
            &[&ready, "@@EXEC-RETURNED="],
            self.kexec_deadline,
            &reason,
        )?;
        if which == 1 {
            let status = self
                .vm
                .console
                .expect("@@", CMD_DEADLINE, "the exit status of the exec")
                .unwrap_or_default();
            let tail: Vec<&str> = text.lines().rev().take(6).collect();
            bail!(
                "`{cmd}` returned (status {}) instead of rebooting into the loaded kernel; its output:\n{}",
                status.trim_end_matches("@@"),
                tail.into_iter().rev().collect::<Vec<_>>().join("\n")
            );
        }
        self.boots += 1;
        let took = t.elapsed();
        self.kexec_times.push(took);
        self.assert_no_firmware_reboot()?;
        eprintln!(
            "[{}] `{cmd}` -> new kernel ready in {:.1} s",
            self.name,
            took.as_secs_f64()
        );
        Ok(took)
    }

    /// No QMP RESET and one SeaBIOS banner so far: every reboot was a kexec.
    pub fn assert_no_firmware_reboot(&self) -> Result<()> {
        let resets = self.vm.qmp.count("RESET");
        let banners = self.vm.console.count("SeaBIOS (version");
        if resets != 0 || banners > 1 {
            bail!("a firmware reboot happened: {resets} QMP RESET event(s), {banners} SeaBIOS banner(s)");
        }
        Ok(())
    }

    /// Proves that nothing rebooted: the console still answers and QEMU saw no reset.
    pub fn assert_still_running(&mut self) -> Result<()> {
        let out = self.ok("cat /proc/cmdline")?;
        let want = format!("kexecrs.marker={}", self.guest.marker);
        if !out.contains(&want) {
            bail!("the guest is not the one first booted: /proc/cmdline is {out:?}");
        }
        self.assert_no_firmware_reboot()?;
        let (running, status) = self.vm.qmp.query_status()?;
        if !running {
            bail!("QEMU reports the machine as {status}, not running");
        }
        Ok(())
    }
}

/// One line of `target/vm-tests/timings.jsonl`, summarized by `cargo xtask vm-test`.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct Timing {
    pub scenario: String,
    pub kernel: String,
    pub profile: String,
    pub passed: bool,
    pub boot_s: Option<f64>,
    pub kexec_s: Vec<f64>,
    pub total_s: f64,
}

/// Where scenarios append their timings (one JSON object per line).
pub fn timings_path() -> PathBuf {
    crate::workspace_root().join("target/vm-tests/timings.jsonl")
}

fn record_timing(run: &Run, passed: bool) {
    let t = Timing {
        scenario: run.name.clone(),
        kernel: std::env::var("KEXEC_RS_VM_KERNEL")
            .unwrap_or_else(|_| "debian-6.1-cloud-amd64".into()),
        profile: run.guest.profile.to_string(),
        passed,
        boot_s: run.boot_time.map(|d| d.as_secs_f64()),
        kexec_s: run.kexec_times.iter().map(Duration::as_secs_f64).collect(),
        total_s: run.started.elapsed().as_secs_f64(),
    };
    if let Ok(line) = serde_json::to_string(&t) {
        // One write of one line with O_APPEND: parallel scenarios do not interleave.
        use std::io::Write;
        if let Ok(mut f) = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(timings_path())
        {
            let _ = f.write_all(format!("{line}\n").as_bytes());
        }
    }
}

/// Runs a scenario: on failure prints the reason and the artifact paths (kept on disk), on
/// success removes the run's directory.
pub fn scenario<F>(name: &str, opts: BootOpts, body: F) -> Result<()>
where
    F: FnOnce(&mut Run) -> Result<()>,
{
    let mut run = match Run::boot(name, opts) {
        Ok(r) => r,
        Err(e) => {
            let dir = crate::workspace_root().join("target/vm-tests").join(name);
            eprintln!(
                "[{name}] FAILED before the guest was ready: {e:#}\nrun directory kept: {}",
                dir.display()
            );
            return Err(e);
        }
    };
    let result = body(&mut run);
    run.vm.stop();
    record_timing(&run, result.is_ok());
    match result {
        Ok(()) => {
            eprintln!(
                "[{name}] passed in {:.1} s",
                run.started.elapsed().as_secs_f64()
            );
            if std::env::var_os("KEXEC_RS_KEEP").is_none() {
                let _ = std::fs::remove_dir_all(&run.dir);
            }
            Ok(())
        }
        Err(e) => {
            eprintln!("[{name}] FAILED: {e:#}\n{}", run.vm.artifacts());
            Err(e.context(format!(
                "scenario {name} failed; {}",
                run.vm.artifacts().replace('\n', "; ")
            )))
        }
    }
}
