//! The metering section: defaults, the one sink, and what it refuses, naming the key.

use super::*;

#[test]
fn metering_is_off_without_the_section_and_defaults_otherwise() {
    assert!(parse(MINIMAL).unwrap().metering.is_none());
    let cfg = parse(&minimal_plus(
        "[metering]\nspool_dir = \"spool\"\nnode = \"edge-1\"\n[metering.kinesis]\nstream = \"usage\"\n",
    ))
    .unwrap();
    let m = cfg.metering.unwrap();
    assert_eq!(m.window, Duration::from_secs(60));
    assert_eq!(m.max_tenants, 100_000);
    assert_eq!(m.node, "edge-1");
    assert_eq!(
        m.spool_dir,
        Path::new("/etc/cellgate/spool"),
        "relative to the file"
    );
    assert_eq!(
        m.sink,
        MeteringSink::Kinesis {
            stream: "usage".to_owned(),
            region: None,
            endpoint_url: None,
            timeout: Duration::from_secs(10),
        }
    );
    let file = parse(&minimal_plus(
        "[metering]\nwindow = \"5m\"\nspool_dir = \"/var/spool\"\n[metering.file]\npath = \"/var/log/usage.jsonl\"\n",
    ))
    .unwrap();
    let m = file.metering.unwrap();
    assert_eq!(m.window, Duration::from_secs(300));
    assert!(matches!(m.sink, MeteringSink::File { keep: 5, .. }));
    assert!(!m.node.is_empty(), "the host name by default");
}

#[test]
fn metering_refusals_name_the_key() {
    let sink = "[metering.file]\npath = \"u.jsonl\"\n";
    let cases = [
        ("[metering]\nspool_dir = \"s\"\n".to_owned(), "metering", "(no sink)"),
        (
            format!("[metering]\nspool_dir = \"s\"\n{sink}[metering.kinesis]\nstream = \"x\"\n"),
            "metering",
            "[metering.file] and [metering.kinesis]",
        ),
        (format!("[metering]\n{sink}"), "metering.spool_dir", "(unset)"),
        (
            format!("[metering]\nspool_dir = \"s\"\nwindow = \"1500ms\"\n{sink}"),
            "metering.window",
            "1s 500ms",
        ),
        (
            format!("[metering]\nspool_dir = \"s\"\nwindow = \"2h\"\n{sink}"),
            "metering.window",
            "2h",
        ),
        (
            format!("[metering]\nspool_dir = \"s\"\nnode = \"a/b\"\n{sink}"),
            "metering.node",
            "a/b",
        ),
        (
            format!("[metering]\nspool_dir = \"s\"\nmax_tenants = 0\n{sink}"),
            "metering.max_tenants",
            "0",
        ),
        (
            "[metering]\nspool_dir = \"s\"\n[metering.kinesis]\nstream = \"no spaces\"\n".to_owned(),
            "metering.kinesis.stream",
            "no spaces",
        ),
        (
            "[metering]\nspool_dir = \"s\"\n[metering.kinesis]\nstream = \"u\"\nendpoint_url = \"localhost:4566\"\n".to_owned(),
            "metering.kinesis.endpoint_url",
            "localhost:4566",
        ),
    ];
    for (text, key, value) in cases {
        let f = invalid(&minimal_plus(&text));
        assert_eq!(kv(&f), (key, value), "{text}");
    }
}
