//! Overlay mounts: a by-value builder that mounts through the new mount API (`lowerdir+`,
//! `datadir+`, each layer passed as a file descriptor) or, on older kernels or when asked, the
//! classic `lowerdir=a:b::data` option string through `mount(2)`.
//!
//! # References
//! - [overlayfs.rst](https://docs.kernel.org/filesystems/overlayfs.html)

mod escape;
mod legacy;
pub(crate) mod new_api;
mod parse;

use std::os::fd::OwnedFd;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use crate::probe::Features;
use crate::{MountError, MountGuard, MountSpec};

pub(crate) use escape::{escape_path, split_lowerdir, split_options, unescape};

/// The most lower dirs (regular plus data-only) the kernel stacks (`OVL_MAX_STACK`).
pub const MAX_LAYERS: usize = 500;

/// The `redirect_dir` option: whether directory renames create redirects and whether lookups
/// follow them (data-only lowers are only reachable through followed redirects).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RedirectDir {
    /// Renaming a merged dir fails with `EXDEV`; redirects are followed only if the module's
    /// `redirect_always_follow` knob says so.
    Off,
    /// Follow redirects found in lowers, never create them.
    Follow,
    /// Neither create nor follow.
    NoFollow,
    /// Create and follow redirects.
    On,
}

impl RedirectDir {
    /// The option's value as the kernel spells it.
    pub fn as_str(self) -> &'static str {
        match self {
            RedirectDir::Off => "off",
            RedirectDir::Follow => "follow",
            RedirectDir::NoFollow => "nofollow",
            RedirectDir::On => "on",
        }
    }

    fn parse(value: &str) -> Option<RedirectDir> {
        Some(match value {
            "off" => RedirectDir::Off,
            "follow" => RedirectDir::Follow,
            "nofollow" => RedirectDir::NoFollow,
            "on" => RedirectDir::On,
            _ => return None,
        })
    }
}

/// Overlay options beyond the directories. `None` leaves a knob at the kernel's default.
///
/// The default is containerd's: `index=off` (hard links copied up stay correct without the
/// index, and the index would pin the upper to these exact lowers), everything else as the
/// kernel has it.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct OverlayOptions {
    /// Keep overlay's xattrs in `user.overlay.*` instead of `trusted.overlay.*`: what a mount
    /// inside a user namespace needs. Conflicts with redirects and metacopy.
    pub userxattr: bool,
    /// Skip every sync of the upper (`volatile`): faster, but the upper is garbage after a crash.
    pub volatile: bool,
    /// `index=on|off`; only sent when the overlay module has the knob.
    pub index: Option<bool>,
    /// `metacopy=on|off`: copy up only metadata on chown/chmod. `on` needs `redirect_dir=on`.
    pub metacopy: Option<bool>,
    /// `redirect_dir`; with data-only lowers and `None`, [`RedirectDir::Follow`] is used, since
    /// their files are reached only through redirects.
    pub redirect_dir: Option<RedirectDir>,
    /// Mount read-only even with an upper (`MOUNT_ATTR_RDONLY`, option word `ro`).
    pub read_only: bool,
}

impl Default for OverlayOptions {
    fn default() -> Self {
        OverlayOptions {
            userxattr: false,
            volatile: false,
            index: Some(false),
            metacopy: None,
            redirect_dir: None,
            read_only: false,
        }
    }
}

impl OverlayOptions {
    /// With [`userxattr`](OverlayOptions::userxattr) set to `on`.
    pub fn with_userxattr(mut self, on: bool) -> Self {
        self.userxattr = on;
        self
    }

    /// With [`volatile`](OverlayOptions::volatile) set to `on`.
    pub fn with_volatile(mut self, on: bool) -> Self {
        self.volatile = on;
        self
    }

    /// With [`index`](OverlayOptions::index) set to `index`.
    pub fn with_index(mut self, index: Option<bool>) -> Self {
        self.index = index;
        self
    }

    /// With [`metacopy`](OverlayOptions::metacopy) set to `metacopy`.
    pub fn with_metacopy(mut self, metacopy: Option<bool>) -> Self {
        self.metacopy = metacopy;
        self
    }

    /// With [`redirect_dir`](OverlayOptions::redirect_dir) set to `redirect_dir`.
    pub fn with_redirect_dir(mut self, redirect_dir: Option<RedirectDir>) -> Self {
        self.redirect_dir = redirect_dir;
        self
    }

    /// With [`read_only`](OverlayOptions::read_only) set to `on`.
    pub fn with_read_only(mut self, on: bool) -> Self {
        self.read_only = on;
        self
    }
}

