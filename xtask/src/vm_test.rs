//! `cargo xtask vm-test [FILTER]`: prepare everything the VM scenarios need, then run them
//! through cargo-nextest.
//!
//! Preparation happens once, here, instead of in every test: host tools (installed if
//! missing), the download cache (fetched if the manifests lack what the scenarios boot), the
//! guest's static binaries, and the accelerator decision (passed to the tests in
//! `KEXEC_RS_ACCEL`). The scenarios are `#[ignore]`d integration tests, so a plain
//! `cargo nextest run` lists them as skipped; this task runs exactly them.

use std::time::Instant;

use anyhow::{bail, Context, Result};

use crate::qemu::Accel;

#[derive(Debug, Clone, clap::Args)]
pub struct VmTestArgs {
    /// Only scenarios whose name contains one of these (nextest filters).
    pub filter: Vec<String>,
    /// Accelerator: auto detects whether KVM really works.
    #[arg(long, value_enum, default_value = "auto")]
    pub accel: Accel,
    /// Scenarios run at once (default: one per core; each guest is one TCG vCPU thread).
    /// Measured on 2 cores: 12 scenarios took 179 s one at a time and 124 s two at a time.
    #[arg(long)]
    pub test_threads: Option<usize>,
    /// Do not fetch even if the cache lacks something.
    #[arg(long)]
    pub no_fetch: bool,
}

/// Online CPUs (each TCG guest here is one vCPU thread, so one scenario per CPU).
fn online_cpus() -> usize {
    // SAFETY: sysconf has no preconditions.
    let n = unsafe { libc::sysconf(libc::_SC_NPROCESSORS_ONLN) };
    usize::try_from(n).ok().filter(|&n| n > 0).unwrap_or(1)
}

pub fn run(args: &VmTestArgs) -> Result<()> {
    let t0 = Instant::now();
    crate::tools::ensure(true)?;
    let cache = crate::cache::Cache::open(crate::cache::default_root())?;
    let have = crate::fetch::read_kernels(cache.root())
        .ok()
        .is_some_and(|k| k.iter().any(|k| k.name == "debian-6.1-cloud-amd64"))
        && crate::fetch::read_userland(cache.root())
            .ok()
            .is_some_and(|u| u.iter().any(|u| u.role == "kexec-tools"));
    if !have {
        if args.no_fetch {
            bail!("the cache at {} lacks the Debian kernels or userland; run `cargo xtask fetch --source debian`", cache.root().display());
        }
        eprintln!("vm-test: fetching (the cache lacks the Debian kernels or userland)");
        let fa = crate::fetch::FetchArgs::debian_x86_64();
        crate::fetch::run(&cache, &fa)?;
    }
    let bins = crate::guest::build_binaries()?;
    if let Err(why) = &bins.ours {
        eprintln!(
            "vm-test: WARNING: {why}\nvm-test: scenarios that use the project's kexec will fail."
        );
    }
    let kernel = crate::scenario::kernel()?;
    let accel = crate::qemu::resolve_accel(args.accel, Some(&kernel.kernel));
    let accel_name = if accel == Accel::Kvm { "kvm" } else { "tcg" };
    let threads = args.test_threads.unwrap_or_else(online_cpus);
    eprintln!(
        "vm-test: accelerator {accel_name}, {threads} scenario(s) at a time, prepared in {:.1} s",
        t0.elapsed().as_secs_f64()
    );
    let mut nextest: Vec<String> = [
        "nextest",
        "run",
        "-p",
        "xtask",
        "--test",
        "vm",
        "--test",
        "openrc",
        "--test",
        "matrix",
        "--run-ignored",
        "only",
        "--no-fail-fast",
    ]
    .into_iter()
    .map(String::from)
    .collect();
    nextest.push(format!("--test-threads={threads}"));
    nextest.extend(args.filter.iter().cloned());
    let timings = crate::scenario::timings_path();
    if let Some(d) = timings.parent() {
        std::fs::create_dir_all(d)?;
    }
    let _ = std::fs::remove_file(&timings);
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let status = duct::cmd(cargo, &nextest)
        .dir(crate::workspace_root())
        .env("KEXEC_RS_ACCEL", accel_name)
        .env("KEXEC_RS_CACHE", cache.root())
        .unchecked()
        .run()
        .context("cannot run cargo nextest (install it: cargo install cargo-nextest)")?;
    print_timings(&timings);
    eprintln!("vm-test: finished in {:.1} s", t0.elapsed().as_secs_f64());
    if !status.status.success() {
        bail!("some VM scenarios failed (their serial logs and QMP transcripts are listed above)");
    }
    Ok(())
}

fn median(mut v: Vec<f64>) -> Option<f64> {
    v.sort_by(f64::total_cmp);
    v.get(v.len() / 2).copied()
}

/// Prints the per-scenario timings the scenarios recorded, and the medians.
fn print_timings(path: &std::path::Path) {
    let Ok(text) = std::fs::read_to_string(path) else {
        return;
    };
    let mut rows: Vec<crate::scenario::Timing> = text
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect();
    if rows.is_empty() {
        return;
    }
    rows.sort_by(|a, b| a.scenario.cmp(&b.scenario));
    eprintln!("vm-test: timings (QEMU start -> console ready; `kexec -e` -> next kernel ready)");
    for r in &rows {
        let kexec: Vec<String> = r.kexec_s.iter().map(|k| format!("{k:.1}")).collect();
        eprintln!(
            "  {:<48} {:<6} boot {:>5} s  kexec {:>5} s  total {:>5.1} s",
            r.scenario,
            if r.passed { "ok" } else { "FAILED" },
            r.boot_s
                .map(|b| format!("{b:.1}"))
                .unwrap_or_else(|| "-".into()),
            if kexec.is_empty() {
                "-".into()
            } else {
                kexec.join(",")
            },
            r.total_s
        );
    }
    let boots = median(rows.iter().filter_map(|r| r.boot_s).collect());
    let kexecs = median(
        rows.iter()
            .flat_map(|r| r.kexec_s.iter().copied())
            .collect(),
    );
    if let (Some(b), Some(k)) = (boots, kexecs) {
        eprintln!(
            "vm-test: median boot {b:.1} s, median kexec reboot {k:.1} s over {} scenario(s)",
            rows.len()
        );
    }
}
