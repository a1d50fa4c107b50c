//! The benchmark's rows as data: what each measures, which row it is compared with, and the
//! goal (if any) the ratio must meet. Everything else (booting, measuring, reporting) is driven
//! from this list, so a row is added in one place.

use crate::scenario::Impl;

/// How a kernel is loaded: the same flags for the project's `kexec` and kexec-tools'.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// `-s`: `kexec_file_load`, the kernel builds the segments and checks them.
    File,
    /// `-c`: `kexec_load`, userspace builds the segments; the purgatory checks their SHA-256.
    Classic,
    /// `-c -i`: `kexec_load` without the purgatory's digest check.
    ClassicNoChecks,
}

impl Mode {
    pub fn flags(self) -> &'static str {
        match self {
            Mode::File => "-s",
            Mode::Classic => "-c",
            Mode::ClassicNoChecks => "-c -i",
        }
    }
    fn slug(self) -> &'static str {
        match self {
            Mode::File => "s",
            Mode::Classic => "c",
            Mode::ClassicNoChecks => "c-i",
        }
    }
}

/// A reboot path, from the `reboot` command to the next userspace.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flow {
    /// No kexec: OpenRC shutdown, reset, SeaBIOS, kernel from fw_cfg.
    SeaBios,
    /// The same with OVMF (UEFI) firmware.
    Ovmf,
    /// The Alpine wiki's two OpenRC services with kexec-tools' `kexec`.
    Wiki,
    /// The project's services (`openrc/`) with the project's `kexec`.
    Services,
    /// The project's services with `KEXEC_PRELOAD=yes` (loaded at boot, not at shutdown).
    ServicesPreload,
}

impl Flow {
    /// Whether this reboot must go through kexec (no firmware reset).
    pub fn is_kexec(self) -> bool {
        !matches!(self, Flow::SeaBios | Flow::Ovmf)
    }
}

/// What a row measures.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// `kexec MODE -l KERNEL --initrd INITRD --append …`, timed in the guest.
    Load(Impl, Mode),
    /// `cat KERNEL INITRD > /dev/null`: reading the same bytes, the least a load can cost.
    Floor,
    /// `kexec -e` → the next kernel's userspace, minus that kernel's uptime.
    Transition(Impl, Mode),
    /// QEMU start → userspace, minus the kernel's uptime.
    ColdBoot,
    /// `reboot` → the next userspace, on the busybox-init + OpenRC guest.
    Reboot(Flow),
    /// One `kexec --version`, averaged over many runs.
    Startup(Impl),
}

/// A ratio this row reports: its median over the median of `against`.
#[derive(Debug, Clone, PartialEq)]
pub struct Compare {
    pub against: String,
    /// The ratio must be at most this (a goal from the issue), or `None` for information.
    pub goal: Option<f64>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Row {
    /// Stable id, also what the row filter matches (`load.ours-c`).
    pub id: String,
    pub label: String,
    pub kind: Kind,
    pub compare: Vec<Compare>,
}

fn imp_slug(i: Impl) -> &'static str {
    match i {
        Impl::Ours => "ours",
        Impl::KexecTools => "tools",
    }
}

fn cmp(against: &str, goal: Option<f64>) -> Compare {
    Compare {
        against: against.into(),
        goal,
    }
}

const MODES: [Mode; 3] = [Mode::File, Mode::Classic, Mode::ClassicNoChecks];

