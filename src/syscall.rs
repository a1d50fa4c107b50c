//! The kexec system calls and the other kernel-facing side effects of
//! `kexec` (sync, bringing interfaces down, `reboot`), behind one trait.
//!
//! Everything the CLI does to the running system goes through [`KexecSys`],
//! so its decision logic is unit-tested over [`fake::FakeKexec`] without
//! root or a kexec-capable kernel, and [`LinuxKexec`] stays a thin, obvious
//! mapping onto the real syscalls.

use std::ffi::CString;
use std::os::fd::{AsRawFd, BorrowedFd};
use std::path::{Path, PathBuf};

use nix::errno::Errno;

/// One piece of memory for `kexec_load`: `buf` is copied to physical address
/// `mem`, and the rest of `memsz` is zero-filled by the kernel. `buf`
/// borrows when it can: the kernel and initrd segments point into the
/// files' mappings, so the kernel's copy is the only one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Segment<'a> {
    pub buf: std::borrow::Cow<'a, [u8]>,
    pub mem: u64,
    pub memsz: u64,
}

/// `kexec_load` flags (`include/uapi/linux/kexec.h`).
pub const KEXEC_ON_CRASH: u64 = 0x0000_0001;
pub const KEXEC_PRESERVE_CONTEXT: u64 = 0x0000_0002;
/// The architecture field of `kexec_load`'s flags (`KEXEC_ARCH_*` is the ELF
/// machine number shifted left by 16); 0 means "the kernel's own".
pub const KEXEC_ARCH_DEFAULT: u64 = 0;
pub const KEXEC_ARCH_X86_64: u64 = 62 << 16;
pub const KEXEC_ARCH_AARCH64: u64 = 183 << 16;

/// `kexec_file_load` flags.
pub const KEXEC_FILE_UNLOAD: u32 = 0x0000_0001;
pub const KEXEC_FILE_ON_CRASH: u32 = 0x0000_0002;
pub const KEXEC_FILE_NO_INITRAMFS: u32 = 0x0000_0004;

/// Which of the kernel's two image slots an operation is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Target {
    /// The image `kexec -e` (or `reboot(LINUX_REBOOT_CMD_KEXEC)`) boots.
    Normal,
    /// The capture kernel booted on panic (`-p`).
    Crash,
}

impl Target {
    pub fn file_flag(self) -> u32 {
        match self {
            Target::Normal => 0,
            Target::Crash => KEXEC_FILE_ON_CRASH,
        }
    }
    pub fn load_flag(self) -> u64 {
        match self {
            Target::Normal => 0,
            Target::Crash => KEXEC_ON_CRASH,
        }
    }
}

/// What `/sys/kernel/kexec_*` says. `None` means the file was missing or
/// unreadable, which itself is a fact (a kernel without kexec has none).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize)]
pub struct KexecState {
    pub loaded: Option<bool>,
    pub crash_loaded: Option<bool>,
    /// Bytes reserved for a crash kernel (`crashkernel=`).
    pub crash_size: Option<u64>,
}

impl KexecState {
    pub fn is_loaded(&self, target: Target) -> Option<bool> {
        match target {
            Target::Normal => self.loaded,
            Target::Crash => self.crash_loaded,
        }
    }
}

/// Why bringing a network interface down failed.
#[derive(Debug, thiserror::Error)]
pub enum IfdownError {
    #[error("cannot list network interfaces: {0}")]
    List(std::io::Error),
    #[error("cannot open a socket to bring interfaces down: {0}")]
    Socket(Errno),
    #[error("cannot bring network interface {name} down: {errno}")]
    Interface { name: String, errno: Errno },
}

/// The kernel operations `kexec` performs. Every method maps to one syscall
/// (or, for `ifdown`/`shutdown_reboot`, one well-defined system action) and
/// reports the kernel's errno unchanged, so diagnosis sees what the kernel said.
pub trait KexecSys {
    /// `kexec_file_load(kernel, initrd, cmdline, flags)`. `cmdline` is
    /// without the terminating NUL; empty means "no command line". Without an
    /// initrd the implementation adds `KEXEC_FILE_NO_INITRAMFS`.
    fn kexec_file_load(
        &mut self,
        kernel: BorrowedFd<'_>,
        initrd: Option<BorrowedFd<'_>>,
        cmdline: &[u8],
        flags: u32,
    ) -> Result<(), Errno>;

