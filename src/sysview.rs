//! The facts about the running system that decide whether kexec can work,
//! read from files under an injectable root (`/` in production, a temporary
//! tree in tests).
//!
//! Diagnosis and `kexec check` reason only over [`Facts`]: every cause they
//! name has been read here, not guessed, and every mapping can be tested by
//! building the tree (or the `Facts`) a given machine would have.

use std::collections::BTreeMap;
use std::io::Read;
use std::path::{Path, PathBuf};

/// `CAP_SYS_BOOT`, the capability every kexec syscall requires.
pub const CAP_SYS_BOOT: u32 = 22;
/// The EFI global variable GUID under which `SecureBoot` lives.
const SECURE_BOOT_VAR: &str =
    "sys/firmware/efi/efivars/SecureBoot-8be4df61-93ca-11d2-aa0d-00e098032b8c";

/// A root directory standing for `/`.
#[derive(Debug, Clone)]
pub struct SystemView {
    pub root: PathBuf,
}

/// Kernel lockdown (`/sys/kernel/security/lockdown`, the bracketed word).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Lockdown {
    None,
    Integrity,
    Confidentiality,
}

/// How this machine's kernel command line is configured, which decides the
/// exact fix to print.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum BootSetup {
    /// Alpine's `update-extlinux` (`/etc/update-extlinux.conf`).
    AlpineExtlinux,
    /// GRUB (`/etc/default/grub`).
    Grub,
    Unknown,
}

/// A kernel `.config`, as `CONFIG_NAME -> value` (`y`, `m`, a string…).
#[derive(Debug, Clone, PartialEq, Eq, Default, serde::Serialize)]
pub struct KernelConfig {
    /// Where it was read from, for messages.
    pub source: String,
    pub values: BTreeMap<String, String>,
}

impl KernelConfig {
    pub fn parse(source: &str, text: &str) -> Self {
        let mut values = BTreeMap::new();
        for line in text.lines() {
            if let Some((k, v)) = line.split_once('=') {
                if k.starts_with("CONFIG_") {
                    values.insert(k.to_string(), v.trim_matches('"').to_string());
                }
            }
        }
        KernelConfig {
            source: source.to_string(),
            values,
        }
    }

    /// `y` or `m`: enabled; anything else (including "is not set"): not.
    pub fn enabled(&self, name: &str) -> bool {
        matches!(
            self.values.get(name).map(String::as_str),
            Some("y") | Some("m")
        )
    }
}

/// Everything diagnosis needs, each `None` when it could not be read.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Facts {
    /// `uname -m` of the running kernel.
    pub arch: String,
    /// `uname -r`.
    pub release: Option<String>,
    pub kexec_load_disabled: Option<bool>,
    /// `kernel.kexec_load_limit_reboot` / `_panic` (6.2+): loads left, -1 unlimited.
    pub load_limit_reboot: Option<i64>,
    pub load_limit_panic: Option<i64>,
    pub lockdown: Option<Lockdown>,
    pub cap_sys_boot: Option<bool>,
    /// `Seccomp:` of `/proc/self/status` (0 none, 1 strict, 2 filter).
    pub seccomp: Option<u32>,
    pub config: Option<KernelConfig>,
    pub crash_size: Option<u64>,
    /// `/proc/cmdline`.
    pub cmdline: Option<String>,
    pub secure_boot: Option<bool>,
    pub boot: BootSetup,
    /// Running Alpine (`/etc/alpine-release`): its kernels start with
    /// `kexec_load_disabled=1` and accept a boot parameter to clear it.
    pub alpine: bool,
    /// sysctl files that set `kernel.kexec_load_disabled`.
    pub sysctl_sources: Vec<PathBuf>,
    /// An IMA policy is loaded (it can refuse or require signatures).
    pub ima_policy: bool,
}

