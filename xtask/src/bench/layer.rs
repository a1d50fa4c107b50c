//! The initramfs layers the reboot rows add to the standard test guest: which OpenRC services
//! are installed and enabled, and which `kexec` they call.
//!
//! A layer is a newc archive appended to the guest's initramfs (later files win). The project's
//! services come from `openrc/`; the Alpine wiki's from `vm/wiki/` (restored verbatim, shared
//! with the OpenRC scenarios).

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};

use super::rows::Flow;
use crate::cpio::Archive;
use crate::guest::paths;

fn read(path: &Path) -> Result<Vec<u8>> {
    std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))
}

/// Installs service `name` from `script`, enabled in `runlevel` (what `rc-update add` does).
fn service(a: &mut Archive, name: &str, script: Vec<u8>, runlevel: &str) -> Result<()> {
    a.file(&format!("etc/init.d/{name}"), script, 0o755)?;
    a.symlink(
        &format!("etc/runlevels/{runlevel}/{name}"),
        &format!("/etc/init.d/{name}"),
    )?;
    Ok(())
}

/// Writes the layer for `flow` into `dir`; `None` for the firmware flows, which run the plain
/// guest.
pub fn build(flow: Flow, dir: &Path) -> Result<Option<PathBuf>> {
    let root = crate::workspace_root();
    let mut a = Archive::new();
    // Both flows load the guest's own kernel and initramfs, with the running command line.
    let files = format!(
        "BOOTPART=/boot\nKERNEL={}\nINITRD={}\n",
        paths::KERNEL.trim_start_matches("/boot/"),
        paths::INITRAMFS.trim_start_matches("/boot/")
    );
    match flow {
        Flow::Wiki => {
            let wiki = root.join("vm/wiki");
            let (load, exec) = (
                read(&wiki.join("kexec-load"))?,
                read(&wiki.join("kexec-exec"))?,
            );
            service(&mut a, "kexec-load", load, "default")?;
            service(&mut a, "kexec-exec", exec, "shutdown")?;
            // The wiki edits these variables in the script; conf.d is OpenRC's place for them.
            a.file("etc/conf.d/kexec-load", files, 0o644)?;
            // The wiki runs `kexec` from the PATH: make that kexec-tools' here.
            a.symlink(paths::OURS.trim_start_matches('/'), paths::KEXEC_TOOLS)?;
        }
        Flow::Services | Flow::ServicesPreload => {
            let o = root.join("openrc");
            service(
                &mut a,
                "kexec-load",
                read(&o.join("kexec-load"))?,
                "default",
            )?;
            service(
                &mut a,
                "kexec-exec",
                read(&o.join("kexec-exec"))?,
                "shutdown",
            )?;
            let mut conf = read(&o.join("kexec.confd"))?;
            // Busybox init runs the same shutdown for reboot and poweroff, so the services
            // cannot see a reboot: use kexec on every shutdown, as the wiki does.
            conf.extend_from_slice(b"\n# cargo xtask bench\n");
            conf.extend_from_slice(files.as_bytes());
            conf.extend_from_slice(b"KEXEC_ON=always\n");
            if flow == Flow::ServicesPreload {
                conf.extend_from_slice(b"KEXEC_PRELOAD=yes\n");
            }
            a.file("etc/conf.d/kexec", conf, 0o644)?;
        }
        Flow::SeaBios | Flow::Ovmf => return Ok(None),
    }
    std::fs::create_dir_all(dir)?;
    let path = dir.join(format!("bench-{flow:?}.cpio").to_lowercase());
    a.write_file(&path)?;
    Ok(Some(path))
}
