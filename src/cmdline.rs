//! The command line handed to the new kernel, built with kexec-tools'
//! semantics and validated before any syscall.
//!
//! kexec-tools treats `--append` and `--command-line` as one option (the last
//! one given wins); `--reuse-cmdline` starts from `/proc/cmdline` without
//! `BOOT_IMAGE=` (a boot loader's note about the *old* kernel) and, for a
//! crash kernel, without `crashkernel=` (the capture kernel must not try to
//! reserve memory inside the reservation it runs in); the `--append` text then
//! follows. With neither option the new kernel gets an empty command line.
//!
//! [`Cmdline`] is a validating builder with a capacity, so a NUL, a newline or
//! an overlong line is rejected here with a sentence, not by the kernel later
//! as a bare `EINVAL`.

/// Room the kernel's x86 `kexec_file_load` crash path reserves in the command
/// line for the `elfcorehdr=0x<addr>` it appends (`MAX_ELFCOREHDR_STR_LEN`).
pub const ELFCOREHDR_RESERVE: usize = 30;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum Error {
    #[error("the kernel command line contains a NUL byte at offset {offset}; remove it (the kernel would cut the line there)")]
    Nul { offset: usize },
    #[error("the kernel command line contains a newline at offset {offset}; put everything on one line (newlines are not separators the new kernel expects)")]
    Newline { offset: usize },
    #[error("the kernel command line is {len} bytes but {what} accepts at most {max}; shorten --append or drop parameters from the reused command line")]
    TooLong {
        len: usize,
        max: usize,
        what: String,
    },
    #[error("the kernel command line has an unbalanced double quote; close it (the kernel would swallow the rest of the line into one parameter)")]
    UnbalancedQuote,
}

pub type Result<T> = std::result::Result<T, Error>;

/// A validated command line: printable-enough (no NUL, no newline), quotes
/// balanced, and no longer than its capacity.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cmdline {
    text: String,
    capacity: Option<(usize, String)>,
}

impl Cmdline {
    /// An empty command line. `capacity` is the longest line (without NUL) the
    /// target accepts, with a name for it used in errors (e.g. "this bzImage
    /// (cmdline_size)"); `None` when the image does not say.
    pub fn new(capacity: Option<(usize, String)>) -> Self {
        Cmdline {
            text: String::new(),
            capacity,
        }
    }

    /// Appends `part` (which may hold several parameters), separated from what
    /// is already there by one space; blank parts add nothing.
    pub fn push(&mut self, part: &str) -> Result<()> {
        let part = part.trim_matches(' ');
        if part.is_empty() {
            return Ok(());
        }
        if let Some(offset) = part.find('\0') {
            return Err(Error::Nul {
                offset: self.offset_of(offset),
            });
        }
        if let Some(offset) = part.find(['\n', '\r']) {
            return Err(Error::Newline {
                offset: self.offset_of(offset),
            });
        }
        if part.matches('"').count() % 2 != 0 {
            return Err(Error::UnbalancedQuote);
        }
        let new_len = self.text.len() + usize::from(!self.text.is_empty()) + part.len();
        if let Some((max, what)) = &self.capacity {
            if new_len > *max {
                return Err(Error::TooLong {
                    len: new_len,
                    max: *max,
                    what: what.clone(),
                });
            }
        }
        if !self.text.is_empty() {
            self.text.push(' ');
        }
        self.text.push_str(part);
        Ok(())
    }

    fn offset_of(&self, offset_in_part: usize) -> usize {
        self.text.len() + usize::from(!self.text.is_empty()) + offset_in_part
    }

    pub fn as_str(&self) -> &str {
        &self.text
    }

    pub fn as_bytes(&self) -> &[u8] {
        self.text.as_bytes()
    }

    pub fn is_empty(&self) -> bool {
        self.text.is_empty()
    }
}

impl std::fmt::Display for Cmdline {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.text)
    }
}

/// Splits a kernel command line into parameters the way the kernel does:
/// on spaces, except inside double quotes.
pub fn split_params(line: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let mut start = None;
    let mut quoted = false;
    for (i, c) in line.char_indices() {
        match c {
            '"' => {
                quoted = !quoted;
                start.get_or_insert(i);
            }
            c if c.is_ascii_whitespace() && !quoted => {
                if let Some(s) = start.take() {
                    out.push(&line[s..i]);
                }
            }
            _ => {
                start.get_or_insert(i);
            }
        }
    }
    if let Some(s) = start {
        out.push(&line[s..]);
    }
    out
}

/// The key of a parameter: what is before `=` (quotes removed).
fn key_of(param: &str) -> &str {
    let key = param.split('=').next().unwrap_or(param);
    key.trim_matches('"')
}

/// `/proc/cmdline` as `--reuse-cmdline` passes it on: without `BOOT_IMAGE=`,
/// and without `crashkernel=` when loading a crash kernel.
pub fn reusable(proc_cmdline: &str, crash: bool) -> String {
    split_params(proc_cmdline.trim_end_matches(['\n', '\0']))
        .into_iter()
        .filter(|p| {
            let key = key_of(p);
            key != "BOOT_IMAGE" && !(crash && key == "crashkernel")
        })
        .collect::<Vec<_>>()
        .join(" ")
}

/// What the user asked for on the command line.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Request {
    /// `--append`/`--command-line`: the last one given.
    pub append: Option<String>,
    pub reuse: bool,
}

