//! `cargo xtask fixtures`: synthesises the small kernel-image fixtures in
//! `fixtures/` (valid and deliberately broken) from code, so that every
//! byte in them is explained here and none can drift: `--check`, and the
//! test at the bottom, regenerate them and compare with what is committed.
//!
//! The byte-level builders live next to the parsers in the `kexec` library
//! (`bzimage::build`, `elf::build`, …); this module decides which variants
//! exist and how each is broken.

use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use kexec::image::{arm64, bzimage, cpio, elf, initramfs, pe, uki};

/// One fixture: file name, what it is, and its bytes.
pub struct Fixture {
    pub name: &'static str,
    pub about: &'static str,
    pub bytes: Vec<u8>,
}

fn gzip(data: &[u8]) -> Vec<u8> {
    // GzEncoder writes mtime 0 and no file name: the output is reproducible.
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    e.write_all(data).expect("writing to a Vec cannot fail");
    e.finish().expect("writing to a Vec cannot fail")
}

fn zstd(data: &[u8]) -> Vec<u8> {
    ruzstd::encoding::compress_to_vec(data, ruzstd::encoding::CompressionLevel::Fastest)
}

fn xz(data: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    lzma_rs::xz_compress(&mut &data[..], &mut out).expect("writing to a Vec cannot fail");
    out
}

/// Deterministic filler that does not compress to nothing.
fn filler(len: usize, seed: u32) -> Vec<u8> {
    let mut x = seed.wrapping_mul(2_654_435_761).max(1);
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            (x >> 24) as u8
        })
        .collect()
}

const VERSION: &str = "6.6.0-fixture (xtask@kexec-rs) #1 SMP PREEMPT_DYNAMIC";

fn bz(version: u16, payload: &[u8]) -> Vec<u8> {
    bzimage::build(version, 3, VERSION, payload)
}

/// A bzImage whose payload starts with `magic` followed by filler.
fn bz_magic(magic: &[u8]) -> Vec<u8> {
    let mut payload = magic.to_vec();
    payload.extend(filler(200, 7));
    bz(0x020f, &payload)
}

fn put32(b: &mut [u8], off: usize, v: u32) {
    b[off..off + 4].copy_from_slice(&v.to_le_bytes());
}

/// A 2.15 bzImage with an EFI stub: PE header at 0x40 whose sections
/// cover the setup and the protected-mode code, like the kernel's own.
fn bz_efi() -> Vec<u8> {
    let mut b = bz(0x020f, &gzip(&filler(1024, 3)));
    let pm = 4 * 512;
    let len = b.len() as u32;
    pe::write_pe_header(
        &mut b,
        0x40,
        goblin_machine_x86_64(),
        pm as u32 + 0x200,
        &[
            (".setup", 0x200, pm as u32 - 0x200, 0x200, pm as u32 - 0x200),
            (
                ".text",
                pm as u32,
                len - pm as u32,
                pm as u32,
                len - pm as u32,
            ),
        ],
    );
    b
}

/// bz_efi() with a WIN_CERTIFICATE appended and the PE security data
/// directory pointing at it. The PKCS#7 blob is filler: parsers only need
/// to see that a signature is attached, not verify it.
fn bz_efi_signed() -> Vec<u8> {
    let mut b = bz_efi();
    b.resize(b.len().div_ceil(8) * 8, 0);
    let offset = b.len() as u32;
    let blob = filler(56, 12);
    let length = 8 + blob.len() as u32;
    b.extend_from_slice(&length.to_le_bytes());
    b.extend_from_slice(&0x0200u16.to_le_bytes()); // WIN_CERT_REVISION_2_0
    b.extend_from_slice(&0x0002u16.to_le_bytes()); // WIN_CERT_TYPE_PKCS_SIGNED_DATA
    b.extend_from_slice(&blob);
    // PE32+ optional header at 0x40 + 4 + 20; data directories start 112
    // bytes into it; the security directory is entry 4.
    let dir = 0x40 + 4 + 20 + 112 + 4 * 8;
    put32(&mut b, dir, offset);
    put32(&mut b, dir + 4, length);
    b
}

