//! A small file system in a sparse image file, loop-mounted for one test: for reflinks (XFS)
//! or a disk that fills up (ext4). The drop unmounts it and detaches the loop device, also when
//! the test fails.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::process::Command;

/// A loop-mounted file system.
pub struct LoopFs {
    device: Option<String>,
    mount: PathBuf,
    mounted: bool,
}

impl LoopFs {
    /// Makes a `size`-byte image at `dir/<fstype>.img` with `mkfs` (program and arguments,
    /// the image path appended) and mounts it at `dir/<fstype>`. Needs root.
    pub fn new(dir: &Path, fstype: &str, size: u64, mkfs: &[&str]) -> io::Result<LoopFs> {
        let image = dir.join(format!("{fstype}.img"));
        fs::File::create(&image)?.set_len(size)?;
        run(Command::new(mkfs[0]).args(&mkfs[1..]).arg(&image))?;
        let mount = dir.join(fstype);
        fs::create_dir_all(&mount)?;
        let mut loopfs = LoopFs {
            device: None,
            mount,
            mounted: false,
        };
        let device = run(Command::new("losetup")
            .args(["--find", "--show"])
            .arg(&image))?;
        let device = loopfs.device.insert(device.trim().to_owned());
        rustix::mount::mount(
            device.as_str(),
            &loopfs.mount,
            fstype,
            rustix::mount::MountFlags::empty(),
            None,
        )?;
        loopfs.mounted = true;
        Ok(loopfs)
    }

    /// Where it is mounted.
    pub fn path(&self) -> &Path {
        &self.mount
    }
}

impl Drop for LoopFs {
    fn drop(&mut self) {
        if self.mounted {
            if let Err(err) =
                rustix::mount::unmount(&self.mount, rustix::mount::UnmountFlags::empty())
            {
                eprintln!("unmount {}: {err}", self.mount.display());
            }
        }
        if let Some(device) = &self.device {
            let _ = run(Command::new("losetup").args(["-d", device]));
        }
    }
}

/// Runs `cmd`, which must succeed; returns its stdout.
fn run(cmd: &mut Command) -> io::Result<String> {
    let out = cmd.output()?;
    if !out.status.success() {
        return Err(io::Error::other(format!(
            "{cmd:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        )));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}