/// Every row, in the order of the report.
pub fn all() -> Vec<Row> {
    let mut rows = Vec::new();
    for (group, make) in [
        ("load", Kind::Load as fn(Impl, Mode) -> Kind),
        ("dark", Kind::Transition as fn(Impl, Mode) -> Kind),
    ] {
        for imp in [Impl::Ours, Impl::KexecTools] {
            for m in MODES {
                let id = format!("{group}.{}-{}", imp_slug(imp), m.slug());
                let tools = format!("{group}.tools-{}", m.slug());
                // Goals from the issue: every load mode ≤ 1.0×; the transition with and
                // without checks (classic) ≤ 1.0×. The file path's transition is the
                // kernel's own purgatory either way: its ratio is information.
                let goal = match (imp, group, m) {
                    (Impl::KexecTools, _, _) => None,
                    (_, "dark", Mode::File) => None,
                    _ => Some(1.0),
                };
                let compare = if imp == Impl::Ours {
                    vec![cmp(&tools, goal)]
                } else {
                    Vec::new()
                };
                rows.push(Row {
                    id,
                    label: format!("{} {} ({group})", imp.name(), m.flags()),
                    kind: make(imp, m),
                    compare,
                });
            }
        }
        if group == "load" {
            rows.push(Row {
                id: "load.floor".into(),
                label: "cat kernel initrd > /dev/null (floor)".into(),
                kind: Kind::Floor,
                compare: Vec::new(),
            });
        } else {
            rows.push(Row {
                id: "dark.cold-boot".into(),
                label: "cold boot: QEMU start -> userspace - uptime".into(),
                kind: Kind::ColdBoot,
                compare: Vec::new(),
            });
        }
    }
    let reboot = |id: &str, label: &str, flow, compare| Row {
        id: format!("reboot.{id}"),
        label: label.into(),
        kind: Kind::Reboot(flow),
        compare,
    };
    rows.push(reboot(
        "seabios",
        "firmware reboot, SeaBIOS",
        Flow::SeaBios,
        vec![],
    ));
    rows.push(reboot(
        "ovmf",
        "firmware reboot, OVMF (UEFI)",
        Flow::Ovmf,
        vec![],
    ));
    rows.push(reboot(
        "wiki",
        "Alpine wiki services + kexec-tools",
        Flow::Wiki,
        vec![cmp("reboot.ovmf", None)],
    ));
    rows.push(reboot(
        "services",
        "project services + kexec-rs",
        Flow::Services,
        vec![cmp("reboot.wiki", None), cmp("reboot.ovmf", None)],
    ));
    rows.push(reboot(
        "services-preload",
        "project services, KEXEC_PRELOAD=yes",
        Flow::ServicesPreload,
        vec![
            cmp("reboot.wiki", Some(0.85)),
            cmp("reboot.ovmf", Some(0.5)),
        ],
    ));
    for imp in [Impl::Ours, Impl::KexecTools] {
        rows.push(Row {
            id: format!("startup.{}", imp_slug(imp)),
            label: format!("{} --version (one run)", imp.name()),
            kind: Kind::Startup(imp),
            compare: if imp == Impl::Ours {
                vec![cmp("startup.tools", None)]
            } else {
                Vec::new()
            },
        });
    }
    rows
}

/// The rows whose id contains `filter` (all rows without one).
pub fn select(filter: Option<&str>) -> Vec<Row> {
    all()
        .into_iter()
        .filter(|r| filter.is_none_or(|f| r.id.contains(f)))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_comparison_names_a_row() {
        let rows = all();
        for r in &rows {
            for c in &r.compare {
                assert!(
                    rows.iter().any(|o| o.id == c.against),
                    "{} compares with unknown {}",
                    r.id,
                    c.against
                );
            }
        }
        let mut ids: Vec<_> = rows.iter().map(|r| &r.id).collect();
        ids.dedup();
        assert_eq!(ids.len(), rows.len(), "row ids are unique");
    }

    #[test]
    fn goals_from_the_issue() {
        let rows = all();
        let goal = |id: &str, against: &str| {
            rows.iter()
                .find(|r| r.id == id)
                .and_then(|r| r.compare.iter().find(|c| c.against == against))
                .and_then(|c| c.goal)
        };
        assert_eq!(goal("load.ours-s", "load.tools-s"), Some(1.0));
        assert_eq!(goal("load.ours-c-i", "load.tools-c-i"), Some(1.0));
        assert_eq!(goal("dark.ours-c", "dark.tools-c"), Some(1.0));
        assert_eq!(goal("reboot.services-preload", "reboot.wiki"), Some(0.85));
        assert_eq!(goal("reboot.services-preload", "reboot.ovmf"), Some(0.5));
        assert_eq!(select(Some("reboot.")).len(), 5);
    }
}