fn tiny_vmlinux() -> Vec<u8> {
    let salt: &[u8] = b"6.6.0-fixture\0";
    elf::build(
        2,
        62,
        0xffff_ffff_8100_0000,
        0x100_0000,
        &filler(256, 13),
        &[("Linux", elf::LINUX_ELFNOTE_BUILD_SALT, salt)],
        false,
    )
}

/// A zboot image around an already compressed payload, with its own PE
/// header as the kernel's zboot EFI application has.
fn zboot(kind: &str, payload: &[u8]) -> Vec<u8> {
    let mut zb = arm64::build_zboot(kind, payload);
    let zlen = zb.len() as u32;
    pe::write_pe_header(
        &mut zb,
        0x40,
        goblin_machine_arm64(),
        0x200,
        &[(".text", 0x1000, zlen - 0x200, 0x200, zlen - 0x200)],
    );
    zb
}

/// The LZ4 legacy format (`lz4 -l`): magic, then 8 MiB blocks each after
/// its compressed size.
fn lz4_legacy(data: &[u8]) -> Vec<u8> {
    let mut out = vec![0x02, 0x21, 0x4c, 0x18];
    for chunk in data.chunks(8 << 20) {
        let c = lz4_flex::block::compress(chunk);
        out.extend_from_slice(&(c.len() as u32).to_le_bytes());
        out.extend_from_slice(&c);
    }
    out
}

fn goblin_machine_x86_64() -> u16 {
    0x8664
}
fn goblin_machine_arm64() -> u16 {
    0xaa64
}

fn arm64_image() -> Vec<u8> {
    arm64::build_image(0, 0x2_0000, 0xa, &filler(8192 - 64, 11))
}

/// An arm64 Image with an EFI stub, laid out like Debian's: `MZ` at 0, PE
/// header at 0x40, flags 0xa.
fn arm64_image_efi() -> Vec<u8> {
    let mut b = arm64_image();
    let len = b.len() as u32;
    // The PE pointer at 0x3c is the Image header's res5 field, which is
    // exactly its meaning there.
    pe::write_pe_header(
        &mut b,
        0x40,
        goblin_machine_arm64(),
        0x1000,
        &[(".text", 0x1000, len - 0x1000, 0x1000, len - 0x1000)],
    );
    b
}

fn microcode_cpio() -> Vec<u8> {
    cpio::build_newc(&[
        ("kernel", b""),
        ("kernel/x86", b""),
        ("kernel/x86/microcode", b""),
        ("kernel/x86/microcode/GenuineIntel.bin", &filler(64, 5)),
    ])
}

fn main_cpio() -> Vec<u8> {
    cpio::build_newc(&[
        ("bin", b""),
        ("init", b"#!/bin/sh\nexec /bin/sh\n"),
        ("etc", b""),
        ("etc/hostname", b"fixture\n"),
    ])
}

