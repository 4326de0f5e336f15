#!/bin/bash
# Export of the two-layer bench image, three ways in the same run, each into a fresh directory
# of the same RAM-backed loop ext4 as the store: `cp -r` of the source OCI layout (copy speed;
# with and without a `sync` after it, as export makes its output durable),
# `strata export` of the image imported with kept blobs (the default), and `strata export` of
# the image imported with `--blobs reproducible` (every layer compressed again).
#
#   python3 layer-store/scripts/make-bench-image.py /work/rootfs-bench/base /work/rootfs-bench/app /tmp/bench-img
#   cargo build --release -p strata-cli
#   sudo layer-store/scripts/bench-export.sh target/release/strata /tmp/bench-img [runs]
set -eu
source "$(dirname "$0")/bench-common.sh"
bench_args bench-export "$@"

fresh_fs
cp -r "$IMG/two-layer" "$MNT/layout"
"$STRATA" --root "$MNT/keep" import "$MNT/layout" --name bench > /dev/null
"$STRATA" --root "$MNT/rebuild" --blobs reproducible import "$MNT/layout" --name bench > /dev/null
"$STRATA" --root "$MNT/keep" du | tail -2
for n in $(seq "$RUNS"); do
  sync
  timed "cp -r of the layout, run $n" cp -r "$MNT/layout" "$MNT/copy-$n"
  sync
  timed "cp -r of the layout, then sync, run $n" sh -c "cp -r '$MNT/layout' '$MNT/copy-sync-$n' && sync"
  sync
  timed "strata export, kept blobs, run $n" \
    "$STRATA" --root "$MNT/keep" export bench -o "$MNT/keep-$n"
  sync
  timed "strata --no-sync export, kept blobs, run $n" \
    "$STRATA" --root "$MNT/keep" --no-sync export bench -o "$MNT/keep-nosync-$n"
  sync
  timed "strata export, blobs rebuilt (--blobs reproducible), run $n" \
    "$STRATA" --root "$MNT/rebuild" --blobs reproducible export bench -o "$MNT/rebuild-$n"
  diff -r -q "$MNT/layout/blobs" "$MNT/keep-$n/blobs" && echo "kept-blob export: the same blobs as the layout"
  rm -rf "$MNT/copy-$n" "$MNT/copy-sync-$n" "$MNT/keep-$n" "$MNT/keep-nosync-$n" "$MNT/rebuild-$n"
done
