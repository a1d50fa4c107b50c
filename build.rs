//! Builds the purgatory image for the `kexec_load` path (see
//! `purgatory/README.md`): compiles `purgatory/src/lib.rs` with this build's
//! own `rustc` and no SSE, links it with binutils' `ld` at two bases far
//! apart, flattens both with `objcopy`, and derives from their difference the
//! list of 64-bit words the loader must relocate. Any other difference (a
//! 32-bit absolute address would not even link at the high base) fails the
//! build, so the blob is provably relocatable by that list alone.

use std::env;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

/// Second link base: above 4 GiB so that any 32-bit absolute relocation
/// fails to link instead of hiding in the diff.
const HIGH_BASE: u64 = 0x1_2345_6000;

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-changed=purgatory/src");
    println!("cargo:rerun-if-changed=purgatory/link.ld");
    let out = PathBuf::from(env::var_os("OUT_DIR").expect("cargo sets OUT_DIR"));
    let target = env::var("TARGET").unwrap_or_default();
    let layout = if target.starts_with("x86_64-") && target.contains("linux") {
        match build(&out, &target) {
            Ok(l) => l,
            Err(e) => {
                eprintln!("error: building the kexec_load purgatory failed: {e}");
                std::process::exit(1);
            }
        }
    } else {
        // No purgatory for other architectures: the classic path reports
        // itself unsupported there.
        fs::write(out.join("purgatory.bin"), []).expect("write OUT_DIR");
        Layout {
            entry: 0,
            text_end: 0,
            params: 0,
            memsz: 0,
            relocs: Vec::new(),
        }
    };
    let relocs: Vec<String> = layout.relocs.iter().map(|r| format!("{r:#x}")).collect();
    let src = format!(
        "/// The flat purgatory image, linked at 0.\n\
         pub const IMAGE: &[u8] = include_bytes!(concat!(env!(\"OUT_DIR\"), \"/purgatory.bin\"));\n\
         /// Offset of `purgatory_start`.\n\
         pub const ENTRY_OFFSET: u64 = {:#x};\n\
         /// End of the code (data follows), for the disassembly test.\n\
         pub const TEXT_END: u64 = {:#x};\n\
         /// Offset of `purgatory_params`.\n\
         pub const PARAMS_OFFSET: usize = {:#x};\n\
         /// Bytes the image occupies in memory, stack included.\n\
         pub const MEMSZ: u64 = {:#x};\n\
         /// Offsets of 64-bit words holding absolute addresses (base 0).\n\
         pub const RELOCS: &[usize] = &[{}];\n",
        layout.entry,
        layout.text_end,
        layout.params,
        layout.memsz,
        relocs.join(", ")
    );
    fs::write(out.join("purgatory_layout.rs"), src).expect("write OUT_DIR");
}

struct Layout {
    entry: u64,
    text_end: u64,
    params: u64,
    memsz: u64,
    relocs: Vec<usize>,
}

fn run(cmd: &mut Command) -> Result<Vec<u8>, String> {
    let shown = format!("{cmd:?}");
    let o = cmd.output().map_err(|e| {
        format!("cannot run {shown}: {e} (is it installed? binutils provides ld, objcopy and nm)")
    })?;
    if !o.status.success() {
        return Err(format!(
            "{shown} failed:\n{}{}",
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        ));
    }
    Ok(o.stdout)
}

fn build(out: &Path, target: &str) -> Result<Layout, String> {
    let rustc = env::var("RUSTC").unwrap_or_else(|_| "rustc".into());
    let manifest = PathBuf::from(env::var("CARGO_MANIFEST_DIR").map_err(|e| e.to_string())?);
    let dir = manifest.join("purgatory");
    let obj = out.join("purgatory.o");
    run(Command::new(&rustc)
        .args([
            "--edition",
            "2021",
            "--crate-type",
            "lib",
            "--crate-name",
            "kexec_purgatory",
        ])
        .args(["--target", target, "--cfg", "purgatory_image"])
        .arg(format!("--emit=obj={}", obj.display()))
        // No SSE/AVX: CR4.OSFXSR is clear when the purgatory runs, so any
        // such instruction raises #UD and, without an IDT, a triple fault.
        // rustc warns that disabling sse2 is being phased out (#116344); the
        // objdump test guards the result either way.
        .args([
            "-C",
            "target-feature=-sse,-sse2,-sse3,-ssse3,-sse4.1,-sse4.2,-avx,-avx2,-avx512f",
        ])
        .args([
            "-C",
            "panic=abort",
            "-C",
            "opt-level=3",
            "-C",
            "relocation-model=pie",
        ])
        .args([
            "-C",
            "debuginfo=0",
            "-C",
            "overflow-checks=off",
            "-C",
            "debug-assertions=off",
        ])
        .args(["--cap-lints", "allow"])
        .arg(dir.join("src/lib.rs")))?;
    let mut bins = Vec::new();
    for (i, base) in [0u64, HIGH_BASE].into_iter().enumerate() {
        let elf = out.join(format!("purgatory{i}.elf"));
        let bin = out.join(format!("purgatory{i}.bin"));
        run(Command::new("ld")
            .args([
                "-nostdlib",
                "-static",
                "--gc-sections",
                "--no-warn-rwx-segments",
            ])
            .arg(format!("--defsym=PURGATORY_BASE={base:#x}"))
            .arg("-T")
            .arg(dir.join("link.ld"))
            .arg("-o")
            .arg(&elf)
            .arg(&obj))?;
        run(Command::new("objcopy")
            .args(["-O", "binary", "-j", ".purgatory"])
            .arg(&elf)
            .arg(&bin))?;
        let syms = String::from_utf8_lossy(&run(Command::new("nm").arg(&elf))?).into_owned();
        let sym = |name: &str| -> Result<u64, String> {
            syms.lines()
                .find_map(|l| {
                    let mut it = l.split_whitespace();
                    let (v, _, n) = (it.next()?, it.next()?, it.next()?);
                    (n == name)
                        .then(|| u64::from_str_radix(v, 16).ok())
                        .flatten()
                })
                .map(|v| v - base)
                .ok_or_else(|| format!("symbol {name} missing from {}", elf.display()))
        };
        let layout = Layout {
            entry: sym("purgatory_start")?,
            text_end: sym("purgatory_text_end")?,
            params: sym("purgatory_params")?,
            memsz: sym("purgatory_end")?,
            relocs: Vec::new(),
        };
        bins.push((fs::read(&bin).map_err(|e| e.to_string())?, layout));
    }
    let (low, mut layout) = bins.remove(0);
    let (high, _) = bins.remove(0);
    if low.len() != high.len() || low.is_empty() {
        return Err("the purgatory links to different sizes at different bases".into());
    }
    // Every differing byte must belong to an 8-byte word that differs by
    // exactly the base delta: that word is an absolute address (a GOT entry).
    let mut i = 0;
    while i < low.len() {
        if low[i] == high[i] {
            i += 1;
            continue;
        }
        let word = |b: &[u8], at: usize| {
            b.get(at..at + 8)
                .map(|s| u64::from_le_bytes(s.try_into().unwrap()))
        };
        let at = i & !7;
        match (word(&low, at), word(&high, at)) {
            (Some(a), Some(b)) if b.wrapping_sub(a) == HIGH_BASE => {
                layout.relocs.push(at);
                i = at + 8;
            }
            _ => return Err(format!("the purgatory is not position independent: byte {i:#x} differs between links, and not as an aligned 64-bit address")),
        }
    }
    fs::copy(out.join("purgatory0.bin"), out.join("purgatory.bin")).map_err(|e| e.to_string())?;
    Ok(layout)
}