impl Facts {
    /// A machine where everything allows kexec; tests start from it and
    /// change one fact.
    pub fn permissive(arch: &str) -> Self {
        let config = KernelConfig::parse(
            "test",
            "CONFIG_KEXEC=y\nCONFIG_KEXEC_FILE=y\nCONFIG_KEXEC_SIG=y\nCONFIG_CRASH_DUMP=y\n",
        );
        Facts {
            arch: arch.to_string(),
            release: Some("6.1.0-56-cloud-amd64".into()),
            kexec_load_disabled: Some(false),
            load_limit_reboot: None,
            load_limit_panic: None,
            lockdown: Some(Lockdown::None),
            cap_sys_boot: Some(true),
            seccomp: Some(0),
            config: Some(config),
            crash_size: Some(0),
            cmdline: Some("root=/dev/vda".into()),
            secure_boot: None,
            boot: BootSetup::Unknown,
            alpine: false,
            sysctl_sources: Vec::new(),
            ima_policy: false,
        }
    }

    /// Whether the kernel config says `name` is on: `None` if no config was found.
    pub fn config_enabled(&self, name: &str) -> Option<bool> {
        self.config.as_ref().map(|c| c.enabled(name))
    }
}

impl SystemView {
    pub fn new(root: impl Into<PathBuf>) -> Self {
        SystemView { root: root.into() }
    }

    /// The real system.
    pub fn live() -> Self {
        SystemView::new("/")
    }

    /// `rel` (written without a leading `/`) under the root.
    pub fn path(&self, rel: &str) -> PathBuf {
        self.root.join(rel.trim_start_matches('/'))
    }

    pub fn read(&self, rel: &str) -> Option<String> {
        std::fs::read_to_string(self.path(rel)).ok()
    }

    fn read_trim(&self, rel: &str) -> Option<String> {
        self.read(rel).map(|s| s.trim().to_string())
    }

    pub fn proc_cmdline(&self) -> std::io::Result<String> {
        std::fs::read_to_string(self.path("proc/cmdline"))
    }

    pub fn release(&self) -> Option<String> {
        self.read_trim("proc/sys/kernel/osrelease")
    }

    pub fn arch(&self) -> String {
        self.read_trim("proc/sys/kernel/arch")
            .unwrap_or_else(|| std::env::consts::ARCH.to_string())
    }

    pub fn lockdown(&self) -> Option<Lockdown> {
        let text = self.read("sys/kernel/security/lockdown")?;
        let active = text.split_whitespace().find(|w| w.starts_with('['))?;
        match active.trim_matches(['[', ']']) {
            "none" => Some(Lockdown::None),
            "integrity" => Some(Lockdown::Integrity),
            "confidentiality" => Some(Lockdown::Confidentiality),
            _ => None,
        }
    }

    fn status_field(&self, name: &str) -> Option<String> {
        let status = self.read("proc/self/status")?;
        status
            .lines()
            .find_map(|l| l.strip_prefix(name).map(|v| v.trim().to_string()))
    }

    pub fn cap_sys_boot(&self) -> Option<bool> {
        let hex = self.status_field("CapEff:")?;
        let mask = u64::from_str_radix(&hex, 16).ok()?;
        Some(mask & (1 << CAP_SYS_BOOT) != 0)
    }

    /// The running kernel's config: `/proc/config.gz`, else
    /// `/boot/config-$(uname -r)`.
    pub fn kernel_config(&self) -> Option<KernelConfig> {
        if let Ok(file) = std::fs::File::open(self.path("proc/config.gz")) {
            let mut text = String::new();
            if flate2::read::GzDecoder::new(file)
                .read_to_string(&mut text)
                .is_ok()
            {
                return Some(KernelConfig::parse("/proc/config.gz", &text));
            }
        }
        let release = self.release()?;
        let rel = format!("boot/config-{release}");
        let text = self.read(&rel)?;
        Some(KernelConfig::parse(&format!("/{rel}"), &text))
    }

    pub fn secure_boot(&self) -> Option<bool> {
        let bytes = std::fs::read(self.path(SECURE_BOOT_VAR)).ok()?;
        // 4 bytes of attributes, then the one-byte value.
        bytes.get(4).map(|v| *v == 1)
    }

