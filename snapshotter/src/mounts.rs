//! Mounts, as containerd's overlay snapshotter returns them.
//!
//! - no parent: a bind of the snapshot's `fs/` (`rbind`, `rw`, or `ro` for a view);
//! - a view with one parent: a read-only bind of the parent's `fs/`;
//! - otherwise an overlay of the parents' `fs/` dirs (nearest first), with `upperdir` and
//!   `workdir` for an active snapshot, or lowers only for a view (read-only by construction).
//!
//! A snapshot that sits on layer-store layers (`prepare_on_image`, or a remote snapshot, see
//! [`Snapshotter::prepare_remote`]) adds their trees below its own dir, and the store's
//! `objects/` as a data-only lower when they are stubs.

use std::path::{Path, PathBuf};

use strata_cow::overlay::{Overlay, OverlayOptions, RedirectDir};
use strata_cow::{MountGuard, MountSpec};

use crate::error::{Error, Result};
use crate::info::{Kind, Labels};
use crate::layout::Layout;
use crate::snapshotter::{Base, Placement, Snapshotter};
use crate::tables::Lower;

impl Snapshotter {
    /// containerd's Prepare: creates active snapshot `key` on the committed `parent` and
    /// returns the mounts of its writable tree.
    pub fn prepare(
        &self,
        key: &str,
        parent: Option<&str>,
        labels: Labels,
    ) -> Result<Vec<MountSpec>> {
        let placement = self.create(Kind::Active, key, parent, Base::default(), labels)?;
        Ok(self.specs(&placement))
    }

    /// containerd's View: creates read-only view `key` of the committed `parent` and returns
    /// its mounts.
    pub fn view(&self, key: &str, parent: Option<&str>, labels: Labels) -> Result<Vec<MountSpec>> {
        let placement = self.create(Kind::View, key, parent, Base::default(), labels)?;
        Ok(self.specs(&placement))
    }

    /// The mounts of active snapshot or view `key`; a committed snapshot has none
    /// (failed precondition).
    pub fn mounts(&self, key: &str) -> Result<Vec<MountSpec>> {
        Ok(self.specs(&self.placement(key)?))
    }

    /// Mounts `key` at `target` (see [`Snapshotter::mounts`]); dropping the guard unmounts it.
    pub fn mount(&self, key: &str, target: &Path) -> Result<MountGuard> {
        let specs = self.mounts(key)?;
        // Every mount kind here is one spec.
        let spec = specs.first().ok_or_else(|| Error::NotFound {
            key: key.to_owned(),
        })?;
        spec.mount_at(target).map_err(|source| Error::Mount {
            key: key.to_owned(),
            target: target.to_owned(),
            source,
        })
    }

    pub(crate) fn specs(&self, placement: &Placement) -> Vec<MountSpec> {
        vec![spec(self.layout(), placement, self.overlay_options())]
    }
}

