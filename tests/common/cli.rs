//! The operator CLI as its tests run it (`tests/apikey_cli.rs`, `tests/placement_cli.rs`,
//! `tests/registry_export.rs`): the binary with test credentials and nothing from outside (no
//! endpoint, profile or table), and its answer: the JSON it printed, or its one stderr line
//! (exit 2, nothing on stdout).
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use serde_json::Value;

/// `cellgate ARGV` with test credentials and a region, and no table or endpoint from outside.
pub fn cellgate(argv: &[&str]) -> tokio::process::Command {
    let mut cmd = tokio::process::Command::new(env!("CARGO_BIN_EXE_cellgate"));
    cmd.args(argv)
        .env("AWS_ACCESS_KEY_ID", "test")
        .env("AWS_SECRET_ACCESS_KEY", "test")
        .env("AWS_REGION", "us-east-1")
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .env_remove("AWS_ENDPOINT_URL")
        .env_remove("AWS_PROFILE")
        .env_remove("CELLGATE_REGISTRY_TABLE");
    cmd
}

/// Runs `cmd`: its JSON on success; on failure (exit 2, nothing on stdout) its one stderr line.
pub async fn run(mut cmd: tokio::process::Command) -> Result<Value, String> {
    let out = cmd.output().await.unwrap();
    let stderr = String::from_utf8(out.stderr).unwrap();
    if out.status.success() {
        return Ok(serde_json::from_slice(&out.stdout).unwrap());
    }
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        out.stdout.is_empty(),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    Err(stderr.trim_end().to_owned())
}
