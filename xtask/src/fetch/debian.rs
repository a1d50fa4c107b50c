//! The Debian source: kernels and userland from Debian packages via the system's own apt.
//!
//! Candidates are resolved from apt's lists (`apt-cache`), the newest by Debian version
//! ordering; the `.deb` is fetched with `apt-get download` (which checks it against the signed
//! index) and unpacked with `dpkg-deb -x`. Packages are cached by name, architecture and exact
//! version, so a re-run downloads nothing until the archive publishes a newer version.

use std::path::PathBuf;

use anyhow::{bail, Context, Result};

use super::{debver, FetchArgs, Fetched, KernelEntry, UserlandEntry};
use crate::cache::Cache;

/// A kernel series to resolve: apt's regex for package names and the kernel architecture.
struct KernelSpec {
    name: &'static str,
    series: &'static str,
    arch: &'static str,
    deb_arch: &'static str,
    pattern: &'static str,
}

const KERNELS: &[KernelSpec] = &[
    KernelSpec {
        name: "debian-6.1-cloud-amd64",
        series: "6.1",
        arch: "x86_64",
        deb_arch: "amd64",
        pattern: r"^linux-image-6\.1\.0-[0-9]+-cloud-amd64$",
    },
    KernelSpec {
        name: "debian-6.12-cloud-amd64",
        series: "6.12",
        arch: "x86_64",
        deb_arch: "amd64",
        pattern: r"^linux-image-6\.12\.[0-9]+\+deb12-cloud-amd64$",
    },
    KernelSpec {
        name: "debian-6.1-arm64",
        series: "6.1",
        arch: "aarch64",
        deb_arch: "arm64",
        pattern: r"^linux-image-6\.1\.0-[0-9]+-arm64$",
    },
];

/// Userland roles: (role, package, main file inside the package).
const USERLAND: &[(&str, &str, &str)] = &[
    ("busybox", "busybox-static", "bin/busybox"),
    ("openrc", "openrc", "sbin/openrc"),
    ("libeinfo", "libeinfo1", ""),
    ("librc", "librc1", ""),
    ("kexec-tools", "kexec-tools", "sbin/kexec"),
];

fn apt_cache(args: &[&str]) -> Result<String> {
    duct::cmd("apt-cache", args)
        .stderr_null()
        .read()
        .with_context(|| {
            format!(
                "`apt-cache {}` failed; is this a Debian system with apt?",
                args.join(" ")
            )
        })
}

/// Makes sure apt can answer: the arm64 architecture is known when needed, and the lists exist.
fn ensure_apt(need_arm64: bool) -> Result<()> {
    let mut update = false;
    if need_arm64 {
        let foreign = duct::cmd!("dpkg", "--print-foreign-architectures")
            .read()
            .context("dpkg is missing")?;
        if !foreign.lines().any(|l| l.trim() == "arm64") {
            eprintln!("fetch: adding the arm64 architecture to dpkg (for the arm64 kernel used in parsing tests)");
            duct::cmd!("dpkg", "--add-architecture", "arm64")
                .run()
                .context("`dpkg --add-architecture arm64` failed (are you root?)")?;
            update = true;
        }
    }
    let policy = apt_cache(&["policy", "busybox-static"])?;
    if !policy.contains("Candidate:") || policy.contains("Candidate: (none)") {
        update = true;
    }
    if need_arm64 && apt_cache(&["show", "busybox-static:arm64"]).is_err() {
        update = true;
    }
    if update {
        eprintln!("fetch: running `apt-get update` (package lists missing)");
        duct::cmd!("apt-get", "update")
            .stdout_to_stderr()
            .run()
            .context("`apt-get update` failed (are you root, is the archive reachable?)")?;
    }
    Ok(())
}

/// `apt-cache show` of every version of `names` on `deb_arch`, in one call (each call parses
/// all package lists); unknown names just give no record.
fn apt_show(names: &[&str], deb_arch: &str) -> String {
    let mut args = vec!["show".to_string()];
    args.extend(names.iter().map(|n| format!("{n}:{deb_arch}")));
    duct::cmd("apt-cache", &args)
        .stderr_null()
        .unchecked()
        .read()
        .unwrap_or_default()
}

/// All (package, version) pairs apt knows for `names` on `deb_arch`, in one apt-cache call
/// (each call parses all package lists, so one per name would take a minute).
fn versions(names: &[&str], deb_arch: &str) -> Vec<(String, String)> {
    if names.is_empty() {
        return Vec::new();
    }
    let text = apt_show(names, deb_arch);
    let mut out = Vec::new();
    let mut package = String::new();
    for l in text.lines() {
        if let Some(p) = l.strip_prefix("Package: ") {
            package = p.trim().to_string();
        } else if let Some(v) = l.strip_prefix("Version: ") {
            out.push((package.clone(), v.trim().to_string()));
        }
    }
    out
}

