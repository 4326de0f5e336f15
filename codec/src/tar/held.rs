//! What the layer holds at each path so far, as later entries leave it: the rules that make a
//! layer one tree (nothing below a non-directory, hard links to regular files only).

use std::collections::BTreeMap;

use strata_cow::conventions::WHITEOUT_PREFIX;

use super::{EntryType, LinkTarget, TarError, lossy};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Node {
    Dir,
    File,
    Other,
}

/// The paths of the layer and what each is.
#[derive(Debug, Default)]
pub(super) struct Held {
    nodes: BTreeMap<Vec<u8>, Node>,
}

impl Held {
    /// What a hard link at `path` to `target` names; an error for itself or a non-file.
    pub(super) fn link_target(&self, path: &[u8], target: &[u8]) -> Result<LinkTarget, TarError> {
        match self.nodes.get(target) {
            None if target != path => Ok(LinkTarget::Below),
            Some(Node::File) if target != path => Ok(LinkTarget::ThisLayer),
            _ => Err(TarError::DanglingHardlink {
                path: lossy(path),
                target: lossy(target),
            }),
        }
    }

    /// Records the entry at `path`, which replaces what was there (a directory replacing a
    /// directory keeps its children). Whiteouts hide only lower layers: they change nothing.
    pub(super) fn track(&mut self, path: &[u8], kind: &EntryType, at: u64) -> Result<(), TarError> {
        let mut end = 0;
        while let Some(pos) = path[end..].iter().position(|&b| b == b'/') {
            if self
                .nodes
                .get(&path[..end + pos])
                .is_some_and(|&n| n != Node::Dir)
            {
                return Err(TarError::BelowNonDirectory {
                    path: lossy(path),
                    offset: at,
                });
            }
            end += pos + 1;
        }
        if crate::path::split(path).1.starts_with(WHITEOUT_PREFIX) {
            return Ok(());
        }
        let node = match kind {
            EntryType::Dir => Node::Dir,
            EntryType::File | EntryType::Hardlink { .. } => Node::File,
            _ => Node::Other,
        };
        // A non-directory replaces everything below it, even below a directory the layer
        // never named (a parent implied by a deeper entry).
        self.nodes.insert(path.to_vec(), node);
        if node != Node::Dir {
            let mut start = path.to_vec();
            start.push(b'/');
            let mut stop = path.to_vec();
            stop.push(b'/' + 1);
            let below: Vec<Vec<u8>> = self
                .nodes
                .range(start..stop)
                .map(|(k, _)| k.clone())
                .collect();
            for key in below {
                self.nodes.remove(&key);
            }
        }
        Ok(())
    }
}
