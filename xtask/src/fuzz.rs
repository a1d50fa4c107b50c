//! `cargo xtask fuzz`: builds the cargo-fuzz targets in `fuzz/` and runs
//! each for a fixed time, seeded from `fixtures/`, then prints per target how
//! many inputs it tried and whether it crashed.
//!
//! It installs what it needs (a nightly toolchain and `cargo-fuzz`) when they
//! are missing, so a fresh machine needs only rustup. Targets run one after
//! the other with one libFuzzer process each: the point is a bounded,
//! repeatable smoke run in CI and before merges, not a fuzzing farm.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Instant;

use anyhow::{bail, Context, Result};

/// Arguments of `cargo xtask fuzz`.
#[derive(clap::Args)]
pub struct Args {
    /// How long each target runs, in seconds.
    #[arg(long, default_value_t = 60)]
    seconds: u64,
    /// Targets to run (default: all of `cargo fuzz list`).
    targets: Vec<String>,
}

/// libFuzzer's per-input time limit: anything slower is a hang worth a report.
const UNIT_TIMEOUT_SECS: u64 = 30;
/// libFuzzer's memory limit; the targets cap decompression far below it.
const RSS_LIMIT_MB: u64 = 2048;

/// Runs `cmd` to completion with inherited output; fails naming the command.
fn status(cmd: &mut Command) -> Result<()> {
    let shown = format!("{cmd:?}");
    let st = cmd
        .status()
        .with_context(|| format!("cannot run {shown}"))?;
    if !st.success() {
        bail!("{shown} failed ({st})");
    }
    Ok(())
}

