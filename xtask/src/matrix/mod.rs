//! `cargo xtask matrix`: does kexec still load, boot and come back on these kernels?
//!
//! For each kernel of the matrix ([`def`], `vm/matrix.toml`; resolved by [`kernels`]): the
//! header gate and config facts ([`facts`]), then each scenario in a guest of its own
//! ([`scenarios`]), then kexec into the next newer kernel and the next older one. Results go to
//! a table on stdout and Markdown + JSON in `target/matrix/` ([`report`]). A kernel that is
//! broken, panics or hangs fails its own cells with the reason and the run goes on; the exit
//! status says whether everything passed.

pub mod def;
pub mod facts;
pub mod kernels;
pub mod report;
pub mod scenarios;

use std::collections::VecDeque;
use std::path::PathBuf;
use std::sync::Mutex;
use std::time::Instant;

use anyhow::{bail, Context, Result};

use crate::cache::Cache;
use crate::fetch::Source;
use def::{Matrix, Scenario};
use kernels::{Kernel, Selection};
use report::{Report, Row};
use scenarios::{Cell, Job, Outcome};

#[derive(Debug, Clone, clap::Args)]
pub struct MatrixArgs {
    /// Test the N newest kernels of each Debian series (default: the definition's `latest`).
    #[arg(long)]
    pub latest: Option<usize>,
    /// Kernel sources (default: the definition's `default_sources`; `local` with --kernel).
    #[arg(long, value_enum, value_delimiter = ',')]
    pub source: Vec<Source>,
    /// Alpine branch (`v3.23`, `latest-stable`) or Debian series (`6.1`, `6.12`).
    #[arg(long)]
    pub release: Vec<String>,
    /// Alpine kernel flavor (`lts`, `virt`).
    #[arg(long)]
    pub flavor: Vec<String>,
    /// Alpine mirror base URL (default: KEXEC_RS_ALPINE_MIRROR or /etc/apk/repositories).
    #[arg(long)]
    pub mirror: Option<String>,
    /// A kernel you built (bzImage): tested as a `local` kernel.
    #[arg(long)]
    pub kernel: Option<PathBuf>,
    /// Its initramfs: loaded as the first initrd of its kexec scenarios.
    #[arg(long, requires = "kernel")]
    pub initrd: Option<PathBuf>,
    /// Run only these scenarios (file, classic, openrc, crash, cross; comma-separated).
    #[arg(long, value_delimiter = ',')]
    pub only: Vec<String>,
    /// Header and config facts only: boot nothing.
    #[arg(long)]
    pub facts_only: bool,
    /// Accept new or changed header snapshots (vm/matrix-snapshots/).
    #[arg(long)]
    pub accept: bool,
    /// Guests at a time (each is one TCG vCPU thread; the machines have 2 cores).
    #[arg(long, default_value = "1")]
    pub jobs: usize,
    /// The matrix definition.
    #[arg(long, default_value_os_t = def::default_path())]
    pub matrix: PathBuf,
    /// Where the header snapshots live.
    #[arg(long, default_value_os_t = crate::workspace_root().join("vm/matrix-snapshots"))]
    pub snapshots: PathBuf,
    /// Where the report and the failed runs' logs go.
    #[arg(long, default_value_os_t = crate::workspace_root().join("target/matrix"))]
    pub out: PathBuf,
}

