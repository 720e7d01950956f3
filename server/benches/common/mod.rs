//! What the server benches share.

use sqlx::Connection;

/// A fresh database `<prefix>_<pid>` on the server of `admin_url`; its URL.
pub async fn fresh_postgres(admin_url: &str, prefix: &str) -> String {
    let name = format!("{prefix}_{}", std::process::id());
    let mut admin = sqlx::PgConnection::connect(admin_url)
        .await
        .expect("connect to Postgres");
    sqlx::query(&format!("DROP DATABASE IF EXISTS {name}"))
        .execute(&mut admin)
        .await
        .unwrap();
    sqlx::query(&format!("CREATE DATABASE {name}"))
        .execute(&mut admin)
        .await
        .unwrap();
    match admin_url.rfind('/') {
        Some(slash) => format!("{}/{name}", &admin_url[..slash]),
        None => panic!("cannot derive a database URL from {admin_url}"),
    }
}
