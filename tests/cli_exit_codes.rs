//! The `kexec` binary's exit codes and messages for what it can decide
//! without a kexec-capable kernel: usage errors and bad files exit 1 with a
//! one-line reason naming the file, `--help`/`--version` exit 0. (Kernel
//! answers are covered by the unit tests over the fake kernel and by guests.)

use std::process::{Command, Output};

fn kexec(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_kexec"))
        .args(args)
        .env(
            "KEXEC_STATUS_DIR",
            std::env::temp_dir().join("kexec-rs-cli-test-status"),
        )
        .output()
        .expect("run kexec")
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

#[test]
fn help_and_version_exit_0() {
    for args in [&["-h"][..], &["--help"], &["-v"], &["--version"]] {
        let o = kexec(args);
        assert_eq!(o.status.code(), Some(0), "{args:?}");
        assert!(!o.stdout.is_empty());
    }
    assert!(String::from_utf8_lossy(&kexec(&["--help"]).stdout).contains("--reuse-cmdline"));
}

#[test]
fn usage_errors_exit_1() {
    for (args, needle) in [
        (&["--bogus"][..], "unrecognized option '--bogus'"),
        (&["-Z"], "unrecognized option '-Z'"),
        (&["-l", "k", "--initrd"], "requires an argument"),
        (&["--mem-min=0", "-l", "k"], "not supported"),
        (&["-l", "a", "b"], "only one kernel"),
        (&["-l"], "No kernel specified"),
        (&["info"], "kexec info needs"),
    ] {
        let o = kexec(args);
        assert_eq!(o.status.code(), Some(1), "{args:?}: {}", stderr(&o));
        assert!(stderr(&o).contains(needle), "{args:?}: {}", stderr(&o));
    }
}

#[test]
fn bad_files_exit_1_naming_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let empty = dir.path().join("empty-kernel");
    std::fs::write(&empty, b"").unwrap();
    let missing = dir.path().join("no-such-kernel");
    let d = dir.path().display().to_string();
    for (path, needle) in [
        (missing.display().to_string(), "no-such-kernel"),
        (empty.display().to_string(), "is empty"),
        (d.clone(), "is a directory"),
    ] {
        let o = kexec(&["-l", &path]);
        assert_eq!(o.status.code(), Some(1), "{path}: {}", stderr(&o));
        assert!(stderr(&o).contains(needle), "{path}: {}", stderr(&o));
        assert_eq!(stderr(&o).lines().count(), 1, "one line: {}", stderr(&o));
    }
}

#[test]
fn info_describes_images_and_refuses_non_kernels() {
    let uki = concat!(env!("CARGO_MANIFEST_DIR"), "/fixtures/uki.efi");
    let o = kexec(&["info", uki]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert!(String::from_utf8_lossy(&o.stdout).contains("format:                  uki"));
    let o = kexec(&["info", "--json", uki]);
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v[0]["format"], "uki");
    let png = concat!(env!("CARGO_MANIFEST_DIR"), "/fixtures/not-a-kernel.png");
    let o = kexec(&["info", png]);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        stderr(&o).contains("not-a-kernel.png") && stderr(&o).contains("PNG"),
        "{}",
        stderr(&o)
    );
    let o = kexec(&["info", "/nonexistent/vmlinuz"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("/nonexistent/vmlinuz"));
}
