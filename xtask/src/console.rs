//! The guest's serial console: a log file plus expect-style waits, each with a deadline and a
//! reason.
//!
//! QEMU serves the serial port on a unix socket; a reader thread copies everything the guest
//! prints into the log file and an in-memory buffer. Waits scan the buffer from a cursor, so a
//! pattern seen once is consumed and the next wait looks only at newer output. A wait also
//! stops early when the console closes (QEMU exited) or when an abort check (e.g. "QMP saw a
//! RESET") fires, so a broken guest fails fast instead of running into its deadline.

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("timed out after {waited:?} waiting for {pattern:?} ({reason}); serial log: {log}")]
    Timeout {
        pattern: String,
        reason: String,
        waited: Duration,
        log: PathBuf,
    },
    #[error("the guest console closed (QEMU exited) while waiting for {pattern:?} ({reason}); serial log: {log}")]
    Closed {
        pattern: String,
        reason: String,
        log: PathBuf,
    },
    #[error("stopped waiting for {pattern:?} ({reason}): {why}; serial log: {log}")]
    Aborted {
        pattern: String,
        reason: String,
        why: String,
        log: PathBuf,
    },
    #[error("cannot connect to the serial console socket {path}: {source}")]
    Connect {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot write to the guest console: {0}")]
    Write(std::io::Error),
    #[error("cannot create the serial log {path}: {source}")]
    Log {
        path: PathBuf,
        source: std::io::Error,
    },
}

pub type Result<T> = std::result::Result<T, Error>;

#[derive(Default)]
struct Shared {
    buf: Vec<u8>,
    closed: bool,
}

/// A check run while waiting; `Some(reason)` aborts the wait.
pub type AbortCheck = Arc<dyn Fn() -> Option<String> + Send + Sync>;

/// A connected serial console.
pub struct Console {
    stream: UnixStream,
    shared: Arc<(Mutex<Shared>, Condvar)>,
    cursor: usize,
    log: PathBuf,
    abort: Option<AbortCheck>,
    seq: u32,
}

/// Connects to a unix socket, retrying until `deadline` (QEMU creates it shortly after start).
pub fn connect_retry(path: &Path, deadline: Duration) -> std::io::Result<UnixStream> {
    let start = Instant::now();
    loop {
        match UnixStream::connect(path) {
            Ok(s) => return Ok(s),
            Err(e) if start.elapsed() >= deadline => return Err(e),
            Err(_) => std::thread::sleep(Duration::from_millis(50)),
        }
    }
}

impl Console {
    /// Connects to QEMU's serial socket and starts logging to `log`.
    pub fn connect(socket: &Path, log: &Path, deadline: Duration) -> Result<Self> {
        let stream = connect_retry(socket, deadline).map_err(|source| Error::Connect {
            path: socket.to_path_buf(),
            source,
        })?;
        let mut file = std::fs::File::create(log).map_err(|source| Error::Log {
            path: log.to_path_buf(),
            source,
        })?;
        let shared: Arc<(Mutex<Shared>, Condvar)> = Arc::default();
        let mut reader = stream.try_clone().map_err(|source| Error::Connect {
            path: socket.to_path_buf(),
            source,
        })?;
        let sh = shared.clone();
        std::thread::spawn(move || {
            let mut chunk = [0u8; 4096];
            loop {
                let n = match reader.read(&mut chunk) {
                    Ok(0) | Err(_) => 0,
                    Ok(n) => n,
                };
                let (lock, cv) = &*sh;
                let mut s = lock.lock().unwrap_or_else(|p| p.into_inner());
                if n == 0 {
                    s.closed = true;
                    cv.notify_all();
                    return;
                }
                let _ = file.write_all(&chunk[..n]);
                let _ = file.flush();
                s.buf.extend_from_slice(&chunk[..n]);
                cv.notify_all();
            }
        });
        Ok(Console {
            stream,
            shared,
            cursor: 0,
            log: log.to_path_buf(),
            abort: None,
            seq: 0,
        })
    }

    pub fn log_path(&self) -> &Path {
        &self.log
    }

    /// Installs (or with `None` removes) a check that aborts every wait when it returns a reason.
    pub fn set_abort(&mut self, check: Option<AbortCheck>) {
        self.abort = check;
    }