/// Builds the command line for a load. `proc_cmdline` is read only when
/// `--reuse-cmdline` is given (it is injected so tests need no `/proc`).
pub fn build(
    req: &Request,
    proc_cmdline: impl FnOnce() -> std::io::Result<String>,
    crash: bool,
    capacity: Option<(usize, String)>,
) -> std::result::Result<Cmdline, BuildError> {
    let mut line = Cmdline::new(capacity);
    if req.reuse {
        let current = proc_cmdline().map_err(BuildError::ProcCmdline)?;
        line.push(&reusable(&current, crash))?;
    }
    if let Some(append) = &req.append {
        line.push(append)?;
    }
    Ok(line)
}

#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    #[error("--reuse-cmdline: cannot read /proc/cmdline: {0} (is /proc mounted?)")]
    ProcCmdline(std::io::Error),
    #[error(transparent)]
    Invalid(#[from] Error),
}

/// The capacity of a bzImage's command line: `cmdline_size` from its setup
/// header (boot protocol 2.06+; 255 before), minus the room the kernel keeps
/// for `elfcorehdr=` when loading a crash kernel.
pub fn bzimage_capacity(kernel: &str, cmdline_size: Option<u32>, crash: bool) -> (usize, String) {
    let (size, what) = match cmdline_size {
        Some(n) => (
            n as usize,
            format!("kernel {kernel} (its setup header's cmdline_size is {n})"),
        ),
        None => (
            255,
            format!("kernel {kernel} (boot protocol before 2.06: 255 bytes)"),
        ),
    };
    if crash {
        (
            size.saturating_sub(ELFCOREHDR_RESERVE + 1),
            format!("{what}, less room for elfcorehdr=,"),
        )
    } else {
        (size, what)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn proc(s: &'static str) -> impl FnOnce() -> std::io::Result<String> {
        move || Ok(s.to_string())
    }

    #[test]
    fn no_option_gives_an_empty_line() {
        let c = build(
            &Request::default(),
            || panic!("must not read /proc"),
            false,
            None,
        )
        .unwrap();
        assert!(c.is_empty());
    }

    #[test]
    fn reuse_drops_boot_image_always_and_crashkernel_only_for_crash() {
        let current = "BOOT_IMAGE=/vmlinuz-lts root=/dev/sda3 crashkernel=256M quiet\n";
        let req = Request {
            append: None,
            reuse: true,
        };
        let normal = build(&req, proc(current), false, None).unwrap();
        assert_eq!(normal.as_str(), "root=/dev/sda3 crashkernel=256M quiet");
        let crash = build(&req, proc(current), true, None).unwrap();
        assert_eq!(crash.as_str(), "root=/dev/sda3 quiet");
    }

    #[test]
    fn reuse_keeps_parameters_that_only_contain_the_words() {
        let s = reusable("root=/dev/vda my.BOOT_IMAGE=x xcrashkernel=1", true);
        assert_eq!(s, "root=/dev/vda my.BOOT_IMAGE=x xcrashkernel=1");
    }

    #[test]
    fn reuse_then_append() {
        let req = Request {
            append: Some("console=ttyS0 panic=1".into()),
            reuse: true,
        };
        let c = build(&req, proc("root=/dev/vda ro"), false, None).unwrap();
        assert_eq!(c.as_str(), "root=/dev/vda ro console=ttyS0 panic=1");
    }

    #[test]
    fn quoted_parameters_stay_whole() {
        assert_eq!(
            split_params(r#"a "b c" d="e f" g"#),
            vec!["a", r#""b c""#, r#"d="e f""#, "g"]
        );
        assert_eq!(
            reusable(r#"BOOT_IMAGE="/x y" dyndbg="file a +p" z"#, false),
            r#"dyndbg="file a +p" z"#
        );
    }

    #[test]
    fn missing_proc_cmdline_is_an_error_naming_the_file() {
        let req = Request {
            append: None,
            reuse: true,
        };
        let err = build(
            &req,
            || Err(std::io::ErrorKind::NotFound.into()),
            false,
            None,
        )
        .unwrap_err();
        assert!(err.to_string().contains("/proc/cmdline"), "{err}");
    }

    #[test]
    fn rejects_nul_newline_and_unbalanced_quotes() {
        let mut c = Cmdline::new(None);
        c.push("a").unwrap();
        assert_eq!(c.push("b\0c"), Err(Error::Nul { offset: 3 }));
        assert_eq!(c.push("b\nc"), Err(Error::Newline { offset: 3 }));
        assert_eq!(c.push("x=\"y"), Err(Error::UnbalancedQuote));
        assert_eq!(c.as_str(), "a");
    }

    #[test]
    fn length_is_checked_against_the_capacity() {
        let cap = bzimage_capacity("vmlinuz", Some(10), false);
        let mut c = Cmdline::new(Some(cap.clone()));
        c.push("12345").unwrap();
        c.push("1234").unwrap(); // 5 + 1 + 4 = 10: exactly fits
        let err = c.push("x").unwrap_err();
        assert!(
            matches!(
                err,
                Error::TooLong {
                    len: 12,
                    max: 10,
                    ..
                }
            ),
            "{err:?}"
        );
        assert!(
            err.to_string()
                .contains("kernel vmlinuz (its setup header's cmdline_size is 10)"),
            "{err}"
        );
    }

    #[test]
    fn crash_capacity_keeps_room_for_elfcorehdr() {
        assert_eq!(bzimage_capacity("k", Some(2047), true).0, 2047 - 31);
        assert_eq!(bzimage_capacity("k", None, false).0, 255);
    }
}
