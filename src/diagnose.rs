//! What an errno from a kexec syscall means on *this* machine, and the fix.
//!
//! The kernel answers a refused load with one errno for many causes (EPERM
//! alone covers a missing capability, `kexec_load_disabled`, lockdown, the
//! load limits and LSM policies). kexec-tools prints the bare `strerror`.
//! Here each errno is matched against the [`Facts`] read from the system, so
//! the cause printed is the one that holds, and the fix is the exact change
//! for how this machine boots (Alpine's extlinux, GRUB, sysctl files).

use nix::errno::Errno;

use crate::syscall::Target;
use crate::sysview::{BootSetup, Facts, Lockdown};

/// Which call failed: the same errno means different things for each.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    FileLoad,
    Load,
    FileUnload,
    Unload,
    Exec,
}

impl Op {
    pub fn syscall_name(self) -> &'static str {
        match self {
            Op::FileLoad => "kexec_file_load",
            Op::Load => "kexec_load",
            Op::FileUnload => "kexec_file_load (unload)",
            Op::Unload => "kexec_load (unload)",
            Op::Exec => "reboot(LINUX_REBOOT_CMD_KEXEC)",
        }
    }
}

/// What is known about the image being loaded, to explain format errors.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ImageHints {
    pub path: Option<String>,
    /// A short description of what the file is, e.g. "an x86 bzImage (boot protocol 2.15)".
    pub kind: Option<String>,
    /// The image is an x86 bzImage.
    pub is_bzimage: Option<bool>,
    /// bzImage `xloadflags` has `XLF_KERNEL_64` (a 64-bit entry point).
    pub kernel_64: Option<bool>,
    pub kernel_len: Option<u64>,
    pub initrd_len: Option<u64>,
    pub cmdline_len: usize,
}

/// A cause and the change that removes it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Diagnosis {
    pub cause: String,
    pub fix: Option<String>,
}

impl Diagnosis {
    fn new(cause: impl Into<String>, fix: impl Into<String>) -> Self {
        Diagnosis {
            cause: cause.into(),
            fix: Some(fix.into()),
        }
    }
    fn cause_only(cause: impl Into<String>) -> Self {
        Diagnosis {
            cause: cause.into(),
            fix: None,
        }
    }
}

/// The symbolic name of an errno (`EPERM`), for messages people search for.
pub fn errno_name(e: Errno) -> String {
    format!("{e:?}")
}

/// How to put `param` on this machine's kernel command line for the next boot.
pub fn boot_param_fix(facts: &Facts, param: &str) -> String {
    match facts.boot {
        BootSetup::AlpineExtlinux => format!(
            "add {param} to default_kernel_opts in /etc/update-extlinux.conf, run update-extlinux, then reboot"
        ),
        BootSetup::Grub => format!(
            "add {param} to GRUB_CMDLINE_LINUX_DEFAULT in /etc/default/grub, run grub-mkconfig -o /boot/grub/grub.cfg, then reboot"
        ),
        BootSetup::Unknown => format!(
            "add {param} to the kernel command line in your boot loader's configuration and reboot \
             (Alpine: default_kernel_opts in /etc/update-extlinux.conf, then update-extlinux; \
             GRUB: GRUB_CMDLINE_LINUX_DEFAULT in /etc/default/grub, then grub-mkconfig -o /boot/grub/grub.cfg)"
        ),
    }
}

/// The fix for `kexec_load_disabled=1`, which no running kernel can undo.
///
/// Upstream kernels start at 0 and only a sysctl write sets it, so the fix is
/// to find that write; Alpine's kernels start at 1 and take a boot parameter.
pub fn load_disabled_fix(facts: &Facts) -> String {
    let alpine_kernel = facts.alpine
        || facts.boot == BootSetup::AlpineExtlinux
        || facts
            .cmdline
            .as_deref()
            .is_some_and(|c| c.contains("kexec_load_disabled="));
    if !facts.sysctl_sources.is_empty() {
        let files: Vec<String> = facts
            .sysctl_sources
            .iter()
            .map(|p| p.display().to_string())
            .collect();
        let mut fix = format!(
            "remove kernel.kexec_load_disabled from {} (it can only be set, never cleared, at run time) and reboot",
            files.join(", ")
        );
        if alpine_kernel {
            fix.push_str("; also ");
            fix.push_str(&boot_param_fix(facts, "kexec_load_disabled=0"));
        }
        return fix;
    }
    if alpine_kernel {
        return boot_param_fix(facts, "kexec_load_disabled=0");
    }
    format!(
        "it cannot be cleared at run time: on an Alpine kernel (which starts with it at 1), {}; on other kernels \
         something set it after boot (a sysctl file or boot script): remove that and reboot",
        boot_param_fix(facts, "kexec_load_disabled=0")
    )
}

