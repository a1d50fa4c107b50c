//! kexec-tools' command-line grammar, parsed by hand.
//!
//! Scripts call `kexec` with getopt_long conventions: options and the kernel
//! in any order, bundled short options (`-lx`), `--opt=value` and
//! `--opt value`, unique prefixes of long options (`--initrd` as `--init`),
//! and later options overriding earlier ones (`-f -l` only loads). clap does
//! not model the last point, so the options are applied in order to the same
//! flags kexec-tools' `main()` keeps, which makes every combination mean what
//! it means there.

use std::path::PathBuf;

use crate::classic::SerialConsole;
use crate::cmdline;
use crate::syscall::Target;

/// kexec-tools' default `--serial`: the first PC serial port.
const TTYS0: u16 = 0x3f8;

/// `--serial` as kexec-tools takes it: `ttyS0`, `ttyS1` or a hex I/O port.
fn serial_port(v: &str) -> Result<u16, UsageError> {
    let port = match v {
        "ttyS0" => Some(TTYS0),
        "ttyS1" => Some(0x2f8),
        _ => v
            .strip_prefix("0x")
            .and_then(|h| u16::from_str_radix(h, 16).ok())
            .filter(|&p| p != 0),
    };
    port.ok_or_else(|| {
        UsageError::Invalid(format!(
            "--serial '{v}': give ttyS0, ttyS1 or an I/O port in hex such as 0x3f8"
        ))
    })
}

/// Which syscall loads (and unloads).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SyscallMode {
    /// `kexec_file_load`, falling back to `kexec_load` when the kernel cannot
    /// take the file (ENOSYS, EINVAL, ENOEXEC, ENOTSUP). The default.
    Auto,
    /// `-s`: `kexec_file_load` only.
    File,
    /// `-c`: `kexec_load` only.
    Classic,
}

/// The kexec-tools style invocation, as the flags kexec-tools' `main()` ends with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Invocation {
    pub do_load: bool,
    pub do_exec: bool,
    pub do_shutdown: bool,
    pub do_sync: bool,
    pub do_ifdown: bool,
    pub do_unload: bool,
    pub do_status: bool,
    pub crash: bool,
    pub mode: SyscallMode,
    pub no_checks: bool,
    pub debug: bool,
    /// `-f/--force` appeared (also overrides the `--flavor` modules check).
    pub force_given: bool,
    pub kernel: Option<PathBuf>,
    pub initrds: Vec<PathBuf>,
    pub cmdline: cmdline::Request,
    pub dtb: Option<PathBuf>,
    pub flavor: Option<String>,
    /// `-t/--type`, accepted for compatibility; the image type is detected.
    pub image_type: Option<String>,
    /// Which image `-S` asks about: the crash image unless `-l` came after
    /// any `-p`, as kexec-tools' manual documents.
    pub status_target: Target,
    /// `--console-serial`, with `--serial` and `--serial-baud`: the
    /// purgatory reports on this UART (kexec_load only).
    pub console: Option<SerialConsole>,
}

