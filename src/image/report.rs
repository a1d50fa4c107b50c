//! The result of inspecting one file: a serialisable report with a stable
//! JSON schema (what `kexec info --json` prints) and a human rendering.
//!
//! # JSON schema, version 1
//!
//! Every report is an object with:
//! - `"schema": 1` — bumped on any incompatible change;
//! - `"path"` — the file, when inspected from a path;
//! - `"size"` — file size in bytes;
//! - `"format"` — one of `"bzimage"`, `"vmlinux"`, `"arm64_image"`,
//!   `"arm64_compressed"`, `"zboot"`, `"uki"`, `"initramfs"`;
//!
//! and the fields of that format, flattened beside them:
//! - `bzimage`: `protocol` (e.g. `"2.15"`), `header` (the setup header, field names as in the boot
//!   protocol, absent fields `null` for older protocols), `kernel_version`,
//!   `payload` (`offset`, `length`, `compression`, `uncompressed_elf`),
//!   `kernel_info` (`size`, `size_total`, `setup_type_max`), `efi_stub`
//!   (PE facts: `machine`, `pe32_plus`, `entry`, `image_base`,
//!   `size_of_image`, `sections[]` with `name`, `virtual_address`,
//!   `virtual_size`, `file_offset`, `file_size`, `certificate_table_size`,
//!   `signed`);
//! - `vmlinux`: `kind`, `class`, `big_endian`, `machine`, `entry`,
//!   `load_segments[]` (`offset`, `vaddr`, `paddr`, `filesz`, `memsz`,
//!   `flags`), `notes[]` (`name`, `type`, `value`), `build_salt`, `build_id`;
//! - `arm64_image`: `linux_banner` (the "Linux version …" string found in
//!   the image, or `null`), `header` (`text_offset`, `image_size`, `flags`,
//!   `big_endian`, `page_size`, `phys_placement_anywhere`,
//!   `pe_header_offset`, `efi_stub`), `efi` (PE facts or `null`);
//! - `arm64_compressed`: `compression`, `decompressed_size`, `image` (as
//!   `arm64_image`);
//! - `zboot`: `zboot` (`payload_offset`, `payload_size`,
//!   `compression_type`, `compression`), `efi`, `decompressed_size`, `image`;
//! - `uki`: `uki` (`pe`, `linux` and `initrd` as `{offset, size}`,
//!   `cmdline`, `os_pretty_name`, `uname`), `kernel` (the report of the
//!   `.linux` section, itself a report of this schema);
//! - `initramfs`: `segments[]` (`offset`, `length`, `compression` or `null`,
//!   `entries` or `null` when not decodable, `first_entries`, `microcode`),
//!   `total_entries`, `microcode` (`present`, `files`, `segment`,
//!   `in_first_segment`, `uncompressed`, `loadable_early`),
//!   `microcode_problem` (`null` or `{kind, file, segment, …}`).
//!
//! 64-bit addresses (`entry`, `vaddr`, `paddr` of ELF files, `pref_address`,
//! `setup_data`, `image_base`) are hex strings such as
//! `"0xffffffff81000000"`, because JSON numbers above 2^53 lose precision in
//! jq and JavaScript; every other number (sizes, offsets, 32-bit fields) is
//! a JSON number. Compressions are lower-case names (`gzip`, `xz`, `zstd`, `lz4`, `lz4_frame`, `lzma`,
//! `bzip2`, `lzo`).

use std::fmt;

use serde::Serialize;

use super::arm64::{Arm64Image, Zboot};
use super::bzimage::BzImage;
use super::compression::Compression;
use super::elf::ElfReport;
use super::initramfs::InitramfsReport;
use super::pe::PeInfo;
use super::uki::Uki;

/// Current JSON schema version.
pub const SCHEMA: u32 = 1;

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ImageReport {
    pub schema: u32,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    pub size: u64,
    #[serde(flatten)]
    pub image: Image,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "format", rename_all = "snake_case")]
pub enum Image {
    Bzimage(BzImage),
    Vmlinux(ElfReport),
    Arm64Image(Arm64Image),
    Arm64Compressed {
        compression: Compression,
        decompressed_size: u64,
        image: Arm64Image,
    },
    Zboot {
        zboot: Zboot,
        efi: Option<PeInfo>,
        decompressed_size: u64,
        image: Arm64Image,
    },
    Uki {
        uki: Uki,
        kernel: Box<ImageReport>,
    },
    Initramfs(InitramfsReport),
}

impl Image {
    /// The `"format"` tag of this report.
    pub fn format_name(&self) -> &'static str {
        match self {
            Image::Bzimage(_) => "bzimage",
            Image::Vmlinux(_) => "vmlinux",
            Image::Arm64Image(_) => "arm64_image",
            Image::Arm64Compressed { .. } => "arm64_compressed",
            Image::Zboot { .. } => "zboot",
            Image::Uki { .. } => "uki",
            Image::Initramfs(_) => "initramfs",
        }
    }
}

