#!/bin/bash
# Issue #4's import target, with its baseline in the same run: `strata import --materialize`
# (durable, and with --no-sync) and `ctr images import` (a private containerd 1.6, overlayfs
# snapshotter, unpacking) of the two-layer bench image, each run into a fresh store on a fresh
# RAM-backed loop ext4.
#
#   python3 layer-store/scripts/make-bench-image.py /work/rootfs-bench/base /work/rootfs-bench/app /tmp/bench-img
#   cargo build --release -p strata-cli
#   sudo layer-store/scripts/bench-import.sh target/release/strata /tmp/bench-img [runs]
set -eu
source "$(dirname "$0")/bench-common.sh"
bench_args bench-import "$@"

cat "$IMG/two-layer.tar" > /dev/null
find "$IMG/two-layer" -type f -exec cat {} + > /dev/null
for n in $(seq "$RUNS"); do
  fresh_fs
  timed "strata import --materialize, run $n" \
    "$STRATA" --root "$MNT/strata" import "$IMG/two-layer" --name bench --materialize
  drop_fs

  # The same without flushing the written files, as containerd 1.6 unpacks layers.
  fresh_fs
  timed "strata import --materialize --no-sync, run $n" \
    "$STRATA" --root "$MNT/strata" --no-sync import "$IMG/two-layer" --name bench --materialize
  drop_fs

  fresh_fs
  start_containerd
  timed "ctr images import, run $n (containerd's own CPU not counted)" \
    ctr -a "$CTR_SOCK" -n bench images import "$IMG/two-layer.tar"
  stop_containerd
  drop_fs
done
