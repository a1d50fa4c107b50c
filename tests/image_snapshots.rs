//! Snapshot tests of `kexec::image` over every fixture in `fixtures/` and
//! every real kernel in the download cache (`cargo xtask fetch`).
//!
//! Fixture reports (or errors) are snapshotted whole: any change to the
//! parsers' output or to the JSON schema shows up as a reviewed diff. Real
//! kernels are snapshotted on their stable structure only (version-specific
//! numbers redacted) and cross-checked against the kernel's own `config`
//! and package version, so they prove the parser right, not just unchanged.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use kexec::image::{self, compression::Compression, Image, ImageReport};
use serde_json::{json, Value};

fn workspace() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// Fixture file names, sorted; README excluded.
fn fixture_names() -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(workspace().join("fixtures"))
        .expect("fixtures/ exists (run `cargo xtask fixtures`)")
        .map(|e| {
            e.expect("readable fixtures/ entry")
                .file_name()
                .to_string_lossy()
                .into_owned()
        })
        .filter(|n| n != "README.md")
        .collect();
    names.sort();
    names
}

/// Inspects with a relative path, so error messages in snapshots do not
/// depend on where the checkout lives.
fn inspect_fixture(name: &str) -> Result<ImageReport, image::InspectError> {
    std::env::set_current_dir(workspace()).expect("chdir to the workspace");
    image::inspect_path(&Path::new("fixtures").join(name))
}

fn outcome(r: &Result<ImageReport, image::InspectError>) -> Value {
    match r {
        Ok(report) => serde_json::to_value(report).expect("reports serialise"),
        Err(e) => json!({ "error": e.to_string() }),
    }
}

/// Fixtures that are broken or not kernels on purpose.
fn expected_to_fail(name: &str) -> bool {
    [
        "truncated",
        "wrong-magic",
        "lying",
        "empty",
        "not-a-kernel",
        ".so",
    ]
    .iter()
    .any(|k| name.contains(k))
}

#[test]
fn every_fixture_report_or_error_matches_its_snapshot() {
    let names = fixture_names();
    assert!(
        names.len() >= 30,
        "expected the generated fixtures, found {names:?}"
    );
    for name in &names {
        let r = inspect_fixture(name);
        insta::assert_json_snapshot!(format!("fixture-{name}"), outcome(&r));
    }
}

#[test]
fn broken_fixtures_fail_with_one_line_naming_the_file_and_valid_ones_parse() {
    for name in fixture_names() {
        match (inspect_fixture(&name), expected_to_fail(&name)) {
            (Err(e), true) => {
                let msg = e.to_string();
                assert!(!msg.contains('\n'), "{name}: multi-line error: {msg}");
                assert!(
                    msg.starts_with(&format!("fixtures/{name}: ")),
                    "{name}: error does not name the file: {msg}"
                );
                assert!(msg.contains("; "), "{name}: error gives no advice: {msg}");
            }
            (Ok(r), false) => {
                assert_eq!(r.schema, image::SCHEMA);
                assert_eq!(r.path.as_deref(), Some(format!("fixtures/{name}").as_str()));
                let v = serde_json::to_value(&r).expect("reports serialise");
                assert_eq!(v["format"], r.image.format_name(), "{name}");
                assert!(!r.to_string().is_empty());
            }
            (Err(e), false) => panic!("{name} should parse: {e}"),
            (Ok(r), true) => panic!("{name} should fail, got a {} report", r.image.format_name()),
        }
    }
}

#[test]
fn a_directory_and_a_missing_file_are_one_line_errors() {
    std::env::set_current_dir(workspace()).expect("chdir");
    let dir = image::inspect_path(Path::new("fixtures")).unwrap_err();
    assert_eq!(dir.kind, image::InspectErrorKind::IsADirectory);
    let missing = image::inspect_path(Path::new("fixtures/no-such-kernel")).unwrap_err();
    assert_eq!(missing.kind, image::InspectErrorKind::NotFound);
    let device = image::inspect_path(Path::new("/dev/zero")).unwrap_err();
    assert_eq!(device.kind, image::InspectErrorKind::Invalid);
    insta::assert_json_snapshot!(
        "directory-and-missing",
        json!([dir.to_string(), missing.to_string(), device.to_string()])
    );
}

#[test]
fn human_tables_match_their_snapshots() {
    for name in [
        "bzimage-efi-stub.bin",
        "uki.efi",
        "arm64-zboot.efi",
        "initramfs-microcode-compressed.cpio",
        "vmlinux-x86_64.elf",
    ] {
        let r = inspect_fixture(name).expect("valid fixture");
        insta::assert_snapshot!(format!("table-{name}"), r.to_string());
    }
}

