//! The `cellgate` command: serve | validate | demo | token, and the operator commands on the
//! DynamoDB registry (registry | tenant | cell | apikey, in `cellgate::ops`).

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use cellgate::config::{Config, Overrides, RegistryConfig};
use cellgate::{demo, ops, server::Server, telemetry};
use clap::{Parser, Subcommand};

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(
    name = "cellgate",
    version,
    about = "Edge proxy for cell-based SaaS: routes each tenant to its cell"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the proxy.
    Serve {
        #[arg(long, short, env = "CELLGATE_CONFIG")]
        config: PathBuf,
        /// Replaces the first listener's address (else CELLGATE_LISTEN, else the file).
        #[arg(long)]
        listen: Option<String>,
        /// Replaces the admin address (else CELLGATE_ADMIN_LISTEN, else the file).
        #[arg(long)]
        admin: Option<String>,
        /// Take the listening sockets over from the cellgate serving at
        /// `server.handover_socket`; it drains and exits once this one serves.
        #[arg(long)]
        takeover: bool,
    },
    /// Check a config file (and its registry file); exit non-zero with the reason.
    Validate {
        #[arg(long, short)]
        config: PathBuf,
    },
    /// Run the proxy with three local demo cells and a file registry; no AWS needed.
    Demo {
        #[arg(long, default_value = "127.0.0.1:8080")]
        listen: String,
        #[arg(long, default_value = "127.0.0.1:9090")]
        admin: String,
    },
    /// Mint a JWT for trying the JWT path (demo key unless --key is given).
    Token {
        #[arg(long)]
        tenant: String,
        /// Lifetime, e.g. 1h, 15m.
        #[arg(long, default_value = "1h")]
        ttl: String,
        #[arg(long)]
        sub: Option<String>,
        /// PEM private key file (default: the public demo key).
        #[arg(long)]
        key: Option<PathBuf>,
        /// Algorithm for --key: RS256, ES256, EdDSA, HS256 (HS256 reads the secret from --key).
        #[arg(long, default_value = "EdDSA")]
        alg: String,
        #[arg(long)]
        kid: Option<String>,
        #[arg(long, default_value = demo::DEMO_ISSUER)]
        issuer: String,
        #[arg(long, default_value = demo::DEMO_AUDIENCE)]
        audience: String,
    },
    /// The DynamoDB registry table: create it, read its epoch, export it to a file.
    Registry {
        #[command(flatten)]
        table: ops::TableArgs,
        #[command(subcommand)]
        command: ops::RegistryCommand,
    },
    /// Tenant records in the DynamoDB registry.
    Tenant {
        #[command(flatten)]
        table: ops::TableArgs,
        #[command(subcommand)]
        command: ops::TenantCommand,
    },
    /// Cell records in the DynamoDB registry.
    Cell {
        #[command(flatten)]
        table: ops::TableArgs,
        #[command(subcommand)]
        command: ops::CellCommand,
    },
    /// API keys in the DynamoDB registry: create, list, revoke, rotate.
    Apikey {
        #[command(flatten)]
        table: ops::TableArgs,
        #[command(subcommand)]
        command: ops::ApiKeyCommand,
    },
}

fn main() -> ExitCode {
    cellgate::auth::crypto::install();
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Serve {
            config,
            listen,
            admin,
            takeover,
        } => serve(
            &config,
            Overrides {
                listen,
                admin,
                ..Overrides::default()
            },
            takeover,
        ),
        Command::Validate { config } => validate(&config),
        Command::Demo { listen, admin } => run_demo(listen, admin),
        Command::Token {
            tenant,
            ttl,
            sub,
            key,
            alg,
            kid,
            issuer,
            audience,
        } => token(tenant, &ttl, sub, key, &alg, kid, issuer, audience),
        Command::Registry { table, command } => {
            let to_stderr = command.writes_stdout();
            operate_to(&table, to_stderr, |r| async move {
                ops::registry_command(&r, command).await
            })
        }
        // `tenant place --region` and `cell put --region` name a cell's region, not the table's.
        Command::Tenant { table, command } => {
            let table = if command.names_cell_region() {
                table.without_region()
            } else {
                table
            };
            operate(
                &table,
                |r| async move { ops::tenant_command(&r, command).await },
            )
        }
        Command::Cell { table, command } => {
            let table = if command.names_cell_region() {
                table.without_region()
            } else {
                table
            };
            operate(
                &table,
                |r| async move { ops::cell_command(&r, command).await },
            )
        }
        // No table: the record is printed for a file registry.
        Command::Apikey {
            command: ops::ApiKeyCommand::Create(c),
            ..
        } if c.print_record => ops::print_record(&c)
            .map_err(anyhow::Error::from)
            .and_then(|out| print(&out, false)),
        Command::Apikey { table, command } => {
            operate(
                &table,
                |r| async move { ops::apikey_command(&r, command).await },
            )
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("cellgate: {e:#}");
            ExitCode::from(2)
        }
    }
}

