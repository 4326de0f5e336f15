//! containerd's filter syntax, the subset snapshot Walk uses.
//!
//! ```text
//! filter    := selector ("," selector)*          every selector must match (AND)
//! selector  := fieldpath (("==" | "!=") value)?  no operator: the field must be present
//! fieldpath := field ("." field)*
//! field     := [A-Za-z0-9_]+ | quoted
//! value     := quoted | [^\s,"]+
//! quoted    := '"' (char | '\' escape)* '"'
//! ```
//!
//! Several filters match when any of them does (OR). Fields: `kind`, `name`, `parent`,
//! `labels.KEY` (a key with dots or slashes is quoted: `labels."containerd.io/gc.root"`).

use crate::info::Info;

/// A filter that did not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("filter {filter:?} at byte {offset}: {reason}")]
#[non_exhaustive]
pub struct FilterError {
    /// The whole filter string.
    pub filter: String,
    /// Byte offset of the problem.
    pub offset: usize,
    /// What was expected there.
    pub reason: &'static str,
}

/// A parsed filter list: matches when any of its filters does.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Filters(Vec<Vec<Selector>>);

#[derive(Debug, Clone, PartialEq, Eq)]
struct Selector {
    path: Vec<String>,
    op: Op,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Op {
    Present,
    Equal(String),
    NotEqual(String),
}

impl Filters {
    /// Parses each filter; an empty list (or only empty strings) matches everything.
    pub fn parse<S: AsRef<str>>(filters: &[S]) -> Result<Filters, FilterError> {
        let parsed = filters
            .iter()
            .map(AsRef::as_ref)
            .filter(|f| !f.trim().is_empty())
            .map(parse_one)
            .collect::<Result<_, _>>()?;
        Ok(Filters(parsed))
    }

    /// True when `info` passes.
    pub fn matches(&self, info: &Info) -> bool {
        self.0.is_empty()
            || self
                .0
                .iter()
                .any(|selectors| selectors.iter().all(|s| s.matches(info)))
    }
}

impl Selector {
    fn matches(&self, info: &Info) -> bool {
        let value = field(info, &self.path);
        match &self.op {
            Op::Present => value.is_some(),
            Op::Equal(want) => value == Some(want.as_str()),
            // containerd compares an absent field as the empty string here.
            Op::NotEqual(want) => value.unwrap_or("") != want,
        }
    }
}

fn field<'a>(info: &'a Info, path: &[String]) -> Option<&'a str> {
    match path {
        [f] if f == "kind" => Some(info.kind.as_str()),
        [f] if f == "name" => Some(&info.name),
        [f] if f == "parent" => Some(info.parent.as_deref().unwrap_or("")),
        [f, key @ ..] if f == "labels" && !key.is_empty() => {
            info.labels.get(&key.join(".")).map(String::as_str)
        }
        _ => None,
    }
}

struct Parser<'a> {
    src: &'a str,
    pos: usize,
}

fn parse_one(src: &str) -> Result<Vec<Selector>, FilterError> {
    let mut p = Parser { src, pos: 0 };
    let mut selectors = vec![p.selector()?];
    loop {
        p.skip_space();
        match p.peek() {
            None => return Ok(selectors),
            Some(',') => {
                p.pos += 1;
                selectors.push(p.selector()?);
            }
            Some(_) => return Err(p.error("expected ',' or end of filter")),
        }
    }
}

impl Parser<'_> {
    fn error(&self, reason: &'static str) -> FilterError {
        FilterError {
            filter: self.src.to_owned(),
            offset: self.pos,
            reason,
        }
    }

    fn peek(&self) -> Option<char> {
        self.src[self.pos..].chars().next()
    }

    fn skip_space(&mut self) {
        while let Some(c) = self.peek().filter(|c| c.is_whitespace()) {
            self.pos += c.len_utf8();
        }
    }

    fn selector(&mut self) -> Result<Selector, FilterError> {
        let mut path = vec![self.field()?];
        while self.peek() == Some('.') {
            self.pos += 1;
            path.push(self.field()?);
        }
        self.skip_space();
        let rest = &self.src[self.pos..];
        let op = if rest.starts_with("==") || rest.starts_with("!=") {
            self.pos += 2;
            self.skip_space();
            let value = self.value()?;
            if rest.starts_with("==") {
                Op::Equal(value)
            } else {
                Op::NotEqual(value)
            }
        } else if rest.starts_with("~=") {
            return Err(self.error("the regular-expression operator '~=' is not supported"));
        } else {
            Op::Present
        };
        Ok(Selector { path, op })
    }

    fn field(&mut self) -> Result<String, FilterError> {
        self.skip_space();
        if self.peek() == Some('"') {
            return self.quoted();
        }
        let start = self.pos;
        while self
            .peek()
            .is_some_and(|c| c.is_ascii_alphanumeric() || c == '_')
        {
            self.pos += 1;
        }
        if start == self.pos {
            return Err(self.error("expected a field name"));
        }
        Ok(self.src[start..self.pos].to_owned())
    }

    fn value(&mut self) -> Result<String, FilterError> {
        if self.peek() == Some('"') {
            return self.quoted();
        }
        let start = self.pos;
        while self
            .peek()
            .is_some_and(|c| !c.is_whitespace() && c != ',' && c != '"')
        {
            self.pos += self.peek().map_or(1, char::len_utf8);
        }
        if start == self.pos {
            return Err(self.error("expected a value"));
        }
        Ok(self.src[start..self.pos].to_owned())
    }

    fn quoted(&mut self) -> Result<String, FilterError> {
        self.pos += 1; // opening quote
        let mut out = String::new();
        loop {
            let Some(c) = self.peek() else {
                return Err(self.error("unterminated quoted string"));
            };
            self.pos += c.len_utf8();
            match c {
                '"' => return Ok(out),
                '\\' => {
                    let Some(escaped) = self.peek() else {
                        return Err(self.error("unterminated escape"));
                    };
                    self.pos += escaped.len_utf8();
                    out.push(match escaped {
                        'n' => '\n',
                        't' => '\t',
                        '\\' | '"' | '/' => escaped,
                        _ => return Err(self.error("unknown escape")),
                    });
                }
                c => out.push(c),
            }
        }
    }
}

#[cfg(test)]
mod tests;
