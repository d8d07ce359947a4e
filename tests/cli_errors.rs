//! The operator CLI's failures, from the real `cellgate` binary: a failed DynamoDB call is one
//! line on stderr naming the operation and the table, with a hint for the usual cause (an
//! unreachable endpoint, a missing table against moto, an endpoint that lacks the operation,
//! access denied, no credentials), and exit code 2; a bad `--state`/`--status`/`--protocol`
//! lists the accepted values. The moto test needs `CELLGATE_TEST_DYNAMODB`, which `tests/run.sh` sets.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener};
use std::process::Command;

const REACHABLE: &str = "is the endpoint reachable? (--endpoint-url / AWS_ENDPOINT_URL)";

/// `cellgate ARGS` with test credentials and a region, and no endpoint or table from outside.
fn cellgate(args: &[&str]) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_cellgate"));
    cmd.args(args)
        .env("AWS_ACCESS_KEY_ID", "test")
        .env("AWS_SECRET_ACCESS_KEY", "test")
        .env("AWS_REGION", "us-east-1")
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .env_remove("AWS_ENDPOINT_URL")
        .env_remove("AWS_PROFILE")
        .env_remove("CELLGATE_REGISTRY_TABLE");
    cmd
}

/// Runs `cmd`, which must fail with exit code 2, print nothing on stdout and exactly one line
/// on stderr, free of `Debug` dumps; returns that line.
fn one_line_failure(cmd: &mut Command) -> String {
    let out = cmd.output().unwrap();
    let stderr = String::from_utf8(out.stderr).unwrap();
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        out.stdout.is_empty(),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    for dump in ["{ ", "DispatchFailure(", "ServiceError(", "Some("] {
        assert!(!stderr.contains(dump), "{stderr}");
    }
    stderr.trim_end().to_owned()
}

#[test]
fn an_unreachable_endpoint_is_one_line_with_the_operation_table_and_hint() {
    let line = one_line_failure(&mut cellgate(&[
        "tenant",
        "get",
        "acme",
        "--table",
        "reg",
        "--endpoint-url",
        "http://127.0.0.1:1",
    ]));
    assert!(
        line.starts_with("cellgate: GetItem on table reg: cannot connect"),
        "{line}"
    );
    assert!(line.ends_with(REACHABLE), "{line}");
}

#[test]
fn missing_credentials_name_the_settings() {
    let home = tempfile::tempdir().unwrap();
    let nowhere = home.path().join("none");
    let mut cmd = cellgate(&[
        "registry",
        "epoch",
        "--table",
        "reg",
        "--endpoint-url",
        "http://127.0.0.1:1",
    ]);
    cmd.env_remove("AWS_ACCESS_KEY_ID")
        .env_remove("AWS_SECRET_ACCESS_KEY")
        .env_remove("AWS_SESSION_TOKEN")
        .env_remove("AWS_WEB_IDENTITY_TOKEN_FILE")
        .env_remove("AWS_CONTAINER_CREDENTIALS_RELATIVE_URI")
        .env_remove("AWS_CONTAINER_CREDENTIALS_FULL_URI")
        .env("HOME", home.path())
        .env("AWS_CONFIG_FILE", &nowhere)
        .env("AWS_SHARED_CREDENTIALS_FILE", &nowhere);
    let line = one_line_failure(&mut cmd);
    assert!(
        line.starts_with("cellgate: GetItem on table reg: "),
        "{line}"
    );
    assert!(
        line.contains("no AWS credentials found: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY"),
        "{line}"
    );
}

#[test]
fn a_missing_table_says_to_run_registry_init() {
    let endpoint = std::env::var("CELLGATE_TEST_DYNAMODB").unwrap_or_else(|_| {
        panic!("CELLGATE_TEST_DYNAMODB is not set: run the suite with `bash tests/run.sh`")
    });
    let table = format!("missing-{}", fastrand::u32(..));
    for args in [
        &["tenant", "get", "acme"][..],
        &["cell", "put", "cell-1", "--target", "http://10.0.0.1:80"],
        &["registry", "epoch"],
    ] {
        let mut cmd = cellgate(args);
        cmd.args(["--table", &table, "--endpoint-url", &endpoint]);
        let line = one_line_failure(&mut cmd);
        assert!(
            line.starts_with(&format!(
                "cellgate: GetItem on table {table}: ResourceNotFoundException"
            )),
            "{line}"
        );
        assert!(
            line.contains(&format!("run `cellgate registry init --table {table}`")),
            "{line}"
        );
    }
}