impl ImageReport {
    pub fn new(size: u64, image: Image) -> Self {
        ImageReport {
            schema: SCHEMA,
            path: None,
            size,
            image,
        }
    }

    /// The report as pretty JSON (the `--json` output).
    pub fn to_json(&self) -> String {
        // Serialising plain data with string keys cannot fail.
        serde_json::to_string_pretty(self).unwrap_or_default()
    }
}

/// `kexec info --json` output for several files: a JSON array of reports,
/// in the order the files were given (files that failed are left out; their
/// errors go to stderr).
pub fn json_array(reports: &[ImageReport]) -> String {
    serde_json::to_string_pretty(reports).unwrap_or_default()
}

/// Writes "key: value" rows with aligned values, indented by `indent`.
struct Table<'a, 'b> {
    f: &'a mut fmt::Formatter<'b>,
    indent: usize,
}

impl Table<'_, '_> {
    fn row(&mut self, key: &str, value: impl fmt::Display) -> fmt::Result {
        writeln!(
            self.f,
            "{:indent$}{:<24} {}",
            "",
            format!("{key}:"),
            value,
            indent = self.indent
        )
    }
    fn opt<T: fmt::Display>(&mut self, key: &str, value: Option<T>) -> fmt::Result {
        match value {
            Some(v) => self.row(key, v),
            None => Ok(()),
        }
    }
}

fn hex<T: fmt::LowerHex>(v: T) -> String {
    format!("{v:#x}")
}

fn protocol(v: u16) -> String {
    format!("{}.{:02}", v >> 8, v & 0xff)
}

fn pe_rows(t: &mut Table<'_, '_>, pe: &PeInfo) -> fmt::Result {
    t.row("PE machine", &pe.machine)?;
    t.row("PE entry", hex(pe.entry))?;
    let names: Vec<&str> = pe.sections.iter().map(|s| s.name.as_str()).collect();
    t.row("PE sections", names.join(" "))?;
    t.row(
        "Authenticode signature",
        if pe.signed {
            format!("yes ({} bytes)", pe.certificate_table_size)
        } else {
            "no".into()
        },
    )
}

fn arm64_rows(t: &mut Table<'_, '_>, img: &Arm64Image) -> fmt::Result {
    let h = &img.header;
    t.opt("kernel version", img.linux_banner.as_deref())?;
    t.row("text_offset", hex(h.text_offset))?;
    t.row("image_size", hex(h.image_size))?;
    t.row("flags", hex(h.flags))?;
    t.row("endianness", if h.big_endian { "big" } else { "little" })?;
    t.row(
        "page size",
        serde_json::to_value(h.page_size)
            .ok()
            .and_then(|v| v.as_str().map(String::from))
            .unwrap_or_default(),
    )?;
    t.row(
        "placement",
        if h.phys_placement_anywhere {
            "anywhere in physical memory"
        } else {
            "near the base of DRAM"
        },
    )?;
    t.row("EFI stub", if h.efi_stub { "yes" } else { "no" })?;
    if let Some(pe) = &img.efi {
        pe_rows(t, pe)?;
    }
    Ok(())
}

impl fmt::Display for ImageReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.render(f, 0)
    }
}