/// What the command line asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    Help,
    Version,
    PrintCrashSize,
    Kexec(Box<Invocation>),
    Info {
        images: Vec<PathBuf>,
        json: bool,
    },
    Check {
        crash: bool,
        json: bool,
    },
    Status {
        json: bool,
    },
    /// `kexec install-openrc [--root DIR] [--no-rc-update]`.
    InstallOpenrc {
        root: PathBuf,
        rc_update: bool,
    },
    /// `kexec reboot`: an armed reboot through the OpenRC services.
    Reboot,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum UsageError {
    #[error("unrecognized option '{0}'; see kexec --help")]
    Unknown(String),
    #[error("option '{0}' is ambiguous ({1}); spell it out")]
    Ambiguous(String, String),
    #[error("option '{0}' requires an argument")]
    MissingValue(String),
    #[error("option '--{0}' does not take an argument")]
    UnexpectedValue(String),
    #[error("kexec-tools option '--{0}' is not supported by this kexec; see docs/differences.md")]
    Unsupported(String),
    #[error("{0} and {1} conflict: {2}")]
    Conflict(&'static str, &'static str, &'static str),
    #[error("unexpected argument '{0}': only one kernel can be given")]
    ExtraArgument(String),
    #[error("{0}")]
    Invalid(String),
    #[error("argument '{0}' is not valid UTF-8 (bad bytes shown as U+FFFD); kexec takes UTF-8 options and file names: rename the file, or point a symlink with a UTF-8 name at it")]
    NotUtf8(String),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Opt {
    Help,
    Version,
    Debug,
    NoIfdown,
    NoSync,
    Force,
    Load,
    Unload,
    Exec,
    Panic,
    Type,
    ArgsLinux,
    FileSyscall,
    ClassicSyscall,
    AutoSyscall,
    NoChecks,
    Status,
    PrintCkrSize,
    Initrd,
    Append,
    ReuseCmdline,
    Dtb,
    Flavor,
    ConsoleSerial,
    SerialPort,
    SerialBaud,
    /// A kexec-tools option this tool deliberately does not implement.
    Unsupported,
}

struct Spec {
    long: &'static str,
    short: Option<char>,
    arg: bool,
    opt: Opt,
}

const fn s(long: &'static str, short: Option<char>, arg: bool, opt: Opt) -> Spec {
    Spec {
        long,
        short,
        arg,
        opt,
    }
}

const SPECS: &[Spec] = &[
    s("help", Some('h'), false, Opt::Help),
    s("version", Some('v'), false, Opt::Version),
    s("debug", Some('d'), false, Opt::Debug),
    s("no-ifdown", Some('x'), false, Opt::NoIfdown),
    s("no-sync", Some('y'), false, Opt::NoSync),
    s("force", Some('f'), false, Opt::Force),
    s("load", Some('l'), false, Opt::Load),
    s("unload", Some('u'), false, Opt::Unload),
    s("exec", Some('e'), false, Opt::Exec),
    s("load-panic", Some('p'), false, Opt::Panic),
    s("type", Some('t'), true, Opt::Type),
    s("kexec-file-syscall", Some('s'), false, Opt::FileSyscall),
    s("kexec-syscall", Some('c'), false, Opt::ClassicSyscall),
    s("kexec-syscall-auto", Some('a'), false, Opt::AutoSyscall),
    s("no-checks", Some('i'), false, Opt::NoChecks),
    s("status", Some('S'), false, Opt::Status),
    s("print-ckr-size", None, false, Opt::PrintCkrSize),
    s("initrd", None, true, Opt::Initrd),
    s("ramdisk", None, true, Opt::Initrd),
    s("append", None, true, Opt::Append),
    s("command-line", None, true, Opt::Append),
    s("reuse-cmdline", None, false, Opt::ReuseCmdline),
    s("dtb", None, true, Opt::Dtb),
    // kexec-tools' ELF loader wants this before it passes an initrd and a
    // command line to a vmlinux; here a vmlinux always gets them.
    s("args-linux", None, false, Opt::ArgsLinux),
    s("flavor", None, true, Opt::Flavor),
    s("console-serial", None, false, Opt::ConsoleSerial),
    s("serial", None, true, Opt::SerialPort),
    s("serial-baud", None, true, Opt::SerialBaud),
    // kexec-tools options with no equivalent here (documented in docs/differences.md).
    s("mem-min", None, true, Opt::Unsupported),
    s("mem-max", None, true, Opt::Unsupported),
    s("reuseinitrd", None, false, Opt::Unsupported),
    s("load-preserve-context", None, false, Opt::Unsupported),
    s("load-jump-back-helper", None, false, Opt::Unsupported),
    s("entry", None, true, Opt::Unsupported),
    s("load-live-update", None, false, Opt::Unsupported),
    s("exec-live-update", None, false, Opt::Unsupported),
    s("console-vga", None, false, Opt::Unsupported),
    s("elf32-core-headers", None, false, Opt::Unsupported),
    s("elf64-core-headers", None, false, Opt::Unsupported),
    s("pass-memmap-cmdline", None, false, Opt::Unsupported),
    s("noefi", None, false, Opt::Unsupported),
    s("reset-vga", None, false, Opt::Unsupported),
    s("real-mode", None, false, Opt::Unsupported),
    s("entry-32bit", None, false, Opt::Unsupported),
    s("module", None, true, Opt::Unsupported),
    s("args-elf", None, false, Opt::Unsupported),
    s("args-none", None, false, Opt::Unsupported),
];

fn find_long(name: &str) -> Result<&'static Spec, UsageError> {
    if let Some(spec) = SPECS.iter().find(|sp| sp.long == name) {
        return Ok(spec);
    }
    let matches: Vec<&Spec> = SPECS
        .iter()
        .filter(|sp| sp.long.starts_with(name))
        .collect();
    match matches.as_slice() {
        [] => Err(UsageError::Unknown(format!("--{name}"))),
        [one] => Ok(one),
        // Prefixes of two spellings of one option (--initrd/--ramdisk never
        // share one, but be safe) are not ambiguous.
        [first, rest @ ..]
            if rest
                .iter()
                .all(|r| r.opt == first.opt && r.opt != Opt::Unsupported) =>
        {
            Ok(first)
        }
        many => Err(UsageError::Ambiguous(
            format!("--{name}"),
            many.iter()
                .map(|m| format!("--{}", m.long))
                .collect::<Vec<_>>()
                .join(", "),
        )),
    }
}

fn find_short(c: char) -> Result<&'static Spec, UsageError> {
    SPECS
        .iter()
        .find(|sp| sp.short == Some(c))
        .ok_or_else(|| UsageError::Unknown(format!("-{c}")))
}

