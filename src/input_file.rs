//! Opening the files a load is given (the kernel, the initrds) and getting
//! at their bytes.
//!
//! Two things shape it. A load is dominated by moving bytes: the kernel and
//! initrd are tens of megabytes, and every copy is a page fault plus a
//! zero-fill per page in fresh anonymous memory, which small machines and
//! emulators feel. So a regular file is *mapped*, not read: the mapping
//! shares the page cache's pages, parsing a header faults in only the pages
//! it reads (`kexec_file_load` never needs the kernel's payload in our
//! memory), and the classic `kexec_load` path points its segments straight
//! into the mapping, so the only copy is the kernel's own, as with
//! kexec-tools' buffers. Non-regular files (a pipe from process
//! substitution, a character device) are read instead.
//!
//! And opening must not hang: `open()` of a FIFO nobody writes to blocks
//! forever, so the file is opened non-blocking and switched back to blocking
//! once it is open.
//!
//! A mapping sees later changes to the file, and a file truncated while
//! mapped faults on access. Package managers (apk, dpkg) install kernels by
//! writing a new file and renaming it over the old one, which leaves the
//! mapped inode untouched; editing a kernel in place during a load is the
//! one case left, and it is as wrong with a read.

use std::fs::{File, Metadata, OpenOptions};
use std::io::Read;
use std::ops::Deref;
use std::os::unix::fs::{FileTypeExt, OpenOptionsExt};
use std::path::Path;

use nix::fcntl::{fcntl, FcntlArg, OFlag};

/// Why a path could not be opened as an input file.
#[derive(Debug)]
pub enum OpenError {
    /// `open()` or `fstat()` failed.
    Io(std::io::Error),
    /// The path is a directory.
    Directory,
}

/// An input file, open for reading, with what `fstat` said about it.
#[derive(Debug)]
pub struct Input {
    pub file: File,
    pub meta: Metadata,
}

impl Input {
    /// Opens `path` for reading without blocking on a FIFO, refusing directories.
    pub fn open(path: &Path) -> Result<Input, OpenError> {
        let file = OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_NONBLOCK | libc::O_CLOEXEC)
            .open(path)
            .map_err(OpenError::Io)?;
        let meta = file.metadata().map_err(OpenError::Io)?;
        if meta.is_dir() {
            return Err(OpenError::Directory);
        }
        // Reads of a pipe should wait for its writer, as any reader would.
        if !meta.is_file() {
            fcntl(
                std::os::fd::AsRawFd::as_raw_fd(&file),
                FcntlArg::F_SETFL(OFlag::empty()),
            )
            .map_err(|e| OpenError::Io(e.into()))?;
        }
        Ok(Input { file, meta })
    }

    /// Whether the kernel can take this file as it is: `kexec_file_load`
    /// reads only regular files.
    pub fn is_regular(&self) -> bool {
        self.meta.is_file()
    }

    /// A FIFO (named pipe); one with no writer reads as empty.
    pub fn is_fifo(&self) -> bool {
        self.meta.file_type().is_fifo()
    }

    /// The file's bytes: mapped when it is a non-empty regular file, read otherwise.
    pub fn bytes(&self) -> std::io::Result<Bytes> {
        Bytes::of(&self.file, &self.meta)
    }
}

/// The bytes of a file: a read-only mapping of it, or a buffer when it could
/// not be mapped (pipes, empty files) or was produced in memory (a
/// decompressed kernel).
pub struct Bytes(Inner);

enum Inner {
    Mapped(memmap2::Mmap),
    Owned(Vec<u8>),
}

impl Bytes {
    /// Maps a non-empty regular file; reads anything else from its current
    /// position.
    pub fn of(file: &File, meta: &Metadata) -> std::io::Result<Bytes> {
        if meta.is_file() && meta.len() > 0 {
            // SAFETY: the mapping is read-only and private to this process;
            // see the module documentation for what a concurrent truncation
            // of the file would do.
            if let Ok(map) = unsafe { memmap2::Mmap::map(file) } {
                return Ok(Bytes(Inner::Mapped(map)));
            }
        }
        let mut data = Vec::new();
        (&mut &*file).read_to_end(&mut data)?;
        Ok(Bytes(Inner::Owned(data)))
    }

    /// Whether the bytes are the file's own pages rather than a copy.
    pub fn is_mapped(&self) -> bool {
        matches!(self.0, Inner::Mapped(_))
    }
}

impl From<Vec<u8>> for Bytes {
    fn from(v: Vec<u8>) -> Self {
        Bytes(Inner::Owned(v))
    }
}

impl Deref for Bytes {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        match &self.0 {
            Inner::Mapped(m) => m,
            Inner::Owned(v) => v,
        }
    }
}

impl AsRef<[u8]> for Bytes {
    fn as_ref(&self) -> &[u8] {
        self
    }
}

impl std::fmt::Debug for Bytes {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let how = if self.is_mapped() { "mapped" } else { "owned" };
        write!(f, "Bytes({how}, {} bytes)", self.len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn regular_files_are_mapped_and_pipes_are_read() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("f");
        std::fs::write(&p, b"kernel bytes").unwrap();
        let input = Input::open(&p).unwrap();
        assert!(input.is_regular());
        let b = input.bytes().unwrap();
        assert!(b.is_mapped());
        assert_eq!(&*b, b"kernel bytes");

        let empty = dir.path().join("empty");
        std::fs::write(&empty, b"").unwrap();
        let b = Input::open(&empty).unwrap().bytes().unwrap();
        assert!(!b.is_mapped() && b.is_empty());

        let (r, mut w) = std::io::pipe().unwrap();
        std::io::Write::write_all(&mut w, b"piped").unwrap();
        drop(w);
        let fd = std::os::fd::AsRawFd::as_raw_fd(&r);
        let input = Input::open(Path::new(&format!("/proc/self/fd/{fd}"))).unwrap();
        assert!(!input.is_regular());
        assert_eq!(&*input.bytes().unwrap(), b"piped");
    }

    #[test]
    fn a_fifo_without_a_writer_does_not_block() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("fifo");
        nix::unistd::mkfifo(&p, nix::sys::stat::Mode::from_bits_truncate(0o600)).unwrap();
        let input = Input::open(&p).unwrap();
        assert!(input.is_fifo());
        assert!(input.bytes().unwrap().is_empty());
    }

    #[test]
    fn directories_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        assert!(matches!(Input::open(dir.path()), Err(OpenError::Directory)));
    }
}
