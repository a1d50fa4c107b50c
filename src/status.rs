//! What was loaded, remembered across invocations.
//!
//! The kernel only says *whether* an image is loaded (`/sys/kernel/kexec_loaded`),
//! never which. At each successful load a record (kernel path, version,
//! command line, initrds, time, syscall) is written to `/run/kexec/` (a
//! tmpfs, so it cannot outlive the kernel it describes) and removed on
//! unload; `kexec status` joins it with the kernel's own answer.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::initrd::Part;
use crate::syscall::{KexecState, Target};

/// Where records live unless overridden.
pub const DEFAULT_DIR: &str = "/run/kexec";

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("cannot write the load record {path}: {source}")]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot remove the load record {path}: {source}")]
    Remove {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// One load, as recorded.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Record {
    pub kernel: String,
    pub version: Option<String>,
    pub cmdline: String,
    pub initrds: Vec<Part>,
    /// Seconds since the Unix epoch.
    pub loaded_at: u64,
    /// `kexec_file_load` or `kexec_load`.
    pub syscall: String,
}

/// The record directory.
#[derive(Debug, Clone)]
pub struct Store {
    pub dir: PathBuf,
}

fn file_name(target: Target) -> &'static str {
    match target {
        Target::Normal => "loaded.json",
        Target::Crash => "crash.json",
    }
}

impl Store {
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        Store { dir: dir.into() }
    }

    pub fn path(&self, target: Target) -> PathBuf {
        self.dir.join(file_name(target))
    }

    /// Writes atomically (temporary file, then rename) so a reader never
    /// sees half a record.
    pub fn save(&self, target: Target, record: &Record) -> Result<(), Error> {
        let path = self.path(target);
        let werr = |source| Error::Write {
            path: path.clone(),
            source,
        };
        std::fs::create_dir_all(&self.dir).map_err(werr)?;
        let tmp = self.dir.join(format!(".{}.tmp", file_name(target)));
        let json = serde_json::to_vec_pretty(record).map_err(|e| werr(std::io::Error::other(e)))?;
        std::fs::write(&tmp, json).map_err(werr)?;
        std::fs::rename(&tmp, &path).map_err(werr)
    }

    /// The record, if one exists and parses (a damaged one counts as none).
    pub fn load(&self, target: Target) -> Option<Record> {
        let text = std::fs::read(self.path(target)).ok()?;
        serde_json::from_slice(&text).ok()
    }

    pub fn clear(&self, target: Target) -> Result<(), Error> {
        let path = self.path(target);
        match std::fs::remove_file(&path) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(source) => Err(Error::Remove { path, source }),
        }
    }
}

/// `kexec status`: the kernel's answer and our record, per image slot.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Report {
    pub state: KexecState,
    pub normal: Option<Record>,
    pub crash: Option<Record>,
}

impl Report {
    /// Joins the kernel's state with the records; a record whose slot the
    /// kernel reports empty is stale (e.g. unloaded by another tool) and dropped.
    pub fn gather(state: KexecState, store: &Store) -> Self {
        let keep = |t: Target| match state.is_loaded(t) {
            Some(false) => None,
            _ => store.load(t),
        };
        Report {
            state,
            normal: keep(Target::Normal),
            crash: keep(Target::Crash),
        }
    }
}

/// `YYYY-MM-DD HH:MM:SS UTC` from Unix seconds (proleptic Gregorian).
pub fn format_utc(secs: u64) -> String {
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    // Howard Hinnant's days-to-civil algorithm.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02} {:02}:{:02}:{:02} UTC",
        rem / 3600,
        rem / 60 % 60,
        rem % 60
    )
}

fn slot(
    f: &mut std::fmt::Formatter<'_>,
    name: &str,
    loaded: Option<bool>,
    rec: &Option<Record>,
) -> std::fmt::Result {
    match loaded {
        Some(true) => writeln!(f, "{name}: loaded")?,
        Some(false) => return writeln!(f, "{name}: not loaded"),
        None => writeln!(f, "{name}: unknown (the kernel has no /sys/kernel/kexec_* files: no kexec support, or /sys is not mounted)")?,
    }
    match rec {
        None => writeln!(
            f,
            "  (loaded by another tool or before this boot's /run: no record of what)"
        ),
        Some(r) => {
            match &r.version {
                Some(v) => writeln!(f, "  kernel:  {} ({v})", r.kernel)?,
                None => writeln!(f, "  kernel:  {}", r.kernel)?,
            }
            writeln!(
                f,
                "  cmdline: {}",
                if r.cmdline.is_empty() {
                    "(empty)"
                } else {
                    &r.cmdline
                }
            )?;
            if r.initrds.is_empty() {
                writeln!(f, "  initrd:  none")?;
            }
            for p in &r.initrds {
                writeln!(f, "  initrd:  {} ({} bytes)", p.name, p.len)?;
            }
            writeln!(
                f,
                "  loaded:  {} with {}",
                format_utc(r.loaded_at),
                r.syscall
            )
        }
    }
}

