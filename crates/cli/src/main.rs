//! The `portcullis` binary: wires configuration, storage and the HTTP faces together.

use anyhow::Context;
use clap::{Parser, Subcommand};
use portcullis_core::audit::{Actor, By, Origin};
use portcullis_core::config::{Config, LogFormat};
use std::process::ExitCode;

#[derive(Parser)]
#[command(
    name = "portcullis",
    version,
    about = "Self-hosted identity and authentication server"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the public (4433) and admin (4434) APIs.
    Serve {
        /// YAML configuration file (kratos.yml key names).
        #[arg(long, short)]
        config: Option<String>,
        /// Development mode: embedded SQLite default, plain-http cookies, generated secrets.
        #[arg(long)]
        dev: bool,
    },
    /// Apply database migrations and exit.
    Migrate {
        #[arg(long, short)]
        config: Option<String>,
        #[arg(long)]
        dev: bool,
    },
    /// Print the version.
    Version,
    /// Signing keys.
    Keys {
        #[command(subcommand)]
        command: KeysCommand,
    },
    /// Configuration tools.
    Config {
        #[command(subcommand)]
        command: ConfigCommand,
    },
}

#[derive(Subcommand)]
enum ClerkKeysCommand {
    /// Create a Clerk Backend API secret key (printed once).
    Create {
        #[arg(long, short)]
        config: Option<String>,
        #[arg(long)]
        dev: bool,
    },
    /// Print the publishable key of the Frontend API at serve.public.base_url's host, for
    /// Clerk's browser SDK (pk_live_, or pk_test_ with --test). Not a secret.
    Publishable {
        #[arg(long, short)]
        config: Option<String>,
        #[arg(long)]
        dev: bool,
        /// A development key (pk_test_): clerk-js then warns in the console and sends telemetry
        /// unless the app turns it off.
        #[arg(long)]
        test: bool,
    },
}

#[derive(Subcommand)]
enum AdminKeysCommand {
    /// Generate an admin API key: prints the key once, and the serve.admin.api_keys entry that
    /// holds only its hash. Nothing is stored; add the entry to the configuration.
    Create {
        /// The key's name in the audit log (1-64 of A-Z a-z 0-9 . _ -).
        #[arg(long, default_value = "admin")]
        id: String,
    },
}

#[derive(Subcommand)]
enum KeysCommand {
    /// Admin API keys (serve.admin.api_keys).
    Admin {
        #[command(subcommand)]
        command: AdminKeysCommand,
    },
    /// Clerk Backend API secret keys.
    Clerk {
        #[command(subcommand)]
        command: ClerkKeysCommand,
    },
    /// Retire the current JWT signing key (it stays in the JWKS until its tokens expire) and create a new one.
    Rotate {
        #[arg(long, short)]
        config: Option<String>,
        #[arg(long)]
        dev: bool,
    },
}

#[derive(Subcommand)]
enum ConfigCommand {
    /// Validate a configuration file (with PORTCULLIS_* overrides) and print it with secrets redacted.
    Check {
        file: String,
        #[arg(long)]
        dev: bool,
    },
}

fn load(file: Option<&str>, dev: bool) -> anyhow::Result<Config> {
    Ok(Config::load(file, std::env::vars(), dev)?)
}

fn init_logging(cfg: &Config) {
    let filter = tracing_subscriber::EnvFilter::try_new(cfg.log.level.directive())
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match cfg.log.format {
        LogFormat::Json => builder.json().init(),
        LogFormat::Text => builder.init(),
    }
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! { _ = ctrl_c => {}, _ = term => {} }
}

