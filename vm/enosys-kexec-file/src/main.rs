//! Guest helper for the `alpine-like` profile: makes `kexec_file_load` answer ENOSYS, as it does
//! on Alpine's x86_64 kernels (built with `CONFIG_KEXEC=y` but without `CONFIG_KEXEC_FILE`),
//! then execs the given program (normally `/sbin/init`).
//!
//! A seccomp filter survives `execve` and is inherited by every child, so installing it in PID 1
//! before init runs makes the whole guest behave like such a kernel, while the real kernel
//! underneath (Debian's, which has both syscalls) stays unchanged. `kexec_load` is untouched.
//! Built static (it runs before any library path is set up) and kept dependency-free.

use std::ffi::CString;

const AUDIT_ARCH_X86_64: u32 = 0xc000_003e;
const NR_KEXEC_FILE_LOAD: u32 = 320;
const X32_SYSCALL_BIT: u32 = 0x4000_0000;

// Classic BPF opcodes (linux/filter.h) and seccomp return values (linux/seccomp.h).
const BPF_LD_W_ABS: u16 = 0x20;
const BPF_JEQ_K: u16 = 0x15;
const BPF_RET_K: u16 = 0x06;
const SECCOMP_RET_ALLOW: u32 = 0x7fff_0000;
const SECCOMP_RET_ERRNO: u32 = 0x0005_0000;
// Offsets in struct seccomp_data.
const OFF_NR: u32 = 0;
const OFF_ARCH: u32 = 4;

fn stmt(code: u16, k: u32) -> libc::sock_filter {
    libc::sock_filter {
        code,
        jt: 0,
        jf: 0,
        k,
    }
}

fn jump(code: u16, k: u32, jt: u8, jf: u8) -> libc::sock_filter {
    libc::sock_filter { code, jt, jf, k }
}

fn install() -> Result<(), String> {
    let enosys = SECCOMP_RET_ERRNO | libc::ENOSYS as u32;
    // Jump offsets count from the next instruction: from 1, jf=3 lands on ALLOW (5); from 3,
    // jt=2 and from 4, jt=1 land on ENOSYS (6).
    let filter = [
        stmt(BPF_LD_W_ABS, OFF_ARCH),
        // Other ABIs (i386 compat) have no kexec_file_load number of their own: allow.
        jump(BPF_JEQ_K, AUDIT_ARCH_X86_64, 0, 3),
        stmt(BPF_LD_W_ABS, OFF_NR),
        jump(BPF_JEQ_K, NR_KEXEC_FILE_LOAD, 2, 0),
        jump(BPF_JEQ_K, NR_KEXEC_FILE_LOAD | X32_SYSCALL_BIT, 1, 0),
        stmt(BPF_RET_K, SECCOMP_RET_ALLOW),
        stmt(BPF_RET_K, enosys),
    ];
    let prog = libc::sock_fprog {
        len: filter.len() as u16,
        filter: filter.as_ptr() as *mut _,
    };
    // As root (CAP_SYS_ADMIN) no_new_privs is not needed, and leaving it unset keeps the guest
    // closer to a real Alpine system; fall back to it only if the kernel insists.
    let mut rc = unsafe {
        libc::prctl(
            libc::PR_SET_SECCOMP,
            libc::SECCOMP_MODE_FILTER,
            &prog as *const _,
        )
    };
    if rc != 0 && std::io::Error::last_os_error().raw_os_error() == Some(libc::EACCES) {
        unsafe { libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) };
        rc = unsafe {
            libc::prctl(
                libc::PR_SET_SECCOMP,
                libc::SECCOMP_MODE_FILTER,
                &prog as *const _,
            )
        };
    }
    if rc != 0 {
        return Err(format!(
            "installing the seccomp filter failed: {}",
            std::io::Error::last_os_error()
        ));
    }
    Ok(())
}

fn main() {
    let args: Vec<CString> = std::env::args_os()
        .skip(1)
        .filter_map(|a| CString::new(a.into_encoded_bytes()).ok())
        .collect();
    if args.is_empty() {
        eprintln!("usage: enosys-kexec-file PROGRAM [ARG…]: runs PROGRAM with kexec_file_load answering ENOSYS");
        std::process::exit(2);
    }
    if let Err(e) = install() {
        // Keep booting: a guest without the filter is still usable, and the scenario that
        // checks for ENOSYS will fail and say so.
        eprintln!("enosys-kexec-file: {e}");
    } else {
        eprintln!("enosys-kexec-file: kexec_file_load now answers ENOSYS for every process (alpine-like guest)");
    }
    let mut argv: Vec<*const libc::c_char> = args.iter().map(|a| a.as_ptr()).collect();
    argv.push(std::ptr::null());
    unsafe { libc::execv(args[0].as_ptr(), argv.as_ptr()) };
    eprintln!(
        "enosys-kexec-file: cannot exec {:?}: {}",
        args[0],
        std::io::Error::last_os_error()
    );
    std::process::exit(127);
}
