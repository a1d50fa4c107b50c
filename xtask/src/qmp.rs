//! QMP (QEMU's machine protocol) over a unix socket, through the `qapi` crate: handshake,
//! `query-status`, `quit`, and the events that tell a kexec reboot from a firmware one.
//!
//! A kexec reboot never goes through QEMU: no `RESET` event. A firmware reboot (or a panic with
//! `panic=1`) makes QEMU reset the machine and emit `RESET`. A background thread polls the
//! socket (qapi's synchronous client only reads events while waiting for a reply, so it sends
//! a cheap `query-version` every 100 ms) and records every event with its time. Every line in
//! both directions goes to a transcript file, kept with the serial log when a test fails.

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use qapi::qmp;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("cannot connect to QMP at {path}: {source}")]
    Connect {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("QMP handshake failed: {0}")]
    Handshake(String),
    #[error("QMP command {command} failed: {message}")]
    Command {
        command: &'static str,
        message: String,
    },
    #[error("cannot write the QMP transcript {path}: {source}")]
    Transcript {
        path: PathBuf,
        source: std::io::Error,
    },
}

pub type Result<T> = std::result::Result<T, Error>;

/// A socket that copies every line read or written into a transcript. (qapi serializes a
/// command in many small writes, so bytes are gathered per direction until a newline.)
#[derive(Clone)]
struct Logged {
    sock: Arc<UnixStream>,
    log: Arc<Mutex<Transcript>>,
    start: Instant,
}

struct Transcript {
    file: std::fs::File,
    pending_in: Vec<u8>,
    pending_out: Vec<u8>,
}

impl Logged {
    fn note(&self, incoming: bool, bytes: &[u8]) {
        let Ok(mut t) = self.log.lock() else { return };
        let at = self.start.elapsed().as_secs_f64();
        let t = &mut *t;
        let (pending, dir) = if incoming {
            (&mut t.pending_in, "<-")
        } else {
            (&mut t.pending_out, "->")
        };
        pending.extend_from_slice(bytes);
        while let Some(nl) = pending.iter().position(|&b| b == b'\n') {
            let line: Vec<u8> = pending.drain(..=nl).collect();
            let line = String::from_utf8_lossy(&line);
            let line = line.trim();
            // The 100 ms polls would drown the transcript; keep what matters.
            if line.is_empty()
                || line.contains("query-version")
                || line.starts_with("{\"return\": {\"qemu\"")
            {
                continue;
            }
            let _ = writeln!(t.file, "{at:9.3} {dir} {line}");
        }
    }
}

impl Read for Logged {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = (&*self.sock).read(buf)?;
        self.note(true, &buf[..n]);
        Ok(n)
    }
}

impl Write for Logged {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = (&*self.sock).write(buf)?;
        self.note(false, &buf[..n]);
        Ok(n)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        (&*self.sock).flush()
    }
}

type Client = qapi::Qmp<qapi::Stream<std::io::BufReader<Logged>, Logged>>;

/// An event QEMU reported, with the time since connecting.
#[derive(Debug, Clone, PartialEq)]
pub struct Seen {
    pub at: Duration,
    pub name: String,
    pub detail: String,
}

/// A connected QMP monitor with an event recorder.
pub struct Monitor {
    client: Arc<Mutex<Client>>,
    events: Arc<Mutex<Vec<Seen>>>,
    closed: Arc<std::sync::atomic::AtomicBool>,
    transcript: PathBuf,
}

fn event_name(e: &qmp::Event) -> (String, String) {
    let v = serde_json::to_value(e).unwrap_or_default();
    let name = v
        .get("event")
        .and_then(|n| n.as_str())
        .unwrap_or("?")
        .to_string();
    let detail = v.get("data").map(|d| d.to_string()).unwrap_or_default();
    (name, detail)
}

impl Monitor {
    /// Connects (retrying until `deadline`), performs the capabilities handshake and starts
    /// recording events.
    pub fn connect(socket: &Path, transcript: &Path, deadline: Duration) -> Result<Self> {
        let sock =
            crate::console::connect_retry(socket, deadline).map_err(|source| Error::Connect {
                path: socket.to_path_buf(),
                source,
            })?;
        let file = std::fs::File::create(transcript).map_err(|source| Error::Transcript {
            path: transcript.to_path_buf(),
            source,
        })?;
        let log = Transcript {
            file,
            pending_in: Vec::new(),
            pending_out: Vec::new(),
        };
        let logged = Logged {
            sock: Arc::new(sock),
            log: Arc::new(Mutex::new(log)),
            start: Instant::now(),
        };
        let mut client = qapi::Qmp::from_stream(logged);
        client
            .handshake()
            .map_err(|e| Error::Handshake(e.to_string()))?;
        let m = Monitor {
            client: Arc::new(Mutex::new(client)),
            events: Arc::default(),
            closed: Arc::default(),
            transcript: transcript.to_path_buf(),
        };
        let (client, events, closed) = (m.client.clone(), m.events.clone(), m.closed.clone());
        let start = Instant::now();
        std::thread::spawn(move || loop {
            std::thread::sleep(Duration::from_millis(100));
            let mut c = client.lock().unwrap_or_else(|p| p.into_inner());
            let ok = c.nop().is_ok();
            let drained: Vec<_> = c.events().collect();
            drop(c);
            let mut ev = events.lock().unwrap_or_else(|p| p.into_inner());
            for e in drained {
                let (name, detail) = event_name(&e);
                ev.push(Seen {
                    at: start.elapsed(),
                    name,
                    detail,
                });
            }
            if !ok {
                closed.store(true, std::sync::atomic::Ordering::SeqCst);
                return;
            }
        });
        Ok(m)
    }

