//! Small HTTP GET helper for mirror downloads, with a progress bar and a deadline.
//!
//! Only plain GETs are needed (release index, tarballs, packages). Bodies are streamed into a
//! file in the cache's scratch area; the caller verifies and moves it into the store.

use std::io::{Read, Write};
use std::path::Path;
use std::time::Duration;

use anyhow::{bail, Context, Result};

fn agent(timeout: Duration) -> ureq::Agent {
    ureq::AgentBuilder::new()
        .timeout_connect(timeout)
        .timeout_read(Duration::from_secs(60))
        .build()
}

/// Fetches a small document (an index) into memory.
pub fn get_bytes(url: &str, timeout: Duration) -> Result<Vec<u8>> {
    let resp = agent(timeout)
        .get(url)
        .call()
        .map_err(|e| anyhow::anyhow!("GET {url} failed: {e}"))?;
    let mut buf = Vec::new();
    resp.into_reader()
        .take(256 << 20)
        .read_to_end(&mut buf)
        .with_context(|| format!("reading {url}"))?;
    Ok(buf)
}

/// Downloads `url` into `dest`, showing a progress bar on stderr.
pub fn download(url: &str, dest: &Path) -> Result<()> {
    let resp = agent(Duration::from_secs(10))
        .get(url)
        .call()
        .map_err(|e| anyhow::anyhow!("GET {url} failed: {e}"))?;
    let len = resp
        .header("Content-Length")
        .and_then(|l| l.parse::<u64>().ok());
    let bar = match len {
        Some(n) => indicatif::ProgressBar::new(n),
        None => indicatif::ProgressBar::new_spinner(),
    };
    bar.set_style(
        indicatif::ProgressStyle::with_template(
            "{msg} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec}",
        )
        .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar())
        .progress_chars("=> "),
    );
    bar.set_message(url.rsplit('/').next().unwrap_or(url).to_string());
    let mut out =
        std::fs::File::create(dest).with_context(|| format!("cannot create {}", dest.display()))?;
    let mut r = resp.into_reader();
    let mut buf = vec![0u8; 1 << 16];
    let mut total = 0u64;
    loop {
        let n = r.read(&mut buf).with_context(|| format!("reading {url}"))?;
        if n == 0 {
            break;
        }
        out.write_all(&buf[..n])?;
        total += n as u64;
        bar.set_position(total);
    }
    bar.finish_and_clear();
    if let Some(n) = len {
        if n != total {
            bail!("{url}: the server announced {n} bytes but sent {total}");
        }
    }
    Ok(())
}