impl ImageReport {
    fn render(&self, f: &mut fmt::Formatter<'_>, indent: usize) -> fmt::Result {
        let mut t = Table { f, indent };
        t.opt("file", self.path.as_deref())?;
        t.row("format", self.image.format_name())?;
        t.row("size", self.size)?;
        match &self.image {
            Image::Bzimage(z) => {
                let h = &z.header;
                t.row("boot protocol", protocol(h.version))?;
                t.opt("kernel version", z.kernel_version.as_deref())?;
                t.row("setup_sects", h.setup_sects)?;
                t.row("syssize", hex(h.syssize))?;
                t.row("loadflags", hex(h.loadflags))?;
                t.opt("xloadflags", h.xloadflags.map(hex))?;
                t.opt("kernel_alignment", h.kernel_alignment.map(hex))?;
                t.opt(
                    "relocatable",
                    h.relocatable_kernel.map(|r| if r { "yes" } else { "no" }),
                )?;
                t.opt("pref_address", h.pref_address.map(hex))?;
                t.opt("init_size", h.init_size.map(hex))?;
                t.opt("cmdline_size", h.cmdline_size)?;
                t.opt("initrd_addr_max", h.initrd_addr_max.map(hex))?;
                t.opt("handover_offset", h.handover_offset.map(hex))?;
                if let Some(p) = &z.payload {
                    let c = match (p.compression, p.uncompressed_elf) {
                        (Some(c), _) => c.name().to_string(),
                        (None, true) => "none (ELF)".into(),
                        (None, false) => "unknown".into(),
                    };
                    t.row(
                        "payload",
                        format!("{c}, {} bytes at {}", p.length, hex(p.offset)),
                    )?;
                }
                if let Some(k) = &z.kernel_info {
                    t.row(
                        "kernel_info",
                        format!(
                            "size {} total {} setup_type_max {}",
                            k.size,
                            k.size_total,
                            hex(k.setup_type_max)
                        ),
                    )?;
                }
                match &z.efi_stub {
                    Some(pe) => pe_rows(&mut t, pe)?,
                    None => t.row("EFI stub", "no")?,
                }
            }
            Image::Vmlinux(e) => {
                t.row(
                    "ELF",
                    format!(
                        "{}-bit {}, {}",
                        e.class,
                        if e.big_endian {
                            "big-endian"
                        } else {
                            "little-endian"
                        },
                        e.machine
                    ),
                )?;
                t.row("entry", hex(e.entry))?;
                for (i, s) in e.load_segments.iter().enumerate() {
                    t.row(
                        &format!("PT_LOAD {i}"),
                        format!(
                            "{} paddr {} vaddr {} filesz {} memsz {} at {}",
                            s.flags,
                            hex(s.paddr),
                            hex(s.vaddr),
                            hex(s.filesz),
                            hex(s.memsz),
                            hex(s.offset)
                        ),
                    )?;
                }
                t.opt("build salt", e.build_salt.as_deref())?;
                t.opt("build id", e.build_id.as_deref())?;
                let notes: Vec<String> = e
                    .notes
                    .iter()
                    .map(|n| format!("{}/{}", n.name, hex(n.n_type)))
                    .collect();
                t.row(
                    "notes",
                    if notes.is_empty() {
                        "none".into()
                    } else {
                        notes.join(" ")
                    },
                )?;
            }
            Image::Arm64Image(img) => arm64_rows(&mut t, img)?,
            Image::Arm64Compressed {
                compression,
                decompressed_size,
                image,
            } => {
                t.row("compression", compression)?;
                t.row("decompressed size", decompressed_size)?;
                arm64_rows(&mut t, image)?;
            }
            Image::Zboot {
                zboot,
                efi,
                decompressed_size,
                image,
            } => {
                t.row("zboot compression", &zboot.compression_type)?;
                t.row(
                    "zboot payload",
                    format!(
                        "{} bytes at {}",
                        zboot.payload_size,
                        hex(zboot.payload_offset)
                    ),
                )?;
                if let Some(pe) = efi {
                    pe_rows(&mut t, pe)?;
                }
                t.row("decompressed size", decompressed_size)?;
                arm64_rows(&mut t, image)?;
            }
            Image::Uki { uki, kernel } => {
                let names: Vec<&str> = uki.pe.sections.iter().map(|s| s.name.as_str()).collect();
                t.row("sections", names.join(" "))?;
                t.row(
                    ".linux",
                    format!("{} bytes at {}", uki.linux.size, hex(uki.linux.offset)),
                )?;
                t.opt(
                    ".initrd",
                    uki.initrd
                        .map(|r| format!("{} bytes at {}", r.size, hex(r.offset))),
                )?;
                t.opt(".cmdline", uki.cmdline.as_deref())?;
                t.opt(".osrel", uki.os_pretty_name.as_deref())?;
                t.opt(".uname", uki.uname.as_deref())?;
                t.row(
                    "Authenticode signature",
                    if uki.pe.signed { "yes" } else { "no" },
                )?;
                writeln!(t.f, "{:indent$}embedded kernel:", "", indent = indent)?;
                kernel.render(t.f, indent + 2)?;
            }
            Image::Initramfs(r) => {
                for (i, s) in r.segments.iter().enumerate() {
                    let c = s.compression.map_or("uncompressed", |c| c.name());
                    let n = s
                        .entries
                        .map_or("entries unknown".to_string(), |n| format!("{n} entries"));
                    let first = if s.first_entries.is_empty() {
                        String::new()
                    } else {
                        format!(": {}", s.first_entries.join(" "))
                    };
                    t.row(
                        &format!("segment {i}"),
                        format!("{c} at {}, {} bytes, {n}{first}", hex(s.offset), s.length),
                    )?;
                }
                t.row("total entries", r.total_entries)?;
                let m = &r.microcode;
                let mc = if !m.present {
                    "none".to_string()
                } else {
                    format!(
                        "{} ({})",
                        m.files.join(" "),
                        if m.loadable_early {
                            "loaded early"
                        } else {
                            "NOT loadable early"
                        }
                    )
                };
                t.row("early microcode", mc)?;
                t.opt("warning", r.microcode_problem.as_ref())?;
            }
        }
        Ok(())
    }
}
