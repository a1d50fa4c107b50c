//! The loader's side of the purgatory: the image built by `build.rs` from
//! `purgatory/`, relocated to its load address and patched with its
//! parameters (entry registers, digest regions, digest, `skip_checks`).

pub use kexec_purgatory::params::{EntryRegs, Params, Region, MAX_REGIONS, PARAMS_MAGIC};

mod layout {
    include!(concat!(env!("OUT_DIR"), "/purgatory_layout.rs"));
}
pub use layout::{ENTRY_OFFSET, IMAGE, MEMSZ, PARAMS_OFFSET, RELOCS, TEXT_END};

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum Error {
    #[error("this build of kexec has no purgatory (it is only built for x86_64 Linux targets), so kexec_load cannot be used; use kexec_file_load (kexec -s)")]
    Missing,
    #[error("the built-in purgatory image is damaged (no parameter block at offset {0:#x}); rebuild kexec")]
    Damaged(usize),
    #[error("{0} segments need checking but the purgatory holds at most {MAX_REGIONS}")]
    TooManyRegions(usize),
}

/// Whether this build carries a purgatory at all.
pub fn available() -> bool {
    !IMAGE.is_empty()
}

/// The image for physical address `base`, with `params` written in.
pub fn image_at(base: u64, params: &Params) -> Result<Vec<u8>, Error> {
    if !available() {
        return Err(Error::Missing);
    }
    let mut img = IMAGE.to_vec();
    let block = img
        .get_mut(PARAMS_OFFSET..PARAMS_OFFSET + Params::SIZE)
        .ok_or(Error::Damaged(PARAMS_OFFSET))?;
    if block.get(..8) != Some(&PARAMS_MAGIC.to_le_bytes()[..]) {
        return Err(Error::Damaged(PARAMS_OFFSET));
    }
    block.copy_from_slice(&params.to_bytes());
    for &off in RELOCS {
        let word = img.get_mut(off..off + 8).ok_or(Error::Damaged(off))?;
        let v = u64::from_le_bytes(word.try_into().map_err(|_| Error::Damaged(off))?);
        word.copy_from_slice(&v.wrapping_add(base).to_le_bytes());
    }
    Ok(img)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    #[test]
    fn image_is_built_and_patched_in_place() {
        assert!(
            available(),
            "build.rs must produce a purgatory on x86_64 Linux"
        );
        let mut p = Params::EMPTY;
        p.entry.rsi = 0x1234_5000;
        p.entry.rip = 0x0200_0200;
        let img = image_at(0x7000_0000, &p).unwrap();
        assert_eq!(img.len(), IMAGE.len());
        assert_eq!(
            &img[PARAMS_OFFSET..PARAMS_OFFSET + Params::SIZE],
            &p.to_bytes()[..]
        );
        for &off in RELOCS {
            let v = u64::from_le_bytes(img[off..off + 8].try_into().unwrap());
            assert!(
                (0x7000_0000..0x7000_0000 + MEMSZ).contains(&v),
                "relocated word {v:#x} points into the image"
            );
        }
        assert!(
            MEMSZ as usize >= IMAGE.len() + 4096,
            "the image has its own stack"
        );
    }

    /// The purgatory runs with CR4.OSFXSR clear: one SSE/AVX instruction is a
    /// #UD and, with no IDT, a triple fault. Disassemble the final blob's
    /// code (the data after it would decode as noise).
    #[test]
    fn disassembly_has_no_simd_registers() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("purgatory.bin");
        std::fs::File::create(&path)
            .unwrap()
            .write_all(IMAGE)
            .unwrap();
        let out = std::process::Command::new("objdump")
            .args([
                "-D",
                "-b",
                "binary",
                "-m",
                "i386:x86-64",
                "--start-address=0",
            ])
            .arg(format!("--stop-address={TEXT_END:#x}"))
            .arg(&path)
            .output()
            .expect("objdump (binutils) is needed for this test");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let text = String::from_utf8_lossy(&out.stdout);
        // Sanity: we really disassembled the entry code.
        assert!(
            text.contains("lgdt") && text.contains("lret"),
            "unexpected disassembly:\n{text}"
        );
        let bad: Vec<&str> = text
            .lines()
            .filter(|l| {
                ["%xmm", "%ymm", "%zmm", "%mm"]
                    .iter()
                    .any(|r| l.contains(r))
            })
            .collect();
        assert!(
            bad.is_empty(),
            "SIMD instructions in the purgatory:\n{}",
            bad.join("\n")
        );
    }
}
