//! Carrying out a parsed kexec-tools style invocation.
//!
//! The order of steps and the exit codes are kexec-tools': status, unload,
//! load, then (if a reboot was asked for) a check that something is loaded,
//! `shutdown -r now` or sync + interfaces down + `reboot(KEXEC)`. Every
//! kernel refusal is turned into a [`Failure`] carrying the diagnosis for
//! this machine. Nothing here prints: messages go to the caller's sink.

use nix::errno::Errno;

use super::load::load;
use super::parse::{Invocation, SyscallMode};
use crate::diagnose::{self, Diagnosis, ImageHints, Op};
use crate::status::Store;
use crate::syscall::{KexecSys, Target, KEXEC_ARCH_DEFAULT};
use crate::sysview::SystemView;

/// Exit codes, as kexec-tools uses them.
pub const EXIT_OK: u8 = 0;
/// Usage errors and failures before anything reached the kernel.
pub const EXIT_USAGE: u8 = 1;
/// `-s` and the kernel cannot take the image through `kexec_file_load`
/// (kexec-tools' `EFALLBACK`, -3).
pub const EXIT_FILE_UNUSABLE: u8 = 253;
/// The kernel refused a load, unload or exec (kexec-tools' -1).
pub const EXIT_FAILED: u8 = 255;

/// Everything a run touches outside its arguments.
pub struct Context<'a> {
    pub sys: &'a mut dyn KexecSys,
    pub view: SystemView,
    pub store: Store,
    /// Seconds since the epoch, for the load record.
    pub now: u64,
}

/// A message for the user, printed by the binary.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Notice {
    Warning(String),
    /// Shown only with `-d`.
    Debug(String),
}

/// Why a run stopped, with its exit code.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    pub code: u8,
    pub message: String,
    pub diagnosis: Option<Diagnosis>,
}

impl Failure {
    pub fn usage(message: impl Into<String>) -> Self {
        Failure {
            code: EXIT_USAGE,
            message: message.into(),
            diagnosis: None,
        }
    }
    pub(super) fn with(code: u8, message: impl Into<String>, diagnosis: Diagnosis) -> Self {
        Failure {
            code,
            message: message.into(),
            diagnosis: Some(diagnosis),
        }
    }
    pub(super) fn kernel(code: u8, op: Op, errno: Errno, diagnosis: Diagnosis) -> Self {
        Failure::with(
            code,
            format!(
                "{} failed: {} ({})",
                op.syscall_name(),
                errno.desc(),
                diagnose::errno_name(errno)
            ),
            diagnosis,
        )
    }
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.message)?;
        if let Some(d) = &self.diagnosis {
            write!(f, "\n  cause: {}", d.cause)?;
            if let Some(fix) = &d.fix {
                write!(f, "\n  fix:   {fix}")?;
            }
        }
        Ok(())
    }
}

/// The errnos after which auto mode retries with `kexec_load`: the kernel
/// lacks `kexec_file_load` or could not use this image. Permission and
/// signature errors are final: `kexec_load` would be refused too, or would
/// bypass a signature policy.
pub fn falls_back(errno: Errno) -> bool {
    matches!(
        errno,
        Errno::ENOSYS | Errno::EINVAL | Errno::ENOEXEC | Errno::ENOTSUP
    )
}

pub(super) fn target_of(inv: &Invocation) -> Target {
    if inv.crash {
        Target::Crash
    } else {
        Target::Normal
    }
}

