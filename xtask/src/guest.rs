//! Guests as values: which kernel, which initramfs parts, which command line and profile, how
//! much memory, which disk. And the builder that turns cached packages into the initramfs.
//!
//! The initramfs has two layers, concatenated (the kernel unpacks concatenated newc archives in
//! order): the *userland* (busybox, OpenRC, kexec-tools with its shared libraries, the project's
//! static `kexec`, the seccomp helper, virtio modules, and `vm/rootfs/`), and a *boot* layer with
//! `/boot/vmlinuz` and `/boot/initramfs` (= the userland layer alone), so a guest can kexec into
//! the kernel it runs, and `/boot/extra.cpio`, a second initrd for the two-initrd scenario.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};

use crate::cpio::Archive;
use crate::fetch::{KernelEntry, UserlandEntry};

/// Behaviour a guest imitates, chosen on the kernel command line (`kexecrs.profile=`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Profile {
    /// A plain Debian kernel: `kexec_file_load` and `kexec_load` both work.
    Debian,
    /// Like an Alpine kernel: `kexec_file_load` answers ENOSYS (seccomp, inherited by all).
    AlpineLike,
    /// Alpine-like, plus `kernel.kexec_load_disabled=1` set at boot (Alpine's default).
    AlpineHardened,
}

impl Profile {
    pub fn as_str(self) -> &'static str {
        match self {
            Profile::Debian => "debian",
            Profile::AlpineLike => "alpine-like",
            Profile::AlpineHardened => "alpine-hardened",
        }
    }
}

impl fmt::Display for Profile {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Paths inside every guest.
pub mod paths {
    /// The project's `kexec` (static).
    pub const OURS: &str = "/sbin/kexec";
    /// kexec-tools' `kexec` (dynamically linked, with its libraries).
    pub const KEXEC_TOOLS: &str = "/usr/sbin/kexec-tools";
    pub const KERNEL: &str = "/boot/vmlinuz";
    pub const INITRAMFS: &str = "/boot/initramfs";
    pub const EXTRA_INITRD: &str = "/boot/extra.cpio";
    /// The file `EXTRA_INITRD` adds to the root when it is loaded as a second initrd.
    pub const EXTRA_MARKER_FILE: &str = "/etc/vm/extra-initrd";
}

/// A guest to boot: everything QEMU needs, as data.
#[derive(Debug, Clone)]
pub struct Guest {
    pub kernel: PathBuf,
    pub initrd: PathBuf,
    pub profile: Profile,
    /// Printed by the guest's console when it is ready (`KEXECRS-READY marker=…`).
    pub marker: String,
    /// Extra command-line words (e.g. `crashkernel=256M`).
    pub extra_cmdline: Vec<String>,
    pub memory_mb: u32,
    pub disk: Option<PathBuf>,
}

impl Guest {
    /// The command line for a boot with `marker`, as the test also passes it to a kexec load.
    ///
    /// `no_timer_check`: under TCG on a loaded host the kernel's IO-APIC timer check can miss
    /// its ticks and panic ("IO-APIC + timer doesn't work!"); seen here at load average 14.
    pub fn cmdline_with(&self, marker: &str) -> String {
        let mut c = format!(
            "console=ttyS0 panic=1 no_timer_check kexecrs.profile={} kexecrs.marker={marker}",
            self.profile
        );
        for e in &self.extra_cmdline {
            c.push(' ');
            c.push_str(e);
        }
        c
    }

