//! Legacy URL aliases (SPEC §3): old bookmarks and entry points that must land
//! on their canonical page.
//!
//! This table is the single definition. The server answers a full page load
//! of a legacy path with `308 Permanent Redirect` using [`canonical_path`];
//! the client router's fallback uses the same function for in-app
//! navigation. Query strings and fragments are carried by the callers: this
//! module maps paths only.

/// How the part of the path after an alias prefix is carried over.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Tail {
    /// The prefix itself, or the prefix followed by `/anything…`.
    Subtree,
    /// The prefix itself, or the prefix followed by exactly one `/segment`.
    OneSegment,
}

/// One alias: a legacy prefix and the canonical prefix that replaces it.
#[derive(Debug, Clone, Copy)]
pub struct Alias {
    pub legacy: &'static str,
    pub canonical: &'static str,
    tail: Tail,
}

const fn subtree(legacy: &'static str, canonical: &'static str) -> Alias {
    Alias {
        legacy,
        canonical,
        tail: Tail::Subtree,
    }
}

/// Every legacy alias, most specific first.
///
/// SPEC §3 writes `/platform-ops/scanner*`: the `scanner` segment and its
/// subtree. Old links also spelled that segment `scanner-ops`, so both
/// spellings map onto `/ops/scanner-ops`.
pub const ALIASES: &[Alias] = &[
    subtree("/ops/jobengine", "/ops/operations/jobengine"),
    subtree("/ops/scheduler", "/ops/operations/scheduler"),
    Alias {
        legacy: "/ops/scanner",
        canonical: "/ops/scanner-ops",
        tail: Tail::OneSegment,
    },
    subtree("/platform-ops/jobengine", "/ops/operations/jobengine"),
    subtree("/platform-ops/scheduler", "/ops/operations/scheduler"),
    subtree("/platform-ops/scanner-ops", "/ops/scanner-ops"),
    subtree("/platform-ops/scanner", "/ops/scanner-ops"),
    subtree("/platform/ops/jobengine", "/ops/operations/jobengine"),
    subtree("/platform/ops/scheduler", "/ops/operations/scheduler"),
    subtree("/platform/ops/dead-letter", "/ops/operations/dead-letter"),
];

/// The canonical path for a legacy `path` (no query, no fragment), or `None`
/// when `path` is not a legacy alias.
pub fn canonical_path(path: &str) -> Option<String> {
    ALIASES.iter().find_map(|alias| {
        let rest = path.strip_prefix(alias.legacy)?;
        let matches = match alias.tail {
            Tail::Subtree => rest.is_empty() || rest.starts_with('/'),
            Tail::OneSegment => {
                rest.is_empty()
                    || rest == "/"
                    || (rest.starts_with('/') && !rest[1..].contains('/'))
            }
        };
        matches.then(|| format!("{}{}", alias.canonical, rest.trim_end_matches('/')))
    })
}

/// The canonical location for a legacy path, with `query` (without `?`) and
/// `fragment` (without `#`) appended when non-empty.
pub fn canonical_location(path: &str, query: &str, fragment: &str) -> Option<String> {
    canonical_path(path).map(|mut target| {
        if !query.is_empty() {
            target.push('?');
            target.push_str(query);
        }
        if !fragment.is_empty() {
            target.push('#');
            target.push_str(fragment);
        }
        target
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_spec_pattern_maps_to_its_canonical_subtree() {
        let cases = [
            ("/ops/jobengine", "/ops/operations/jobengine"),
            (
                "/ops/jobengine/jobs/42/dag",
                "/ops/operations/jobengine/jobs/42/dag",
            ),
            ("/ops/scheduler/runs", "/ops/operations/scheduler/runs"),
            ("/ops/scanner", "/ops/scanner-ops"),
            ("/ops/scanner/baselines", "/ops/scanner-ops/baselines"),
            (
                "/platform-ops/jobengine/quotas",
                "/ops/operations/jobengine/quotas",
            ),
            (
                "/platform-ops/scheduler/workers",
                "/ops/operations/scheduler/workers",
            ),
            ("/platform-ops/scanner", "/ops/scanner-ops"),
            (
                "/platform-ops/scanner/analyzers",
                "/ops/scanner-ops/analyzers",
            ),
            (
                "/platform-ops/scanner-ops/settings",
                "/ops/scanner-ops/settings",
            ),
            (
                "/platform/ops/jobengine/jobs",
                "/ops/operations/jobengine/jobs",
            ),
            (
                "/platform/ops/scheduler/runs/r1/stream",
                "/ops/operations/scheduler/runs/r1/stream",
            ),
            (
                "/platform/ops/dead-letter/entry/7",
                "/ops/operations/dead-letter/entry/7",
            ),
            ("/platform/ops/dead-letter", "/ops/operations/dead-letter"),
        ];
        for (legacy, canonical) in cases {
            assert_eq!(
                canonical_path(legacy).as_deref(),
                Some(canonical),
                "{legacy}"
            );
        }
    }

    #[test]
    fn canonical_and_unrelated_paths_are_not_aliases() {
        for path in [
            "/ops",
            "/ops/operations/jobengine",
            "/ops/scanner-ops",
            "/ops/scanner-ops/baselines",
            "/ops/jobenginex",
            "/ops/scanner/a/b",
            "/platform-ops/scannerx",
            "/platform/ops/approvals",
        ] {
            assert_eq!(canonical_path(path), None, "{path}");
        }
    }

    #[test]
    fn query_and_fragment_are_kept() {
        assert_eq!(
            canonical_location("/ops/jobengine/jobs", "state=failed&q=x", "row-3").as_deref(),
            Some("/ops/operations/jobengine/jobs?state=failed&q=x#row-3")
        );
        assert_eq!(
            canonical_location("/ops/scanner", "", "").as_deref(),
            Some("/ops/scanner-ops")
        );
    }
}
