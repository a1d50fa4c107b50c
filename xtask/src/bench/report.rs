//! The results: every row's samples and summary, the ratios against its reference rows with
//! their goals, as a Markdown table on stdout (pasted as-is into docs/performance.md) and as
//! JSON in `target/bench/<date>.json`.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use serde::Serialize;

use super::rows::{Kind, Row};
use super::stats::{summarize, Summary};

/// What one row measured.
#[derive(Debug, Clone)]
pub struct Measured {
    pub row: Row,
    /// Seconds.
    pub samples: Vec<f64>,
    /// Reboot rows: each sample minus the next kernel's uptime at its ready line (the time
    /// spent outside the next kernel: shutdown, handover, firmware).
    pub outside: Vec<f64>,
    /// Rows that subtract a kernel's uptime: that kernel's clock rate against the host's,
    /// per sample (corrected for when it is off by more than 5 %).
    pub clock_rates: Vec<f64>,
    pub errors: Vec<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Ratio {
    pub against: String,
    pub value: f64,
    pub goal: Option<f64>,
    pub met: Option<bool>,
}

#[derive(Debug, Clone, Serialize)]
pub struct RowReport {
    pub id: String,
    pub label: String,
    pub unit: &'static str,
    pub samples: Vec<f64>,
    pub summary: Option<Summary>,
    /// Reboot rows: the latency minus the next kernel's uptime, per sample and summarized.
    pub outside_next_kernel: Vec<f64>,
    pub outside_summary: Option<Summary>,
    pub guest_clock_rates: Vec<f64>,
    pub ratios: Vec<Ratio>,
    pub errors: Vec<String>,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct Machine {
    pub cpus: usize,
    pub cpu: String,
    pub host_kernel: String,
    pub accel: String,
    pub loadavg_start: String,
    pub loadavg_end: String,
    /// `/proc/pressure/cpu` (share of time runnable tasks waited for a CPU) at start and end.
    pub cpu_pressure_start: String,
    pub cpu_pressure_end: String,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct Binary {
    pub path: String,
    pub bytes: u64,
    pub linkage: String,
    /// The shared libraries it needs (dynamic binaries), summed.
    pub libs_bytes: u64,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct Report {
    pub date: String,
    pub quick: bool,
    pub reps: u32,
    pub reboot_reps: u32,
    pub machine: Machine,
    pub guest_kernel: String,
    pub guest_clock: String,
    pub kexec_rs: Binary,
    pub kexec_tools: Binary,
    pub rows: Vec<RowReport>,
}

/// Seconds shown in the row's unit.
fn scale(kind: Kind) -> (&'static str, f64) {
    match kind {
        Kind::Startup(_) => ("ms", 1e3),
        _ => ("s", 1.0),
    }
}

/// Summaries and ratios (each against the median of the named row of the same run).
pub fn rows(measured: &[Measured]) -> Vec<RowReport> {
    let median = |id: &str| {
        measured
            .iter()
            .find(|m| m.row.id == id)
            .and_then(|m| summarize(&m.samples))
            .map(|s| s.median)
    };
    measured
        .iter()
        .map(|m| {
            let summary = summarize(&m.samples);
            let ratios = m
                .row
                .compare
                .iter()
                .filter_map(|c| {
                    let ours = summary?.median;
                    let theirs = median(&c.against).filter(|t| *t > 0.0)?;
                    let value = ours / theirs;
                    Some(Ratio {
                        against: c.against.clone(),
                        value,
                        goal: c.goal,
                        met: c.goal.map(|g| value <= g),
                    })
                })
                .collect();
            RowReport {
                id: m.row.id.clone(),
                label: m.row.label.clone(),
                unit: scale(m.row.kind).0,
                samples: m.samples.clone(),
                summary,
                outside_next_kernel: m.outside.clone(),
                outside_summary: summarize(&m.outside),
                guest_clock_rates: m.clock_rates.clone(),
                ratios,
                errors: m.errors.clone(),
            }
        })
        .collect()
}

/// The Markdown table.
pub fn table(report: &Report, measured: &[Measured]) -> String {
    let mut t = String::new();
    let _ = writeln!(
        t,
        "| row | what | n | median | min | max | outside next kernel | ratio (goal) |"
    );
    let _ = writeln!(t, "|---|---|--:|--:|--:|--:|--:|---|");
    for (r, m) in report.rows.iter().zip(measured) {
        let (unit, k) = scale(m.row.kind);
        let (n, med, min, max) = match r.summary {
            Some(s) => (
                s.n.to_string(),
                format!("{:.3} {unit}", s.median * k),
                format!("{:.3}", s.min * k),
                format!("{:.3}", s.max * k),
            ),
            None => ("0".into(), "—".into(), "—".into(), "—".into()),
        };
        let mut ratio: Vec<String> = r
            .ratios
            .iter()
            .map(|x| {
                let goal = match (x.goal, x.met) {
                    (Some(g), Some(true)) => format!(" (≤ {g:.2} met)"),
                    (Some(g), _) => format!(" (≤ {g:.2} **NOT met**)"),
                    _ => String::new(),
                };
                format!("{:.2}× {}{goal}", x.value, x.against)
            })
            .collect();
        let off = r
            .guest_clock_rates
            .iter()
            .filter(|x| (**x - 1.0).abs() > 0.05)
            .count();
        if off > 0 {
            ratio.push(format!(
                "{off} sample(s) with a miscalibrated guest clock, corrected"
            ));
        }
        if !r.errors.is_empty() {
            ratio.push(format!("{} failed sample(s)", r.errors.len()));
        }
        let outside = r
            .outside_summary
            .map_or(String::new(), |s| format!("{:.3} {unit}", s.median * k));
        let _ = writeln!(
            t,
            "| {} | {} | {n} | {med} | {min} | {max} | {outside} | {} |",
            r.id,
            r.label,
            ratio.join("; ")
        );
    }
    let b = |x: &Binary| {
        if x.libs_bytes > 0 {
            format!(
                "{} bytes, {} (+ {} bytes of shared libraries)",
                x.bytes, x.linkage, x.libs_bytes
            )
        } else {
            format!("{} bytes, {}", x.bytes, x.linkage)
        }
    };
    let _ = writeln!(
        t,
        "\nBinary size: kexec-rs {}; kexec-tools {}.",
        b(&report.kexec_rs),
        b(&report.kexec_tools)
    );
    t
}

/// Writes the JSON into `dir`; returns its path.
pub fn write_json(report: &Report, dir: &Path) -> Result<PathBuf> {
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let path = dir.join(format!("{}.json", report.date));
    let text = serde_json::to_string_pretty(report)?;
    std::fs::write(&path, text + "\n")
        .with_context(|| format!("cannot write {}", path.display()))?;
    Ok(path)
}

/// `YYYY-MM-DDTHHMMSSZ` for a Unix time (UTC): the status record's clock, made file-name safe.
pub fn stamp(unix: u64) -> String {
    // `YYYY-MM-DD HH:MM:SS UTC`, fixed width.
    let t = kexec::status::format_utc(unix);
    format!("{}T{}{}{}Z", &t[0..10], &t[11..13], &t[14..16], &t[17..19])
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bench::rows;

    #[test]
    fn stamps() {
        assert_eq!(stamp(0), "1970-01-01T000000Z");
        assert_eq!(stamp(951_782_400), "2000-02-29T000000Z");
        assert_eq!(stamp(1_795_702_717), "2026-11-26T141837Z");
    }

    #[test]
    fn ratios_within_the_run() {
        let all = rows::all();
        let get = |id: &str| all.iter().find(|r| r.id == id).unwrap().clone();
        let measured = vec![
            Measured {
                row: get("load.ours-c"),
                samples: vec![1.0, 0.8, 0.9],
                outside: vec![],
                clock_rates: vec![],
                errors: vec![],
            },
            Measured {
                row: get("load.tools-c"),
                samples: vec![2.0, 1.0, 1.0],
                outside: vec![],
                clock_rates: vec![],
                errors: vec![],
            },
        ];
        let r = rows(&measured);
        assert_eq!(r[0].ratios.len(), 1);
        assert!((r[0].ratios[0].value - 0.9).abs() < 1e-9);
        assert_eq!(r[0].ratios[0].met, Some(true));
        // The reference row filtered out: no ratio rather than a wrong one.
        assert!(rows(&measured[..1])[0].ratios.is_empty());
        let report = Report {
            rows: r,
            ..Report::default()
        };
        let t = table(&report, &measured);
        assert!(t.contains("| load.ours-c |") && t.contains("0.90× load.tools-c (≤ 1.00 met)"));
    }
}
