//! The Alpine fetch path against a mirror served on loopback by this test: a release index,
//! a netboot tarball with its checksums, an `APKINDEX.tar.gz` and `.apk`s built here with
//! real signature/control/data streams. Corrupted files must be rejected (never cached or
//! extracted), good ones fetched, and a re-run must download nothing.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::sync::{Arc, Mutex};

use base64::Engine;
use flate2::write::GzEncoder;
use sha1::Sha1;
use sha2::{Digest, Sha256};
use xtask::cache::Cache;
use xtask::fetch::{alpine, FetchArgs, Source};

type Files = Arc<Mutex<BTreeMap<String, Vec<u8>>>>;

/// A tiny HTTP/1.1 server on 127.0.0.1 serving `files`; records every path requested.
/// Bounded: it stops after 500 connections (the test needs a few dozen).
fn serve(files: Files, log: Arc<Mutex<Vec<String>>>) -> String {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind loopback");
    let addr = l.local_addr().expect("addr");
    std::thread::spawn(move || {
        for s in l.incoming().take(500) {
            let Ok(mut s) = s else { continue };
            let mut r = BufReader::new(s.try_clone().expect("clone"));
            let mut first = String::new();
            let _ = r.read_line(&mut first);
            loop {
                let mut h = String::new();
                if r.read_line(&mut h).map(|n| n == 0).unwrap_or(true) || h == "\r\n" {
                    break;
                }
            }
            let path = first.split_whitespace().nth(1).unwrap_or("/").to_string();
            log.lock().unwrap().push(path.clone());
            let body = files.lock().unwrap().get(&path).cloned();
            let _ = match body {
                Some(b) => {
                    let _ = write!(
                        s,
                        "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                        b.len()
                    );
                    s.write_all(&b)
                }
                None => write!(
                    s,
                    "HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
                ),
            };
        }
    });
    format!("http://{addr}/alpine")
}

fn gz(data: &[u8]) -> Vec<u8> {
    let mut e = GzEncoder::new(Vec::new(), flate2::Compression::default());
    e.write_all(data).unwrap();
    e.finish().unwrap()
}

/// A tar of `files`; `fragment` drops the end-of-archive blocks (as in apk's first streams).
fn tar_of(files: &[(&str, &[u8])], fragment: bool) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    for (name, data) in files {
        let mut h = tar::Header::new_gnu();
        h.set_size(data.len() as u64);
        h.set_mode(0o755);
        h.set_cksum();
        b.append_data(&mut h, name, *data).unwrap();
    }
    let mut v = b.into_inner().unwrap();
    if fragment {
        while v.len() >= 512 && v[v.len() - 512..].iter().all(|&x| x == 0) {
            v.truncate(v.len() - 512);
        }
    }
    v
}

/// Builds a v2 `.apk` and its APKINDEX record.
fn apk(
    name: &str,
    ver: &str,
    files: &[(&str, &[u8])],
    deps: &str,
    provides: &str,
) -> (Vec<u8>, String) {
    let sig = gz(&tar_of(
        &[(".SIGN.RSA.test.rsa.pub", b"not a real signature")],
        true,
    ));
    let data = gz(&tar_of(files, false));
    let pkginfo = format!(
        "pkgname = {name}\npkgver = {ver}\ndatahash = {}\n",
        hex::encode(Sha256::digest(&data))
    );
    let control = gz(&tar_of(&[(".PKGINFO", pkginfo.as_bytes())], true));
    let c = format!(
        "Q1{}",
        base64::engine::general_purpose::STANDARD.encode(Sha1::digest(&control))
    );
    let mut bytes = sig;
    bytes.extend_from_slice(&control);
    bytes.extend_from_slice(&data);
    let mut rec = format!(
        "C:{c}\nP:{name}\nV:{ver}\nA:x86_64\nS:{}\nI:1\nT:test\n",
        bytes.len()
    );
    if !deps.is_empty() {
        rec += &format!("D:{deps}\n");
    }
    if !provides.is_empty() {
        rec += &format!("p:{provides}\n");
    }
    (bytes, rec)
}

struct Mirror {
    files: Files,
    log: Arc<Mutex<Vec<String>>>,
    url: String,
    tarball_path: String,
    tarball: Vec<u8>,
    zlib_path: String,
    zlib: Vec<u8>,
}