/// Runs the matrix; `Ok(report)` whether or not rows failed (see `report.passed`).
pub fn run(args: &MatrixArgs, cache: &Cache) -> Result<Report> {
    let t0 = Instant::now();
    let m = Matrix::load(&args.matrix)?;
    let mut wanted: Vec<Scenario> = m.scenarios.clone();
    if !args.only.is_empty() {
        let only = args
            .only
            .iter()
            .map(|o| {
                Scenario::parse(o).with_context(|| {
                    format!("--only {o}: unknown scenario; known: {}", Scenario::known())
                })
            })
            .collect::<Result<Vec<_>>>()?;
        wanted.retain(|s| only.contains(s));
    }
    if args.facts_only {
        wanted.clear();
    }
    if args.jobs == 0 {
        bail!("--jobs 0: at least one guest must run; use --facts-only to boot nothing");
    }
    let sel = Selection {
        sources: args.source.clone(),
        latest: args.latest,
        releases: args.release.clone(),
        flavors: args.flavor.clone(),
        mirror: args.mirror.clone(),
        kernel: args.kernel.clone(),
        initrd: args.initrd.clone(),
    };
    let (mut ks, unresolved) = kernels::resolve(cache, &m, &sel);
    kernels::by_version(&mut ks);

    // The header gate, one kernel at a time (the snapshot check swaps the panic hook).
    let snaps = facts::Snapshots {
        dir: args.snapshots.clone(),
        accept: args.accept,
    };
    let mut rows: Vec<Row> = unresolved
        .into_iter()
        .map(|(label, why)| Row {
            kernel: label,
            release: None,
            package: None,
            package_version: None,
            path: None,
            snapshot: None,
            header: Outcome::Fail(why),
            header_facts: None,
            config: None,
            cells: vec![],
        })
        .collect();
    let mut bootable = Vec::new();
    let first_kernel_row = rows.len();
    for k in &mut ks {
        let (header, facts) = match facts::header(&k.entry.kernel, &k.shown) {
            Ok(h) => match snaps.check(&k.snapshot, &h) {
                Ok(()) => (Outcome::Pass, Some(h)),
                Err(why) => (Outcome::Fail(why), Some(h)),
            },
            Err(why) => (Outcome::Fail(why), None),
        };
        // What `uname -r` must say once it runs: the image's own version string.
        if let Some(v) = facts
            .as_ref()
            .and_then(|h| h.kernel_version.as_deref())
            .and_then(|v| v.split_whitespace().next())
        {
            k.uname = v.to_string();
        }
        // A changed layout fails the row but the kernel is still booted: the diff is for a
        // human, the boot tells whether kexec copes with it.
        bootable.push(facts.is_some());
        rows.push(Row {
            kernel: k.label.clone(),
            release: Some(k.entry.version.clone()),
            package: Some(k.entry.package.clone()),
            package_version: Some(k.entry.package_version.clone()),
            path: Some(k.shown.clone()),
            snapshot: Some(k.snapshot.clone()),
            header,
            header_facts: facts,
            config: Some(k.config.clone()),
            cells: vec![],
        });
    }

    // The jobs: each scenario per kernel, then the cross-version pairs.
    let mut columns: Vec<String> = vec!["header".into()];
    let mut jobs: Vec<(usize, Job)> = Vec::new();
    let mut skipped: Vec<(usize, Cell)> = Vec::new();
    for s in wanted.iter().filter(|s| **s != Scenario::Cross) {
        columns.push(s.name().into());
        for (i, k) in ks.iter().enumerate() {
            if !bootable[i] {
                continue;
            }
            if let Some(why) = scenarios::skip_reason(*s, k) {
                skipped.push((i, skip(s.name(), &why)));
            } else {
                jobs.push((i, Job::On { k: i, s: *s }));
            }
        }
    }
    if wanted.contains(&Scenario::Cross) {
        columns.push("cross-up".into());
        columns.push("cross-down".into());
        for i in 0..ks.len() {
            for (to, dir) in [(i + 1, "up"), (i.wrapping_sub(1), "down")] {
                let Some(other) = ks.get(to) else { continue };
                if !bootable[i] {
                    continue;
                }
                let name = format!("cross-{dir}");
                let why = if !bootable[to] {
                    Some(format!("{} failed its header check", other.label))
                } else {
                    scenarios::skip_reason(Scenario::Cross, &ks[i])
                        .or_else(|| scenarios::skip_reason(Scenario::Cross, other))
                };
                match why {
                    Some(w) => skipped.push((i, skip(&name, &w))),
                    None => jobs.push((i, Job::Cross { from: i, to })),
                }
            }
        }
    }

    // Each guest is one TCG vCPU thread busy all the time: more guests than cores only makes
    // every guest slower (and deadlines likelier to pass).
    let cores = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1);
    if args.jobs > cores {
        eprintln!(
            "matrix: --jobs {} capped at {cores}, the number of cores (one TCG guest per core)",
            args.jobs
        );
    }
    let jobs_n = args.jobs.min(cores).min(jobs.len()).max(1);
    if !jobs.is_empty() {
        prepare(cache)?;
        eprintln!(
            "matrix: {} kernel(s), {} guest(s) to boot, {jobs_n} at a time",
            ks.len(),
            jobs.len()
        );
    }
    let done = run_jobs(jobs, &ks, args, jobs_n);
    for (i, cell) in skipped.into_iter().chain(done) {
        rows[first_kernel_row + i].cells.push(cell);
    }
    for r in &mut rows {
        r.cells.sort_by_key(|c| {
            columns
                .iter()
                .position(|n| *n == c.scenario)
                .unwrap_or(usize::MAX)
        });
    }
    let passed = !rows.is_empty() && rows.iter().all(|r| !r.failed());
    Ok(Report {
        schema: report::SCHEMA,
        command: command_line(),
        seconds: t0.elapsed().as_secs_f64(),
        jobs: jobs_n,
        columns,
        rows,
        passed,
    })
}