/// Every fixture, in a fixed order.
pub fn all() -> Vec<Fixture> {
    let mut v = Vec::new();
    let mut add = |name, about, bytes| v.push(Fixture { name, about, bytes });

    // x86 bzImage.
    add(
        "bzimage-2.15-gzip.bin",
        "bzImage, boot protocol 2.15, gzip payload, kernel_info",
        bz(0x020f, &gzip(&filler(2048, 1))),
    );
    add(
        "bzimage-2.15-lz4.bin",
        "bzImage 2.15, payload starts with the LZ4 legacy magic 0x184C2102",
        bz_magic(&[0x02, 0x21, 0x4c, 0x18]),
    );
    add(
        "bzimage-2.15-zstd.bin",
        "bzImage 2.15, zstd payload",
        bz(0x020f, &zstd(&filler(2048, 2))),
    );
    add(
        "bzimage-2.15-xz.bin",
        "bzImage 2.15, payload starts with the xz magic",
        bz_magic(&[0xfd, b'7', b'z', b'X', b'Z', 0]),
    );
    add(
        "bzimage-2.02-old.bin",
        "bzImage with the old boot protocol 2.02 (no payload/cmdline_size fields)",
        bz(0x0202, &filler(256, 4)),
    );
    add(
        "bzimage-efi-stub.bin",
        "bzImage 2.15 with an EFI stub PE header (.setup, .text), unsigned",
        bz_efi(),
    );
    add(
        "bzimage-efi-signed.bin",
        "bzimage-efi-stub.bin with an (unverifiable) Authenticode certificate table appended, as sbsign leaves it",
        bz_efi_signed(),
    );
    add(
        "bzimage-2.15-uncompressed-elf.bin",
        "bzImage 2.15 whose payload is an uncompressed ELF (CONFIG_KERNEL_UNCOMPRESSED)",
        bz(0x020f, &tiny_vmlinux()),
    );
    let mut truncated = bz(0x020f, &gzip(&filler(2048, 1)));
    truncated.truncate(truncated.len() / 2 + 1024);
    add(
        "bzimage-truncated.bin",
        "broken: bzimage-2.15-gzip.bin cut short (syssize points past the end)",
        truncated,
    );
    let mut wrong = bz(0x020f, &gzip(&filler(64, 1)));
    wrong[0x205] = b'X';
    add(
        "bzimage-wrong-magic.bin",
        "broken: \"HdrX\" instead of \"HdrS\" at 0x202 (boot sector signature intact)",
        wrong,
    );
    let mut lying_setup = bz(0x020f, &gzip(&filler(64, 1)));
    lying_setup[0x1f1] = 200;
    add(
        "bzimage-lying-setup-sects.bin",
        "broken: setup_sects 200, far past the end of the file",
        lying_setup,
    );
    let mut lying_payload = bz(0x020f, &gzip(&filler(64, 1)));
    put32(&mut lying_payload, 0x24c, 0x0100_0000);
    add(
        "bzimage-lying-payload.bin",
        "broken: payload_length 16 MiB in a 3 KiB file",
        lying_payload,
    );
    add("empty.bin", "broken: zero bytes", Vec::new());

    // ELF.
    let salt: &[u8] = b"6.6.0-fixture\0";
    let build_id: &[u8] = &[0x5a; 20];
    let notes: &[elf::NoteSpec<'_>] = &[
        ("Linux", elf::LINUX_ELFNOTE_BUILD_SALT, salt),
        ("GNU", 3, build_id),
    ];
    add(
        "vmlinux-x86_64.elf",
        "ELF vmlinux, x86_64: one PT_LOAD at paddr 16 MiB, Linux build-salt and GNU build-id notes",
        elf::build(
            2,
            62,
            0xffff_ffff_8100_0000,
            0x100_0000,
            &filler(512, 8),
            notes,
            false,
        ),
    );
    add(
        "vmlinux-aarch64.elf",
        "ELF vmlinux, aarch64: one PT_LOAD, Linux build-salt note",
        elf::build(
            2,
            183,
            0xffff_8000_0800_0000,
            0x4020_0000,
            &filler(512, 9),
            &notes[..1],
            false,
        ),
    );
    add(
        "libfixture.so",
        "not a kernel: an ELF shared object (ET_DYN with PT_DYNAMIC)",
        elf::build(3, 62, 0x1000, 0x1000, &[0xc3; 16], &[], true),
    );

    // arm64.
    add(
        "arm64-Image.bin",
        "arm64 Image without EFI stub: text_offset 0, image_size 0x20000, flags 0xa",
        arm64_image(),
    );
    add(
        "arm64-Image-efi.bin",
        "arm64 Image with an EFI stub (MZ, PE header at 0x40), like Debian's vmlinuz",
        arm64_image_efi(),
    );
    add(
        "arm64-Image.gz",
        "arm64-Image.bin compressed with gzip",
        gzip(&arm64_image()),
    );
    add(
        "arm64-Image.zst",
        "arm64-Image.bin compressed with zstd",
        zstd(&arm64_image()),
    );
    let zb = zboot("gzip", &gzip(&arm64_image_efi()));
    add(
        "arm64-zboot.efi",
        "EFI zboot (MZ + zimg, gzip payload) around arm64-Image-efi.bin, with its own PE header",
        zb.clone(),
    );
    add(
        "arm64-zboot-zstd.efi",
        "EFI zboot with a zstd payload around arm64-Image-efi.bin",
        zboot("zstd", &zstd(&arm64_image_efi())),
    );
    let mut zb_lying = zb;
    put32(&mut zb_lying, 12, 0x0100_0000);
    add(
        "arm64-zboot-lying-size.efi",
        "broken: zboot header's payload size 16 MiB in a small file",
        zb_lying,
    );
    let mut gz_trunc = gzip(&arm64_image());
    gz_trunc.truncate(gz_trunc.len() / 2);
    add(
        "arm64-Image-truncated.gz",
        "broken: arm64-Image.gz cut in half",
        gz_trunc,
    );

    // UKI.
    let uki_bytes = uki::build(&[
        (
            ".osrel",
            b"NAME=\"Fixture Linux\"\nPRETTY_NAME=\"Fixture Linux 1.0\"\nID=fixture\n",
        ),
        (".cmdline", b"console=ttyS0 root=/dev/vda rw\0"),
        (".uname", b"6.6.0-fixture\n"),
        (".linux", &bz_efi()),
        (".initrd", &main_cpio()),
    ]);
    add(
        "uki.efi",
        "unified kernel image: .osrel .cmdline .uname .linux (bzimage-efi-stub.bin) .initrd",
        uki_bytes,
    );

    // initramfs.
    add(
        "initramfs-plain.cpio",
        "initramfs: one uncompressed newc archive",
        main_cpio(),
    );
    add(
        "initramfs-gzip.cpio.gz",
        "initramfs: one gzip-compressed archive",
        gzip(&main_cpio()),
    );
    add(
        "initramfs-zstd.cpio.zst",
        "initramfs: one zstd-compressed archive",
        zstd(&main_cpio()),
    );
    add(
        "initramfs-xz.cpio.xz",
        "initramfs: one xz-compressed archive",
        xz(&main_cpio()),
    );
    add(
        "initramfs-lz4.cpio.lz4",
        "initramfs: one archive in the LZ4 legacy format (lz4 -l)",
        lz4_legacy(&main_cpio()),
    );
    add(
        "initramfs-microcode-gzip.cpio",
        "initramfs done right: uncompressed early-microcode archive first, then a gzip archive",
        initramfs::concatenate(&[&microcode_cpio(), &gzip(&main_cpio())]),
    );
    add(
        "initramfs-microcode-compressed.cpio",
        "initramfs done wrong: the microcode archive is gzip-compressed, so the kernel ignores it",
        initramfs::concatenate(&[&gzip(&microcode_cpio()), &gzip(&main_cpio())]),
    );
    let mut cpio_trunc = main_cpio();
    cpio_trunc.truncate(cpio_trunc.len() - 40);
    add(
        "initramfs-truncated.cpio",
        "broken: initramfs-plain.cpio without its trailer",
        cpio_trunc,
    );

    // Not kernels at all.
    add("not-a-kernel.png", "not a kernel: a 1x1 PNG", png_1x1());
    add(
        "not-a-kernel.sh",
        "not a kernel: a shell script",
        b"#!/bin/sh\necho this is not a kernel\n".to_vec(),
    );
    v
}

