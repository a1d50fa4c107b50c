//! Which kernels a matrix run tests: resolved from the definition and the command line through
//! the fetch module's sources (Debian series via apt's metadata, Alpine releases via a mirror's
//! release index, local files), without touching the cache's `kernels.json` (a matrix run is
//! not a fetch: it must not change which kernel the VM scenarios boot).
//!
//! A source or package that cannot be resolved does not stop the run: it becomes a failed row
//! with its reason, and the other kernels are still tested.

use std::path::{Path, PathBuf};

use crate::cache::Cache;
use crate::fetch::{self, debian, debver, FetchArgs, KernelEntry, Source};
use crate::guest::Profile;

use super::def::Matrix;
use super::facts::Config;

/// A kernel under test.
#[derive(Debug, Clone)]
pub struct Kernel {
    /// Row label: unique in a run.
    pub label: String,
    pub entry: KernelEntry,
    /// `uname -r` once it runs (the image's version string; the entry's version until read).
    pub uname: String,
    /// The path to name in messages (the user's path for local kernels).
    pub shown: PathBuf,
    /// The header snapshot it is compared with.
    pub snapshot: String,
    /// The guest profile its scenarios run on.
    pub profile: Profile,
    pub config: Config,
    /// A local kernel's own initramfs: loaded as the first initrd of its kexec scenarios.
    pub initrd: Option<PathBuf>,
}

/// What could not be resolved: (row label, one-line reason).
pub type Unresolved = (String, String);

/// The kernel selection of a run.
#[derive(Debug, Clone, Default)]
pub struct Selection {
    pub sources: Vec<Source>,
    pub latest: Option<usize>,
    pub releases: Vec<String>,
    pub flavors: Vec<String>,
    pub mirror: Option<String>,
    pub kernel: Option<PathBuf>,
    pub initrd: Option<PathBuf>,
}

/// Resolves the kernels of `m` narrowed by `sel`, fetching what the cache lacks.
pub fn resolve(cache: &Cache, m: &Matrix, sel: &Selection) -> (Vec<Kernel>, Vec<Unresolved>) {
    let mut out = Vec::new();
    let mut bad = Vec::new();
    let mut sources = if sel.kernel.is_some() && sel.sources.is_empty() {
        vec![Source::Local]
    } else if sel.sources.is_empty() {
        m.default_sources
            .iter()
            .filter_map(|s| match s.as_str() {
                "debian" => Some(Source::Debian),
                "alpine" => Some(Source::Alpine),
                "local" => Some(Source::Local),
                _ => None,
            })
            .collect()
    } else {
        sel.sources.clone()
    };
    if sel.kernel.is_some() && !sources.contains(&Source::Local) {
        sources.push(Source::Local);
    }
    for s in sources {
        match s {
            Source::Debian | Source::Auto => debian_kernels(cache, m, sel, &mut out, &mut bad),
            Source::Alpine => alpine_kernels(cache, m, sel, &mut out, &mut bad),
            Source::Local => local_kernels(cache, m, sel, &mut out, &mut bad),
        }
    }
    (out, bad)
}

fn debian_kernels(
    cache: &Cache,
    m: &Matrix,
    sel: &Selection,
    out: &mut Vec<Kernel>,
    bad: &mut Vec<Unresolved>,
) {
    if let Err(e) = debian::ensure_lists() {
        bad.push(("debian".into(), format!("{e:#}")));
        return;
    }
    for series in &m.debian {
        if !sel.releases.is_empty()
            && !sel
                .releases
                .iter()
                .any(|r| series.snapshot.contains(&format!("-{r}-")))
        {
            continue;
        }
        let n = sel.latest.unwrap_or(series.latest);
        let found = match debian::newest_n(&series.pattern, &series.arch, n) {
            Ok(f) if f.is_empty() => Err(format!("apt knows no package matching {} for {}; check apt's sources and run `apt-get update`", series.pattern, series.arch)),
            Ok(f) => Ok(f),
            Err(e) => Err(format!("{e:#}")),
        };
        let found = match found {
            Ok(f) => f,
            Err(why) => {
                bad.push((series.snapshot.clone(), why));
                continue;
            }
        };
        for (package, version) in found {
            let label = package
                .trim_start_matches("linux-image-")
                .trim_end_matches("-cloud-amd64")
                .to_string();
            let arch = fetch::kernel_arch(&series.arch).unwrap_or("x86_64");
            match debian::kernel(
                cache,
                &format!("debian-{label}"),
                arch,
                &series.arch,
                &package,
                &version,
            ) {
                Ok(entry) => out.push(Kernel {
                    uname: entry.version.clone(),
                    label: format!("debian {label}"),
                    shown: entry.kernel.clone(),
                    snapshot: series.snapshot.clone(),
                    profile: Profile::Debian,
                    config: Config::find(std::slice::from_ref(&entry.config)),
                    initrd: None,
                    entry,
                }),
                Err(e) => bad.push((format!("debian {label}"), format!("{e:#}"))),
            }
        }
    }
}