/// The newest (package, version) whose name matches apt's `pattern`.
fn newest(pattern: &str, deb_arch: &str) -> Result<(String, String)> {
    newest_n(pattern, deb_arch, 1)?
        .pop()
        .with_context(|| format!("apt knows no package matching {pattern} for {deb_arch}; check /etc/apt/sources.list and run `apt-get update`"))
}

/// The `n` newest packages of a series (names matching apt's `pattern`, e.g.
/// `^linux-image-6\.1\.0-[0-9]+-cloud-amd64$`), newest first, as (package, version): each
/// ABI of a Debian kernel is a package of its own, so "the two newest 6.1 kernels" are two
/// package names.
pub fn newest_n(pattern: &str, deb_arch: &str, n: usize) -> Result<Vec<(String, String)>> {
    let names = apt_cache(&["search", "--names-only", pattern])?;
    let names: Vec<&str> = names
        .lines()
        .filter_map(|l| l.split(" - ").next().map(str::trim))
        .collect();
    Ok(debver::newest_n(&versions(&names, deb_arch), n))
}

/// Makes sure apt's package lists are there (runs `apt-get update` when they are not).
pub fn ensure_lists() -> Result<()> {
    ensure_apt(false)
}

/// The library packages `package` needs, recursively (first alternative of each dependency;
/// libc6 and non-library packages are left to the host, which runs the same release).
fn lib_closure(package: &str, deb_arch: &str) -> Vec<(String, String)> {
    let mut seen: Vec<(String, String)> = Vec::new();
    let mut frontier = vec![package.to_string()];
    while !frontier.is_empty() {
        let names: Vec<&str> = frontier.iter().map(String::as_str).collect();
        let text = apt_show(&names, deb_arch);
        let mut next = Vec::new();
        // Records of all versions: keep the newest record per package.
        let mut best: std::collections::BTreeMap<String, (String, String)> = Default::default();
        for rec in text.split("\n\n") {
            let field = |f: &str| {
                rec.lines()
                    .find_map(|l| l.strip_prefix(f))
                    .map(|v| v.trim().to_string())
            };
            let (Some(p), Some(v)) = (field("Package: "), field("Version: ")) else {
                continue;
            };
            let deps = field("Depends: ").unwrap_or_default();
            let newer = best
                .get(&p)
                .is_none_or(|(bv, _)| debver::compare(&v, bv).is_gt());
            if newer {
                best.insert(p, (v, deps));
            }
        }
        for (p, (v, deps)) in best {
            if p != package && !seen.iter().any(|(s, _)| *s == p) {
                seen.push((p.clone(), v));
            }
            for d in deps.split(',') {
                let first = d
                    .split('|')
                    .next()
                    .unwrap_or("")
                    .split_whitespace()
                    .next()
                    .unwrap_or("");
                let first = first.split(':').next().unwrap_or("");
                if first.starts_with("lib")
                    && first != "libc6"
                    && first != package
                    && !seen.iter().any(|(s, _)| s == first)
                    && !next.iter().any(|n: &String| n == first)
                {
                    next.push(first.to_string());
                }
            }
        }
        frontier = next;
    }
    seen
}

/// Downloads (or finds in the cache) and extracts `name:arch=version`; returns the tree.
fn get(cache: &Cache, name: &str, deb_arch: &str, version: &str) -> Result<PathBuf> {
    let key = format!("deb:{name}:{deb_arch}={version}");
    let blob = match cache.lookup(&key)? {
        Some(p) => {
            eprintln!("fetch: {name} {version} ({deb_arch}) already cached");
            p
        }
        None => {
            eprintln!("fetch: downloading {name} {version} ({deb_arch}) with apt-get download");
            let tmp = cache.tempdir()?;
            // apt downloads as its unprivileged `_apt` user: let it write into the directory.
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(tmp.path(), std::fs::Permissions::from_mode(0o777))?;
            let spec = format!("{name}:{deb_arch}={version}");
            duct::cmd!("apt-get", "download", "-q", &spec)
                .dir(tmp.path())
                .stdout_to_stderr()
                .run()
                .with_context(|| format!("`apt-get download {spec}` failed"))?;
            let deb = std::fs::read_dir(tmp.path())?
                .filter_map(|e| e.ok().map(|e| e.path()))
                .find(|p| p.extension().is_some_and(|x| x == "deb"))
                .with_context(|| format!("`apt-get download {spec}` produced no .deb"))?;
            cache.insert(&key, &deb, None)?
        }
    };
    let sha = blob
        .file_name()
        .and_then(|n| n.to_str())
        .context("cache blob without a name")?
        .to_string();
    cache.extracted(&sha, |dir| {
        duct::cmd!("dpkg-deb", "-x", &blob, dir)
            .run()
            .with_context(|| {
                format!(
                    "`dpkg-deb -x {}` failed: the cached package is damaged; delete it and re-run",
                    blob.display()
                )
            })?;
        Ok(())
    })
}

