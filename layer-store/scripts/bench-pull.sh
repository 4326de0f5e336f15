#!/bin/bash
# Pull of the two-layer bench image from a loopback docker-registry, each command on a fresh
# RAM-backed loop ext4: skopeo copy (blobs only), skopeo copy + umoci raw unpack, ctr pull (a
# private containerd 1.6, unpacking into its overlayfs snapshotter), strata pull (durable, then
# rootfs, which materializes the layers; and --no-sync).
#
#   sudo layer-store/scripts/bench-pull.sh target/release/strata /tmp/bench-img [runs]
set -eu
source "$(dirname "$0")/bench-common.sh"
STRATA=$(realpath "${1:?strata binary}")
IMG=${2:?bench image dir (make-bench-image.py output)}
RUNS=${3:-3}
W=$(mktemp -d)
MNT=$W/mnt
mkdir -p "$MNT"
DISK=/dev/shm/strata-bench-pull.img
PORT=5077
REF=127.0.0.1:$PORT/bench:1
cleanup() {
  cleanup_fs
  if [ -n "${REG:-}" ]; then kill "$REG" && wait "$REG" 2>/dev/null || true; fi
  rm -rf "$W"
}
trap cleanup EXIT

mkdir -p "$W/reg"
cat > "$W/reg.yml" <<EOT
version: 0.1
log:
  level: error
storage:
  filesystem:
    rootdirectory: $W/reg
http:
  addr: 127.0.0.1:$PORT
EOT
docker-registry serve "$W/reg.yml" > "$W/reg.log" 2>&1 &
REG=$!
until curl -sf "http://127.0.0.1:$PORT/v2/" > /dev/null; do sleep 0.05; done
skopeo copy --quiet --dest-tls-verify=false "oci:$IMG/two-layer:bench:latest" "docker://$REF"

for n in $(seq "$RUNS"); do
  fresh_fs
  timed "skopeo copy, run $n" skopeo copy --quiet --src-tls-verify=false "docker://$REF" "oci:$MNT/oci:x"
  timed "umoci raw unpack after it, run $n" umoci raw unpack --image "$MNT/oci:x" "$MNT/rootfs"
  drop_fs

  fresh_fs
  timed "strata pull, run $n" "$STRATA" --root "$MNT/strata" pull --insecure --name bench "$REF"
  timed "strata rootfs after it (materializes), run $n" "$STRATA" --root "$MNT/strata" rootfs bench c1
  drop_fs

  fresh_fs
  timed "strata pull --no-sync, run $n" "$STRATA" --root "$MNT/strata" --no-sync pull --insecure --name bench "$REF"
  drop_fs

  fresh_fs
  start_containerd
  timed "ctr pull (unpacks), run $n" ctr -a "$CTR_SOCK" -n bench images pull --plain-http "$REF"
  stop_containerd
  drop_fs
done
