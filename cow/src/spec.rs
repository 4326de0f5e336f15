//! A mount as containerd describes one (`mount.Mount`): a type, a source and option words.

use std::os::fd::AsFd;
use std::path::Path;

use rustix::fs::CWD;
use rustix::mount::{MountAttrFlags, OpenTreeFlags};

use crate::overlay::Overlay;
use crate::sys::{self, Recursion};
use crate::{LayerRole, MountError, MountGuard};

/// A mount described the way containerd's snapshotters return them from `Mounts()`.
///
/// Two types are mountable here: `overlay` (options as [`Overlay::to_spec`] writes them; they go
/// through the same [`Overlay`] path) and `bind` (options `bind`/`rbind`, `ro`/`rw`, `nosuid`,
/// `nodev`, `noexec`; a read-only bind refuses writes, submounts included with `rbind`).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct MountSpec {
    /// Filesystem type: `overlay` or `bind`.
    pub fs_type: String,
    /// What to mount: `overlay`, or the directory to bind.
    pub source: String,
    /// Option words such as `lowerdir=/a:/b` or `ro`.
    pub options: Vec<String>,
}

impl MountSpec {
    /// The mount points where this is mounted now (in this process's mount namespace), from
    /// `/proc/self/mountinfo`: to refuse mounting it twice, or removing what is in use.
    ///
    /// # Errors
    /// The mount table, or a bind's source, cannot be read.
    pub fn mounted_at(&self) -> std::io::Result<Vec<std::path::PathBuf>> {
        crate::mountinfo::points_of(self)
    }

    /// Mounts this at `target`; the guard unmounts it when dropped.
    pub fn mount_at(&self, target: &Path) -> Result<MountGuard, MountError> {
        match self.fs_type.as_str() {
            "overlay" => Overlay::from_spec_options(&self.options)?.mount_at(target),
            "bind" => self.bind_at(target),
            _ => Err(MountError::InvalidSpec {
                option: self.fs_type.clone(),
                reason: "only overlay and bind mounts are supported",
            }),
        }
    }

    /// Clones the source's mount tree (`open_tree`), sets the attributes on the still-detached
    /// clone (so it is never visible writable), then attaches it.
    ///
    /// # References
    /// - [`open_tree(2)`](https://man7.org/linux/man-pages/man2/open_tree.2.html),
    ///   [`mount_setattr(2)`](https://man7.org/linux/man-pages/man2/mount_setattr.2.html)
    fn bind_at(&self, target: &Path) -> Result<MountGuard, MountError> {
        let mut recursion = Recursion::Single;
        let mut attrs = MountAttrFlags::empty();
        for word in &self.options {
            match word.as_str() {
                "bind" => recursion = Recursion::Single,
                "rbind" => recursion = Recursion::Recursive,
                "ro" => attrs |= MountAttrFlags::MOUNT_ATTR_RDONLY,
                "rw" => attrs -= MountAttrFlags::MOUNT_ATTR_RDONLY,
                "nosuid" => attrs |= MountAttrFlags::MOUNT_ATTR_NOSUID,
                "nodev" => attrs |= MountAttrFlags::MOUNT_ATTR_NODEV,
                "noexec" => attrs |= MountAttrFlags::MOUNT_ATTR_NOEXEC,
                _ => {
                    return Err(MountError::InvalidSpec {
                        option: word.clone(),
                        reason: "unknown bind option",
                    });
                }
            }
        }
        let mut flags = OpenTreeFlags::OPEN_TREE_CLONE | OpenTreeFlags::OPEN_TREE_CLOEXEC;
        if recursion == Recursion::Recursive {
            flags |= OpenTreeFlags::AT_RECURSIVE;
        }
        let tree = rustix::mount::open_tree(CWD, self.source.as_str(), flags).map_err(|e| {
            MountError::Layer {
                role: LayerRole::BindSource,
                path: self.source.clone().into(),
                detail: String::new(),
                source: e.into(),
            }
        })?;
        if !attrs.is_empty() {
            sys::mount_setattr(tree.as_fd(), recursion, attrs, None).map_err(|source| {
                MountError::Kernel {
                    op: "mount_setattr",
                    detail: String::new(),
                    source,
                }
            })?;
        }
        MountGuard::attach(tree, target)
    }
}
