//! The matrix definition, `vm/matrix.toml`: which kernels to test (by source) and which
//! scenarios to run on each.
//!
//! A file rather than code so a user adds a kernel series or drops a scenario without touching
//! Rust; the command line then narrows it (`--source`, `--latest`, `--only`, …).

use std::path::{Path, PathBuf};

use serde::Deserialize;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("cannot read the matrix definition {path}: {source}; restore it from git or pass --matrix PATH")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path} is not a valid matrix definition: {message}; fix the TOML (see the comments in vm/matrix.toml)")]
    Parse { path: PathBuf, message: String },
    #[error("{path}: unknown scenario {name:?}; known scenarios are {known}")]
    UnknownScenario {
        path: PathBuf,
        name: String,
        known: String,
    },
}

/// What runs on each kernel. `Cross` is the pairwise kexec between consecutive kernels.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Scenario {
    File,
    Classic,
    Openrc,
    Crash,
    Cross,
}

impl Scenario {
    pub const ALL: [Scenario; 5] = [
        Scenario::File,
        Scenario::Classic,
        Scenario::Openrc,
        Scenario::Crash,
        Scenario::Cross,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Scenario::File => "file",
            Scenario::Classic => "classic",
            Scenario::Openrc => "openrc",
            Scenario::Crash => "crash",
            Scenario::Cross => "cross",
        }
    }

    pub fn parse(s: &str) -> Option<Scenario> {
        Scenario::ALL.into_iter().find(|x| x.name() == s)
    }

    pub fn known() -> String {
        Scenario::ALL.map(Scenario::name).join(", ")
    }
}

/// A Debian kernel series.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DebianSeries {
    /// The header snapshot every kernel of the series is compared with.
    pub snapshot: String,
    /// apt's regex for the package names of the series.
    pub pattern: String,
    /// Debian architecture (`amd64`).
    #[serde(default = "amd64")]
    pub arch: String,
    /// How many of the newest packages to test (`--latest` overrides).
    #[serde(default = "one")]
    pub latest: usize,
}

fn amd64() -> String {
    "amd64".into()
}
fn one() -> usize {
    1
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AlpineDef {
    #[serde(default)]
    pub releases: Vec<String>,
    #[serde(default)]
    pub flavors: Vec<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LocalDef {
    pub kernel: PathBuf,
    #[serde(default)]
    pub initrd: Option<PathBuf>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct Raw {
    #[serde(default)]
    default_sources: Vec<String>,
    #[serde(default)]
    scenarios: Vec<String>,
    #[serde(default)]
    debian: Vec<DebianSeries>,
    #[serde(default)]
    alpine: AlpineDef,
    #[serde(default)]
    local: Vec<LocalDef>,
}

/// A parsed and checked `vm/matrix.toml`.
#[derive(Debug, Clone)]
pub struct Matrix {
    pub default_sources: Vec<String>,
    pub scenarios: Vec<Scenario>,
    pub debian: Vec<DebianSeries>,
    pub alpine: AlpineDef,
    pub local: Vec<LocalDef>,
}

impl Matrix {
    pub fn load(path: &Path) -> Result<Matrix, Error> {
        let text = std::fs::read_to_string(path).map_err(|source| Error::Read {
            path: path.to_path_buf(),
            source,
        })?;
        Matrix::parse(&text, path)
    }

    pub fn parse(text: &str, path: &Path) -> Result<Matrix, Error> {
        let raw: Raw = toml::from_str(text).map_err(|e| Error::Parse {
            path: path.to_path_buf(),
            message: e.message().to_string(),
        })?;
        let scenarios = raw
            .scenarios
            .iter()
            .map(|s| {
                Scenario::parse(s).ok_or_else(|| Error::UnknownScenario {
                    path: path.to_path_buf(),
                    name: s.clone(),
                    known: Scenario::known(),
                })
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Matrix {
            default_sources: raw.default_sources,
            scenarios,
            debian: raw.debian,
            alpine: raw.alpine,
            local: raw.local,
        })
    }
}

/// The definition in the workspace.
pub fn default_path() -> PathBuf {
    crate::workspace_root().join("vm/matrix.toml")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_workspace_definition_parses() {
        let m = Matrix::load(&default_path()).unwrap();
        assert_eq!(m.scenarios, Scenario::ALL.to_vec());
        assert_eq!(m.debian.len(), 2);
        assert!(m.debian[0].pattern.starts_with("^linux-image-6\\.1\\.0-"));
        assert_eq!(m.alpine.flavors, vec!["lts", "virt"]);
    }

    #[test]
    fn unknown_scenarios_and_keys_are_named() {
        let e = Matrix::parse("scenarios = [\"fiel\"]", Path::new("m.toml")).unwrap_err();
        assert!(e.to_string().contains("\"fiel\""), "{e}");
        assert!(e.to_string().contains("classic"), "{e}");
        let e = Matrix::parse(
            "[[debian]]\nsnapshot = \"x\"\npatern = \"y\"",
            Path::new("m.toml"),
        )
        .unwrap_err();
        assert!(e.to_string().starts_with("m.toml is not a valid"), "{e}");
    }
}
