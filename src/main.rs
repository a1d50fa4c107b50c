//! The `kexec` command: parses, calls the library, prints, exits.
//!
//! All decisions live in `kexec::cli` (tested over a fake kernel); this file
//! only connects them to the real system and to stdout/stderr.

use std::process::ExitCode;

use kexec::check::{self, Abilities};
use kexec::cli::{self, Command, Context, Notice};
use kexec::status::{self, Store};
use kexec::syscall::{KexecSys, LinuxKexec};
use kexec::sysview::SystemView;

fn main() -> ExitCode {
    // args_os: std::env::args() panics on a file name that is not UTF-8.
    let args: Vec<std::ffi::OsString> = std::env::args_os().skip(1).collect();
    let command = match cli::parse_os(&args) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("kexec: {e}");
            return ExitCode::from(cli::EXIT_USAGE);
        }
    };
    ExitCode::from(dispatch(command))
}

fn dispatch(command: Command) -> u8 {
    let mut sys = LinuxKexec::default();
    match command {
        Command::Help => {
            print!("{}", cli::HELP);
            0
        }
        Command::Version => {
            print!("{}", cli::version_text());
            0
        }
        Command::PrintCrashSize => {
            println!("{}", sys.state().crash_size.unwrap_or(0));
            0
        }
        Command::Info { images, json } => info(&images, json),
        Command::Check { crash, json } => {
            let facts = SystemView::live().facts();
            // The classic loader builds x86_64 boot_params only.
            let classic = facts.arch == "x86_64" && kexec::classic::purgatory::available();
            let report = check::check(&facts, &sys.state(), crash, Abilities { classic });
            if json {
                println!(
                    "{}",
                    serde_json::to_string_pretty(&report).unwrap_or_default()
                );
            } else {
                print!("{report}");
            }
            if report.passed() {
                0
            } else {
                cli::EXIT_USAGE
            }
        }
        Command::Status { json } => {
            let report = status::Report::gather(sys.state(), &Store::new(status::dir_from_env()));
            if json {
                println!(
                    "{}",
                    serde_json::to_string_pretty(&report).unwrap_or_default()
                );
            } else {
                print!("{report}");
            }
            0
        }
        Command::InstallOpenrc { root, rc_update } => {
            let opts = cli::openrc::InstallOptions { root, rc_update };
            match cli::openrc::install(&opts, &mut run_command) {
                Ok(steps) => {
                    for s in steps {
                        println!("kexec: {s}");
                    }
                    0
                }
                Err(e) => {
                    eprintln!("kexec: {e}");
                    cli::EXIT_USAGE
                }
            }
        }
        Command::Reboot => {
            match cli::openrc::arm_and_reboot(std::path::Path::new("/"), &mut run_command) {
                Ok(()) => 0,
                Err(e) => {
                    eprintln!("kexec: {e}");
                    cli::EXIT_USAGE
                }
            }
        }
        Command::Kexec(inv) => {
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_secs())
                .unwrap_or(0);
            let mut ctx = Context {
                sys: &mut sys,
                view: SystemView::live(),
                store: Store::new(status::dir_from_env()),
                now,
            };
            let debug = inv.debug;
            let mut notify = |n: Notice| match n {
                Notice::Warning(w) => eprintln!("kexec: warning: {w}"),
                Notice::Debug(d) if debug => eprintln!("kexec: {d}"),
                Notice::Debug(_) => {}
            };
            match cli::run(&inv, &mut ctx, &mut notify) {
                Ok(code) => code,
                Err(failure) => {
                    eprintln!("kexec: {failure}");
                    failure.code
                }
            }
        }
    }
}

/// Runs an external command for `install-openrc`/`reboot`, its output captured.
fn run_command(program: &str, args: &[&str]) -> std::io::Result<std::process::Output> {
    std::process::Command::new(program).args(args).output()
}

/// `kexec info`: the image library's report per file; exit 1 if any failed.
fn info(images: &[std::path::PathBuf], json: bool) -> u8 {
    let mut reports = Vec::new();
    let mut code = 0;
    for path in images {
        match kexec::image::inspect_path(path) {
            Ok(r) => reports.push(r),
            Err(e) => {
                eprintln!("kexec: {e}");
                code = cli::EXIT_USAGE;
            }
        }
    }
    if json {
        let values: Vec<serde_json::Value> = reports
            .iter()
            .map(|r| serde_json::to_value(r).unwrap_or_default())
            .collect();
        println!(
            "{}",
            serde_json::to_string_pretty(&values).unwrap_or_default()
        );
    } else {
        for r in &reports {
            print!("{r}");
        }
    }
    code
}
