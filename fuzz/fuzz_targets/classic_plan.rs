//! The classic `kexec_load` planner on a fixed fake machine: any kernel
//! bytes (and command line) give a plan or an error, never a panic, and a
//! plan's segments are sorted, page aligned and non-overlapping.
//!
//! Input: the kernel. Its last byte also picks the command line's length
//! (so lengths around `cmdline_size` are reached). Each input is planned
//! as a normal and as a crash kernel, with and without an initrd.
#![no_main]

use kexec::classic::{plan, Request};
use kexec_fuzz::fake_machine;
use libfuzzer_sys::fuzz_target;

const INITRD: &[u8] = &[0x5a; 5000];

fuzz_target!(|kernel: &[u8]| {
    let machine = fake_machine();
    let cmdline_len = kernel.last().map_or(0, |&b| usize::from(b) * 2);
    let cmdline = vec![b'x'; cmdline_len];
    for crash in [false, true] {
        for initrd in [None, Some(INITRD)] {
            let req = Request {
                kernel,
                initrd,
                cmdline: &cmdline,
                crash,
                no_checks: crash,
                console: (!crash).then_some(kexec::classic::SerialConsole {
                    port: 0x3f8,
                    baud: Some(9600),
                }),
            };
            match plan(&req, machine) {
                Ok(p) => {
                    let mut end = 0u64;
                    for s in &p.segments {
                        assert_eq!(s.mem % 4096, 0, "unaligned segment at {:#x}", s.mem);
                        assert!(
                            s.mem >= end,
                            "overlapping segments: {:?}",
                            p.segments
                                .iter()
                                .map(|s| (s.mem, s.memsz))
                                .collect::<Vec<_>>()
                        );
                        assert!(
                            s.buf.len() as u64 <= s.memsz,
                            "segment at {:#x} holds more than its memsz",
                            s.mem
                        );
                        end = s.mem + s.memsz;
                    }
                }
                Err(e) => {
                    let _ = e.to_string();
                }
            }
        }
    }
});