/// True when `cmd` runs and exits 0 (output discarded).
fn succeeds(cmd: &mut Command) -> bool {
    cmd.stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// Installs the nightly toolchain and cargo-fuzz unless already present.
fn ensure_tools() -> Result<()> {
    if !succeeds(Command::new("cargo").args(["+nightly", "--version"])) {
        eprintln!("fuzz: installing the nightly toolchain (cargo-fuzz needs -Z sanitizer flags)");
        status(Command::new("rustup").args([
            "toolchain",
            "install",
            "nightly",
            "--profile",
            "minimal",
        ]))
        .context("installing nightly with rustup (is rustup installed?)")?;
    }
    if !succeeds(Command::new("cargo").args(["+nightly", "fuzz", "--version"])) {
        eprintln!("fuzz: installing cargo-fuzz");
        status(Command::new("cargo").args(["install", "cargo-fuzz", "--locked"]))
            .context("installing cargo-fuzz")?;
    }
    Ok(())
}

fn cargo_fuzz(root: &Path) -> Command {
    let mut c = Command::new("cargo");
    c.args(["+nightly", "fuzz"]).current_dir(root);
    c
}

/// The targets `fuzz/Cargo.toml` declares, in its order.
fn list_targets(root: &Path) -> Result<Vec<String>> {
    let out = cargo_fuzz(root)
        .arg("list")
        .output()
        .context("running cargo fuzz list")?;
    if !out.status.success() {
        bail!(
            "cargo fuzz list failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .map(String::from)
        .collect())
}

/// Seed directories for `target`: its committed seeds (`fuzz/seeds/<target>`),
/// the regression inputs of past crashes (`tests/regressions/<target>`) and,
/// for targets that read files, the image fixtures (`fixtures/`).
fn seed_dirs(root: &Path, target: &str) -> Vec<PathBuf> {
    let mut dirs = vec![
        root.join("fuzz/seeds").join(target),
        root.join("tests/regressions").join(target),
    ];
    if !TEXT_TARGETS.contains(&target) {
        dirs.push(root.join("fixtures"));
    }
    dirs.into_iter().filter(|d| d.is_dir()).collect()
}

/// Targets whose input is text or arguments, not a file format: the image
/// fixtures would only make libFuzzer try 8 KiB inputs on them.
const TEXT_TARGETS: &[&str] = &["cmdline", "cli_parse", "alpine_releases", "alpine_apkindex"];

/// What one target's run gave.
struct Outcome {
    target: String,
    executions: u64,
    /// The reproducer libFuzzer wrote, when the run crashed.
    artifact: Option<String>,
    crashed: bool,
    log: PathBuf,
}

/// Reads libFuzzer's output: the executions from `-print_final_stats`
/// (falling back to the last `#N` status line) and the crash artifact.
fn parse_log(log: &str) -> (u64, Option<String>) {
    let mut executions = None;
    let mut last_status = 0;
    let mut artifact = None;
    for line in log.lines() {
        if let Some(n) = line.strip_prefix("stat::number_of_executed_units:") {
            executions = n.trim().parse().ok();
        } else if let Some(rest) = line.strip_prefix('#') {
            if let Some(n) = rest.split_whitespace().next().and_then(|n| n.parse().ok()) {
                last_status = n;
            }
        } else if let Some(i) = line.find("Test unit written to ") {
            artifact = line[i + "Test unit written to ".len()..]
                .split_whitespace()
                .next()
                .map(String::from);
        }
    }
    (executions.unwrap_or(last_status), artifact)
}

/// The host's target triple: cargo fuzz builds for it, into
/// `fuzz/target/<triple>/release/`.
fn host_triple() -> Result<String> {
    let out = Command::new("rustc")
        .args(["+nightly", "-vV"])
        .output()
        .context("running rustc +nightly -vV")?;
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .find_map(|l| l.strip_prefix("host: "))
        .map(|h| h.trim().to_string())
        .context("rustc -vV printed no host line")
}

/// Runs the binary `cargo fuzz build` made, not `cargo fuzz run`: that would
/// rebuild from whatever the sources are by then, so one run could mix
/// binaries of different commits.
fn run_target(root: &Path, binaries: &Path, target: &str, seconds: u64) -> Result<Outcome> {
    let corpus = root.join("fuzz/corpus").join(target);
    fs::create_dir_all(&corpus).with_context(|| format!("creating {}", corpus.display()))?;
    let logs = root.join("fuzz/logs");
    fs::create_dir_all(&logs).with_context(|| format!("creating {}", logs.display()))?;
    let log_path = logs.join(format!("{target}.log"));
    let log_file =
        fs::File::create(&log_path).with_context(|| format!("creating {}", log_path.display()))?;
    let artifacts = root.join("fuzz/artifacts").join(target);
    fs::create_dir_all(&artifacts).with_context(|| format!("creating {}", artifacts.display()))?;
    let mut cmd = Command::new(binaries.join(target));
    // As cargo fuzz runs them.
    cmd.env("ASAN_OPTIONS", "detect_odr_violation=0")
        .arg(format!("-artifact_prefix={}/", artifacts.display()))
        .arg(format!("-max_total_time={seconds}"))
        .arg(format!("-timeout={UNIT_TIMEOUT_SECS}"))
        .arg(format!("-rss_limit_mb={RSS_LIMIT_MB}"))
        .arg("-print_final_stats=1")
        .arg(&corpus)
        .args(seed_dirs(root, target));
    let status = cmd
        .stdout(log_file.try_clone()?)
        .stderr(log_file)
        .status()
        .with_context(|| format!("running {}", binaries.join(target).display()))?;
    let text = fs::read_to_string(&log_path).unwrap_or_default();
    let (executions, artifact) = parse_log(&text);
    Ok(Outcome {
        target: target.to_string(),
        executions,
        crashed: !status.success(),
        artifact,
        log: log_path,
    })
}

pub fn run(args: Args) -> Result<()> {
    let root = crate::workspace_root();
    ensure_tools()?;
    let all = list_targets(&root)?;
    let targets = if args.targets.is_empty() {
        all.clone()
    } else {
        for t in &args.targets {
            if !all.contains(t) {
                bail!("no fuzz target {t:?}; the targets are: {}", all.join(", "));
            }
        }
        args.targets.clone()
    };
    // The harness's own tests: the fake machine `classic_plan` uses must
    // let a valid kernel through, or that target only fuzzes early errors.
    eprintln!("fuzz: testing the harness (fuzz/src/lib.rs)");
    status(
        Command::new("cargo")
            .args(["+nightly", "test", "--quiet", "--lib"])
            .current_dir(root.join("fuzz")),
    )
    .context("the fuzz harness's tests failed")?;
    eprintln!("fuzz: building {} target(s)", targets.len());
    let mut build = cargo_fuzz(&root);
    build.arg("build");
    if targets.len() == 1 {
        build.arg(&targets[0]);
    }
    status(&mut build).context("building the fuzz targets")?;
    let binaries = root
        .join("fuzz/target")
        .join(host_triple()?)
        .join("release");

    let started = Instant::now();
    let mut outcomes = Vec::new();
    for t in &targets {
        eprintln!("fuzz: running {t} for {} s", args.seconds);
        let o = run_target(&root, &binaries, t, args.seconds)?;
        let verdict = if o.crashed {
            format!(
                "CRASHED: {} (log {})",
                o.artifact.as_deref().unwrap_or("no artifact written"),
                o.log.display()
            )
        } else {
            "no crash".to_string()
        };
        println!(
            "{:<16} {:>12} executions  {verdict}",
            o.target, o.executions
        );
        outcomes.push(o);
    }
    let executions: u64 = outcomes.iter().map(|o| o.executions).sum();
    let crashed: Vec<&Outcome> = outcomes.iter().filter(|o| o.crashed).collect();
    println!(
        "{} targets, {executions} executions, {} crashes ({} s)",
        outcomes.len(),
        crashed.len(),
        started.elapsed().as_secs()
    );
    if let Some(first) = crashed.first() {
        bail!(
            "{} target(s) crashed; reproduce with `cargo +nightly fuzz run {} {}`, then add the input under tests/regressions/{}/ with a test",
            crashed.len(),
            first.target,
            first.artifact.as_deref().unwrap_or("<artifact>"),
            first.target
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_log_reads_final_stats_and_artifacts() {
        let log = "INFO: Seed: 1\n#2\tINITED cov: 10 ft: 10 corp: 1/1b exec/s: 0 rss: 30Mb\n\
                   #4096\tpulse  cov: 12 ft: 13 corp: 2/2b\n\
                   ==1== ERROR: libFuzzer: deadly signal\n\
                   artifact_prefix='/w/fuzz/artifacts/elf/'; Test unit written to /w/fuzz/artifacts/elf/crash-da39a3ee\n\
                   stat::number_of_executed_units: 5000\n";
        assert_eq!(
            parse_log(log),
            (
                5000,
                Some("/w/fuzz/artifacts/elf/crash-da39a3ee".to_string())
            )
        );
        // Without final stats, the last status line counts.
        assert_eq!(parse_log("#1\tINITED\n#77\tNEW cov: 1\n"), (77, None));
    }
}
