//! The `stream-edge` binary: `serve` (default), `token`, `emulator`, `check-config`.
//! Configuration errors print one line and exit 64 (EX_USAGE) before any port is bound.

use std::process::ExitCode;

use anyhow::Context;
use clap::{Parser, Subcommand};
use stream_edge::config::{sources::ConfigArgs, Config, LogFormat};

/// jemalloc keeps each size class in its own slabs and returns emptied pages to
/// the kernel on a decay timer; glibc's malloc carves long-lived small objects
/// out of the holes that freed per-request buffers leave, so RSS stays at its
/// peak. linkerd2-proxy makes the same choice.
#[cfg(feature = "jemalloc")]
#[global_allocator]
static GLOBAL: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

#[derive(Parser)]
#[command(name = "stream-edge", version, about = "Edge gateway for Stream Chat")]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    #[command(flatten)]
    config: ConfigArgs,
}

#[derive(Subcommand)]
enum Command {
    /// Run the gateway (the default).
    Serve,
    /// Print an HS256 user token signed with the configured secret.
    Token {
        user_id: String,
        /// Lifetime in seconds; no `exp` claim when omitted.
        #[arg(long)]
        expires_in: Option<u64>,
        /// App to sign for (default: the first configured).
        #[arg(long = "for-app")]
        app: Option<String>,
    },
    /// Run the embedded Stream-compatible upstream on its own (`--listen`, default
    /// 127.0.0.1:3000), with the configured apps or the development app.
    Emulator {
        /// Serve the test-control routes (`/_emulator/connections`, `/_emulator/drop`,
        /// `/_emulator/faults`): anyone who reaches the port may then list and drop sessions.
        #[arg(long)]
        control: bool,
    },
    /// Validate configuration and exit 0, or print one line and exit 64.
    CheckConfig,
}

const EX_USAGE: u8 = 64;

fn resolve(args: &ConfigArgs) -> Result<Config, ExitCode> {
    args.resolve().map_err(|e| {
        eprintln!("stream-edge: invalid configuration: {e}");
        ExitCode::from(EX_USAGE)
    })
}

fn init_tracing(format: LogFormat) {
    use tracing_subscriber::prelude::*;
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    // Logs go to stderr; stdout carries only the machine-readable "listening" line.
    let fmt = tracing_subscriber::fmt::layer().with_writer(std::io::stderr);
    let fmt = match format {
        LogFormat::Json => fmt.json().boxed(),
        LogFormat::Human => fmt.boxed(),
    };
    tracing_subscriber::registry()
        .with(filter)
        .with(fmt.with_filter(tracing_subscriber::filter::filter_fn(|m| {
            !SECRET_BEARING_TARGETS
                .iter()
                .any(|t| m.target().starts_with(t))
        })))
        .init();
}

/// Log targets dropped at every level, whatever `RUST_LOG` says: tungstenite's client handshake
/// traces the whole upstream connect request, with the connect payload and the `Authorization`
/// header carrying the token the gateway minted.
const SECRET_BEARING_TARGETS: &[&str] = &["tungstenite::handshake::client"];

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        None | Some(Command::Serve) => serve(&cli.config),
        Some(Command::CheckConfig) => match resolve(&cli.config) {
            Ok(_) => {
                println!("configuration ok");
                return ExitCode::SUCCESS;
            }
            Err(code) => return code,
        },
        Some(Command::Token {
            user_id,
            expires_in,
            app,
        }) => token(&cli.config, &user_id, expires_in, app.as_deref()),
        Some(Command::Emulator { control }) => emulator(&cli.config, control),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("stream-edge: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn token(
    args: &ConfigArgs,
    user: &str,
    expires_in: Option<u64>,
    app: Option<&str>,
) -> anyhow::Result<ExitCode> {
    let config = match resolve(args) {
        Ok(c) => c,
        Err(code) => return Ok(code),
    };
    if !stream_edge::transport::connect::valid_user_id(user) {
        eprintln!("stream-edge: user id may only contain letters, digits, @, _ and -");
        return Ok(ExitCode::from(EX_USAGE));
    }
    let app = match app {
        Some(key) => config
            .app(key)
            .with_context(|| format!("no app with api key {key}"))?,
        None => config.apps.first().context("no app configured")?,
    };
    let secret = app.secrets.first().context("app has no secret")?;
    let token = stream_edge::auth::mint::user_token(&secret.0, user, expires_in)?;
    println!("{token}");
    Ok(ExitCode::SUCCESS)
}

fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the tokio runtime")
}

fn serve(args: &ConfigArgs) -> anyhow::Result<ExitCode> {
    let config = match resolve(args) {
        Ok(c) => c,
        Err(code) => return Ok(code),
    };
    init_tracing(config.log_format);
    runtime()?.block_on(async move {
        let dev = config.dev_credentials;
        let key = config.apps[0].api_key.clone();
        let running = stream_edge::gateway::start(config).await?;
        // The first stdout line names the bound addresses (ports may be ephemeral).
        let peer = running
            .peer_addr
            .map(|a| format!(" peer http://{a}"))
            .unwrap_or_default();
        println!(
            "stream-edge listening on http://{} admin http://{}{peer}",
            running.addr, running.admin_addr
        );
        if dev {
            tracing::warn!(
                api_key = %key,
                "no api key/secret configured: using the built-in development app on the embedded upstream (never in production)"
            );
            println!(
                "embedded upstream, development api key `{key}`\n\
                 get a token:  cargo run --release -- token alice\n\
                 connect:      new StreamChat('{key}', {{ baseURL: 'http://{addr}' }}).connectUser({{ id: 'alice' }}, token)",
                addr = running.addr,
            );
        }

        let sig = wait_for_stop(args, &running).await;
        tracing::info!(signal = sig, "draining");
        running.shutdown();
        let clean = running.join().await;
        if !clean {
            tracing::warn!("drain deadline passed with sessions still open");
        }
        Ok(ExitCode::SUCCESS)
    })
}

/// Waits for SIGTERM/SIGINT; on SIGHUP re-reads the configuration and applies its apps and
/// secrets (secret rotation without a restart). Other settings need a restart.
async fn wait_for_stop(args: &ConfigArgs, running: &stream_edge::gateway::Running) -> &'static str {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        if let Ok(mut hup) = signal(SignalKind::hangup()) {
            let stop = stream_edge::shutdown::signal();
            tokio::pin!(stop);
            loop {
                tokio::select! {
                    sig = &mut stop => return sig,
                    _ = hup.recv() => match args.resolve() {
                        Ok(c) => {
                            running.shared.reload_apps(&c.apps);
                            tracing::info!(apps = c.apps.len(), "configuration reloaded (apps and secrets)");
                        }
                        Err(e) => tracing::error!(error = %e, "reload refused; keeping the running configuration"),
                    },
                }
            }
        }
    }
    stream_edge::shutdown::signal().await
}

fn emulator(args: &ConfigArgs, control: bool) -> anyhow::Result<ExitCode> {
    let config = match resolve(args) {
        Ok(c) => c,
        Err(code) => return Ok(code),
    };
    let listen: std::net::SocketAddr =
        match args.listen.as_deref().unwrap_or("127.0.0.1:3000").parse() {
            Ok(a) => a,
            Err(_) => {
                eprintln!("stream-edge: invalid configuration: listen: not an IP:port address");
                return Ok(ExitCode::from(EX_USAGE));
            }
        };

    init_tracing(config.log_format);
    runtime()?.block_on(async move {
        let listener = tokio::net::TcpListener::bind(listen)
            .await
            .with_context(|| format!("binding {listen}"))?;
        let apps = config
            .apps
            .iter()
            .map(|a| stream_edge_emulator::App {
                api_key: a.api_key.clone(),
                secrets: a.secrets.iter().map(|s| s.0.clone()).collect(),
            })
            .collect();
        let stop = tokio_util::sync::CancellationToken::new();
        let emu = stream_edge_emulator::Emulator::new(apps);
        emu.set_control(control);
        let addr = listener.local_addr()?;
        println!("stream-edge emulator listening on http://{addr}");
        let server = tokio::spawn(stream_edge_emulator::serve(listener, emu, stop.clone()));
        stream_edge::shutdown::signal().await;
        stop.cancel();
        server.await??;
        Ok(ExitCode::SUCCESS)
    })
}
