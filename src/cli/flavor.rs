//! `--flavor`: Alpine's kernel naming, so a reboot script need not know it.
//!
//! Alpine installs each kernel flavor as `/boot/vmlinuz-<flavor>` with
//! `/boot/initramfs-<flavor>`, and CPU microcode as `/boot/<vendor>-ucode.img`
//! (which must come first). The running flavor is the last `-` field of
//! `uname -r` (`6.6.58-0-lts` → `lts`). After a kernel upgrade `/boot` holds
//! the new kernel while `/lib/modules` may already have lost the old modules
//! or not yet gained the new ones; booting a kernel without its modules
//! leaves a system without drivers, so that case is refused unless forced.

use std::path::PathBuf;

use crate::sysview::SystemView;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum Error {
    #[error("--flavor auto: cannot tell the running flavor (no readable /proc/sys/kernel/osrelease); name it, e.g. --flavor lts")]
    UnknownRelease,
    #[error("--flavor {flavor}: {path} does not exist; installed flavors: {installed}")]
    NoKernel {
        flavor: String,
        path: PathBuf,
        installed: String,
    },
    #[error("kernel {kernel} is version {version} but /lib/modules/{version} is missing: it would boot without its modules (finish the upgrade, or pass --force to boot it anyway)")]
    NoModules { kernel: PathBuf, version: String },
}

/// The files a flavor names (under the view's root).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Selection {
    pub kernel: PathBuf,
    pub initrds: Vec<PathBuf>,
}

/// The flavor of a kernel release string: its last `-` field.
pub fn flavor_of(release: &str) -> Option<&str> {
    release
        .rsplit_once('-')
        .map(|(_, f)| f)
        .filter(|f| !f.is_empty())
}

fn installed(view: &SystemView) -> String {
    let mut names: Vec<String> = std::fs::read_dir(view.path("boot"))
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            e.file_name()
                .to_str()
                .and_then(|n| n.strip_prefix("vmlinuz-"))
                .map(str::to_string)
        })
        .collect();
    names.sort();
    if names.is_empty() {
        "none in /boot".to_string()
    } else {
        names.join(", ")
    }
}

/// Resolves `flavor` (`auto` or a name) to the kernel, microcode and initramfs.
pub fn resolve(flavor: &str, view: &SystemView) -> Result<Selection, Error> {
    let flavor = if flavor == "auto" {
        let release = view.release().ok_or(Error::UnknownRelease)?;
        flavor_of(&release)
            .ok_or(Error::UnknownRelease)?
            .to_string()
    } else {
        flavor.to_string()
    };
    let kernel = view.path(&format!("boot/vmlinuz-{flavor}"));
    if !kernel.is_file() {
        return Err(Error::NoKernel {
            flavor,
            path: kernel,
            installed: installed(view),
        });
    }
    let mut ucode: Vec<PathBuf> = std::fs::read_dir(view.path("boot"))
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let name = e.file_name().to_str()?.to_string();
            name.ends_with("-ucode.img")
                .then(|| view.path("boot").join(name))
        })
        .collect();
    ucode.sort();
    let mut initrds = ucode;
    let initramfs = view.path(&format!("boot/initramfs-{flavor}"));
    if initramfs.is_file() {
        initrds.push(initramfs);
    }
    Ok(Selection { kernel, initrds })
}

/// Refuses a kernel whose modules are not installed.
pub fn check_modules(
    view: &SystemView,
    kernel: &std::path::Path,
    version: &str,
) -> Result<(), Error> {
    if view.path(&format!("lib/modules/{version}")).is_dir() {
        Ok(())
    } else {
        Err(Error::NoModules {
            kernel: kernel.to_owned(),
            version: version.to_string(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sysview::fake_root;

    #[test]
    fn flavor_is_the_last_release_field() {
        assert_eq!(flavor_of("6.6.58-0-lts"), Some("lts"));
        assert_eq!(flavor_of("6.1.0-56-cloud-amd64"), Some("amd64"));
        assert_eq!(flavor_of("6.6"), None);
    }

    #[test]
    fn auto_picks_microcode_first_then_initramfs() {
        let root = fake_root(&[
            ("proc/sys/kernel/osrelease", b"6.6.58-0-virt\n"),
            ("boot/vmlinuz-virt", b"k"),
            ("boot/vmlinuz-lts", b"k"),
            ("boot/initramfs-virt", b"i"),
            ("boot/intel-ucode.img", b"u"),
            ("boot/amd-ucode.img", b"u"),
        ])
        .unwrap();
        let sel = resolve("auto", &SystemView::new(root.path())).unwrap();
        let boot = root.path().join("boot");
        assert_eq!(sel.kernel, boot.join("vmlinuz-virt"));
        assert_eq!(
            sel.initrds,
            ["amd-ucode.img", "intel-ucode.img", "initramfs-virt"].map(|n| boot.join(n))
        );
    }

    #[test]
    fn missing_kernel_lists_installed_flavors() {
        let root = fake_root(&[("boot/vmlinuz-lts", b"k")]).unwrap();
        let err = resolve("edge", &SystemView::new(root.path())).unwrap_err();
        let msg = err.to_string();
        assert!(
            msg.starts_with("--flavor edge: ")
                && msg.ends_with("boot/vmlinuz-edge does not exist; installed flavors: lts"),
            "{msg}"
        );
        assert_eq!(
            resolve("auto", &SystemView::new(root.path())),
            Err(Error::UnknownRelease)
        );
    }

    #[test]
    fn modules_must_exist() {
        let root = fake_root(&[("lib/modules/6.6.58-0-lts/modules.dep", b"")]).unwrap();
        let view = SystemView::new(root.path());
        let k = std::path::Path::new("/boot/vmlinuz-lts");
        assert!(check_modules(&view, k, "6.6.58-0-lts").is_ok());
        let err = check_modules(&view, k, "6.6.60-0-lts").unwrap_err();
        assert!(
            err.to_string()
                .contains("/lib/modules/6.6.60-0-lts is missing"),
            "{err}"
        );
    }
}
