//! The catalogue of bad inputs to the `kexec` binary: for each way a user
//! can get a load wrong, the exact stderr and exit code (insta snapshots in
//! `tests/snapshots/cli_catalogue__*.snap`), and — checked here, not only in
//! the snapshots — that the message names the file (or option) at fault,
//! says what is wrong with it, and says what to do.
//!
//! Every case fails before any kexec syscall except the one that must reach
//! the privilege check (not root), which runs as `nobody` (as does `-l -u`,
//! in case it ever reached the unload), so no case can load or unload a
//! kernel on the machine running the tests, root or not, kexec-capable or
//! not. Snapshots therefore do not depend on the host
//! kernel. The temporary directory is shown as `[TMP]`.
//!
//! `tests/cli_exit_codes.rs` (the CLI's own) covers `-h`/`-v`, the usage
//! errors of the option grammar (`--bogus`, `-Z`, missing option values,
//! unsupported kexec-tools options, two kernels, no kernel) and `-l` with a
//! missing, empty or directory kernel; the cases here are the rest of issue
//! 7's list, and the missing/empty/directory kernel in the plain `kexec
//! KERNEL` form scripts use.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// `nobody`: an unprivileged user without CAP_SYS_BOOT.
const NOBODY: u32 = 65534;

/// A temporary directory the files of one case live in.
struct Sandbox {
    dir: tempfile::TempDir,
}

impl Sandbox {
    fn new() -> Self {
        let dir = tempfile::Builder::new()
            .prefix("kexec-catalogue")
            .tempdir()
            .expect("a temporary directory");
        Sandbox { dir }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// `name` as a string argument.
    fn arg(&self, name: &str) -> String {
        self.path(name).display().to_string()
    }

    fn write(&self, name: &str, bytes: &[u8]) -> String {
        std::fs::write(self.path(name), bytes).expect("write a sandbox file");
        self.arg(name)
    }

    /// Copies `fixtures/<fixture>` in as `name`.
    fn fixture(&self, fixture: &str, name: &str) -> String {
        let src = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("fixtures")
            .join(fixture);
        let bytes = std::fs::read(&src)
            .unwrap_or_else(|e| panic!("{}: {e} (run `cargo xtask fixtures`)", src.display()));
        self.write(name, &bytes)
    }

    /// Lets `nobody` reach the files (the directory is created 0700).
    fn open_to_all(&self) {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(self.dir.path(), std::fs::Permissions::from_mode(0o755))
            .expect("chmod the sandbox");
    }
}

/// What one run printed, with the sandbox path redacted.
struct Run {
    code: i32,
    stderr: String,
}

impl Run {
    /// The snapshot: exit code, then stderr.
    fn transcript(&self) -> String {
        format!("exit code: {}\n{}", self.code, self.stderr)
    }

    /// The error message: the last line starting with `kexec: ` that is not
    /// a warning, plus its `cause:`/`fix:` lines.
    fn error(&self) -> String {
        let lines: Vec<&str> = self.stderr.lines().collect();
        let start = lines
            .iter()
            .rposition(|l| l.starts_with("kexec: ") && !l.starts_with("kexec: warning: "))
            .unwrap_or_else(|| panic!("no error line in {:?}", self.stderr));
        lines[start..].join("\n")
    }
}

fn command(sandbox: &Sandbox, args: &[&str]) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_kexec"));
    c.args(args)
        .env("KEXEC_STATUS_DIR", sandbox.path("status"))
        .env("LC_ALL", "C")
        .current_dir(sandbox.dir.path());
    c
}

fn finish(sandbox: &Sandbox, o: Output) -> Run {
    let raw = String::from_utf8_lossy(&o.stderr).into_owned();
    let tmp = sandbox.dir.path().display().to_string();
    Run {
        code: o
            .status
            .code()
            .expect("kexec exited, not killed by a signal"),
        stderr: raw.replace(&tmp, "[TMP]"),
    }
}

fn kexec(sandbox: &Sandbox, args: &[&str]) -> Run {
    let o = command(sandbox, args).output().expect("run kexec");
    finish(sandbox, o)
}

/// Runs kexec without CAP_SYS_BOOT: as `nobody` when the tests run as root
/// (std's `uid()` drops the supplementary groups and, by leaving uid 0, every
/// capability, like `setpriv --reuid=65534 --regid=65534 --clear-groups`),
/// as the current user otherwise.
fn kexec_unprivileged(sandbox: &Sandbox, args: &[&str]) -> Run {
    use std::os::unix::process::CommandExt;
    sandbox.open_to_all();
    let mut c = command(sandbox, args);
    if nix::unistd::geteuid().is_root() {
        c.uid(NOBODY).gid(NOBODY);
    }
    let o = c.output().expect("run kexec unprivileged");
    finish(sandbox, o)
}