fn mirror() -> Mirror {
    let files: Files = Arc::default();
    let log = Arc::default();
    let url = serve(files.clone(), Arc::clone(&log));
    let rel = "/alpine/latest-stable/releases/x86_64";
    let cfg = b"#\n# Automatically generated file; DO NOT EDIT.\n# Linux/x86 6.6.99-0 Kernel Configuration\n#\nCONFIG_KEXEC=y\n";
    let tarball = gz(&tar_of(
        &[
            ("boot/vmlinuz-lts", b"MZ fake lts kernel"),
            ("boot/config-lts", cfg),
            ("boot/initramfs-lts", b"initramfs"),
            ("boot/modloop-lts", b"modloop"),
            ("boot/vmlinuz-virt", b"MZ fake virt kernel"),
            ("boot/config-virt", cfg),
        ],
        false,
    ));
    let sum = hex::encode(Sha256::digest(&tarball));
    let file = "alpine-netboot-3.99.1-x86_64.tar.gz";
    let yaml = format!(
        "---\n-\n  title: \"Netboot\"\n  desc: |\n    Kernel, initramfs and modloop for\n    netboot.\n  branch: v3.99\n  arch: x86_64\n  version: 3.99.1\n  flavor: alpine-netboot\n  file: {file}\n  iso: {file}\n  date: 2026-09-17\n  size: {}\n  sha256: {sum}\n  sha512: 00\n",
        tarball.len()
    );
    let repo = "/alpine/latest-stable/main/x86_64";
    let (musl, musl_rec) = apk(
        "musl",
        "1.2.5-r0",
        &[("lib/ld-musl-x86_64.so.1", b"musl")],
        "",
        "so:libc.musl-x86_64.so.1=1",
    );
    let (bb, bb_rec) = apk(
        "busybox",
        "1.37.0-r0",
        &[("bin/busybox", b"busybox")],
        "so:libc.musl-x86_64.so.1",
        "",
    );
    let (orc, orc_rec) = apk(
        "openrc",
        "0.55.1-r0",
        &[("sbin/openrc", b"openrc")],
        "so:libc.musl-x86_64.so.1",
        "",
    );
    let (zlib, zlib_rec) = apk(
        "zlib",
        "1.3.1-r0",
        &[("usr/lib/libz.so.1", b"zlib")],
        "so:libc.musl-x86_64.so.1",
        "so:libz.so.1=1.3.1",
    );
    let (kt, kt_rec) = apk(
        "kexec-tools",
        "2.0.29-r0",
        &[("usr/sbin/kexec", b"kexec")],
        "so:libc.musl-x86_64.so.1 so:libz.so.1",
        "",
    );
    let (lts, lts_rec) = apk("linux-lts", "6.6.99-r0", &[("boot/x", b"x")], "", "");
    let index_text = [musl_rec, bb_rec, orc_rec, zlib_rec, kt_rec, lts_rec].join("\n");
    let mut apkindex = gz(&tar_of(&[(".SIGN.RSA.test.rsa.pub", b"sig")], true));
    apkindex.extend(gz(&tar_of(
        &[
            ("DESCRIPTION", b"test"),
            ("APKINDEX", index_text.as_bytes()),
        ],
        false,
    )));
    {
        let mut f = files.lock().unwrap();
        f.insert(format!("{rel}/latest-releases.yaml"), yaml.into_bytes());
        f.insert(format!("{rel}/{file}"), tarball.clone());
        f.insert(
            format!("{rel}/{file}.sha256"),
            format!("{sum}  {file}\n").into_bytes(),
        );
        f.insert(format!("{repo}/APKINDEX.tar.gz"), apkindex);
        for (n, b) in [
            ("musl-1.2.5-r0", musl),
            ("busybox-1.37.0-r0", bb),
            ("openrc-0.55.1-r0", orc),
            ("kexec-tools-2.0.29-r0", kt),
            ("linux-lts-6.6.99-r0", lts),
        ] {
            f.insert(format!("{repo}/{n}.apk"), b);
        }
        f.insert(format!("{repo}/zlib-1.3.1-r0.apk"), zlib.clone());
    }
    Mirror {
        files,
        log,
        url,
        tarball_path: format!("{rel}/{file}"),
        tarball,
        zlib_path: format!("{repo}/zlib-1.3.1-r0.apk"),
        zlib,
    }
}

fn args(m: &Mirror, source: Source) -> FetchArgs {
    FetchArgs {
        source,
        release: vec![],
        flavor: vec![],
        arch: vec![],
        mirror: Some(m.url.clone()),
        kernel: None,
        initrd: None,
        probe_timeout: 4,
    }
}

fn flip_last_byte(b: &[u8]) -> Vec<u8> {
    let mut v = b.to_vec();
    if let Some(x) = v.last_mut() {
        *x ^= 0xff;
    }
    v
}

