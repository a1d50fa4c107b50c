//! `kexec check`: would a load succeed on this machine, and if not, why and
//! what exactly to change. It reasons over the same [`Facts`] as the errno
//! diagnosis, before any syscall is tried.

use serde::Serialize;

use crate::diagnose::{boot_param_fix, load_disabled_fix};
use crate::syscall::KexecState;
use crate::sysview::{Facts, Lockdown};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    /// A load would fail.
    Error,
    /// A load can work, with a restriction worth knowing.
    Warning,
    /// A fact, for the record.
    Ok,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Finding {
    pub severity: Severity,
    pub what: String,
    pub fix: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Report {
    pub findings: Vec<Finding>,
    pub crash: bool,
}

impl Report {
    /// A load would succeed: no finding is an error.
    pub fn passed(&self) -> bool {
        self.findings.iter().all(|f| f.severity != Severity::Error)
    }
}

/// What this build can load with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Abilities {
    /// The `kexec_load` path (own boot_params + purgatory) is built in.
    pub classic: bool,
}

fn finding(severity: Severity, what: impl Into<String>, fix: Option<String>) -> Finding {
    Finding {
        severity,
        what: what.into(),
        fix,
    }
}

/// Checks whether a normal load (or, with `crash`, a crash-kernel load) would
/// succeed.
pub fn check(facts: &Facts, state: &KexecState, crash: bool, abilities: Abilities) -> Report {
    use Severity::*;
    let mut out = Vec::new();

    match facts.cap_sys_boot {
        Some(true) => out.push(finding(Ok, "this process holds CAP_SYS_BOOT", None)),
        Some(false) => out.push(finding(
            Error,
            "this process lacks CAP_SYS_BOOT, which every kexec call requires",
            Some(
                "run kexec as root (e.g. sudo kexec …); from a container, kexec is not possible"
                    .into(),
            ),
        )),
        None => out.push(finding(
            Warning,
            "cannot read CapEff from /proc/self/status (is /proc mounted?)",
            None,
        )),
    }

    // Which syscalls exist.
    let file = facts.config_enabled("CONFIG_KEXEC_FILE");
    let classic = facts.config_enabled("CONFIG_KEXEC");
    let source = facts
        .config
        .as_ref()
        .map(|c| c.source.as_str())
        .unwrap_or("");
    let file_usable = file != Some(false);
    match (file, classic) {
        (None, _) => out.push(finding(
            Warning,
            "kernel config not found (neither /proc/config.gz nor /boot/config-$(uname -r)): cannot confirm CONFIG_KEXEC/CONFIG_KEXEC_FILE",
            None,
        )),
        (Some(false), Some(false)) => out.push(finding(
            Error,
            format!("the kernel is built without CONFIG_KEXEC and CONFIG_KEXEC_FILE ({source}): it cannot kexec"),
            Some("boot a kernel built with CONFIG_KEXEC=y and CONFIG_KEXEC_FILE=y".into()),
        )),
        (Some(true), _) => out.push(finding(Ok, format!("CONFIG_KEXEC_FILE=y ({source}): kexec_file_load is available"), None)),
        (Some(false), _) if abilities.classic => out.push(finding(
            Warning,
            format!("the kernel is built without CONFIG_KEXEC_FILE ({source}): loads go through kexec_load (as on Alpine); -s will fail"),
            None,
        )),
        (Some(false), _) => out.push(finding(
            Error,
            format!("the kernel is built without CONFIG_KEXEC_FILE ({source}) and this build has no kexec_load loader"),
            Some("use a build of kexec with the classic loader, or a kernel with CONFIG_KEXEC_FILE=y".into()),
        )),
    }
    if facts.config_enabled("CONFIG_KEXEC_SIG_FORCE") == Some(true) {
        out.push(finding(
            Warning,
            "CONFIG_KEXEC_SIG_FORCE=y: only kernels signed by a trusted key load through kexec_file_load",
            None,
        ));
    } else if facts.config_enabled("CONFIG_KEXEC_SIG") == Some(true) {
        out.push(finding(
            Ok,
            "CONFIG_KEXEC_SIG=y without _FORCE: signatures are checked only under lockdown or IMA",
            None,
        ));
    }

    match facts.kexec_load_disabled {
        Some(true) => out.push(finding(
            Error,
            "kernel.kexec_load_disabled is 1: every kexec load is refused (EPERM) until a reboot with it at 0",
            Some(load_disabled_fix(facts)),
        )),
        Some(false) => out.push(finding(Ok, "kernel.kexec_load_disabled is 0", None)),
        None => out.push(finding(
            Warning,
            "cannot read /proc/sys/kernel/kexec_load_disabled (no kexec in this kernel, or /proc not mounted)",
            None,
        )),
    }
    let (limit_name, limit) = if crash {
        ("kexec_load_limit_panic", facts.load_limit_panic)
    } else {
        ("kexec_load_limit_reboot", facts.load_limit_reboot)
    };
    if limit == Some(0) {
        out.push(finding(
            Error,
            format!("kernel.{limit_name} is 0: no more loads are allowed until reboot"),
            Some("reboot, and raise or remove whatever lowers the limit".into()),
        ));
    }

    match facts.lockdown {
        Some(mode @ (Lockdown::Integrity | Lockdown::Confidentiality)) => {
            let mode = if mode == Lockdown::Integrity {
                "integrity"
            } else {
                "confidentiality"
            };
            let severity = if file_usable { Warning } else { Error };
            out.push(finding(
                severity,
                format!("kernel lockdown is in {mode} mode: kexec_load is refused and kexec_file_load needs a kernel signed by a trusted key"),
                Some(format!(
                    "load a signed kernel with -s, or {}",
                    boot_param_fix(facts, "lockdown=none (and turn Secure Boot off if it enforces lockdown)")
                )),
            ));
        }
        Some(Lockdown::None) => out.push(finding(Ok, "kernel lockdown is off", None)),
        None => {}
    }
    if facts.seccomp.is_some_and(|s| s != 0) {
        out.push(finding(
            Warning,
            "a seccomp filter is active on this process: it may refuse or hide kexec calls",
            None,
        ));
    }

    if crash {
        if facts.config_enabled("CONFIG_CRASH_DUMP") == Some(false) {
            out.push(finding(
                Error,
                format!("the kernel is built without CONFIG_CRASH_DUMP ({source}): it cannot load a crash kernel"),
                Some("boot a kernel built with CONFIG_CRASH_DUMP=y".into()),
            ));
        }
        match state.crash_size.or(facts.crash_size) {
            Some(0) => out.push(finding(
                Error,
                "no memory is reserved for a crash kernel (/sys/kernel/kexec_crash_size is 0)",
                Some(boot_param_fix(facts, "crashkernel=256M")),
            )),
            Some(n) => out.push(finding(
                Ok,
                format!("{} MiB reserved for a crash kernel", n >> 20),
                None,
            )),
            None => out.push(finding(
                Warning,
                "cannot read /sys/kernel/kexec_crash_size",
                None,
            )),
        }
    }
    if !crash {
        if let Some(n) = state.crash_size.or(facts.crash_size).filter(|n| *n > 0) {
            out.push(finding(
                Ok,
                format!("{} MiB reserved for a crash kernel (kexec -p)", n >> 20),
                None,
            ));
        }
    }
    if state.loaded.is_none() {
        out.push(finding(
            Warning,
            "/sys/kernel/kexec_loaded is missing: this kernel has no kexec, or /sys is not mounted",
            None,
        ));
    }
    Report {
        findings: out,
        crash,
    }
}