impl Invocation {
    /// kexec-tools' initial flags: a plain `kexec KERNEL` loads, then shuts down.
    fn initial() -> Self {
        Invocation {
            do_load: true,
            do_exec: false,
            do_shutdown: true,
            do_sync: true,
            do_ifdown: false,
            do_unload: false,
            do_status: false,
            crash: false,
            mode: SyscallMode::Auto,
            no_checks: false,
            debug: false,
            force_given: false,
            kernel: None,
            initrds: Vec::new(),
            cmdline: cmdline::Request::default(),
            dtb: None,
            flavor: None,
            image_type: None,
            status_target: Target::Crash,
            console: None,
        }
    }
}

/// Parses the arguments as the OS hands them over (bytes on Linux, where a
/// file name need not be UTF-8): one that is not UTF-8 is a usage error
/// naming it, where `std::env::args()` would panic.
pub fn parse_os<S: AsRef<std::ffi::OsStr>>(args: &[S]) -> Result<Command, UsageError> {
    let mut utf8 = Vec::with_capacity(args.len());
    for a in args {
        let a = a.as_ref();
        let s = a
            .to_str()
            .ok_or_else(|| UsageError::NotUtf8(a.to_string_lossy().into_owned()))?;
        utf8.push(s);
    }
    parse(&utf8)
}