fn spec(layout: &Layout, placement: &Placement, options: &OverlayOptions) -> MountSpec {
    let bind = |dir: &Path, read_only: bool| MountSpec {
        fs_type: "bind".to_owned(),
        source: dir.to_string_lossy().into_owned(),
        options: vec![
            if read_only { "ro" } else { "rw" }.to_owned(),
            "rbind".to_owned(),
        ],
    };
    let lowers = &placement.lowers;
    let dirs: Vec<PathBuf> = lowers
        .dirs
        .iter()
        .map(|lower| match lower {
            Lower::Snapshot(id) => layout.upper(*id),
            Lower::Layer(id) => layout.layer_tree(id),
        })
        .collect();
    match (placement.kind, dirs.as_slice(), lowers.data_lower) {
        (kind, [], _) => bind(&layout.upper(placement.id), kind == Kind::View),
        (Kind::View, [dir], false) => bind(dir, true),
        (kind, dirs, data_lower) => {
            let mut overlay = Overlay::new().lowers(dirs.iter().cloned());
            if data_lower {
                // The kernel follows a stub's metacopy and redirect only with both on.
                overlay = overlay.data_lower(layout.objects()).options(
                    options
                        .clone()
                        .with_metacopy(Some(true))
                        .with_redirect_dir(Some(RedirectDir::On)),
                );
            } else {
                overlay = overlay.options(options.clone());
            }
            if kind == Kind::Active {
                overlay = overlay.upper(layout.upper(placement.id), layout.work(placement.id));
            }
            overlay.to_spec()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tables::Lowers;

    fn placement(kind: Kind, parent_ids: &[u64]) -> Placement {
        Placement {
            id: 9,
            kind,
            lowers: Lowers {
                dirs: parent_ids.iter().map(|id| Lower::Snapshot(*id)).collect(),
                ..Lowers::default()
            },
        }
    }

    #[test]
    fn shapes_match_containerd() {
        let root = tempfile::tempdir().unwrap();
        let layout = Layout::create(
            root.path(),
            root.path().join("tmp"),
            std::sync::Arc::new(strata_layer_store::KernelSync),
        )
        .unwrap();
        let r = root.path().display();
        let opts = OverlayOptions::default();
        let spec = |kind, parents: &[u64]| spec(&layout, &placement(kind, parents), &opts);

        let active = spec(Kind::Active, &[]);
        assert_eq!(
            (active.fs_type.as_str(), active.options.clone()),
            ("bind", vec!["rw".into(), "rbind".into()])
        );
        assert_eq!(active.source, format!("{r}/snapshots/9/fs"));
        assert_eq!(spec(Kind::View, &[]).options, ["ro", "rbind"]);

        let view1 = spec(Kind::View, &[3]);
        assert_eq!(
            (view1.source, view1.options),
            (
                format!("{r}/snapshots/3/fs"),
                vec!["ro".into(), "rbind".into()]
            )
        );

        let active2 = spec(Kind::Active, &[3, 1]);
        assert_eq!(active2.fs_type, "overlay");
        let lower = format!("lowerdir={r}/snapshots/3/fs:{r}/snapshots/1/fs");
        assert!(active2.options.contains(&lower), "{:?}", active2.options);
        assert!(
            active2
                .options
                .contains(&format!("upperdir={r}/snapshots/9/fs"))
        );
        assert!(
            active2
                .options
                .contains(&format!("workdir={r}/snapshots/9/work"))
        );

        let view2 = spec(Kind::View, &[3, 1]);
        assert!(view2.options.contains(&lower));
        assert!(!view2.options.iter().any(|o| o.starts_with("upperdir=")));
    }

    #[test]
    fn layers_go_below_the_parents_with_objects_as_data_lower() {
        let root = tempfile::tempdir().unwrap();
        let layout = Layout::create(
            root.path(),
            root.path().join("tmp"),
            std::sync::Arc::new(strata_layer_store::KernelSync),
        )
        .unwrap();
        let r = root.path().display();
        let on_layers = |kind, parent_ids: &[u64], data_lower| Placement {
            id: 9,
            kind,
            lowers: Lowers {
                dirs: parent_ids
                    .iter()
                    .map(|id| Lower::Snapshot(*id))
                    .chain(["top", "bottom"].map(|id| Lower::Layer(id.into())))
                    .collect(),
                data_lower,
            },
        };
        let opts = OverlayOptions::default();
        let stubs = spec(&layout, &on_layers(Kind::Active, &[3], true), &opts);
        let lower = format!(
            "lowerdir={r}/snapshots/3/fs:{r}/layers/top/tree:{r}/layers/bottom/tree::{r}/objects"
        );
        assert!(stubs.options.contains(&lower), "{:?}", stubs.options);
        assert!(
            stubs.options.contains(&"metacopy=on".to_owned()),
            "{:?}",
            stubs.options
        );
        assert!(
            stubs
                .options
                .contains(&format!("upperdir={r}/snapshots/9/fs"))
        );

        let trees = spec(&layout, &on_layers(Kind::View, &[], false), &opts);
        let lower = format!("lowerdir={r}/layers/top/tree:{r}/layers/bottom/tree");
        assert_eq!(trees.fs_type, "overlay");
        assert!(trees.options.contains(&lower), "{:?}", trees.options);
        assert!(!trees.options.iter().any(|o| o.starts_with("metacopy")));
    }
}
