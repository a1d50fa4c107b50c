//! The kernel file named on the command line: read once, identified with
//! the image library, and unpacked into what `kexec_file_load` takes.
//!
//! The kernel's own loaders accept a bzImage (x86) or an uncompressed arm64
//! `Image`; they do not take an `Image.gz`, a zboot image or a unified kernel
//! image apart. So those are unpacked here (decompressed, or the UKI's
//! `.linux` section extracted) into a sealed memfd, and the UKI's `.initrd`
//! and `.cmdline` are kept for the load.

use std::borrow::Cow;
use std::fs::File;
use std::path::{Path, PathBuf};

use crate::diagnose::ImageHints;
use crate::image::bzimage::{SetupHeader, XLF_KERNEL_64};
use crate::image::{self, arm64, uki, Format};
use crate::input_file::{Bytes, Input, OpenError};

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("cannot open kernel {path}: {source}; check the path")]
    Open {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("kernel {path} is a directory; give the kernel image file (e.g. /boot/vmlinuz-lts)")]
    Directory { path: PathBuf },
    #[error("kernel {path} is empty (0 bytes): it was cut short, e.g. by a full /boot; reinstall the kernel package or give another kernel image")]
    Empty { path: PathBuf },
    #[error("kernel {path} is a FIFO with nothing writing to it; give the kernel image file, or start the writer first")]
    EmptyFifo { path: PathBuf },
    #[error("cannot read kernel {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("kernel {path}: {source}; {advice}")]
    Image {
        path: PathBuf,
        source: image::Error,
        advice: &'static str,
    },
    #[error("kernel {path} is an initramfs, not a kernel; pass it with --initrd and give the kernel image as the argument")]
    IsInitramfs { path: PathBuf },
    #[error("cannot stage the unpacked kernel from {path}: {source}")]
    Stage {
        path: PathBuf,
        source: crate::initrd::Error,
    },
}

pub type Result<T> = std::result::Result<T, Error>;

/// What a unified kernel image brings besides its kernel.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct UkiParts {
    pub initrd: Option<Vec<u8>>,
    pub cmdline: Option<String>,
    pub uname: Option<String>,
}

/// A kernel image file, open and read.
#[derive(Debug)]
pub struct KernelFile {
    pub path: PathBuf,
    /// The format of the file as given (`bzimage`, `uki`, `zboot`…).
    pub format: &'static str,
    /// Read-only descriptor for `kexec_file_load`: the file itself, or a
    /// sealed memfd holding the unpacked kernel.
    pub file: File,
    /// The kernel `file` holds, mapped when it is the file itself.
    pub bytes: Bytes,
    /// How `bytes` was obtained from the file, when it is not the file.
    pub unpacked: Option<String>,
    /// The x86 setup header, when the kernel is a bzImage.
    pub setup: Option<SetupHeader>,
    pub uki: Option<UkiParts>,
    /// The architecture the kernel is built for (`uname -m` spelling), when known.
    pub arch: Option<String>,
}

fn format_name(f: &Format) -> &'static str {
    match f {
        Format::Bzimage { .. } => "bzimage",
        Format::Vmlinux => "vmlinux",
        Format::Arm64Image { .. } => "arm64_image",
        Format::Arm64Compressed { .. } => "arm64_compressed",
        Format::Zboot => "zboot",
        Format::Uki => "uki",
        Format::Initramfs { .. } => "initramfs",
        Format::Unknown(_) => "unknown",
    }
}

