//! Reusable pieces of the console.

pub mod live;
pub mod page;
pub mod shell;