    pub fn transcript(&self) -> &Path {
        &self.transcript
    }

    /// Every event seen so far.
    pub fn events(&self) -> Vec<Seen> {
        self.events
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// How many events named `name` (`RESET`, `SHUTDOWN`, `STOP`) were seen.
    pub fn count(&self, name: &str) -> usize {
        self.events().iter().filter(|e| e.name == name).count()
    }

    /// A shareable check for console waits: aborts when QEMU reset the machine.
    pub fn reset_check(&self) -> crate::console::AbortCheck {
        let events = self.events.clone();
        Arc::new(move || {
            let ev = events.lock().unwrap_or_else(|p| p.into_inner());
            ev.iter()
                .find(|e| e.name == "RESET")
                .map(|e| format!("QMP reported a RESET event at {:.1} s ({}): the machine went through the firmware", e.at.as_secs_f64(), e.detail))
        })
    }

    /// Whether QEMU closed the QMP connection (it exited).
    pub fn is_closed(&self) -> bool {
        self.closed.load(std::sync::atomic::Ordering::SeqCst)
    }

    /// `query-status`: (running, status name).
    pub fn query_status(&self) -> Result<(bool, String)> {
        let mut c = self.client.lock().unwrap_or_else(|p| p.into_inner());
        let s = c
            .execute(&qmp::query_status {})
            .map_err(|e| Error::Command {
                command: "query-status",
                message: e.to_string(),
            })?;
        let status = serde_json::to_value(s.status)
            .ok()
            .and_then(|v| v.as_str().map(String::from))
            .unwrap_or_default();
        Ok((s.running, status))
    }

    /// `cont`: starts a machine created with `-S`.
    pub fn cont(&self) -> Result<()> {
        let mut c = self.client.lock().unwrap_or_else(|p| p.into_inner());
        c.execute(&qmp::cont {})
            .map(drop)
            .map_err(|e| Error::Command {
                command: "cont",
                message: e.to_string(),
            })
    }

    /// `quit`: ends QEMU.
    pub fn quit(&self) -> Result<()> {
        let mut c = self.client.lock().unwrap_or_else(|p| p.into_inner());
        match c.execute(&qmp::quit {}) {
            Ok(_) => Ok(()),
            // QEMU may close the socket before its reply arrives.
            Err(qapi::ExecuteError::Io(_)) => Ok(()),
            Err(e) => Err(Error::Command {
                command: "quit",
                message: e.to_string(),
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{BufRead, BufReader};
    use std::os::unix::net::UnixListener;

    /// A fake QEMU monitor: greeting, answers every command, and emits a RESET event after the
    /// client's first poll; answers `query-status` with `running`.
    fn fake_qemu(sock: &Path) {
        let l = UnixListener::bind(sock).unwrap();
        std::thread::spawn(move || {
            let (mut s, _) = l.accept().unwrap();
            let greet = r#"{"QMP": {"version": {"qemu": {"micro": 0, "minor": 2, "major": 7}, "package": ""}, "capabilities": []}}"#;
            writeln!(s, "{greet}").unwrap();
            let mut r = BufReader::new(s.try_clone().unwrap());
            let mut polls = 0;
            loop {
                let mut line = String::new();
                if r.read_line(&mut line).unwrap_or(0) == 0 {
                    return;
                }
                if line.contains("query-version") {
                    polls += 1;
                    if polls == 1 {
                        let ev = r#"{"timestamp": {"seconds": 1, "microseconds": 2}, "event": "RESET", "data": {"guest": true, "reason": "guest-reset"}}"#;
                        writeln!(s, "{ev}").unwrap();
                    }
                    writeln!(s, r#"{{"return": {{"qemu": {{"micro": 0, "minor": 2, "major": 7}}, "package": ""}}}}"#).unwrap();
                } else if line.contains("query-status") {
                    writeln!(s, r#"{{"return": {{"status": "running", "singlestep": false, "running": true}}}}"#).unwrap();
                } else if line.contains("quit") {
                    writeln!(s, r#"{{"return": {{}}}}"#).unwrap();
                    return;
                } else {
                    writeln!(s, r#"{{"return": {{}}}}"#).unwrap();
                }
            }
        });
    }

    #[test]
    fn records_events_answers_status_and_keeps_a_transcript() {
        let dir = tempfile::tempdir().unwrap();
        let sock = dir.path().join("qmp.sock");
        fake_qemu(&sock);
        let t = dir.path().join("qmp.log");
        let m = Monitor::connect(&sock, &t, Duration::from_secs(5)).unwrap();
        let check = m.reset_check();
        let start = Instant::now();
        while m.count("RESET") == 0 && start.elapsed() < Duration::from_secs(5) {
            std::thread::sleep(Duration::from_millis(20));
        }
        assert_eq!(m.count("RESET"), 1, "{:?}", m.events());
        assert!(check().is_some_and(|why| why.contains("RESET")));
        assert_eq!(m.query_status().unwrap(), (true, "running".to_string()));
        m.quit().unwrap();
        let text = std::fs::read_to_string(&t).unwrap();
        assert!(
            text.contains(r#"-> {"execute":"qmp_capabilities""#),
            "{text}"
        );
        assert!(text.contains(r#""event": "RESET""#), "{text}");
        assert!(
            text.contains("query-status") && text.contains(r#""execute":"quit""#),
            "{text}"
        );
        assert!(
            !text.contains("query-version"),
            "the polls should not drown the transcript:\n{text}"
        );
    }
}
