//! ELF kernels (`vmlinux`): the program headers a loader places in memory
//! and the notes that identify the build.
//!
//! kexec can load a vmlinux directly (`kexec_load` with the ELF loader), so
//! the report is what that loader needs: machine, entry and `PT_LOAD`
//! segments with their physical addresses. Other ELF files (programs, shared
//! libraries, modules) are recognised only so that a user who passes one by
//! mistake is told what it is.

use goblin::elf::{header, program_header, Elf};
use serde::Serialize;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum Error {
    #[error("file is {len} bytes, too short for an ELF header")]
    TooShort { len: usize },
    #[error("no ELF magic (\\x7fELF) at offset 0")]
    NoMagic,
    #[error("ELF headers are malformed or truncated: {0}")]
    Malformed(String),
    #[error("PT_LOAD segment {index} claims {filesz} bytes at offset {offset:#x}, past the end of the {len}-byte file (truncated image?)")]
    SegmentPastEnd {
        index: usize,
        offset: u64,
        filesz: u64,
        len: usize,
    },
    #[error("PT_LOAD segment {index} has p_filesz {filesz:#x} larger than p_memsz {memsz:#x} (corrupt program header)")]
    FileszOverMemsz {
        index: usize,
        filesz: u64,
        memsz: u64,
    },
}

pub type Result<T> = std::result::Result<T, Error>;

/// `LINUX_ELFNOTE_BUILD_SALT`: a string the build sets, Debian's is the
/// kernel release (`uname -r`).
pub const LINUX_ELFNOTE_BUILD_SALT: u32 = 0x100;
/// `LINUX_ELFNOTE_LTO_INFO`: whether the kernel was built with LTO.
pub const LINUX_ELFNOTE_LTO_INFO: u32 = 0x101;
const NT_GNU_BUILD_ID: u32 = 3;
/// Notes read at most; a vmlinux has a handful.
const MAX_NOTES: usize = 64;

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Segment {
    pub offset: u64,
    #[serde(with = "super::hex")]
    pub vaddr: u64,
    #[serde(with = "super::hex")]
    pub paddr: u64,
    pub filesz: u64,
    pub memsz: u64,
    /// "rwx" style permissions.
    pub flags: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Note {
    pub name: String,
    #[serde(rename = "type")]
    pub n_type: u32,
    /// The descriptor, decoded where its meaning is known (build id as hex,
    /// build salt as text), else its size.
    pub value: String,
}

/// What the ELF header says the file is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ElfKind {
    /// A kernel image: it carries Linux/Xen notes, or is a static
    /// executable without the marks of a user-space program.
    Kernel,
    /// Dynamically linked program or static-pie.
    Program,
    SharedLibrary,
    /// A `.o` or a kernel module `.ko`.
    Relocatable,
    CoreDump,
}

