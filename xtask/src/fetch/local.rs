//! The local source: a kernel (and initramfs) the user built, registered for regression runs.
//!
//! The files are copied into the content-addressed store so the manifest keeps pointing at
//! exactly what was tested even if the user rebuilds in place. The kernel's version is read
//! from the bzImage's setup header. `config`/`system_map` are stored when found beside the
//! image (`config-V`/`.config`, `System.map-V`/`System.map`), else left empty.

use std::path::Path;

use anyhow::{bail, Context, Result};

use super::{FetchArgs, Fetched, KernelEntry, UserlandEntry};
use crate::cache::Cache;

fn store(cache: &Cache, what: &str, p: &Path) -> Result<std::path::PathBuf> {
    if !p.is_file() {
        bail!(
            "{}: {what} does not exist or is not a file; pass an existing path",
            p.display()
        );
    }
    let tmp = cache.tempdir()?;
    let copy = tmp.path().join("f");
    std::fs::copy(p, &copy).with_context(|| format!("cannot read {what} {}", p.display()))?;
    let key = format!("local:{}", crate::cache::sha256_file(&copy)?);
    Ok(cache.insert(&key, &copy, None)?)
}

/// The `uname -r` string a bzImage reports in its setup header's version string.
fn bzimage_version(image: &[u8]) -> Option<String> {
    // Setup header: `HdrS` at 0x202, kernel_version (offset from 0x200) at 0x20e.
    if image.get(0x202..0x206)? != b"HdrS" {
        return None;
    }
    let off = u16::from_le_bytes([*image.get(0x20e)?, *image.get(0x20f)?]) as usize + 0x200;
    let s = image.get(off..)?;
    let end = s.iter().position(|&b| b == 0 || b == b' ')?;
    String::from_utf8(s[..end].to_vec()).ok()
}

pub fn fetch(cache: &Cache, args: &FetchArgs) -> Result<Fetched> {
    let kernel = args
        .kernel
        .as_deref()
        .context("--source local needs --kernel PATH (and usually --initrd PATH)")?;
    let stored = store(cache, "the kernel", kernel)?;
    let bytes = std::fs::read(&stored)?;
    let version = bzimage_version(&bytes).unwrap_or_else(|| "unknown".into());
    // A kernel tree or /boot keeps its config and System.map beside the image; store them too
    // when present (the manifest's paths are then as stable as the kernel's).
    let dir = kernel.parent().unwrap_or(Path::new("."));
    let beside = |names: &[String]| names.iter().map(|n| dir.join(n)).find(|p| p.is_file());
    let config = match beside(&[format!("config-{version}"), ".config".into()]) {
        Some(p) => store(cache, "the kernel config", &p)?,
        None => std::path::PathBuf::new(),
    };
    let system_map = match beside(&[format!("System.map-{version}"), "System.map".into()]) {
        Some(p) => store(cache, "the System.map", &p)?,
        None => std::path::PathBuf::new(),
    };
    let mut out = Fetched::default();
    out.kernels.push(KernelEntry {
        name: "local".into(),
        source: "local".into(),
        arch: "x86_64".into(),
        version: version.clone(),
        package: kernel.display().to_string(),
        package_version: version,
        kernel: stored,
        config,
        system_map,
    });
    if let Some(initrd) = &args.initrd {
        let p = store(cache, "the initramfs", initrd)?;
        out.userland.push(UserlandEntry {
            role: "initramfs-local".into(),
            source: "local".into(),
            arch: "x86_64".into(),
            package: initrd.display().to_string(),
            package_version: String::new(),
            root: p.clone(),
            path: p,
        });
    }
    eprintln!(
        "fetch: registered local kernel {} as `local`",
        kernel.display()
    );
    Ok(out)
}
