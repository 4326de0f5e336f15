//! Runs `changes` or the layer writer on two trees N times after one warm-up run, printing each
//! run's wall time to stderr: a driver for `perf stat` / `perf record`.
//!
//! ```sh
//! cargo build --release -p strata-diff --example repeat
//! perf stat -e task-clock target/release/examples/repeat changes OLD NEW 10
//! perf stat -e task-clock target/release/examples/repeat write OLD NEW 10 seq
//! ```
//! The CPU time of one run is (task-clock with N runs − task-clock with 0) / N.

use std::path::Path;
use std::time::Instant;

use anyhow::{Context, bail};
use strata_diff::{Compression, ContentCheck, DiffOptions, Threads, WriteOptions};

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [what, old, new, runs, rest @ ..] = args.as_slice() else {
        bail!("usage: repeat changes|write OLD NEW RUNS [seq]");
    };
    let runs: usize = runs.parse().context("RUNS")?;
    let threads = match rest {
        [] => Threads::Rayon,
        [seq] if seq == "seq" => Threads::Sequential,
        _ => bail!("the last argument can only be `seq`"),
    };
    let (old, new) = (Path::new(old), Path::new(new));
    let options = DiffOptions::default()
        .with_content(ContentCheck::Ambiguous)
        .with_threads(threads);
    let set = strata_diff::changes(old, new, &options)?;
    let write = WriteOptions::new(Compression::None).with_threads(threads);
    for _ in 0..runs {
        let start = Instant::now();
        match what.as_str() {
            "changes" => drop(strata_diff::changes(old, new, &options)?),
            "write" => drop(strata_diff::write_layer(&set, &write, std::io::sink())?),
            other => bail!("unknown operation {other}"),
        }
        eprintln!("{:?}", start.elapsed());
    }
    Ok(())
}
