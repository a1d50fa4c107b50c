//! Bringing network interfaces down before `kexec -e`, as kexec-tools does.
//!
//! A NIC left running keeps DMA-ing into buffers the old kernel gave it; after
//! the jump that memory belongs to the new kernel. Clearing `IFF_UP` makes the
//! drivers stop their queues first. Loopback is left alone (no DMA, and some
//! init systems still need it while shutting down).

use std::ffi::CStr;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::path::Path;

use nix::errno::Errno;

use crate::syscall::IfdownError;

/// Names of all interfaces, from `if_nameindex(3)` (works without `/sys`,
/// e.g. in a bare initramfs).
fn interface_names() -> Result<Vec<String>, IfdownError> {
    // SAFETY: if_nameindex returns a NULL-terminated array we free below.
    let list = unsafe { libc::if_nameindex() };
    if list.is_null() {
        return Err(IfdownError::List(std::io::Error::last_os_error()));
    }
    let mut names = Vec::new();
    let mut i = 0;
    loop {
        // SAFETY: the array ends with an entry whose index is 0.
        let entry = unsafe { &*list.add(i) };
        if entry.if_index == 0 || entry.if_name.is_null() {
            break;
        }
        // SAFETY: if_name is a NUL-terminated string owned by the list.
        names.push(
            unsafe { CStr::from_ptr(entry.if_name) }
                .to_string_lossy()
                .into_owned(),
        );
        i += 1;
    }
    // SAFETY: `list` came from if_nameindex and is freed once.
    unsafe { libc::if_freenameindex(list) };
    Ok(names)
}

fn ifreq_for(name: &str) -> Option<libc::ifreq> {
    let bytes = name.as_bytes();
    // SAFETY: ifreq is plain old data; all-zero is a valid value.
    let mut req: libc::ifreq = unsafe { std::mem::zeroed() };
    if bytes.len() >= req.ifr_name.len() {
        return None;
    }
    for (dst, src) in req.ifr_name.iter_mut().zip(bytes) {
        *dst = *src as libc::c_char;
    }
    Some(req)
}

/// Brings every up, non-loopback interface down; returns the names it changed.
/// `_root` is accepted for symmetry with the other system reads: interfaces
/// are a property of the network namespace, not of a file tree.
pub fn all_interfaces_down(_root: &Path) -> Result<Vec<String>, IfdownError> {
    // SAFETY: plain socket(2); the fd is owned right away.
    let raw = unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) };
    if raw < 0 {
        return Err(IfdownError::Socket(Errno::last()));
    }
    // SAFETY: `raw` is a fresh valid fd.
    let sock = unsafe { OwnedFd::from_raw_fd(raw) };
    let mut downed = Vec::new();
    for name in interface_names()? {
        let Some(mut req) = ifreq_for(&name) else {
            continue;
        };
        // SAFETY: SIOCGIFFLAGS fills ifr_flags of a valid ifreq.
        if unsafe { libc::ioctl(sock.as_raw_fd(), libc::SIOCGIFFLAGS, &mut req) } < 0 {
            // The interface vanished between listing and asking: nothing to stop.
            continue;
        }
        // SAFETY: after SIOCGIFFLAGS the union holds flags.
        let flags = unsafe { req.ifr_ifru.ifru_flags } as libc::c_int;
        if flags & libc::IFF_LOOPBACK != 0 || flags & libc::IFF_UP == 0 {
            continue;
        }
        req.ifr_ifru.ifru_flags = (flags & !libc::IFF_UP) as libc::c_short;
        // SAFETY: SIOCSIFFLAGS reads a valid ifreq.
        if unsafe { libc::ioctl(sock.as_raw_fd(), libc::SIOCSIFFLAGS, &req) } < 0 {
            return Err(IfdownError::Interface {
                name,
                errno: Errno::last(),
            });
        }
        downed.push(name);
    }
    Ok(downed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lists_interfaces_including_loopback() {
        let names = interface_names().unwrap();
        assert!(names.iter().any(|n| n == "lo"), "{names:?}");
    }

    #[test]
    fn overlong_names_are_skipped_not_truncated() {
        assert!(ifreq_for("a-name-far-too-long-for-ifreq").is_none());
        assert!(ifreq_for("eth0").is_some());
    }
}
