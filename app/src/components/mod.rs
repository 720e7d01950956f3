//! Reusable pieces of the console.

pub mod page;
pub mod shell;
