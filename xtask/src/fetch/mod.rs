//! `cargo xtask fetch`: fill the cache with real kernels and guest userland.
//!
//! Every source fills the same roles (kernels, busybox, OpenRC and its libraries, the reference
//! kexec-tools) and writes two manifests at the cache root that the other tasks and tests read:
//! `kernels.json` (schema fixed in TEAM.md) and `userland.json` ([`UserlandEntry`]).
//! Sources: `debian` (apt's own configuration), `alpine` (a mirror's release index, every file
//! verified against its published checksum), `local` (files the user built), `auto` (Alpine when
//! its mirror answers quickly, else Debian).

pub mod alpine;
pub mod debian;
pub mod debver;
pub mod http;
pub mod local;

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};

use crate::cache::Cache;

/// One entry of `<cache>/kernels.json` (the schema other helpers' tests read: do not change).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KernelEntry {
    pub name: String,
    pub source: String,
    pub arch: String,
    /// `uname -r` of this kernel.
    pub version: String,
    pub package: String,
    pub package_version: String,
    pub kernel: PathBuf,
    pub config: PathBuf,
    pub system_map: PathBuf,
}

impl KernelEntry {
    /// The directory of this kernel's modules, when its package ships them next to the kernel
    /// (`<root>/boot/vmlinuz-V` → `<root>/lib/modules/V`).
    pub fn modules_dir(&self) -> Option<PathBuf> {
        let root = self.kernel.parent()?.parent()?;
        let d = root.join("lib/modules").join(&self.version);
        d.is_dir().then_some(d)
    }
}

/// One entry of `<cache>/userland.json`: a guest userland role filled from a package.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UserlandEntry {
    /// `busybox`, `openrc`, `libeinfo`, `librc`, `kexec-tools`, or for Alpine netboot
    /// `initramfs-<flavor>` / `modloop-<flavor>`.
    pub role: String,
    pub source: String,
    pub arch: String,
    pub package: String,
    pub package_version: String,
    /// The extracted package tree.
    pub root: PathBuf,
    /// The role's main file inside `root` (e.g. `bin/busybox`), or `root` itself.
    pub path: PathBuf,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Source {
    Auto,
    Alpine,
    Debian,
    Local,
}

/// What `cargo xtask fetch` was asked for.
#[derive(Debug, Clone, clap::Args)]
pub struct FetchArgs {
    /// Where kernels and userland come from.
    #[arg(long, value_enum, default_value = "auto")]
    pub source: Source,
    /// Alpine branch (`latest-stable`, `v3.23`, …) or Debian kernel series (`6.1`, `6.12`).
    #[arg(long)]
    pub release: Vec<String>,
    /// Alpine kernel flavor (`lts`, `virt`).
    #[arg(long)]
    pub flavor: Vec<String>,
    /// Architecture(s): `x86_64` (= amd64), `aarch64` (= arm64).
    #[arg(long)]
    pub arch: Vec<String>,
    /// Alpine mirror URL: the directory holding the branches (`<URL>/latest-stable/…`).
    /// Default: `KEXEC_RS_ALPINE_MIRROR`, else the system's `/etc/apk/repositories`.
    #[arg(long)]
    pub mirror: Option<String>,
    /// `--source local`: the kernel image to register.
    #[arg(long)]
    pub kernel: Option<PathBuf>,
    /// `--source local`: its initramfs.
    #[arg(long)]
    pub initrd: Option<PathBuf>,
    /// Seconds `auto` waits for the Alpine mirror before choosing Debian.
    #[arg(long, default_value = "4")]
    pub probe_timeout: u64,
    /// Directory of Alpine's signing keys (`<name>.rsa.pub`) that `APKINDEX.tar.gz` must be
    /// signed with. Default: `KEXEC_RS_ALPINE_KEYS`, else `/etc/apk/keys` when it exists.
    #[arg(long)]
    pub alpine_keys: Option<PathBuf>,
}

