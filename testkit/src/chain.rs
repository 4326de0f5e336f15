//! Error chains as a reader sees them: each error's message followed by its causes.

use std::error::Error;

/// `err` and every cause below it, joined with `": "`, as the CLI prints an error.
pub fn error_chain(err: &dyn Error) -> String {
    messages(err).join(": ")
}

/// The message of `err` and of each cause below it, outermost first.
fn messages(err: &dyn Error) -> Vec<String> {
    let mut out = vec![err.to_string()];
    let mut cause = err.source();
    while let Some(e) = cause {
        out.push(e.to_string());
        cause = e.source();
    }
    out
}

/// Asserts that printing `err`'s chain says every cause exactly once: no error's message
/// contains the message of a cause below it (as one that formats its `source` into its own
/// message would), and `err` has at least one cause (a chain of one proves nothing).
///
/// Returns the chain as [`error_chain`] prints it, for further assertions.
///
/// ```
/// #[derive(Debug, thiserror::Error)]
/// #[error("reading /x")]
/// struct Reading(#[source] std::io::Error);
///
/// let err = Reading(std::io::Error::from(std::io::ErrorKind::NotFound));
/// let chain = strata_testkit::assert_chain_once(&err);
/// assert_eq!(chain, "reading /x: entity not found");
/// ```
#[track_caller]
pub fn assert_chain_once(err: &dyn Error) -> String {
    let messages = messages(err);
    let chain = messages.join(": ");
    assert!(
        messages.len() > 1,
        "{chain:?} has no source: nothing shows that its cause is said once"
    );
    for (at, outer) in messages.iter().enumerate() {
        for inner in &messages[at + 1..] {
            assert!(
                !inner.is_empty() && !outer.contains(inner.as_str()),
                "{chain:?} says {inner:?} twice: once in its own right, once in {outer:?}"
            );
        }
    }
    chain
}

#[cfg(test)]
mod tests {
    use super::assert_chain_once;

    /// An error that formats its source into its message, as the chain must not.
    #[derive(Debug, thiserror::Error)]
    #[error("reading /x: {source}")]
    struct Twice {
        source: std::io::Error,
    }

    #[test]
    #[should_panic(expected = "twice")]
    fn a_cause_in_its_parents_message_is_refused() {
        let source = std::io::Error::from(std::io::ErrorKind::NotFound);
        assert_chain_once(&Twice { source });
    }

    #[test]
    #[should_panic(expected = "no source")]
    fn an_error_without_a_cause_is_refused() {
        assert_chain_once(&std::io::Error::from(std::io::ErrorKind::NotFound));
    }
}
