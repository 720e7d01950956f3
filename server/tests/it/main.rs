//! The server's integration tests, as one test binary: each suite below
//! would otherwise link its own copy of the whole server (axum, Leptos,
//! sqlx), which costs CI minutes and gigabytes of disk for nothing.

mod common;

mod api;
mod auth;
mod cli;
mod console_api;
mod console_http;
mod crash;
mod job_detail;
mod secrets;
mod sse;
mod worker;