    pub fn boot_setup(&self) -> BootSetup {
        if self.path("etc/update-extlinux.conf").exists() {
            BootSetup::AlpineExtlinux
        } else if self.path("etc/default/grub").exists() {
            BootSetup::Grub
        } else {
            BootSetup::Unknown
        }
    }

    fn sysctl_sources(&self) -> Vec<PathBuf> {
        let mut files = vec![PathBuf::from("etc/sysctl.conf")];
        for dir in [
            "etc/sysctl.d",
            "usr/lib/sysctl.d",
            "lib/sysctl.d",
            "run/sysctl.d",
        ] {
            if let Ok(entries) = std::fs::read_dir(self.path(dir)) {
                let mut names: Vec<_> = entries.flatten().map(|e| e.file_name()).collect();
                names.sort();
                files.extend(names.into_iter().map(|n| Path::new(dir).join(n)));
            }
        }
        files
            .into_iter()
            .filter(|rel| {
                std::fs::read_to_string(self.root.join(rel)).is_ok_and(|text| {
                    text.lines().any(|l| {
                        let l = l.trim();
                        !l.starts_with('#')
                            && l.replace('/', ".").contains("kernel.kexec_load_disabled")
                    })
                })
            })
            .map(|rel| Path::new("/").join(rel))
            .collect()
    }

    pub fn facts(&self) -> Facts {
        let num = |rel: &str| self.read_trim(rel).and_then(|s| s.parse::<i64>().ok());
        Facts {
            arch: self.arch(),
            release: self.release(),
            kexec_load_disabled: num("proc/sys/kernel/kexec_load_disabled").map(|v| v != 0),
            load_limit_reboot: num("proc/sys/kernel/kexec_load_limit_reboot"),
            load_limit_panic: num("proc/sys/kernel/kexec_load_limit_panic"),
            lockdown: self.lockdown(),
            cap_sys_boot: self.cap_sys_boot(),
            seccomp: self.status_field("Seccomp:").and_then(|s| s.parse().ok()),
            config: self.kernel_config(),
            crash_size: crate::syscall::read_state(&self.root).crash_size,
            cmdline: self.read_trim("proc/cmdline"),
            secure_boot: self.secure_boot(),
            boot: self.boot_setup(),
            alpine: self.path("etc/alpine-release").exists(),
            sysctl_sources: self.sysctl_sources(),
            ima_policy: self.path("sys/kernel/security/ima/policy").exists(),
        }
    }
}

