//! Host tools the VM tests need, checked (and installed with apt-get on request).
//!
//! A missing tool is reported by name with the package that provides it and the command to
//! install it, instead of a later "No such file or directory" from deep inside a test.

use anyhow::{bail, Context, Result};

/// (program, Debian package).
pub const TOOLS: &[(&str, &str)] = &[
    ("qemu-system-x86_64", "qemu-system-x86"),
    ("busybox", "busybox-static"),
    ("cpio", "cpio"),
    ("dpkg-deb", "dpkg"),
    ("apt-get", "apt"),
    ("mkfs.ext4", "e2fsprogs"),
    ("ldd", "libc-bin"),
];

fn on_path(prog: &str) -> bool {
    std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).any(|d| d.join(prog).is_file()))
        .unwrap_or(false)
}

/// The (program, package) pairs that are missing.
pub fn missing() -> Vec<(&'static str, &'static str)> {
    TOOLS.iter().copied().filter(|(p, _)| !on_path(p)).collect()
}

/// Whether cargo-nextest is installed (it is a cargo subcommand, not a Debian package).
pub fn have_nextest() -> bool {
    duct::cmd!("cargo", "nextest", "--version")
        .stdout_null()
        .stderr_null()
        .unchecked()
        .run()
        .is_ok_and(|o| o.status.success())
}

/// Checks the tools; with `install`, installs the missing packages (idempotent: nothing is run
/// when everything is present).
pub fn ensure(install: bool) -> Result<()> {
    if !have_nextest() {
        if !install {
            bail!(
                "cargo-nextest is missing; install it with `cargo install --locked cargo-nextest`"
            );
        }
        eprintln!("tools: installing cargo-nextest");
        duct::cmd!("cargo", "install", "--locked", "cargo-nextest")
            .stdout_to_stderr()
            .run()
            .context("`cargo install --locked cargo-nextest` failed")?;
    }
    let miss = missing();
    if miss.is_empty() {
        return Ok(());
    }
    let mut pkgs: Vec<&str> = miss.iter().map(|(_, p)| *p).collect();
    pkgs.dedup();
    let list = miss
        .iter()
        .map(|(p, k)| format!("{p} (package {k})"))
        .collect::<Vec<_>>()
        .join(", ");
    if !install {
        bail!("missing host tools: {list}; install them with `apt-get install -y {}` or run `cargo xtask tools --install`", pkgs.join(" "));
    }
    eprintln!("tools: installing {}", pkgs.join(" "));
    apt_install(&pkgs)?;
    let still = missing();
    if !still.is_empty() {
        bail!("still missing after apt-get install: {still:?}");
    }
    Ok(())
}

/// Checks that `file` exists; with `install`, installs `package` with apt-get when it does not
/// (for data files such as UEFI firmware images, which are not programs on the PATH).
pub fn ensure_file(file: &str, package: &str, install: bool) -> Result<()> {
    if std::path::Path::new(file).is_file() {
        return Ok(());
    }
    if !install {
        bail!("{file} is missing; install it with `apt-get install -y {package}`");
    }
    eprintln!("tools: installing {package} (for {file})");
    apt_install(&[package])?;
    if !std::path::Path::new(file).is_file() {
        bail!("{file} is still missing after `apt-get install {package}`");
    }
    Ok(())
}

/// `apt-get install`, refreshing the package lists once if the first attempt fails (a fresh
/// machine or container often has none).
fn apt_install(pkgs: &[&str]) -> Result<()> {
    let mut args = vec!["install", "-y", "--no-install-recommends"];
    args.extend(pkgs.iter().copied());
    if duct::cmd("apt-get", &args).stdout_to_stderr().run().is_ok() {
        return Ok(());
    }
    duct::cmd!("apt-get", "update")
        .stdout_to_stderr()
        .run()
        .context("`apt-get update` failed")?;
    duct::cmd("apt-get", &args)
        .stdout_to_stderr()
        .run()
        .with_context(|| format!("`apt-get {}` failed", args.join(" ")))?;
    Ok(())
}
