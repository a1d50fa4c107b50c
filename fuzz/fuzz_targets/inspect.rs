//! Format detection and `kexec::image::inspect_bytes` (what `kexec info`
//! runs on any file a user names): any bytes give a report or an error
//! whose message and advice can be printed, never a panic.
#![no_main]

use kexec::image::{self, Format};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let format = image::detect(data);
    let _ = format!("{format:?}");
    match image::inspect_bytes(data) {
        Ok(report) => {
            let _ = report.to_json();
            let _ = report.image.format_name();
        }
        Err(e) => {
            // The error is shown to users: it must render, on one line's worth.
            let _ = e.to_string();
            let _ = e.advice();
            assert!(
                !matches!(format, Format::Unknown(_))
                    || matches!(e, image::Error::Empty | image::Error::NotAKernel(_)),
                "unknown formats are reported as such, not as {e:?}"
            );
        }
    }
});
