//! The initramfs reader against archives made by the real tools (GNU cpio,
//! gzip, xz, zstd, lz4, bzip2), the way distributions build them, not only
//! against this crate's own builder: entry counts must equal what `cpio -t`
//! lists, and early-microcode placement must be judged as the kernel would.

use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};

use kexec::image::{self, compression::Compression, initramfs, Image};

fn have(tool: &str) -> bool {
    Command::new(tool)
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok()
}

fn run(cmd: &str, args: &[&str], dir: &Path, input: &[u8]) -> Vec<u8> {
    let mut child = Command::new(cmd)
        .args(args)
        .current_dir(dir)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("{cmd}: {e}"));
    let mut stdin = child.stdin.take().expect("piped stdin");
    let input = input.to_vec();
    let writer = std::thread::spawn(move || stdin.write_all(&input));
    let out = child.wait_with_output().expect("wait");
    writer.join().expect("writer thread").expect("write stdin");
    assert!(
        out.status.success(),
        "{cmd} {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

/// A cpio newc archive of `root`, as `find . | cpio -o -H newc` makes it.
fn cpio_of(root: &Path) -> Vec<u8> {
    let list = run("find", &["."], root, b"");
    run("cpio", &["--quiet", "-o", "-H", "newc"], root, &list)
}

fn listed_entries(archive: &[u8]) -> usize {
    let listing = run("cpio", &["--quiet", "-it"], Path::new("/"), archive);
    String::from_utf8_lossy(&listing).lines().count()
}

fn tree(dir: &Path, files: &[(&str, &[u8])]) {
    for (name, data) in files {
        let p = dir.join(name);
        std::fs::create_dir_all(p.parent().expect("has a parent")).expect("mkdir");
        std::fs::write(p, data).expect("write");
    }
}

fn report(bytes: &[u8]) -> initramfs::InitramfsReport {
    match image::inspect_bytes(bytes)
        .unwrap_or_else(|e| {
            panic!(
                "a valid initramfs: {e}; starts {:02x?}, {} bytes",
                &bytes[..bytes.len().min(16)],
                bytes.len()
            )
        })
        .image
    {
        Image::Initramfs(r) => r,
        other => panic!("detected as {}", other.format_name()),
    }
}

#[test]
fn archives_from_real_tools_are_read_exactly() {
    let missing: Vec<&str> = ["cpio", "find", "gzip"]
        .into_iter()
        .filter(|t| !have(t))
        .collect();
    if !missing.is_empty() {
        eprintln!("skipped: {missing:?} not installed (apt-get install cpio gzip)");
        return;
    }
    let tmp = tempfile::tempdir().expect("tempdir");
    let main = tmp.path().join("main");
    tree(
        &main,
        &[
            ("init", b"#!/bin/sh\nexec /bin/sh\n"),
            ("bin/busybox", &[0x7f; 3000]),
            ("etc/hostname", b"guest\n"),
            ("lib/modules/README", b"none\n"),
        ],
    );
    let ucode = tmp.path().join("ucode");
    tree(
        &ucode,
        &[
            ("kernel/x86/microcode/GenuineIntel.bin", &[0x01; 512]),
            ("kernel/x86/microcode/AuthenticAMD.bin", &[0x02; 256]),
        ],
    );
    let main_cpio = cpio_of(&main);
    let ucode_cpio = cpio_of(&ucode);
    let n_main = listed_entries(&main_cpio);
    let n_ucode = listed_entries(&ucode_cpio);

    // Plain and every compressor the kernel reads that is installed here;
    // xz with CRC32 as the kernel's own decompressor requires.
    let compressors: &[(&str, &[&str], Compression)] = &[
        ("gzip", &["-9", "-n", "-c"], Compression::Gzip),
        ("xz", &["--check=crc32", "-c"], Compression::Xz),
        ("zstd", &["-q", "-19", "-c"], Compression::Zstd),
        ("lz4", &["-l", "-q", "-c"], Compression::Lz4),
        ("lzma", &["-c"], Compression::Lzma),
        ("bzip2", &["-c"], Compression::Bzip2),
    ];
    let plain = report(&main_cpio);
    assert_eq!(plain.segments.len(), 1);
    assert_eq!(plain.segments[0].entries, Some(n_main));
    // GNU cpio pads to 512-byte blocks after the trailer; the kernel skips
    // that NUL padding, and the segment ends at the trailer.
    let end = plain.segments[0].length as usize;
    assert!(
        end <= main_cpio.len() && main_cpio[end..].iter().all(|&c| c == 0),
        "segment ends at {end} of {}",
        main_cpio.len()
    );
    for (tool, args, format) in compressors {
        if !have(tool) {
            eprintln!("skipped {tool}: not installed");
            continue;
        }
        let packed = run(tool, args, tmp.path(), &main_cpio);
        let r = report(&packed);
        assert_eq!(r.segments.len(), 1, "{tool}");
        assert_eq!(r.segments[0].compression, Some(*format), "{tool}");
        let decodable = matches!(
            format,
            Compression::Gzip
                | Compression::Xz
                | Compression::Zstd
                | Compression::Lz4
                | Compression::Lzma
        );
        assert_eq!(
            r.segments[0].entries,
            decodable.then_some(n_main),
            "{tool}: entries"
        );
        if decodable {
            assert_eq!(
                r.segments[0].length,
                packed.len() as u64,
                "{tool}: stream length"
            );
        }

        // Early microcode first and plain, then the compressed main archive
        // (what dracut and mkinitramfs produce): fine.
        let good = initramfs::concatenate(&[&ucode_cpio, &packed]);
        let r = report(&good);
        assert_eq!(r.segments.len(), 2, "{tool}");
        assert_eq!(r.segments[0].entries, Some(n_ucode));
        assert_eq!(
            r.microcode.files.len(),
            2,
            "{tool}: {:?}",
            r.microcode.files
        );
        assert!(r.microcode.loadable_early, "{tool}");
        assert_eq!(initramfs::microcode_problem(&r), None, "{tool}");

        // The other order: microcode after a compressed segment is ignored
        // by the kernel. Undecodable streams hide what follows them, so
        // only the decodable ones can see the microcode at all.
        let bad = initramfs::concatenate(&[&packed, &ucode_cpio]);
        let r = report(&bad);
        if decodable {
            let p = initramfs::microcode_problem(&r).expect("microcode after a compressed segment");
            assert!(
                matches!(p, initramfs::MicrocodeProblem::NotFirst { segment: 1, .. }),
                "{tool}: {p}"
            );
        }
    }

    // Microcode compressed along with everything else: the classic mistake.
    let mut both = tmp.path().join("both");
    tree(
        &both,
        &[
            ("init", b"x"),
            ("kernel/x86/microcode/GenuineIntel.bin", &[0x01; 64]),
        ],
    );
    let gz = run("gzip", &["-n", "-c"], tmp.path(), &cpio_of(&both));
    let r = report(&gz);
    let p = initramfs::microcode_problem(&r).expect("compressed microcode");
    assert!(
        matches!(
            p,
            initramfs::MicrocodeProblem::Compressed {
                segment: 0,
                compression: Compression::Gzip,
                ..
            }
        ),
        "{p}"
    );
    both.pop();
}