impl KernelFile {
    pub fn open(path: &Path) -> Result<Self> {
        let input = Input::open(path).map_err(|e| match e {
            OpenError::Directory => Error::Directory {
                path: path.to_owned(),
            },
            OpenError::Io(source) => Error::Open {
                path: path.to_owned(),
                source,
            },
        })?;
        let bytes = input.bytes().map_err(|source| Error::Read {
            path: path.to_owned(),
            source,
        })?;
        if bytes.is_empty() {
            return Err(if input.is_fifo() {
                Error::EmptyFifo {
                    path: path.to_owned(),
                }
            } else {
                Error::Empty {
                    path: path.to_owned(),
                }
            });
        }
        let img = |source: image::Error| {
            let advice = source.advice();
            Error::Image {
                path: path.to_owned(),
                source,
                advice,
            }
        };
        let format = image::detect(&bytes);
        let mut uki_parts = None;
        let mut unpacked: Option<String> = None;
        let kernel: Cow<'_, [u8]> = match &format {
            Format::Unknown(_) => {
                // Let the library say what the file looks like.
                let source = image::inspect_bytes(&bytes)
                    .err()
                    .unwrap_or(image::Error::Empty);
                return Err(Error::Image {
                    path: path.to_owned(),
                    source,
                    advice: "give the kernel image instead (a bzImage, vmlinux, arm64 Image/Image.gz, zboot or UKI, \
                             such as /boot/vmlinuz-lts)",
                });
            }
            Format::Initramfs { .. } => {
                return Err(Error::IsInitramfs {
                    path: path.to_owned(),
                })
            }
            Format::Uki => {
                let u = uki::parse(&bytes).map_err(|e| img(e.into()))?;
                let linux = bytes.get(u.linux.range()).unwrap_or_default();
                let initrd = u
                    .initrd
                    .and_then(|r| bytes.get(r.range()))
                    .map(<[u8]>::to_vec);
                uki_parts = Some(UkiParts {
                    initrd,
                    cmdline: u.cmdline.clone(),
                    uname: u.uname.clone(),
                });
                let inner = arm64::decompress(linux).map_err(|e| img(e.into()))?;
                unpacked = Some(match inner {
                    Cow::Owned(_) => "the decompressed .linux section of this UKI".into(),
                    Cow::Borrowed(_) => "the .linux section of this UKI".into(),
                });
                Cow::Owned(inner.into_owned())
            }
            Format::Arm64Compressed { .. } | Format::Zboot => {
                let inner = arm64::decompress(&bytes).map_err(|e| img(e.into()))?;
                unpacked = Some("the decompressed arm64 Image".into());
                Cow::Owned(inner.into_owned())
            }
            _ => Cow::Borrowed(&bytes[..]),
        };
        // The kernel is usually the file itself: keep its mapping. The kernel
        // reads only regular files, so anything else (a pipe) is staged, from
        // the bytes already read.
        let stage = |k: &[u8]| {
            crate::initrd::sealed_memfd("kexec-kernel", k).map_err(|source| Error::Stage {
                path: path.to_owned(),
                source,
            })
        };
        let unpacked_kernel = match kernel {
            Cow::Borrowed(_) => None,
            Cow::Owned(k) => Some(k),
        };
        let (file, kernel) = match unpacked_kernel {
            None if input.is_regular() => (input.file, bytes),
            None => (stage(&bytes)?, bytes),
            Some(k) => (stage(&k)?, Bytes::from(k)),
        };
        // Validate the kernel proper now, so a truncated or corrupt file is a
        // one-line error naming it instead of an errno from the kernel.
        let arch = match image::detect(&kernel) {
            Format::Bzimage { .. } => {
                crate::image::bzimage::BzImage::parse(&kernel).map_err(|e| img(e.into()))?;
                // A bzImage boots on any x86 machine (old ones have no
                // xloadflags to tell 32 from 64 bits).
                Some("x86".to_string())
            }
            Format::Vmlinux => Some(
                crate::image::elf::parse(&kernel)
                    .map_err(|e| img(e.into()))?
                    .machine,
            ),
            Format::Arm64Image { .. } => Some("aarch64".to_string()),
            _ => None,
        };
        let setup = SetupHeader::parse(&kernel).ok();
        Ok(KernelFile {
            path: path.to_owned(),
            format: format_name(&format),
            file,
            bytes: kernel,
            unpacked,
            setup,
            uki: uki_parts,
            arch,
        })
    }

    /// The kernel's version string (`uname -r` of the kernel it boots), from
    /// the bzImage's `kernel_version` pointer (offset + 0x200), or a UKI's `.uname`.
    pub fn version(&self) -> Option<String> {
        if let Some(v) = self.uki.as_ref().and_then(|u| u.uname.clone()) {
            return Some(v);
        }
        let h = self.setup.as_ref()?;
        if h.kernel_version_offset == 0 {
            return None;
        }
        let start = h.kernel_version_offset as usize + 0x200;
        let tail = self.bytes.get(start..)?;
        let end = tail.iter().take(256).position(|b| *b == 0)?;
        let text = std::str::from_utf8(&tail[..end]).ok()?;
        text.split_whitespace().next().map(str::to_string)
    }

    /// What the file is, in words.
    pub fn kind(&self) -> String {
        let inner = match &self.setup {
            Some(h) => format!(
                "an x86 bzImage (boot protocol {}.{:02})",
                h.version >> 8,
                h.version & 0xff
            ),
            None if self.bytes.starts_with(b"\x7fELF") => {
                "an ELF vmlinux, not a bzImage".to_string()
            }
            None if arm64::has_magic(&self.bytes) => "an arm64 Image".to_string(),
            None => format!("a {} image", self.format),
        };
        match &self.unpacked {
            Some(how) => format!("{inner}, {how}"),
            None => inner,
        }
    }

    pub fn hints(&self) -> ImageHints {
        ImageHints {
            path: Some(self.path.display().to_string()),
            kind: Some(self.kind()),
            is_bzimage: Some(self.setup.is_some()),
            kernel_64: self.setup.as_ref().map(|h| h.xloadflag(XLF_KERNEL_64)),
            kernel_len: Some(self.bytes.len() as u64),
            initrd_len: None,
            cmdline_len: 0,
        }
    }

    /// Whether a kernel built for `self.arch` can run on a machine whose
    /// `uname -m` is `machine` (unknown counts as yes: the kernel decides).
    pub fn runs_on(&self, machine: &str) -> bool {
        fn family(a: &str) -> &str {
            match a {
                "x86" | "x86_64" | "i386" | "i486" | "i586" | "i686" => "x86",
                "aarch64" | "arm64" => "arm64",
                other => other,
            }
        }
        self.arch
            .as_deref()
            .map_or(true, |a| family(a) == family(machine))
    }

    /// The command-line capacity this kernel declares, when it is a bzImage.
    pub fn cmdline_capacity(&self, crash: bool) -> Option<(usize, String)> {
        self.setup.as_ref().map(|h| {
            crate::cmdline::bzimage_capacity(
                &self.path.display().to_string(),
                h.cmdline_size,
                crash,
            )
        })
    }
}