/// Parses `args` (without the program name).
pub fn parse<S: AsRef<str>>(args: &[S]) -> Result<Command, UsageError> {
    let args: Vec<&str> = args.iter().map(AsRef::as_ref).collect();
    match args.first().copied() {
        Some("info") => return parse_info(&args[1..]),
        Some("check") => return parse_check(&args[1..]),
        Some("status") => return parse_status(&args[1..]),
        Some("install-openrc") => return parse_install_openrc(&args[1..]),
        Some("reboot") => return parse_reboot(&args[1..]),
        _ => {}
    }
    let mut inv = Invocation::initial();
    let (mut skip_ifdown, mut skip_sync) = (false, false);
    let mut console_serial = false;
    let mut serial = SerialConsole {
        port: TTYS0,
        baud: None,
    };
    // Which action options appeared, to refuse combinations whose
    // kexec-tools meaning (the later one silently wins) surprises.
    let mut seen: Vec<Opt> = Vec::new();
    let mut positionals: Vec<String> = Vec::new();
    let mut i = 0;
    // Options are applied in order, as getopt_long hands them to kexec-tools.
    let mut apply = |spec: &Spec,
                     value: Option<String>,
                     inv: &mut Invocation|
     -> Result<Option<Command>, UsageError> {
        if matches!(spec.opt, Opt::Load | Opt::Unload | Opt::Exec | Opt::Panic) {
            seen.push(spec.opt);
        }
        match spec.opt {
            Opt::Help => return Ok(Some(Command::Help)),
            Opt::Version => return Ok(Some(Command::Version)),
            Opt::PrintCkrSize => return Ok(Some(Command::PrintCrashSize)),
            Opt::Debug => inv.debug = true,
            Opt::NoIfdown => skip_ifdown = true,
            Opt::NoSync => skip_sync = true,
            Opt::Force => {
                inv.force_given = true;
                (
                    inv.do_load,
                    inv.do_shutdown,
                    inv.do_sync,
                    inv.do_ifdown,
                    inv.do_exec,
                ) = (true, false, true, true, true);
            }
            Opt::Load => {
                (inv.do_load, inv.do_exec, inv.do_shutdown) = (true, false, false);
                inv.status_target = Target::Normal;
            }
            Opt::Unload => {
                (inv.do_load, inv.do_shutdown, inv.do_sync, inv.do_unload) =
                    (false, false, false, true)
            }
            Opt::Exec => {
                (
                    inv.do_load,
                    inv.do_shutdown,
                    inv.do_sync,
                    inv.do_ifdown,
                    inv.do_exec,
                ) = (false, false, true, true, true)
            }
            Opt::Panic => {
                (inv.do_load, inv.do_exec, inv.do_shutdown, inv.do_sync) =
                    (true, false, false, false);
                inv.crash = true;
                inv.status_target = Target::Crash;
            }
            Opt::Type => inv.image_type = value,
            Opt::ArgsLinux => {}
            Opt::FileSyscall => inv.mode = SyscallMode::File,
            Opt::ClassicSyscall => inv.mode = SyscallMode::Classic,
            Opt::AutoSyscall => inv.mode = SyscallMode::Auto,
            Opt::NoChecks => inv.no_checks = true,
            Opt::Status => inv.do_status = true,
            Opt::Initrd => inv.initrds.push(PathBuf::from(value.unwrap_or_default())),
            Opt::Append => inv.cmdline.append = value,
            Opt::ReuseCmdline => inv.cmdline.reuse = true,
            Opt::Dtb => inv.dtb = value.map(PathBuf::from),
            Opt::Flavor => inv.flavor = value,
            Opt::ConsoleSerial => console_serial = true,
            Opt::SerialPort => {
                serial.port = serial_port(value.as_deref().unwrap_or_default())?;
            }
            Opt::SerialBaud => {
                let v = value.unwrap_or_default();
                serial.baud = Some(
                    v.parse::<u32>()
                        .ok()
                        .filter(|&b| SerialConsole::divisor_for(b).is_some())
                        .ok_or_else(|| {
                            UsageError::Invalid(format!(
                                "--serial-baud '{v}': give a rate that divides 115200, from 9600 to 115200 (e.g. 115200, 38400, 9600)"
                            ))
                        })?,
                );
            }
            Opt::Unsupported => return Err(UsageError::Unsupported(spec.long.to_string())),
        }
        Ok(None)
    };
    while i < args.len() {
        let arg = args[i];
        i += 1;
        if arg == "--" {
            positionals.extend(args[i..].iter().map(|s| s.to_string()));
            break;
        }
        if let Some(long) = arg.strip_prefix("--") {
            let (name, inline) = match long.split_once('=') {
                Some((n, v)) => (n, Some(v.to_string())),
                None => (long, None),
            };
            let spec = find_long(name)?;
            let value = match (spec.arg, inline) {
                (true, Some(v)) => Some(v),
                (true, None) => {
                    let v = args
                        .get(i)
                        .ok_or_else(|| UsageError::MissingValue(format!("--{}", spec.long)))?;
                    i += 1;
                    Some(v.to_string())
                }
                (false, Some(_)) => return Err(UsageError::UnexpectedValue(spec.long.to_string())),
                (false, None) => None,
            };
            if let Some(cmd) = apply(spec, value, &mut inv)? {
                return Ok(cmd);
            }
        } else if arg.len() > 1 && arg.starts_with('-') {
            let chars: Vec<char> = arg[1..].chars().collect();
            let mut j = 0;
            while j < chars.len() {
                let spec = find_short(chars[j])?;
                j += 1;
                let value = if spec.arg {
                    let rest: String = chars[j..].iter().collect();
                    j = chars.len();
                    if rest.is_empty() {
                        let v = args.get(i).ok_or_else(|| {
                            UsageError::MissingValue(format!("-{}", chars[j - 1]))
                        })?;
                        i += 1;
                        Some(v.to_string())
                    } else {
                        Some(rest)
                    }
                } else {
                    None
                };
                if let Some(cmd) = apply(spec, value, &mut inv)? {
                    return Ok(cmd);
                }
            }
        } else {
            positionals.push(arg.to_string());
        }
    }
    if !inv.do_status {
        const CONFLICTS: &[(Opt, Opt, &str, &str, &str)] = &[
            (Opt::Load, Opt::Unload, "-l", "-u", "-l loads a kernel and -u unloads it; give one"),
            (
                Opt::Load,
                Opt::Exec,
                "-l",
                "-e",
                "kexec-tools would silently drop one of them; load with -l, then run kexec -e (or kexec -f KERNEL to load and boot at once)",
            ),
            (Opt::Exec, Opt::Unload, "-e", "-u", "-e boots the loaded kernel and -u unloads it; give one"),
            (Opt::Panic, Opt::Exec, "-p", "-e", "a crash kernel boots only on a panic; -e boots the one loaded with -l"),
        ];
        for (a, b, na, nb, why) in CONFLICTS {
            if seen.contains(a) && seen.contains(b) {
                return Err(UsageError::Conflict(na, nb, why));
            }
        }
    }
    if console_serial {
        // Without --console-serial, --serial and --serial-baud have no
        // effect, as in kexec-tools.
        inv.console = Some(serial);
    }
    if skip_ifdown {
        inv.do_ifdown = false;
    }
    if skip_sync {
        inv.do_sync = false;
    }
    if inv.do_status {
        // -S supersedes every other action, as in kexec-tools.
        (
            inv.do_load,
            inv.do_unload,
            inv.do_shutdown,
            inv.do_sync,
            inv.do_ifdown,
            inv.do_exec,
        ) = (false, false, false, false, false, false);
    }
    let mut positionals = positionals.into_iter();
    inv.kernel = positionals.next().map(PathBuf::from);
    if let Some(extra) = positionals.next() {
        return Err(UsageError::ExtraArgument(extra));
    }
    Ok(Command::Kexec(Box::new(inv)))
}

