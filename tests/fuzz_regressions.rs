//! Replays the committed crash inputs (`tests/regressions/<target>/*`)
//! through the library function their fuzz target feeds, so a fixed crash
//! stays fixed under `cargo nextest run` (the fuzz targets themselves need
//! nightly and `cargo xtask fuzz`). A directory without a replayer here
//! fails the test: every regression input must be replayed.

use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

fn regressions() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/regressions")
}

/// (target, file name, bytes) of every regression input.
fn inputs() -> Vec<(String, String, Vec<u8>)> {
    let mut out = Vec::new();
    for dir in std::fs::read_dir(regressions()).expect("tests/regressions exists") {
        let dir = dir.expect("readable entry").path();
        if !dir.is_dir() {
            continue;
        }
        let target = dir.file_name().unwrap().to_string_lossy().into_owned();
        for f in std::fs::read_dir(&dir).expect("readable target directory") {
            let f = f.expect("readable entry").path();
            let name = f.file_name().unwrap().to_string_lossy().into_owned();
            out.push((
                target.clone(),
                name,
                std::fs::read(&f).expect("readable input"),
            ));
        }
    }
    out.sort();
    out
}

/// The arguments of a `cli_parse` input: NUL separated, raw bytes.
fn args(data: &[u8]) -> Vec<&OsStr> {
    if data.is_empty() {
        return Vec::new();
    }
    data.split(|&b| b == 0).map(OsStr::from_bytes).collect()
}

/// Feeds one input to its target's function; returns what it answered.
fn replay(target: &str, data: &[u8]) -> String {
    match target {
        "cli_parse" => match kexec::cli::parse_os(&args(data)) {
            Ok(c) => format!("ok: {c:?}"),
            Err(e) => format!("error: {e}"),
        },
        "inspect" => match kexec::image::inspect_bytes(data) {
            Ok(r) => format!("ok: {}", r.image.format_name()),
            Err(e) => format!("error: {e}"),
        },
        other => panic!(
            "tests/regressions/{other}/ has no replayer in tests/fuzz_regressions.rs; add one that \
             calls what fuzz/fuzz_targets/{other}.rs calls"
        ),
    }
}

#[test]
fn every_regression_input_is_answered_without_a_panic() {
    let inputs = inputs();
    assert!(!inputs.is_empty(), "no regression inputs found");
    for (target, name, data) in &inputs {
        let answer = std::panic::catch_unwind(|| replay(target, data))
            .unwrap_or_else(|_| panic!("{target}/{name} panics again"));
        assert!(!answer.is_empty(), "{target}/{name}");
    }
}

#[test]
fn a_non_utf8_file_name_is_a_usage_error_naming_it() {
    let data = std::fs::read(regressions().join("cli_parse/non-utf8-kernel-path"))
        .expect("the regression input");
    let answer = replay("cli_parse", &data);
    assert_eq!(
        answer,
        "error: argument '/boot/vmlinuz-\u{FFFD}' is not valid UTF-8 (bad bytes shown as U+FFFD); \
         kexec takes UTF-8 options and file names: rename the file, or point a symlink with a UTF-8 \
         name at it"
    );
}