impl ElfKind {
    pub fn describe(self) -> &'static str {
        match self {
            ElfKind::Kernel => "an ELF kernel (vmlinux)",
            ElfKind::Program => "an ELF user-space program",
            ElfKind::SharedLibrary => "an ELF shared library",
            ElfKind::Relocatable => "an ELF relocatable object (a .o file or kernel module .ko)",
            ElfKind::CoreDump => "an ELF core dump",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ElfReport {
    pub kind: ElfKind,
    /// 32 or 64.
    pub class: u8,
    pub big_endian: bool,
    pub machine: String,
    #[serde(with = "super::hex")]
    pub entry: u64,
    pub load_segments: Vec<Segment>,
    pub notes: Vec<Note>,
    /// Text of the "Linux" build-salt note, when present.
    pub build_salt: Option<String>,
    /// GNU build id as hex, when present.
    pub build_id: Option<String>,
}

fn machine_name(m: u16) -> String {
    match m {
        header::EM_X86_64 => "x86_64".into(),
        header::EM_386 => "i386".into(),
        header::EM_AARCH64 => "aarch64".into(),
        header::EM_ARM => "arm".into(),
        header::EM_RISCV => "riscv".into(),
        header::EM_PPC64 => "ppc64".into(),
        header::EM_S390 => "s390".into(),
        258 => "loongarch".into(),
        other => format!("{other:#x}"),
    }
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

fn flags(f: u32) -> String {
    let bit = |m: u32, c: char| if f & m != 0 { c } else { '-' };
    [
        bit(program_header::PF_R, 'r'),
        bit(program_header::PF_W, 'w'),
        bit(program_header::PF_X, 'x'),
    ]
    .iter()
    .collect()
}

/// Parses an ELF file and checks that every `PT_LOAD` lies inside it.
pub fn parse(b: &[u8]) -> Result<ElfReport> {
    if b.len() < 4 || &b[..4] != b"\x7fELF" {
        return Err(if b.len() < 4 {
            Error::TooShort { len: b.len() }
        } else {
            Error::NoMagic
        });
    }
    // The 32-bit header is 52 bytes, the 64-bit one 64.
    let need = if b.get(4) == Some(&2) { 64 } else { 52 };
    if b.len() < need {
        return Err(Error::TooShort { len: b.len() });
    }
    let elf = Elf::parse(b).map_err(|e| Error::Malformed(e.to_string()))?;
    let mut load_segments = Vec::new();
    let mut has_interp = false;
    let mut has_gnu_stack = false;
    for (index, ph) in elf.program_headers.iter().enumerate() {
        match ph.p_type {
            program_header::PT_INTERP => has_interp = true,
            program_header::PT_GNU_STACK => has_gnu_stack = true,
            program_header::PT_LOAD => {
                if ph.p_offset.saturating_add(ph.p_filesz) > b.len() as u64 {
                    return Err(Error::SegmentPastEnd {
                        index,
                        offset: ph.p_offset,
                        filesz: ph.p_filesz,
                        len: b.len(),
                    });
                }
                if ph.p_filesz > ph.p_memsz {
                    return Err(Error::FileszOverMemsz {
                        index,
                        filesz: ph.p_filesz,
                        memsz: ph.p_memsz,
                    });
                }
                load_segments.push(Segment {
                    offset: ph.p_offset,
                    vaddr: ph.p_vaddr,
                    paddr: ph.p_paddr,
                    filesz: ph.p_filesz,
                    memsz: ph.p_memsz,
                    flags: flags(ph.p_flags),
                });
            }
            _ => {}
        }
    }
    let mut notes = Vec::new();
    let mut build_salt = None;
    let mut build_id = None;
    let mut kernel_note = false;
    if let Some(iter) = elf.iter_note_headers(b) {
        for note in iter.take(MAX_NOTES) {
            let note = note.map_err(|e| Error::Malformed(format!("note: {e}")))?;
            let value = match (note.name, note.n_type) {
                ("GNU", NT_GNU_BUILD_ID) => {
                    build_id = Some(hex(note.desc));
                    hex(note.desc)
                }
                ("Linux", LINUX_ELFNOTE_BUILD_SALT) => {
                    let text = note.desc.split(|&c| c == 0).next().unwrap_or_default();
                    let text = String::from_utf8_lossy(text).into_owned();
                    build_salt = Some(text.clone());
                    text
                }
                _ => format!("{} bytes", note.desc.len()),
            };
            kernel_note |= note.name == "Linux" || note.name == "Xen";
            notes.push(Note {
                name: note.name.to_string(),
                n_type: note.n_type,
                value,
            });
        }
    }
    let kind = match elf.header.e_type {
        header::ET_REL => ElfKind::Relocatable,
        header::ET_CORE => ElfKind::CoreDump,
        _ if kernel_note => ElfKind::Kernel,
        header::ET_EXEC if !has_interp && !has_gnu_stack => ElfKind::Kernel,
        header::ET_DYN if elf.soname.is_some() || elf.entry == 0 => ElfKind::SharedLibrary,
        header::ET_DYN
            if !has_interp
                && !elf.dynamic.as_ref().is_some_and(|d| !d.dyns.is_empty())
                && !has_gnu_stack =>
        {
            ElfKind::Kernel
        }
        header::ET_DYN if !has_interp => ElfKind::SharedLibrary,
        _ => ElfKind::Program,
    };
    Ok(ElfReport {
        kind,
        class: if elf.is_64 { 64 } else { 32 },
        big_endian: !elf.little_endian,
        machine: machine_name(elf.header.e_machine),
        entry: elf.entry,
        load_segments,
        notes,
        build_salt,
        build_id,
    })
}

/// A description of a note to put into [`build`]: name, type, descriptor.
pub type NoteSpec<'a> = (&'a str, u32, &'a [u8]);

/// Fixture and test helper: a tiny 64-bit little-endian ELF with one PT_LOAD
/// holding `code` at `paddr`/`vaddr`, an optional PT_NOTE and, for
/// `e_type == ET_DYN`, an (empty) PT_DYNAMIC when `dynamic` is set.
pub fn build(
    e_type: u16,
    machine: u16,
    vaddr: u64,
    paddr: u64,
    code: &[u8],
    notes: &[NoteSpec<'_>],
    dynamic: bool,
) -> Vec<u8> {
    let mut note_bytes = Vec::new();
    for (name, n_type, desc) in notes {
        note_bytes.extend_from_slice(&(name.len() as u32 + 1).to_le_bytes());
        note_bytes.extend_from_slice(&(desc.len() as u32).to_le_bytes());
        note_bytes.extend_from_slice(&n_type.to_le_bytes());
        note_bytes.extend_from_slice(name.as_bytes());
        note_bytes.push(0);
        note_bytes.resize(note_bytes.len().div_ceil(4) * 4, 0);
        note_bytes.extend_from_slice(desc);
        note_bytes.resize(note_bytes.len().div_ceil(4) * 4, 0);
    }
    // DT_SONAME pointing at offset 1 of an (absent) strtab, then DT_NULL.
    let dyn_bytes: Vec<u8> = if dynamic {
        [14u64, 1, 0, 0]
            .iter()
            .flat_map(|v| v.to_le_bytes())
            .collect()
    } else {
        Vec::new()
    };
    let nph = 1 + usize::from(!notes.is_empty()) + usize::from(dynamic);
    let ph_off = 64usize;
    let data_off = ph_off + nph * 56;
    let note_off = data_off;
    let dyn_off = note_off + note_bytes.len();
    let code_off = (dyn_off + dyn_bytes.len()).div_ceil(16) * 16;
    let mut b = vec![0u8; code_off + code.len()];
    b[..4].copy_from_slice(b"\x7fELF");
    b[4] = 2; // 64-bit
    b[5] = 1; // little endian
    b[6] = 1; // version
    let put16 = |b: &mut [u8], o: usize, v: u16| b[o..o + 2].copy_from_slice(&v.to_le_bytes());
    let put32 = |b: &mut [u8], o: usize, v: u32| b[o..o + 4].copy_from_slice(&v.to_le_bytes());
    let put64 = |b: &mut [u8], o: usize, v: u64| b[o..o + 8].copy_from_slice(&v.to_le_bytes());
    put16(&mut b, 16, e_type);
    put16(&mut b, 18, machine);
    put32(&mut b, 20, 1);
    put64(
        &mut b,
        24,
        if e_type == header::ET_DYN && dynamic {
            0
        } else {
            vaddr
        },
    );
    put64(&mut b, 32, ph_off as u64);
    put16(&mut b, 52, 64);
    put16(&mut b, 54, 56);
    put16(&mut b, 56, nph as u16);
    put16(&mut b, 58, 64);
    let mut ph = ph_off;
    let mut phdr = |b: &mut [u8],
                    p_type: u32,
                    flags: u32,
                    off: usize,
                    va: u64,
                    pa: u64,
                    size: usize,
                    align: u64| {
        put32(b, ph, p_type);
        put32(b, ph + 4, flags);
        put64(b, ph + 8, off as u64);
        put64(b, ph + 16, va);
        put64(b, ph + 24, pa);
        put64(b, ph + 32, size as u64);
        put64(b, ph + 40, size as u64);
        put64(b, ph + 48, align);
        ph += 56;
    };
    phdr(
        &mut b,
        program_header::PT_LOAD,
        program_header::PF_R | program_header::PF_X,
        code_off,
        vaddr,
        paddr,
        code.len(),
        16,
    );
    if !notes.is_empty() {
        phdr(
            &mut b,
            program_header::PT_NOTE,
            program_header::PF_R,
            note_off,
            0,
            0,
            note_bytes.len(),
            4,
        );
    }
    if dynamic {
        phdr(
            &mut b,
            program_header::PT_DYNAMIC,
            program_header::PF_R,
            dyn_off,
            0,
            0,
            dyn_bytes.len(),
            8,
        );
    }
    b[note_off..note_off + note_bytes.len()].copy_from_slice(&note_bytes);
    b[dyn_off..dyn_off + dyn_bytes.len()].copy_from_slice(&dyn_bytes);
    b[code_off..].copy_from_slice(code);
    b
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vmlinux() -> Vec<u8> {
        build(
            header::ET_EXEC,
            header::EM_X86_64,
            0xffff_ffff_8100_0000,
            0x100_0000,
            &[0x90; 64],
            &[
                ("Linux", LINUX_ELFNOTE_BUILD_SALT, b"6.6.0-test\0"),
                ("GNU", NT_GNU_BUILD_ID, &[0xab; 20]),
            ],
            false,
        )
    }

    #[test]
    fn reads_a_tiny_vmlinux() {
        let r = parse(&vmlinux()).unwrap();
        assert_eq!(r.kind, ElfKind::Kernel);
        assert_eq!(r.machine, "x86_64");
        assert_eq!(r.load_segments.len(), 1);
        assert_eq!(r.load_segments[0].paddr, 0x100_0000);
        assert_eq!(r.build_salt.as_deref(), Some("6.6.0-test"));
        assert_eq!(r.build_id.as_deref().map(str::len), Some(40));
    }

    #[test]
    fn shared_object_is_not_a_kernel() {
        let so = build(
            header::ET_DYN,
            header::EM_X86_64,
            0x1000,
            0x1000,
            &[0xc3; 16],
            &[],
            true,
        );
        assert_eq!(parse(&so).unwrap().kind, ElfKind::SharedLibrary);
    }

    #[test]
    fn every_truncation_returns() {
        let b = vmlinux();
        for len in 0..b.len() {
            assert!(parse(&b[..len]).is_err(), "len {len}");
        }
    }
}