fn parse_info(args: &[&str]) -> Result<Command, UsageError> {
    let mut json = false;
    let mut images = Vec::new();
    for a in args {
        match *a {
            "--json" => json = true,
            "-h" | "--help" => return Ok(Command::Help),
            o if o.starts_with('-') && o.len() > 1 => {
                return Err(UsageError::Unknown(o.to_string()))
            }
            p => images.push(PathBuf::from(p)),
        }
    }
    if images.is_empty() {
        return Err(UsageError::Invalid(
            "kexec info needs at least one image: kexec info IMAGE... [--json]".into(),
        ));
    }
    Ok(Command::Info { images, json })
}

fn parse_check(args: &[&str]) -> Result<Command, UsageError> {
    let (mut crash, mut json) = (false, false);
    for a in args {
        match *a {
            "-p" | "--load-panic" => crash = true,
            "--json" => json = true,
            "-h" | "--help" => return Ok(Command::Help),
            o => return Err(UsageError::Unknown(o.to_string())),
        }
    }
    Ok(Command::Check { crash, json })
}

fn parse_status(args: &[&str]) -> Result<Command, UsageError> {
    let mut json = false;
    for a in args {
        match *a {
            "--json" => json = true,
            "-h" | "--help" => return Ok(Command::Help),
            o => return Err(UsageError::Unknown(o.to_string())),
        }
    }
    Ok(Command::Status { json })
}

fn parse_install_openrc(args: &[&str]) -> Result<Command, UsageError> {
    let (mut root, mut rc_update) = (PathBuf::from("/"), true);
    let mut i = 0;
    while i < args.len() {
        match args[i] {
            "--no-rc-update" => rc_update = false,
            "--root" => {
                i += 1;
                let v = args
                    .get(i)
                    .ok_or_else(|| UsageError::MissingValue("--root".into()))?;
                root = PathBuf::from(v);
            }
            a if a.starts_with("--root=") => root = PathBuf::from(&a["--root=".len()..]),
            "-h" | "--help" => return Ok(Command::Help),
            o => return Err(UsageError::Unknown(o.to_string())),
        }
        i += 1;
    }
    Ok(Command::InstallOpenrc { root, rc_update })
}

