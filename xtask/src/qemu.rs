//! Running a [`Guest`] in QEMU (through `duct`), with its console and QMP monitor attached.
//!
//! QEMU starts paused (`-S`) so nothing the guest prints is missed: the console and QMP are
//! connected first, then `cont` starts the machine. `-no-reboot` is deliberately NOT used: it
//! turns a firmware reboot into QEMU exiting, whereas we want it visible as a QMP `RESET` (and
//! a second SeaBIOS banner), which is what distinguishes it from a kexec reboot. `panic=1` on
//! the command line makes a panic reboot at once, so it also shows up as a RESET quickly.
//! Everything a run produces (serial log, QMP transcript, QEMU's own stderr) stays in the run's
//! directory, whose paths are printed when a test fails.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{bail, Context, Result};

use crate::console::Console;
use crate::guest::Guest;
use crate::qmp::Monitor;

/// The accelerator QEMU uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Accel {
    /// KVM when a real test boot works, else TCG.
    Auto,
    Kvm,
    Tcg,
}

/// TCG's translation-cache size in MiB unless `KEXEC_RS_TCG_TB_SIZE` says otherwise (0: QEMU's
/// default, 1 GiB on this host).
///
/// Why not QEMU's default: TCG remembers which guest pages it translated code from, and a store
/// into such a page takes a slow path until every translation made from that page is gone.
/// A reset does not clear them and neither does a kexec, so the next kernel pays for every page
/// the previous kernel and its programs executed from: measured here (6.1 kernel, 1 GiB
/// guest), the kexec'd kernel unpacked its 10.9 MB initramfs in 1.6-2.0 s where the cold-booted
/// one unpacked 35.6 MB in 0.2 s, and reached userspace 1.8 s later than a cold boot. Real
/// hardware and KVM have no such cost. With a 64 MiB cache the translations are flushed as the
/// next kernel fills it: the same unpack took 0.09 s and the kexec'd boot matched a cold one,
/// while a cold boot cost 0.2-0.4 s more (more retranslation). 16 MiB retranslates too much
/// (cold boot +1 s); 256 MiB is not flushed in time.
const TCG_TB_SIZE_MIB: u32 = 64;

fn tcg_accel() -> String {
    let size = std::env::var("KEXEC_RS_TCG_TB_SIZE")
        .ok()
        .and_then(|v| v.trim().parse::<u32>().ok())
        .unwrap_or(TCG_TB_SIZE_MIB);
    if size == 0 {
        "tcg,thread=multi".to_string()
    } else {
        format!("tcg,thread=multi,tb-size={size}")
    }
}

impl Accel {
    fn args(self) -> Vec<String> {
        let v = match self {
            Accel::Kvm => ["-accel".into(), "kvm".into(), "-cpu".into(), "host".into()],
            _ => ["-accel".into(), tcg_accel(), "-cpu".into(), "max".into()],
        };
        v.to_vec()
    }

    /// The accelerator as QEMU is given it (e.g. `tcg,thread=multi,tb-size=64`), for reports.
    pub fn describe(self) -> String {
        self.args()[1].clone()
    }
}

/// The accelerator to use: `KEXEC_RS_ACCEL` (kvm|tcg) when set, else detected once per machine
/// and remembered in `target/vm-accel`.
pub fn resolve_accel(requested: Accel, probe_kernel: Option<&Path>) -> Accel {
    if requested != Accel::Auto {
        return requested;
    }
    match std::env::var("KEXEC_RS_ACCEL").as_deref() {
        Ok("kvm") => return Accel::Kvm,
        Ok("tcg") => return Accel::Tcg,
        _ => {}
    }
    let memo = crate::workspace_root().join("target/vm-accel");
    let host = host_key();
    if let Ok(text) = std::fs::read_to_string(&memo) {
        if let Some((key, acc)) = text.trim().rsplit_once(' ') {
            if key == host {
                return if acc == "kvm" { Accel::Kvm } else { Accel::Tcg };
            }
        }
    }
    let acc = match probe_kernel {
        Some(k) if kvm_boots(k) => Accel::Kvm,
        _ => Accel::Tcg,
    };
    let _ = std::fs::create_dir_all(crate::workspace_root().join("target"));
    let _ = std::fs::write(
        &memo,
        format!("{host} {}\n", if acc == Accel::Kvm { "kvm" } else { "tcg" }),
    );
    acc
}

fn host_key() -> String {
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .unwrap_or_default()
        .lines()
        .find(|l| l.starts_with("model name"))
        .unwrap_or("")
        .to_string();
    format!("{}|{}", kernel.trim(), cpu.replace(' ', "_"))
}