/// Which kernel interface mounts the overlay.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum MountApi {
    /// The new API when the kernel has `lowerdir+` (and `datadir+` if needed), else legacy.
    #[default]
    Auto,
    /// `fsopen`/`fsconfig`/`fsmount`, one `lowerdir+` per layer. Fails if the kernel lacks it.
    New,
    /// `mount(2)` with the classic option string, compacted to paths relative to the lowers'
    /// common parent when it would not fit in a page. Cannot make detached mounts.
    Legacy,
}

/// An overlay mount being described; nothing touches the kernel until a `mount_*` call.
///
/// ```no_run
/// # fn main() -> Result<(), strata_cow::MountError> {
/// use std::path::Path;
/// use strata_cow::overlay::Overlay;
///
/// let guard = Overlay::new()
///     .lower("/layers/app")   // topmost first
///     .lower("/layers/base")
///     .upper("/snap/1/fs", "/snap/1/work")
///     .mount_at(Path::new("/run/rootfs"))?;
/// // ... use /run/rootfs; dropping `guard` unmounts it.
/// # drop(guard); Ok(()) }
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[must_use = "an Overlay does nothing until mounted"]
pub struct Overlay {
    lowers: Vec<PathBuf>,
    data_lowers: Vec<PathBuf>,
    upper: Option<(PathBuf, PathBuf)>,
    options: OverlayOptions,
    api: MountApi,
}

impl Overlay {
    /// An overlay with no directories and default options.
    pub fn new() -> Overlay {
        Overlay::default()
    }

    /// Adds a lower dir below the ones added so far (call order is topmost first).
    pub fn lower(mut self, dir: impl Into<PathBuf>) -> Overlay {
        self.lowers.push(dir.into());
        self
    }

    /// Adds lower dirs, topmost first, below the ones added so far.
    pub fn lowers<P: Into<PathBuf>>(mut self, dirs: impl IntoIterator<Item = P>) -> Overlay {
        self.lowers.extend(dirs.into_iter().map(Into::into));
        self
    }

    /// Adds a data-only lower dir: its files are reached only through the `redirect` of a
    /// metadata-only file in a regular lower, never listed or merged.
    pub fn data_lower(mut self, dir: impl Into<PathBuf>) -> Overlay {
        self.data_lowers.push(dir.into());
        self
    }

    /// Makes the mount writable: changes land in `upper`; `work` is overlay's scratch dir on the
    /// same filesystem. Without an upper the mount is read-only, and the kernel wants at least
    /// two lower dirs (data-only ones count).
    pub fn upper(mut self, upper: impl Into<PathBuf>, work: impl Into<PathBuf>) -> Overlay {
        self.upper = Some((upper.into(), work.into()));
        self
    }

    /// Replaces the options.
    pub fn options(mut self, options: OverlayOptions) -> Overlay {
        self.options = options;
        self
    }

    /// Chooses the kernel interface (default [`MountApi::Auto`]).
    pub fn api(mut self, api: MountApi) -> Overlay {
        self.api = api;
        self
    }

    /// The lower dirs, topmost first.
    pub fn lower_dirs(&self) -> &[PathBuf] {
        &self.lowers
    }

    /// The data-only lower dirs.
    pub fn data_lower_dirs(&self) -> &[PathBuf] {
        &self.data_lowers
    }

    /// The upper and work dirs, if the mount is writable.
    pub fn upper_dirs(&self) -> Option<(&Path, &Path)> {
        self.upper.as_ref().map(|(u, w)| (u.as_path(), w.as_path()))
    }

    /// The options.
    pub fn overlay_options(&self) -> &OverlayOptions {
        &self.options
    }

    /// Creates the overlay as a detached mount (through the new mount API only), to attach with
    /// [`MountGuard::attach`] or hand to another mount namespace.
    ///
    /// # References
    /// - [`fsopen(2)`](https://man7.org/linux/man-pages/man2/fsopen.2.html),
    ///   [`fsconfig(2)`](https://man7.org/linux/man-pages/man2/fsconfig.2.html),
    ///   [`fsmount(2)`](https://man7.org/linux/man-pages/man2/fsmount.2.html)
    pub fn mount_detached(&self) -> Result<OwnedFd, MountError> {
        self.validate()?;
        match self.resolve_api(Features::probe()) {
            MountApi::Legacy => Err(MountError::Unsupported {
                what: "detached overlay mounts without lowerdir+/datadir+",
            }),
            _ => new_api::mount(self, Features::probe()),
        }
    }