/// Builds a fake root for tests: `files` are `(path under root, contents)`.
#[cfg(test)]
pub(crate) fn fake_root(files: &[(&str, &[u8])]) -> std::io::Result<tempfile::TempDir> {
    let dir = tempfile::tempdir()?;
    for (rel, data) in files {
        let p = dir.path().join(rel);
        if let Some(parent) = p.parent() {
            std::fs::create_dir_all(parent)?;
        }
        std::fs::write(p, data)?;
    }
    Ok(dir)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    const STATUS_ROOT: &str = "Name:\tkexec\nSeccomp:\t0\nCapEff:\t000001ffffffffff\n";
    const STATUS_USER: &str = "Name:\tkexec\nSeccomp:\t2\nCapEff:\t0000000000000000\n";

    #[test]
    fn reads_every_fact_from_an_alpine_like_tree() {
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        gz.write_all(b"CONFIG_KEXEC=y\n# CONFIG_KEXEC_FILE is not set\n")
            .unwrap();
        let config = gz.finish().unwrap();
        let root = fake_root(&[
            ("proc/sys/kernel/osrelease", b"6.6.58-0-lts\n"),
            ("proc/sys/kernel/arch", b"x86_64\n"),
            ("proc/sys/kernel/kexec_load_disabled", b"1\n"),
            ("proc/self/status", STATUS_ROOT.as_bytes()),
            ("proc/config.gz", &config),
            (
                "proc/cmdline",
                b"BOOT_IMAGE=vmlinuz-lts root=/dev/sda3 modules=sd-mod\n",
            ),
            (
                "sys/kernel/security/lockdown",
                b"[none] integrity confidentiality\n",
            ),
            ("sys/kernel/kexec_crash_size", b"0\n"),
            (
                "etc/update-extlinux.conf",
                b"default_kernel_opts=\"quiet\"\n",
            ),
            ("etc/alpine-release", b"3.22.2\n"),
        ])
        .unwrap();
        let f = SystemView::new(root.path()).facts();
        assert_eq!(f.release.as_deref(), Some("6.6.58-0-lts"));
        assert_eq!(f.kexec_load_disabled, Some(true));
        assert_eq!(f.cap_sys_boot, Some(true));
        assert_eq!(f.seccomp, Some(0));
        assert_eq!(f.lockdown, Some(Lockdown::None));
        assert_eq!(f.config_enabled("CONFIG_KEXEC"), Some(true));
        assert_eq!(f.config_enabled("CONFIG_KEXEC_FILE"), Some(false));
        assert_eq!(f.config.as_ref().unwrap().source, "/proc/config.gz");
        assert_eq!(f.crash_size, Some(0));
        assert_eq!(f.boot, BootSetup::AlpineExtlinux);
        assert!(f.alpine);
    }

    #[test]
    fn falls_back_to_boot_config_and_finds_sysctl_sources() {
        let root = fake_root(&[
            ("proc/sys/kernel/osrelease", b"6.1.0-56-cloud-amd64\n"),
            (
                "boot/config-6.1.0-56-cloud-amd64",
                b"CONFIG_KEXEC=y\nCONFIG_KEXEC_FILE=y\n",
            ),
            ("proc/self/status", STATUS_USER.as_bytes()),
            (
                "sys/kernel/security/lockdown",
                b"none [integrity] confidentiality\n",
            ),
            (
                "etc/default/grub",
                b"GRUB_CMDLINE_LINUX_DEFAULT=\"quiet\"\n",
            ),
            (
                "etc/sysctl.d/50-hardening.conf",
                b"kernel.kexec_load_disabled = 1\n",
            ),
            (
                "etc/sysctl.d/10-other.conf",
                b"# kernel.kexec_load_disabled = 1\nvm.swappiness=1\n",
            ),
        ])
        .unwrap();
        let f = SystemView::new(root.path()).facts();
        assert_eq!(
            f.config.as_ref().unwrap().source,
            "/boot/config-6.1.0-56-cloud-amd64"
        );
        assert_eq!(f.config_enabled("CONFIG_KEXEC_FILE"), Some(true));
        assert_eq!(f.cap_sys_boot, Some(false));
        assert_eq!(f.seccomp, Some(2));
        assert_eq!(f.lockdown, Some(Lockdown::Integrity));
        assert_eq!(f.boot, BootSetup::Grub);
        assert_eq!(
            f.sysctl_sources,
            vec![PathBuf::from("/etc/sysctl.d/50-hardening.conf")]
        );
        assert_eq!(f.kexec_load_disabled, None);
        assert!(!f.alpine);
    }

    #[test]
    fn secure_boot_variable_is_attributes_then_value() {
        let root = fake_root(&[(SECURE_BOOT_VAR, &[6, 0, 0, 0, 1])]).unwrap();
        assert_eq!(SystemView::new(root.path()).secure_boot(), Some(true));
        let root = fake_root(&[(SECURE_BOOT_VAR, &[6, 0, 0, 0, 0])]).unwrap();
        assert_eq!(SystemView::new(root.path()).secure_boot(), Some(false));
    }

    #[test]
    fn an_empty_root_knows_nothing_and_does_not_fail() {
        let root = tempfile::tempdir().unwrap();
        let f = SystemView::new(root.path()).facts();
        assert_eq!(f.kexec_load_disabled, None);
        assert_eq!(f.config, None);
        assert_eq!(f.boot, BootSetup::Unknown);
    }
}
