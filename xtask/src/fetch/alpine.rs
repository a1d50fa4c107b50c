//! The Alpine source: netboot kernels and userland packages from an Alpine mirror, every file
//! verified against its published checksum before it is used.
//!
//! Netboot files have no checksums of their own; what is published is the tarball
//! `alpine-netboot-<version>-<arch>.tar.gz`, with its SHA-256 in the release index
//! (`latest-releases.yaml`) and in `<tarball>.sha256`. So the tarball is downloaded, checked
//! against both, and only then are `boot/vmlinuz-F`, `initramfs-F`, `modloop-F` and `config-F`
//! extracted. Packages come from `APKINDEX.tar.gz`: an `.apk` is checked against the index's
//! size (`S:`) and `C:` (SHA-1 of the compressed control stream), and its data stream against
//! `.PKGINFO`'s `datahash` (SHA-256). A file that fails is deleted, never cached or extracted.
//! The index itself is checked against its RSA signature with Alpine's keys (`--alpine-keys`,
//! `KEXEC_RS_ALPINE_KEYS`, or an Alpine host's `/etc/apk/keys`), as `apk` does; with no keys
//! directory at all the fetch says so and goes on (the index then only comes from the
//! configured mirror), but a signature that does not verify, or a key that is not there,
//! stops it.
//!
//! The mirror is never hard-coded: `--mirror URL`, else `KEXEC_RS_ALPINE_MIRROR`, else the
//! first repository in the system's own `/etc/apk/repositories` (on an Alpine host).

use std::collections::{BTreeMap, BTreeSet};
use std::io::Read;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{bail, Context, Result};
use base64::Engine;
use sha1::Sha1;
use sha2::{Digest, Sha256};

use super::{http, FetchArgs, Fetched, KernelEntry, UserlandEntry};
use crate::cache::Cache;

/// The configured mirror base (the directory holding the branches), if any.
pub fn configured_mirror() -> Option<String> {
    if let Ok(m) = std::env::var("KEXEC_RS_ALPINE_MIRROR") {
        if !m.is_empty() {
            return Some(m);
        }
    }
    let repos = std::fs::read_to_string("/etc/apk/repositories").ok()?;
    repos
        .lines()
        .map(str::trim)
        .filter(|l| l.starts_with("http"))
        .find_map(|l| {
            // `<base>/<branch>/<repo>` → `<base>`
            let mut parts: Vec<&str> = l.trim_end_matches('/').rsplitn(3, '/').collect();
            parts.pop().map(String::from)
        })
}

fn release_index_url(mirror: &str, branch: &str, arch: &str) -> String {
    format!(
        "{}/{branch}/releases/{arch}/latest-releases.yaml",
        mirror.trim_end_matches('/')
    )
}

/// Whether the mirror answers within `timeout` (used by `--source auto`).
pub fn probe(mirror: Option<&str>, timeout: Duration) -> std::result::Result<String, String> {
    let Some(m) = mirror else {
        return Err(
            "no Alpine mirror is configured (pass --mirror URL or set KEXEC_RS_ALPINE_MIRROR)"
                .into(),
        );
    };
    http::get_bytes(&release_index_url(m, "latest-stable", "x86_64"), timeout)
        .map(|_| m.to_string())
        .map_err(|e| format!("{e:#}"))
}

/// One entry of `latest-releases.yaml` (only the fields used).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Release {
    pub flavor: String,
    pub file: String,
    pub version: String,
    pub branch: String,
    pub arch: String,
    pub sha256: String,
}

