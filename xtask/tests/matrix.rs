//! `cargo xtask matrix` as a user runs it (the built `xtask` binary): a broken kernel fails
//! its row with a one-line reason before anything boots, and an Alpine release is resolved
//! from a mirror (served on loopback by the test), checked against its header snapshot and
//! its config facts, and (in the VM-booting variant) kexec'd.

mod support;

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use support::alpine_mirror;

/// Runs `cargo xtask matrix ARGS` with its own cache, snapshots and report directory under
/// `dir` (or the shared cache when `shared_cache`); a run that does not end within `bound` is
/// killed and reported as a hang.
fn matrix(dir: &Path, args: &[&str], shared_cache: bool, bound: Duration) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_xtask"));
    cmd.arg("matrix")
        .args(args)
        .arg("--snapshots")
        .arg(dir.join("snapshots"))
        .arg("--out")
        .arg(dir.join("out"))
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    // The loopback Alpine mirror signs its index with the test key.
    cmd.env("KEXEC_RS_ALPINE_KEYS", alpine_mirror::test_keys_dir());
    if !shared_cache {
        cmd.env("KEXEC_RS_CACHE", dir.join("cache"));
    }
    let child = cmd.spawn().expect("run the xtask binary");
    let pid = child.id();
    let t = Instant::now();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(child.wait_with_output());
    });
    match rx.recv_timeout(bound) {
        Ok(out) => out.expect("collect the output"),
        Err(_) => {
            let _ = Command::new("kill").arg(pid.to_string()).status();
            panic!("`xtask matrix {args:?}` hung for {:?}", t.elapsed());
        }
    }
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

fn report(dir: &Path) -> serde_json::Value {
    let p = dir.join("out/matrix.json");
    serde_json::from_slice(&std::fs::read(&p).expect("the JSON report")).expect("valid JSON")
}

fn fixture(name: &str) -> PathBuf {
    xtask::workspace_root().join("fixtures").join(name)
}

#[test]
fn a_truncated_kernel_fails_its_row_with_one_line_and_boots_nothing() {
    let dir = tempfile::tempdir().unwrap();
    // A real kernel when the cache has one (what a user would truncate), else a fixture.
    let source = xtask::fetch::read_kernels(&xtask::cache::default_root())
        .ok()
        .and_then(|ks| ks.into_iter().find(|k| k.arch == "x86_64"))
        .map(|k| k.kernel)
        .unwrap_or_else(|| fixture("bzimage-2.15-lz4.bin"));
    let bytes = std::fs::read(&source).unwrap();
    let cut = dir.path().join("vmlinuz-cut");
    std::fs::write(&cut, &bytes[..bytes.len() / 2]).unwrap();

    let out = matrix(
        dir.path(),
        &["--kernel", cut.to_str().unwrap()],
        false,
        Duration::from_secs(300),
    );
    let (stdout, stderr) = (text(&out.stdout), text(&out.stderr));
    assert_eq!(
        out.status.code(),
        Some(1),
        "stdout:\n{stdout}\nstderr:\n{stderr}"
    );
    assert!(!stderr.contains("panicked"), "{stderr}");
    let row = stdout
        .lines()
        .find(|l| l.starts_with("local vmlinuz-cut"))
        .unwrap_or_else(|| panic!("no row for the kernel:\n{stdout}"));
    assert!(row.contains("FAIL"), "{row}");
    let reason = stdout
        .lines()
        .find(|l| l.contains("/ header: FAIL: "))
        .unwrap_or_else(|| panic!("no reason line:\n{stdout}"));
    assert!(reason.contains(&cut.display().to_string()), "{reason}");
    assert!(reason.contains("truncated"), "{reason}");

    let r = report(dir.path());
    assert_eq!(r["passed"], false);
    let row = &r["rows"][0];
    assert_eq!(row["header"]["status"], "fail");
    let why = row["header"]["reason"].as_str().unwrap();
    assert!(!why.contains('\n'), "{why}");
    assert!(
        !dir.path().join("out/runs").exists(),
        "a guest was started for a kernel that failed its header check"
    );
}

/// Alpine's config for its x86_64 kernels: kexec_load only, no crash dump.
const ALPINE_CONFIG: &[u8] = b"#\n# Automatically generated file; DO NOT EDIT.\n# Linux/x86 6.18.1-0 Kernel Configuration\n#\nCONFIG_KEXEC=y\n# CONFIG_KEXEC_FILE is not set\n# CONFIG_CRASH_DUMP is not set\n";

fn alpine_mirror_with(kernel: &[u8]) -> alpine_mirror::Mirror {
    alpine_mirror::build(
        "v3.23",
        "3.23.1",
        &[
            ("boot/vmlinuz-lts", kernel),
            ("boot/config-lts", ALPINE_CONFIG),
            ("boot/initramfs-lts", b"initramfs"),
            ("boot/modloop-lts", b"modloop"),
        ],
    )
}

