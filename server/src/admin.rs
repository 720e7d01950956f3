//! The first admin account and the `users` and `tokens` commands: identity
//! managed from the command line, straight on the database.

use std::io::{BufRead, IsTerminal};

use kernel::model::NewToken;
use kernel::{Kernel, KernelConfig};

use crate::config::{DbArgs, TokensCommand, UsersCommand};

/// The environment variable holding the first admin's password.
pub const ADMIN_PASSWORD_ENV: &str = "SWITCHYARD_ADMIN_PASSWORD";
/// The environment variable the `users` commands read a password from.
pub const PASSWORD_ENV: &str = "SWITCHYARD_PASSWORD";

/// With no user yet, creates `admin` with every scope and tenant. Its
/// password is `SWITCHYARD_ADMIN_PASSWORD`, or generated and printed once.
pub async fn bootstrap_admin(kernel: &Kernel) -> Result<(), String> {
    let given = std::env::var(ADMIN_PASSWORD_ENV)
        .ok()
        .filter(|p| !p.is_empty());
    match kernel.ensure_admin(given.as_deref()).await {
        Ok(Some(generated)) => {
            // Printed, not logged: it must not end up in log aggregation
            // with the rest of the server's lines.
            println!(
                "\n  Created the first console user.\n    username: admin\n    password: {generated}\n  \
                 This password is shown once. Sign in at /login and change it with\n  \
                 `switchyard users passwd admin`, or start with {ADMIN_PASSWORD_ENV} set next time.\n"
            );
            Ok(())
        }
        Ok(None) => Ok(()),
        Err(err) => Err(format!("creating the first admin user: {err}")),
    }
}

async fn open(db: &DbArgs) -> Result<Kernel, String> {
    // The default is relative to where the command runs: run elsewhere than
    // `serve`, it would create a second, empty database and act on that.
    if db.database_url == crate::config::DEFAULT_DATABASE_URL {
        let path = crate::config::DEFAULT_DATABASE_URL.trim_start_matches("sqlite:");
        if !std::path::Path::new(path).exists() {
            return Err(format!(
                "no database at {path} (relative to {}): run this where `switchyard serve` runs, \
                 or name the database with --database-url or DATABASE_URL",
                std::env::current_dir()
                    .map(|d| d.display().to_string())
                    .unwrap_or_else(|_| "this folder".into())
            ));
        }
    }
    Kernel::open(&db.database_url, KernelConfig::default())
        .await
        .map_err(|err| {
            format!(
                "opening the database {}: {err}",
                crate::config::redact(&db.database_url)
            )
        })
}

/// `SWITCHYARD_PASSWORD`, else the first line of standard input: asked for,
/// and not echoed, when standard input is a terminal.
fn read_password() -> Result<String, String> {
    if let Ok(p) = std::env::var(PASSWORD_ENV) {
        return Ok(p);
    }
    let stdin = std::io::stdin();
    let line = if stdin.is_terminal() {
        read_line_unechoed(&stdin, "Password: ")
    } else {
        read_line(&stdin)
    }
    .map_err(|err| format!("reading the password from standard input: {err}"))?;
    let password = line.trim_end_matches(['\r', '\n']).to_string();
    if password.is_empty() {
        return Err(format!(
            "no password: set {PASSWORD_ENV} or write it on standard input"
        ));
    }
    Ok(password)
}

fn read_line(stdin: &std::io::Stdin) -> std::io::Result<String> {
    let mut line = String::new();
    stdin.lock().read_line(&mut line)?;
    Ok(line)
}

