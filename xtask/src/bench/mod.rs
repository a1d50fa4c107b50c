//! `cargo xtask bench`: load time, kexec transition ("dark") time and reboot latency, for the
//! project's `kexec` and kexec-tools' side by side, against the floor and firmware reboots, in
//! one run on the same guests; every ratio is computed within the run, because the shared
//! machine's speed varies by ±30 % between runs.
//!
//! [`rows`] lists what is measured, [`measure`] takes one sample in a guest ([`layer`] adds
//! the OpenRC services the reboot rows need), [`stats`] summarizes, [`report`] prints the
//! table and writes the JSON. Repetitions are interleaved (rep 1 of every row, then rep 2, …)
//! so a slow phase of the machine hits all rows alike.

pub mod layer;
pub mod measure;
pub mod report;
pub mod rows;
pub mod stats;

use std::time::Instant;

use anyhow::{bail, Result};

use crate::scenario::{self, Impl};
use report::{Binary, Machine, Measured, Report};
use rows::Kind;

#[derive(Debug, Clone, clap::Args)]
pub struct Args {
    /// Fewer repetitions (3 per row instead of 5): a whole run in about ten minutes on an idle
    /// machine.
    #[arg(long)]
    pub quick: bool,
    /// Repetitions per row (default 5, or 3 with --quick).
    #[arg(long)]
    pub reps: Option<u32>,
    /// Only the rows whose id contains this, e.g. `load.`, `dark.ours`, `reboot.ovmf`.
    pub filter: Option<String>,
}

/// How many `kexec --version` runs one start-up sample averages.
const STARTUP_RUNS: u32 = 50;

struct Progress {
    done: usize,
    total: usize,
}

impl Progress {
    fn sample(&mut self, m: &mut Measured, rep: u32, reps: u32, r: Result<f64>) {
        self.done += 1;
        let head = format!(
            "bench: [{:>3}/{}] {} rep {}/{}",
            self.done,
            self.total,
            m.row.id,
            rep + 1,
            reps
        );
        match r {
            Ok(v) => {
                eprintln!("{head}: {v:.3} s");
                m.samples.push(v);
            }
            Err(e) => {
                eprintln!("{head}: FAILED: {e:#}");
                m.errors.push(format!("{e:#}"));
            }
        }
    }
}

/// The first line of `/proc/pressure/cpu` (empty where the kernel has no PSI).
fn cpu_pressure() -> String {
    std::fs::read_to_string("/proc/pressure/cpu")
        .unwrap_or_default()
        .lines()
        .next()
        .unwrap_or("")
        .to_string()
}

fn machine() -> Machine {
    let read = |p: &str| std::fs::read_to_string(p).unwrap_or_default();
    Machine {
        cpus: std::thread::available_parallelism().map_or(0, |n| n.get()),
        cpu: read("/proc/cpuinfo")
            .lines()
            .find_map(|l| l.strip_prefix("model name"))
            .map(|l| l.trim_start_matches([' ', '\t', ':']).to_string())
            .unwrap_or_default(),
        host_kernel: read("/proc/sys/kernel/osrelease").trim().to_string(),
        accel: String::new(),
        loadavg_start: read("/proc/loadavg").trim().to_string(),
        loadavg_end: String::new(),
        cpu_pressure_start: cpu_pressure(),
        cpu_pressure_end: String::new(),
    }
}

fn sizes() -> Result<(Binary, Binary)> {
    let bins = crate::guest::build_binaries()?;
    let user = crate::guest::Userland::from_manifest(&crate::fetch::read_userland(
        &crate::cache::default_root(),
    )?)?;
    let len = |p: &std::path::Path| std::fs::metadata(p).map_or(0, |m| m.len());
    let ours = match &bins.ours {
        Ok(p) => Binary {
            path: p.display().to_string(),
            bytes: len(p),
            linkage: "static".into(),
            libs_bytes: 0,
        },
        Err(why) => bail!("the project's kexec does not build: {why}"),
    };
    let libs = crate::guest::shared_libs(&user.kexec_tools, &user.libs)?;
    let tools = Binary {
        path: user.kexec_tools.display().to_string(),
        bytes: len(&user.kexec_tools),
        linkage: "dynamic".into(),
        libs_bytes: libs.iter().map(|(_, p)| len(p)).sum(),
    };
    Ok((ours, tools))
}

