//! Options every command takes, and how they resolve.

use std::path::PathBuf;

use anyhow::Context;

/// Whether a command may create the store it works on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// Reads (or changes) what a store holds: a missing store is an error.
    Read,
    /// Adds to the store: creates it when missing.
    Create,
}

/// Options shared by every command.
#[derive(Debug, clap::Args)]
pub struct Global {
    /// Store root [default: /var/lib/strata as root, $XDG_DATA_HOME/strata otherwise].
    #[arg(long, global = true, env = "STRATA_ROOT", value_name = "DIR")]
    root: Option<PathBuf>,
    /// Print one JSON document on stdout.
    #[arg(long, global = true)]
    pub json: bool,
    /// Do not flush written layer files before committing them, as containerd 1.6 unpacks
    /// layers: faster, but after a power loss a committed layer may name data that never
    /// reached the disk (`strata fsck` finds it).
    #[arg(long, global = true)]
    no_sync: bool,
    /// The snapshot namespace the snapshot commands work in: `strata` (the command line's)
    /// or `containerd` (what containerd made through `strata serve`).
    #[arg(long, global = true, env = "STRATA_NAMESPACE", value_name = "NAME", default_value = strata_snapshotter::CLI_NAMESPACE)]
    pub namespace: String,
}

impl Global {
    /// The store root this invocation works on.
    pub fn root(&self) -> PathBuf {
        if let Some(root) = &self.root {
            return root.clone();
        }
        if rustix::process::geteuid().is_root() {
            return PathBuf::from("/var/lib/strata");
        }
        let data_home = std::env::var_os("XDG_DATA_HOME")
            .map(PathBuf::from)
            .or_else(|| {
                std::env::var_os("HOME").map(|home| PathBuf::from(home).join(".local/share"))
            })
            .unwrap_or_else(|| PathBuf::from("."));
        data_home.join("strata")
    }

    /// The store root, which `access` may create; a command that only reads fails on a
    /// root that holds no store, naming it, rather than making an empty one there.
    pub fn root_for(&self, access: Access) -> anyhow::Result<PathBuf> {
        let root = self.root();
        if access == Access::Read {
            // A store whose database is gone but whose layers are not: opening it reports the
            // missing database by name.
            if !strata_layer_store::Store::exists(&root) && !holds_layers(&root) {
                anyhow::bail!(
                    "no store at {}: pass --root DIR (or set STRATA_ROOT) to use another, \
                     or create one with a command that writes, such as `strata import` or `strata pull`",
                    root.display()
                );
            }
        }
        Ok(root)
    }

    /// The layer store at [`Global::root`], opened for one command.
    pub fn open_store(&self, access: Access) -> anyhow::Result<strata_layer_store::Store> {
        let root = self.root_for(access)?;
        let store = strata_layer_store::Store::open(&root)
            .with_context(|| format!("opening store {}", root.display()))?;
        Ok(store.with_durability(self.durability()))
    }

    /// How the layer store commits what it writes (`--no-sync`).
    pub fn durability(&self) -> strata_layer_store::Durability {
        if self.no_sync {
            strata_layer_store::Durability::None
        } else {
            strata_layer_store::Durability::Immediate
        }
    }

    /// Prints `value` as JSON when `--json` was given, otherwise `text()`.
    pub fn emit<T: serde::Serialize>(
        &self,
        value: &T,
        text: impl FnOnce() -> String,
    ) -> anyhow::Result<()> {
        if self.json {
            println!("{}", serde_json::to_string_pretty(value)?);
        } else {
            let text = text();
            if !text.is_empty() {
                println!("{text}");
            }
        }
        Ok(())
    }
}

/// Whether `root` has a `layers/` or `objects/` directory with anything in it.
fn holds_layers(root: &std::path::Path) -> bool {
    ["layers", "objects"].iter().any(|dir| {
        std::fs::read_dir(root.join(dir)).is_ok_and(|mut entries| entries.next().is_some())
    })
}