/// Runs one operator command against the registry and prints its JSON result.
fn operate<F, Fut>(table: &ops::TableArgs, command: F) -> anyhow::Result<()>
where
    F: FnOnce(ops::Registry) -> Fut,
    Fut: Future<Output = Result<serde_json::Value, ops::OpsError>>,
{
    operate_to(table, false, command)
}

/// As [`operate`]; the result goes to stderr when the command writes its records to stdout.
fn operate_to<F, Fut>(table: &ops::TableArgs, to_stderr: bool, command: F) -> anyhow::Result<()>
where
    F: FnOnce(ops::Registry) -> Fut,
    Fut: Future<Output = Result<serde_json::Value, ops::OpsError>>,
{
    let out = runtime()?.block_on(async {
        let registry = ops::registry(table).await?;
        command(registry).await
    })?;
    print(&out, to_stderr)
}

/// A command's JSON result, pretty-printed to stdout (or stderr).
fn print(out: &serde_json::Value, to_stderr: bool) -> anyhow::Result<()> {
    let text = serde_json::to_string_pretty(out)?;
    if to_stderr {
        eprintln!("{text}");
    } else {
        println!("{text}");
    }
    Ok(())
}

fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    // The control plane (registry refresh, admin) is light; the data plane has its own threads.
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .context("starting the runtime")
}

async fn shutdown_signal() {
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending().await,
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        () = term => {}
    }
}

fn serve(path: &std::path::Path, overrides: Overrides, takeover: bool) -> anyhow::Result<()> {
    let config = Config::load(path, &overrides.with_env())?;
    telemetry::init(&config.log);
    runtime()?.block_on(async {
        let server = if takeover {
            Server::takeover(config)?
        } else {
            Server::bind(config)?
        };
        server.run(shutdown_signal()).await?;
        Ok(())
    })
}

fn validate(path: &std::path::Path) -> anyhow::Result<()> {
    let config = Config::load(path, &Overrides::default().with_env())?;
    cellgate::server::preflight(&config)?;
    let registry = match &config.registry {
        RegistryConfig::File { path: registry, .. } => {
            let data = cellgate::placement::file::read_registry(registry)
                .with_context(|| format!("{}: registry.path", path.display()))?;
            format!(
                "registry {}: {} tenant(s), {} cell(s), {} API key(s)",
                registry.display(),
                data.tenant_count(),
                data.cells().len(),
                data.key_count()
            )
        }
        // Not contacted here: validation must work offline.
        RegistryConfig::Dynamo { settings, .. } => {
            format!("registry dynamodb:{} (not contacted)", settings.table)
        }
    };
    println!(
        "{}: ok ({} listener(s), {} issuer(s), {} config cell(s); {registry})",
        path.display(),
        config.listeners.len(),
        config.auth.issuers.len(),
        config.cells.len(),
    );
    Ok(())
}

fn run_demo(listen: String, admin: String) -> anyhow::Result<()> {
    runtime()?.block_on(async {
        let cells = demo::spawn_cells(3, 2)
            .await
            .context("starting demo cells")?;
        let dir = std::env::temp_dir().join(format!("cellgate-demo-{}", std::process::id()));
        let config_path = demo::write_demo_files(&dir, &cells).context("writing demo files")?;
        let overrides = Overrides {
            listen: Some(listen),
            admin: Some(admin),
            ..Overrides::default()
        };
        let config = Config::load(&config_path, &overrides)?;
        telemetry::init(&config.log);
        let RegistryConfig::File { path: registry, .. } = &config.registry else {
            anyhow::bail!("the demo config must use the file registry");
        };
        let registry = registry.clone();
        let server = Server::bind(config)?;
        let token = demo::mint(&demo::TokenSpec::demo("acme"))?;
        println!(
            "{}",
            demo::instructions(
                server.local_addrs()[0],
                server.admin_addr(),
                &registry,
                &token
            )
        );
        server.run(shutdown_signal()).await?;
        let _ = std::fs::remove_dir_all(&dir);
        Ok(())
    })
}

#[expect(clippy::too_many_arguments, reason = "mirrors the subcommand's flags")]
fn token(
    tenant: String,
    ttl: &str,
    sub: Option<String>,
    key: Option<PathBuf>,
    alg: &str,
    kid: Option<String>,
    issuer: String,
    audience: String,
) -> anyhow::Result<()> {
    let ttl: Duration = humantime::parse_duration(ttl).with_context(|| format!("--ttl `{ttl}`"))?;
    let mut spec = demo::TokenSpec::demo(&tenant);
    spec.ttl = ttl;
    spec.issuer = issuer;
    spec.audience = audience;
    if let Some(s) = sub {
        spec.subject = s;
    }
    if let Some(path) = key {
        spec.key_pem = std::fs::read(&path).with_context(|| format!("--key {}", path.display()))?;
        spec.algorithm = alg
            .parse()
            .map_err(|_| anyhow::anyhow!("--alg `{alg}`: unknown algorithm"))?;
        spec.kid = kid;
    } else if let Some(k) = kid {
        spec.kid = Some(k);
    }
    println!("{}", demo::mint(&spec)?);
    Ok(())
}