fn parse_reboot(args: &[&str]) -> Result<Command, UsageError> {
    match args.first() {
        None => Ok(Command::Reboot),
        Some(&("-h" | "--help")) => Ok(Command::Help),
        Some(o) => Err(UsageError::Unknown(o.to_string())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn inv(args: &[&str]) -> Invocation {
        match parse(args).unwrap() {
            Command::Kexec(i) => *i,
            other => panic!("{args:?} parsed as {other:?}"),
        }
    }

    #[test]
    fn plain_kernel_loads_then_shuts_down() {
        let i = inv(&["/boot/vmlinuz"]);
        assert!(i.do_load && i.do_shutdown && i.do_sync && !i.do_exec && !i.do_ifdown);
        assert_eq!(i.kernel, Some(PathBuf::from("/boot/vmlinuz")));
        assert_eq!(i.mode, SyscallMode::Auto);
    }

    #[test]
    fn load_exec_unload_status_set_kexec_tools_flags() {
        let l = inv(&["-l", "k"]);
        assert!(l.do_load && !l.do_shutdown && !l.do_exec);
        let e = inv(&["-e"]);
        assert!(!e.do_load && e.do_exec && e.do_sync && e.do_ifdown && !e.do_shutdown);
        let u = inv(&["-u"]);
        assert!(u.do_unload && !u.do_load && !u.do_sync);
        let p = inv(&["-p", "k"]);
        assert!(p.crash && p.do_load && !p.do_sync);
        let s = inv(&["-S"]);
        assert!(s.do_status && !s.do_load && !s.do_shutdown);
        assert_eq!(s.status_target, Target::Crash);
        assert_eq!(inv(&["-l", "-S"]).status_target, Target::Normal);
        assert_eq!(inv(&["-S", "-p"]).status_target, Target::Crash);
        let pu = inv(&["-p", "-u"]);
        assert!(pu.crash && pu.do_unload);
    }

    #[test]
    fn force_and_load_order_matters_as_in_getopt() {
        let f = inv(&["-f", "k"]);
        assert!(
            f.do_load && f.do_exec && f.do_ifdown && f.do_sync && !f.do_shutdown && f.force_given
        );
        let fl = inv(&["-f", "-l", "k"]);
        assert!(fl.do_load && !fl.do_exec && fl.force_given);
        let lf = inv(&["-l", "-f", "k"]);
        assert!(lf.do_exec);
    }

    #[test]
    fn non_utf8_arguments_are_a_usage_error_naming_them() {
        use std::os::unix::ffi::OsStrExt;
        let args = [
            std::ffi::OsStr::from_bytes(b"-l"),
            std::ffi::OsStr::from_bytes(b"/boot/vmlinuz-\xff"),
        ];
        let err = parse_os(&args).unwrap_err();
        assert_eq!(err, UsageError::NotUtf8("/boot/vmlinuz-\u{FFFD}".into()));
        assert!(err.to_string().contains("rename the file"), "{err}");
        assert!(matches!(parse_os(&["-l", "k"]), Ok(Command::Kexec(_))));
    }

    #[test]
    fn conflicting_actions_are_refused() {
        for args in [
            &["-l", "-u", "k"][..],
            &["-u", "-l", "k"],
            &["-l", "-e", "k"],
            &["-e", "-u"],
            &["-p", "-e", "k"],
        ] {
            let err = parse(args).unwrap_err();
            assert!(matches!(err, UsageError::Conflict(..)), "{args:?}: {err}");
        }
        assert!(parse(&["-l", "-u", "k"])
            .unwrap_err()
            .to_string()
            .starts_with("-l and -u conflict"));
        // -p -u is how kexec-tools unloads the crash kernel; -S supersedes everything.
        assert!(inv(&["-p", "-u"]).do_unload);
        assert!(inv(&["-l", "-e", "-S"]).do_status);
    }

    #[test]
    fn no_sync_and_no_ifdown_win_regardless_of_position() {
        let e = inv(&["-y", "-x", "-e"]);
        assert!(e.do_exec && !e.do_sync && !e.do_ifdown);
        let e = inv(&["--exec", "--no-sync"]);
        assert!(!e.do_sync && e.do_ifdown);
        let e = inv(&["-ex"]);
        assert!(e.do_exec && e.do_sync && !e.do_ifdown);
    }

    #[test]
    fn debug_does_not_imply_no_ifdown() {
        let e = inv(&["-d", "-e"]);
        assert!(e.debug && e.do_ifdown);
    }

    #[test]
    fn syscall_modes_last_wins() {
        assert_eq!(inv(&["-s", "-l", "k"]).mode, SyscallMode::File);
        assert_eq!(inv(&["-c", "-l", "k"]).mode, SyscallMode::Classic);
        assert_eq!(inv(&["-s", "-a", "-l", "k"]).mode, SyscallMode::Auto);
        assert_eq!(
            inv(&["--kexec-file-syscall", "-l", "k"]).mode,
            SyscallMode::File
        );
        assert_eq!(
            inv(&["--kexec-syscall", "-l", "k"]).mode,
            SyscallMode::Classic
        );
        assert_eq!(
            inv(&["--kexec-syscall-auto", "-l", "k"]).mode,
            SyscallMode::Auto
        );
        assert!(inv(&["-i", "-c", "-l", "k"]).no_checks);
        assert!(inv(&["--no-checks", "-l", "k"]).no_checks);
    }

    #[test]
    fn initrd_spellings_and_several_initrds() {
        let i = inv(&[
            "-l",
            "k",
            "--initrd",
            "/a",
            "--initrd=/b",
            "--ramdisk",
            "/c",
            "--ramdisk=/d",
        ]);
        assert_eq!(i.initrds, ["/a", "/b", "/c", "/d"].map(PathBuf::from));
    }

    #[test]
    fn append_and_command_line_are_one_option_last_wins() {
        let i = inv(&["-l", "k", "--append=a", "--command-line", "b"]);
        assert_eq!(i.cmdline.append.as_deref(), Some("b"));
        let i = inv(&["-l", "k", "--command-line=b", "--append", "a x"]);
        assert_eq!(i.cmdline.append.as_deref(), Some("a x"));
        assert!(inv(&["-l", "k", "--reuse-cmdline"]).cmdline.reuse);
    }

    #[test]
    fn options_anywhere_and_long_prefixes() {
        let i = inv(&["/boot/vmlinuz", "-l", "--init=/i", "--reuse-cm"]);
        assert_eq!(i.kernel, Some(PathBuf::from("/boot/vmlinuz")));
        assert_eq!(i.initrds, vec![PathBuf::from("/i")]);
        assert!(i.cmdline.reuse);
        assert!(matches!(parse(&["--re"]), Err(UsageError::Ambiguous(..))));
        assert_eq!(
            inv(&["-l", "--", "-weird-name"]).kernel,
            Some(PathBuf::from("-weird-name"))
        );
    }

    #[test]
    fn other_options() {
        let i = inv(&[
            "-l", "k", "--dtb", "x.dtb", "--flavor", "auto", "-t", "bzImage", "-d",
        ]);
        assert_eq!(i.dtb, Some(PathBuf::from("x.dtb")));
        assert_eq!(i.flavor.as_deref(), Some("auto"));
        assert_eq!(i.image_type.as_deref(), Some("bzImage"));
        assert!(i.debug);
        assert_eq!(
            inv(&["-l", "-tbzImage", "k"]).image_type.as_deref(),
            Some("bzImage")
        );
        assert_eq!(parse(&["-h"]).unwrap(), Command::Help);
        assert_eq!(parse(&["--help"]).unwrap(), Command::Help);
        assert_eq!(parse(&["-v"]).unwrap(), Command::Version);
        assert_eq!(parse(&["--version"]).unwrap(), Command::Version);
        assert_eq!(
            parse(&["--print-ckr-size"]).unwrap(),
            Command::PrintCrashSize
        );
        // kexec-tools' way of giving a vmlinux an initrd: accepted, as it changes nothing here.
        let v = inv(&["-l", "vmlinux", "--args-linux", "--initrd", "i"]);
        assert_eq!(v.initrds, vec![PathBuf::from("i")]);
        assert_eq!(
            parse(&["-l", "vmlinux", "--args-elf"]),
            Err(UsageError::Unsupported("args-elf".into()))
        );
    }

    #[test]
    fn usage_errors() {
        assert_eq!(parse(&["-Z"]), Err(UsageError::Unknown("-Z".into())));
        assert_eq!(
            parse(&["--bogus"]),
            Err(UsageError::Unknown("--bogus".into()))
        );
        assert_eq!(
            parse(&["-l", "k", "--initrd"]),
            Err(UsageError::MissingValue("--initrd".into()))
        );
        assert_eq!(
            parse(&["--load=x"]),
            Err(UsageError::UnexpectedValue("load".into()))
        );
        assert_eq!(
            parse(&["--mem-min=0x1000", "-l", "k"]),
            Err(UsageError::Unsupported("mem-min".into()))
        );
        assert_eq!(
            parse(&["-l", "a", "b"]),
            Err(UsageError::ExtraArgument("b".into()))
        );
    }

    #[test]
    fn subcommands() {
        assert_eq!(
            parse(&["info", "a", "--json", "b"]).unwrap(),
            Command::Info {
                images: vec!["a".into(), "b".into()],
                json: true
            }
        );
        assert!(parse(&["info"]).is_err());
        assert_eq!(
            parse(&["check"]).unwrap(),
            Command::Check {
                crash: false,
                json: false
            }
        );
        assert_eq!(
            parse(&["check", "-p"]).unwrap(),
            Command::Check {
                crash: true,
                json: false
            }
        );
        assert_eq!(parse(&["status"]).unwrap(), Command::Status { json: false });
        assert_eq!(
            parse(&["status", "--json"]).unwrap(),
            Command::Status { json: true }
        );
        // A subcommand word elsewhere is a file name, as in kexec-tools.
        assert_eq!(inv(&["-l", "status"]).kernel, Some(PathBuf::from("status")));
    }

    #[test]
    fn openrc_subcommands() {
        assert_eq!(
            parse(&["install-openrc"]).unwrap(),
            Command::InstallOpenrc {
                root: PathBuf::from("/"),
                rc_update: true
            }
        );
        assert_eq!(
            parse(&["install-openrc", "--root", "/mnt", "--no-rc-update"]).unwrap(),
            Command::InstallOpenrc {
                root: PathBuf::from("/mnt"),
                rc_update: false
            }
        );
        assert_eq!(
            parse(&["install-openrc", "--root=/x"]).unwrap(),
            Command::InstallOpenrc {
                root: PathBuf::from("/x"),
                rc_update: true
            }
        );
        assert!(parse(&["install-openrc", "--root"]).is_err());
        assert!(parse(&["install-openrc", "--bogus"]).is_err());
        assert_eq!(parse(&["reboot"]).unwrap(), Command::Reboot);
        assert!(parse(&["reboot", "now"]).is_err());
        assert_eq!(inv(&["-l", "reboot"]).kernel, Some(PathBuf::from("reboot")));
    }

    #[test]
    fn console_serial_takes_kexec_tools_port_and_rate_options() {
        assert_eq!(
            inv(&["--console-serial", "-l", "k"]).console,
            Some(SerialConsole {
                port: 0x3f8,
                baud: None
            })
        );
        assert_eq!(
            inv(&[
                "--serial=ttyS1",
                "--serial-baud",
                "115200",
                "--console-serial",
                "-l",
                "k"
            ])
            .console,
            Some(SerialConsole {
                port: 0x2f8,
                baud: Some(115_200)
            })
        );
        let port = inv(&["--console-serial", "--serial", "0x3e8", "-l", "k"]).console;
        assert_eq!(port.map(|c| c.port), Some(0x3e8));
        assert_eq!(
            inv(&["--serial=ttyS1", "--serial-baud=9600", "-l", "k"]).console,
            None,
            "no effect without --console-serial, as in kexec-tools"
        );
        for bad in [
            "--serial=ttyS9",
            "--serial=1016",
            "--serial=0x",
            "--serial=0x10000",
            "--serial-baud=12345",
            "--serial-baud=4800",
            "--serial-baud=fast",
        ] {
            match parse(&[bad, "--console-serial", "-l", "k"]) {
                Err(UsageError::Invalid(m)) => {
                    assert!(m.contains(bad.split('=').next().unwrap()), "{m}")
                }
                other => panic!("{bad}: {other:?}"),
            }
        }
    }
}