impl FetchArgs {
    /// What the harness fetches on its own when the cache lacks it: Debian's x86_64 kernels and
    /// guest userland (the source every machine here can reach).
    pub fn debian_x86_64() -> Self {
        FetchArgs {
            source: Source::Debian,
            release: vec![],
            flavor: vec![],
            arch: vec!["x86_64".into()],
            mirror: None,
            kernel: None,
            initrd: None,
            probe_timeout: 4,
            alpine_keys: None,
        }
    }
}

/// Normalizes an architecture name to the kernel's spelling (`x86_64`, `aarch64`).
pub fn kernel_arch(a: &str) -> Option<&'static str> {
    match a {
        "x86_64" | "amd64" | "x86-64" => Some("x86_64"),
        "aarch64" | "arm64" => Some("aarch64"),
        _ => None,
    }
}

/// The result of a fetch: what went into the manifests.
#[derive(Debug, Default)]
pub struct Fetched {
    pub kernels: Vec<KernelEntry>,
    pub userland: Vec<UserlandEntry>,
}

/// Runs a fetch and merges its results into the cache's manifests.
pub fn run(cache: &Cache, args: &FetchArgs) -> Result<Fetched> {
    let fetched = match args.source {
        Source::Debian => debian::fetch(cache, args)?,
        Source::Alpine => alpine::fetch(cache, args)?,
        Source::Local => local::fetch(cache, args)?,
        Source::Auto => {
            let mirror = args.mirror.clone().or_else(alpine::configured_mirror);
            match alpine::probe(mirror.as_deref(), Duration::from_secs(args.probe_timeout)) {
                Ok(m) => {
                    eprintln!(
                        "fetch: using Alpine: its mirror {m} answered within {} s",
                        args.probe_timeout
                    );
                    let mut a = args.clone();
                    a.mirror = Some(m);
                    alpine::fetch(cache, &a)?
                }
                Err(why) => {
                    eprintln!("fetch: using Debian packages through apt, because the Alpine mirror is not usable: {why}");
                    debian::fetch(cache, args)?
                }
            }
        }
    };
    merge_manifests(cache, &fetched)?;
    Ok(fetched)
}

fn merge_manifests(cache: &Cache, f: &Fetched) -> Result<()> {
    let mut kernels = read_kernels(cache.root()).unwrap_or_default();
    kernels.retain(|k| !f.kernels.iter().any(|n| n.name == k.name));
    kernels.extend(f.kernels.iter().cloned());
    kernels.sort_by(|a, b| a.name.cmp(&b.name));
    cache.write_manifest("kernels.json", &kernels)?;
    let mut user = read_userland(cache.root()).unwrap_or_default();
    user.retain(|u| {
        !f.userland
            .iter()
            .any(|n| n.role == u.role && n.source == u.source && n.arch == u.arch)
    });
    user.extend(f.userland.iter().cloned());
    user.sort_by(|a, b| (&a.source, &a.role).cmp(&(&b.source, &b.role)));
    cache.write_manifest("userland.json", &user)?;
    Ok(())
}

/// Reads `<root>/kernels.json`.
pub fn read_kernels(root: &Path) -> Result<Vec<KernelEntry>> {
    let p = root.join("kernels.json");
    let b = std::fs::read(&p)
        .with_context(|| format!("cannot read {}: run `cargo xtask fetch` first", p.display()))?;
    serde_json::from_slice(&b).with_context(|| {
        format!(
            "{} is not a valid kernels manifest; re-run `cargo xtask fetch`",
            p.display()
        )
    })
}

/// Reads `<root>/userland.json`.
pub fn read_userland(root: &Path) -> Result<Vec<UserlandEntry>> {
    let p = root.join("userland.json");
    let b = std::fs::read(&p)
        .with_context(|| format!("cannot read {}: run `cargo xtask fetch` first", p.display()))?;
    serde_json::from_slice(&b).with_context(|| {
        format!(
            "{} is not a valid userland manifest; re-run `cargo xtask fetch`",
            p.display()
        )
    })
}
