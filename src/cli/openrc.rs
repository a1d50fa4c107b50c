//! `kexec install-openrc` and `kexec reboot`: the OpenRC side of fast reboots.
//!
//! The services (`openrc/` in the source tree) are embedded in the binary, so a user who
//! copied only `kexec` onto a machine can install them without a package. `kexec reboot` is
//! the "armed" reboot: under busybox init (Alpine's default) `reboot` and `poweroff` run the
//! same `openrc shutdown`, so the services cannot tell them apart; arming
//! (`/run/kexec/armed`) is how a reboot asks for kexec while a poweroff still powers off.
//! External commands (`rc-update`, `rc-service`, `reboot`) go through a [`Runner`] so the
//! logic is tested without touching the system.

use std::io;
use std::path::{Path, PathBuf};
use std::process::Output;

/// `/etc/init.d/kexec-load`: chooses and loads the kernel when the system goes down.
pub const KEXEC_LOAD: &str = include_str!("../../openrc/kexec-load");
/// `/etc/init.d/kexec-exec`: the shutdown runlevel's last step, `kexec -e`.
pub const KEXEC_EXEC: &str = include_str!("../../openrc/kexec-exec");
/// `/etc/conf.d/kexec`: the settings both services read.
pub const CONFD: &str = include_str!("../../openrc/kexec.confd");

/// The file whose presence tells `kexec-load` that this shutdown is a kexec reboot.
pub const ARMED: &str = "run/kexec/armed";

/// Runs an external command (program, arguments) and returns what it did.
pub type Runner<'a> = &'a mut dyn FnMut(&str, &[&str]) -> io::Result<Output>;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("cannot write {path}: {source}; run as root, or pass --root DIR to install elsewhere")]
    Write { path: PathBuf, source: io::Error },
    #[error("cannot run `{command}`: {source}; is OpenRC installed? (use --no-rc-update to only copy the files)")]
    Spawn { command: String, source: io::Error },
    #[error("`{command}` failed ({status}): {output}")]
    Command {
        command: String,
        status: String,
        output: String,
    },
    #[error("{path} does not exist: the OpenRC services are not installed, so a reboot would not use kexec; run `kexec install-openrc` first")]
    NotInstalled { path: PathBuf },
    #[error("the kexec-load service is not started, so it will not load a kernel at shutdown; run `rc-service kexec-load start` first")]
    NotStarted,
}

/// What `install-openrc` should do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InstallOptions {
    /// The root to install into (`/` for the running system).
    pub root: PathBuf,
    /// Add the services to their runlevels (and start `kexec-load` on the running system).
    pub rc_update: bool,
}

/// One step `install-openrc` took, for the binary to print.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    Wrote(PathBuf),
    /// An existing `/etc/conf.d/kexec` was left as it is (it holds the user's settings).
    KeptConfig(PathBuf),
    Ran(String),
    Linked(PathBuf),
}

impl std::fmt::Display for Step {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Step::Wrote(p) => write!(f, "installed {}", p.display()),
            Step::KeptConfig(p) => write!(f, "kept the existing {} (your settings)", p.display()),
            Step::Ran(c) => write!(f, "ran `{c}`"),
            Step::Linked(p) => write!(f, "added {}", p.display()),
        }
    }
}

fn write_file(path: &Path, text: &str, mode: u32) -> Result<(), Error> {
    use std::os::unix::fs::PermissionsExt;
    let err = |source| Error::Write {
        path: path.to_path_buf(),
        source,
    };
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(err)?;
    }
    std::fs::write(path, text).map_err(err)?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).map_err(err)
}

fn run_checked(runner: Runner<'_>, program: &str, args: &[&str]) -> Result<String, Error> {
    let command = std::iter::once(program)
        .chain(args.iter().copied())
        .collect::<Vec<_>>()
        .join(" ");
    let out = runner(program, args).map_err(|source| Error::Spawn {
        command: command.clone(),
        source,
    })?;
    if !out.status.success() {
        let text = String::from_utf8_lossy(&out.stderr).trim().to_string()
            + String::from_utf8_lossy(&out.stdout).trim();
        return Err(Error::Command {
            command,
            status: out.status.to_string(),
            output: text,
        });
    }
    Ok(command)
}

/// Installs the services and the configuration under `opts.root`. On the running system
/// (`/`) the runlevels are set with `rc-update` and `kexec-load` is started, as the Alpine
/// wiki's steps do; under another root the runlevel links are made directly (that root's
/// OpenRC is not running).
pub fn install(opts: &InstallOptions, runner: Runner<'_>) -> Result<Vec<Step>, Error> {
    let mut steps = Vec::new();
    let root = &opts.root;
    for (rel, text, mode) in [
        ("etc/init.d/kexec-load", KEXEC_LOAD, 0o755),
        ("etc/init.d/kexec-exec", KEXEC_EXEC, 0o755),
    ] {
        let p = root.join(rel);
        write_file(&p, text, mode)?;
        steps.push(Step::Wrote(p));
    }
    let conf = root.join("etc/conf.d/kexec");
    if conf.exists() {
        steps.push(Step::KeptConfig(conf));
    } else {
        write_file(&conf, CONFD, 0o644)?;
        steps.push(Step::Wrote(conf));
    }
    if !opts.rc_update {
        return Ok(steps);
    }
    if root == Path::new("/") {
        for args in [
            &["add", "kexec-load", "default"][..],
            &["add", "kexec-exec", "shutdown"],
            // OpenRC caches its dependency tree and decides whether to refresh it from file
            // times: services installed right after the cache was written can be missing
            // from it, and `openrc shutdown` then does not stop kexec-load (seen in the test
            // guests). `-u` refreshes it now.
            &["-u"],
        ] {
            steps.push(Step::Ran(run_checked(runner, "rc-update", args)?));
        }
        steps.push(Step::Ran(run_checked(
            runner,
            "rc-service",
            &["kexec-load", "start"],
        )?));
    } else {
        for (svc, level) in [("kexec-load", "default"), ("kexec-exec", "shutdown")] {
            let link = root.join("etc/runlevels").join(level).join(svc);
            let err = |source| Error::Write {
                path: link.clone(),
                source,
            };
            if let Some(dir) = link.parent() {
                std::fs::create_dir_all(dir).map_err(err)?;
            }
            if std::fs::symlink_metadata(&link).is_err() {
                std::os::unix::fs::symlink(format!("/etc/init.d/{svc}"), &link).map_err(err)?;
            }
            steps.push(Step::Linked(link));
        }
    }
    Ok(steps)
}