/// A valid 1x1 grey PNG, written out by hand (signature, IHDR, IDAT, IEND
/// with their CRCs).
fn png_1x1() -> Vec<u8> {
    fn chunk(out: &mut Vec<u8>, kind: &[u8; 4], data: &[u8]) {
        out.extend_from_slice(&(data.len() as u32).to_be_bytes());
        let mut crc = flate2::Crc::new();
        crc.update(kind);
        crc.update(data);
        out.extend_from_slice(kind);
        out.extend_from_slice(data);
        out.extend_from_slice(&crc.sum().to_be_bytes());
    }
    let mut out = b"\x89PNG\r\n\x1a\n".to_vec();
    chunk(&mut out, b"IHDR", &[0, 0, 0, 1, 0, 0, 0, 1, 8, 0, 0, 0, 0]);
    let mut z = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::best());
    z.write_all(&[0, 0x80])
        .expect("writing to a Vec cannot fail");
    chunk(
        &mut out,
        b"IDAT",
        &z.finish().expect("writing to a Vec cannot fail"),
    );
    chunk(&mut out, b"IEND", &[]);
    out
}

/// `fixtures/README.md`, generated from the list so it cannot go stale.
pub fn readme() -> String {
    let mut s = String::from(
        "# Fixtures\n\n\
         Small synthesized kernel images, initramfs archives and non-kernel files,\n\
         valid and deliberately broken, for the parsers in `src/image/` and the\n\
         snapshot tests in `tests/image_snapshots.rs`.\n\n\
         Every file here is generated by `cargo xtask fixtures` (code in\n\
         `xtask/src/fixtures.rs`, byte-level builders next to each parser), this\n\
         README included. Nothing is copied from a real kernel; real kernels live\n\
         in the download cache (`cargo xtask fetch`), never in git.\n\
         `cargo xtask fixtures --check` (and a test run by `cargo nextest run\n\
         --workspace`) regenerates them and fails if any byte differs.\n\n\
         | file | what it is |\n| --- | --- |\n",
    );
    for f in all() {
        s.push_str(&format!(
            "| `{}` | {} ({} bytes) |\n",
            f.name,
            f.about,
            f.bytes.len()
        ));
    }
    s
}