#[test]
fn alpine_fetch_verifies_everything_from_a_loopback_mirror() {
    let m = mirror();
    let dir = tempfile::tempdir().unwrap();
    let cache = Cache::open(dir.path().join("cache")).unwrap();

    // 1. A corrupted netboot tarball is rejected: nothing cached, nothing extracted.
    m.files
        .lock()
        .unwrap()
        .insert(m.tarball_path.clone(), flip_last_byte(&m.tarball));
    let err = format!(
        "{:#}",
        alpine::fetch(&cache, &args(&m, Source::Alpine)).unwrap_err()
    );
    assert!(err.contains("was not used"), "{err}");
    let extracted = std::fs::read_dir(cache.root().join("extract"))
        .unwrap()
        .count();
    assert_eq!(
        extracted, 0,
        "a tarball that failed verification was extracted"
    );

    // 2. Good tarball, but a package whose data does not match its index record.
    m.files
        .lock()
        .unwrap()
        .insert(m.tarball_path.clone(), m.tarball.clone());
    m.files
        .lock()
        .unwrap()
        .insert(m.zlib_path.clone(), flip_last_byte(&m.zlib));
    let err = format!(
        "{:#}",
        alpine::fetch(&cache, &args(&m, Source::Alpine)).unwrap_err()
    );
    assert!(
        err.contains("zlib-1.3.1-r0.apk") && err.contains("rejected"),
        "{err}"
    );
    for e in std::fs::read_dir(cache.root().join("extract")).unwrap() {
        let d = e.unwrap().path();
        assert!(
            !d.join("usr/lib/libz.so.1").exists(),
            "the corrupt package was extracted into {}",
            d.display()
        );
    }

    // 3. Everything good: kernels and userland land in the result.
    m.files
        .lock()
        .unwrap()
        .insert(m.zlib_path.clone(), m.zlib.clone());
    let f = alpine::fetch(&cache, &args(&m, Source::Alpine)).unwrap();
    let names: Vec<_> = f.kernels.iter().map(|k| k.name.as_str()).collect();
    assert_eq!(
        names,
        vec!["alpine-3.99-lts-x86_64", "alpine-3.99-virt-x86_64"]
    );
    let lts = &f.kernels[0];
    assert_eq!(lts.version, "6.6.99-0-lts");
    assert_eq!(lts.package_version, "6.6.99-r0");
    assert_eq!(std::fs::read(&lts.kernel).unwrap(), b"MZ fake lts kernel");
    let roles: Vec<_> = f.userland.iter().map(|u| u.role.as_str()).collect();
    for want in [
        "initramfs-lts",
        "modloop-lts",
        "busybox",
        "openrc",
        "kexec-tools",
        "lib:musl",
        "lib:zlib",
    ] {
        assert!(roles.contains(&want), "missing role {want} in {roles:?}");
    }
    let kt = f.userland.iter().find(|u| u.role == "kexec-tools").unwrap();
    assert_eq!(std::fs::read(&kt.path).unwrap(), b"kexec");

    // 4. A re-run downloads nothing (only the small indexes are read again).
    m.log.lock().unwrap().clear();
    alpine::fetch(&cache, &args(&m, Source::Alpine)).unwrap();
    let fetched: Vec<String> = m
        .log
        .lock()
        .unwrap()
        .iter()
        .filter(|p| p.ends_with(".apk") || p.ends_with(".tar.gz") && !p.contains("APKINDEX"))
        .cloned()
        .collect();
    assert!(fetched.is_empty(), "a re-run downloaded {fetched:?}");
}

#[test]
fn auto_prefers_an_answering_alpine_mirror() {
    let m = mirror();
    let dir = tempfile::tempdir().unwrap();
    let cache = Cache::open(dir.path().join("cache")).unwrap();
    let f = xtask::fetch::run(&cache, &args(&m, Source::Auto)).unwrap();
    assert!(f.kernels.iter().all(|k| k.source == "alpine"));
    let manifest = std::fs::read_to_string(cache.root().join("kernels.json")).unwrap();
    assert!(manifest.contains("alpine-3.99-lts-x86_64"), "{manifest}");
}

#[test]
fn probe_reports_why_a_mirror_is_unusable() {
    let why = alpine::probe(None, std::time::Duration::from_secs(1)).unwrap_err();
    assert!(why.contains("no Alpine mirror is configured"), "{why}");
    // A closed loopback port answers at once with a refusal.
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/alpine", l.local_addr().unwrap());
    drop(l);
    assert!(alpine::probe(Some(&url), std::time::Duration::from_secs(2)).is_err());
}