impl std::fmt::Display for Report {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        slot(f, "kexec image", self.state.loaded, &self.normal)?;
        slot(f, "crash image", self.state.crash_loaded, &self.crash)?;
        match self.state.crash_size {
            Some(0) => writeln!(
                f,
                "crash reservation: none (no crashkernel= on the kernel command line)"
            ),
            Some(n) => writeln!(f, "crash reservation: {} MiB", n >> 20),
            None => Ok(()),
        }
    }
}

/// Where the record directory is: `$KEXEC_STATUS_DIR` for tests and unusual
/// systems, else [`DEFAULT_DIR`].
pub fn dir_from_env() -> PathBuf {
    std::env::var_os("KEXEC_STATUS_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(DEFAULT_DIR).to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record() -> Record {
        Record {
            kernel: "/boot/vmlinuz-lts".into(),
            version: Some("6.6.58-0-lts".into()),
            cmdline: "root=/dev/sda3".into(),
            initrds: vec![Part {
                name: "/boot/initramfs-lts".into(),
                len: 1234,
            }],
            loaded_at: 1_764_166_000,
            syscall: "kexec_file_load".into(),
        }
    }

    #[test]
    fn save_load_clear_round_trip() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::new(dir.path().join("run/kexec"));
        assert_eq!(store.load(Target::Normal), None);
        store.save(Target::Normal, &record()).unwrap();
        assert_eq!(store.load(Target::Normal), Some(record()));
        assert_eq!(store.load(Target::Crash), None);
        store.clear(Target::Normal).unwrap();
        store.clear(Target::Normal).unwrap();
        assert_eq!(store.load(Target::Normal), None);
    }

    #[test]
    fn report_drops_stale_records_and_reads_well() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::new(dir.path());
        store.save(Target::Normal, &record()).unwrap();
        store.save(Target::Crash, &record()).unwrap();
        let state = KexecState {
            loaded: Some(true),
            crash_loaded: Some(false),
            crash_size: Some(256 << 20),
        };
        let r = Report::gather(state, &store);
        assert!(r.crash.is_none());
        let text = r.to_string();
        assert!(
            text.contains("kexec image: loaded\n  kernel:  /boot/vmlinuz-lts (6.6.58-0-lts)"),
            "{text}"
        );
        assert!(
            text.contains("initrd:  /boot/initramfs-lts (1234 bytes)"),
            "{text}"
        );
        assert!(text.contains("with kexec_file_load"), "{text}");
        assert!(text.contains("crash image: not loaded"), "{text}");
        assert!(text.contains("crash reservation: 256 MiB"), "{text}");
    }

    #[test]
    fn report_json_has_state_and_records() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::new(dir.path());
        store.save(Target::Crash, &record()).unwrap();
        let state = KexecState {
            loaded: Some(false),
            crash_loaded: Some(true),
            crash_size: Some(256 << 20),
        };
        let v = serde_json::to_value(Report::gather(state, &store)).unwrap();
        assert_eq!(v["state"]["crash_loaded"], true);
        assert_eq!(v["normal"], serde_json::Value::Null);
        assert_eq!(v["crash"]["kernel"], "/boot/vmlinuz-lts");
        assert_eq!(v["crash"]["initrds"][0]["len"], 1234);
    }

    #[test]
    fn unknown_state_and_foreign_loads_are_said_plainly() {
        let dir = tempfile::tempdir().unwrap();
        let text = Report::gather(
            KexecState {
                loaded: Some(true),
                ..KexecState::default()
            },
            &Store::new(dir.path()),
        )
        .to_string();
        assert!(text.contains("loaded by another tool"), "{text}");
        assert!(text.contains("crash image: unknown"), "{text}");
    }

    #[test]
    fn utc_formatting() {
        assert_eq!(format_utc(0), "1970-01-01 00:00:00 UTC");
        assert_eq!(format_utc(951_782_400), "2000-02-29 00:00:00 UTC");
        assert_eq!(format_utc(1_764_166_000), "2025-11-26 14:06:40 UTC");
    }
}