fn alpine_args<'a>(url: &'a str, extra: &[&'a str]) -> Vec<&'a str> {
    let mut v = vec![
        "--source",
        "alpine",
        "--release",
        "v3.23",
        "--flavor",
        "lts",
        "--mirror",
        url,
    ];
    v.extend_from_slice(extra);
    v
}

#[test]
fn an_alpine_release_from_a_loopback_mirror_is_checked_against_its_snapshot() {
    let dir = tempfile::tempdir().unwrap();
    let kernel = std::fs::read(fixture("bzimage-2.15-lz4.bin")).unwrap();
    let m = alpine_mirror_with(&kernel);
    let bound = Duration::from_secs(300);

    // A new release with no snapshot yet fails until its header facts are accepted.
    let first = matrix(
        dir.path(),
        &alpine_args(&m.url, &["--facts-only"]),
        false,
        bound,
    );
    let stdout = text(&first.stdout);
    assert_eq!(
        first.status.code(),
        Some(1),
        "{stdout}\n{}",
        text(&first.stderr)
    );
    assert!(stdout.contains("no header snapshot"), "{stdout}");
    assert!(dir
        .path()
        .join("snapshots/alpine-lts-x86_64.snap.new")
        .is_file());

    let accepted = matrix(
        dir.path(),
        &alpine_args(&m.url, &["--facts-only", "--accept"]),
        false,
        bound,
    );
    assert!(accepted.status.success(), "{}", text(&accepted.stderr));
    let again = matrix(
        dir.path(),
        &alpine_args(&m.url, &["--facts-only"]),
        false,
        bound,
    );
    let stdout = text(&again.stdout);
    assert!(again.status.success(), "{stdout}\n{}", text(&again.stderr));
    let r = report(dir.path());
    let row = &r["rows"][0];
    assert!(
        row["kernel"]
            .as_str()
            .unwrap()
            .starts_with("alpine v3.23 lts"),
        "{row}"
    );
    assert_eq!(row["config"]["kexec"], true);
    assert_eq!(row["config"]["kexec_file"], false);
    assert_eq!(row["config"]["crash_dump"], false);
    assert!(
        stdout.contains("KEXEC=y KEXEC_FILE=n KEXEC_SIG=n CRASH_DUMP=n"),
        "{stdout}"
    );

    // The next release changes the layout: a reviewable diff, and a failed row.
    let m2 = alpine_mirror_with(&std::fs::read(fixture("bzimage-2.15-zstd.bin")).unwrap());
    let changed = matrix(
        dir.path(),
        &alpine_args(&m2.url, &["--facts-only"]),
        false,
        bound,
    );
    let (stdout, stderr) = (text(&changed.stdout), text(&changed.stderr));
    assert_eq!(changed.status.code(), Some(1), "{stdout}\n{stderr}");
    assert!(stdout.contains("header layout differs"), "{stdout}");
    assert!(
        stderr.contains("-  \"payload_compression\": \"lz4\""),
        "{stderr}"
    );
    assert!(
        stderr.contains("+  \"payload_compression\": \"zstd\""),
        "{stderr}"
    );
}

/// The documented command for a new Alpine release, booted: the mirror's `lts` kernel is a
/// real kernel (the cached Debian 6.1 one, standing in for Alpine's), its config is Alpine's
/// (no kexec_file_load, no crash dump), so the file and crash scenarios are skipped with the
/// reason and the classic load + exec runs in an alpine-like guest.
#[test]
#[ignore = "boots QEMU guests: run with `cargo xtask vm-test`"]
fn an_alpine_release_from_a_loopback_mirror_boots_and_kexecs() {
    let dir = tempfile::tempdir().unwrap();
    let k = xtask::fetch::read_kernels(&xtask::cache::default_root())
        .expect("run `cargo xtask fetch --source debian` first")
        .into_iter()
        .find(|k| k.name == "debian-6.1-cloud-amd64")
        .expect("the Debian 6.1 kernel in the cache");
    let m = alpine_mirror_with(&std::fs::read(&k.kernel).unwrap());
    let out = matrix(
        dir.path(),
        &alpine_args(&m.url, &["--accept", "--only", "file,classic,crash"]),
        true,
        Duration::from_secs(1500),
    );
    let (stdout, stderr) = (text(&out.stdout), text(&out.stderr));
    assert!(out.status.success(), "{stdout}\n{stderr}");
    let r = report(dir.path());
    let cells = r["rows"][0]["cells"].as_array().unwrap();
    let status = |s: &str| {
        cells
            .iter()
            .find(|c| c["scenario"] == s)
            .map(|c| c["status"].as_str().unwrap_or("").to_string())
    };
    assert_eq!(status("classic").as_deref(), Some("pass"), "{stdout}");
    assert_eq!(status("file").as_deref(), Some("skip"), "{stdout}");
    assert_eq!(status("crash").as_deref(), Some("skip"), "{stdout}");
}
