//! Dockerfile word splitting and variable substitution, as docker's shell lexer does them for
//! `ENV`, `LABEL`, `ARG`, `COPY`, `WORKDIR` and the other instructions that expand variables.
//!
//! Words split on unquoted whitespace; quotes are removed; `$NAME`, `${NAME}`,
//! `${NAME:-default}` and `${NAME:+alternative}` expand outside single quotes; a backslash
//! escapes the next character (inside double quotes only before `"`, `$` and `\`).

use std::collections::BTreeMap;

/// Variables visible to an instruction: build args and the image's environment.
pub type Vars = BTreeMap<String, String>;

/// Splits `text` into words, expanding variables from `vars`.
pub fn split(text: &str, vars: &Vars) -> Vec<String> {
    let mut words = Vec::new();
    let mut current = String::new();
    let mut started = false;
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            c if c.is_whitespace() => {
                if started {
                    words.push(std::mem::take(&mut current));
                    started = false;
                }
            }
            '\'' => {
                started = true;
                for c in chars.by_ref() {
                    if c == '\'' {
                        break;
                    }
                    current.push(c);
                }
            }
            '"' => {
                started = true;
                while let Some(c) = chars.next() {
                    match c {
                        '"' => break,
                        '\\' => match chars.peek() {
                            Some(&n) if matches!(n, '"' | '$' | '\\') => {
                                current.push(n);
                                chars.next();
                            }
                            _ => current.push('\\'),
                        },
                        '$' => current.push_str(&variable(&mut chars, vars)),
                        c => current.push(c),
                    }
                }
            }
            '\\' => {
                started = true;
                if let Some(n) = chars.next() {
                    current.push(n);
                }
            }
            '$' => {
                started = true;
                current.push_str(&variable(&mut chars, vars));
            }
            c => {
                started = true;
                current.push(c);
            }
        }
    }
    if started {
        words.push(current);
    }
    words
}

/// `text` with its variables expanded and quotes removed, as one word (whitespace kept).
pub fn expand(text: &str, vars: &Vars) -> String {
    // Quote the whitespace so that `split` keeps it: split on nothing.
    let mut out = String::new();
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\\' if chars.peek() == Some(&'$') => {
                out.push('$');
                chars.next();
            }
            '$' => out.push_str(&variable(&mut chars, vars)),
            c => out.push(c),
        }
    }
    out
}

/// Expands the variable after a `$` (already consumed); a lone `$` stays.
fn variable(chars: &mut std::iter::Peekable<std::str::Chars<'_>>, vars: &Vars) -> String {
    let lookup = |name: &str| vars.get(name).cloned().unwrap_or_default();
    match chars.peek() {
        Some('{') => {
            chars.next();
            let mut body = String::new();
            for c in chars.by_ref() {
                if c == '}' {
                    break;
                }
                body.push(c);
            }
            let (name, modifier) = match body.find(':') {
                Some(i) => (&body[..i], Some(&body[i + 1..])),
                None => (body.as_str(), None),
            };
            let value = vars.get(name).filter(|v| !v.is_empty());
            match modifier {
                Some(m) if m.starts_with('-') => match value {
                    Some(v) => v.clone(),
                    None => expand(&m[1..], vars),
                },
                Some(m) if m.starts_with('+') => match value {
                    Some(_) => expand(&m[1..], vars),
                    None => String::new(),
                },
                _ => lookup(name),
            }
        }
        Some(c) if c.is_ascii_alphanumeric() || *c == '_' => {
            let mut name = String::new();
            while let Some(&c) = chars.peek() {
                if !(c.is_ascii_alphanumeric() || c == '_') {
                    break;
                }
                name.push(c);
                chars.next();
            }
            lookup(&name)
        }
        _ => "$".to_owned(),
    }
}

/// `KEY=VALUE` pairs of `ENV`, `LABEL` and `ARG`, expanded; the legacy `ENV KEY VALUE` form
/// (one pair, the value the rest of the line) when the first word has no `=`.
pub fn pairs(text: &str, vars: &Vars) -> Vec<(String, Option<String>)> {
    let words = split(text, vars);
    if let Some(first) = words.first().filter(|w| !w.contains('=')) {
        if words.len() > 1 {
            let rest = text.trim_start()[first.len()..].trim();
            return vec![(first.clone(), Some(expand(&unquote(rest), vars)))];
        }
    }
    words
        .into_iter()
        .map(|w| match w.split_once('=') {
            Some((k, v)) => (k.to_owned(), Some(v.to_owned())),
            None => (w, None),
        })
        .collect()
}

/// `text` without surrounding double or single quotes.
fn unquote(text: &str) -> String {
    for q in ['"', '\''] {
        if let Some(inner) = text.strip_prefix(q).and_then(|t| t.strip_suffix(q)) {
            return inner.to_owned();
        }
    }
    text.to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vars() -> Vars {
        [("A", "1"), ("B", "two words"), ("E", "")]
            .into_iter()
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .collect()
    }

    #[test]
    fn words_split_on_unquoted_space_and_expand_outside_single_quotes() {
        assert_eq!(
            split(
                r#"x=$A y="${B}!" 'z=$A' w=\$A ${E:-dflt} ${A:+alt}"#,
                &vars()
            ),
            ["x=1", "y=two words!", "z=$A", "w=$A", "dflt", "alt"]
        );
        assert_eq!(split("  ", &vars()), Vec::<String>::new());
        assert_eq!(split(r#""""#, &vars()), [""]);
    }

    #[test]
    fn pairs_take_both_env_forms() {
        assert_eq!(
            pairs("A=1 B=\"x y\" C", &vars()),
            [
                ("A".into(), Some("1".into())),
                ("B".into(), Some("x y".into())),
                ("C".into(), None)
            ]
        );
        assert_eq!(
            pairs("GREETING hello $A world", &vars()),
            [("GREETING".into(), Some("hello 1 world".into()))]
        );
    }

    #[test]
    fn expand_keeps_whitespace() {
        assert_eq!(expand("/app/$A dir", &vars()), "/app/1 dir");
        assert_eq!(expand("cost \\$5", &vars()), "cost $5");
    }
}