/// Shows `prompt` (on stderr: stdout carries the command's answer), then
/// reads a line from the terminal with its echo off, restored afterwards.
/// Enter still ends the line on screen. The echo goes off before the prompt
/// shows, so nothing typed after it appears.
#[cfg(unix)]
fn read_line_unechoed(stdin: &std::io::Stdin, prompt: &str) -> std::io::Result<String> {
    use rustix::termios::{tcgetattr, tcsetattr, LocalModes, OptionalActions};
    let shown = tcgetattr(stdin)?;
    let mut hidden = shown.clone();
    hidden.local_modes.remove(LocalModes::ECHO);
    hidden.local_modes.insert(LocalModes::ECHONL);
    tcsetattr(stdin, OptionalActions::Now, &hidden)?;
    eprint!("{prompt}");
    let line = read_line(stdin);
    tcsetattr(stdin, OptionalActions::Now, &shown)?;
    line
}

#[cfg(not(unix))]
fn read_line_unechoed(stdin: &std::io::Stdin, prompt: &str) -> std::io::Result<String> {
    eprint!("{prompt}");
    read_line(stdin)
}

pub async fn users(command: UsersCommand) -> Result<(), String> {
    match command {
        UsersCommand::Add {
            username,
            grant,
            db,
        } => {
            let password = read_password()?;
            let kernel = open(&db).await?;
            let user = kernel
                .create_user(&username, &password, &grant.scopes, &grant.tenants)
                .await
                .map_err(|err| err.to_string())?;
            println!(
                "added user {} (id {}) with {} on {}",
                user.username,
                user.id,
                scope_list(&user.scopes),
                user.tenants
            );
        }
        UsersCommand::Passwd { username, db } => {
            let password = read_password()?;
            let kernel = open(&db).await?;
            kernel
                .set_password(&username, &password)
                .await
                .map_err(|err| err.to_string())?;
            println!("password of {username} changed; their sessions were ended");
        }
        UsersCommand::Grant {
            username,
            grant,
            db,
        } => {
            let kernel = open(&db).await?;
            let user = kernel
                .grant_user(&username, &grant.scopes, &grant.tenants)
                .await
                .map_err(|err| err.to_string())?;
            println!(
                "{} now has {} on {}",
                user.username,
                scope_list(&user.scopes),
                user.tenants
            );
        }
        UsersCommand::List { db } => {
            let kernel = open(&db).await?;
            for user in kernel.list_users().await.map_err(|err| err.to_string())? {
                println!(
                    "{}\t{}\t{}{}",
                    user.username,
                    scope_list(&user.scopes),
                    user.tenants,
                    if user.disabled { "\tdisabled" } else { "" }
                );
            }
        }
    }
    Ok(())
}

pub async fn tokens(command: TokensCommand) -> Result<(), String> {
    match command {
        TokensCommand::Create { name, grant, db } => {
            let kernel = open(&db).await?;
            let created = kernel
                .create_token(
                    &NewToken {
                        name,
                        scopes: grant.scopes,
                        tenants: grant.tenants,
                    },
                    "cli",
                )
                .await
                .map_err(|err| err.to_string())?;
            eprintln!(
                "created token {} (id {}); its secret is printed below, this once",
                created.token.name, created.token.id
            );
            println!("{}", created.secret);
        }
        TokensCommand::List { db } => {
            let kernel = open(&db).await?;
            for t in kernel.list_tokens().await.map_err(|err| err.to_string())? {
                println!(
                    "{}\t{}\t{}\t{}…\t{}\t{}{}",
                    t.id,
                    t.kind,
                    t.name,
                    t.prefix,
                    scope_list(&t.scopes),
                    t.tenants,
                    if t.revoked_at.is_some() {
                        "\trevoked"
                    } else {
                        ""
                    }
                );
            }
        }
        TokensCommand::Revoke { id, db } => {
            let kernel = open(&db).await?;
            let token = kernel
                .revoke_token(id)
                .await
                .map_err(|err| err.to_string())?;
            println!("revoked token {} ({})", token.id, token.name);
        }
    }
    Ok(())
}

fn scope_list(scopes: &[kernel::model::Scope]) -> String {
    if scopes.is_empty() {
        return "no scopes".into();
    }
    scopes
        .iter()
        .map(|s| s.as_str())
        .collect::<Vec<_>>()
        .join(",")
}
