#!/bin/bash
# Issue #4's import target, with its baseline in the same run: `strata import --materialize`
# (durable, and with --no-sync) and
# `ctr images import` (a private containerd 1.6, overlayfs snapshotter, unpacking) of the
# two-layer bench image, each run into a fresh store on a fresh RAM-backed loop ext4.
#
#   python3 layer-store/scripts/make-bench-image.py /work/rootfs-bench/base /work/rootfs-bench/app /tmp/bench-img
#   cargo build --release -p strata-cli
#   sudo layer-store/scripts/bench-import.sh target/release/strata /tmp/bench-img [runs]
set -eu
STRATA=$(realpath "${1:?strata binary}")
IMG=${2:?bench image dir (make-bench-image.py output)}
RUNS=${3:-3}
MNT=$(mktemp -d)
DISK=/dev/shm/strata-bench-import.img

fresh_fs() {
  truncate -s 4G $DISK && mkfs.ext4 -q -F $DISK && mount -o loop $DISK "$MNT"
}
drop_fs() {
  umount "$MNT" && rm -f $DISK
}
trap 'umount "$MNT" 2>/dev/null; rm -f $DISK; rmdir "$MNT"' EXIT

cat "$IMG/two-layer.tar" > /dev/null
find "$IMG/two-layer" -type f -exec cat {} + > /dev/null
for n in $(seq "$RUNS"); do
  fresh_fs
  /usr/bin/time -f "strata import --materialize, run $n: %e s wall, %U s user, %S s sys" \
    "$STRATA" --root "$MNT/strata" import "$IMG/two-layer" --name bench --materialize > /dev/null
  drop_fs

  # The same without flushing the written files, as containerd 1.6 unpacks layers.
  fresh_fs
  /usr/bin/time -f "strata import --materialize --no-sync, run $n: %e s wall, %U s user, %S s sys" \
    "$STRATA" --root "$MNT/strata" --no-sync import "$IMG/two-layer" --name bench --materialize > /dev/null
  drop_fs

  fresh_fs
  D=$MNT/ctrd
  mkdir -p "$D"
  cat > "$D/config.toml" <<EOT
version = 2
root = "$D/root"
state = "$D/state"
disabled_plugins = ["io.containerd.grpc.v1.cri"]
[grpc]
  address = "$D/containerd.sock"
[ttrpc]
  address = "$D/containerd.sock.ttrpc"
EOT
  containerd --config "$D/config.toml" > /dev/null 2>&1 &
  PID=$!
  while [ ! -S "$D/containerd.sock" ]; do sleep 0.05; done
  /usr/bin/time -f "ctr images import, run $n: %e s wall (containerd's own CPU not counted)" \
    ctr -a "$D/containerd.sock" -n bench images import "$IMG/two-layer.tar" > /dev/null
  kill $PID && wait $PID 2>/dev/null || true
  drop_fs
done