    /// Everything the guest printed so far.
    pub fn text(&self) -> String {
        let s = self.shared.0.lock().unwrap_or_else(|p| p.into_inner());
        String::from_utf8_lossy(&s.buf).into_owned()
    }

    /// How often `needle` occurs in everything printed so far.
    pub fn count(&self, needle: &str) -> usize {
        self.text().matches(needle).count()
    }

    /// Waits until `pattern` appears after the cursor; returns the text from the cursor to the
    /// end of the match and moves the cursor past it.
    pub fn expect(&mut self, pattern: &str, deadline: Duration, reason: &str) -> Result<String> {
        self.expect_any(&[pattern], deadline, reason)
            .map(|(_, t)| t)
    }

    /// Waits for the first of `patterns`; returns its index and the text up to its end.
    pub fn expect_any(
        &mut self,
        patterns: &[&str],
        deadline: Duration,
        reason: &str,
    ) -> Result<(usize, String)> {
        let start = Instant::now();
        let (lock, cv) = &*self.shared;
        let name = patterns.join("\" or \"");
        loop {
            let mut s = lock.lock().unwrap_or_else(|p| p.into_inner());
            let hay = &s.buf[self.cursor.min(s.buf.len())..];
            let hit = patterns
                .iter()
                .enumerate()
                .filter_map(|(i, p)| find(hay, p.as_bytes()).map(|at| (at, i, p.len())))
                .min();
            if let Some((at, i, len)) = hit {
                let end = self.cursor + at + len;
                let text = String::from_utf8_lossy(&s.buf[self.cursor..end]).into_owned();
                self.cursor = end;
                return Ok((i, text));
            }
            if s.closed {
                return Err(Error::Closed {
                    pattern: name,
                    reason: reason.into(),
                    log: self.log.clone(),
                });
            }
            let waited = start.elapsed();
            if waited >= deadline {
                return Err(Error::Timeout {
                    pattern: name,
                    reason: reason.into(),
                    waited,
                    log: self.log.clone(),
                });
            }
            let step = (deadline - waited).min(Duration::from_millis(100));
            s = cv
                .wait_timeout(s, step)
                .map(|r| r.0)
                .unwrap_or_else(|p| p.into_inner().0);
            drop(s);
            if let Some(why) = self.abort.as_ref().and_then(|c| c()) {
                return Err(Error::Aborted {
                    pattern: name,
                    reason: reason.into(),
                    why,
                    log: self.log.clone(),
                });
            }
        }
    }

    /// Sends one line to the guest's console.
    pub fn send(&mut self, line: &str) -> Result<()> {
        self.stream
            .write_all(line.as_bytes())
            .and_then(|()| self.stream.write_all(b"\n"))
            .map_err(Error::Write)
    }

    /// Runs a shell command in the guest and returns its output and exit status.
    ///
    /// The status is printed through a sentinel split by an empty string (`@@R1""=`), so the
    /// echo of the command line never matches what is searched for (`@@R1=`).
    pub fn run(&mut self, cmd: &str, deadline: Duration) -> Result<(String, i32)> {
        self.seq += 1;
        let tag = format!("@@R{}", self.seq);
        let begin = format!("{tag}-BEGIN");
        self.send(&format!(
            "echo \"{tag}\"\"-BEGIN\"; {cmd}; echo \"{tag}\"\"=$?@@\""
        ))?;
        let reason = format!("output of `{cmd}`");
        self.expect(&begin, deadline, &reason)?;
        let text = self.expect(&format!("{tag}="), deadline, &reason)?;
        let rest = self.expect("@@", deadline, &reason)?;
        let code = rest.trim_end_matches("@@").trim().parse().unwrap_or(-1);
        let out = text.strip_suffix(&format!("{tag}=")).unwrap_or(&text);
        Ok((out.trim_start_matches(['\r', '\n']).replace('\r', ""), code))
    }
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    if needle.is_empty() {
        return Some(0);
    }
    hay.windows(needle.len()).position(|w| w == needle)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{BufRead, BufReader};
    use std::os::unix::net::UnixListener;