/// Why signatures are being enforced on this machine, if they are.
fn signature_enforcement(facts: &Facts) -> Option<String> {
    let mut why = Vec::new();
    if facts.config_enabled("CONFIG_KEXEC_SIG_FORCE") == Some(true) {
        why.push("the kernel is built with CONFIG_KEXEC_SIG_FORCE".to_string());
    }
    if let Some(mode @ (Lockdown::Integrity | Lockdown::Confidentiality)) = facts.lockdown {
        why.push(format!(
            "kernel lockdown is in {} mode",
            lockdown_name(mode)
        ));
    }
    if facts.secure_boot == Some(true) {
        why.push("UEFI Secure Boot is on".to_string());
    }
    if facts.ima_policy {
        why.push("an IMA policy is loaded".to_string());
    }
    (!why.is_empty()).then(|| why.join(", "))
}

fn lockdown_name(l: Lockdown) -> &'static str {
    match l {
        Lockdown::None => "none",
        Lockdown::Integrity => "integrity",
        Lockdown::Confidentiality => "confidentiality",
    }
}

fn locked_down(facts: &Facts) -> Option<Lockdown> {
    match facts.lockdown {
        Some(l @ (Lockdown::Integrity | Lockdown::Confidentiality)) => Some(l),
        _ => None,
    }
}

const SIGN_FIX: &str = "load a kernel signed by a key the kernel trusts (your distribution's signed kernel, or one \
                        signed with sbsign using a key enrolled with mokutil --import), or boot without signature \
                        enforcement";

fn explain_eperm(op: Op, target: Target, facts: &Facts) -> Diagnosis {
    if facts.cap_sys_boot == Some(false) {
        return Diagnosis::new(
            "this process lacks CAP_SYS_BOOT, which every kexec call requires (not root, or inside a container)",
            "run kexec as root (e.g. sudo kexec …); from a container, kexec is not possible: run it on the host",
        );
    }
    if op == Op::Exec {
        return Diagnosis::cause_only("the kernel refused to reboot into the loaded image (EPERM)");
    }
    if facts.kexec_load_disabled == Some(true) {
        let origin = if facts.alpine || facts.boot == BootSetup::AlpineExtlinux {
            " (Alpine's kernels start with it set to 1)"
        } else {
            ""
        };
        return Diagnosis::new(
            format!(
                "kernel.kexec_load_disabled is 1{origin}: this kernel refuses every kexec load until it is \
                 booted with kexec_load_disabled=0"
            ),
            load_disabled_fix(facts),
        );
    }
    let limit = match target {
        Target::Normal => ("kexec_load_limit_reboot", facts.load_limit_reboot),
        Target::Crash => ("kexec_load_limit_panic", facts.load_limit_panic),
    };
    if limit.1 == Some(0) {
        return Diagnosis::new(
            format!("kernel.{} is 0: no more kexec loads are allowed until reboot", limit.0),
            "reboot (the limit can only be lowered at run time), and raise or remove whatever sets it",
        );
    }
    if let Some(mode) = locked_down(facts) {
        let mode = lockdown_name(mode);
        return match op {
            Op::Load | Op::Unload => Diagnosis::new(
                format!(
                    "kernel lockdown ({mode}) forbids kexec_load, which can run unsigned code{}",
                    if facts.secure_boot == Some(true) { "; it is on because UEFI Secure Boot is" } else { "" }
                ),
                format!("use kexec_file_load (-s) with a signed kernel: {SIGN_FIX}"),
            ),
            _ => Diagnosis::new(
                format!("kernel lockdown ({mode}) requires a verified signature and this kernel image has none the kernel accepts"),
                SIGN_FIX,
            ),
        };
    }
    if facts.seccomp.is_some_and(|s| s != 0) {
        return Diagnosis::new(
            "a seccomp filter on this process (Seccomp: 2 in /proc/self/status) refuses the call",
            "run kexec outside the sandbox or container that installs the filter",
        );
    }
    Diagnosis::cause_only(
        "the kernel refused although CAP_SYS_BOOT is held, kexec_load_disabled is 0 and lockdown is off: a \
         security module (SELinux, AppArmor) policy is the remaining cause; its denial is in the kernel log (dmesg)",
    )
}

