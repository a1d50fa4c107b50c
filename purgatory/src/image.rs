//! The parts that exist only in the flat image: entry code, GDT, stack, the
//! parameter block's storage, and the few symbols `core` would otherwise
//! bring from its precompiled (SSE-using) objects.
//!
//! Everything is addressed RIP-relative, so the image runs at any address;
//! the GDT descriptor's base is the only absolute address and it is written
//! at run time.

use crate::params::{EntryRegs, Params, PARAMS_MAGIC};
use core::mem::offset_of;

/// Bytes of stack: `purgatory_main` needs a few hundred (a SHA-256 state and
/// one message schedule); the rest is margin.
const STACK_SIZE: usize = 16 * 1024;

const ENTRY: usize = offset_of!(Params, entry);

core::arch::global_asm!(
    ".section .text.entry,\"ax\",@progbits",
    ".globl purgatory_start",
    ".type purgatory_start,@function",
    "purgatory_start:",
    "    cli",
    "    cld",
    // The old kernel's GDTR is stale: point ours at its real address.
    "    leaq purgatory_gdt(%rip), %rax",
    "    movq %rax, purgatory_gdtr+2(%rip)",
    "    lgdt purgatory_gdtr(%rip)",
    "    movl $0x18, %eax",
    "    movw %ax, %ds",
    "    movw %ax, %es",
    "    movw %ax, %ss",
    "    movw %ax, %fs",
    "    movw %ax, %gs",
    "    leaq purgatory_stack_top(%rip), %rsp",
    // Reload CS with our 64-bit code descriptor.
    "    leaq 1f(%rip), %rax",
    "    pushq $0x10",
    "    pushq %rax",
    "    lretq",
    "1:",
    "    leaq purgatory_params(%rip), %rdi",
    "    call purgatory_main",
    "    testq %rax, %rax",
    "    jz 3f",
    // Enter the new kernel with the registers the loader asked for; RIP
    // comes from memory so that no register is needed for the jump.
    "    movq purgatory_params+{rbx}(%rip), %rbx",
    "    movq purgatory_params+{rcx}(%rip), %rcx",
    "    movq purgatory_params+{rdx}(%rip), %rdx",
    "    movq purgatory_params+{rsi}(%rip), %rsi",
    "    movq purgatory_params+{rdi}(%rip), %rdi",
    "    movq purgatory_params+{rsp}(%rip), %rsp",
    "    movq purgatory_params+{rbp}(%rip), %rbp",
    "    movq purgatory_params+{r8}(%rip), %r8",
    "    movq purgatory_params+{r9}(%rip), %r9",
    "    movq purgatory_params+{r10}(%rip), %r10",
    "    movq purgatory_params+{r11}(%rip), %r11",
    "    movq purgatory_params+{r12}(%rip), %r12",
    "    movq purgatory_params+{r13}(%rip), %r13",
    "    movq purgatory_params+{r14}(%rip), %r14",
    "    movq purgatory_params+{r15}(%rip), %r15",
    "    movq purgatory_params+{rax}(%rip), %rax",
    "    jmpq *purgatory_params+{rip}(%rip)",
    // Digest mismatch: never run a corrupt kernel. Interrupts are off, so
    // this halts for good (the loop covers NMIs).
    "3:",
    "    cli",
    "    hlt",
    "    jmp 3b",
    ".size purgatory_start, . - purgatory_start",
    "",
    ".section .data.purgatory,\"aw\",@progbits",
    ".balign 16",
    "purgatory_gdt:",
    "    .quad 0",
    "    .quad 0",
    "    .quad 0x00af9a000000ffff", // 0x10: 64-bit code, DPL 0
    "    .quad 0x00cf92000000ffff", // 0x18: flat data
    "purgatory_gdt_end:",
    ".balign 16",
    "purgatory_gdtr:",
    "    .word purgatory_gdt_end - purgatory_gdt - 1",
    "    .quad 0",
    "",
    ".section .data.params,\"aw\",@progbits",
    ".balign 16",
    ".globl purgatory_params",
    ".type purgatory_params,@object",
    "purgatory_params:",
    "    .quad {magic}",
    "    .fill {rest}, 1, 0",
    ".size purgatory_params, . - purgatory_params",
    "",
    ".section .bss.stack,\"aw\",@nobits",
    ".balign 16",
    "    .skip {stack}",
    "purgatory_stack_top:",
    magic = const PARAMS_MAGIC,
    rest = const Params::SIZE - 8,
    stack = const STACK_SIZE,
    rax = const ENTRY + offset_of!(EntryRegs, rax),
    rbx = const ENTRY + offset_of!(EntryRegs, rbx),
    rcx = const ENTRY + offset_of!(EntryRegs, rcx),
    rdx = const ENTRY + offset_of!(EntryRegs, rdx),
    rsi = const ENTRY + offset_of!(EntryRegs, rsi),
    rdi = const ENTRY + offset_of!(EntryRegs, rdi),
    rsp = const ENTRY + offset_of!(EntryRegs, rsp),
    rbp = const ENTRY + offset_of!(EntryRegs, rbp),
    r8 = const ENTRY + offset_of!(EntryRegs, r8),
    r9 = const ENTRY + offset_of!(EntryRegs, r9),
    r10 = const ENTRY + offset_of!(EntryRegs, r10),
    r11 = const ENTRY + offset_of!(EntryRegs, r11),
    r12 = const ENTRY + offset_of!(EntryRegs, r12),
    r13 = const ENTRY + offset_of!(EntryRegs, r13),
    r14 = const ENTRY + offset_of!(EntryRegs, r14),
    r15 = const ENTRY + offset_of!(EntryRegs, r15),
    rip = const ENTRY + offset_of!(EntryRegs, rip),
    options(att_syntax)
);