    pub fn cmdline(&self) -> String {
        self.cmdline_with(&self.marker)
    }
}

/// Host paths of the guest's static binaries (built by [`build_binaries`]).
#[derive(Debug, Clone)]
pub struct Binaries {
    /// The project's `kexec`, or why it could not be built.
    pub ours: std::result::Result<PathBuf, String>,
    pub enosys_helper: PathBuf,
}

const TARGET: &str = "x86_64-unknown-linux-gnu";

fn cargo_static(package: &str) -> std::result::Result<(), String> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let out = duct::cmd!(
        cargo,
        "build",
        "--release",
        "--quiet",
        "--target",
        TARGET,
        "-p",
        package
    )
    .dir(crate::workspace_root())
    .env(
        "CARGO_TARGET_X86_64_UNKNOWN_LINUX_GNU_RUSTFLAGS",
        "-C target-feature=+crt-static",
    )
    .stderr_to_stdout()
    .stdout_capture()
    .unchecked()
    .run()
    .map_err(|e| format!("cannot run cargo: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        let text = String::from_utf8_lossy(&out.stdout);
        let tail: Vec<&str> = text.lines().rev().take(15).collect();
        Err(format!(
            "`cargo build --release --target {TARGET} -p {package}` (static) failed:\n{}",
            tail.into_iter().rev().collect::<Vec<_>>().join("\n")
        ))
    }
}

/// Builds the guest's static binaries (no-ops when up to date).
pub fn build_binaries() -> Result<Binaries> {
    let dir = crate::workspace_root()
        .join("target")
        .join(TARGET)
        .join("release");
    cargo_static("enosys-kexec-file").map_err(anyhow::Error::msg)?;
    let ours = cargo_static("kexec").map(|()| dir.join("kexec"));
    Ok(Binaries {
        ours,
        enosys_helper: dir.join("enosys-kexec-file"),
    })
}

/// Userland roles from the manifest.
#[derive(Debug, Clone)]
pub struct Userland {
    pub busybox: PathBuf,
    pub openrc: Vec<PathBuf>,
    pub kexec_tools: PathBuf,
    /// Extracted library packages kexec-tools needs (`lib:*` roles).
    pub libs: Vec<PathBuf>,
}

impl Userland {
    pub fn from_manifest(entries: &[UserlandEntry]) -> Result<Self> {
        // The guest userland is built from Debian's packages (glibc, `ldd`): after an Alpine
        // fetch the manifest also lists Alpine's (musl) packages for the same roles.
        let find = |role: &str| {
            entries
                .iter()
                .filter(|e| e.role == role && e.arch == "x86_64")
                .min_by_key(|e| e.source != "debian")
                .with_context(|| format!("the userland manifest has no `{role}` role; run `cargo xtask fetch --source debian`"))
        };
        Ok(Userland {
            busybox: find("busybox")?.path.clone(),
            openrc: vec![
                find("openrc")?.root.clone(),
                find("libeinfo")?.root.clone(),
                find("librc")?.root.clone(),
            ],
            kexec_tools: find("kexec-tools")?.path.clone(),
            libs: entries
                .iter()
                .filter(|e| {
                    e.role.starts_with("lib:") && e.arch == "x86_64" && e.source == "debian"
                })
                .map(|e| e.root.clone())
                .collect(),
        })
    }
}

/// Shared libraries a dynamic binary needs, as (path inside the guest, host file).
pub fn shared_libs(binary: &Path, lib_roots: &[PathBuf]) -> Result<Vec<(String, PathBuf)>> {
    let mut dirs = Vec::new();
    for r in lib_roots {
        for sub in [
            "lib/x86_64-linux-gnu",
            "usr/lib/x86_64-linux-gnu",
            "lib",
            "usr/lib",
        ] {
            let d = r.join(sub);
            if d.is_dir() {
                dirs.push(d.display().to_string());
            }
        }
    }
    let out = duct::cmd!("ldd", binary)
        .env("LD_LIBRARY_PATH", dirs.join(":"))
        .stderr_to_stdout()
        .unchecked()
        .read()
        .with_context(|| format!("cannot run ldd on {}", binary.display()))?;
    let mut libs = Vec::new();
    for line in out.lines() {
        let line = line.trim();
        if line.contains("not a dynamic executable") || line.contains("statically linked") {
            return Ok(libs);
        }
        if line.contains("not found") {
            bail!("{} needs {}, which neither the host nor the fetched packages provide; install it with apt-get", binary.display(), line);
        }
        let path = match line.split_once("=>") {
            Some((_, rhs)) => rhs.trim().split(' ').next().unwrap_or(""),
            None => line.split(' ').next().unwrap_or(""),
        };
        if !path.starts_with('/') {
            continue; // linux-vdso.so.1
        }
        let host = PathBuf::from(path);
        // A library from an extracted package goes where the package would install it.
        let guest = lib_roots
            .iter()
            .find_map(|r| {
                host.strip_prefix(r)
                    .ok()
                    .map(|rel| format!("/{}", rel.display()))
            })
            .unwrap_or_else(|| path.to_string());
        libs.push((guest, host.canonicalize().unwrap_or(host)));
    }
    Ok(libs)
}

/// The module names a `.ko` depends on (its `.modinfo` `depends=` entry).
fn module_depends(ko: &[u8]) -> Vec<String> {
    let key = b"depends=";
    ko.windows(key.len())
        .position(|w| w == key)
        .and_then(|i| {
            let rest = &ko[i + key.len()..];
            let end = rest.iter().position(|&b| b == 0)?;
            Some(String::from_utf8_lossy(&rest[..end]).into_owned())
        })
        .map(|s| {
            s.split(',')
                .filter(|m| !m.is_empty())
                .map(|m| m.replace('-', "_"))
                .collect()
        })
        .unwrap_or_default()
}

/// Module file suffixes as distributions ship them (Debian 12's 6.1 kernels: plain; its 6.12
/// backports: xz). Busybox's `insmod` passes the bytes to `init_module`, which wants them
/// plain, so compressed modules are unpacked on the host.
const MODULE_SUFFIXES: &[&str] = &[".ko", ".ko.xz", ".ko.zst", ".ko.gz"];

/// A module's plain ELF bytes, whatever its compression.
pub fn read_module(p: &Path) -> Result<Vec<u8>> {
    let raw = std::fs::read(p).with_context(|| format!("cannot read module {}", p.display()))?;
    let name = p.to_string_lossy();
    let mut out = Vec::new();
    if name.ends_with(".xz") {
        lzma_rs::xz_decompress(&mut &raw[..], &mut out)
            .map_err(|e| anyhow::anyhow!("{}: not a valid xz file: {e}", p.display()))?;
    } else if name.ends_with(".zst") {
        let mut d = ruzstd::decoding::StreamingDecoder::new(&raw[..])
            .map_err(|e| anyhow::anyhow!("{}: not a valid zstd file: {e}", p.display()))?;
        std::io::Read::read_to_end(&mut d, &mut out)
            .with_context(|| format!("{}: damaged zstd data", p.display()))?;
    } else if name.ends_with(".gz") {
        std::io::Read::read_to_end(&mut flate2::read::GzDecoder::new(&raw[..]), &mut out)
            .with_context(|| format!("{}: damaged gzip data", p.display()))?;
    } else {
        out = raw;
    }
    Ok(out)
}

/// A module to put in a guest: its path under the modules directory (always ending `.ko`)
/// and its plain bytes.
pub type Module = (String, Vec<u8>);

/// The modules needed for `roots`, dependencies first.
pub fn resolve_modules(modules_dir: &Path, roots: &[&str]) -> Result<Vec<Module>> {
    let mut by_name = BTreeMap::new();
    let mut stack = vec![modules_dir.join("kernel")];
    while let Some(d) = stack.pop() {
        let Ok(rd) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in rd.flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
                continue;
            }
            let Some(file) = p.file_name().and_then(|n| n.to_str()) else {
                continue;
            };
            if let Some(n) = MODULE_SUFFIXES
                .iter()
                .find_map(|suf| file.strip_suffix(suf))
            {
                by_name.insert(n.replace('-', "_"), p);
            }
        }
    }
    let mut order = Vec::new();
    let mut seen = BTreeSet::new();
    fn visit(
        n: &str,
        by: &BTreeMap<String, PathBuf>,
        base: &Path,
        seen: &mut BTreeSet<String>,
        order: &mut Vec<Module>,
    ) -> Result<()> {
        if !seen.insert(n.to_string()) {
            return Ok(());
        }
        let Some(p) = by.get(n) else {
            return Ok(()); // built into the kernel
        };
        let bytes = read_module(p)?;
        for d in module_depends(&bytes) {
            visit(&d, by, base, seen, order)?;
        }
        let rel = p.strip_prefix(base).unwrap_or(p).display().to_string();
        let rel = MODULE_SUFFIXES
            .iter()
            .skip(1)
            .find_map(|suf| rel.strip_suffix(suf).map(|r| format!("{r}.ko")))
            .unwrap_or(rel);
        order.push((rel, bytes));
        Ok(())
    }
    for r in roots {
        visit(r, &by_name, modules_dir, &mut seen, &mut order)?;
    }
    Ok(order)
}

