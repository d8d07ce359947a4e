//! The loadtest driver: named scenarios against a running cellgate and local echo cells.
//!
//! `cargo run --release --example loadtest -- <scenario> [flags]`, or `bash loadtest/run.sh
//! <scenario> [flags]`, which builds the proxy, starts a local DynamoDB-API server for the
//! scenarios that need one and pins the proxy and the driver to separate cores. `list` prints
//! the scenarios. Each scenario is bounded in time and count, targets 127.0.0.1 only, prints a
//! summary, and exits 1 when one of its checks fails (2 when it could not run).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;
mod dynamo_lite;
mod frame;
mod grpc;
mod process;
mod scenarios;

use scenarios::SCENARIOS;

fn main() {
    let mut args = std::env::args().skip(1);
    let name = args.next().unwrap_or_else(|| "list".to_owned());
    let rest: Vec<String> = args.collect();
    match name.as_str() {
        "list" | "-h" | "--help" | "help" => {
            println!(
                "usage: loadtest <scenario> [flags]   (bash loadtest/run.sh <scenario> [flags])"
            );
            for s in SCENARIOS {
                println!("  {:<8} {}", s.name, s.about);
            }
            println!(
                "tools:\n  dynamo-lite  a fast in-memory DynamoDB-API server on 127.0.0.1 (--port P --tenants N --cells C --targets URL,..)\n  \
                 grpc-cell    the echo.Echo gRPC cell (h2c) on a free 127.0.0.1 port, for --secs (900)\n  \
                 grpc-load    N concurrent gRPC calls for --secs at --addr (or a cell of its own): calls/s, p50/p99, errors by code"
            );
            return;
        }
        // For run.sh: what a scenario needs around it, as shell words.
        "plan" => {
            let Some(s) = rest.first().and_then(|n| scenarios::find(n)) else {
                eprintln!("loadtest: unknown scenario (loadtest list)");
                std::process::exit(2);
            };
            let moto = (s.needs_dynamodb)(&rest[1..]);
            println!(
                "moto={} proxy_process={}",
                u8::from(moto),
                u8::from(s.proxy_process)
            );
            return;
        }
        "dynamo-lite" => std::process::exit(dynamo_lite::run(rest)),
        "grpc-cell" => std::process::exit(grpc::run_cell(rest)),
        "grpc-load" => std::process::exit(grpc::run_load(rest)),
        _ => {}
    }
    let Some(s) = scenarios::find(&name) else {
        eprintln!("loadtest: unknown scenario {name:?}; scenarios:");
        for s in SCENARIOS {
            eprintln!("  {:<8} {}", s.name, s.about);
        }
        std::process::exit(2);
    };
    process::install_panic_hook();
    std::process::exit((s.run)(rest));
}
