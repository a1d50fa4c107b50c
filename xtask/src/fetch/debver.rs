//! Debian version ordering (`dpkg --compare-versions`), to pick the newest kernel package.
//!
//! Implemented here rather than shelling out per pair, because fetch compares every
//! candidate version apt knows about. The algorithm is dpkg's: epoch numerically, then
//! upstream version and revision by alternating non-digit runs (where `~` sorts before
//! everything, even the end of the string, and letters before other characters) and digit runs.

use std::cmp::Ordering;

fn split(v: &str) -> (u64, &str, &str) {
    let (epoch, rest) = match v.split_once(':') {
        Some((e, r)) => (e.parse().unwrap_or(0), r),
        None => (0, v),
    };
    match rest.rfind('-') {
        Some(i) => (epoch, &rest[..i], &rest[i + 1..]),
        None => (epoch, rest, ""),
    }
}

fn order(c: Option<u8>) -> i32 {
    match c {
        None => 0,
        Some(b'~') => -1,
        Some(c) if c.is_ascii_digit() => 0,
        Some(c) if c.is_ascii_alphabetic() => c as i32,
        Some(c) => c as i32 + 256,
    }
}

fn cmp_part(a: &str, b: &str) -> Ordering {
    let (a, b) = (a.as_bytes(), b.as_bytes());
    let (mut i, mut j) = (0, 0);
    while i < a.len() || j < b.len() {
        // Non-digit prefix.
        while (i < a.len() && !a[i].is_ascii_digit()) || (j < b.len() && !b[j].is_ascii_digit()) {
            let ca = a.get(i).copied().filter(|c| !c.is_ascii_digit());
            let cb = b.get(j).copied().filter(|c| !c.is_ascii_digit());
            let (oa, ob) = (order(ca), order(cb));
            if oa != ob {
                return oa.cmp(&ob);
            }
            if ca.is_some() {
                i += 1;
            }
            if cb.is_some() {
                j += 1;
            }
        }
        // Digit run, compared numerically (leading zeros ignored).
        while i < a.len() && a[i] == b'0' {
            i += 1;
        }
        while j < b.len() && b[j] == b'0' {
            j += 1;
        }
        let si = i;
        while i < a.len() && a[i].is_ascii_digit() {
            i += 1;
        }
        let sj = j;
        while j < b.len() && b[j].is_ascii_digit() {
            j += 1;
        }
        let (da, db) = (&a[si..i], &b[sj..j]);
        let c = da.len().cmp(&db.len()).then_with(|| da.cmp(db));
        if c != Ordering::Equal {
            return c;
        }
    }
    Ordering::Equal
}

/// Compares two Debian version strings as dpkg does.
pub fn compare(a: &str, b: &str) -> Ordering {
    let (ea, ua, ra) = split(a);
    let (eb, ub, rb) = split(b);
    ea.cmp(&eb)
        .then_with(|| cmp_part(ua, ub))
        .then_with(|| cmp_part(ra, rb))
}

/// The `n` newest distinct packages of a series, newest first: `candidates` are (package,
/// version) pairs as apt lists them (a package may appear once per suite that carries it);
/// each package counts once, at its newest version.
pub fn newest_n(candidates: &[(String, String)], n: usize) -> Vec<(String, String)> {
    let mut best: Vec<(String, String)> = Vec::new();
    for (p, v) in candidates {
        match best.iter_mut().find(|(bp, _)| bp == p) {
            Some(b) if compare(v, &b.1).is_gt() => b.1 = v.clone(),
            Some(_) => {}
            None => best.push((p.clone(), v.clone())),
        }
    }
    best.sort_by(|a, b| compare(&b.1, &a.1).then_with(|| a.0.cmp(&b.0)));
    best.truncate(n);
    best
}

#[cfg(test)]
mod tests {
    use super::{compare, newest_n};

    #[test]
    fn newest_n_counts_each_package_once_at_its_newest_version() {
        let c = |p: &str, v: &str| (p.to_string(), v.to_string());
        let apt = [
            c("linux-image-6.1.0-55-cloud-amd64", "6.1.158-1"),
            c("linux-image-6.1.0-56-cloud-amd64", "6.1.192-1"),
            c("linux-image-6.1.0-56-cloud-amd64", "6.1.192-2"),
            c("linux-image-6.1.0-9-cloud-amd64", "6.1.27-1"),
            c("linux-image-6.1.0-54-cloud-amd64", "6.1.150-1"),
        ];
        assert_eq!(
            newest_n(&apt, 2),
            vec![
                c("linux-image-6.1.0-56-cloud-amd64", "6.1.192-2"),
                c("linux-image-6.1.0-55-cloud-amd64", "6.1.158-1"),
            ]
        );
        assert_eq!(newest_n(&apt, 10).len(), 4);
        assert_eq!(newest_n(&apt, 10)[3].1, "6.1.27-1");
        assert!(newest_n(&[], 3).is_empty());
    }
    use std::cmp::Ordering::*;

    #[test]
    fn dpkg_ordering() {
        for (a, b, o) in [
            ("6.1.192-2", "6.1.192-2", Equal),
            ("6.1.192-2", "6.1.158-1", Greater),
            ("6.12.117-1~deb12u1", "6.12.117-1", Less),
            ("6.12.117-1~deb12u1", "6.12.48-1~deb12u1", Greater),
            ("1:2.0.25-3", "2.0.30-1", Greater),
            ("1.0~rc1", "1.0", Less),
            ("1.0a", "1.0", Greater),
            ("1.0+b1", "1.0a", Greater),
            ("1.01", "1.1", Equal),
            ("1.0-1", "1.0-1+b1", Less),
        ] {
            assert_eq!(compare(a, b), o, "{a} vs {b}");
        }
    }
}
