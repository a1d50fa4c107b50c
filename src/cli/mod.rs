//! The `kexec` command line: kexec-tools' grammar and exit codes, plus the
//! `info`, `check`, `status`, `install-openrc` and `reboot` subcommands. Parsing ([`parse`]) and running
//! ([`run`]) are library code so they are tested over the fake syscall layer;
//! `main.rs` only wires them to the real system and prints.

pub mod flavor;
mod load;
pub mod openrc;
pub mod parse;
pub mod run;

pub use parse::{parse, parse_os, Command, Invocation, SyscallMode, UsageError};
pub use run::{
    run, Context, Failure, Notice, EXIT_FAILED, EXIT_FILE_UNUSABLE, EXIT_OK, EXIT_USAGE,
};

/// `kexec --version`.
pub fn version_text() -> String {
    format!(
        "kexec-rs {} (kexec-tools compatible)\n",
        env!("CARGO_PKG_VERSION")
    )
}

/// `kexec --help`.
pub const HELP: &str = "\
Usage: kexec [OPTION]... [KERNEL]
       kexec info IMAGE... [--json]
       kexec check [-p] [--json]
       kexec status [--json]
       kexec install-openrc [--root DIR] [--no-rc-update]
       kexec reboot
Directly reboot into a new kernel (drop-in for kexec-tools' kexec).

 -h, --help                Print this help.
 -v, --version             Print the version of kexec.
 -f, --force               Load KERNEL (if given), sync, bring interfaces down
                           and boot it at once, without shutdown(8).
 -i, --no-checks           No memory integrity checks in purgatory (kexec_load).
 -x, --no-ifdown           Don't bring down network interfaces.
 -y, --no-sync             Don't sync filesystems before kexec.
 -l, --load                Load the new kernel into the current kernel.
 -p, --load-panic          Load the new kernel for use on panic.
 -u, --unload              Unload the current kexec target kernel
                           (with -p: the crash kernel).
 -e, --exec                Execute the currently loaded kernel.
 -s, --kexec-file-syscall  Use kexec_file_load only.
 -c, --kexec-syscall       Use kexec_load only.
 -a, --kexec-syscall-auto  kexec_file_load, falling back to kexec_load when the
                           kernel lacks it or cannot take the image (default).
 -d, --debug               Print each step.
 -S, --status              Exit 1 if the image (crash by default, -l: the
                           normal one) is loaded, 0 if not.
 -t, --type=TYPE           Accepted for compatibility; the type is detected.
     --initrd=FILE         Initrd; give it several times to concatenate them
     --ramdisk=FILE        in order (e.g. microcode first).
     --append=STRING       Command line for the new kernel (same option as
     --command-line=STRING --command-line; the last one given wins).
     --reuse-cmdline       Start from /proc/cmdline (without BOOT_IMAGE=, and
                           without crashkernel= for -p), then --append.
     --dtb=FILE            Device tree (arm64 only).
     --args-linux          Accepted for compatibility: a vmlinux always gets
                           the initrd and command line.
     --console-serial      The purgatory reports on a serial port that it runs
                           (and why, if it halts); picks kexec_load.
     --serial=PORT         ttyS0 (default), ttyS1 or an I/O port like 0x3f8.
     --serial-baud=BAUD    Reprogram the port (115200..9600); default: keep it.
     --flavor=auto|NAME    Alpine: /boot/vmlinuz-NAME, /boot/*-ucode.img and
                           /boot/initramfs-NAME; auto takes NAME from uname -r.
     --print-ckr-size      Print the crash kernel reservation size in bytes.

`install-openrc` installs the OpenRC services (/etc/init.d/kexec-load,
kexec-exec, /etc/conf.d/kexec) and adds them to their runlevels. `reboot`
reboots through them with kexec (under busybox init a plain reboot or
poweroff does not kexec unless KEXEC_ON=always); see docs/openrc.md.

Plain `kexec KERNEL` loads KERNEL then runs `shutdown -r now`.
Each load is recorded in /run/kexec/{loaded,crash}.json ($KEXEC_STATUS_DIR
overrides) for `kexec status`; an unload removes the record.
Exit status: 0 success, 1 usage error or failure before loading,
255 the kernel refused, 253 -s cannot be used (no kexec_file_load).
";
