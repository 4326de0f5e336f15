//! `.dockerignore`: patterns of context paths that `COPY` and `ADD` leave out.
//!
//! As docker reads it: one pattern a line, `#` comments, paths relative to the context root
//! (a leading `/` is dropped), `*` and `?` within one path component, `**` across any number of
//! them, and `!` re-including what an earlier pattern excluded; the last matching pattern wins.
//! A pattern that matches a directory excludes everything below it.

use std::path::Path;

/// The parsed `.dockerignore` of a context (empty when it has none).
#[derive(Debug, Clone, Default)]
pub struct Ignore {
    patterns: Vec<(bool, Vec<String>)>,
}

impl Ignore {
    /// Parses the text of a `.dockerignore`.
    pub fn parse(text: &str) -> Ignore {
        let patterns = text
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty() && !l.starts_with('#'))
            .map(|line| {
                let (include, pattern) = match line.strip_prefix('!') {
                    Some(rest) => (true, rest.trim()),
                    None => (false, line),
                };
                let parts = pattern
                    .split('/')
                    .filter(|p| !p.is_empty() && *p != ".")
                    .map(str::to_owned)
                    .collect();
                (include, parts)
            })
            .collect();
        Ignore { patterns }
    }

    /// Whether the context path `rel` (relative, `/`-separated) is left out.
    pub fn ignored(&self, rel: &Path) -> bool {
        let parts: Vec<String> = rel
            .components()
            .filter_map(|c| match c {
                std::path::Component::Normal(n) => Some(n.to_string_lossy().into_owned()),
                _ => None,
            })
            .collect();
        if parts.is_empty() {
            return false;
        }
        let mut ignored = false;
        for (include, pattern) in &self.patterns {
            // A pattern matching an ancestor matches the path too.
            let hit = (1..=parts.len()).any(|n| matches(pattern, &parts[..n]));
            if hit {
                ignored = !include;
            }
        }
        ignored
    }
}

/// Whether `pattern` (components) matches `path` (components) exactly.
fn matches(pattern: &[String], path: &[String]) -> bool {
    match pattern.split_first() {
        None => path.is_empty(),
        Some((first, rest)) if first == "**" => {
            (0..=path.len()).any(|skip| matches(rest, &path[skip..]))
        }
        Some((first, rest)) => match path.split_first() {
            Some((name, tail)) => glob(first.as_bytes(), name.as_bytes()) && matches(rest, tail),
            None => false,
        },
    }
}

/// `*` and `?` glob of one component (`\` escapes the next character).
pub fn glob(pattern: &[u8], name: &[u8]) -> bool {
    match pattern.split_first() {
        None => name.is_empty(),
        Some((b'*', rest)) => (0..=name.len()).any(|i| glob(rest, &name[i..])),
        Some((b'?', rest)) => !name.is_empty() && glob(rest, &name[1..]),
        Some((b'\\', rest)) if !rest.is_empty() => {
            name.first() == rest.first() && glob(&rest[1..], &name[1..])
        }
        Some((c, rest)) => name.first() == Some(c) && glob(rest, &name[1..]),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn patterns_exclude_and_reinclude() {
        let ignore = Ignore::parse("# comment\n*.log\n/build\n**/tmp\nsecret*\n!secret.pub\n");
        let ignored = |p: &str| ignore.ignored(Path::new(p));
        assert!(ignored("a.log"));
        assert!(!ignored("dir/a.log"), "* stays in one component");
        assert!(ignored("build/x/y"), "below an excluded dir");
        assert!(ignored("a/b/tmp/c"));
        assert!(ignored("tmp"));
        assert!(ignored("secret.key"));
        assert!(!ignored("secret.pub"));
        assert!(!ignored("src/main.rs"));
    }

    #[test]
    fn glob_matches_within_a_component() {
        assert!(glob(b"*.txt", b"a.txt"));
        assert!(glob(b"a?c", b"abc"));
        assert!(!glob(b"*.txt", b"a.txt.bak"));
        assert!(glob(b"\\*", b"*"));
    }
}
