//! Reusable pieces of the console.

pub mod action;
pub mod live;
pub mod page;
pub mod session;
pub mod shell;