/// Runs `inv`; `Ok` holds the exit code (`-S` answers 1 for "loaded").
pub fn run(
    inv: &Invocation,
    ctx: &mut Context<'_>,
    notify: &mut dyn FnMut(Notice),
) -> Result<u8, Failure> {
    if inv.do_status {
        return status(inv, ctx);
    }
    if inv.do_unload {
        unload(inv, ctx, notify)?;
    }
    // `-f` alone boots what is already loaded (kexec-tools would stop at
    // "No kernel specified"); any other load needs a kernel.
    let force_without_kernel =
        inv.force_given && inv.do_exec && inv.kernel.is_none() && inv.flavor.is_none();
    if inv.do_load && !force_without_kernel {
        load(inv, ctx, notify)?;
    }
    if inv.do_shutdown || inv.do_exec {
        match ctx.sys.state().loaded {
            Some(true) => {}
            Some(false) => {
                return Err(Failure::with(
                    EXIT_USAGE,
                    "Nothing has been loaded!",
                    Diagnosis {
                        cause: "no kernel is loaded for kexec (/sys/kernel/kexec_loaded is 0), so there is nothing to boot".into(),
                        fix: Some("load one first: kexec -l KERNEL [--initrd INITRD] [--reuse-cmdline]".into()),
                    },
                ))
            }
            None => {
                return Err(Failure::usage(
                    "cannot tell whether a kernel is loaded: /sys/kernel/kexec_loaded is unreadable (mount /sys, or \
                     this kernel has no kexec); not rebooting",
                ))
            }
        }
    }
    if inv.do_shutdown {
        let err = ctx.sys.shutdown_reboot();
        return Err(Failure::with(
            EXIT_FAILED,
            format!("cannot run shutdown -r now: {err}"),
            Diagnosis {
                cause: "no shutdown command in /sbin, /etc, /bin or /usr/sbin".into(),
                fix: Some("reboot through your init system, or use kexec -e to boot the loaded kernel directly".into()),
            },
        ));
    }
    if inv.do_sync {
        notify(Notice::Debug("syncing filesystems".into()));
        ctx.sys.sync();
    }
    if inv.do_ifdown {
        match ctx.sys.ifdown() {
            Ok(names) => notify(Notice::Debug(format!(
                "brought down network interfaces: {names:?}"
            ))),
            Err(e) => notify(Notice::Warning(format!("{e}; continuing"))),
        }
    }
    if inv.do_exec {
        notify(Notice::Debug("reboot(LINUX_REBOOT_CMD_KEXEC)".into()));
        if let Err(errno) = ctx.sys.reboot_kexec() {
            let facts = ctx.view.facts();
            let d = diagnose::explain(
                Op::Exec,
                errno,
                Target::Normal,
                &facts,
                &ImageHints::default(),
            );
            return Err(Failure::kernel(EXIT_FAILED, Op::Exec, errno, d));
        }
    }
    Ok(EXIT_OK)
}

/// `-S`: 1 if the image is loaded, 0 if not (kexec-tools returns the file's value).
fn status(inv: &Invocation, ctx: &mut Context<'_>) -> Result<u8, Failure> {
    let target = inv.status_target;
    match ctx.sys.state().is_loaded(target) {
        Some(true) => Ok(1),
        Some(false) => Ok(0),
        None => Err(Failure {
            code: EXIT_FAILED,
            message: format!(
                "cannot read /sys/kernel/{}: this kernel has no kexec support or /sys is not mounted",
                match target {
                    Target::Normal => "kexec_loaded",
                    Target::Crash => "kexec_crash_loaded",
                }
            ),
            diagnosis: None,
        }),
    }
}

/// Refuses before the syscall when this process certainly lacks
/// `CAP_SYS_BOOT`: a kernel without kexec answers ENOSYS to everyone, which
/// would hide that the user also needs root. Exit 255, as for the EPERM the
/// kernel would otherwise give.
pub(super) fn require_cap_sys_boot(
    ctx: &Context<'_>,
    op: Op,
    target: Target,
) -> Result<(), Failure> {
    let facts = ctx.view.facts();
    if facts.cap_sys_boot != Some(false) {
        return Ok(());
    }
    let d = diagnose::explain(op, Errno::EPERM, target, &facts, &ImageHints::default());
    Err(Failure::with(
        EXIT_FAILED,
        format!(
            "{} not attempted: this process is not allowed to use kexec",
            op.syscall_name()
        ),
        d,
    ))
}

