//! What the matrix learns about a kernel before booting it: its header facts (compared with a
//! reviewed insta snapshot) and its config facts (which kexec features it was built with).
//!
//! The header check is the first gate: a truncated, corrupt or foreign image fails its row
//! here with the image library's one-line reason, without a guest ever being started. The
//! snapshot holds only the layout that matters to a loader, with version-specific numbers
//! redacted (as `tests/image_snapshots.rs` does for the cached kernels), so every kernel of a
//! series shares one snapshot and a new kernel whose layout changed shows up as a diff to
//! review (`--accept` takes it), not as a silent pass.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use kexec::image::{self, Image};
use serde::Serialize;
use serde_json::{json, Value};

/// The header facts of a kernel that can be booted in an x86_64 guest.
#[derive(Debug, Clone, Serialize)]
pub struct Header {
    /// The facts as snapshotted (redacted).
    pub structure: Value,
    /// The kernel's own version string (`uname -r` and build).
    pub kernel_version: Option<String>,
    pub protocol: String,
    pub compression: Option<String>,
}

/// Reads and inspects `kernel`; `shown` is the path to name in errors (the user's, not the
/// cache's). An error is one line: file, what is wrong, what to do.
pub fn header(kernel: &Path, shown: &Path) -> Result<Header, String> {
    let bytes = std::fs::read(kernel).map_err(|e| {
        format!(
            "{}: cannot read the kernel: {e}; check the path",
            shown.display()
        )
    })?;
    let report = image::inspect_bytes(&bytes)
        .map_err(|e| format!("{}: {e}; {}", shown.display(), e.advice()))?;
    let z = match &report.image {
        Image::Bzimage(z) => z,
        other => {
            return Err(format!(
                "{}: is a {} image, not an x86 bzImage; the matrix boots x86_64 guests only",
                shown.display(),
                other.format_name()
            ))
        }
    };
    if z.payload.is_none() {
        return Err(format!(
            "{}: the bzImage has no payload the parser could find; rebuild or re-download it",
            shown.display()
        ));
    }
    let compression = z
        .payload
        .as_ref()
        .and_then(|p| p.compression)
        .map(|c| serde_json::to_value(c).ok())
        .and_then(|v| v.and_then(|v| v.as_str().map(String::from)));
    let h = &z.header;
    let structure = json!({
        "format": "bzimage",
        "kernel_version": "[version]",
        "protocol": z.protocol,
        "setup_sects": h.setup_sects,
        "loadflags": h.loadflags,
        "xloadflags": h.xloadflags,
        "relocatable": h.relocatable_kernel,
        "kernel_alignment": h.kernel_alignment,
        "pref_address": h.pref_address,
        "cmdline_size": h.cmdline_size,
        "initrd_addr_max": h.initrd_addr_max,
        "init_size": "[size]",
        "payload_compression": compression,
        "kernel_info": z.kernel_info,
        "pe_machine": z.efi_stub.as_ref().map(|p| p.machine.clone()),
        "pe_sections": z.efi_stub.as_ref().map(|p| p.sections.iter().map(|s| s.name.clone()).collect::<Vec<_>>()),
        "signed": z.efi_stub.as_ref().map(|p| p.signed),
    });
    Ok(Header {
        structure,
        kernel_version: z.kernel_version.clone(),
        protocol: z.protocol.clone(),
        compression,
    })
}

/// Where the snapshots live and whether changes are accepted.
#[derive(Debug, Clone)]
pub struct Snapshots {
    pub dir: PathBuf,
    pub accept: bool,
}

impl Snapshots {
    pub fn in_workspace(accept: bool) -> Snapshots {
        Snapshots {
            dir: crate::workspace_root().join("vm/matrix-snapshots"),
            accept,
        }
    }

    fn file(&self, name: &str) -> PathBuf {
        self.dir.join(format!("{name}.snap"))
    }

    /// Compares `h` with the snapshot `name` through insta. A new or changed snapshot fails
    /// (insta leaves `<name>.snap.new` beside it, for `cargo insta review` or a plain diff,
    /// which is also printed to stderr) unless `accept`, which writes it. Call it from one
    /// thread at a time: it swaps the panic hook to keep insta's failure quiet.
    pub fn check(&self, name: &str, h: &Header) -> Result<(), String> {
        let text = serde_json::to_string_pretty(&h.structure)
            .map_err(|e| format!("cannot render the header facts: {e}"))?;
        let file = self.file(name);
        let old = std::fs::read_to_string(&file).ok();
        // insta reads its behaviour from the environment once per workspace root, so each
        // mode gets a root of its own.
        let (mode, root) = if self.accept {
            ("always", self.dir.join(".accept"))
        } else {
            ("new", self.dir.clone())
        };
        std::env::set_var("INSTA_WORKSPACE_ROOT", &root);
        std::env::set_var("INSTA_UPDATE", mode);
        std::env::set_var("INSTA_OUTPUT", "none");
        std::env::set_var("INSTA_FORCE_PASS", "0");
        let mut settings = insta::Settings::clone_current();
        settings.set_snapshot_path(&self.dir);
        settings.set_prepend_module_to_snapshot(false);
        settings.set_omit_expression(true);
        settings.set_description(format!(
            "header facts of the {name} kernels (cargo xtask matrix)"
        ));
        let quiet = std::panic::take_hook();
        std::panic::set_hook(Box::new(|_| {}));
        let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            settings.bind(|| insta::assert_snapshot!(name.to_string(), text.clone()))
        }));
        std::panic::set_hook(quiet);
        if outcome.is_ok() {
            return Ok(());
        }
        let pending = self.dir.join(format!("{name}.snap.new"));
        match old {
            None => Err(format!(
                "no header snapshot {} yet: review {} and run again with --accept",
                file.display(),
                pending.display()
            )),
            Some(old) => {
                let body = old.splitn(3, "---\n").nth(2).unwrap_or(&old).to_string();
                let diff = similar::TextDiff::from_lines(&body, &format!("{text}\n"))
                    .unified_diff()
                    .header(&file.display().to_string(), "this kernel")
                    .to_string();
                eprintln!(
                    "matrix: header facts differ from {}:\n{diff}",
                    file.display()
                );
                Err(format!(
                    "header layout differs from the snapshot {}: review the diff (stderr, {}), then run again with --accept",
                    file.display(),
                    pending.display()
                ))
            }
        }
    }
}