fn wanted_arch(args: &FetchArgs, arch: &str) -> bool {
    args.arch.is_empty()
        || args
            .arch
            .iter()
            .any(|a| super::kernel_arch(a) == Some(arch))
}

/// Fetches the Debian kernels and userland.
pub fn fetch(cache: &Cache, args: &FetchArgs) -> Result<Fetched> {
    for a in &args.arch {
        super::kernel_arch(a).with_context(|| {
            format!("unknown architecture {a:?}: use x86_64 (amd64) or aarch64 (arm64)")
        })?;
    }
    let specs: Vec<&KernelSpec> = KERNELS
        .iter()
        .filter(|k| args.release.is_empty() || args.release.iter().any(|r| r == k.series))
        .filter(|k| wanted_arch(args, k.arch))
        .collect();
    if specs.is_empty() {
        bail!("no Debian kernel matches --release {:?} --arch {:?}: known series are 6.1 and 6.12 (x86_64), 6.1 (aarch64)", args.release, args.arch);
    }
    ensure_apt(specs.iter().any(|k| k.deb_arch == "arm64"))?;
    let mut out = Fetched::default();
    for k in specs {
        let (package, package_version) = newest(k.pattern, k.deb_arch)?;
        out.kernels.push(kernel(
            cache,
            k.name,
            k.arch,
            k.deb_arch,
            &package,
            &package_version,
        )?);
    }
    let names: Vec<&str> = USERLAND.iter().map(|u| u.1).collect();
    let known = versions(&names, "amd64");
    for (role, package, main) in USERLAND {
        let version = known
            .iter()
            .filter(|(p, _)| p == package)
            .map(|(_, v)| v)
            .max_by(|a, b| debver::compare(a, b))
            .cloned()
            .with_context(|| {
                format!("apt knows no version of {package} for amd64; run `apt-get update`")
            })?;
        let root = get(cache, package, "amd64", &version)?;
        let path = if main.is_empty() {
            root.clone()
        } else {
            existing(root.join(main))?
        };
        out.userland.push(UserlandEntry {
            role: role.to_string(),
            source: "debian".into(),
            arch: "x86_64".into(),
            package: package.to_string(),
            package_version: version,
            root,
            path,
        });
    }
    // kexec-tools is linked against Xen's libraries (and they against others): fetch the
    // library closure so the guest gets every shared object `ldd` asks for.
    for (package, version) in lib_closure("kexec-tools", "amd64") {
        let root = get(cache, &package, "amd64", &version)?;
        out.userland.push(UserlandEntry {
            role: format!("lib:{package}"),
            source: "debian".into(),
            arch: "x86_64".into(),
            package,
            package_version: version,
            root: root.clone(),
            path: root,
        });
    }
    Ok(out)
}

/// Downloads (or finds in the cache) the kernel package `package` at `package_version` and
/// describes it as a manifest entry named `name`.
pub fn kernel(
    cache: &Cache,
    name: &str,
    arch: &str,
    deb_arch: &str,
    package: &str,
    package_version: &str,
) -> Result<KernelEntry> {
    let tree = get(cache, package, deb_arch, package_version)?;
    let version = package.trim_start_matches("linux-image-").to_string();
    let boot = tree.join("boot");
    let entry = KernelEntry {
        name: name.to_string(),
        source: "debian".into(),
        arch: arch.into(),
        kernel: existing(boot.join(format!("vmlinuz-{version}")))?,
        config: existing(boot.join(format!("config-{version}")))?,
        system_map: existing(boot.join(format!("System.map-{version}")))?,
        version,
        package: package.to_string(),
        package_version: package_version.to_string(),
    };
    eprintln!(
        "fetch: kernel {} = {} {} -> {}",
        entry.name,
        entry.package,
        entry.package_version,
        entry.kernel.display()
    );
    Ok(entry)
}

fn existing(p: PathBuf) -> Result<PathBuf> {
    if p.exists() {
        Ok(p)
    } else {
        bail!(
            "the package was expected to contain {}, but it does not; the package layout changed",
            p.display()
        )
    }
}
