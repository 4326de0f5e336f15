//! Pulls an image through containerd's CRI plugin, as kubelet does, for
//! `scripts/bench-remote-pull.sh`.
//!
//! `cri_pull SOCKET IMAGE` waits until containerd's CRI plugin answers, then calls
//! `runtime.v1.ImageService/PullImage` on containerd's socket and prints the image id and the
//! seconds that call took, tab-separated, on one line.

use std::path::PathBuf;
use std::time::Instant;

use anyhow::Context;

#[allow(dead_code)]
#[path = "../tests/common/cri.rs"]
mod cri;

fn main() -> anyhow::Result<()> {
    let mut args = std::env::args_os().skip(1);
    let usage = "usage: cri_pull SOCKET IMAGE";
    let socket: PathBuf = args.next().context(usage)?.into();
    let image = args.next().context(usage)?;
    let image = image.to_str().context("IMAGE is not UTF-8")?;
    cri::wait_ready(&socket).map_err(anyhow::Error::msg)?;
    let start = Instant::now();
    let id = cri::pull_image(&socket, image).map_err(anyhow::Error::msg)?;
    println!("{id}\t{:.3}", start.elapsed().as_secs_f64());
    Ok(())
}