/// `kexec reboot`: arms the services (they load the configured kernel at shutdown) and runs
/// `reboot`. Refuses when the services could not act on it, since the reboot would then go
/// through the firmware while the user asked for kexec.
pub fn arm_and_reboot(root: &Path, runner: Runner<'_>) -> Result<(), Error> {
    let service = root.join("etc/init.d/kexec-load");
    if !service.exists() {
        return Err(Error::NotInstalled { path: service });
    }
    // OpenRC only stops (and so only runs the loading part of) services it started.
    if !root.join("run/openrc/started/kexec-load").exists() {
        return Err(Error::NotStarted);
    }
    let armed = root.join(ARMED);
    write_file(&armed, "armed by `kexec reboot`\n", 0o644)?;
    run_checked(runner, "reboot", &[]).inspect_err(|_| {
        let _ = std::fs::remove_file(&armed);
    })?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::process::ExitStatusExt;

    fn output(code: i32) -> Output {
        Output {
            status: std::process::ExitStatus::from_raw(code << 8),
            stdout: Vec::new(),
            stderr: b"boom".to_vec(),
        }
    }

    #[test]
    fn embedded_services_are_openrc_scripts() {
        for s in [KEXEC_LOAD, KEXEC_EXEC] {
            assert!(s.starts_with("#!/sbin/openrc-run\n"));
        }
        assert!(CONFD.contains("KEXEC_PRELOAD"));
    }

    #[test]
    fn install_into_a_root_writes_files_and_runlevel_links() {
        let dir = tempfile::tempdir().unwrap();
        let mut runner = |p: &str, a: &[&str]| -> io::Result<Output> {
            panic!("another root's OpenRC must not be run: {p} {a:?}")
        };
        let opts = InstallOptions {
            root: dir.path().to_path_buf(),
            rc_update: true,
        };
        let steps = install(&opts, &mut runner).unwrap();
        assert_eq!(steps.len(), 5);
        use std::os::unix::fs::PermissionsExt;
        let load = dir.path().join("etc/init.d/kexec-load");
        assert_eq!(std::fs::read_to_string(&load).unwrap(), KEXEC_LOAD);
        assert_eq!(
            std::fs::metadata(&load).unwrap().permissions().mode() & 0o777,
            0o755
        );
        let link =
            std::fs::read_link(dir.path().join("etc/runlevels/shutdown/kexec-exec")).unwrap();
        assert_eq!(link, Path::new("/etc/init.d/kexec-exec"));

        // A second install keeps the user's configuration and is idempotent.
        std::fs::write(dir.path().join("etc/conf.d/kexec"), "KEXEC_PRELOAD=yes\n").unwrap();
        let steps = install(&opts, &mut runner).unwrap();
        assert!(steps.contains(&Step::KeptConfig(dir.path().join("etc/conf.d/kexec"))));
        assert_eq!(
            std::fs::read_to_string(dir.path().join("etc/conf.d/kexec")).unwrap(),
            "KEXEC_PRELOAD=yes\n"
        );
    }

    #[test]
    fn install_without_rc_update_only_copies() {
        let dir = tempfile::tempdir().unwrap();
        let mut runner =
            |_: &str, _: &[&str]| -> io::Result<Output> { panic!("no command expected") };
        let opts = InstallOptions {
            root: dir.path().to_path_buf(),
            rc_update: false,
        };
        assert_eq!(install(&opts, &mut runner).unwrap().len(), 3);
        assert!(!dir.path().join("etc/runlevels").exists());
    }

    #[test]
    fn reboot_refuses_without_services_and_disarms_on_failure() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        let mut ran = 0;
        let mut ok_runner = |p: &str, _: &[&str]| {
            assert_eq!(p, "reboot");
            ran += 1;
            Ok(output(0))
        };
        assert!(matches!(
            arm_and_reboot(root, &mut ok_runner),
            Err(Error::NotInstalled { .. })
        ));
        std::fs::create_dir_all(root.join("etc/init.d")).unwrap();
        std::fs::write(root.join("etc/init.d/kexec-load"), KEXEC_LOAD).unwrap();
        assert!(matches!(
            arm_and_reboot(root, &mut ok_runner),
            Err(Error::NotStarted)
        ));
        std::fs::create_dir_all(root.join("run/openrc/started")).unwrap();
        std::fs::write(root.join("run/openrc/started/kexec-load"), "").unwrap();
        arm_and_reboot(root, &mut ok_runner).unwrap();
        assert_eq!(ran, 1);
        assert!(root.join(ARMED).exists());

        std::fs::remove_file(root.join(ARMED)).unwrap();
        let mut failing = |_: &str, _: &[&str]| Ok(output(1));
        let e = arm_and_reboot(root, &mut failing).unwrap_err();
        assert!(e.to_string().contains("`reboot` failed"), "{e}");
        assert!(
            !root.join(ARMED).exists(),
            "a failed reboot must not leave the next shutdown armed"
        );
    }
}