    /// Mounts the overlay at `target`; the guard unmounts it when dropped.
    ///
    /// # References
    /// - [`move_mount(2)`](https://man7.org/linux/man-pages/man2/move_mount.2.html),
    ///   [`mount(2)`](https://man7.org/linux/man-pages/man2/mount.2.html)
    pub fn mount_at(&self, target: &Path) -> Result<MountGuard, MountError> {
        self.validate()?;
        match self.resolve_api(Features::probe()) {
            MountApi::Legacy => {
                legacy::mount_at(self, target)?;
                Ok(MountGuard::adopt(target.to_path_buf()))
            }
            _ => MountGuard::attach(new_api::mount(self, Features::probe())?, target),
        }
    }

    /// The classic description (what containerd's `Mounts()` returns): type `overlay`, options
    /// `lowerdir=…` (`::` before data-only lowers), `upperdir=`, `workdir=` and the option words,
    /// paths as given, with `\`, `:` and `,` escaped by a backslash as the kernel's option
    /// parser expects. Asks nothing of the kernel: `index` is written as configured (mounting the
    /// spec drops it where the module lacks the knob). Non-UTF-8 bytes in paths become U+FFFD.
    pub fn to_spec(&self) -> MountSpec {
        let mut options: Vec<String> = self
            .option_data_words(None, true)
            .into_iter()
            .map(|word| String::from_utf8_lossy(&word).into_owned())
            .collect();
        if self.options.read_only {
            options.push("ro".to_owned());
        }
        MountSpec {
            fs_type: "overlay".to_owned(),
            source: "overlay".to_owned(),
            options,
        }
    }

    /// Refuses, before the kernel is asked, what the kernel would refuse anyway.
    fn validate(&self) -> Result<(), MountError> {
        let conflict = |reason| Err(MountError::Conflict { reason });
        let count = self.lowers.len() + self.data_lowers.len();
        let needed = if self.upper.is_some() { 1 } else { 2 };
        if self.lowers.is_empty() || count < needed {
            return Err(MountError::TooFewLayers { count, needed });
        }
        if count > MAX_LAYERS {
            return Err(MountError::TooManyLayers {
                count,
                max: MAX_LAYERS,
            });
        }
        let all_dirs = self.lowers.iter().chain(&self.data_lowers);
        let upper_dirs = self.upper.iter().flat_map(|(u, w)| [u, w]);
        if let Some(dir) = all_dirs
            .chain(upper_dirs)
            .find(|d| path_bytes(d).contains(&0))
        {
            return Err(MountError::UnsupportedPath {
                path: dir.clone(),
                reason: "a NUL byte cannot reach the kernel",
            });
        }
        let opts = &self.options;
        let redirect = self.redirect_dir();
        if opts.userxattr && opts.metacopy == Some(true) {
            return conflict("metacopy=on needs trusted xattrs, which userxattr gives up");
        }
        if opts.userxattr && matches!(redirect, Some(RedirectDir::On | RedirectDir::Follow)) {
            return conflict("userxattr cannot follow or create redirects");
        }
        if opts.metacopy == Some(true) && opts.redirect_dir.is_some_and(|r| r != RedirectDir::On) {
            return conflict("metacopy=on requires redirect_dir=on");
        }
        if !self.data_lowers.is_empty()
            && matches!(redirect, Some(RedirectDir::Off | RedirectDir::NoFollow))
        {
            return conflict("data-only lowers are reached only through followed redirects");
        }
        Ok(())
    }

    /// The interface `mount_*` will use on a kernel with `features`.
    fn resolve_api(&self, features: &Features) -> MountApi {
        let new_ok =
            features.lowerdir_add() && (self.data_lowers.is_empty() || features.datadir_add());
        match self.api {
            MountApi::Auto if new_ok => MountApi::New,
            MountApi::Auto => MountApi::Legacy,
            api => api,
        }
    }

    /// `redirect_dir` as it will be sent: data-only lowers need redirects followed.
    fn redirect_dir(&self) -> Option<RedirectDir> {
        match self.options.redirect_dir {
            None if !self.data_lowers.is_empty() => Some(RedirectDir::Follow),
            r => r,
        }
    }

    /// The option words other than paths, as `(key, value)`.
    fn option_words(&self, index_knob: bool) -> Vec<(&'static str, Option<&'static str>)> {
        let on_off = |b: bool| Some(if b { "on" } else { "off" });
        let opts = &self.options;
        let mut words = Vec::new();
        if opts.userxattr {
            words.push(("userxattr", None));
        }
        if opts.volatile {
            words.push(("volatile", None));
        }
        if let Some(index) = opts.index.filter(|_| index_knob) {
            words.push(("index", on_off(index)));
        }
        if let Some(metacopy) = opts.metacopy {
            words.push(("metacopy", on_off(metacopy)));
        }
        if let Some(redirect) = self.redirect_dir() {
            words.push(("redirect_dir", Some(redirect.as_str())));
        }
        words
    }