/// The workspace's `fixtures/` directory.
pub fn dir() -> PathBuf {
    let xtask = Path::new(env!("CARGO_MANIFEST_DIR"));
    xtask.parent().unwrap_or(xtask).join("fixtures")
}

/// Fixture files that differ from (or are missing compared to) the
/// generator's output.
pub fn stale(dir: &Path) -> Vec<String> {
    let mut stale: Vec<String> = all()
        .into_iter()
        .filter(|f| std::fs::read(dir.join(f.name)).ok().as_deref() != Some(f.bytes.as_slice()))
        .map(|f| f.name.to_string())
        .collect();
    if std::fs::read_to_string(dir.join("README.md")).ok() != Some(readme()) {
        stale.push("README.md".into());
    }
    stale
}

/// Writes the fixtures (or, with `check`, verifies them).
pub fn run(check: bool) -> Result<()> {
    let dir = dir();
    if check {
        let stale = stale(&dir);
        if !stale.is_empty() {
            bail!(
                "fixtures out of date: {}; run `cargo xtask fixtures` and commit the result",
                stale.join(", ")
            );
        }
        println!(
            "{} fixtures in {} are up to date",
            all().len(),
            dir.display()
        );
        return Ok(());
    }
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    let fixtures = all();
    for f in &fixtures {
        let path = dir.join(f.name);
        std::fs::write(&path, &f.bytes).with_context(|| format!("writing {}", path.display()))?;
    }
    std::fs::write(dir.join("README.md"), readme()).context("writing fixtures/README.md")?;
    println!("wrote {} fixtures to {}", fixtures.len(), dir.display());
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn committed_fixtures_match_the_generator() {
        let stale = stale(&dir());
        assert!(
            stale.is_empty(),
            "fixtures out of date: {stale:?}; run `cargo xtask fixtures` and commit"
        );
    }

    #[test]
    fn generation_is_deterministic() {
        let a: Vec<Vec<u8>> = all().into_iter().map(|f| f.bytes).collect();
        let b: Vec<Vec<u8>> = all().into_iter().map(|f| f.bytes).collect();
        assert_eq!(a, b);
    }

    #[test]
    fn every_fixture_is_described_in_the_readme() {
        let readme = readme();
        for f in all() {
            assert!(
                readme.contains(f.name),
                "fixtures/README.md does not mention {}",
                f.name
            );
        }
    }

    #[test]
    fn names_are_unique() {
        let mut names: Vec<&str> = all().iter().map(|f| f.name).collect::<Vec<_>>();
        let n = names.len();
        names.sort();
        names.dedup();
        assert_eq!(names.len(), n);
    }
}