/// Runs the benchmark and prints its table; fails when a selected row has no sample.
pub fn run(args: &Args) -> Result<()> {
    let selected = rows::select(args.filter.as_deref());
    if selected.is_empty() {
        bail!(
            "no row matches {:?}; rows: {}",
            args.filter,
            rows::all()
                .iter()
                .map(|r| r.id.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        );
    }
    let reps = args.reps.unwrap_or(if args.quick { 3 } else { 5 }).max(1);
    // Reboot samples swing by a second or more (OpenRC under TCG), so they get as many
    // repetitions as the other rows: one sample cannot decide a 15 % goal.
    let reboot_reps = reps;
    let started = Instant::now();
    let unix = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let mut report = Report {
        date: report::stamp(unix),
        quick: args.quick,
        reps,
        reboot_reps,
        machine: machine(),
        ..Report::default()
    };
    let kernel = scenario::kernel()?;
    report.guest_kernel = kernel.version.clone();
    report.machine.accel =
        crate::qemu::resolve_accel(crate::qemu::Accel::Auto, Some(&kernel.kernel)).describe();
    (report.kexec_rs, report.kexec_tools) = sizes()?;

    let mut measured: Vec<Measured> = selected
        .into_iter()
        .map(|row| Measured {
            row,
            samples: Vec::new(),
            outside: Vec::new(),
            clock_rates: Vec::new(),
            errors: Vec::new(),
        })
        .collect();
    let is = |m: &Measured, f: fn(&Kind) -> bool| f(&m.row.kind);
    let in_load_guest = |k: &Kind| matches!(k, Kind::Load(..) | Kind::Floor | Kind::Startup(_));
    let dark = |k: &Kind| matches!(k, Kind::Transition(..));
    let cold = |k: &Kind| matches!(k, Kind::ColdBoot);
    let reboot = |k: &Kind| matches!(k, Kind::Reboot(_));
    let count = |f: fn(&Kind) -> bool| measured.iter().filter(|m| f(&m.row.kind)).count();
    let n_dark = count(dark);
    // Each transition boot is also a cold-boot sample.
    let n_cold = if count(cold) > 0 { n_dark.max(1) } else { 0 };
    let total = (count(in_load_guest) + n_dark + n_cold) * reps as usize
        + count(reboot) * reboot_reps as usize;
    let mut p = Progress { done: 0, total };
    eprintln!(
        "bench: {} row(s), {reps} rep(s) ({reboot_reps} for reboots), accel {}, load average {}",
        measured.len(),
        report.machine.accel,
        report.machine.loadavg_start
    );

    // Loads and start-up: one guest, every row per repetition, unloading in between.
    if measured.iter().any(|m| is(m, in_load_guest)) {
        match measure::boot_for_loads("bench-load") {
            Ok((mut run, clock)) => {
                report.guest_clock = clock.to_string();
                for rep in 0..reps {
                    for m in measured.iter_mut().filter(|m| in_load_guest(&m.row.kind)) {
                        let r = match m.row.kind {
                            Kind::Load(imp, mode) => measure::load_once(&mut run, imp, mode),
                            Kind::Floor => measure::floor_once(&mut run),
                            Kind::Startup(imp) => {
                                measure::startup_once(&mut run, imp, STARTUP_RUNS)
                            }
                            _ => continue,
                        };
                        p.sample(m, rep, reps, r);
                    }
                }
                measure::done_with(run);
            }
            Err(e) => {
                for m in measured.iter_mut().filter(|m| in_load_guest(&m.row.kind)) {
                    m.errors.push(format!("the load guest did not boot: {e:#}"));
                }
                eprintln!("bench: the load guest did not boot: {e:#}");
            }
        }
    }

    // Transitions: a fresh guest per sample (the kexec'd userland has no /boot to load
    // again); every fresh boot is also a cold-boot sample.
    let cold_idx = measured.iter().position(|m| cold(&m.row.kind));
    for rep in 0..reps {
        let mut cold_samples = Vec::new();
        for m in measured.iter_mut() {
            let Kind::Transition(imp, mode) = m.row.kind else {
                continue;
            };
            let name = format!("bench-{}-{}", m.row.id.replace('.', "-"), rep + 1);
            let r = measure::transition_once(&name, imp, mode);
            if let Ok(t) = &r {
                cold_samples.push((t.cold, t.first_rate));
                m.clock_rates.push(t.next_rate);
            }
            p.sample(m, rep, reps, r.map(|t| t.dark));
        }
        if let Some(ci) = cold_idx {
            // Every fresh boot above is a cold-boot sample; with no transition row selected,
            // boot once just for it.
            if cold_samples.is_empty() {
                let r = measure::transition_once(
                    &format!("bench-cold-{}", rep + 1),
                    Impl::KexecTools,
                    rows::Mode::ClassicNoChecks,
                );
                match r {
                    Ok(t) => cold_samples.push((t.cold, t.first_rate)),
                    Err(e) => p.sample(&mut measured[ci], rep, reps, Err(e)),
                }
            }
            for (cold, rate) in cold_samples {
                measured[ci].clock_rates.push(rate);
                p.sample(&mut measured[ci], rep, reps, Ok(cold));
            }
        }
    }

    // Reboots: a fresh guest per sample, set up for the flow.
    let work = crate::workspace_root().join("target/bench/work");
    for rep in 0..reboot_reps {
        for m in measured.iter_mut() {
            let Kind::Reboot(flow) = m.row.kind else {
                continue;
            };
            let name = format!("bench-{}-{}", m.row.id.replace('.', "-"), rep + 1);
            let r = measure::reboot_once(&name, flow, &work);
            if let Ok((_, outside, rate)) = &r {
                eprintln!(
                    "bench:         {} outside the next kernel: {outside:.3} s",
                    m.row.id
                );
                if outside.is_finite() {
                    m.outside.push(*outside);
                }
                m.clock_rates.push(*rate);
            }
            p.sample(m, rep, reboot_reps, r.map(|(total, _, _)| total));
        }
    }

    report.machine.loadavg_end = std::fs::read_to_string("/proc/loadavg")
        .unwrap_or_default()
        .trim()
        .to_string();
    report.machine.cpu_pressure_end = cpu_pressure();
    report.rows = report::rows(&measured);
    let table = report::table(&report, &measured);
    let json = report::write_json(&report, &crate::workspace_root().join("target/bench"))?;
    println!(
        "kexec-rs benchmark {} ({} CPUs, {}, accel {}; guest kernel {}; clock {}; {} rep(s), {} for reboots; load average {} -> {}; CPU pressure {} -> {})\n",
        report.date,
        report.machine.cpus,
        report.machine.cpu,
        report.machine.accel,
        report.guest_kernel,
        report.guest_clock,
        reps,
        reboot_reps,
        report.machine.loadavg_start,
        report.machine.loadavg_end,
        report.machine.cpu_pressure_start,
        report.machine.cpu_pressure_end
    );
    println!("{table}");
    eprintln!(
        "bench: done in {:.0} s; JSON: {}",
        started.elapsed().as_secs_f64(),
        json.display()
    );
    let empty: Vec<&str> = measured
        .iter()
        .filter(|m| m.samples.is_empty())
        .map(|m| m.row.id.as_str())
        .collect();
    if !empty.is_empty() {
        bail!(
            "no sample for row(s) {}: see the errors above",
            empty.join(", ")
        );
    }
    Ok(())
}
