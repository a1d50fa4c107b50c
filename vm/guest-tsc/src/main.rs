//! Prints the CPU's time-stamp counter as `TSC=<n>`.
//!
//! The TSC keeps counting across a kexec (nothing resets it), so a reading taken just before
//! `kexec -e` and one taken in the next kernel, minus that kernel's own clock, give the time
//! the machine belonged to neither kernel. Under QEMU's `-icount`, the TSC counts guest
//! instructions, which makes that measure of the handover exact and independent of how busy
//! the host is (`cargo xtask bench`, rows `insns.*`).

fn main() {
    #[cfg(target_arch = "x86_64")]
    {
        // SAFETY: RDTSC has no preconditions in user mode (CR4.TSD is clear on Linux).
        let t = unsafe { core::arch::x86_64::_rdtsc() };
        println!("TSC={t}");
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        eprintln!("guest-tsc: x86_64 only");
        std::process::exit(1);
    }
}
