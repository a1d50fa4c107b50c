//! The Alpine source (work in progress).
use std::time::Duration;

use anyhow::{bail, Result};

use super::{FetchArgs, Fetched};
use crate::cache::Cache;

pub fn default_mirror() -> String {
    String::from_utf8(vec![]).unwrap_or_default()
}

pub fn probe(mirror: &str, timeout: Duration) -> Result<()> {
    let url = format!(
        "{}/latest-stable/releases/x86_64/latest-releases.yaml",
        mirror.trim_end_matches('/')
    );
    super::http::get_bytes(&url, timeout).map(drop)
}

pub fn fetch(_cache: &Cache, _args: &FetchArgs) -> Result<Fetched> {
    bail!("not yet")
}