fn explain_format(facts: &Facts, image: &ImageHints, errno: Errno) -> Diagnosis {
    let what = image.path.as_deref().unwrap_or("the kernel image");
    let kind = image
        .kind
        .as_deref()
        .map(|k| format!(" ({what} is {k})"))
        .unwrap_or_default();
    if facts.arch == "x86_64" {
        if image.is_bzimage == Some(false) {
            return Diagnosis::new(
                format!("the running kernel only accepts a 64-bit bzImage and {what} is not one{kind}"),
                "pass the kernel's bzImage (e.g. /boot/vmlinuz-*), not a vmlinux ELF, a compressed file or another \
                 architecture's kernel",
            );
        }
        if image.kernel_64 == Some(false) {
            return Diagnosis::new(
                format!("{what} is a bzImage without a 64-bit entry point (XLF_KERNEL_64 is not set in xloadflags)"),
                "load it with kexec_load (-c), or use a kernel built for x86_64",
            );
        }
    }
    let arch_note = if facts.arch == "aarch64" && errno == Errno::EINVAL {
        " (arm64 answers EINVAL where x86 answers ENOEXEC)"
    } else {
        ""
    };
    Diagnosis::new(
        format!("the running kernel's kexec_file_load does not accept this image format{arch_note}{kind}"),
        "check that the file is a kernel for this architecture; the kexec_load path (-c) accepts more formats",
    )
}

fn explain_crash_room(facts: &Facts, image: &ImageHints) -> Option<Diagnosis> {
    match facts.crash_size {
        Some(0) => Some(Diagnosis::new(
            "no memory is reserved for a crash kernel (/sys/kernel/kexec_crash_size is 0)",
            boot_param_fix(facts, "crashkernel=256M"),
        )),
        Some(size) => {
            let need = image.kernel_len.unwrap_or(0) + image.initrd_len.unwrap_or(0);
            Some(Diagnosis::new(
                format!(
                    "the crash kernel and initrd ({} MiB) do not fit with room to run in the {} MiB crashkernel= reservation",
                    need >> 20,
                    size >> 20
                ),
                boot_param_fix(facts, &format!("a larger crashkernel= (e.g. crashkernel={}M)", ((size >> 20) * 2).max(256))),
            ))
        }
        None => None,
    }
}