/// Called by the entry code on its own stack; non-zero means "jump".
///
/// # Safety
/// `params` is the image's own parameter block.
#[no_mangle]
pub unsafe extern "C" fn purgatory_main(params: *const Params) -> u64 {
    let p = &*params;
    // The same words as kexec-tools' purgatory, which people look for.
    let console = crate::console::Serial::open(p.console_port as u16, p.console_divisor as u16);
    if let Some(c) = &console {
        c.write(b"I'm in purgatory\r\n");
    }
    let intact = crate::verify::segments_intact(p);
    if let (false, Some(c)) = (intact, &console) {
        c.write(b"purgatory: the loaded segments do not match their SHA-256 digest; not starting the new kernel\r\n");
    }
    u64::from(intact)
}

#[panic_handler]
fn panic(_: &core::panic::PanicInfo) -> ! {
    // Unreachable by construction (the image links without core's panic
    // functions); halting is the only safe answer if it ever happens.
    loop {
        // SAFETY: stops this CPU; nothing else is running.
        unsafe { core::arch::asm!("cli; hlt", options(nomem, nostack)) };
    }
}

// The compiler may call these for copies and zeroing; `core`'s own versions
// are precompiled with SSE, so the image brings string-instruction ones.

/// # Safety
/// Standard C `memcpy` contract.
#[no_mangle]
pub unsafe extern "C" fn memcpy(dst: *mut u8, src: *const u8, n: usize) -> *mut u8 {
    core::arch::asm!("rep movsb", inout("rcx") n => _, inout("rdi") dst => _, inout("rsi") src => _,
        options(nostack, preserves_flags));
    dst
}

/// # Safety
/// Standard C `memmove` contract.
#[no_mangle]
pub unsafe extern "C" fn memmove(dst: *mut u8, src: *const u8, n: usize) -> *mut u8 {
    if (dst as usize) <= (src as usize) || (dst as usize) >= (src as usize).wrapping_add(n) {
        return memcpy(dst, src, n);
    }
    // Overlapping with dst above src: copy backwards.
    core::arch::asm!("std", "rep movsb", "cld",
        inout("rcx") n => _,
        inout("rdi") dst.wrapping_add(n).wrapping_sub(1) => _,
        inout("rsi") src.wrapping_add(n).wrapping_sub(1) => _,
        options(nostack));
    dst
}

/// # Safety
/// Standard C `memset` contract.
#[no_mangle]
pub unsafe extern "C" fn memset(dst: *mut u8, c: i32, n: usize) -> *mut u8 {
    core::arch::asm!("rep stosb", inout("rcx") n => _, inout("rdi") dst => _, in("al") c as u8,
        options(nostack, preserves_flags));
    dst
}

/// # Safety
/// Standard C `memcmp` contract.
#[no_mangle]
pub unsafe extern "C" fn memcmp(a: *const u8, b: *const u8, n: usize) -> i32 {
    let mut i = 0;
    while i < n {
        let (x, y) = (
            core::ptr::read_volatile(a.add(i)),
            core::ptr::read_volatile(b.add(i)),
        );
        if x != y {
            return i32::from(x) - i32::from(y);
        }
        i += 1;
    }
    0
}

/// # Safety
/// Standard C `bcmp` contract.
#[no_mangle]
pub unsafe extern "C" fn bcmp(a: *const u8, b: *const u8, n: usize) -> i32 {
    memcmp(a, b, n)
}