/// Parses `latest-releases.yaml`: a list of flat maps (block scalars such as `desc: |` are
/// skipped). Small and strict enough for this one file; no YAML library needed.
pub fn parse_releases(text: &str) -> Vec<Release> {
    let mut out = Vec::new();
    let mut cur: Option<Release> = None;
    let mut in_block = false;
    for line in text.lines() {
        if line.trim() == "---" || line.trim().is_empty() {
            continue;
        }
        if let Some(rest) = line.strip_prefix('-') {
            if let Some(r) = cur.take() {
                out.push(r);
            }
            cur = Some(Release::default());
            in_block = false;
            if rest.trim().is_empty() {
                continue;
            }
        }
        let indent = line.len() - line.trim_start().len();
        if in_block && indent > 2 {
            continue;
        }
        in_block = false;
        let Some((k, v)) = line.trim_start_matches('-').trim().split_once(':') else {
            continue;
        };
        let v = v.trim().trim_matches('"').to_string();
        if v == "|" || v == ">" {
            in_block = true;
            continue;
        }
        if let Some(r) = cur.as_mut() {
            match k.trim() {
                "flavor" => r.flavor = v,
                "file" => r.file = v,
                "version" => r.version = v,
                "branch" => r.branch = v,
                "arch" => r.arch = v,
                "sha256" => r.sha256 = v.to_ascii_lowercase(),
                _ => {}
            }
        }
    }
    if let Some(r) = cur {
        out.push(r);
    }
    out
}

/// One package record of `APKINDEX`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ApkRecord {
    pub checksum: String,
    pub name: String,
    pub version: String,
    pub size: u64,
    pub depends: Vec<String>,
    pub provides: Vec<String>,
}

/// Parses the `APKINDEX` text: records separated by blank lines, one `X:value` field a line.
pub fn parse_apkindex(text: &str) -> Vec<ApkRecord> {
    let mut out = Vec::new();
    for block in text.split("\n\n") {
        let mut r = ApkRecord::default();
        for line in block.lines() {
            let Some((k, v)) = line.split_once(':') else {
                continue;
            };
            match k {
                "C" => r.checksum = v.to_string(),
                "P" => r.name = v.to_string(),
                "V" => r.version = v.to_string(),
                "S" => r.size = v.parse().unwrap_or(0),
                "D" => r.depends = v.split_whitespace().map(String::from).collect(),
                "p" => r.provides = v.split_whitespace().map(String::from).collect(),
                _ => {}
            }
        }
        if !r.name.is_empty() {
            out.push(r);
        }
    }
    out
}

/// Reads the `APKINDEX` file out of `APKINDEX.tar.gz` (signature stream, then index stream).
pub fn read_apkindex(targz: &[u8]) -> Result<String> {
    let gz = flate2::read::MultiGzDecoder::new(targz);
    let mut ar = tar::Archive::new(gz);
    ar.set_ignore_zeros(true);
    for e in ar
        .entries()
        .context("APKINDEX.tar.gz is not a gzip'd tar")?
    {
        let mut e = e.context("APKINDEX.tar.gz is damaged")?;
        if e.path().ok().is_some_and(|p| p.as_os_str() == "APKINDEX") {
            let mut s = String::new();
            e.read_to_string(&mut s).context("APKINDEX is not text")?;
            return Ok(s);
        }
    }
    bail!("APKINDEX.tar.gz has no APKINDEX file")
}

/// Where Alpine's public keys are: `--alpine-keys`, else `KEXEC_RS_ALPINE_KEYS`, else an Alpine
/// host's `/etc/apk/keys`; `None` when none of them exists.
pub fn keys_dir(arg: Option<&Path>) -> Option<PathBuf> {
    if let Some(p) = arg {
        return Some(p.to_path_buf());
    }
    if let Some(p) = std::env::var_os("KEXEC_RS_ALPINE_KEYS") {
        return Some(PathBuf::from(p));
    }
    let etc = Path::new("/etc/apk/keys");
    etc.is_dir().then(|| etc.to_path_buf())
}