    /// A fake guest: prints a ready line, then answers each command line with `reply(seq)`.
    fn fake_guest(dir: &Path, replies: Vec<&'static str>) -> PathBuf {
        let sock = dir.join("con.sock");
        let l = UnixListener::bind(&sock).unwrap();
        std::thread::spawn(move || {
            let (mut s, _) = l.accept().unwrap();
            s.write_all(b"[    0.0] Linux version x\r\nKEXECRS-READY marker=m1 kernel=x\r\n")
                .unwrap();
            let mut r = BufReader::new(s.try_clone().unwrap());
            for reply in replies {
                let mut line = String::new();
                if r.read_line(&mut line).unwrap_or(0) == 0 {
                    return;
                }
                s.write_all(line.as_bytes()).unwrap(); // the tty's echo
                s.write_all(reply.as_bytes()).unwrap();
            }
            // Keep the connection open until the test is done with it.
            std::thread::sleep(Duration::from_secs(5));
        });
        sock
    }

    #[test]
    fn run_returns_output_and_status_not_fooled_by_the_echo() {
        let dir = tempfile::tempdir().unwrap();
        let sock = fake_guest(dir.path(), vec!["@@R1-BEGIN\r\nhello\r\n@@R1=3@@\r\n"]);
        let mut c = Console::connect(
            &sock,
            &dir.path().join("serial.log"),
            Duration::from_secs(5),
        )
        .unwrap();
        c.expect("KEXECRS-READY marker=m1 ", Duration::from_secs(5), "ready")
            .unwrap();
        let (out, code) = c.run("false", Duration::from_secs(5)).unwrap();
        assert_eq!(code, 3);
        assert_eq!(out.trim(), "hello");
        let log = std::fs::read_to_string(dir.path().join("serial.log")).unwrap();
        assert!(
            log.contains("KEXECRS-READY") && log.contains("hello"),
            "{log}"
        );
        assert_eq!(c.count("Linux version"), 1);
    }

    #[test]
    fn a_wait_ends_at_its_deadline_with_the_reason_and_log_path() {
        let dir = tempfile::tempdir().unwrap();
        let sock = fake_guest(dir.path(), vec![]);
        let log = dir.path().join("serial.log");
        let mut c = Console::connect(&sock, &log, Duration::from_secs(5)).unwrap();
        let t = Instant::now();
        let e = c
            .expect(
                "never printed",
                Duration::from_millis(300),
                "a marker that never comes",
            )
            .unwrap_err();
        assert!(
            t.elapsed() < Duration::from_secs(3),
            "took {:?}",
            t.elapsed()
        );
        let msg = e.to_string();
        assert!(
            msg.contains("a marker that never comes") && msg.contains(&log.display().to_string()),
            "{msg}"
        );
    }

    #[test]
    fn an_abort_check_stops_a_wait_at_once() {
        let dir = tempfile::tempdir().unwrap();
        let sock = fake_guest(dir.path(), vec![]);
        let mut c = Console::connect(
            &sock,
            &dir.path().join("serial.log"),
            Duration::from_secs(5),
        )
        .unwrap();
        c.set_abort(Some(Arc::new(|| Some("QMP reported a RESET".to_string()))));
        let t = Instant::now();
        let e = c
            .expect("never printed", Duration::from_secs(60), "boot2")
            .unwrap_err();
        assert!(t.elapsed() < Duration::from_secs(5));
        assert!(matches!(e, Error::Aborted { .. }), "{e}");
    }

    #[test]
    fn a_closed_console_ends_a_wait() {
        let dir = tempfile::tempdir().unwrap();
        let sock = dir.path().join("con.sock");
        let l = UnixListener::bind(&sock).unwrap();
        std::thread::spawn(move || {
            let (mut s, _) = l.accept().unwrap();
            let _ = s.write_all(b"bye\n");
        });
        let mut c = Console::connect(
            &sock,
            &dir.path().join("serial.log"),
            Duration::from_secs(5),
        )
        .unwrap();
        let e = c
            .expect("never printed", Duration::from_secs(60), "boot2")
            .unwrap_err();
        assert!(matches!(e, Error::Closed { .. }), "{e}");
    }
}
