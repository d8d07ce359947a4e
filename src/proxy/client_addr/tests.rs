#![allow(clippy::unwrap_used)]

use super::*;

fn v2(cmd: u8, fam: u8, body: &[u8]) -> Vec<u8> {
    let mut out = V2_SIGNATURE.to_vec();
    out.push(0x20 | cmd);
    out.push(fam);
    out.extend_from_slice(&u16::try_from(body.len()).unwrap().to_be_bytes());
    out.extend_from_slice(body);
    out
}

#[test]
fn v1_lines_give_the_source_address_and_their_length() {
    let line = b"PROXY TCP4 203.0.113.7 10.0.0.1 51234 443\r\nGET / HTTP/1.1\r\n";
    let h = parse_proxy_header(line).unwrap().unwrap();
    assert_eq!(h.source, Some("203.0.113.7:51234".parse().unwrap()));
    assert_eq!(&line[h.len..h.len + 3], b"GET");
    let six = b"PROXY TCP6 2001:db8::1 2001:db8::2 1 2\r\n";
    assert_eq!(
        parse_proxy_header(six).unwrap().unwrap().source,
        Some("[2001:db8::1]:1".parse().unwrap())
    );
    let unknown = b"PROXY UNKNOWN whatever follows\r\n";
    assert_eq!(parse_proxy_header(unknown).unwrap().unwrap().source, None);
}

#[test]
fn v2_headers_give_the_source_address_and_local_keeps_the_socket() {
    let mut body = vec![198, 51, 100, 9, 10, 0, 0, 1];
    body.extend_from_slice(&4242u16.to_be_bytes());
    body.extend_from_slice(&443u16.to_be_bytes());
    body.extend_from_slice(&[0x04, 0x00, 0x01, 0xff]); // a TLV, skipped
    let mut bytes = v2(1, 0x11, &body);
    bytes.extend_from_slice(b"GET /");
    let h = parse_proxy_header(&bytes).unwrap().unwrap();
    assert_eq!(h.source, Some("198.51.100.9:4242".parse().unwrap()));
    assert_eq!(&bytes[h.len..], b"GET /");
    let mut six = vec![0u8; 36];
    six[15] = 1;
    six[32..34].copy_from_slice(&80u16.to_be_bytes());
    assert_eq!(
        parse_proxy_header(&v2(1, 0x21, &six))
            .unwrap()
            .unwrap()
            .source,
        Some("[::1]:80".parse().unwrap())
    );
    let local = v2(0, 0x00, &[]);
    assert_eq!(parse_proxy_header(&local).unwrap().unwrap().source, None);
}

#[test]
fn partial_headers_ask_for_more_and_everything_else_is_refused() {
    let full = b"PROXY TCP4 203.0.113.7 10.0.0.1 51234 443\r\n";
    for n in 0..full.len() {
        assert_eq!(parse_proxy_header(&full[..n]), Ok(None), "{n} bytes");
    }
    let two = v2(1, 0x11, &[1; 12]);
    for n in 0..two.len() {
        assert_eq!(parse_proxy_header(&two[..n]), Ok(None), "{n} bytes");
    }
    use ProxyHeaderError::{Malformed, Missing};
    let bad: &[&[u8]] = &[
        b"GET / HTTP/1.1\r\nHost: a\r\n\r\n",
        b"PROXY TCP4 1.2.3.4 5.6.7.8 1 2 3\r\n",
        b"PROXY TCP4 ::1 ::2 1 2\r\n",
        b"PROXY TCP4 1.2.3.4 5.6.7.8 01 2\r\n",
        b"PROXY TCP4 1.2.3.4 5.6.7.8 99999 2\r\n",
        b"PROXY UDP4 1.2.3.4 5.6.7.8 1 2\r\n",
        b"PROXY TCP4 1.2.3.4 5.6.7.8 1 2\n",
    ];
    for b in bad {
        let e = parse_proxy_header(b).unwrap_err();
        assert!(
            matches!(e, Malformed(_) | Missing),
            "{:?}",
            String::from_utf8_lossy(b)
        );
    }
    let long = format!("PROXY TCP4 {}\r\n", "1".repeat(200));
    assert!(matches!(
        parse_proxy_header(long.as_bytes()),
        Err(Malformed(_))
    ));
    let mut wrong_version = v2(1, 0x11, &[1; 12]);
    wrong_version[12] = 0x11;
    assert!(matches!(
        parse_proxy_header(&wrong_version),
        Err(Malformed(_))
    ));
    assert!(matches!(
        parse_proxy_header(&v2(1, 0x11, &[1; 4])),
        Err(Malformed(_))
    ));
}

fn hops() -> Vec<IpNet> {
    vec![
        "10.0.0.0/8".parse().unwrap(),
        "2001:db8::/32".parse().unwrap(),
    ]
}

fn xff(values: &[&str]) -> HeaderMap {
    let mut h = HeaderMap::new();
    for v in values {
        h.append(X_FORWARDED_FOR, v.parse().unwrap());
    }
    h
}

#[test]
fn the_client_is_the_rightmost_untrusted_forwarded_address() {
    let ip = |s: &str| Some(s.parse::<IpAddr>().unwrap());
    let hops = hops();
    assert_eq!(
        forwarded_client(&xff(&["203.0.113.7"]), &hops),
        ip("203.0.113.7")
    );
    // A client prepending a made-up address does not get to choose.
    assert_eq!(
        forwarded_client(&xff(&["1.1.1.1, 203.0.113.7, 10.0.0.5"]), &hops),
        ip("203.0.113.7")
    );
    assert_eq!(
        forwarded_client(&xff(&["1.1.1.1", "203.0.113.7", "10.0.0.5"]), &hops),
        ip("203.0.113.7")
    );
    assert_eq!(
        forwarded_client(&xff(&["[2001:db9::1]:443"]), &hops),
        ip("2001:db9::1")
    );
    assert_eq!(
        forwarded_client(&xff(&["10.0.0.9, 10.0.0.5"]), &hops),
        ip("10.0.0.9")
    );
    assert_eq!(forwarded_client(&xff(&[]), &hops), None);
    assert_eq!(forwarded_client(&xff(&["unknown, 10.0.0.5"]), &hops), None);
    assert!(trusted(&hops, "::ffff:10.1.2.3".parse().unwrap()));
    assert!(!trusted(&hops, "11.0.0.1".parse().unwrap()));
}
