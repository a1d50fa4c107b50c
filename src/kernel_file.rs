//! The kernel file named on the command line: read once, identified, and
//! summarised for command-line limits, diagnosis and the status record.

use std::fs::File;
use std::path::{Path, PathBuf};

use crate::diagnose::ImageHints;
use crate::image::bzimage::{SetupHeader, XLF_KERNEL_64};

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("cannot open kernel {path}: {source}; check the path")]
    Open {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("kernel {path} is a directory; give the kernel image file (e.g. /boot/vmlinuz-lts)")]
    Directory { path: PathBuf },
    #[error("kernel {path} is empty; the file is truncated or not a kernel")]
    Empty { path: PathBuf },
    #[error("cannot read kernel {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
}

pub type Result<T> = std::result::Result<T, Error>;

/// A kernel image file, open and read.
#[derive(Debug)]
pub struct KernelFile {
    pub path: PathBuf,
    /// Open read-only: the descriptor `kexec_file_load` is given.
    pub file: File,
    pub bytes: Vec<u8>,
    /// The x86 setup header, when the file is a bzImage.
    pub setup: Option<SetupHeader>,
}

impl KernelFile {
    pub fn open(path: &Path) -> Result<Self> {
        let file = File::open(path).map_err(|source| Error::Open {
            path: path.to_owned(),
            source,
        })?;
        let meta = file.metadata().map_err(|source| Error::Read {
            path: path.to_owned(),
            source,
        })?;
        if meta.is_dir() {
            return Err(Error::Directory {
                path: path.to_owned(),
            });
        }
        let bytes = std::fs::read(path).map_err(|source| Error::Read {
            path: path.to_owned(),
            source,
        })?;
        if bytes.is_empty() {
            return Err(Error::Empty {
                path: path.to_owned(),
            });
        }
        let setup = SetupHeader::parse(&bytes).ok();
        Ok(KernelFile {
            path: path.to_owned(),
            file,
            bytes,
            setup,
        })
    }

    /// The kernel's version string (`uname -r` of the kernel it boots), from
    /// the bzImage's `kernel_version` pointer (offset + 0x200).
    pub fn version(&self) -> Option<String> {
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
        match &self.setup {
            Some(h) => format!(
                "an x86 bzImage (boot protocol {}.{:02})",
                h.version >> 8,
                h.version & 0xff
            ),
            None if self.bytes.starts_with(b"\x7fELF") => "an ELF file, not a bzImage".to_string(),
            None if self.bytes.starts_with(&[0x1f, 0x8b]) => "gzip-compressed data".to_string(),
            None if self.bytes.starts_with(b"MZ") => {
                "a PE/EFI executable without an x86 setup header".to_string()
            }
            None => "not a recognised kernel image".to_string(),
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

    /// The command-line capacity this kernel declares, when it is a bzImage.
    pub fn cmdline_capacity(&self, crash: bool) -> Option<(usize, String)> {
        self.setup
            .as_ref()
            .map(|h| crate::cmdline::bzimage_capacity(h.cmdline_size, crash))
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
        let elf = dir.path().join("vmlinux");
        std::fs::write(&elf, b"\x7fELF\x02\x01\x01").unwrap();
        let k = KernelFile::open(&elf).unwrap();
        assert_eq!(k.hints().is_bzimage, Some(false));
        assert!(k.kind().contains("ELF"));
        assert_eq!(k.version(), None);
    }
}
