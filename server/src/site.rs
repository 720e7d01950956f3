//! Finding the site assets (wasm, js, css, public files) at run time.
//!
//! A deployed `switchyard` must not depend on the directory it is started
//! from or on the build tree, so the site folder is looked up next to the
//! executable: `<exe dir>/site` (a deployment that copies `site/` beside
//! the binary) or `<exe dir>/../site` (cargo's `target/release/switchyard`
//! beside `target/site`). An explicit `--site-root` wins.

use std::path::{Path, PathBuf};

/// The output name cargo-leptos gives the generated files.
pub const OUTPUT_NAME: &str = "switchyard";

/// A folder is a site root when it holds the generated JavaScript.
pub fn is_site_root(dir: &Path) -> bool {
    dir.join("pkg").join(format!("{OUTPUT_NAME}.js")).is_file()
}

/// The site root to serve: `explicit` if given, else the first folder next to
/// the executable that holds a built site, else `fallback` (the compile-time
/// configuration, relative to the working directory).
pub fn locate(explicit: Option<&Path>, fallback: &str) -> PathBuf {
    if let Some(dir) = explicit {
        return dir.to_path_buf();
    }
    let exe_dir = std::env::current_exe()
        .ok()
        .and_then(|exe| exe.canonicalize().ok())
        .and_then(|exe| exe.parent().map(Path::to_path_buf));
    if let Some(exe_dir) = exe_dir {
        for candidate in [exe_dir.join("site"), exe_dir.join("..").join("site")] {
            if is_site_root(&candidate) {
                return candidate.canonicalize().unwrap_or(candidate);
            }
        }
    }
    PathBuf::from(fallback)
}