impl std::fmt::Display for Report {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        for item in &self.findings {
            let tag = match item.severity {
                Severity::Error => "FAIL",
                Severity::Warning => "warn",
                Severity::Ok => " ok ",
            };
            writeln!(f, "[{tag}] {}", item.what)?;
            if let Some(fix) = &item.fix {
                writeln!(f, "       fix: {fix}")?;
            }
        }
        let what = if self.crash {
            "a crash kernel load"
        } else {
            "a kexec load"
        };
        if self.passed() {
            writeln!(f, "{what} should succeed")
        } else {
            writeln!(f, "{what} would fail: fix the FAIL lines above")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sysview::{BootSetup, KernelConfig};

    const ALL: Abilities = Abilities { classic: true };
    const FILE_ONLY: Abilities = Abilities { classic: false };

    fn state() -> KexecState {
        KexecState {
            loaded: Some(false),
            crash_loaded: Some(false),
            crash_size: Some(0),
        }
    }

    #[test]
    fn permissive_machine_passes() {
        let r = check(&Facts::permissive("x86_64"), &state(), false, ALL);
        assert!(r.passed(), "{r}");
        assert!(r.to_string().ends_with("a kexec load should succeed\n"));
    }

    #[test]
    fn alpine_hardened_fails_with_the_extlinux_fix() {
        let mut f = Facts::permissive("x86_64");
        f.kexec_load_disabled = Some(true);
        f.boot = BootSetup::AlpineExtlinux;
        f.alpine = true;
        f.config = Some(KernelConfig::parse(
            "/boot/config-6.6.58-0-lts",
            "CONFIG_KEXEC=y\n",
        ));
        let r = check(&f, &state(), false, ALL);
        assert!(!r.passed());
        let text = r.to_string();
        assert!(
            text.contains("[FAIL] kernel.kexec_load_disabled is 1"),
            "{text}"
        );
        assert!(text.contains("fix: add kexec_load_disabled=0 to default_kernel_opts in /etc/update-extlinux.conf, run update-extlinux, then reboot"), "{text}");
        assert!(
            text.contains("[warn] the kernel is built without CONFIG_KEXEC_FILE"),
            "{text}"
        );
    }

    #[test]
    fn no_kexec_file_fails_only_without_the_classic_loader() {
        let mut f = Facts::permissive("x86_64");
        f.config = Some(KernelConfig::parse("c", "CONFIG_KEXEC=y\n"));
        assert!(check(&f, &state(), false, ALL).passed());
        assert!(!check(&f, &state(), false, FILE_ONLY).passed());
        f.config = Some(KernelConfig::parse("c", "# CONFIG_KEXEC is not set\n"));
        assert!(!check(&f, &state(), false, ALL).passed());
    }

    #[test]
    fn missing_capability_and_load_limit_fail() {
        let f = Facts {
            cap_sys_boot: Some(false),
            ..Facts::permissive("x86_64")
        };
        assert!(!check(&f, &state(), false, ALL).passed());
        let f = Facts {
            load_limit_reboot: Some(0),
            ..Facts::permissive("x86_64")
        };
        assert!(!check(&f, &state(), false, ALL).passed());
        assert!(
            !check(&f, &state(), true, ALL).passed(),
            "crash with no reservation fails too"
        );
    }

    #[test]
    fn lockdown_is_a_warning_while_kexec_file_load_exists() {
        let mut f = Facts {
            lockdown: Some(Lockdown::Integrity),
            ..Facts::permissive("x86_64")
        };
        let r = check(&f, &state(), false, ALL);
        assert!(r.passed(), "{r}");
        assert!(r.to_string().contains("lockdown is in integrity mode"));
        f.config = Some(KernelConfig::parse("c", "CONFIG_KEXEC=y\n"));
        assert!(!check(&f, &state(), false, ALL).passed());
        f.config = Some(KernelConfig::parse(
            "c",
            "CONFIG_KEXEC=y\nCONFIG_KEXEC_FILE=y\nCONFIG_KEXEC_SIG_FORCE=y\n",
        ));
        assert!(check(&f, &state(), false, ALL)
            .to_string()
            .contains("CONFIG_KEXEC_SIG_FORCE=y"));
    }

    #[test]
    fn crash_checks_the_reservation_and_crash_dump() {
        let f = Facts::permissive("x86_64");
        let r = check(&f, &state(), true, ALL);
        assert!(!r.passed());
        assert!(r.to_string().contains("crashkernel=256M"), "{r}");
        let reserved = KexecState {
            crash_size: Some(256 << 20),
            ..state()
        };
        assert!(check(&f, &reserved, true, ALL).passed());
        let mut f = f;
        f.config = Some(KernelConfig::parse(
            "c",
            "CONFIG_KEXEC_FILE=y\nCONFIG_KEXEC=y\n",
        ));
        assert!(!check(&f, &reserved, true, ALL).passed());
    }
}
