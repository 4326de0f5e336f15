//! Integration tests of the layer store, one module per operation.

mod codec_agreement;
mod confinement;
mod damage;
mod dedup;
mod failures;
mod fixtures;
mod gc_fsck;
mod hostile;
mod hostile_export;
mod import_export;
mod interop;
mod materialize;
mod names;
mod object_names;
mod power_cut;
mod props;
mod races;
mod record_contract;
mod record_sample;

use std::path::Path;

use strata_layer_store::{ImportOptions, ImportReport, Store};

/// Imports `source` under `name`.
pub fn import(store: &Store, source: &Path, name: &str) -> anyhow::Result<ImportReport> {
    let options = ImportOptions::default().with_name(Some(name.to_owned()));
    Ok(store.import(source, &options)?)
}

/// Every file under `dir`, relative, sorted.
pub fn files_under(dir: &Path) -> Vec<String> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() && !path.is_symlink() {
                stack.push(path);
            } else {
                out.push(
                    path.strip_prefix(dir)
                        .unwrap()
                        .to_string_lossy()
                        .into_owned(),
                );
            }
        }
    }
    out.sort();
    out
}
