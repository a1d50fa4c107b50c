//! `kexec info` end to end: the built binary over every fixture and every
//! cached real kernel. The library is tested in `image_snapshots.rs`; this
//! checks what a user sees: the same report as the library, one line on
//! stderr and a non-zero exit for every broken file, never a panic.

use std::path::Path;
use std::process::{Command, Output};

use serde_json::Value;

fn kexec(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_kexec"))
        .args(args)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .expect("run the kexec binary")
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn fixture_names() -> Vec<String> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures");
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .expect("fixtures/")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .filter(|n| n != "README.md")
        .collect();
    names.sort();
    names
}

#[test]
fn every_fixture_through_the_binary() {
    let names = fixture_names();
    assert!(names.len() >= 30, "{names:?}");
    std::env::set_current_dir(env!("CARGO_MANIFEST_DIR")).expect("chdir");
    for name in names {
        let rel = format!("fixtures/{name}");
        let o = kexec(&["info", "--json", &rel]);
        let err = stderr(&o);
        assert!(!err.contains("panicked"), "{name}: {err}");
        match kexec::image::inspect_path(Path::new(&rel)) {
            Ok(report) => {
                assert_eq!(o.status.code(), Some(0), "{name}: {err}");
                let printed: Value = serde_json::from_slice(&o.stdout).expect("--json prints JSON");
                let expected = serde_json::to_value(vec![report]).expect("serialises");
                assert_eq!(
                    printed, expected,
                    "{name}: the binary's JSON differs from inspect_path's"
                );
                let human = kexec(&["info", &rel]);
                assert_eq!(human.status.code(), Some(0));
                assert!(String::from_utf8_lossy(&human.stdout)
                    .contains(&format!("file:                    {rel}")));
            }
            Err(e) => {
                assert_ne!(o.status.code(), Some(0), "{name}: broken file exited 0");
                assert_eq!(err.lines().count(), 1, "{name}: not one line: {err}");
                assert!(
                    err.contains(&rel),
                    "{name}: error does not name the file: {err}"
                );
                assert!(err.contains(&e.reason), "{name}: {err}");
            }
        }
    }
}

#[test]
fn several_files_give_one_report_each_and_fail_if_any_fails() {
    let o = kexec(&[
        "info",
        "--json",
        "fixtures/uki.efi",
        "fixtures/empty.bin",
        "fixtures/initramfs-plain.cpio",
    ]);
    assert_ne!(o.status.code(), Some(0));
    let v: Value = serde_json::from_slice(&o.stdout).expect("JSON");
    let formats: Vec<&str> = v
        .as_array()
        .expect("array")
        .iter()
        .filter_map(|r| r["format"].as_str())
        .collect();
    assert_eq!(formats, ["uki", "initramfs"]);
    assert_eq!(stderr(&o).lines().count(), 1, "{}", stderr(&o));
    assert!(stderr(&o).contains("fixtures/empty.bin"));
}

fn cache_root() -> std::path::PathBuf {
    if let Some(p) = std::env::var_os("KEXEC_RS_CACHE").filter(|p| !p.is_empty()) {
        return p.into();
    }
    if let Some(p) = std::env::var_os("XDG_CACHE_HOME").filter(|p| !p.is_empty()) {
        return Path::new(&p).join("kexec-rs");
    }
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("target")
        .join("vm-cache")
}

/// The acceptance check, through the binary: on each cached kernel,
/// `kexec info --json` reports the protocol, a version string equal to the
/// package's, the payload compression its config selects and the EFI stub
/// facts; on arm64 the header fields.
#[test]
fn info_json_on_cached_real_kernels() {
    let manifest = cache_root().join("kernels.json");
    let Ok(text) = std::fs::read_to_string(&manifest) else {
        eprintln!(
            "skipped: no {} — run `cargo xtask fetch` to test real kernels",
            manifest.display()
        );
        return;
    };
    let kernels: Vec<Value> = serde_json::from_str(&text).expect("kernels.json is a JSON array");
    for k in kernels.iter().filter(|k| k["source"] == "debian") {
        let name = k["name"].as_str().unwrap_or("?");
        let path = k["kernel"].as_str().expect("kernel path");
        let config = std::fs::read_to_string(k["config"].as_str().expect("config path"))
            .expect("config readable");
        let enabled = |opt: &str| config.lines().any(|l| l == format!("CONFIG_{opt}=y"));
        let o = kexec(&["info", "--json", path]);
        assert_eq!(o.status.code(), Some(0), "{name}: {}", stderr(&o));
        let v: Value = serde_json::from_slice(&o.stdout).expect("JSON");
        let r = &v[0];
        assert_eq!(r["path"], path);
        let version = k["version"].as_str().expect("version");
        let package_version = k["package_version"].as_str().expect("package_version");
        match r["format"].as_str() {
            Some("bzimage") => {
                assert_eq!(r["protocol"], "2.15", "{name}");
                let s = r["kernel_version"].as_str().expect("kernel_version");
                assert!(
                    s.starts_with(version) && s.contains(package_version),
                    "{name}: {s}"
                );
                let c = r["payload"]["compression"].as_str().expect("compression");
                assert!(
                    enabled(&format!("KERNEL_{}", c.to_uppercase())),
                    "{name}: payload {c} vs config"
                );
                assert_eq!(r["efi_stub"].is_object(), enabled("EFI_STUB"), "{name}");
                assert_eq!(r["header"]["xloadflags"], 0x7f, "{name}");
                assert_eq!(r["header"]["cmdline_size"], 2047, "{name}");
                assert_eq!(r["header"]["setup_sects"], 39, "{name}");
            }
            Some("arm64_image") => {
                let banner = r["linux_banner"].as_str().expect("banner");
                assert!(
                    banner.starts_with(&format!("Linux version {version} "))
                        && banner.contains(package_version),
                    "{name}: {banner}"
                );
                assert_eq!(r["header"]["text_offset"], 0, "{name}");
                assert_eq!(r["header"]["flags"], 0xa, "{name}");
                assert_eq!(r["header"]["page_size"], "4k", "{name}");
                assert_eq!(r["header"]["efi_stub"], enabled("EFI_STUB"), "{name}");
                assert!(
                    r["header"]["image_size"]
                        .as_u64()
                        .is_some_and(|s| s > 0x100_0000),
                    "{name}"
                );
            }
            other => panic!("{name}: unexpected format {other:?}"),
        }
    }
}