/// Whether KVM really runs a kernel here: `/dev/kvm` existing is not enough (nested setups
/// answer the API but fail on the first real instructions). Boots `kernel` with no initrd and
/// waits for it to reach the point where it looks for a root filesystem.
fn kvm_boots(kernel: &Path) -> bool {
    if std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/kvm")
        .is_err()
    {
        return false;
    }
    let out = duct::cmd!(
        "timeout",
        "20",
        "qemu-system-x86_64",
        "-accel",
        "kvm",
        "-cpu",
        "host",
        "-m",
        "256",
        "-nodefaults",
        "-display",
        "none",
        "-no-reboot",
        "-serial",
        "stdio",
        "-kernel",
        kernel,
        "-append",
        "console=ttyS0 panic=-1"
    )
    .stderr_null()
    .stdout_capture()
    .unchecked()
    .run();
    match out {
        Ok(o) => String::from_utf8_lossy(&o.stdout).contains("VFS: Unable to mount root fs"),
        Err(_) => false,
    }
}

/// A running QEMU with its console and monitor.
pub struct Vm {
    pub console: Console,
    pub qmp: Monitor,
    handle: duct::Handle,
    pub dir: PathBuf,
}

/// Deadline for QEMU to create its sockets.
const SOCKET_DEADLINE: Duration = Duration::from_secs(30);

impl Vm {
    /// Starts `guest` in `dir` (which holds sockets and logs).
    pub fn start(guest: &Guest, accel: Accel, dir: &Path) -> Result<Vm> {
        Vm::start_with(guest, accel, dir, &[])
    }

    /// [`Vm::start`] with extra QEMU arguments (e.g. UEFI firmware drives).
    pub fn start_with(guest: &Guest, accel: Accel, dir: &Path, extra: &[String]) -> Result<Vm> {
        std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
        let con_sock = dir.join("console.sock");
        let qmp_sock = dir.join("qmp.sock");
        let _ = std::fs::remove_file(&con_sock);
        let _ = std::fs::remove_file(&qmp_sock);
        let mut args: Vec<String> = vec![
            "-nodefaults".into(),
            "-no-user-config".into(),
            // With no VGA, -nographic makes SeaBIOS print to the serial port (fw_cfg
            // `etc/sercon-port`), so every firmware start leaves a banner in the log.
            "-nographic".into(),
            "-S".into(),
            "-m".into(),
            guest.memory_mb.to_string(),
            "-smp".into(),
            "1".into(),
        ];
        args.extend(accel.args());
        args.extend([
            "-kernel".into(),
            guest.kernel.display().to_string(),
            "-initrd".into(),
            guest.initrd.display().to_string(),
            "-append".into(),
            guest.cmdline(),
            "-chardev".into(),
            format!(
                "socket,id=con0,path={},server=on,wait=off",
                con_sock.display()
            ),
            "-serial".into(),
            "chardev:con0".into(),
            "-qmp".into(),
            format!("unix:{},server=on,wait=off", qmp_sock.display()),
        ]);
        if let Some(disk) = &guest.disk {
            args.push("-drive".into());
            args.push(format!(
                "file={},if=virtio,format=raw,cache=writeback",
                disk.display()
            ));
        }
        args.extend(extra.iter().cloned());
        std::fs::write(dir.join("qemu.args"), args.join("\n") + "\n")?;
        let stderr = std::fs::File::create(dir.join("qemu.stderr"))?;
        let handle = duct::cmd("qemu-system-x86_64", &args)
            .stdin_null()
            .stdout_file(stderr.try_clone()?)
            .stderr_file(stderr)
            .unchecked()
            .start()
            .context("cannot start qemu-system-x86_64; run `cargo xtask tools --install`")?;
        let qmp = match Monitor::connect(&qmp_sock, &dir.join("qmp.log"), SOCKET_DEADLINE) {
            Ok(q) => q,
            Err(e) => {
                let _ = handle.kill();
                let why = std::fs::read_to_string(dir.join("qemu.stderr")).unwrap_or_default();
                bail!("QEMU did not come up: {e}; its stderr: {}", why.trim());
            }
        };
        let mut console =
            match Console::connect(&con_sock, &dir.join("serial.log"), SOCKET_DEADLINE) {
                Ok(c) => c,
                Err(e) => {
                    let _ = handle.kill();
                    return Err(e.into());
                }
            };
        console.set_abort(Some(qmp.reset_check()));
        qmp.cont()?;
        Ok(Vm {
            console,
            qmp,
            handle,
            dir: dir.to_path_buf(),
        })
    }

    /// The paths to print when something failed.
    pub fn artifacts(&self) -> String {
        format!(
            "serial log: {}\nQMP transcript: {}\nQEMU stderr: {}",
            self.console.log_path().display(),
            self.qmp.transcript().display(),
            self.dir.join("qemu.stderr").display()
        )
    }

    /// Ends QEMU: `quit` over QMP, then a kill if it lingers.
    pub fn stop(&self) {
        let _ = self.qmp.quit();
        for _ in 0..50 {
            if matches!(self.handle.try_wait(), Ok(Some(_))) {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let _ = self.handle.kill();
    }
}

impl Drop for Vm {
    fn drop(&mut self) {
        if !matches!(self.handle.try_wait(), Ok(Some(_))) {
            let _ = self.handle.kill();
        }
    }
}