/// What a message must contain: the file or option at fault, the reason,
/// and what to do. Each is one or more substrings, all required.
struct Expect<'a> {
    code: i32,
    names: &'a [&'a str],
    reason: &'a [&'a str],
    advice: &'a [&'a str],
}

fn check(case: &str, run: &Run, expect: Expect<'_>) {
    assert_eq!(run.code, expect.code, "{case}: {}", run.stderr);
    let error = run.error();
    for (what, needles) in [
        ("name the file or option", expect.names),
        ("give the reason", expect.reason),
        ("say what to do", expect.advice),
    ] {
        assert!(!needles.is_empty(), "{case}: nothing to check for {what}");
        for n in needles {
            assert!(
                error.contains(n),
                "{case}: the message must {what} ({n:?}):\n{error}"
            );
        }
    }
    assert!(
        !run.stderr.contains("panicked") && !run.stderr.contains("RUST_BACKTRACE"),
        "{case}: a panic is never an error message:\n{}",
        run.stderr
    );
    insta::assert_snapshot!(case, run.transcript());
}

/// A valid bzImage in the sandbox, for the cases about everything else.
fn good_kernel(s: &Sandbox) -> String {
    s.fixture("bzimage-2.15-gzip.bin", "vmlinuz-lts")
}

// --- the kernel file ---------------------------------------------------------

#[test]
fn missing_kernel() {
    let s = Sandbox::new();
    let r = kexec(&s, &[&s.arg("vmlinuz-missing")]);
    check(
        "missing_kernel",
        &r,
        Expect {
            code: 1,
            names: &["[TMP]/vmlinuz-missing"],
            reason: &["No such file"],
            advice: &["check the path"],
        },
    );
}

#[test]
fn kernel_is_a_directory() {
    let s = Sandbox::new();
    std::fs::create_dir(s.path("boot")).unwrap();
    let r = kexec(&s, &[&s.arg("boot")]);
    check(
        "kernel_is_a_directory",
        &r,
        Expect {
            code: 1,
            names: &["[TMP]/boot"],
            reason: &["is a directory"],
            advice: &["give the kernel image file"],
        },
    );
}

#[test]
fn empty_kernel() {
    let s = Sandbox::new();
    let k = s.write("vmlinuz-empty", b"");
    let r = kexec(&s, &[&k]);
    check(
        "empty_kernel",
        &r,
        Expect {
            code: 1,
            names: &["[TMP]/vmlinuz-empty"],
            reason: &["is empty"],
            advice: &["reinstall the kernel package"],
        },
    );
}

#[test]
fn fifo_kernel_without_a_writer() {
    // `open()` of such a FIFO blocks forever; kexec must answer instead.
    let s = Sandbox::new();
    let fifo = s.path("vmlinuz-fifo");
    nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::from_bits_truncate(0o644)).unwrap();
    let r = kexec(&s, &["-l", &s.arg("vmlinuz-fifo")]);
    check(
        "fifo_kernel_without_a_writer",
        &r,
        Expect {
            code: 1,
            names: &["[TMP]/vmlinuz-fifo"],
            reason: &["FIFO with nothing writing to it"],
            advice: &["give the kernel image file"],
        },
    );
}