    /// `kexec_file_load(-1, -1, 0, NULL, KEXEC_FILE_UNLOAD | target)`.
    fn kexec_file_unload(&mut self, target: Target) -> Result<(), Errno>;

    /// `kexec_load(entry, segments, flags)`; with no segments, an unload.
    fn kexec_load(&mut self, entry: u64, segments: &[Segment<'_>], flags: u64)
        -> Result<(), Errno>;

    /// `reboot(LINUX_REBOOT_CMD_KEXEC)`. On a real kernel a success never
    /// returns; `Ok` exists for the fake.
    fn reboot_kexec(&mut self) -> Result<(), Errno>;

    /// `sync()`: flush every filesystem before the jump.
    fn sync(&mut self);

    /// Brings every non-loopback interface that is up down (`SIOCSIFFLAGS`)
    /// and returns the names it brought down, as kexec-tools does before `-e`
    /// so that DMA into old buffers stops before the new kernel owns memory.
    fn ifdown(&mut self) -> Result<Vec<String>, IfdownError>;

    /// Runs `shutdown -r now` in place of this process (kexec-tools' plain
    /// `kexec KERNEL`). Returns only if no shutdown could be executed.
    fn shutdown_reboot(&mut self) -> std::io::Error;

    /// Reads `/sys/kernel/kexec_loaded`, `kexec_crash_loaded`, `kexec_crash_size`.
    fn state(&self) -> KexecState;
}

/// Reads the three kexec files under `<root>/sys/kernel/`.
pub fn read_state(root: &Path) -> KexecState {
    let read = |name: &str| -> Option<u64> {
        let text = std::fs::read_to_string(root.join("sys/kernel").join(name)).ok()?;
        text.trim().parse::<u64>().ok()
    };
    KexecState {
        loaded: read("kexec_loaded").map(|v| v != 0),
        crash_loaded: read("kexec_crash_loaded").map(|v| v != 0),
        crash_size: read("kexec_crash_size"),
    }
}

/// The real implementation over Linux syscalls. `root` is where `/sys` is
/// looked up (`/` in production) so the state reads can be pointed elsewhere.
#[derive(Debug, Clone)]
pub struct LinuxKexec {
    pub root: PathBuf,
}

impl Default for LinuxKexec {
    fn default() -> Self {
        LinuxKexec {
            root: PathBuf::from("/"),
        }
    }
}

/// `struct kexec_segment` as the kernel reads it.
#[repr(C)]
struct RawSegment {
    buf: *const libc::c_void,
    bufsz: libc::size_t,
    mem: libc::c_ulong,
    memsz: libc::size_t,
}

impl KexecSys for LinuxKexec {
    fn kexec_file_load(
        &mut self,
        kernel: BorrowedFd<'_>,
        initrd: Option<BorrowedFd<'_>>,
        cmdline: &[u8],
        flags: u32,
    ) -> Result<(), Errno> {
        // The kernel wants the length including the NUL, and rejects a
        // buffer whose last byte is not NUL; an interior NUL is caught by
        // the command-line builder long before this point.
        let cmd = if cmdline.is_empty() {
            None
        } else {
            Some(CString::new(cmdline).map_err(|_| Errno::EINVAL)?)
        };
        let (ptr, len) = match &cmd {
            Some(c) => (c.as_ptr(), c.as_bytes_with_nul().len()),
            None => (std::ptr::null(), 0),
        };
        let (initrd_fd, flags) = match initrd {
            Some(fd) => (fd.as_raw_fd(), flags),
            None => (-1, flags | KEXEC_FILE_NO_INITRAMFS),
        };
        // SAFETY: the fds are borrowed for the call; `ptr`/`len` describe a
        // live NUL-terminated buffer (or are NULL/0).
        let rc = unsafe {
            libc::syscall(
                libc::SYS_kexec_file_load,
                kernel.as_raw_fd() as libc::c_long,
                initrd_fd as libc::c_long,
                len as libc::c_ulong,
                ptr,
                flags as libc::c_ulong,
            )
        };
        Errno::result(rc).map(drop)
    }

    fn kexec_file_unload(&mut self, target: Target) -> Result<(), Errno> {
        let flags = KEXEC_FILE_UNLOAD | target.file_flag();
        // SAFETY: an unload passes no buffers.
        let rc = unsafe {
            libc::syscall(
                libc::SYS_kexec_file_load,
                -1 as libc::c_long,
                -1 as libc::c_long,
                0 as libc::c_ulong,
                std::ptr::null::<libc::c_char>(),
                flags as libc::c_ulong,
            )
        };
        Errno::result(rc).map(drop)
    }

    fn kexec_load(
        &mut self,
        entry: u64,
        segments: &[Segment<'_>],
        flags: u64,
    ) -> Result<(), Errno> {
        let raw: Vec<RawSegment> = segments
            .iter()
            .map(|s| RawSegment {
                buf: s.buf.as_ptr().cast(),
                bufsz: s.buf.len(),
                mem: s.mem as libc::c_ulong,
                memsz: s.memsz as libc::size_t,
            })
            .collect();
        let ptr = if raw.is_empty() {
            std::ptr::null()
        } else {
            raw.as_ptr()
        };
        // SAFETY: `raw` and every `buf` it points into outlive the call.
        let rc = unsafe {
            libc::syscall(
                libc::SYS_kexec_load,
                entry as libc::c_ulong,
                raw.len() as libc::c_ulong,
                ptr,
                flags as libc::c_ulong,
            )
        };
        Errno::result(rc).map(drop)
    }

    fn reboot_kexec(&mut self) -> Result<(), Errno> {
        match nix::sys::reboot::reboot(nix::sys::reboot::RebootMode::RB_KEXEC) {
            Ok(never) => match never {},
            Err(e) => Err(e),
        }
    }

    fn sync(&mut self) {
        nix::unistd::sync();
    }

    fn ifdown(&mut self) -> Result<Vec<String>, IfdownError> {
        crate::ifdown::all_interfaces_down(&self.root)
    }

    fn shutdown_reboot(&mut self) -> std::io::Error {
        use std::os::unix::process::CommandExt;
        let mut last = std::io::Error::from(std::io::ErrorKind::NotFound);
        for path in [
            "/sbin/shutdown",
            "/etc/shutdown",
            "/bin/shutdown",
            "/usr/sbin/shutdown",
        ] {
            last = std::process::Command::new(path).args(["-r", "now"]).exec();
        }
        last
    }

    fn state(&self) -> KexecState {
        read_state(&self.root)
    }
}

pub mod fake {
    //! A scripted stand-in for the kernel: records every call, answers with
    //! the errnos a test queues, and keeps `kexec_loaded` consistent with the
    //! loads and unloads it accepted, as the kernel would.

    use super::*;
    use std::collections::VecDeque;
    use std::io::{Read, Seek};

    /// One recorded call. File loads capture the bytes behind the fds so a
    /// test can check exactly what the kernel would have read.
    #[derive(Debug, Clone, PartialEq, Eq)]
    pub enum Call {
        FileLoad {
            kernel: Vec<u8>,
            initrd: Option<Vec<u8>>,
            cmdline: Vec<u8>,
            flags: u32,
        },
        FileUnload(Target),
        Load {
            entry: u64,
            segments: usize,
            flags: u64,
        },
        Reboot,
        Sync,
        Ifdown,
        Shutdown,
    }

    #[derive(Debug, Default)]
    pub struct FakeKexec {
        pub calls: Vec<Call>,
        pub state: KexecState,
        /// Answers for the next `kexec_file_load` calls (load or unload), in order; `Ok` when empty.
        pub file_load_errors: VecDeque<Errno>,
        /// Answers for the next `kexec_load` calls, in order.
        pub load_errors: VecDeque<Errno>,
        pub reboot_error: Option<Errno>,
        pub interfaces_up: Vec<String>,
    }

    impl FakeKexec {
        /// A kernel with kexec, nothing loaded, no crash reservation.
        pub fn new() -> Self {
            FakeKexec {
                state: KexecState {
                    loaded: Some(false),
                    crash_loaded: Some(false),
                    crash_size: Some(0),
                },
                ..Default::default()
            }
        }

        fn set_loaded(&mut self, target: Target, value: bool) {
            match target {
                Target::Normal => self.state.loaded = Some(value),
                Target::Crash => self.state.crash_loaded = Some(value),
            }
        }

        pub fn rebooted(&self) -> bool {
            self.calls.contains(&Call::Reboot)
        }
    }

    fn slurp(fd: BorrowedFd<'_>) -> Vec<u8> {
        let Ok(owned) = fd.try_clone_to_owned() else {
            return Vec::new();
        };
        let mut file = std::fs::File::from(owned);
        let mut out = Vec::new();
        // Read from the start without disturbing what the caller expects.
        let pos = file.stream_position().unwrap_or(0);
        let _ = file.rewind();
        let _ = file.read_to_end(&mut out);
        let _ = file.seek(std::io::SeekFrom::Start(pos));
        out
    }

    impl KexecSys for FakeKexec {
        fn kexec_file_load(
            &mut self,
            kernel: BorrowedFd<'_>,
            initrd: Option<BorrowedFd<'_>>,
            cmdline: &[u8],
            flags: u32,
        ) -> Result<(), Errno> {
            let flags = if initrd.is_none() {
                flags | KEXEC_FILE_NO_INITRAMFS
            } else {
                flags
            };
            self.calls.push(Call::FileLoad {
                kernel: slurp(kernel),
                initrd: initrd.map(slurp),
                cmdline: cmdline.to_vec(),
                flags,
            });
            if let Some(e) = self.file_load_errors.pop_front() {
                return Err(e);
            }
            let target = if flags & KEXEC_FILE_ON_CRASH != 0 {
                Target::Crash
            } else {
                Target::Normal
            };
            self.set_loaded(target, true);
            Ok(())
        }

        fn kexec_file_unload(&mut self, target: Target) -> Result<(), Errno> {
            self.calls.push(Call::FileUnload(target));
            if let Some(e) = self.file_load_errors.pop_front() {
                return Err(e);
            }
            self.set_loaded(target, false);
            Ok(())
        }

        fn kexec_load(
            &mut self,
            entry: u64,
            segments: &[Segment<'_>],
            flags: u64,
        ) -> Result<(), Errno> {
            self.calls.push(Call::Load {
                entry,
                segments: segments.len(),
                flags,
            });
            if let Some(e) = self.load_errors.pop_front() {
                return Err(e);
            }
            let target = if flags & KEXEC_ON_CRASH != 0 {
                Target::Crash
            } else {
                Target::Normal
            };
            self.set_loaded(target, !segments.is_empty());
            Ok(())
        }

        fn reboot_kexec(&mut self) -> Result<(), Errno> {
            self.calls.push(Call::Reboot);
            match self.reboot_error {
                Some(e) => Err(e),
                None => Ok(()),
            }
        }

        fn sync(&mut self) {
            self.calls.push(Call::Sync);
        }

        fn ifdown(&mut self) -> Result<Vec<String>, IfdownError> {
            self.calls.push(Call::Ifdown);
            Ok(std::mem::take(&mut self.interfaces_up))
        }

        fn shutdown_reboot(&mut self) -> std::io::Error {
            self.calls.push(Call::Shutdown);
            std::io::Error::other("fake shutdown")
        }

        fn state(&self) -> KexecState {
            self.state
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn state_reads_sysfs_files_under_root() {
        let dir = tempfile::tempdir().unwrap();
        let sk = dir.path().join("sys/kernel");
        std::fs::create_dir_all(&sk).unwrap();
        std::fs::write(sk.join("kexec_loaded"), "1\n").unwrap();
        std::fs::write(sk.join("kexec_crash_loaded"), "0\n").unwrap();
        std::fs::write(sk.join("kexec_crash_size"), "268435456\n").unwrap();
        let s = read_state(dir.path());
        assert_eq!(
            s,
            KexecState {
                loaded: Some(true),
                crash_loaded: Some(false),
                crash_size: Some(256 << 20)
            }
        );
        assert_eq!(s.is_loaded(Target::Normal), Some(true));
    }

    #[test]
    fn state_is_unknown_without_sysfs() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(read_state(dir.path()), KexecState::default());
    }
}
