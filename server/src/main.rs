//! `switchyard`: the server binary.

use std::process::ExitCode;

use clap::Parser;
use leptos::prelude::get_configuration;
use server::config::{Cli, Command, ServeArgs};
use server::{app, site, AppState};
use tracing_subscriber::EnvFilter;

#[tokio::main]
async fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            EnvFilter::try_from_env("SWITCHYARD_LOG")
                .unwrap_or_else(|_| EnvFilter::new("info,sqlx=warn")),
        )
        .init();

    let cli = Cli::parse();
    let result = match cli.command {
        Command::Serve(args) => serve(args).await,
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

    let db = kernel::Db::open(&args.database_url)
        .await
        .map_err(|err| format!("opening the database {}: {err}", redact(&args.database_url)))?;
    tracing::info!(backend = %db.backend(), "database ready");

    let listener = tokio::net::TcpListener::bind(args.addr)
        .await
        .map_err(|err| format!("listening on {}: {err}", args.addr))?;
    tracing::info!(
        site_root = %site_root.display(),
        "Switchyard console at http://{}/ops",
        args.addr
    );

    let state = AppState {
        leptos_options,
        db: db.clone(),
    };
    axum::serve(listener, app(state))
        .with_graceful_shutdown(shutdown_signal())
        .await
        .map_err(|err| format!("serving HTTP: {err}"))?;
    db.close().await;
    tracing::info!("stopped");
    Ok(())
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
    tracing::info!("shutdown signal received, finishing in-flight requests");
}

/// A database URL without its password, for logs.
fn redact(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme_end), Some(at)) if at > scheme_end => {
            let credentials = &url[scheme_end + 3..at];
            match credentials.split_once(':') {
                Some((user, _)) => {
                    format!("{}://{user}:***@{}", &url[..scheme_end], &url[at + 1..])
                }
                None => url.to_string(),
            }
        }
        _ => url.to_string(),
    }
}