/// The C library of the machine running the tests, else the fixture's
/// synthesized shared object (e.g. on a musl system).
fn a_shared_library() -> Vec<u8> {
    [
        "/lib/x86_64-linux-gnu/libc.so.6",
        "/lib/aarch64-linux-gnu/libc.so.6",
        "/usr/lib64/libc.so.6",
    ]
    .iter()
    .find_map(|p| std::fs::read(p).ok())
    .unwrap_or_else(|| {
        std::fs::read(Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/libfixture.so"))
            .expect("fixtures/libfixture.so")
    })
}

#[test]
fn shared_library_as_kernel() {
    let s = Sandbox::new();
    let k = s.write("libc.so.6", &a_shared_library());
    let r = kexec(&s, &["-l", &k]);
    check(
        "shared_library_as_kernel",
        &r,
        Expect {
            code: 1,
            names: &["[TMP]/libc.so.6"],
            reason: &["not a kernel image", "ELF shared library"],
            advice: &["give the kernel image instead"],
        },
    );
}

#[test]
fn png_as_kernel() {
    let s = Sandbox::new();
    // A real PNG (fixtures/not-a-kernel.png, made by `cargo xtask fixtures`).
    let k = s.fixture("not-a-kernel.png", "vmlinuz.png");
    let r = kexec(&s, &["-l", &k]);
    check(
        "png_as_kernel",
        &r,
        Expect {
            code: 1,
            names: &["[TMP]/vmlinuz.png"],
            reason: &["not a kernel image", "PNG image"],
            advice: &["give the kernel image instead"],
        },
    );
}

#[test]
fn initramfs_as_kernel() {
    let s = Sandbox::new();
    let k = s.fixture("initramfs-plain.cpio", "initramfs-lts");
    let r = kexec(&s, &["-l", &k]);
    check(
        "initramfs_as_kernel",
        &r,
        Expect {
            code: 1,
            names: &["[TMP]/initramfs-lts"],
            reason: &["is an initramfs, not a kernel"],
            advice: &["pass it with --initrd"],
        },
    );
}

#[test]
fn truncated_bzimage() {
    let s = Sandbox::new();
    let k = s.fixture("bzimage-truncated.bin", "vmlinuz-cut");
    let r = kexec(&s, &["-l", &k]);
    check(
        "truncated_bzimage",
        &r,
        Expect {
            code: 1,
            names: &["[TMP]/vmlinuz-cut"],
            reason: &["syssize", "the file is only 3128 bytes", "truncated"],
            advice: &["re-download it or reinstall the package"],
        },
    );
}

/// An arm64 kernel (gzip-compressed Image, as Debian ships it) on x86_64.
#[cfg(target_arch = "x86_64")]
#[test]
fn wrong_architecture() {
    let s = Sandbox::new();
    let k = s.fixture("arm64-Image.gz", "vmlinuz-arm64");
    let r = kexec(&s, &["-l", &k]);
    check(
        "wrong_architecture",
        &r,
        Expect {
            code: 1,
            names: &["[TMP]/vmlinuz-arm64"],
            reason: &["is an arm64 kernel", "this machine runs x86_64"],
            advice: &["give an x86_64 kernel"],
        },
    );
}

// --- the initrd -------------------------------------------------------------

#[test]
fn initrd_missing() {
    let s = Sandbox::new();
    let k = good_kernel(&s);
    let r = kexec(&s, &["-l", &k, "--initrd", &s.arg("initramfs-missing")]);
    check(
        "initrd_missing",
        &r,
        Expect {
            code: 1,
            names: &["initrd [TMP]/initramfs-missing"],
            reason: &["No such file"],
            advice: &["check the path given to --initrd"],
        },
    );
}

/// Permission bits cannot make a file unreadable for root (CAP_DAC_OVERRIDE),
/// and these tests often run as root: a directory fails for every user.
#[test]
fn initrd_unreadable_directory() {
    let s = Sandbox::new();
    let k = good_kernel(&s);
    std::fs::create_dir(s.path("initramfs.d")).unwrap();
    let initrd = format!("--initrd={}", s.arg("initramfs.d"));
    let r = kexec(&s, &["-l", &k, &initrd]);
    check(
        "initrd_unreadable_directory",
        &r,
        Expect {
            code: 1,
            names: &["initrd [TMP]/initramfs.d"],
            reason: &["is a directory"],
            advice: &["--initrd needs a file"],
        },
    );
}

/// The second of two initrds cannot be opened — by anyone, root included: it
/// is a symbolic link to itself (ELOOP). Nothing of the first is loaded.
#[test]
fn second_initrd_unreadable_symlink_loop() {
    let s = Sandbox::new();
    let k = good_kernel(&s);
    let ucode = s.fixture("initramfs-plain.cpio", "intel-ucode.img");
    std::os::unix::fs::symlink("initramfs-loop", s.path("initramfs-loop")).unwrap();
    let r = kexec(
        &s,
        &[
            "-l",
            &k,
            "--initrd",
            &ucode,
            "--initrd",
            &s.arg("initramfs-loop"),
        ],
    );
    check(
        "second_initrd_unreadable_symlink_loop",
        &r,
        Expect {
            code: 1,
            names: &["initrd [TMP]/initramfs-loop"],
            reason: &["Too many levels of symbolic links"],
            advice: &["check the path given to --initrd"],
        },
    );
}

// --- the command line -------------------------------------------------------

#[test]
fn cmdline_too_long() {
    let s = Sandbox::new();
    let k = good_kernel(&s);
    let long = format!("console=ttyS0 {}", "quiet ".repeat(500));
    let r = kexec(&s, &["-l", &k, "--append", long.trim_end()]);
    check(
        "cmdline_too_long",
        &r,
        Expect {
            code: 1,
            names: &["kernel [TMP]/vmlinuz-lts"],
            reason: &["3013 bytes", "cmdline_size is 2047", "at most 2047"],
            advice: &["shorten --append"],
        },
    );
}

#[test]
fn cmdline_with_newline() {
    let s = Sandbox::new();
    let k = good_kernel(&s);
    let r = kexec(&s, &["-l", &k, "--append=console=ttyS0\nquiet"]);
    check(
        "cmdline_with_newline",
        &r,
        Expect {
            code: 1,
            names: &["kernel command line"],
            reason: &["contains a newline at offset 13"],
            advice: &["put everything on one line"],
        },
    );
}

/// A NUL cannot reach the kernel command line through kexec's arguments:
/// argv strings end at the first NUL, so no program can be given one (std
/// refuses to try), `/proc/cmdline` (for `--reuse-cmdline`) has none inside,
/// and a UKI's `.cmdline` ends at its first NUL. The rejection itself is
/// covered where the line is built: `kexec::cmdline` (unit tests) and the
/// `cmdline` fuzz target.
#[test]
fn cmdline_with_nul_cannot_be_passed() {
    let s = Sandbox::new();
    let err = command(&s, &["-l", "k", "--append=root=/dev/vda\0init=/bin/sh"])
        .output()
        .expect_err("argv cannot hold a NUL");
    assert_eq!(err.kind(), std::io::ErrorKind::InvalidInput, "{err}");
}

// --- options ----------------------------------------------------------------

#[cfg(target_arch = "x86_64")]
#[test]
fn dtb_on_x86() {
    let s = Sandbox::new();
    let k = good_kernel(&s);
    let dtb = s.write("board.dtb", b"\xd0\x0d\xfe\xed");
    let r = kexec(&s, &["-l", &k, "--dtb", &dtb]);
    check(
        "dtb_on_x86",
        &r,
        Expect {
            code: 1,
            names: &["--dtb [TMP]/board.dtb"],
            reason: &["device trees are for arm64"],
            advice: &["drop --dtb"],
        },
    );
}

#[test]
fn unknown_option() {
    let s = Sandbox::new();
    let k = good_kernel(&s);
    // A near miss of --initrd: not a prefix of any option, so not accepted.
    let r = kexec(&s, &["-l", &k, "--initrd-file=initramfs-lts"]);
    check(
        "unknown_option",
        &r,
        Expect {
            code: 1,
            names: &["'--initrd-file'"],
            reason: &["unrecognized option"],
            advice: &["see kexec --help"],
        },
    );
}

/// A file name that is not UTF-8 (Linux file names are bytes). This used
/// to panic in `main` (`std::env::args()`); found while making the
/// `cli_parse` fuzz target feed raw bytes, as `main` gets them
/// (tests/regressions/cli_parse/).
#[test]
fn non_utf8_file_name() {
    use std::os::unix::ffi::OsStrExt;
    let s = Sandbox::new();
    let k = s.path("vmlinuz-caf\u{e9}").into_os_string();
    let k = std::ffi::OsStr::from_bytes(&[k.as_bytes(), b"\xff"].concat()).to_os_string();
    let o = Command::new(env!("CARGO_BIN_EXE_kexec"))
        .arg("-l")
        .arg(&k)
        .env("LC_ALL", "C")
        .output()
        .expect("run kexec");
    let r = finish(&s, o);
    check(
        "non_utf8_file_name",
        &r,
        Expect {
            code: 1,
            names: &["'[TMP]/vmlinuz-caf\u{e9}\u{FFFD}'"],
            reason: &["is not valid UTF-8"],
            advice: &["rename the file"],
        },
    );
}

/// `-l -u KERNEL`: in kexec-tools the last action silently wins (this would
/// only unload); this kexec refuses the combination. Run without privileges
/// anyway, so that even a regression could never unload a kernel on the
/// machine running the tests.
#[test]
fn conflicting_actions_load_and_unload() {
    let s = Sandbox::new();
    let k = good_kernel(&s);
    let r = kexec_unprivileged(&s, &["-l", "-u", &k]);
    check(
        "conflicting_actions_load_and_unload",
        &r,
        Expect {
            code: 1,
            names: &["-l and -u"],
            reason: &["conflict", "-u unloads it"],
            advice: &["give one"],
        },
    );
}

/// Not root: refused before the syscall, so the answer is the same on a
/// kernel without kexec (ENOSYS for everyone, like the machine these tests
/// were written on) as on one with it (EPERM).
#[test]
fn not_root() {
    let s = Sandbox::new();
    let k = good_kernel(&s);
    let r = kexec_unprivileged(&s, &["-l", &k, "--append=console=ttyS0"]);
    check(
        "not_root",
        &r,
        Expect {
            code: 255,
            names: &["kexec_file_load"],
            reason: &["lacks CAP_SYS_BOOT", "not root"],
            advice: &["run kexec as root"],
        },
    );
}