/// Checks `APKINDEX.tar.gz` against its signature, as `apk` does: the first gzip stream is a
/// tar holding `.SIGN.RSA.<key>` (PKCS#1 v1.5 over the SHA-1 of the rest of the file, the
/// compressed index stream) or `.SIGN.RSA256.<key>` (SHA-256), and `<key>` names a PEM public
/// key in `keys`. Returns the key's name.
pub fn verify_apkindex(targz: &[u8], keys: &Path) -> Result<String> {
    use rsa::pkcs8::DecodePublicKey;
    use rsa::{Pkcs1v15Sign, RsaPublicKey};

    let members = gzip_members(targz).context("APKINDEX.tar.gz is not gzip streams")?;
    let (Some(&(s0, s1)), Some(&(rest, _))) = (members.first(), members.get(1)) else {
        bail!("APKINDEX.tar.gz has no signature stream before the index: it is unsigned");
    };
    let sig_tar = gunzip(&targz[s0..s1])?;
    let mut ar = tar::Archive::new(&sig_tar[..]);
    let mut found = None;
    for e in ar.entries().context("the signature stream is not a tar")? {
        let Ok(mut e) = e else { break };
        let name = e
            .path()
            .ok()
            .map(|p| p.to_string_lossy().into_owned())
            .unwrap_or_default();
        let (sha256, key) = if let Some(k) = name.strip_prefix(".SIGN.RSA256.") {
            (true, k.to_string())
        } else if let Some(k) = name.strip_prefix(".SIGN.RSA.") {
            (false, k.to_string())
        } else {
            continue;
        };
        let mut sig = Vec::new();
        e.read_to_end(&mut sig)
            .context("the signature cannot be read")?;
        found = Some((sha256, key, sig));
        break;
    }
    let Some((sha256, key, sig)) = found else {
        bail!("APKINDEX.tar.gz carries no .SIGN.RSA signature: it is unsigned");
    };
    if key.contains('/') || key.starts_with('.') {
        bail!("APKINDEX.tar.gz names an impossible signing key {key:?}");
    }
    let key_path = keys.join(&key);
    let pem = std::fs::read_to_string(&key_path).with_context(|| {
        format!(
            "APKINDEX.tar.gz is signed with {key}, which is not in {}: add Alpine's key there (alpine-keys package) or point --alpine-keys at a directory holding it",
            keys.display()
        )
    })?;
    let public = RsaPublicKey::from_public_key_pem(&pem)
        .with_context(|| format!("{} is not a PEM RSA public key", key_path.display()))?;
    let signed = &targz[rest..];
    let ok = if sha256 {
        public.verify(Pkcs1v15Sign::new::<Sha256>(), &Sha256::digest(signed), &sig)
    } else {
        public.verify(Pkcs1v15Sign::new::<Sha1>(), &Sha1::digest(signed), &sig)
    };
    ok.map_err(|_| {
        anyhow::anyhow!(
            "APKINDEX.tar.gz does not match its signature by {key}: the index was altered or damaged; refusing it"
        )
    })?;
    Ok(key)
}

/// The byte ranges of the gzip members an `.apk` is made of.
fn gzip_members(bytes: &[u8]) -> Result<Vec<(usize, usize)>> {
    let mut members = Vec::new();
    let mut pos = 0;
    while pos < bytes.len() {
        let rest = &bytes[pos..];
        let mut d = flate2::bufread::GzDecoder::new(rest);
        std::io::copy(&mut d, &mut std::io::sink()).context("not a gzip stream")?;
        let left = d.into_inner().len();
        let used = rest.len() - left;
        if used == 0 {
            break;
        }
        members.push((pos, pos + used));
        pos += used;
    }
    Ok(members)
}

fn gunzip(bytes: &[u8]) -> Result<Vec<u8>> {
    let mut out = Vec::new();
    flate2::read::GzDecoder::new(bytes).read_to_end(&mut out)?;
    Ok(out)
}