#[test]
fn the_microcode_warning_fires_only_for_the_bad_initramfs() {
    let problem = |name: &str| match inspect_fixture(name).expect("valid fixture").image {
        Image::Initramfs(r) => image::initramfs::microcode_problem(&r),
        other => panic!("{name} is not an initramfs: {}", other.format_name()),
    };
    assert!(problem("initramfs-microcode-gzip.cpio").is_none());
    assert!(problem("initramfs-plain.cpio").is_none());
    let p =
        problem("initramfs-microcode-compressed.cpio").expect("compressed microcode is a problem");
    assert!(p.to_string().contains("gzip-compressed"), "{p}");
}

#[test]
fn every_truncation_of_every_fixture_returns_without_panicking() {
    // Prefixes at every length for small files, a stride for larger ones;
    // inspect_bytes must return (Ok or Err) every time.
    for name in fixture_names() {
        let bytes =
            std::fs::read(workspace().join("fixtures").join(&name)).expect("readable fixture");
        let step = (bytes.len() / 2048).max(1);
        let mut len = 0;
        while len < bytes.len() {
            let _ = image::inspect_bytes(&bytes[..len]);
            len += step;
        }
        // Flipping a byte anywhere in the headers must not panic either.
        for i in 0..bytes.len().min(0x300) {
            let mut b = bytes.clone();
            b[i] ^= 0xff;
            let _ = image::inspect_bytes(&b);
        }
    }
}

// ---- real kernels from the cache ----

/// The cache root, as TEAM.md defines it.
fn cache_root() -> PathBuf {
    if let Some(p) = std::env::var_os("KEXEC_RS_CACHE").filter(|p| !p.is_empty()) {
        return PathBuf::from(p);
    }
    if let Some(p) = std::env::var_os("XDG_CACHE_HOME").filter(|p| !p.is_empty()) {
        return PathBuf::from(p).join("kexec-rs");
    }
    workspace().join("target").join("vm-cache")
}

#[derive(Debug, serde::Deserialize)]
struct CachedKernel {
    name: String,
    source: String,
    arch: String,
    version: String,
    package_version: String,
    kernel: PathBuf,
    config: PathBuf,
}

fn cached_kernels() -> Option<Vec<CachedKernel>> {
    let manifest = cache_root().join("kernels.json");
    let text = std::fs::read_to_string(&manifest).ok()?;
    Some(
        serde_json::from_str(&text)
            .unwrap_or_else(|e| panic!("{} is not a valid kernels.json: {e}", manifest.display())),
    )
}

fn read_config(path: &Path) -> BTreeMap<String, String> {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    text.lines()
        .filter_map(|l| l.strip_prefix("CONFIG_"))
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn compression_option(c: Compression) -> &'static str {
    match c {
        Compression::Gzip => "KERNEL_GZIP",
        Compression::Xz => "KERNEL_XZ",
        Compression::Zstd => "KERNEL_ZSTD",
        Compression::Lz4 | Compression::Lz4Frame => "KERNEL_LZ4",
        Compression::Lzma => "KERNEL_LZMA",
        Compression::Bzip2 => "KERNEL_BZIP2",
        Compression::Lzo => "KERNEL_LZO",
    }
}

/// The version- and build-independent facts of a report.
fn structure(r: &ImageReport) -> Value {
    match &r.image {
        Image::Bzimage(z) => json!({
            "format": "bzimage",
            "kernel_version": z.kernel_version,
            "protocol": format!("{}.{:02}", z.header.version >> 8, z.header.version & 0xff),
            "setup_sects": z.header.setup_sects,
            "loadflags": z.header.loadflags,
            "xloadflags": z.header.xloadflags,
            "relocatable": z.header.relocatable_kernel,
            "kernel_alignment": z.header.kernel_alignment,
            "pref_address": z.header.pref_address,
            "cmdline_size": z.header.cmdline_size,
            "initrd_addr_max": z.header.initrd_addr_max,
            "init_size": z.header.init_size,
            "payload_compression": z.payload.as_ref().and_then(|p| p.compression),
            "kernel_info": z.kernel_info,
            "pe_machine": z.efi_stub.as_ref().map(|p| p.machine.clone()),
            "pe_sections": z.efi_stub.as_ref().map(|p| p.sections.iter().map(|s| s.name.clone()).collect::<Vec<_>>()),
            "signed": z.efi_stub.as_ref().map(|p| p.signed),
        }),
        Image::Arm64Image(a)
        | Image::Arm64Compressed { image: a, .. }
        | Image::Zboot { image: a, .. } => json!({
            "format": r.image.format_name(),
            "linux_banner": a.linux_banner,
            "text_offset": a.header.text_offset,
            "image_size": a.header.image_size,
            "flags": a.header.flags,
            "page_size": a.header.page_size,
            "big_endian": a.header.big_endian,
            "phys_placement_anywhere": a.header.phys_placement_anywhere,
            "efi_stub": a.header.efi_stub,
            "pe_machine": a.efi.as_ref().map(|p| p.machine.clone()),
            "pe_sections": a.efi.as_ref().map(|p| p.sections.iter().map(|s| s.name.clone()).collect::<Vec<_>>()),
            "signed": a.efi.as_ref().map(|p| p.signed),
        }),
        other => json!({ "format": other.format_name() }),
    }
}

