#!/usr/bin/env bash
# Deduplicating-commit benchmark: the disk and the time of `ctr images import` of two images with
# no common layer but mostly common files (a Debian base root filesystem, and the same with a few
# packages installed), onto `strata serve` and onto containerd's own overlayfs snapshotter, with
# one private containerd, in one run.
#
# Rows: each snapshotter's import of the larger image alone, then of the smaller one beside it;
# the bytes its snapshots take (`du`, each inode once: the strata root, or containerd's
# overlayfs snapshotter dir), and the ratio of both images to the larger alone.
#
# Usage: scripts/bench-dedup-import.sh
# Needs root and the Debian packages containerd and runc. Builds the release binary first, in
# $CARGO_TARGET_DIR (default: target/ of the repository). Environment:
#   BENCH_BASE, BENCH_APP  the two trees (default /work/rootfs-bench/base and .../app, as made by
#                          `make-debian-rootfs.sh DEST python3 python3-pip` of the shared corpus)
#   TMPDIR                 where images, stores and containerd live (a few times the trees' size)
set -euo pipefail

for tool in containerd ctr runc python3 gzip; do
    command -v "$tool" >/dev/null || { echo "needs $tool" >&2; exit 2; }
done
REPO=$(cd "$(dirname "$0")/.." && pwd)
TARGET=${CARGO_TARGET_DIR:-$REPO/target}
(cd "$REPO" && cargo build --release --quiet -p strata-cli --bin strata)
STRATA=$TARGET/release/strata
BASE=${BENCH_BASE:-/work/rootfs-bench/base}
APP=${BENCH_APP:-/work/rootfs-bench/app}
for tree in "$BASE" "$APP"; do
    [[ -d $tree ]] || { echo "no tree at $tree (see BENCH_BASE, BENCH_APP)" >&2; exit 2; }
done

# shellcheck source=scripts/bench-lib.sh
source "$REPO/scripts/bench-lib.sh"
bench_work bench-dedup-import

du_bytes() { du -s -B1 "$1" | cut -f1; }
mb() { python3 -c "import sys; print(f'{int(sys.argv[1]) / 1e6:.0f}')" "$1"; }

# One-layer OCI archive of tree $1, named $2.
archive() {
    local tree=$1 name=$2 dir=$WORK/image-$2
    mkdir -p "$dir/layout/blobs/sha256"
    tar --numeric-owner --xattrs -C "$tree" -cf "$dir/layer.tar" .
    gzip -1 -c "$dir/layer.tar" >"$dir/layer.tar.gz"
    python3 - "$dir" "$name" <<'EOF'
import hashlib, json, os, platform, shutil, sys
dir, name = sys.argv[1], sys.argv[2]
blobs = os.path.join(dir, "layout/blobs/sha256")
def digest(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return "sha256:" + h.hexdigest()
def put(data):
    d = "sha256:" + hashlib.sha256(data).hexdigest()
    open(os.path.join(blobs, d[7:]), "wb").write(data)
    return {"digest": d, "size": len(data)}
diff_id, layer = digest(f"{dir}/layer.tar"), digest(f"{dir}/layer.tar.gz")
shutil.move(f"{dir}/layer.tar.gz", os.path.join(blobs, layer[7:]))
arch = {"x86_64": "amd64", "aarch64": "arm64"}.get(platform.machine(), platform.machine())
config = put(json.dumps({"architecture": arch, "os": "linux", "config": {"Cmd": ["/bin/sh"]},
                         "rootfs": {"type": "layers", "diff_ids": [diff_id]}}).encode())
manifest = put(json.dumps({"schemaVersion": 2,
    "mediaType": "application/vnd.oci.image.manifest.v1+json",
    "config": dict(mediaType="application/vnd.oci.image.config.v1+json", **config),
    "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip", "digest": layer,
                "size": os.path.getsize(os.path.join(blobs, layer[7:]))}]}).encode())
ref = f"bench.strata.test/{name}:1"
json.dump({"schemaVersion": 2, "manifests": [dict(
    mediaType="application/vnd.oci.image.manifest.v1+json", **manifest,
    annotations={"org.opencontainers.image.ref.name": ref, "io.containerd.image.name": ref})]},
    open(f"{dir}/layout/index.json", "w"))
open(f"{dir}/layout/oci-layout", "w").write('{"imageLayoutVersion":"1.0.0"}')
EOF
    tar -C "$dir/layout" -cf "$dir/image.tar" .
    rm -rf "$dir/layer.tar" "$dir/layout"
    echo "$dir/image.tar"
}
echo "making the images of $APP and $BASE" >&2
APP_TAR=$(archive "$APP" app)
BASE_TAR=$(archive "$BASE" base)

# strata serve and a private containerd using it as the proxy snapshotter `strata`.
STORE=$WORK/strata
STRATA_LOG=warn "$STRATA" --root "$STORE" serve --address "$WORK/strata.sock" 2>"$WORK/serve.log" &
PIDS+=($!)
for _ in $(seq 100); do [[ -S $WORK/strata.sock ]] && break; sleep 0.1; done
cat >"$WORK/containerd.toml" <<EOF
version = 2
root = "$WORK/containerd/root"
state = "$WORK/containerd/state"
disabled_plugins = ["io.containerd.grpc.v1.cri"]
[grpc]
  address = "$WORK/containerd.sock"
[proxy_plugins]
  [proxy_plugins.strata]
    type = "snapshot"
    address = "$WORK/strata.sock"
EOF
containerd --config "$WORK/containerd.toml" 2>"$WORK/containerd.log" &
PIDS+=($!)
for _ in $(seq 100); do [[ -S $WORK/containerd.sock ]] && break; sleep 0.1; done
ctr_() { ctr --address "$WORK/containerd.sock" --namespace bench "$@"; }

import_onto() {
    local snapshotter=$1 archive=$2 start
    start=$(now)
    ctr_ images import --snapshotter "$snapshotter" "$archive" >/dev/null
    sync
    elapsed "$start" "$(now)" 2
}

printf '%-10s %12s %10s %12s %10s %7s\n' snapshotter "import app s" "app MB" "+ base s" "both MB" ratio
for snapshotter in overlayfs strata; do
    case $snapshotter in
        strata) dir=$STORE ;;
        overlayfs) dir=$WORK/containerd/root/io.containerd.snapshotter.v1.overlayfs ;;
    esac
    t_app=$(import_onto "$snapshotter" "$APP_TAR")
    alone=$(du_bytes "$dir")
    t_base=$(import_onto "$snapshotter" "$BASE_TAR")
    both=$(du_bytes "$dir")
    ratio=$(python3 -c "import sys; print(f'{int(sys.argv[2]) / int(sys.argv[1]):.3f}')" "$alone" "$both")
    printf '%-10s %12s %10s %12s %10s %7s\n' "$snapshotter" "$t_app" "$(mb "$alone")" "$t_base" "$(mb "$both")" "$ratio"
done