/// Explains `errno` from `op` on a machine described by `facts`.
pub fn explain(
    op: Op,
    errno: Errno,
    target: Target,
    facts: &Facts,
    image: &ImageHints,
) -> Diagnosis {
    use Errno::*;
    match errno {
        EPERM => explain_eperm(op, target, facts),
        EACCES => Diagnosis::new(
            format!(
                "the kernel was denied reading the image: {}",
                if facts.ima_policy {
                    "the loaded IMA policy appraises kexec images and refused this one"
                } else {
                    "a security module (SELinux, AppArmor) policy refused it"
                }
            ),
            "check the kernel log (dmesg) for the denial; sign the image or adjust the policy",
        ),
        EKEYREJECTED => Diagnosis::new(
            format!(
                "the image's signature was checked and rejected (it does not match the image or the key it names){}",
                signature_enforcement(facts).map(|w| format!("; signatures are enforced because {w}")).unwrap_or_default()
            ),
            SIGN_FIX,
        ),
        ENOKEY => Diagnosis::new(
            "the image is signed, but by a key none of the kernel's keyrings (.builtin_trusted_keys, .secondary_trusted_keys, .platform) holds",
            "enroll the signing key (mokutil --import cert.der, then reboot to confirm) or use a kernel signed by a trusted key",
        ),
        ENODATA => Diagnosis::new(
            format!(
                "the image carries no signature and the kernel requires one{}",
                signature_enforcement(facts).map(|w| format!(" ({w})")).unwrap_or_default()
            ),
            SIGN_FIX,
        ),
        EBADMSG | EMSGSIZE | ELIBBAD => Diagnosis::new(
            "the image's signature is malformed, or the image was changed after it was signed",
            "re-sign the image (sbsign) or reinstall the signed kernel package",
        ),
        ENOPKG => Diagnosis::new(
            "the kernel lacks the crypto algorithm the image's signature uses",
            "sign with SHA-256 and RSA, which every signature-checking kernel has",
        ),
        ENOEXEC => explain_format(facts, image, errno),
        EINVAL => match op {
            Op::Exec => Diagnosis::new("no kernel is loaded to reboot into", "load one first with kexec -l KERNEL"),
            _ if facts.arch == "aarch64" => explain_format(facts, image, errno),
            _ if target == Target::Crash && facts.crash_size == Some(0) => {
                explain_crash_room(facts, image).unwrap_or_else(|| Diagnosis::cause_only("no crash reservation"))
            }
            Op::FileUnload | Op::Unload => Diagnosis::cause_only("the kernel rejected the unload request's flags"),
            _ => Diagnosis::new(
                format!(
                    "the kernel rejected the load's arguments: typically a command line ({} bytes) longer than the \
                     new kernel accepts, or an image it recognises but cannot place in memory",
                    image.cmdline_len
                ),
                "shorten the command line; `kexec info KERNEL` shows the image's limits; dmesg may name the reason",
            ),
        },
        ENOMEM => match target {
            Target::Crash => explain_crash_room(facts, image)
                .unwrap_or_else(|| Diagnosis::cause_only("the crash kernel does not fit in the crashkernel= reservation")),
            Target::Normal => Diagnosis::new(
                format!(
                    "the kernel has not enough free memory to stage the new kernel ({} MiB) and initrd ({} MiB)",
                    image.kernel_len.unwrap_or(0) >> 20,
                    image.initrd_len.unwrap_or(0) >> 20
                ),
                "free memory (stop services, drop caches) or use a smaller initrd",
            ),
        },
        EADDRNOTAVAIL => match target {
            Target::Crash => explain_crash_room(facts, image).unwrap_or_else(|| {
                Diagnosis::cause_only("a segment lies outside the crashkernel= reservation")
            }),
            Target::Normal => Diagnosis::cause_only(
                "no free physical memory range could hold one of the segments (or a segment points outside RAM)",
            ),
        },
        EBUSY => Diagnosis::new(
            "another kexec load or unload is running right now (the kernel's kexec lock is held)",
            "wait for it to finish and retry",
        ),
        ENOSYS => explain_enosys(op, facts),
        Errno::ENOTSUP => Diagnosis::new(
            "the running kernel does not support this image type or its signature wrapper through kexec_file_load",
            "use the kexec_load path (-c), which parses the image in userspace",
        ),
        ETXTBSY => Diagnosis::new(
            "the kernel or initrd file is open for writing by another process (being written or updated right now?)",
            "wait until the writer is done (e.g. a package upgrade), then retry",
        ),
        EFBIG => Diagnosis::cause_only("the image or initrd is larger than the kernel will read"),
        EBADF => Diagnosis::cause_only("the kernel could not read the file through its descriptor"),
        _ => Diagnosis::cause_only(format!(
            "no specific explanation for {} from {}; the kernel log (dmesg) may say more",
            errno_name(errno),
            op.syscall_name()
        )),
    }
}