async fn serve(cfg: Config) -> anyhow::Result<()> {
    let started = std::time::Instant::now();
    let bind = |host: &str, port: u16| {
        if host.contains(':') && !host.starts_with('[') {
            format!("[{host}]:{port}")
        } else {
            format!("{host}:{port}")
        }
    };
    let public_bind = bind(&cfg.serve.public.host, cfg.serve.public.port);
    let admin_bind = bind(&cfg.serve.admin.host, cfg.serve.admin.port);
    let dev = cfg.dev;
    let dsn_kind = if cfg.dsn.starts_with("sqlite") {
        "sqlite"
    } else {
        "postgres"
    };
    if dev {
        tracing::warn!(
            "dev mode (--dev): plain-http cookies, a generated secret kept in the database, \
             weak password hashing and webhooks to private addresses are allowed; never run a \
             production server with --dev"
        );
    }
    // What the operator should know and is not an error (`${NAME}` placeholders used as
    // written), loudly.
    for note in cfg.notes() {
        tracing::warn!("{note}");
    }
    let state = portcullis_server::build(cfg).await?;
    let public = tokio::net::TcpListener::bind(&public_bind)
        .await
        .with_context(|| format!("cannot listen on {public_bind}"))?;
    let admin = tokio::net::TcpListener::bind(&admin_bind)
        .await
        .with_context(|| format!("cannot listen on {admin_bind}"))?;
    let running = portcullis_server::serve(state, public, admin, shutdown_signal()).await?;
    tracing::info!(
        public = %running.public_addr,
        admin = %running.admin_addr,
        database = dsn_kind,
        dev,
        ready_ms = started.elapsed().as_millis() as u64,
        "portcullis is ready"
    );
    running.handle.await??;
    tracing::info!("portcullis stopped");
    Ok(())
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Version => {
            println!("portcullis v{}", env!("CARGO_PKG_VERSION"));
            Ok(())
        }
        Command::Config {
            command: ConfigCommand::Check { file, dev },
        } => load(Some(&file), dev).map(|c| {
            print!("{}", c.redacted_yaml());
            for note in c.notes() {
                eprintln!("note: {note}");
            }
            eprintln!("configuration OK");
        }),
        Command::Serve { config, dev } => load(config.as_deref(), dev).and_then(|cfg| {
            init_logging(&cfg);
            runtime()?.block_on(serve(cfg))
        }),
        Command::Keys {
            command: KeysCommand::Rotate { config, dev },
        } => load(config.as_deref(), dev).and_then(|cfg| {
            runtime()?.block_on(async {
                let state = portcullis_server::build(cfg).await?;
                let kid = state
                    .core
                    .rotate_signing_key(state.core.now(), &console())
                    .await
                    .map_err(|e| anyhow::anyhow!("{e}"))?;
                println!("signing key rotated; new kid {kid}");
                Ok(())
            })
        }),
        Command::Keys {
            command:
                KeysCommand::Clerk {
                    command: ClerkKeysCommand::Create { config, dev },
                },
        } => load(config.as_deref(), dev).and_then(|cfg| {
            runtime()?.block_on(async {
                let state = portcullis_server::build(cfg).await?;
                let (id, key) = portcullis_server::create_clerk_key(&state, &console())
                    .await
                    .map_err(|e| anyhow::anyhow!("{e}"))?;
                println!("{key}");
                eprintln!(
                    "created Clerk secret key {id}; revoke it with DELETE /admin/clerk/keys/{id}"
                );
                Ok(())
            })
        }),
        Command::Keys {
            command:
                KeysCommand::Clerk {
                    command: ClerkKeysCommand::Publishable { config, dev, test },
                },
        } => load(config.as_deref(), dev).and_then(|cfg| {
            let key = portcullis_core::clerk::publishable_key(cfg.public_url(), !test)
                .map_err(|e| anyhow::anyhow!("serve.public.base_url: {e}"))?;
            println!("{key}");
            Ok(())
        }),
        Command::Keys {
            command:
                KeysCommand::Admin {
                    command: AdminKeysCommand::Create { id },
                },
        } => create_admin_key(&id),
        Command::Migrate { config, dev } => load(config.as_deref(), dev).and_then(|cfg| {
            runtime()?.block_on(async {
                let store = portcullis_store::SqlStore::connect(&cfg.dsn).await?;
                store.migrate().await?;
                println!("migrations applied");
                Ok(())
            })
        }),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// Prints a new admin API key (first line) and its configuration entry (second line, JSON,
/// which is also YAML); how to use them goes to stderr.
fn create_admin_key(id: &str) -> anyhow::Result<()> {
    use portcullis_core::admin_keys;
    if !admin_keys::valid_id(id) {
        anyhow::bail!("--id {id:?}: must be 1 to 64 of A-Z a-z 0-9 . _ -");
    }
    let (key, entry) = admin_keys::generate(id, &mut rand::rngs::OsRng);
    let line = format!(r#"{{"id":"{}","hash":"{}"}}"#, entry.id, entry.hash);
    println!("{key}");
    println!("{line}");
    eprintln!(
        "admin API key {id:?}: the first line is the key (shown once; send it as \
         Authorization: Bearer <key>), the second its serve.admin.api_keys entry, e.g.\n  \
         serve:\n    admin:\n      api_keys:\n        - {line}\n\
         or PORTCULLIS_SERVE_ADMIN_API_KEYS='[{line}]'"
    );
    Ok(())
}

fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?)
}

/// The operator at the console: audited as the admin API without a key.
fn console() -> By {
    By {
        actor: Actor::Admin { key_id: None },
        origin: Origin::default(),
    }
}