/// The kexec-related options a kernel was built with (`None`: the config is not known).
#[derive(Debug, Clone, Default, Serialize, PartialEq, Eq)]
pub struct Config {
    /// The file the facts came from.
    pub source: Option<PathBuf>,
    pub kexec: Option<bool>,
    pub kexec_file: Option<bool>,
    pub kexec_sig: Option<bool>,
    pub crash_dump: Option<bool>,
}

impl Config {
    /// Parses a kernel `.config` / `config-*`; `None` when the file is not a kernel config.
    pub fn parse(text: &str, source: &Path) -> Option<Config> {
        let opts: BTreeMap<&str, &str> = text
            .lines()
            .filter_map(|l| {
                if let Some(rest) = l.strip_prefix("# CONFIG_") {
                    rest.strip_suffix(" is not set").map(|k| (k, "n"))
                } else {
                    l.strip_prefix("CONFIG_").and_then(|l| l.split_once('='))
                }
            })
            .collect();
        if opts.is_empty() {
            return None;
        }
        let on = |k: &str| Some(matches!(opts.get(k), Some(&"y") | Some(&"m")));
        Some(Config {
            source: Some(source.to_path_buf()),
            kexec: on("KEXEC"),
            kexec_file: on("KEXEC_FILE"),
            kexec_sig: on("KEXEC_SIG"),
            crash_dump: on("CRASH_DUMP"),
        })
    }

    /// Reads the first of `candidates` that is a kernel config; unknown when none is.
    pub fn find(candidates: &[PathBuf]) -> Config {
        candidates
            .iter()
            .find_map(|p| {
                let text = std::fs::read(p).ok()?;
                Config::parse(&String::from_utf8_lossy(&text), p)
            })
            .unwrap_or_default()
    }

    /// `KEXEC=y KEXEC_FILE=n …`, or `config unknown`.
    pub fn summary(&self) -> String {
        if self.source.is_none() {
            return "config unknown".into();
        }
        let f = |b: Option<bool>| if b == Some(true) { "y" } else { "n" };
        format!(
            "KEXEC={} KEXEC_FILE={} KEXEC_SIG={} CRASH_DUMP={}",
            f(self.kexec),
            f(self.kexec_file),
            f(self.kexec_sig),
            f(self.crash_dump)
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_facts_from_a_config_file() {
        let c = Config::parse(
            "#\n# Linux/x86 6.6.99 Kernel Configuration\nCONFIG_KEXEC=y\n# CONFIG_KEXEC_FILE is not set\nCONFIG_CRASH_DUMP=y\n",
            Path::new("config-lts"),
        )
        .unwrap();
        assert_eq!(c.kexec, Some(true));
        assert_eq!(c.kexec_file, Some(false));
        assert_eq!(c.kexec_sig, Some(false));
        assert_eq!(c.crash_dump, Some(true));
        assert_eq!(c.summary(), "KEXEC=y KEXEC_FILE=n KEXEC_SIG=n CRASH_DUMP=y");
        assert!(Config::parse("MZ\0\0binary", Path::new("bzImage")).is_none());
        assert_eq!(Config::find(&[]).summary(), "config unknown");
    }

    #[test]
    fn a_truncated_kernel_is_a_one_line_header_error() {
        let dir = tempfile::tempdir().unwrap();
        let full = crate::workspace_root().join("fixtures/bzimage-2.15-lz4.bin");
        let bytes = std::fs::read(&full).unwrap();
        let cut = dir.path().join("cut");
        std::fs::write(&cut, &bytes[..bytes.len() / 2]).unwrap();
        let e = header(&cut, Path::new("my/bzImage")).unwrap_err();
        assert!(e.starts_with("my/bzImage: "), "{e}");
        assert!(!e.contains('\n'), "{e}");
        assert!(header(&full, &full).is_ok());
    }

    #[test]
    fn snapshots_fail_new_and_changed_layouts_until_accepted() {
        let dir = tempfile::tempdir().unwrap();
        let full = crate::workspace_root().join("fixtures/bzimage-2.15-lz4.bin");
        let h = header(&full, &full).unwrap();
        let s = Snapshots {
            dir: dir.path().to_path_buf(),
            accept: false,
        };
        let e = s.check("k", &h).unwrap_err();
        assert!(e.contains("--accept"), "{e}");
        let accepting = Snapshots {
            accept: true,
            ..s.clone()
        };
        accepting.check("k", &h).unwrap();
        assert!(dir.path().join("k.snap").is_file());
        s.check("k", &h).unwrap();
        let other = crate::workspace_root().join("fixtures/bzimage-2.15-zstd.bin");
        let h2 = header(&other, &other).unwrap();
        let e = s.check("k", &h2).unwrap_err();
        assert!(e.contains("differs"), "{e}");
        assert!(dir.path().join("k.snap.new").is_file());
        accepting.check("k", &h2).unwrap();
        s.check("k", &h2).unwrap();
    }
}
