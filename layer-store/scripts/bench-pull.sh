#!/bin/bash
# Pull of the two-layer bench image from a loopback docker-registry, each run into a fresh
# RAM-backed loop ext4: skopeo copy (blobs only), skopeo copy + umoci raw unpack, ctr pull
# (private containerd 1.6, unpacks with its overlayfs snapshotter), strata pull (+ rootfs, which
# materializes the layers).
#   sudo layer-store/scripts/bench-pull.sh target/release/strata /tmp/bench-img [runs]
set -eu
STRATA=$(realpath "${1:?strata binary}")
IMG=${2:?bench image dir}
RUNS=${3:-3}
W=$(mktemp -d)
MNT=$W/mnt; mkdir -p $MNT
DISK=/dev/shm/strata-bench-pull.img
PORT=5077
cleanup() {
  umount "$MNT" 2>/dev/null || true; rm -f $DISK
  [ -n "${REG:-}" ] && kill $REG 2>/dev/null && wait $REG 2>/dev/null
  rm -rf "$W"
}
trap cleanup EXIT
fresh_fs() { truncate -s 4G $DISK && mkfs.ext4 -q -F $DISK && mount -o loop $DISK "$MNT"; }
drop_fs() { umount "$MNT" && rm -f $DISK; }

mkdir -p $W/reg
cat > $W/reg.yml <<EOT
version: 0.1
log:
  level: error
storage:
  filesystem:
    rootdirectory: $W/reg
http:
  addr: 127.0.0.1:$PORT
EOT
docker-registry serve $W/reg.yml > $W/reg.log 2>&1 &
REG=$!
until curl -sf http://127.0.0.1:$PORT/v2/ > /dev/null; do sleep 0.05; done
skopeo copy --quiet --dest-tls-verify=false "oci:$IMG/two-layer:bench:latest" docker://127.0.0.1:$PORT/bench:1
REF=127.0.0.1:$PORT/bench:1
t() { local label=$1; shift; /usr/bin/time -f "$label: %e s wall, %U s user, %S s sys" "$@"; }

for n in $(seq "$RUNS"); do
  fresh_fs
  t "skopeo copy, run $n" skopeo copy --quiet --src-tls-verify=false docker://$REF oci:$MNT/oci:x
  t "umoci raw unpack after it, run $n" umoci raw unpack --image $MNT/oci:x $MNT/rootfs
  drop_fs

  fresh_fs
  t "strata pull, run $n" "$STRATA" --root "$MNT/strata" pull --insecure --name bench $REF > /dev/null
  t "strata rootfs after it (materializes), run $n" "$STRATA" --root "$MNT/strata" rootfs bench c1 > /dev/null
  drop_fs

  fresh_fs
  t "strata pull --no-sync, run $n" "$STRATA" --root "$MNT/strata" --no-sync pull --insecure --name bench $REF > /dev/null
  drop_fs

  fresh_fs
  D=$MNT/ctrd; mkdir -p "$D"
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
  CPID=$!
  while [ ! -S "$D/containerd.sock" ]; do sleep 0.05; done
  t "ctr pull (unpacks), run $n" ctr -a "$D/containerd.sock" -n bench images pull --plain-http $REF > /dev/null
  kill $CPID && wait $CPID 2>/dev/null || true
  drop_fs
done
