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
        "classic_plan" => plan_everywhere(data),
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

/// The fuzz target's fake machine (fuzz/src/lib.rs writes the same layout
/// as files): RAM below 640 KiB, 1 MiB..2 GiB and 4..5 GiB, a 256 MiB crash
/// reservation, two CPUs' crash notes and vmcoreinfo.
fn fake_machine() -> kexec::classic::Machine {
    use kexec::classic::machine::{MemKind, MemoryRange};
    use kexec::classic::memory::Range;
    let r = |a, b| Range::inclusive(a, b).expect("a valid range");
    let m = |a, b, kind| MemoryRange {
        range: r(a, b),
        kind,
    };
    kexec::classic::Machine {
        memmap: vec![
            m(0x0, 0x9_fbff, MemKind::Ram),
            m(0x9_fc00, 0x9_ffff, MemKind::Reserved),
            m(0xf_0000, 0xf_ffff, MemKind::Reserved),
            m(0x10_0000, 0x7ffd_ffff, MemKind::Ram),
            m(0x7ffe_0000, 0x7fff_ffff, MemKind::AcpiTables),
            m(0xfeff_c000, 0xfeff_ffff, MemKind::Reserved),
            m(0x1_0000_0000, 0x1_3fff_ffff, MemKind::Ram),
        ],
        system_ram: vec![
            r(0x1000, 0x9_fbff),
            r(0x10_0000, 0x7ffd_ffff),
            r(0x1_0000_0000, 0x1_3fff_ffff),
        ],
        crash_reservations: vec![r(0x6f00_0000, 0x7eff_ffff)],
        crash_notes: vec![r(0x13f0_0000, 0x13f0_01a7), r(0x13f0_1000, 0x13f0_11a7)],
        vmcoreinfo: Some(Range::new(0x2e4_d000, 0x2e4_e000)),
        page_offset: kexec::classic::machine::DEFAULT_PAGE_OFFSET,
        ..Default::default()
    }
}

/// What `fuzz/fuzz_targets/classic_plan.rs` does with one kernel: plan it as
/// a normal and a crash kernel, with and without an initrd, and check that
/// every plan's segments are page aligned, sorted and disjoint.
fn plan_everywhere(kernel: &[u8]) -> String {
    use kexec::classic::{plan, Request};
    let machine = fake_machine();
    let cmdline = vec![b'x'; kernel.last().map_or(0, |&b| usize::from(b) * 2)];
    let initrd = [0x5au8; 5000];
    let mut answers = Vec::new();
    for crash in [false, true] {
        for initrd in [None, Some(&initrd[..])] {
            let req = Request {
                kernel,
                initrd,
                cmdline: &cmdline,
                crash,
                no_checks: crash,
                console: (!crash).then_some(kexec::classic::SerialConsole {
                    port: 0x3f8,
                    baud: Some(9600),
                }),
            };
            match plan(&req, &machine) {
                Ok(p) => {
                    let mut end = 0u64;
                    for s in &p.segments {
                        assert_eq!(s.mem % 4096, 0, "unaligned segment at {:#x}", s.mem);
                        assert!(s.mem >= end, "overlapping segments");
                        end = s.mem + s.memsz;
                    }
                    answers.push(format!("ok: kernel at {:#x}", p.kernel_addr));
                }
                Err(e) => answers.push(format!("error: {e}")),
            }
        }
    }
    answers.join("\n")
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

#[test]
fn a_fixed_kernel_at_an_unaligned_address_is_refused_not_planned() {
    let data = std::fs::read(regressions().join("classic_plan/pref-address-not-page-aligned"))
        .expect("the regression input");
    let answer = plan_everywhere(&data);
    assert!(
        answer
            .lines()
            .all(|l| l.contains("pref_address 0x600002, which is not page aligned")),
        "{answer}"
    );
}