fn skip(name: &str, why: &str) -> Cell {
    Cell {
        scenario: name.into(),
        outcome: Outcome::Skip(why.into()),
        seconds: 0.0,
        artifacts: None,
        target: None,
        no_boot: false,
    }
}

fn command_line() -> String {
    let args: Vec<String> = std::env::args().skip(1).collect();
    format!("cargo xtask {}", args.join(" "))
}

/// What booting needs: host tools, the Debian guest userland, the guest's static binaries.
fn prepare(cache: &Cache) -> Result<()> {
    crate::tools::ensure(true)?;
    let have = crate::fetch::read_userland(cache.root())
        .ok()
        .is_some_and(|u| {
            u.iter()
                .any(|u| u.role == "kexec-tools" && u.source == "debian")
        });
    if !have {
        eprintln!("matrix: fetching the Debian guest userland (the cache has none)");
        let fa = crate::fetch::FetchArgs::debian_x86_64();
        crate::fetch::run(cache, &fa)?;
    }
    let bins = crate::guest::build_binaries()?;
    if let Err(why) = bins.ours {
        bail!("the project's kexec cannot be built for the guests, so no scenario can run: {why}");
    }
    Ok(())
}

/// Runs `jobs` on `n` worker threads; a kernel whose guest never came up has its remaining
/// jobs skipped (they would only wait for the same deadline again).
fn run_jobs(
    jobs: Vec<(usize, Job)>,
    ks: &[Kernel],
    args: &MatrixArgs,
    n: usize,
) -> Vec<(usize, Cell)> {
    let total = jobs.len();
    let queue = Mutex::new(jobs.into_iter().enumerate().collect::<VecDeque<_>>());
    let dead: Mutex<Vec<(usize, String)>> = Mutex::new(Vec::new());
    let out = Mutex::new(Vec::new());
    std::thread::scope(|s| {
        for _ in 0..n {
            s.spawn(|| loop {
                let next = queue.lock().unwrap_or_else(|p| p.into_inner()).pop_front();
                let Some((seq, (i, job))) = next else { return };
                let k = &ks[i];
                let col = match &job {
                    Job::On { s, .. } => s.name().to_string(),
                    Job::Cross { from, to } => {
                        format!("cross-{}", if to > from { "up" } else { "down" })
                    }
                };
                let gone = dead
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .iter()
                    .find(|(d, _)| *d == i)
                    .map(|(_, w)| w.clone());
                let cell = if let Some(where_) = gone {
                    skip(
                        &col,
                        &format!("not run: the kernel did not boot in {where_}"),
                    )
                } else {
                    let slug: String = format!("{}-{col}", k.entry.name)
                        .chars()
                        .map(|c| {
                            if c.is_ascii_alphanumeric() || c == '.' || c == '-' {
                                c
                            } else {
                                '_'
                            }
                        })
                        .collect();
                    eprintln!("matrix: [{}/{total}] {} / {col} …", seq + 1, k.label);
                    let cell =
                        scenarios::run_job(&job, ks, &args.out.join("runs").join(&slug), &slug);
                    eprintln!(
                        "matrix: [{}/{total}] {} / {col}: {} in {:.0} s",
                        seq + 1,
                        k.label,
                        match &cell.outcome {
                            Outcome::Pass => "pass".to_string(),
                            Outcome::Fail(w) => format!("FAIL ({w})"),
                            Outcome::Skip(w) => format!("skip ({w})"),
                        },
                        cell.seconds
                    );
                    if cell.no_boot {
                        dead.lock()
                            .unwrap_or_else(|p| p.into_inner())
                            .push((i, col.clone()));
                    }
                    cell
                };
                out.lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .push((i, cell));
            });
        }
    });
    out.into_inner().unwrap_or_else(|p| p.into_inner())
}

/// `cargo xtask matrix`: runs, prints the table, writes the report; errors when a row failed.
pub fn main(args: &MatrixArgs) -> Result<()> {
    let cache = Cache::open(crate::cache::default_root())?;
    let report = run(args, &cache)?;
    print!("{}", report.text());
    let (md, js) = report
        .write(&args.out)
        .with_context(|| format!("cannot write the report into {}", args.out.display()))?;
    eprintln!("matrix: report in {} and {}", md.display(), js.display());
    if !report.passed {
        bail!("the kernel matrix failed (see the table above)");
    }
    Ok(())
}