/// Checks an `.apk` against its index record; returns the data stream's (compressed) range.
pub fn verify_apk(bytes: &[u8], rec: &ApkRecord) -> Result<(usize, usize)> {
    let what = format!("{}-{}.apk", rec.name, rec.version);
    if rec.size != 0 && bytes.len() as u64 != rec.size {
        bail!(
            "{what} is {} bytes but the index says {}: rejected",
            bytes.len(),
            rec.size
        );
    }
    let members =
        gzip_members(bytes).with_context(|| format!("{what} is not a valid package: rejected"))?;
    let (control, data) = match members.as_slice() {
        [_, c, d] => (*c, *d),
        [c, d] => (*c, *d),
        _ => bail!(
            "{what} has {} gzip streams; a package has 2 or 3",
            members.len()
        ),
    };
    let b64 = rec.checksum.strip_prefix("Q1").with_context(|| {
        format!(
            "{what}: index checksum {:?} is not a Q1 (SHA-1) checksum",
            rec.checksum
        )
    })?;
    let want = base64::engine::general_purpose::STANDARD
        .decode(b64)
        .with_context(|| format!("{what}: bad base64 in the index checksum"))?;
    let got = Sha1::digest(&bytes[control.0..control.1]);
    if got.as_slice() != want.as_slice() {
        bail!("{what}: the control stream's SHA-1 does not match the index (C:): the download is corrupt and was rejected");
    }
    // `.PKGINFO` carries the data stream's SHA-256.
    let ctl = gunzip(&bytes[control.0..control.1])?;
    let mut ar = tar::Archive::new(&ctl[..]);
    let mut datahash = None;
    for e in ar.entries()? {
        let Ok(mut e) = e else { break };
        if e.path().ok().is_some_and(|p| p.as_os_str() == ".PKGINFO") {
            let mut s = String::new();
            e.read_to_string(&mut s)?;
            datahash = s.lines().find_map(|l| {
                l.strip_prefix("datahash = ")
                    .map(|h| h.trim().to_ascii_lowercase())
            });
        }
    }
    let datahash = datahash.with_context(|| format!("{what}: .PKGINFO has no datahash"))?;
    let got = hex::encode(Sha256::digest(&bytes[data.0..data.1]));
    if got != datahash {
        bail!("{what}: the data stream's SHA-256 {got} does not match .PKGINFO's datahash {datahash}: rejected");
    }
    Ok(data)
}

/// Resolves `roots` and their dependencies (`so:`/`cmd:` names through `p:` provides).
pub fn resolve(index: &[ApkRecord], roots: &[&str]) -> Result<Vec<ApkRecord>> {
    let mut by_provide: BTreeMap<&str, &ApkRecord> = BTreeMap::new();
    for r in index {
        by_provide.entry(r.name.as_str()).or_insert(r);
        for p in &r.provides {
            by_provide
                .entry(p.split('=').next().unwrap_or(p))
                .or_insert(r);
        }
    }
    let mut seen = BTreeSet::new();
    let mut out = Vec::new();
    let mut stack: Vec<String> = roots.iter().map(|s| s.to_string()).collect();
    while let Some(dep) = stack.pop() {
        if dep.starts_with('!') {
            continue; // a conflict, not a dependency
        }
        let name = dep.split(['=', '<', '>', '~']).next().unwrap_or(&dep);
        let Some(rec) = by_provide.get(name) else {
            if roots.contains(&name) {
                bail!("the Alpine index has no package {name}");
            }
            continue;
        };
        if seen.insert(rec.name.clone()) {
            out.push((*rec).clone());
            stack.extend(rec.depends.iter().cloned());
        }
    }
    Ok(out)
}

fn fetch_verified_blob(
    cache: &Cache,
    url: &str,
    key: &str,
    expected_sha256: Option<&str>,
) -> Result<PathBuf> {
    if let Some(p) = cache.lookup(key)? {
        eprintln!(
            "fetch: {} already cached",
            url.rsplit('/').next().unwrap_or(url)
        );
        return Ok(p);
    }
    let tmp = cache.tempdir()?;
    let f = tmp.path().join("download");
    http::download(url, &f)?;
    Ok(cache.insert(key, &f, expected_sha256)?)
}

fn blob_sha(p: &Path) -> Result<String> {
    p.file_name()
        .and_then(|n| n.to_str())
        .map(String::from)
        .context("cache blob without a name")
}

/// The kernel release (`uname -r`) from a kernel config's header
/// (`# Linux/x86 6.12.13-0 Kernel Configuration`) and the flavor.
fn release_from_config(config: &Path, flavor: &str) -> Option<String> {
    let text = std::fs::read_to_string(config).ok()?;
    let line = text
        .lines()
        .take(5)
        .find(|l| l.contains("Kernel Configuration"))?;
    let v = line.split_whitespace().nth(2)?;
    Some(format!("{v}-{flavor}"))
}