/// A server that answers every request with HTTP 400 and this DynamoDB error body.
fn answering(error_type: &str, message: &str) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let body = format!(
        r#"{{"__type":"com.amazonaws.dynamodb.v20120810#{error_type}","message":"{message}"}}"#
    );
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            let mut reader = BufReader::new(stream.try_clone().unwrap());
            let mut length = 0;
            loop {
                let mut line = String::new();
                if reader.read_line(&mut line).unwrap_or(0) == 0 || line == "\r\n" {
                    break;
                }
                if let Some((name, value)) = line.split_once(':')
                    && name.eq_ignore_ascii_case("content-length")
                {
                    length = value.trim().parse().unwrap_or(0);
                }
            }
            let mut request = vec![0; length];
            let _ = reader.read_exact(&mut request);
            let _ = write!(
                stream,
                "HTTP/1.1 400 Bad Request\r\ncontent-type: application/x-amz-json-1.0\r\n\
                 content-length: {}\r\nconnection: close\r\n\r\n{body}",
                body.len()
            );
        }
    });
    addr
}

#[test]
fn an_endpoint_lacking_an_operation_or_refusing_access_is_named() {
    let endpoint = format!(
        "http://{}",
        answering(
            "UnknownOperationException",
            "An unknown operation was requested."
        )
    );
    let line = one_line_failure(&mut cellgate(&[
        "registry",
        "init",
        "--table",
        "reg",
        "--endpoint-url",
        &endpoint,
    ]));
    assert_eq!(
        line,
        "cellgate: CreateTable on table reg: UnknownOperationException: An unknown operation \
         was requested; the endpoint does not implement CreateTable"
    );
    let endpoint = format!(
        "http://{}",
        answering(
            "AccessDeniedException",
            "not authorized to perform: dynamodb:Scan"
        )
    );
    let line = one_line_failure(&mut cellgate(&[
        "cell",
        "list",
        "--table",
        "reg",
        "--endpoint-url",
        &endpoint,
    ]));
    assert!(
        line.starts_with("cellgate: Scan on table reg: AccessDeniedException: not authorized")
            && line.ends_with("the credentials in use need dynamodb:Scan on table reg"),
        "{line}"
    );
}

#[test]
fn a_bad_state_or_status_lists_the_accepted_values() {
    let out = cellgate(&["cell", "put", "cell-1", "--state", "UP", "--table", "reg"])
        .output()
        .unwrap();
    let stderr = String::from_utf8(out.stderr).unwrap();
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("'UP'") && stderr.contains("ACTIVE, DRAINING, DOWN"),
        "{stderr}"
    );
    let out = cellgate(&["tenant", "put", "acme", "--cell", "c", "--status", "active"])
        .output()
        .unwrap();
    let stderr = String::from_utf8(out.stderr).unwrap();
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("ACTIVE, SUSPENDED, MIGRATING, OFFBOARDED"),
        "{stderr}"
    );
}

#[test]
fn a_bad_protocol_lists_the_accepted_names() {
    let out = cellgate(&[
        "cell",
        "put",
        "cell-1",
        "--protocol",
        "h3",
        "--table",
        "reg",
        "--endpoint-url",
        "http://127.0.0.1:1",
    ])
    .output()
    .unwrap();
    let stderr = String::from_utf8(out.stderr).unwrap();
    // Refused by the parser: the table is never asked (no connection error).
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("'h3'")
            && stderr.contains("--protocol")
            && stderr.contains("http1, http2, auto")
            && !stderr.contains("cannot connect"),
        "{stderr}"
    );
}
