//! Request paths as a cell is likely to route them, for the rules that match on a path prefix
//! (route classes, entitlement routes).
//!
//! Compared this way, `//api/export`, `/api/%65xport`, `/api/export;x`, `/API/export` or
//! `/api/./export` cannot slip past a rule for `/api/export`: percent-escapes of unreserved
//! characters are decoded, `;` parameters dropped from each segment, empty and `.` segments
//! dropped, `..` resolved, and the comparison ignores ASCII case, by whole segments. A path
//! already in that form (the usual case) is compared in place, without allocating.

use std::borrow::Cow;

/// Whether `path` is under `prefix` by whole segments, ignoring ASCII case: `/export` covers
/// `/export` and `/Export/x` but not `/exports`; a prefix ending in `/` covers everything below.
#[must_use]
pub fn prefix_matches(prefix: &str, path: &str) -> bool {
    let (p, q) = (prefix.as_bytes(), path.as_bytes());
    if q.len() < p.len() || !q[..p.len()].eq_ignore_ascii_case(p) {
        return false;
    }
    let rest = &q[p.len()..];
    prefix.ends_with('/') || rest.is_empty() || rest[0] == b'/'
}

/// Whether `path` needs no work: no escapes, parameters, empty or dot segments.
fn is_canonical(path: &str) -> bool {
    let b = path.as_bytes();
    !b.iter().any(|&c| c == b'%' || c == b';') && !b.windows(2).any(|w| w == b"//" || w == b"/.")
}

/// The path a cell most likely routes: see the module docs. `/` for an empty result.
#[must_use]
pub fn canonical_path(path: &str) -> Cow<'_, str> {
    if is_canonical(path) {
        return Cow::Borrowed(path);
    }
    let decoded = decode_unreserved(path);
    let mut segments: Vec<&str> = Vec::new();
    for seg in decoded.split('/') {
        let seg = seg.split(';').next().unwrap_or("");
        match seg {
            "" | "." => {}
            ".." => {
                segments.pop();
            }
            s => segments.push(s),
        }
    }
    let mut out = String::with_capacity(path.len());
    for s in &segments {
        out.push('/');
        out.push_str(s);
    }
    if out.is_empty() || (path.ends_with('/') && !segments.is_empty()) {
        out.push('/');
    }
    Cow::Owned(out)
}

/// Decodes `%XX` where it stands for an unreserved character (`A-Z a-z 0-9 - . _ ~`); other
/// escapes (`%2F` among them) stay as they are.
fn decode_unreserved(path: &str) -> String {
    let b = path.as_bytes();
    let mut out = String::with_capacity(path.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%'
            && i + 2 < b.len()
            && let (Some(h), Some(l)) = (hex(b[i + 1]), hex(b[i + 2]))
        {
            let c = (h << 4) | l;
            if c.is_ascii_alphanumeric() || matches!(c, b'-' | b'.' | b'_' | b'~') {
                out.push(char::from(c));
                i += 3;
                continue;
            }
        }
        // Paths reaching here are ASCII (http::Uri refuses anything else in a path).
        out.push(char::from(b[i]));
        i += 1;
    }
    out
}

fn hex(c: u8) -> Option<u8> {
    match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        b'A'..=b'F' => Some(c - b'A' + 10),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn canonical_paths_are_borrowed() {
        for p in [
            "/",
            "/api/export",
            "/API/Export/1",
            "/a.b/c_d~e-f",
            "/x.json",
        ] {
            assert!(matches!(canonical_path(p), Cow::Borrowed(_)), "{p}");
        }
    }

    #[test]
    fn disguised_paths_are_seen_through() {
        for p in [
            "//api/export",
            "/api//export/",
            "/api/%65xport",
            "/api/%45XPORT",
            "/api/export;jsessionid=1",
            "/api/./export",
            "/api/x/../export",
            "/x/../../api/export/all",
            "/API/export",
        ] {
            let c = canonical_path(p);
            assert!(prefix_matches("/api/export", &c), "{p} -> {c}");
        }
        for p in [
            "/api/exports",
            "/api/%2Fexport",
            "/api/export%2F..",
            "/apix/export",
        ] {
            let c = canonical_path(p);
            assert!(!prefix_matches("/api/export", &c), "{p} -> {c}");
        }
        assert_eq!(canonical_path("/a/b/../.."), "/");
        assert_eq!(canonical_path("/a//b/"), "/a/b/");
        assert_eq!(canonical_path("/%7euser"), "/~user");
        assert_eq!(canonical_path("/bad%zz/%4"), "/bad%zz/%4");
    }

    #[test]
    fn prefixes_match_whole_segments_ignoring_case() {
        assert!(prefix_matches("/export", "/export"));
        assert!(prefix_matches("/export", "/EXPORT/x"));
        assert!(!prefix_matches("/export", "/exports"));
        assert!(prefix_matches("/export/", "/export/x"));
        assert!(!prefix_matches("/export/", "/export"));
        assert!(prefix_matches("/", "/anything"));
    }
}