/// A minimal bzImage-shaped file with a version string.
#[cfg(test)]
pub(crate) fn tiny_bzimage(version: &str) -> Vec<u8> {
    use crate::image::bzimage::HDRS_MAGIC;
    let mut b = vec![0u8; 0x1000];
    b[0x1f1] = 3;
    b[0x1fe..0x200].copy_from_slice(&0xaa55u16.to_le_bytes());
    b[0x202..0x206].copy_from_slice(&HDRS_MAGIC.to_le_bytes());
    b[0x206..0x208].copy_from_slice(&0x020fu16.to_le_bytes());
    b[0x20e..0x210].copy_from_slice(&0x0400u16.to_le_bytes());
    b[0x236..0x238].copy_from_slice(&XLF_KERNEL_64.to_le_bytes());
    b[0x238..0x23c].copy_from_slice(&2047u32.to_le_bytes());
    let v = format!("{version} (builder@host) #1 SMP\0");
    b[0x600..0x600 + v.len()].copy_from_slice(v.as_bytes());
    b
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_version_and_limits_of_a_bzimage() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("vmlinuz-lts");
        std::fs::write(&p, tiny_bzimage("6.6.58-0-lts")).unwrap();
        let k = KernelFile::open(&p).unwrap();
        assert_eq!(k.version().as_deref(), Some("6.6.58-0-lts"));
        assert_eq!(k.cmdline_capacity(false).unwrap().0, 2047);
        assert_eq!(k.hints().kernel_64, Some(true));
        assert!(k.kind().contains("2.15"));
    }

    #[test]
    fn a_piped_kernel_is_staged_for_kexec_file_load() {
        use std::os::fd::AsRawFd;
        let kernel = tiny_bzimage("6.6.58-0-lts");
        let (r, mut w) = std::io::pipe().unwrap();
        std::io::Write::write_all(&mut w, &kernel).unwrap();
        drop(w);
        let k = KernelFile::open(Path::new(&format!("/proc/self/fd/{}", r.as_raw_fd()))).unwrap();
        assert_eq!(&*k.bytes, &kernel[..]);
        assert!(
            k.file.metadata().unwrap().is_file(),
            "a memfd, not the pipe"
        );
        let mut staged = Vec::new();
        std::io::Read::read_to_end(&mut &k.file, &mut staged).unwrap();
        assert_eq!(staged, kernel);
    }

    #[test]
    fn bad_files_are_named_errors() {
        let dir = tempfile::tempdir().unwrap();
        let empty = dir.path().join("empty");
        std::fs::write(&empty, b"").unwrap();
        assert!(matches!(KernelFile::open(&empty), Err(Error::Empty { .. })));
        assert!(matches!(
            KernelFile::open(dir.path()),
            Err(Error::Directory { .. })
        ));
        let err = KernelFile::open(&dir.path().join("missing")).unwrap_err();
        assert!(err.to_string().contains("missing"), "{err}");
        let png = dir.path().join("picture.png");
        std::fs::write(&png, b"\x89PNG\r\n\x1a\n").unwrap();
        let err = KernelFile::open(&png).unwrap_err();
        assert!(
            err.to_string().contains("picture.png") && err.to_string().contains("PNG"),
            "{err}"
        );
        let cpio = dir.path().join("initramfs");
        std::fs::write(&cpio, b"070701000000000000").unwrap();
        assert!(matches!(
            KernelFile::open(&cpio),
            Err(Error::IsInitramfs { .. })
        ));
    }

    #[test]
    fn truncated_and_foreign_kernels_are_identified() {
        let dir = tempfile::tempdir().unwrap();
        let fixture = |name: &str| {
            std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("fixtures")
                .join(name)
        };
        let err = KernelFile::open(&fixture("bzimage-truncated.bin")).unwrap_err();
        assert!(err.to_string().contains("bzimage-truncated.bin"), "{err}");
        let k = KernelFile::open(&fixture("arm64-Image.bin")).unwrap();
        assert_eq!(k.arch.as_deref(), Some("aarch64"));
        let k = KernelFile::open(&fixture("vmlinux-x86_64.elf")).unwrap();
        assert_eq!(k.arch.as_deref(), Some("x86_64"));
        assert!(k.runs_on("x86_64") && !k.runs_on("aarch64"));
        let p = dir.path().join("vmlinuz");
        std::fs::write(&p, tiny_bzimage("6.6.0")).unwrap();
        let k = KernelFile::open(&p).unwrap();
        assert!(k.runs_on("x86_64") && k.runs_on("i686") && !k.runs_on("aarch64"));
    }

    #[test]
    fn uki_yields_its_linux_initrd_cmdline_and_uname() {
        let dir = tempfile::tempdir().unwrap();
        let kernel = tiny_bzimage("6.6.58-0-lts");
        let u = crate::image::uki::build(&[
            (".linux", &kernel),
            (".initrd", b"UKI-INITRD"),
            (".cmdline", b"root=/dev/vda console=ttyS0\n\0"),
            (".uname", b"6.6.58-0-lts"),
        ]);
        let p = dir.path().join("linux.efi");
        std::fs::write(&p, u).unwrap();
        let k = KernelFile::open(&p).unwrap();
        assert_eq!(k.format, "uki");
        assert_eq!(&*k.bytes, &kernel[..]);
        let parts = k.uki.as_ref().unwrap();
        assert_eq!(parts.initrd.as_deref(), Some(&b"UKI-INITRD"[..]));
        assert_eq!(
            parts.cmdline.as_deref(),
            Some("root=/dev/vda console=ttyS0")
        );
        assert_eq!(k.version().as_deref(), Some("6.6.58-0-lts"));
        assert!(k.kind().contains("UKI"), "{}", k.kind());
        // The descriptor holds the extracted kernel, not the UKI.
        let mut staged = Vec::new();
        std::io::Read::read_to_end(&mut &k.file, &mut staged).unwrap();
        assert_eq!(staged, kernel);
    }

    #[test]
    fn compressed_arm64_images_are_decompressed() {
        use std::io::Write;
        let dir = tempfile::tempdir().unwrap();
        let image = crate::image::arm64::build_image(0, 0x20000, 0xa, &[7u8; 4096]);
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        gz.write_all(&image).unwrap();
        let p = dir.path().join("Image.gz");
        std::fs::write(&p, gz.finish().unwrap()).unwrap();
        let k = KernelFile::open(&p).unwrap();
        assert_eq!(k.format, "arm64_compressed");
        assert_eq!(&*k.bytes, &image[..]);
        assert!(
            k.kind().starts_with("an arm64 Image, the decompressed"),
            "{}",
            k.kind()
        );
        let mut staged = Vec::new();
        std::io::Read::read_to_end(&mut &k.file, &mut staged).unwrap();
        assert_eq!(staged, image);
    }
}
