//! Loading: resolving the kernel, initrds and command line of an
//! invocation, then handing them to `kexec_file_load` or to the classic
//! `kexec_load` planner, with auto mode's fallback between the two, and
//! recording what was loaded.

use std::os::fd::AsFd;

use nix::errno::Errno;

use super::flavor;
use super::parse::{Invocation, SyscallMode};
use super::run::{
    falls_back, target_of, Context, Failure, Notice, EXIT_FAILED, EXIT_FILE_UNUSABLE, EXIT_USAGE,
};
use crate::classic::{self, Machine};
use crate::cmdline;
use crate::diagnose::{self, Diagnosis, ImageHints, Op};
use crate::initrd;
use crate::kernel_file::KernelFile;
use crate::status::Record;
use crate::syscall::Target;

/// The files and command line of a load, resolved and checked, before any syscall.
struct Prepared {
    kernel: KernelFile,
    initrd: Option<initrd::Initrd>,
    cmdline: cmdline::Cmdline,
    hints: ImageHints,
}

fn prepare(
    inv: &Invocation,
    ctx: &mut Context<'_>,
    notify: &mut dyn FnMut(Notice),
) -> Result<Prepared, Failure> {
    let target = target_of(inv);
    let mut kernel_path = inv.kernel.clone();
    let mut initrd_paths = inv.initrds.clone();
    if let Some(flavor) = &inv.flavor {
        let sel = flavor::resolve(flavor, &ctx.view).map_err(|e| Failure::usage(e.to_string()))?;
        if kernel_path.is_none() {
            kernel_path = Some(sel.kernel);
        }
        if initrd_paths.is_empty() {
            initrd_paths = sel.initrds;
        }
    }
    let Some(kernel_path) = kernel_path else {
        return Err(Failure::usage("No kernel specified: give the kernel image, e.g. kexec -l /boot/vmlinuz-lts (see kexec --help)"));
    };
    if let Some(dtb) = &inv.dtb {
        let arch = ctx.view.arch();
        let why = if arch == "aarch64" {
            "kexec_file_load hands the new kernel the running kernel's device tree, and this kexec has no arm64 kexec_load path"
        } else {
            "device trees are for arm64; an x86 kernel gets its hardware description from boot_params and ACPI"
        };
        return Err(Failure::usage(format!(
            "--dtb {}: not usable on this {arch} system: {why}; drop --dtb",
            dtb.display()
        )));
    }
    let kernel = KernelFile::open(&kernel_path).map_err(|e| Failure::usage(e.to_string()))?;
    let arch = ctx.view.arch();
    if let Some(built) = kernel.arch.as_deref().filter(|_| !kernel.runs_on(&arch)) {
        return Err(Failure::usage(format!(
            "kernel {} is {} kernel, but this machine runs {arch}: kexec only boots kernels for the running \
             architecture; give an {arch} kernel (e.g. /boot/vmlinuz-$(uname -r))",
            kernel.path.display(),
            match built {
                "aarch64" | "arm64" => "an arm64".to_string(),
                other => format!("an {other}"),
            }
        )));
    }
    if inv.flavor.is_some() && !inv.force_given {
        match kernel.version() {
            Some(v) => flavor::check_modules(&ctx.view, &kernel.path, &v)
                .map_err(|e| Failure::usage(e.to_string()))?,
            None => notify(Notice::Warning(format!(
                "{}: no version string found, so /lib/modules was not checked",
                kernel.path.display()
            ))),
        }
    }
    // A UKI's own .cmdline applies unless the user gave a command line.
    let mut request = inv.cmdline.clone();
    if request == cmdline::Request::default() {
        if let Some(c) = kernel.uki.as_ref().and_then(|u| u.cmdline.clone()) {
            request.append = Some(c);
        }
    }
    let cmdline = cmdline::build(
        &request,
        || ctx.view.proc_cmdline(),
        inv.crash,
        kernel.cmdline_capacity(inv.crash),
    )
    .map_err(|e| Failure::usage(format!("{e}")))?;
    let embedded_name = format!(".initrd of {}", kernel.path.display());
    let embedded = kernel
        .uki
        .as_ref()
        .and_then(|u| u.initrd.as_deref())
        .map(|d| (embedded_name, d));
    let initrd =
        initrd::assemble(embedded, &initrd_paths).map_err(|e| Failure::usage(e.to_string()))?;
    if let Some(i) = initrd.as_ref().filter(|i| initrd::wants_microcode_check(i)) {
        if let Some(problem) = initrd::microcode_problem(i) {
            notify(Notice::Warning(format!(
                "{problem} (the initrd is loaded anyway)"
            )));
        }
    }
    let mut hints = kernel.hints();
    hints.initrd_len = initrd.as_ref().map(|i| i.total_len);
    hints.cmdline_len = cmdline.as_bytes().len();
    notify(Notice::Debug(format!(
        "kernel {} ({}, {} bytes), {} initrd(s) ({} bytes), {} image, cmdline {:?}",
        kernel.path.display(),
        kernel.kind(),
        kernel.bytes.len(),
        initrd.as_ref().map_or(0, |i| i.parts.len()),
        initrd.as_ref().map_or(0, |i| i.total_len),
        match target {
            Target::Normal => "normal",
            Target::Crash => "crash",
        },
        cmdline.as_str()
    )));
    Ok(Prepared {
        kernel,
        initrd,
        cmdline,
        hints,
    })
}