    /// The classic option words (flags, then `lowerdir=`, `upperdir=`, `workdir=`), paths
    /// escaped and relative to `base` where they are under it; `index` only if `index_knob`.
    fn option_data_words(&self, base: Option<&Path>, index_knob: bool) -> Vec<Vec<u8>> {
        let mut words: Vec<Vec<u8>> = self
            .option_words(index_knob)
            .into_iter()
            .map(|(key, value)| match value {
                Some(value) => format!("{key}={value}").into_bytes(),
                None => key.as_bytes().to_vec(),
            })
            .collect();
        words.push(self.lowerdir_value(base));
        if let Some((upper, work)) = &self.upper {
            words.push(path_option(b"upperdir=", upper, base));
            words.push(path_option(b"workdir=", work, base));
        }
        words
    }

    /// `lowerdir=a:b::data`, escaped, paths relative to `base` when they are under it.
    fn lowerdir_value(&self, base: Option<&Path>) -> Vec<u8> {
        let mut out = b"lowerdir=".to_vec();
        for (i, dir) in self.lowers.iter().enumerate() {
            if i > 0 {
                out.push(b':');
            }
            escape_path(&mut out, &relative_to(dir, base));
        }
        for dir in &self.data_lowers {
            out.extend_from_slice(b"::");
            escape_path(&mut out, &relative_to(dir, base));
        }
        out
    }
}

/// `key` followed by the escaped `path`, relative to `base` when under it.
fn path_option(key: &[u8], path: &Path, base: Option<&Path>) -> Vec<u8> {
    let mut out = key.to_vec();
    escape_path(&mut out, &relative_to(path, base));
    out
}

/// `path` relative to `base` when it lies under it (`.` for `base` itself), else as given.
fn relative_to(path: &Path, base: Option<&Path>) -> PathBuf {
    match base.and_then(|base| path.strip_prefix(base).ok()) {
        Some(rel) if rel.as_os_str().is_empty() => PathBuf::from("."),
        Some(rel) => rel.to_path_buf(),
        None => path.to_path_buf(),
    }
}

/// The bytes of `path`, for option strings.
fn path_bytes(path: &Path) -> &[u8] {
    path.as_os_str().as_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn validation_happens_before_the_kernel() {
        let conflict = |o: Overlay| matches!(o.validate(), Err(MountError::Conflict { .. }));
        let base = Overlay::new().lower("/a").lower("/b");
        let opts = |f: fn(&mut OverlayOptions)| {
            let mut o = OverlayOptions::default();
            f(&mut o);
            o
        };
        assert!(conflict(base.clone().options(opts(|o| {
            o.userxattr = true;
            o.metacopy = Some(true);
        }))));
        assert!(conflict(base.clone().options(opts(|o| {
            o.metacopy = Some(true);
            o.redirect_dir = Some(RedirectDir::Follow);
        }))));
        assert!(conflict(
            base.clone()
                .data_lower("/d")
                .options(opts(|o| o.userxattr = true))
        ));
        assert!(conflict(base.clone().data_lower("/d").options(opts(|o| {
            o.redirect_dir = Some(RedirectDir::NoFollow);
        }))));
        assert!(
            base.clone()
                .options(opts(|o| o.userxattr = true))
                .validate()
                .is_ok()
        );
        assert_eq!(
            base.data_lower("/d").redirect_dir(),
            Some(RedirectDir::Follow)
        );
        assert!(matches!(
            Overlay::new().upper("/u", "/w").validate(),
            Err(MountError::TooFewLayers {
                count: 0,
                needed: 1
            })
        ));
    }

    #[test]
    fn legacy_data_compacts_under_the_common_parent() {
        let overlay = Overlay::new()
            .lowers(["/s/layers/1", "/s/layers/2"])
            .data_lower("/s/layers/objects")
            .upper("/s/snap/fs", "/s/snap/work")
            .options(OverlayOptions {
                index: None,
                ..OverlayOptions::default()
            });
        let data = legacy::option_data(&overlay, Some(Path::new("/s/layers")));
        assert_eq!(
            String::from_utf8(data).unwrap(),
            "redirect_dir=follow,lowerdir=1:2::objects,upperdir=/s/snap/fs,workdir=/s/snap/work"
        );
    }
}
