//! `switchyard`: the server binary and the worker node.

use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use clap::Parser;
use kernel::model::NewNode;
use kernel::worker::{Executors, PoolConfig, Shutdown, WorkerPool};
use kernel::{Kernel, KernelConfig};
use leptos::prelude::get_configuration;
use server::auth::AuthSettings;
use server::config::{redact, Cli, Command, ServeArgs};
use server::{admin, app, demo, site, worker, AppState};
use tracing_subscriber::EnvFilter;

#[tokio::main]
async fn main() -> ExitCode {
    // Logs go to stderr (stdout carries what a command answers, e.g. a new
    // token, which scripts capture), coloured only on a terminal.
    tracing_subscriber::fmt()
        .with_env_filter(
            EnvFilter::try_from_env("SWITCHYARD_LOG")
                .unwrap_or_else(|_| EnvFilter::new("info,sqlx=warn")),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();

    let cli = Cli::parse();
    if matches!(cli.command, Command::Serve(_) | Command::Worker(_)) {
        // Both run `exec` commands (serve in its embedded pool) and hold
        // secrets: the database URL, the enrollment secret, node tokens.
        if let Err(err) = kernel::worker::hide_from_commands() {
            tracing::warn!(%err, "could not hide this process from the commands it runs");
        }
    }
    let result = match cli.command {
        Command::Serve(args) => serve(args).await,
        Command::Worker(args) => worker::run(args, shutdown_signal()).await,
        Command::Users(command) => admin::users(command).await,
        Command::Tokens(command) => admin::tokens(command).await,
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            tracing::error!("{message}");
            ExitCode::FAILURE
        }
    }
}

async fn serve(args: ServeArgs) -> Result<(), String> {
    let mut leptos_options = get_configuration(None)
        .map_err(|err| format!("reading the Leptos configuration: {err}"))?
        .leptos_options;
    let site_root = site::locate(args.site_root.as_deref(), &leptos_options.site_root);
    if !site::is_site_root(&site_root) {
        tracing::warn!(
            site_root = %site_root.display(),
            "no built site found: pages render but will not hydrate (build with `cargo leptos build --release`)"
        );
    }
    leptos_options.site_root = site_root.to_string_lossy().as_ref().into();
    leptos_options.site_addr = args.addr;
    // The product's file names are fixed, and a deployed binary runs in
    // production mode unless LEPTOS_ENV says otherwise: neither may depend on
    // being started by cargo-leptos.
    leptos_options.output_name = site::OUTPUT_NAME.into();
    if std::env::var_os("LEPTOS_ENV").is_none() {
        leptos_options.env = leptos::config::Env::PROD;
    }

    // Every flag is checked, and the address taken, before the database is
    // touched: a refused start writes nothing (no admin, no node, no demo).
    args.check()?;
    let listener = tokio::net::TcpListener::bind(args.addr)
        .await
        .map_err(|err| format!("listening on {}: {err}", args.addr))?;
    const DAY_MS: i64 = 86_400_000;
    let config = KernelConfig {
        lease_ms: args.lease_ms,
        event_retention_ms: args.event_retention_days * DAY_MS,
        finished_job_retention_ms: args.job_retention_days * DAY_MS,
        ..KernelConfig::default()
    };
    let kernel = Kernel::open(&args.database_url, config)
        .await
        .map_err(|err| format!("opening the database {}: {err}", redact(&args.database_url)))?;
    tracing::info!(backend = %kernel.backend(), "database ready");
    admin::bootstrap_admin(&kernel).await?;
    let auth = AuthSettings {
        session: kernel::SessionPolicy {
            idle_ms: args.session_idle_minutes * 60_000,
            absolute_ms: args.session_max_hours * 3_600_000,
        },
        secure_cookies: args.secure_cookies,
        enrollment_secret: args.enrollment_secret.clone().filter(|s| !s.is_empty()),
    };
    let background = kernel.start_background();

    let pool = match args.embedded_slots() {
        0 => None,
        slots => Some(start_embedded_pool(&kernel, slots, args.addr).await?),
    };
    if args.demo {
        demo::submit(&kernel)
            .await
            .map_err(|err| format!("submitting the demo jobs: {err}"))?;
    }

    tracing::info!(
        site_root = %site_root.display(),
        "Switchyard console at http://{}/ops",
        args.addr
    );

    // Cancelled on SIGINT/SIGTERM: ends every SSE stream, so the graceful
    // shutdown below is not held open by subscribers.
    let shutdown = tokio_util::sync::CancellationToken::new();
    let state = AppState::new(leptos_options, kernel.clone(), shutdown.clone(), auth);
    let served = axum::serve(
        listener,
        app(state).into_make_service_with_connect_info::<std::net::SocketAddr>(),
    )
    .with_graceful_shutdown(async move {
        shutdown_signal().await;
        shutdown.cancel();
    })
    .await
    .map_err(|err| format!("serving HTTP: {err}"));

    if let Some(pool) = pool {
        tracing::info!(
            running = pool.running(),
            "stopping the embedded worker pool"
        );
        pool.shutdown(Shutdown::Finish {
            timeout: Duration::from_secs(10),
        })
        .await;
    }
    background.shutdown().await;
    kernel.db().close().await;
    tracing::info!("stopped");
    served
}

/// Enrolls this server's embedded node and starts its pool on the kernel
/// directly (no HTTP in between). The node authenticates like any other: it
/// is enrolled, gets a node token, and the pool runs as the node that token
/// names.
async fn start_embedded_pool(
    kernel: &Kernel,
    slots: usize,
    addr: std::net::SocketAddr,
) -> Result<WorkerPool, String> {
    let executors = Executors::builtin();
    let enrollment = kernel
        .enroll_node(
            &NewNode {
                // Per machine and port: replicas of one database each
                // have a node of their own (all on port 3000, they once
                // shared one, its leases and its drain).
                name: worker::node_name("embedded", &addr.port().to_string()),
                kinds: executors.kinds(),
                capacity: slots as i64,
                labels: [(
                    server::api::fleet::EMBEDDED_LABEL.to_string(),
                    "true".to_string(),
                )]
                .into(),
                file_scopes: vec![],
            },
            "embedded",
        )
        .await
        .map_err(|err| format!("enrolling the embedded worker node: {err}"))?;
    let node = enrollment.node;
    let principal = kernel
        .token_principal(&enrollment.token)
        .await
        .map_err(|err| format!("authenticating the embedded worker node: {err}"))?;
    if principal.and_then(|p| p.node_id) != Some(node.id) {
        return Err("the embedded worker node's token was not accepted".into());
    }
    tracing::info!(node_id = node.id, slots, kinds = ?node.kinds, "embedded worker pool started");
    Ok(WorkerPool::start(
        Arc::new(kernel.clone()),
        executors,
        PoolConfig::new(node.id, slots).for_leases_of(kernel.config().lease_ms),
    ))
}

/// Resolves on SIGINT or SIGTERM.
async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {},
        _ = terminate => {},
    }
    tracing::info!(
        "shutdown signal received, finishing in-flight work (a second one stops at once)"
    );
    // A second signal does not wait for the grace period: it ends the
    // process now (leases still held expire, and their tasks run again).
    tokio::spawn(async {
        let _ = tokio::signal::ctrl_c().await;
        tracing::warn!("second signal: stopping now, without finishing");
        std::process::exit(130);
    });
    #[cfg(unix)]
    if let Ok(mut signal) =
        tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
    {
        tokio::spawn(async move {
            signal.recv().await;
            tracing::warn!("second signal: stopping now, without finishing");
            std::process::exit(143);
        });
    }
}