pub(super) fn load(
    inv: &Invocation,
    ctx: &mut Context<'_>,
    notify: &mut dyn FnMut(Notice),
) -> Result<(), Failure> {
    let target = target_of(inv);
    if target == Target::Crash && ctx.sys.state().crash_size == Some(0) {
        let facts = ctx.view.facts();
        return Err(Failure::with(
            EXIT_USAGE,
            "Memory for crashkernel is not reserved",
            Diagnosis {
                cause: "a crash kernel runs in memory reserved at boot, and /sys/kernel/kexec_crash_size is 0".into(),
                fix: Some(diagnose::boot_param_fix(&facts, "crashkernel=256M")),
            },
        ));
    }
    let prepared = prepare(inv, ctx, notify)?;
    // Only our purgatory can report on a serial port: asking for that picks
    // kexec_load, and kexec_file_load (the kernel's purgatory) ignores it.
    let mode = match (inv.console.is_some(), inv.mode) {
        (true, SyscallMode::Auto) if classic_supported(ctx) => SyscallMode::Classic,
        (true, SyscallMode::File) => {
            notify(Notice::Warning(
                "--console-serial has no effect with kexec_file_load (-s), whose purgatory is the kernel's; use -c to see it".into(),
            ));
            SyscallMode::File
        }
        (_, m) => m,
    };
    let op = if mode == SyscallMode::Classic {
        Op::Load
    } else {
        Op::FileLoad
    };
    super::run::require_cap_sys_boot(ctx, op, target)?;
    let syscall = match mode {
        SyscallMode::Classic => {
            classic_load(inv, &prepared, ctx, notify)?;
            "kexec_load"
        }
        SyscallMode::File | SyscallMode::Auto => match file_load(&prepared, target, ctx) {
            Ok(()) => "kexec_file_load",
            Err(errno)
                if mode == SyscallMode::Auto && falls_back(errno) && classic_supported(ctx) =>
            {
                notify(Notice::Debug(format!(
                    "kexec_file_load answered {}; falling back to kexec_load",
                    diagnose::errno_name(errno)
                )));
                classic_load(inv, &prepared, ctx, notify).map_err(|mut f| {
                    f.message = format!(
                        "kexec_file_load failed ({}) and the kexec_load fallback failed too: {}",
                        diagnose::errno_name(errno),
                        f.message
                    );
                    f
                })?;
                "kexec_load"
            }
            Err(errno) => {
                let d = diagnose::explain(
                    Op::FileLoad,
                    errno,
                    target,
                    &ctx.view.facts(),
                    &prepared.hints,
                );
                let code = if falls_back(errno) {
                    EXIT_FILE_UNUSABLE
                } else {
                    EXIT_FAILED
                };
                let mut f = Failure::kernel(code, Op::FileLoad, errno, d);
                if mode == SyscallMode::Auto {
                    // Only reached when there is no kexec_load path to fall back to.
                    f.code = EXIT_FAILED;
                    f.message.push_str(&format!(
                        " (and this kexec has no kexec_load loader for {})",
                        ctx.view.arch()
                    ));
                } else if code == EXIT_FILE_UNUSABLE {
                    f.message
                        .push_str(" (syscall kexec_file_load not usable for this kernel or image)");
                }
                return Err(f);
            }
        },
    };
    let record = Record {
        // Absolute, so `kexec status` run from elsewhere names the same file.
        kernel: std::fs::canonicalize(&prepared.kernel.path)
            .unwrap_or_else(|_| prepared.kernel.path.clone())
            .display()
            .to_string(),
        version: prepared.kernel.version(),
        cmdline: prepared.cmdline.as_str().to_string(),
        initrds: prepared
            .initrd
            .as_ref()
            .map(|i| i.parts.clone())
            .unwrap_or_default(),
        loaded_at: ctx.now,
        syscall: syscall.to_string(),
    };
    if let Err(e) = ctx.store.save(target, &record) {
        notify(Notice::Warning(format!(
            "{e}; `kexec status` will not know what was loaded"
        )));
    }
    Ok(())
}