pub fn fetch(cache: &Cache, args: &FetchArgs) -> Result<Fetched> {
    let mirror = args
        .mirror
        .clone()
        .or_else(configured_mirror)
        .context("no Alpine mirror configured: pass --mirror URL (the directory holding `latest-stable/`) or set KEXEC_RS_ALPINE_MIRROR")?;
    let mirror = mirror.trim_end_matches('/').to_string();
    let branch = args
        .release
        .first()
        .cloned()
        .unwrap_or_else(|| "latest-stable".into());
    let arch = match args.arch.first() {
        Some(a) => super::kernel_arch(a).with_context(|| format!("unknown architecture {a:?}"))?,
        None => "x86_64",
    };
    let flavors: Vec<String> = if args.flavor.is_empty() {
        vec!["lts".into(), "virt".into()]
    } else {
        args.flavor.clone()
    };

    let index_url = release_index_url(&mirror, &branch, arch);
    let yaml = http::get_bytes(&index_url, Duration::from_secs(10))?;
    let releases = parse_releases(&String::from_utf8_lossy(&yaml));
    let netboot = releases
        .iter()
        .find(|r| r.flavor == "alpine-netboot")
        .with_context(|| format!("{index_url} lists no alpine-netboot release"))?;
    if netboot.sha256.len() != 64 {
        bail!(
            "{index_url}: the netboot entry has no valid sha256; refusing an unverifiable download"
        );
    }
    let base = format!("{mirror}/{branch}/releases/{arch}");
    // The `.sha256` file beside the tarball must agree with the index.
    if let Ok(side) = http::get_bytes(
        &format!("{base}/{}.sha256", netboot.file),
        Duration::from_secs(10),
    ) {
        let side = String::from_utf8_lossy(&side);
        let hexsum = side
            .split_whitespace()
            .next()
            .unwrap_or("")
            .to_ascii_lowercase();
        if hexsum != netboot.sha256 {
            bail!("{}.sha256 says {hexsum} but latest-releases.yaml says {}: the mirror is inconsistent; nothing was used", netboot.file, netboot.sha256);
        }
    }
    eprintln!(
        "fetch: Alpine {} netboot ({arch}) from {base}",
        netboot.version
    );
    let tarball = fetch_verified_blob(
        cache,
        &format!("{base}/{}", netboot.file),
        &format!("sha256:{}", netboot.sha256),
        Some(&netboot.sha256),
    )?;
    let tree = cache.extracted(&blob_sha(&tarball)?, |dir| {
        let f = std::fs::File::open(&tarball)?;
        let mut ar = tar::Archive::new(flate2::read::GzDecoder::new(f));
        ar.unpack(dir)
            .context("the netboot tarball cannot be unpacked")?;
        Ok(())
    })?;

    // Userland: busybox, OpenRC, kexec-tools and their dependencies from the main repository.
    let repo = format!("{mirror}/{branch}/main/{arch}");
    let idx_url = format!("{repo}/APKINDEX.tar.gz");
    let idx_bytes = http::get_bytes(&idx_url, Duration::from_secs(10))?;
    match keys_dir(args.alpine_keys.as_deref()) {
        Some(keys) => {
            let key = verify_apkindex(&idx_bytes, &keys).with_context(|| idx_url.clone())?;
            eprintln!("fetch: {idx_url}: signature by {key} verified");
        }
        None => eprintln!(
            "fetch: {idx_url}: signature not checked (no /etc/apk/keys here; give Alpine's keys with --alpine-keys DIR)"
        ),
    }
    let index = parse_apkindex(&read_apkindex(&idx_bytes)?);

    let mut out = Fetched::default();
    for flavor in &flavors {
        let boot = tree.join("boot");
        let kernel = boot.join(format!("vmlinuz-{flavor}"));
        let config = boot.join(format!("config-{flavor}"));
        if !kernel.is_file() || !config.is_file() {
            bail!("the netboot tarball has no boot/vmlinuz-{flavor} or boot/config-{flavor}: flavors here are lts and virt (x86_64)");
        }
        let version = release_from_config(&config, flavor)
            .unwrap_or_else(|| format!("{}-{flavor}", netboot.version));
        let package = format!("linux-{flavor}");
        let package_version = index
            .iter()
            .find(|r| r.name == package)
            .map(|r| r.version.clone())
            .unwrap_or_else(|| netboot.version.clone());
        let system_map = boot.join(format!("System.map-{flavor}"));
        out.kernels.push(KernelEntry {
            name: format!(
                "alpine-{}-{flavor}-{arch}",
                netboot.branch.trim_start_matches('v')
            ),
            source: "alpine".into(),
            arch: arch.into(),
            version,
            package,
            package_version,
            kernel,
            system_map: if system_map.is_file() {
                system_map
            } else {
                config.clone()
            },
            config,
        });
        for (role, file) in [("initramfs", "initramfs"), ("modloop", "modloop")] {
            let p = boot.join(format!("{file}-{flavor}"));
            if p.is_file() {
                out.userland.push(UserlandEntry {
                    role: format!("{role}-{flavor}"),
                    source: "alpine".into(),
                    arch: arch.into(),
                    package: netboot.file.clone(),
                    package_version: netboot.version.clone(),
                    root: tree.clone(),
                    path: p,
                });
            }
        }
    }

    for rec in resolve(&index, &["busybox", "openrc", "kexec-tools"])? {
        let file = format!("{}-{}.apk", rec.name, rec.version);
        let key = format!("apk:{arch}:{}", rec.checksum);
        let blob = match cache.lookup(&key)? {
            Some(p) => p,
            None => {
                let tmp = cache.tempdir()?;
                let f = tmp.path().join(&file);
                http::download(&format!("{repo}/{file}"), &f)?;
                let bytes = std::fs::read(&f)?;
                verify_apk(&bytes, &rec)?;
                cache.insert(&key, &f, None)?
            }
        };
        let bytes = std::fs::read(&blob)?;
        let data = verify_apk(&bytes, &rec)?;
        let root = cache.extracted(&blob_sha(&blob)?, |dir| {
            let raw = gunzip(&bytes[data.0..data.1])?;
            let mut ar = tar::Archive::new(&raw[..]);
            ar.set_ignore_zeros(true);
            ar.unpack(dir)
                .with_context(|| format!("{file}: cannot unpack its data"))?;
            Ok(())
        })?;
        let (role, main) = match rec.name.as_str() {
            "busybox" => ("busybox".to_string(), "bin/busybox"),
            "openrc" => ("openrc".to_string(), "sbin/openrc"),
            "kexec-tools" => ("kexec-tools".to_string(), "usr/sbin/kexec"),
            other => (format!("lib:{other}"), ""),
        };
        let path = if main.is_empty() {
            root.clone()
        } else {
            root.join(main)
        };
        out.userland.push(UserlandEntry {
            role,
            source: "alpine".into(),
            arch: arch.into(),
            package: rec.name.clone(),
            package_version: rec.version.clone(),
            root,
            path,
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_release_index_with_block_scalars() {
        let y = "---\n-\n  title: \"Netboot\"\n  desc: |\n    Kernel, initramfs and modloop for\n    netboot.\n  branch: v3.24\n  arch: x86_64\n  version: 3.24.2\n  flavor: alpine-netboot\n  file: alpine-netboot-3.24.2-x86_64.tar.gz\n  sha256: ABCDEF\n-\n  flavor: alpine-virt\n  file: x.iso\n";
        let r = parse_releases(y);
        assert_eq!(r.len(), 2);
        assert_eq!(r[0].flavor, "alpine-netboot");
        assert_eq!(r[0].file, "alpine-netboot-3.24.2-x86_64.tar.gz");
        assert_eq!(r[0].sha256, "abcdef");
        assert_eq!(r[0].branch, "v3.24");
        assert_eq!(r[1].flavor, "alpine-virt");
    }

    #[test]
    fn parses_apkindex_and_resolves_so_dependencies() {
        let t = "C:Q1abc=\nP:openrc\nV:0.55-r0\nS:10\nD:so:libc.musl-x86_64.so.1 ifupdown-any\n\nC:Q1def=\nP:musl\nV:1.2-r0\np:so:libc.musl-x86_64.so.1=1\n\n";
        let idx = parse_apkindex(t);
        assert_eq!(idx.len(), 2);
        let r = resolve(&idx, &["openrc"]).unwrap();
        let names: Vec<_> = r.iter().map(|r| r.name.as_str()).collect();
        assert_eq!(names, vec!["openrc", "musl"]);
        assert!(resolve(&idx, &["nope"]).is_err());
    }
}