/// Asserts the report against the kernel's package version and config.
fn check_against_package(k: &CachedKernel, r: &ImageReport) {
    let config = read_config(&k.config);
    let enabled = |opt: &str| config.get(opt).is_some_and(|v| v == "y");
    let version_string = match &r.image {
        Image::Bzimage(z) => z.kernel_version.clone(),
        Image::Arm64Image(a)
        | Image::Arm64Compressed { image: a, .. }
        | Image::Zboot { image: a, .. } => a
            .linux_banner
            .as_ref()
            .and_then(|b| b.strip_prefix("Linux version ").map(String::from)),
        other => panic!("{}: a kernel, reported as {}", k.name, other.format_name()),
    };
    let version_string =
        version_string.unwrap_or_else(|| panic!("{}: no kernel version string found", k.name));
    assert!(
        version_string.starts_with(&k.version),
        "{}: version string {version_string:?} does not start with {:?}",
        k.name,
        k.version
    );
    // Debian's banner carries the package version verbatim; Alpine's
    // carries the upstream version only (package 6.12.13-r0, banner
    // "6.12.13-0-lts … #1-Alpine …").
    let expected = match k.source.as_str() {
        "alpine" => k
            .package_version
            .split("-r")
            .next()
            .unwrap_or(&k.package_version),
        _ => k.package_version.as_str(),
    };
    assert!(
        version_string.contains(expected),
        "{}: version string {version_string:?} does not contain the package version {:?}",
        k.name,
        expected
    );
    if config.is_empty() {
        eprintln!(
            "{}: {} is not a kernel config; config cross-checks skipped",
            k.name,
            k.config.display()
        );
        return;
    }
    match &r.image {
        Image::Bzimage(z) => {
            assert_eq!(
                k.arch, "x86_64",
                "{}: a bzImage for arch {}",
                k.name, k.arch
            );
            let c = z
                .payload
                .as_ref()
                .and_then(|p| p.compression)
                .unwrap_or_else(|| panic!("{}: payload compression not recognised", k.name));
            assert!(
                enabled(compression_option(c)),
                "{}: payload is {c} but CONFIG_{} is not set",
                k.name,
                compression_option(c)
            );
            assert_eq!(
                z.efi_stub.is_some(),
                enabled("EFI_STUB"),
                "{}: EFI stub presence vs CONFIG_EFI_STUB",
                k.name
            );
            assert_eq!(
                z.header.relocatable_kernel,
                Some(enabled("RELOCATABLE")),
                "{}: relocatable vs CONFIG_RELOCATABLE",
                k.name
            );
            assert!(
                z.header.version < 0x020f || z.kernel_info.is_some(),
                "{}: protocol 2.15+ without kernel_info",
                k.name
            );
            check_vmlinux_inside(k, &config, z);
            if let Some(align) = config
                .get("PHYSICAL_ALIGN")
                .and_then(|v| u32::from_str_radix(v.trim_start_matches("0x"), 16).ok())
            {
                assert_eq!(
                    z.header.kernel_alignment,
                    Some(align),
                    "{}: kernel_alignment vs CONFIG_PHYSICAL_ALIGN",
                    k.name
                );
            }
        }
        Image::Arm64Image(a)
        | Image::Arm64Compressed { image: a, .. }
        | Image::Zboot { image: a, .. } => {
            assert_eq!(
                k.arch, "aarch64",
                "{}: an arm64 Image for arch {}",
                k.name, k.arch
            );
            assert_eq!(
                matches!(r.image, Image::Zboot { .. }),
                enabled("EFI_ZBOOT"),
                "{}: zboot vs CONFIG_EFI_ZBOOT",
                k.name
            );
            assert_eq!(
                a.header.efi_stub,
                enabled("EFI_STUB"),
                "{}: EFI stub vs CONFIG_EFI_STUB",
                k.name
            );
            assert_eq!(
                a.header.big_endian,
                enabled("CPU_BIG_ENDIAN"),
                "{}: endianness vs CONFIG_CPU_BIG_ENDIAN",
                k.name
            );
            let page = serde_json::to_value(a.header.page_size).expect("serialises");
            let want = if enabled("ARM64_64K_PAGES") {
                "64k"
            } else if enabled("ARM64_16K_PAGES") {
                "16k"
            } else {
                "4k"
            };
            assert_eq!(page, want, "{}: page size vs CONFIG_ARM64_*K_PAGES", k.name);
            assert_eq!(
                a.header.phys_placement_anywhere,
                enabled("RELOCATABLE"),
                "{}: placement vs CONFIG_RELOCATABLE",
                k.name
            );
        }
        _ => unreachable!("checked above"),
    }
}