fn file_load(p: &Prepared, target: Target, ctx: &mut Context<'_>) -> Result<(), Errno> {
    ctx.sys.kexec_file_load(
        p.kernel.file.as_fd(),
        p.initrd.as_ref().map(|i| i.fd()),
        p.cmdline.as_bytes(),
        target.file_flag(),
    )
}

/// The classic loader builds x86_64 boot_params and purgatory only.
fn classic_supported(ctx: &Context<'_>) -> bool {
    ctx.view.arch() == "x86_64" && classic::purgatory::available()
}

/// The `kexec_load` path: this crate's own planner lays out the kernel,
/// initrd, zero page and purgatory from the firmware memory map, and the
/// kernel copies the segments.
fn classic_load(
    inv: &Invocation,
    p: &Prepared,
    ctx: &mut Context<'_>,
    notify: &mut dyn FnMut(Notice),
) -> Result<(), Failure> {
    let target = target_of(inv);
    if !classic_supported(ctx) {
        return Err(Failure::usage(format!(
            "kexec_load (-c) is implemented for x86_64 only and this system is {}; use kexec_file_load (-s, or the default mode)",
            ctx.view.arch()
        )));
    }
    let initrd =
        match &p.initrd {
            Some(i) => Some(i.bytes().map_err(|e| {
                Failure::usage(format!("cannot map the initrd for kexec_load: {e}"))
            })?),
            None => None,
        };
    let machine = Machine::from_root(&ctx.view.root).map_err(|e| Failure {
        code: EXIT_FAILED,
        message: format!("kexec_load: cannot read this machine's memory layout: {e}"),
        diagnosis: None,
    })?;
    let req = classic::Request {
        kernel: &p.kernel.bytes,
        initrd: initrd.as_deref(),
        cmdline: p.cmdline.as_bytes(),
        crash: inv.crash,
        no_checks: inv.no_checks,
        console: inv.console,
    };
    let plan = classic::plan(&req, &machine).map_err(|e| Failure {
        code: EXIT_FAILED,
        message: format!("kexec_load: cannot load {}: {e}", p.kernel.path.display()),
        diagnosis: None,
    })?;
    let mut layout = format!(
        "kexec_load: entry {:#x}, flags {:#x}",
        plan.entry, plan.flags
    );
    for seg in &plan.segments {
        layout.push_str(&format!(
            "\n  segment {:#012x}-{:#012x} ({} bytes copied, {} reserved)",
            seg.mem,
            seg.mem + seg.memsz,
            seg.buf.len(),
            seg.memsz
        ));
    }
    notify(Notice::Debug(layout));
    ctx.sys
        .kexec_load(plan.entry, &plan.segments, plan.flags)
        .map_err(|errno| {
            let d = diagnose::explain(Op::Load, errno, target, &ctx.view.facts(), &p.hints);
            Failure::kernel(EXIT_FAILED, Op::Load, errno, d)
        })
}