/// What [`build_initramfs`] produced.
#[derive(Debug, Clone)]
pub struct Built {
    /// Userland layer + boot layer: what QEMU boots.
    pub initrd: PathBuf,
    /// The userland layer alone (also `/boot/initramfs` inside the guest).
    pub userland: PathBuf,
    pub size: u64,
}

/// A file a scenario adds to its guest (e.g. OpenRC services under test).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExtraFile {
    /// Absolute path inside the guest.
    pub path: String,
    pub contents: Vec<u8>,
    pub mode: u32,
}

/// Builds the initramfs for `kernel` into `out_dir`; `extra` files go into the userland layer
/// last (so they win, and a kexec'd boot of `/boot/initramfs` has them too).
pub fn build_initramfs(
    kernel: &KernelEntry,
    user: &Userland,
    bins: &Binaries,
    extra: &[ExtraFile],
    out_dir: &Path,
) -> Result<Built> {
    let mut a = Archive::new();
    for d in [
        "proc", "sys", "dev", "run", "tmp", "mnt", "root", "boot", "var/log", "etc/vm",
    ] {
        a.dir(d, 0o755)?;
    }
    a.char_dev("dev/console", 0o600, 5, 1)?;
    a.char_dev("dev/null", 0o666, 1, 3)?;

    // busybox and its applets (never a link named `busybox`: that would loop).
    a.file_from("bin/busybox", &user.busybox, 0o755)?;
    let list = duct::cmd!(&user.busybox, "--list-full")
        .read()
        .with_context(|| format!("cannot run {} --list-full", user.busybox.display()))?;
    for applet in list.lines().map(str::trim).filter(|l| !l.is_empty()) {
        if applet.rsplit('/').next() == Some("busybox") {
            continue;
        }
        a.symlink(applet, "/bin/busybox")?;
    }

    // OpenRC and its libraries (package trees; docs left out).
    for root in &user.openrc {
        for top in [
            "bin",
            "sbin",
            "lib",
            "etc",
            "usr/bin",
            "usr/sbin",
            "usr/lib",
            "usr/libexec",
        ] {
            let p = root.join(top);
            if p.is_dir() {
                a.tree_from(top, &p)?;
            }
        }
    }
    let openrc_bin = user.openrc[0].join("sbin/openrc");
    let mut libs = shared_libs(&openrc_bin, &user.openrc)?;
    for extra in [
        "bin/rc-status",
        "sbin/rc-service",
        "sbin/start-stop-daemon",
        "sbin/openrc-run",
    ] {
        let p = user.openrc[0].join(extra);
        if p.is_file() {
            libs.extend(shared_libs(&p, &user.openrc)?);
        }
    }

    // kexec-tools, the reference implementation, with its libraries.
    a.file_from(
        paths::KEXEC_TOOLS.trim_start_matches('/'),
        &user.kexec_tools,
        0o755,
    )?;
    libs.extend(shared_libs(&user.kexec_tools, &user.libs)?);
    for (guest, host) in libs {
        a.file_from(&guest, &host, 0o755)?;
    }

    // The project's kexec (static) and the alpine-like seccomp helper.
    if let Ok(ours) = &bins.ours {
        a.file_from(paths::OURS.trim_start_matches('/'), ours, 0o755)?;
    }
    a.file_from("sbin/enosys-kexec-file", &bins.enosys_helper, 0o755)?;

    // Modules for a virtio disk, in load order.
    if let Some(mdir) = kernel.modules_dir() {
        let mods = resolve_modules(&mdir, &["virtio_pci", "virtio_blk"])?;
        let mut list = String::new();
        for (rel, bytes) in mods {
            a.file(
                &format!("lib/modules/{}/{rel}", kernel.version),
                bytes,
                0o644,
            )?;
            list.push_str(&rel);
            list.push('\n');
        }
        a.file("etc/vm/modules", list, 0o644)?;
    }

    // The guest's own files last: they win over package files.
    let rootfs = crate::workspace_root().join("vm/rootfs");
    a.tree_from("", &rootfs)?;
    for f in extra {
        a.file(&f.path, f.contents.clone(), f.mode)?;
    }

    std::fs::create_dir_all(out_dir)
        .with_context(|| format!("cannot create {}", out_dir.display()))?;
    let userland = out_dir.join("userland.cpio");
    a.write_file(&userland)?;

    let mut extra = Archive::new();
    extra.file(
        paths::EXTRA_MARKER_FILE.trim_start_matches('/'),
        "loaded as a second initrd\n",
        0o644,
    )?;
    let extra_path = out_dir.join("extra.cpio");
    extra.write_file(&extra_path)?;

    let mut boot = Archive::new();
    boot.file_from(paths::KERNEL.trim_start_matches('/'), &kernel.kernel, 0o644)?;
    boot.file_from(paths::INITRAMFS.trim_start_matches('/'), &userland, 0o644)?;
    boot.file_from(
        paths::EXTRA_INITRD.trim_start_matches('/'),
        &extra_path,
        0o644,
    )?;
    let mut bytes = std::fs::read(&userland)?;
    boot.write_to(&mut bytes)?;
    let initrd = out_dir.join("initrd.cpio");
    std::fs::write(&initrd, &bytes)
        .with_context(|| format!("cannot write {}", initrd.display()))?;
    Ok(Built {
        initrd,
        userland,
        size: bytes.len() as u64,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn compressed_modules_are_unpacked_and_renamed() {
        let dir = tempfile::tempdir().unwrap();
        let kdir = dir.path().join("kernel/drivers");
        std::fs::create_dir_all(&kdir).unwrap();
        let base = b"\x7fELF\0depends=\0name=base\0".to_vec();
        let top = b"\x7fELF\0depends=base\0name=top\0".to_vec();
        let mut xz = Vec::new();
        lzma_rs::xz_compress(&mut &top[..], &mut xz).unwrap();
        std::fs::write(kdir.join("top.ko.xz"), xz).unwrap();
        std::fs::write(kdir.join("base.ko"), &base).unwrap();
        let mods = resolve_modules(dir.path(), &["top"]).unwrap();
        assert_eq!(
            mods,
            vec![
                ("kernel/drivers/base.ko".to_string(), base),
                ("kernel/drivers/top.ko".to_string(), top)
            ]
        );
    }

    #[test]
    fn modinfo_depends() {
        let ko = b"\x7fELF....license=GPL\0depends=virtio,virtio_ring\0name=virtio_blk\0";
        assert_eq!(module_depends(ko), vec!["virtio", "virtio_ring"]);
        assert!(module_depends(b"depends=\0").is_empty());
        assert!(module_depends(b"nothing").is_empty());
    }

    #[test]
    fn cmdline_carries_profile_and_marker() {
        let g = Guest {
            kernel: "k".into(),
            initrd: "i".into(),
            profile: Profile::AlpineLike,
            marker: "m1".into(),
            extra_cmdline: vec!["crashkernel=256M".into()],
            memory_mb: 1024,
            disk: None,
        };
        assert_eq!(
            g.cmdline(),
            "console=ttyS0 panic=1 no_timer_check kexecrs.profile=alpine-like kexecrs.marker=m1 crashkernel=256M"
        );
    }
}