/// Decompresses the bzImage's payload (when this crate can: gzip, xz,
/// zstd, lz4, lzma) and checks the vmlinux inside against the package: an x86_64 ELF
/// kernel whose build-salt note is the kernel release and whose first
/// PT_LOAD sits at CONFIG_PHYSICAL_START.
fn check_vmlinux_inside(
    k: &CachedKernel,
    config: &BTreeMap<String, String>,
    z: &image::bzimage::BzImage,
) {
    let c = z.payload.as_ref().and_then(|p| p.compression);
    if !matches!(
        c,
        Some(
            Compression::Gzip
                | Compression::Xz
                | Compression::Zstd
                | Compression::Lz4
                | Compression::Lzma
        )
    ) {
        eprintln!(
            "{}: {c:?} payload not decompressed (only gzip, xz, zstd, lz4 and lzma are)",
            k.name
        );
        return;
    }
    let bytes = std::fs::read(&k.kernel).expect("kernel readable");
    let vmlinux = z
        .decompress_payload(&bytes, image::compression::MAX_DECOMPRESSED)
        .unwrap_or_else(|e| panic!("{}: {e}", k.name));
    let elf = image::elf::parse(&vmlinux)
        .unwrap_or_else(|e| panic!("{}: payload is not an ELF vmlinux: {e}", k.name));
    assert_eq!(elf.kind, image::elf::ElfKind::Kernel, "{}", k.name);
    assert_eq!(elf.machine, "x86_64", "{}", k.name);
    assert_eq!(elf.class, 64, "{}", k.name);
    if let Some(salt) = &elf.build_salt {
        assert_eq!(salt, &k.version, "{}: vmlinux build salt", k.name);
    }
    if let Some(start) = config
        .get("PHYSICAL_START")
        .and_then(|v| u64::from_str_radix(v.trim_start_matches("0x"), 16).ok())
    {
        let first = elf
            .load_segments
            .first()
            .unwrap_or_else(|| panic!("{}: vmlinux without PT_LOAD", k.name));
        assert_eq!(
            first.paddr, start,
            "{}: first PT_LOAD paddr vs CONFIG_PHYSICAL_START",
            k.name
        );
    }
    let init_size = z.header.init_size.unwrap_or(0) as u64;
    let span = elf
        .load_segments
        .iter()
        .map(|s| s.paddr + s.memsz)
        .max()
        .unwrap_or(0)
        - elf.load_segments[0].paddr;
    assert!(
        init_size >= span,
        "{}: init_size {init_size:#x} smaller than the vmlinux it unpacks ({span:#x})",
        k.name
    );
}

#[test]
fn cached_real_kernels_match_their_packages_and_snapshots() {
    let Some(kernels) = cached_kernels() else {
        eprintln!(
            "skipped: no {} — run `cargo xtask fetch` to test real kernels",
            cache_root().join("kernels.json").display()
        );
        return;
    };
    assert!(!kernels.is_empty(), "kernels.json lists no kernels");
    for k in &kernels {
        let r = image::inspect_path(&k.kernel).unwrap_or_else(|e| panic!("{}: {e}", k.name));
        check_against_package(k, &r);
        // Only kernels with a known, stable name have a committed snapshot;
        // others (a user's `--source local` kernel) get the checks above.
        if k.source == "debian" {
            insta::assert_json_snapshot!(format!("kernel-{}", k.name), structure(&r), {
                ".kernel_version" => "[version]",
                ".linux_banner" => "[version]",
                ".init_size" => "[size]",
                ".image_size" => "[size]",
            });
        }
    }
}

#[test]
fn authenticode_signature_is_seen_only_where_attached() {
    let signed = |name: &str| match inspect_fixture(name).expect("valid fixture").image {
        Image::Bzimage(z) => z.efi_stub.map(|p| p.signed),
        Image::Arm64Image(a) => a.efi.map(|p| p.signed),
        other => panic!("{name}: {}", other.format_name()),
    };
    assert_eq!(signed("bzimage-efi-signed.bin"), Some(true));
    assert_eq!(signed("bzimage-efi-stub.bin"), Some(false));
    assert_eq!(signed("arm64-Image-efi.bin"), Some(false));
    assert_eq!(signed("bzimage-2.15-gzip.bin"), None);
}