fn unload(
    inv: &Invocation,
    ctx: &mut Context<'_>,
    notify: &mut dyn FnMut(Notice),
) -> Result<(), Failure> {
    let target = target_of(inv);
    let op = if inv.mode == SyscallMode::Classic {
        Op::Unload
    } else {
        Op::FileUnload
    };
    require_cap_sys_boot(ctx, op, target)?;
    let classic = |ctx: &mut Context<'_>| -> Result<(), Failure> {
        ctx.sys
            .kexec_load(0, &[], target.load_flag() | KEXEC_ARCH_DEFAULT)
            .map_err(|errno| {
                let d = diagnose::explain(
                    Op::Unload,
                    errno,
                    target,
                    &ctx.view.facts(),
                    &ImageHints::default(),
                );
                Failure::kernel(EXIT_FAILED, Op::Unload, errno, d)
            })
    };
    match inv.mode {
        SyscallMode::Classic => classic(ctx)?,
        SyscallMode::File | SyscallMode::Auto => match ctx.sys.kexec_file_unload(target) {
            Ok(()) => {}
            Err(errno) if inv.mode == SyscallMode::Auto && falls_back(errno) => {
                notify(Notice::Debug(format!(
                    "kexec_file_load (unload) answered {}; unloading with kexec_load",
                    diagnose::errno_name(errno)
                )));
                classic(ctx)?;
            }
            Err(errno) => {
                let d = diagnose::explain(
                    Op::FileUnload,
                    errno,
                    target,
                    &ctx.view.facts(),
                    &ImageHints::default(),
                );
                let code = if falls_back(errno) {
                    EXIT_FILE_UNUSABLE
                } else {
                    EXIT_FAILED
                };
                return Err(Failure::kernel(code, Op::FileUnload, errno, d));
            }
        },
    }
    if let Err(e) = ctx.store.clear(target) {
        notify(Notice::Warning(e.to_string()));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cli::parse::{parse, Command};
    use crate::kernel_file::tiny_bzimage;
    use crate::syscall::fake::{Call, FakeKexec};
    use crate::syscall::{KEXEC_FILE_NO_INITRAMFS, KEXEC_FILE_ON_CRASH, KEXEC_ON_CRASH};
    use crate::sysview::fake_root;

    /// A recorded `kexec_file_load`: kernel bytes, initrd bytes, cmdline, flags.
    type FileLoad = (Vec<u8>, Option<Vec<u8>>, String, u32);

    /// A bzImage with a realistic setup header (generated fixture).
    const REAL_BZIMAGE: &[u8] = include_bytes!("../../fixtures/bzimage-2.15-gzip.bin");

    const ROOT_STATUS: &[u8] = b"Name:\tkexec\nSeccomp:\t0\nCapEff:\t000001ffffffffff\n";

    /// A fake machine: a root tree with /proc and /boot, and a fake kernel.
    struct Machine {
        root: tempfile::TempDir,
        sys: FakeKexec,
        notices: Vec<Notice>,
    }

    impl Machine {
        fn new(extra: &[(&str, &[u8])]) -> Self {
            let kernel = tiny_bzimage("6.6.58-0-lts");
            let mut files: Vec<(&str, &[u8])> = vec![
                (
                    "proc/cmdline",
                    b"BOOT_IMAGE=/boot/vmlinuz-lts root=/dev/vda crashkernel=128M quiet\n",
                ),
                ("proc/self/status", ROOT_STATUS),
                ("proc/sys/kernel/osrelease", b"6.6.58-0-lts\n"),
                ("proc/sys/kernel/arch", b"x86_64\n"),
                ("proc/sys/kernel/kexec_load_disabled", b"0\n"),
                ("boot/vmlinuz-lts", &kernel),
                ("boot/initramfs-lts", b"INITRAMFS"),
                ("boot/intel-ucode.img", b"UCODE"),
                ("lib/modules/6.6.58-0-lts/modules.dep", b""),
                // A 1 GiB machine's firmware map, for kexec_load plans.
                ("sys/firmware/memmap/0/start", b"0x0\n"),
                ("sys/firmware/memmap/0/end", b"0x9fbff\n"),
                ("sys/firmware/memmap/0/type", b"System RAM\n"),
                ("sys/firmware/memmap/1/start", b"0x100000\n"),
                ("sys/firmware/memmap/1/end", b"0x3ffdffff\n"),
                ("sys/firmware/memmap/1/type", b"System RAM\n"),
                (
                    "proc/iomem",
                    b"00000000-00000fff : Reserved\n00100000-3ffdffff : System RAM\n  2a000000-31ffffff : Crash kernel\n",
                ),
                ("boot/vmlinuz-real", REAL_BZIMAGE),
            ];
            files.extend_from_slice(extra);
            let root = fake_root(&files).unwrap();
            Machine {
                root,
                sys: FakeKexec::new(),
                notices: Vec::new(),
            }
        }

        fn path(&self, rel: &str) -> String {
            self.root.path().join(rel).display().to_string()
        }

        fn run(&mut self, args: &[&str]) -> Result<u8, Failure> {
            let Command::Kexec(inv) = parse(args).unwrap() else {
                panic!("not a kexec invocation")
            };
            let mut ctx = Context {
                sys: &mut self.sys,
                view: SystemView::new(self.root.path()),
                store: Store::new(self.root.path().join("run/kexec")),
                now: 1_764_166_000,
            };
            let notices = &mut self.notices;
            run(&inv, &mut ctx, &mut |n| notices.push(n))
        }

        fn store(&self) -> Store {
            Store::new(self.root.path().join("run/kexec"))
        }

        fn file_loads(&self) -> Vec<FileLoad> {
            self.sys
                .calls
                .iter()
                .filter_map(|c| match c {
                    Call::FileLoad {
                        kernel,
                        initrd,
                        cmdline,
                        flags,
                    } => Some((
                        kernel.clone(),
                        initrd.clone(),
                        String::from_utf8_lossy(cmdline).into_owned(),
                        *flags,
                    )),
                    _ => None,
                })
                .collect()
        }
    }

    #[test]
    fn load_passes_kernel_initrd_and_cmdline_and_records_it() {
        let mut m = Machine::new(&[]);
        let (k, i) = (m.path("boot/vmlinuz-lts"), m.path("boot/initramfs-lts"));
        assert_eq!(
            m.run(&["-l", &k, "--initrd", &i, "--append=console=ttyS0"]),
            Ok(0)
        );
        let loads = m.file_loads();
        assert_eq!(loads.len(), 1);
        assert_eq!(loads[0].0, tiny_bzimage("6.6.58-0-lts"));
        assert_eq!(loads[0].1.as_deref(), Some(&b"INITRAMFS"[..]));
        assert_eq!(loads[0].2, "console=ttyS0");
        assert_eq!(loads[0].3, 0);
        assert!(!m.sys.rebooted() && !m.sys.calls.contains(&Call::Shutdown));
        let rec = m.store().load(Target::Normal).unwrap();
        assert_eq!(rec.kernel, k);
        assert_eq!(rec.version.as_deref(), Some("6.6.58-0-lts"));
        assert_eq!(rec.syscall, "kexec_file_load");
        assert_eq!(rec.cmdline, "console=ttyS0");
        assert_eq!(rec.loaded_at, 1_764_166_000);
    }

    #[test]
    fn no_cmdline_option_means_empty_cmdline_and_no_initrd_flag() {
        let mut m = Machine::new(&[]);
        let k = m.path("boot/vmlinuz-lts");
        assert_eq!(m.run(&["-l", &k]), Ok(0));
        let loads = m.file_loads();
        assert_eq!(loads[0].2, "");
        assert_eq!(loads[0].1, None);
        assert_eq!(loads[0].3, KEXEC_FILE_NO_INITRAMFS);
    }

    #[test]
    fn reuse_cmdline_drops_boot_image_and_for_crash_crashkernel() {
        let mut m = Machine::new(&[("sys/kernel/kexec_crash_size", b"134217728\n")]);
        m.sys.state.crash_size = Some(128 << 20);
        let k = m.path("boot/vmlinuz-lts");
        assert_eq!(
            m.run(&["-l", &k, "--reuse-cmdline", "--append", "panic=1"]),
            Ok(0)
        );
        assert_eq!(
            m.file_loads()[0].2,
            "root=/dev/vda crashkernel=128M quiet panic=1"
        );
        assert_eq!(m.run(&["-p", &k, "--reuse-cmdline"]), Ok(0));
        let crash = &m.file_loads()[1];
        assert_eq!(crash.2, "root=/dev/vda quiet");
        assert_eq!(crash.3 & KEXEC_FILE_ON_CRASH, KEXEC_FILE_ON_CRASH);
        assert_eq!(m.sys.state.crash_loaded, Some(true));
        assert!(m.store().load(Target::Crash).is_some());
    }

    #[test]
    fn several_initrds_are_concatenated_four_byte_aligned() {
        let mut m = Machine::new(&[]);
        let k = m.path("boot/vmlinuz-lts");
        let (u, i) = (m.path("boot/intel-ucode.img"), m.path("boot/initramfs-lts"));
        assert_eq!(
            m.run(&["-l", &k, "--initrd", &u, &format!("--initrd={i}")]),
            Ok(0)
        );
        assert_eq!(
            m.file_loads()[0].1.as_deref(),
            Some(&b"UCODE\0\0\0INITRAMFS"[..])
        );
        let rec = m.store().load(Target::Normal).unwrap();
        assert_eq!(rec.initrds.len(), 2);
        assert_eq!(rec.initrds[0].name, u);
    }

    #[test]
    fn exec_with_nothing_loaded_fails_and_never_reboots() {
        let mut m = Machine::new(&[]);
        let f = m.run(&["-e"]).unwrap_err();
        assert_eq!(f.code, 1);
        assert_eq!(f.message, "Nothing has been loaded!");
        assert!(!m.sys.rebooted());
        assert!(!m.sys.calls.contains(&Call::Sync) && !m.sys.calls.contains(&Call::Ifdown));
        // Unknown state (no /sys) is refused too.
        m.sys.state.loaded = None;
        assert_eq!(m.run(&["-e"]).unwrap_err().code, 1);
        assert!(!m.sys.rebooted());
    }

    #[test]
    fn exec_syncs_brings_interfaces_down_then_reboots() {
        let mut m = Machine::new(&[]);
        m.sys.state.loaded = Some(true);
        m.sys.interfaces_up = vec!["eth0".into()];
        assert_eq!(m.run(&["-e"]), Ok(0));
        assert_eq!(m.sys.calls, vec![Call::Sync, Call::Ifdown, Call::Reboot]);
    }

    #[test]
    fn no_sync_and_no_ifdown_are_honoured() {
        for (args, expect) in [
            (vec!["-e", "-y"], vec![Call::Ifdown, Call::Reboot]),
            (vec!["-e", "-x"], vec![Call::Sync, Call::Reboot]),
            (vec!["-x", "-y", "-e"], vec![Call::Reboot]),
        ] {
            let mut m = Machine::new(&[]);
            m.sys.state.loaded = Some(true);
            assert_eq!(m.run(&args), Ok(0));
            assert_eq!(m.sys.calls, expect, "{args:?}");
        }
    }

    #[test]
    fn reboot_refused_is_explained_with_exit_255() {
        let mut m = Machine::new(&[("proc/self/status", b"CapEff:\t0000000000000000\n")]);
        m.sys.state.loaded = Some(true);
        m.sys.reboot_error = Some(Errno::EPERM);
        let f = m.run(&["-e"]).unwrap_err();
        assert_eq!(f.code, 255);
        assert!(f.to_string().contains("CAP_SYS_BOOT"), "{f}");
    }

    #[test]
    fn force_loads_syncs_ifdowns_and_execs_without_shutdown() {
        let mut m = Machine::new(&[]);
        let k = m.path("boot/vmlinuz-lts");
        assert_eq!(m.run(&["-f", &k]), Ok(0));
        let kinds: Vec<&str> = m
            .sys
            .calls
            .iter()
            .map(|c| match c {
                Call::FileLoad { .. } => "load",
                Call::Sync => "sync",
                Call::Ifdown => "ifdown",
                Call::Reboot => "reboot",
                _ => "other",
            })
            .collect();
        assert_eq!(kinds, ["load", "sync", "ifdown", "reboot"]);
    }

    #[test]
    fn force_without_a_kernel_boots_what_is_loaded() {
        let mut m = Machine::new(&[]);
        let f = m.run(&["-f"]).unwrap_err();
        assert_eq!(f.message, "Nothing has been loaded!");
        assert!(m.sys.calls.is_empty());
        m.sys.state.loaded = Some(true);
        assert_eq!(m.run(&["-f", "-x"]), Ok(0));
        assert_eq!(m.sys.calls, vec![Call::Sync, Call::Reboot]);
    }

    #[test]
    fn plain_kernel_loads_then_runs_shutdown() {
        let mut m = Machine::new(&[]);
        let k = m.path("boot/vmlinuz-lts");
        let f = m.run(&[&k]).unwrap_err();
        // The fake's shutdown "fails" (a real one replaces the process).
        assert_eq!(f.code, 255);
        assert!(f.message.contains("shutdown -r now"));
        assert!(matches!(m.sys.calls[0], Call::FileLoad { .. }));
        assert_eq!(m.sys.calls[1], Call::Shutdown);
        assert!(!m.sys.rebooted());
    }

    #[test]
    fn unload_clears_the_record() {
        let mut m = Machine::new(&[]);
        let k = m.path("boot/vmlinuz-lts");
        m.run(&["-l", &k]).unwrap();
        assert!(m.store().load(Target::Normal).is_some());
        assert_eq!(m.run(&["-u"]), Ok(0));
        assert_eq!(m.sys.calls.last(), Some(&Call::FileUnload(Target::Normal)));
        assert_eq!(m.sys.state.loaded, Some(false));
        assert!(m.store().load(Target::Normal).is_none());
        assert_eq!(m.run(&["-p", "-u"]), Ok(0));
        assert_eq!(m.sys.calls.last(), Some(&Call::FileUnload(Target::Crash)));
    }

    #[test]
    fn unload_falls_back_to_kexec_load_in_auto_and_classic_modes() {
        let mut m = Machine::new(&[]);
        m.sys.file_load_errors.push_back(Errno::ENOSYS);
        assert_eq!(m.run(&["-u"]), Ok(0));
        assert_eq!(
            m.sys.calls[1],
            Call::Load {
                entry: 0,
                segments: 0,
                flags: 0
            }
        );
        let mut m = Machine::new(&[]);
        assert_eq!(m.run(&["-c", "-p", "-u"]), Ok(0));
        assert_eq!(
            m.sys.calls,
            vec![Call::Load {
                entry: 0,
                segments: 0,
                flags: KEXEC_ON_CRASH
            }]
        );
        let mut m = Machine::new(&[]);
        m.sys.file_load_errors.push_back(Errno::ENOSYS);
        assert_eq!(m.run(&["-s", "-u"]).unwrap_err().code, 253);
    }

    #[test]
    fn status_option_answers_like_kexec_tools() {
        let mut m = Machine::new(&[]);
        assert_eq!(m.run(&["-S"]), Ok(0));
        m.sys.state.crash_loaded = Some(true);
        assert_eq!(m.run(&["-S"]), Ok(1));
        assert_eq!(m.run(&["-l", "-S"]), Ok(0));
        m.sys.state.loaded = Some(true);
        assert_eq!(m.run(&["-l", "-S"]), Ok(1));
        assert_eq!(m.run(&["-S", "-e"]), Ok(1), "-S supersedes -e");
        assert!(!m.sys.rebooted());
        m.sys.state.crash_loaded = None;
        assert_eq!(m.run(&["-S"]).unwrap_err().code, 255);
    }

    #[test]
    fn eperm_from_kexec_load_disabled_is_final_and_explained() {
        let mut m = Machine::new(&[
            ("proc/sys/kernel/kexec_load_disabled", b"1\n"),
            (
                "etc/update-extlinux.conf",
                b"default_kernel_opts=\"quiet\"\n",
            ),
            ("etc/alpine-release", b"3.22.2\n"),
        ]);
        m.sys.file_load_errors.push_back(Errno::EPERM);
        let k = m.path("boot/vmlinuz-lts");
        let f = m.run(&["-l", &k]).unwrap_err();
        assert_eq!(f.code, 255);
        let text = f.to_string();
        assert!(
            text.starts_with("kexec_file_load failed: Operation not permitted (EPERM)"),
            "{text}"
        );
        assert!(text.contains("kexec_load_disabled is 1"), "{text}");
        assert!(text.contains("fix:   add kexec_load_disabled=0 to default_kernel_opts in /etc/update-extlinux.conf, run update-extlinux, then reboot"), "{text}");
        // No fallback to kexec_load after EPERM.
        assert!(!m.sys.calls.iter().any(|c| matches!(c, Call::Load { .. })));
        assert!(m.store().load(Target::Normal).is_none());
    }

    #[test]
    fn signature_errors_are_final_in_auto_mode() {
        for e in [
            Errno::EKEYREJECTED,
            Errno::ENOKEY,
            Errno::EBADMSG,
            Errno::ENODATA,
            Errno::EACCES,
        ] {
            let mut m = Machine::new(&[]);
            m.sys.file_load_errors.push_back(e);
            let k = m.path("boot/vmlinuz-lts");
            let f = m.run(&["-l", &k]).unwrap_err();
            assert_eq!(f.code, 255, "{e:?}");
            assert_eq!(m.sys.calls.len(), 1, "{e:?}: no fallback");
        }
    }

    #[test]
    fn fallback_errnos_load_with_kexec_load_in_auto_mode() {
        for e in [Errno::ENOSYS, Errno::EINVAL, Errno::ENOEXEC, Errno::ENOTSUP] {
            let mut m = Machine::new(&[]);
            m.sys.file_load_errors.push_back(e);
            let k = m.path("boot/vmlinuz-real");
            let i = m.path("boot/initramfs-lts");
            assert_eq!(
                m.run(&["-l", &k, "--initrd", &i, "--append", "root=/dev/vda"]),
                Ok(0),
                "{e:?}"
            );
            assert!(matches!(m.sys.calls[0], Call::FileLoad { .. }));
            let Call::Load {
                segments, flags, ..
            } = &m.sys.calls[1]
            else {
                panic!("{:?}", m.sys.calls)
            };
            assert!(
                *segments >= 4,
                "kernel, initrd, zero page, purgatory: {segments}"
            );
            assert_eq!(flags & KEXEC_ON_CRASH, 0);
            assert_eq!(m.sys.state.loaded, Some(true));
            assert_eq!(
                m.store().load(Target::Normal).unwrap().syscall,
                "kexec_load"
            );
        }
    }

    #[test]
    fn console_serial_loads_with_kexec_load_and_warns_with_s() {
        // Default mode: only our purgatory can print, so kexec_file_load is not tried.
        let mut m = Machine::new(&[]);
        let k = m.path("boot/vmlinuz-real");
        assert_eq!(m.run(&["--console-serial", "-l", &k]), Ok(0));
        assert!(
            matches!(m.sys.calls[0], Call::Load { .. }),
            "{:?}",
            m.sys.calls
        );
        assert!(
            !m.sys
                .calls
                .iter()
                .any(|c| matches!(c, Call::FileLoad { .. })),
            "{:?}",
            m.sys.calls
        );
        assert!(m.notices.iter().all(|n| !matches!(n, Notice::Warning(_))));
        // -s keeps kexec_file_load and says the option does nothing there.
        let mut m = Machine::new(&[]);
        assert_eq!(m.run(&["-s", "--console-serial", "-l", &k]), Ok(0));
        assert!(matches!(m.sys.calls[0], Call::FileLoad { .. }));
        assert!(m.notices.iter().any(
            |n| matches!(n, Notice::Warning(w) if w.contains("--console-serial has no effect"))
        ));
    }

    #[test]
    fn arm64_has_no_classic_fallback_and_explains_einval() {
        let image = include_bytes!("../../fixtures/arm64-Image.bin");
        let mut m = Machine::new(&[
            ("proc/sys/kernel/arch", b"aarch64\n"),
            ("boot/Image", image),
        ]);
        m.sys.file_load_errors.push_back(Errno::EINVAL);
        let k = m.path("boot/Image");
        let f = m.run(&["-l", &k]).unwrap_err();
        assert_eq!(f.code, 255);
        let text = f.to_string();
        assert!(text.contains("no kexec_load loader for aarch64"), "{text}");
        assert!(
            text.contains("arm64 answers EINVAL where x86 answers ENOEXEC"),
            "{text}"
        );
        assert_eq!(m.sys.calls.len(), 1);
        let f = m.run(&["-c", "-l", &k]).unwrap_err();
        assert_eq!(f.code, 1);
        assert!(f.message.contains("x86_64 only"), "{f}");
    }

    #[test]
    fn classic_mode_loads_without_trying_kexec_file_load() {
        let mut m = Machine::new(&[]);
        let k = m.path("boot/vmlinuz-real");
        assert_eq!(m.run(&["-c", "-i", "-l", &k, "--reuse-cmdline"]), Ok(0));
        // kexec_load only, then the sync kexec-tools also does after -l.
        assert!(
            matches!(m.sys.calls[0], Call::Load { .. }),
            "{:?}",
            m.sys.calls
        );
        assert_eq!(m.sys.calls[1..], [Call::Sync]);
        // Crash kernels go into the reservation from /proc/iomem, with a core
        // header built from the CPU crash notes and vmcoreinfo.
        for (rel, data) in [
            ("sys/devices/system/cpu/cpu0/crash_notes", "3fc1e000\n"),
            ("sys/devices/system/cpu/cpu0/crash_notes_size", "424\n"),
            ("sys/kernel/vmcoreinfo", "2e4d000 1000\n"),
        ] {
            let p = m.root.path().join(rel);
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            std::fs::write(p, data).unwrap();
        }
        m.sys.state.crash_size = Some(128 << 20);
        assert_eq!(m.run(&["-c", "-p", &k]), Ok(0));
        let Call::Load { flags, .. } = m.sys.calls[2] else {
            panic!("{:?}", m.sys.calls)
        };
        assert_eq!(flags & KEXEC_ON_CRASH, KEXEC_ON_CRASH);
        assert_eq!(m.sys.state.crash_loaded, Some(true));
    }

    #[test]
    fn classic_refusals_are_explained() {
        let mut m = Machine::new(&[
            ("proc/sys/kernel/kexec_load_disabled", b"1\n"),
            ("etc/alpine-release", b"3.22\n"),
        ]);
        m.sys.load_errors.push_back(Errno::EPERM);
        let k = m.path("boot/vmlinuz-real");
        let f = m.run(&["-c", "-l", &k]).unwrap_err();
        assert_eq!(f.code, 255);
        assert!(
            f.message
                .starts_with("kexec_load failed: Operation not permitted (EPERM)"),
            "{f}"
        );
        assert!(f.to_string().contains("/etc/update-extlinux.conf"), "{f}");
        // A kernel the planner cannot take: a tiny bzImage without a payload.
        let mut m = Machine::new(&[]);
        let k = m.path("boot/vmlinuz-lts");
        let f = m.run(&["-c", "-l", &k]).unwrap_err();
        assert_eq!(f.code, 255);
        assert!(f.message.contains("kexec_load: cannot load"), "{f}");
        assert!(m.sys.calls.is_empty());
    }

    #[test]
    fn file_only_mode_exits_253_when_kexec_file_load_is_unusable() {
        let mut m = Machine::new(&[("proc/config.gz", b"")]);
        m.sys.file_load_errors.push_back(Errno::ENOSYS);
        let k = m.path("boot/vmlinuz-lts");
        let f = m.run(&["-s", "-l", &k]).unwrap_err();
        assert_eq!(f.code, 253);
        let text = f.to_string();
        assert!(
            text.contains("CONFIG_KEXEC_FILE") && text.contains("drop -s"),
            "{text}"
        );
        let mut m = Machine::new(&[]);
        m.sys.file_load_errors.push_back(Errno::EPERM);
        assert_eq!(m.run(&["-s", "-l", &k]).unwrap_err().code, 255);
    }

    #[test]
    fn crash_load_without_reservation_fails_before_the_kernel() {
        let mut m = Machine::new(&[("etc/default/grub", b"")]);
        let k = m.path("boot/vmlinuz-lts");
        let f = m.run(&["-p", &k]).unwrap_err();
        assert_eq!(f.code, 1);
        assert!(f.to_string().contains("GRUB_CMDLINE_LINUX_DEFAULT"), "{f}");
        assert!(m.sys.calls.is_empty());
    }

    #[test]
    fn failures_before_loading_exit_1_and_name_the_file() {
        let mut m = Machine::new(&[]);
        let k = m.path("boot/vmlinuz-lts");
        let missing = m.path("boot/nope");
        for args in [
            vec!["-l".to_string()],
            vec!["-l".into(), missing.clone()],
            vec!["-l".into(), m.path("boot")],
            vec!["-l".into(), k.clone(), "--initrd".into(), missing.clone()],
            vec!["-l".into(), k.clone(), "--append".into(), "a\nb".into()],
            vec!["-l".into(), k.clone(), "--append".into(), "x".repeat(3000)],
            vec!["-l".into(), k.clone(), "--dtb".into(), "x.dtb".into()],
            vec![
                "-l".into(),
                concat!(env!("CARGO_MANIFEST_DIR"), "/fixtures/arm64-Image.bin").into(),
            ],
            vec![
                "-l".into(),
                concat!(
                    env!("CARGO_MANIFEST_DIR"),
                    "/fixtures/bzimage-truncated.bin"
                )
                .into(),
            ],
            vec![
                "-l".into(),
                concat!(env!("CARGO_MANIFEST_DIR"), "/fixtures/libfixture.so").into(),
            ],
        ] {
            let args: Vec<&str> = args.iter().map(String::as_str).collect();
            let f = m.run(&args).unwrap_err();
            assert_eq!(f.code, 1, "{args:?}: {f}");
        }
        let f = m.run(&["-l", &missing]).unwrap_err();
        assert!(f.message.contains("boot/nope"), "{f}");
        let arm = concat!(env!("CARGO_MANIFEST_DIR"), "/fixtures/arm64-Image.bin");
        let f = m.run(&["-l", arm]).unwrap_err();
        assert!(
            f.message
                .contains("is an arm64 kernel, but this machine runs x86_64"),
            "{f}"
        );
        let f = m
            .run(&["-l", &k, "--append", &"x".repeat(3000)])
            .unwrap_err();
        assert!(f.message.contains("cmdline_size is 2047"), "{f}");
        assert!(m.sys.calls.is_empty());
    }

    #[test]
    fn flavor_auto_picks_alpine_files_and_checks_modules() {
        let mut m = Machine::new(&[]);
        assert_eq!(m.run(&["-l", "--flavor", "auto"]), Ok(0));
        let load = &m.file_loads()[0];
        assert_eq!(load.0, tiny_bzimage("6.6.58-0-lts"));
        assert_eq!(load.1.as_deref(), Some(&b"UCODE\0\0\0INITRAMFS"[..]));

        let kernel = tiny_bzimage("6.6.60-0-lts");
        let mut m = Machine::new(&[("boot/vmlinuz-lts", &kernel)]);
        let f = m.run(&["-l", "--flavor=auto"]).unwrap_err();
        assert_eq!(f.code, 1);
        assert!(
            f.message.contains("/lib/modules/6.6.60-0-lts is missing"),
            "{f}"
        );
        assert!(m.sys.calls.is_empty());
        // --force boots it anyway (and, as in kexec-tools, -l after -f only loads).
        assert_eq!(m.run(&["-f", "-l", "--flavor=auto"]), Ok(0));
        assert!(!m.sys.rebooted());
    }

    #[test]
    fn uki_loads_its_kernel_initrd_and_cmdline_unless_given() {
        let kernel = tiny_bzimage("6.6.58-0-lts");
        let uki = crate::image::uki::build(&[
            (".linux", &kernel),
            (".initrd", b"UKI-INITRD"),
            (".cmdline", b"root=/dev/vda rw"),
        ]);
        let mut m = Machine::new(&[("boot/linux.efi", &uki)]);
        let u = m.path("boot/linux.efi");
        assert_eq!(m.run(&["-l", &u]), Ok(0));
        let l = &m.file_loads()[0];
        assert_eq!(l.0, kernel);
        assert_eq!(l.1.as_deref(), Some(&b"UKI-INITRD"[..]));
        assert_eq!(l.2, "root=/dev/vda rw");
        let extra = m.path("boot/initramfs-lts");
        assert_eq!(
            m.run(&["-l", &u, "--append", "quiet", "--initrd", &extra]),
            Ok(0)
        );
        let l = &m.file_loads()[1];
        assert_eq!(l.1.as_deref(), Some(&b"UKI-INITRD\0\0INITRAMFS"[..]));
        assert_eq!(l.2, "quiet");
        assert_eq!(m.store().load(Target::Normal).unwrap().initrds.len(), 2);
    }

    #[test]
    fn misplaced_microcode_gets_a_warning_and_still_loads() {
        let mut m = Machine::new(&[]);
        let k = m.path("boot/vmlinuz-lts");
        // The microcode archive is gzip-compressed: the early loader skips it.
        let fixture = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/fixtures/initramfs-microcode-compressed.cpio"
        );
        let data = std::fs::read(fixture).expect("fixture");
        let p = m.root.path().join("boot/intel-ucode.img");
        std::fs::write(&p, data).unwrap();
        assert_eq!(
            m.run(&["-l", &k, "--initrd", &p.display().to_string()]),
            Ok(0)
        );
        assert!(
            m.notices
                .iter()
                .any(|n| matches!(n, Notice::Warning(w) if w.contains("microcode"))),
            "{:?}",
            m.notices
        );
        assert_eq!(m.file_loads().len(), 1);
    }

    #[test]
    fn debug_reports_steps() {
        let mut m = Machine::new(&[]);
        m.sys.state.loaded = Some(true);
        m.run(&["-d", "-e"]).unwrap();
        assert!(m
            .notices
            .iter()
            .any(|n| matches!(n, Notice::Debug(d) if d.contains("reboot"))));
    }
}
