#!/bin/bash
# The metadata database's costs against a previous build, in the same run: `strata images` on a
# store of 1,000 images, and the import of the two-layer bench image (the new build with and
# without kept blobs), each into a fresh store on a fresh RAM-backed loop ext4, alternating.
#
#   cargo build --release -p strata-cli                     # NEW
#   (an older checkout) cargo build --release -p strata-cli # PREV
#   sudo layer-store/scripts/bench-shared-root.sh PREV NEW /tmp/bench-img [runs]
set -eu
source "$(dirname "$0")/bench-common.sh"
PREV=$(realpath "${1:?previous strata binary}")
NEW=$(realpath "${2:?new strata binary}")
IMG=${3:?bench image dir (make-bench-image.py output)}
RUNS=${4:-3}
MNT=$(mktemp -d)
DISK=/dev/shm/strata-bench-shared.img
WORK=$(mktemp -d)
trap 'cleanup_fs; rmdir "$MNT"; rm -rf "$WORK"' EXIT

# 1,000 one-file layers, each its own image.
python3 - "$WORK/layers" <<'PY'
import io, os, sys, tarfile
out = sys.argv[1]
os.makedirs(out)
for i in range(1000):
    with tarfile.open(os.path.join(out, f"{i:04}.tar"), "w", format=tarfile.PAX_FORMAT) as tar:
        data = f"image {i}\n".encode()
        info = tarfile.TarInfo(f"etc/id-{i}")
        info.size, info.mtime = len(data), 1700000000
        tar.addfile(info, io.BytesIO(data))
PY

fresh_fs
for bin in PREV NEW; do
  root=$MNT/$bin
  start=$(date +%s.%N)
  for tar in "$WORK"/layers/*.tar; do
    "${!bin}" --root "$root" --no-sync import "$tar" --name "img-$(basename "$tar" .tar)" > /dev/null
  done
  echo "$bin: 1,000 imports (one process each, --no-sync): $(echo "$(date +%s.%N) - $start" | bc) s"
done
hyperfine --warmup 2 --runs 20 -N \
  -n "previous: strata images (1,000 images)" "$PREV --root $MNT/PREV images" \
  -n "new: strata images (1,000 images)" "$NEW --root $MNT/NEW images"
drop_fs

cat "$IMG/two-layer.tar" > /dev/null
find "$IMG/two-layer" -type f -exec cat {} + > /dev/null
# The new build twice: without kept blobs (the database alone) and with them (the default).
for n in $(seq "$RUNS"); do
  for run in "PREV" "NEW --blobs reproducible" "NEW --blobs keep"; do
    bin=${run%% *}
    flags=${run#"$bin"}
    fresh_fs
    # shellcheck disable=SC2086
    timed "$run: strata import --materialize, run $n" \
      "${!bin}" $flags --root "$MNT/strata" import "$IMG/two-layer" --name bench --materialize
    drop_fs
  done
done
