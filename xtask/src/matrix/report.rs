//! The matrix report: a kernel × scenario table on stdout, and the same as Markdown and JSON in
//! `target/matrix/` (the JSON for tools and CI, the Markdown for a PR or an issue).

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use serde::Serialize;

use super::facts::{Config, Header};
use super::scenarios::{Cell, Outcome};

/// Version of the JSON report's layout.
pub const SCHEMA: u32 = 1;

/// One kernel's row.
#[derive(Debug, Clone, Serialize)]
pub struct Row {
    pub kernel: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub release: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub package: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub package_version: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub path: Option<PathBuf>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub snapshot: Option<String>,
    /// The header gate: pass, or fail with the image's one-line error / the snapshot diff.
    pub header: Outcome,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub header_facts: Option<Header>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub config: Option<Config>,
    pub cells: Vec<Cell>,
}

impl Row {
    pub fn failed(&self) -> bool {
        matches!(self.header, Outcome::Fail(_))
            || self
                .cells
                .iter()
                .any(|c| matches!(c.outcome, Outcome::Fail(_)))
    }

    /// Every outcome of the row with its column name (the header first).
    fn outcomes(&self) -> Vec<(String, &Outcome, Option<f64>)> {
        let mut v = vec![("header".to_string(), &self.header, None)];
        v.extend(
            self.cells
                .iter()
                .map(|c| (c.scenario.clone(), &c.outcome, Some(c.seconds))),
        );
        v
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub schema: u32,
    pub command: String,
    pub seconds: f64,
    pub jobs: usize,
    pub columns: Vec<String>,
    pub rows: Vec<Row>,
    pub passed: bool,
}

fn short(o: &Outcome, secs: Option<f64>) -> String {
    let t = secs.map(|s| format!(" {s:.0}s")).unwrap_or_default();
    match o {
        Outcome::Pass => format!("pass{t}"),
        Outcome::Fail(_) => format!("FAIL{t}"),
        Outcome::Skip(_) => "skip".into(),
    }
}

impl Report {
    fn grid(&self) -> Vec<Vec<String>> {
        let mut head = vec!["kernel".to_string()];
        head.extend(self.columns.iter().cloned());
        let mut rows = vec![head];
        for r in &self.rows {
            let mut line = vec![r.kernel.clone()];
            for col in &self.columns {
                let cell = r
                    .outcomes()
                    .into_iter()
                    .find(|(n, _, _)| n == col)
                    .map(|(_, o, s)| short(o, s))
                    .unwrap_or_else(|| "-".into());
                line.push(cell);
            }
            rows.push(line);
        }
        rows
    }

    /// Numbered notes: every failure and skip with its reason, and each kernel's config facts.
    fn notes(&self) -> Vec<String> {
        let mut n = Vec::new();
        for r in &self.rows {
            if let Some(c) = &r.config {
                n.push(format!("{}: {}", r.kernel, c.summary()));
            }
            for (col, o, _) in r.outcomes() {
                match o {
                    Outcome::Fail(why) => n.push(format!("{} / {col}: FAIL: {why}", r.kernel)),
                    Outcome::Skip(why) => n.push(format!("{} / {col}: skip: {why}", r.kernel)),
                    Outcome::Pass => {}
                }
            }
            for c in &r.cells {
                if let Some(t) = &c.target {
                    n.push(format!("{} / {}: kexec into {t}", r.kernel, c.scenario));
                }
                if let Some(a) = &c.artifacts {
                    n.push(format!(
                        "{} / {}: logs in {}",
                        r.kernel,
                        c.scenario,
                        a.display()
                    ));
                }
            }
        }
        n
    }

    /// The plain-text table for stdout.
    pub fn text(&self) -> String {
        let g = self.grid();
        let widths: Vec<usize> = (0..g[0].len())
            .map(|i| g.iter().map(|r| r[i].len()).max().unwrap_or(0))
            .collect();
        let mut s = String::new();
        for row in &g {
            let cells: Vec<String> = row
                .iter()
                .zip(&widths)
                .map(|(c, w)| format!("{c:<w$}"))
                .collect();
            let _ = writeln!(s, "{}", cells.join("  ").trim_end());
        }
        s.push('\n');
        for note in self.notes() {
            let _ = writeln!(s, "  {note}");
        }
        let _ = writeln!(
            s,
            "\nmatrix: {} in {:.0} s ({} guest(s) at a time)",
            if self.passed { "PASSED" } else { "FAILED" },
            self.seconds,
            self.jobs
        );
        s
    }

    pub fn markdown(&self) -> String {
        let g = self.grid();
        let mut s = format!(
            "# Kernel matrix\n\n`{}`: **{}** in {:.0} s ({} guest(s) at a time).\n\n",
            self.command,
            if self.passed { "passed" } else { "FAILED" },
            self.seconds,
            self.jobs
        );
        for (i, row) in g.iter().enumerate() {
            let _ = writeln!(s, "| {} |", row.join(" | "));
            if i == 0 {
                let _ = writeln!(s, "|{}", "---|".repeat(row.len()));
            }
        }
        s.push('\n');
        for note in self.notes() {
            let _ = writeln!(s, "- {}", note.replace('|', "\\|"));
        }
        s
    }

    /// Writes `matrix.md` and `matrix.json` into `dir`; returns their paths.
    pub fn write(&self, dir: &Path) -> std::io::Result<(PathBuf, PathBuf)> {
        std::fs::create_dir_all(dir)?;
        let md = dir.join("matrix.md");
        let js = dir.join("matrix.json");
        std::fs::write(&md, self.markdown())?;
        let json = serde_json::to_string_pretty(self).map_err(std::io::Error::other)?;
        std::fs::write(&js, json + "\n")?;
        Ok((md, js))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_marks_failures_and_lists_reasons() {
        let row = Row {
            kernel: "local cut".into(),
            release: None,
            package: None,
            package_version: None,
            path: None,
            snapshot: None,
            header: Outcome::Fail("cut: truncated".into()),
            header_facts: None,
            config: None,
            cells: vec![],
        };
        let r = Report {
            schema: SCHEMA,
            command: "cargo xtask matrix".into(),
            seconds: 1.0,
            jobs: 1,
            columns: vec!["header".into(), "file".into()],
            passed: false,
            rows: vec![row],
        };
        let t = r.text();
        let line = t.lines().find(|l| l.starts_with("local cut")).unwrap();
        assert_eq!(
            line.split_whitespace().collect::<Vec<_>>(),
            ["local", "cut", "FAIL", "-"]
        );
        assert!(
            t.contains("local cut / header: FAIL: cut: truncated"),
            "{t}"
        );
        assert!(r.markdown().contains("| local cut | FAIL | - |"));
    }
}