fn explain_enosys(op: Op, facts: &Facts) -> Diagnosis {
    let seccomp = facts.seccomp.is_some_and(|s| s != 0);
    let source = facts
        .config
        .as_ref()
        .map(|c| c.source.clone())
        .unwrap_or_default();
    let (name, option) = match op {
        Op::FileLoad | Op::FileUnload => ("kexec_file_load", "CONFIG_KEXEC_FILE"),
        _ => ("kexec_load", "CONFIG_KEXEC"),
    };
    let why = match (facts.config_enabled(option), seccomp) {
        (Some(false), _) => format!("this kernel was built without {option} ({source})"),
        (Some(true), true) => format!(
            "the kernel has {option} ({source}), so a seccomp filter on this process (Seccomp: 2 in /proc/self/status) hides the call"
        ),
        (Some(true), false) => format!("the kernel config ({source}) has {option}, yet the call is missing"),
        (None, true) => format!(
            "either this kernel was built without {option}, or a seccomp filter on this process (Seccomp: 2 in /proc/self/status) hides the call"
        ),
        (None, false) => format!("this kernel was built without {option}"),
    };
    match op {
        Op::FileLoad | Op::FileUnload => Diagnosis::new(
            format!(
                "{name} is not available: {why} (Alpine's x86_64 kernels have only kexec_load)"
            ),
            "drop -s: the default mode (or -c) loads through kexec_load",
        ),
        _ => Diagnosis::new(
            format!("{name} is not available: {why}; without it this kernel cannot kexec at all"),
            "boot a kernel built with CONFIG_KEXEC=y (and CONFIG_KEXEC_FILE=y for -s)",
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::PathBuf;

    fn x86() -> Facts {
        Facts::permissive("x86_64")
    }
    fn hints() -> ImageHints {
        ImageHints {
            path: Some("/boot/vmlinuz-lts".into()),
            ..Default::default()
        }
    }
    fn ex(errno: Errno, f: &Facts) -> Diagnosis {
        explain(Op::FileLoad, errno, Target::Normal, f, &hints())
    }

    #[test]
    fn eperm_without_cap_sys_boot_says_run_as_root() {
        let f = Facts {
            cap_sys_boot: Some(false),
            kexec_load_disabled: Some(true),
            ..x86()
        };
        let d = ex(Errno::EPERM, &f);
        assert!(d.cause.contains("CAP_SYS_BOOT"), "{d:?}");
        assert!(d.fix.unwrap().contains("as root"));
    }

    #[test]
    fn eperm_with_load_disabled_on_alpine_gives_the_extlinux_fix() {
        let f = Facts {
            kexec_load_disabled: Some(true),
            boot: BootSetup::AlpineExtlinux,
            alpine: true,
            ..x86()
        };
        let d = ex(Errno::EPERM, &f);
        assert!(d.cause.contains("kexec_load_disabled is 1"), "{d:?}");
        assert!(d.cause.contains("Alpine"));
        assert_eq!(
            d.fix.as_deref(),
            Some(
                "add kexec_load_disabled=0 to default_kernel_opts in /etc/update-extlinux.conf, run \
                 update-extlinux, then reboot"
            )
        );
        // Same answer for the classic syscall.
        assert_eq!(
            explain(Op::Load, Errno::EPERM, Target::Normal, &f, &hints()),
            d
        );
    }

    #[test]
    fn eperm_with_load_disabled_on_grub_gives_the_grub_fix() {
        let f = Facts {
            kexec_load_disabled: Some(true),
            boot: BootSetup::Grub,
            alpine: true,
            ..x86()
        };
        let fix = ex(Errno::EPERM, &f).fix.unwrap();
        assert!(
            fix.contains("GRUB_CMDLINE_LINUX_DEFAULT in /etc/default/grub"),
            "{fix}"
        );
        assert!(
            fix.contains("grub-mkconfig -o /boot/grub/grub.cfg"),
            "{fix}"
        );
    }

    #[test]
    fn eperm_with_load_disabled_by_sysctl_names_the_file() {
        let f = Facts {
            kexec_load_disabled: Some(true),
            boot: BootSetup::Grub,
            sysctl_sources: vec![PathBuf::from("/etc/sysctl.d/50-hardening.conf")],
            ..x86()
        };
        let fix = ex(Errno::EPERM, &f).fix.unwrap();
        assert!(
            fix.starts_with(
                "remove kernel.kexec_load_disabled from /etc/sysctl.d/50-hardening.conf"
            ),
            "{fix}"
        );
        assert!(
            !fix.contains("GRUB"),
            "no boot parameter on a non-Alpine kernel: {fix}"
        );
    }

    #[test]
    fn eperm_with_unknown_boot_setup_names_both_fixes() {
        let f = Facts {
            kexec_load_disabled: Some(true),
            ..x86()
        };
        let fix = ex(Errno::EPERM, &f).fix.unwrap();
        assert!(
            fix.contains("update-extlinux") && fix.contains("grub-mkconfig"),
            "{fix}"
        );
    }

    #[test]
    fn eperm_with_exhausted_load_limit() {
        let f = Facts {
            load_limit_panic: Some(0),
            load_limit_reboot: Some(-1),
            ..x86()
        };
        let d = explain(Op::FileLoad, Errno::EPERM, Target::Crash, &f, &hints());
        assert!(d.cause.contains("kexec_load_limit_panic is 0"), "{d:?}");
        let d = explain(Op::FileLoad, Errno::EPERM, Target::Normal, &f, &hints());
        assert!(!d.cause.contains("limit"), "{d:?}");
    }

    #[test]
    fn eperm_under_lockdown_depends_on_the_syscall() {
        let f = Facts {
            lockdown: Some(Lockdown::Integrity),
            secure_boot: Some(true),
            ..x86()
        };
        let d = explain(Op::Load, Errno::EPERM, Target::Normal, &f, &hints());
        assert!(
            d.cause.contains("lockdown (integrity) forbids kexec_load"),
            "{d:?}"
        );
        assert!(d.cause.contains("Secure Boot"));
        assert!(d.fix.unwrap().contains("-s"));
        let d = ex(Errno::EPERM, &f);
        assert!(d.cause.contains("requires a verified signature"), "{d:?}");
    }

    #[test]
    fn eperm_from_seccomp_and_from_nothing_known() {
        let d = ex(
            Errno::EPERM,
            &Facts {
                seccomp: Some(2),
                ..x86()
            },
        );
        assert!(d.cause.contains("seccomp"), "{d:?}");
        let d = ex(Errno::EPERM, &x86());
        assert!(d.cause.contains("SELinux"), "{d:?}");
        assert!(d.fix.is_none());
    }

    #[test]
    fn signature_errors_say_why_signatures_are_enforced() {
        let mut f = x86();
        f.config = Some(crate::sysview::KernelConfig::parse(
            "t",
            "CONFIG_KEXEC_SIG_FORCE=y\n",
        ));
        let d = ex(Errno::EKEYREJECTED, &f);
        assert!(
            d.cause.contains("rejected") && d.cause.contains("CONFIG_KEXEC_SIG_FORCE"),
            "{d:?}"
        );
        let d = ex(
            Errno::ENODATA,
            &Facts {
                lockdown: Some(Lockdown::Confidentiality),
                ..x86()
            },
        );
        assert!(
            d.cause.contains("no signature") && d.cause.contains("confidentiality"),
            "{d:?}"
        );
        assert!(ex(Errno::ENOKEY, &x86()).fix.unwrap().contains("mokutil"));
        assert!(ex(Errno::EBADMSG, &x86()).cause.contains("malformed"));
        assert!(ex(Errno::EMSGSIZE, &x86()).cause.contains("malformed"));
        assert!(ex(Errno::ENOPKG, &x86()).cause.contains("crypto"));
    }

    #[test]
    fn eacces_points_at_ima_when_a_policy_is_loaded() {
        assert!(ex(
            Errno::EACCES,
            &Facts {
                ima_policy: true,
                ..x86()
            }
        )
        .cause
        .contains("IMA"));
        assert!(ex(Errno::EACCES, &x86()).cause.contains("SELinux"));
    }

    #[test]
    fn enoexec_uses_what_the_image_is() {
        let mut h = hints();
        h.is_bzimage = Some(false);
        h.kind = Some("an ELF file".into());
        let d = explain(Op::FileLoad, Errno::ENOEXEC, Target::Normal, &x86(), &h);
        assert!(
            d.cause
                .contains("not one (/boot/vmlinuz-lts is an ELF file)"),
            "{d:?}"
        );
        h.is_bzimage = Some(true);
        h.kernel_64 = Some(false);
        let d = explain(Op::FileLoad, Errno::ENOEXEC, Target::Normal, &x86(), &h);
        assert!(d.cause.contains("XLF_KERNEL_64"), "{d:?}");
    }

    #[test]
    fn einval_on_arm64_is_an_image_format_problem() {
        let d = explain(
            Op::FileLoad,
            Errno::EINVAL,
            Target::Normal,
            &Facts::permissive("aarch64"),
            &hints(),
        );
        assert!(
            d.cause
                .contains("arm64 answers EINVAL where x86 answers ENOEXEC"),
            "{d:?}"
        );
        let d = ex(Errno::EINVAL, &x86());
        assert!(d.cause.contains("command line"), "{d:?}");
    }

    #[test]
    fn crash_errors_check_the_reservation() {
        let d = explain(Op::FileLoad, Errno::EINVAL, Target::Crash, &x86(), &hints());
        assert!(d.cause.contains("no memory is reserved"), "{d:?}");
        assert!(d.fix.unwrap().contains("crashkernel=256M"));
        let f = Facts {
            crash_size: Some(64 << 20),
            ..x86()
        };
        let h = ImageHints {
            kernel_len: Some(50 << 20),
            initrd_len: Some(30 << 20),
            ..hints()
        };
        let d = explain(Op::FileLoad, Errno::ENOMEM, Target::Crash, &f, &h);
        assert!(
            d.cause.contains("(80 MiB)") && d.cause.contains("64 MiB"),
            "{d:?}"
        );
        let d = explain(Op::Load, Errno::EADDRNOTAVAIL, Target::Crash, &f, &h);
        assert!(d.cause.contains("crashkernel="), "{d:?}");
    }

    #[test]
    fn normal_memory_errors() {
        let h = ImageHints {
            kernel_len: Some(14 << 20),
            initrd_len: Some(2 << 20),
            ..hints()
        };
        let d = explain(Op::FileLoad, Errno::ENOMEM, Target::Normal, &x86(), &h);
        assert!(d.cause.contains("(14 MiB)"), "{d:?}");
        let d = explain(Op::Load, Errno::EADDRNOTAVAIL, Target::Normal, &x86(), &h);
        assert!(d.cause.contains("physical memory"), "{d:?}");
    }

    #[test]
    fn enosys_for_the_file_syscall_names_config_kexec_file() {
        let mut f = x86();
        f.config = Some(crate::sysview::KernelConfig::parse(
            "/proc/config.gz",
            "CONFIG_KEXEC=y\n",
        ));
        let d = ex(Errno::ENOSYS, &f);
        assert!(
            d.cause
                .contains("built without CONFIG_KEXEC_FILE (/proc/config.gz)"),
            "{d:?}"
        );
        assert!(d.fix.unwrap().starts_with("drop -s"));
        let d = ex(
            Errno::ENOSYS,
            &Facts {
                seccomp: Some(2),
                config: None,
                ..x86()
            },
        );
        assert!(d.cause.contains("seccomp"), "{d:?}");
        let d = explain(Op::Load, Errno::ENOSYS, Target::Normal, &x86(), &hints());
        assert!(d.cause.contains("cannot kexec at all"), "{d:?}");
    }

    #[test]
    fn remaining_errnos_have_a_cause() {
        for e in [
            Errno::EBUSY,
            Errno::ENOTSUP,
            Errno::ETXTBSY,
            Errno::EFBIG,
            Errno::EBADF,
            Errno::EIO,
        ] {
            let d = ex(e, &x86());
            assert!(!d.cause.is_empty(), "{e:?}");
        }
        assert!(ex(Errno::EIO, &x86()).cause.contains("EIO"));
        let d = explain(Op::Exec, Errno::EINVAL, Target::Normal, &x86(), &hints());
        assert!(d.cause.contains("no kernel is loaded"), "{d:?}");
        let d = explain(
            Op::Exec,
            Errno::EPERM,
            Target::Normal,
            &Facts {
                cap_sys_boot: Some(false),
                ..x86()
            },
            &hints(),
        );
        assert!(d.cause.contains("CAP_SYS_BOOT"), "{d:?}");
    }
}