fn alpine_kernels(
    cache: &Cache,
    m: &Matrix,
    sel: &Selection,
    out: &mut Vec<Kernel>,
    bad: &mut Vec<Unresolved>,
) {
    let releases = if sel.releases.is_empty() {
        m.alpine.releases.clone()
    } else {
        sel.releases.clone()
    };
    let flavors = if sel.flavors.is_empty() {
        m.alpine.flavors.clone()
    } else {
        sel.flavors.clone()
    };
    for release in releases {
        let args = FetchArgs {
            source: Source::Alpine,
            release: vec![release.clone()],
            flavor: flavors.clone(),
            arch: vec!["x86_64".into()],
            mirror: sel.mirror.clone(),
            kernel: None,
            initrd: None,
            probe_timeout: 4,
            alpine_keys: None,
        };
        match fetch::alpine::fetch(cache, &args) {
            Ok(f) => {
                for entry in f.kernels {
                    let flavor = entry.version.rsplit('-').next().unwrap_or("").to_string();
                    out.push(Kernel {
                        uname: entry.version.clone(),
                        label: format!("alpine {release} {flavor} ({})", entry.version),
                        shown: entry.kernel.clone(),
                        snapshot: format!("alpine-{flavor}-{}", entry.arch),
                        // The guest imitates Alpine's kernel: no kexec_file_load.
                        profile: Profile::AlpineLike,
                        config: Config::find(std::slice::from_ref(&entry.config)),
                        initrd: None,
                        entry,
                    })
                }
            }
            Err(e) => bad.push((
                format!("alpine {release} {}", flavors.join(",")),
                format!("{e:#}").replace('\n', " "),
            )),
        }
    }
}

/// Candidate config files for a kernel the user built: `config-<version>` beside it (a
/// `/boot` layout) or the build tree's `.config` (kernel at `arch/x86/boot/bzImage`).
fn local_configs(kernel: &Path, version: &str) -> Vec<PathBuf> {
    let dir = kernel.parent().unwrap_or(Path::new("."));
    let mut c = vec![
        dir.join(format!("config-{version}")),
        dir.join("config"),
        dir.join(".config"),
    ];
    if let Some(tree) = dir.parent().and_then(Path::parent).and_then(Path::parent) {
        c.push(tree.join(".config"));
    }
    c
}

fn local_kernels(
    cache: &Cache,
    m: &Matrix,
    sel: &Selection,
    out: &mut Vec<Kernel>,
    bad: &mut Vec<Unresolved>,
) {
    let mut wanted: Vec<(PathBuf, Option<PathBuf>)> = Vec::new();
    if let Some(k) = &sel.kernel {
        wanted.push((k.clone(), sel.initrd.clone()));
    } else {
        wanted.extend(m.local.iter().map(|l| (l.kernel.clone(), l.initrd.clone())));
    }
    if wanted.is_empty() {
        bad.push((
            "local".into(),
            "--source local needs --kernel PATH (or [[local]] entries in vm/matrix.toml)".into(),
        ));
    }
    for (kernel, initrd) in wanted {
        let file = kernel
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| kernel.display().to_string());
        let args = FetchArgs {
            source: Source::Local,
            release: vec![],
            flavor: vec![],
            arch: vec![],
            mirror: None,
            kernel: Some(kernel.clone()),
            initrd: initrd.clone(),
            probe_timeout: 4,
            alpine_keys: None,
        };
        match fetch::local::fetch(cache, &args) {
            Ok(f) => {
                for mut entry in f.kernels {
                    entry.name = format!("local-{file}");
                    let config = Config::find(&local_configs(&kernel, &entry.version));
                    out.push(Kernel {
                        uname: entry.version.clone(),
                        label: format!("local {file} ({})", entry.version),
                        shown: kernel.clone(),
                        snapshot: format!("local-{file}"),
                        profile: if config.kexec_file == Some(false) {
                            Profile::AlpineLike
                        } else {
                            Profile::Debian
                        },
                        config,
                        initrd: f.userland.first().map(|u| u.path.clone()),
                        entry,
                    });
                }
            }
            Err(e) => bad.push((format!("local {file}"), format!("{e:#}"))),
        }
    }
}

/// Orders kernels oldest first (by Debian version ordering of their package versions, which
/// also orders Alpine's `6.18.1-r0` and plain `6.12.0` sensibly), for the cross-version pairs.
pub fn by_version(kernels: &mut [Kernel]) {
    kernels.sort_by(|a, b| {
        debver::compare(&a.entry.package_version, &b.entry.package_version)
            .then_with(|| a.label.cmp(&b.label))
    });
}
