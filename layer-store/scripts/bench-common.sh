# Sourced by the bench-*.sh scripts: a fresh RAM-backed loop ext4 per run at $MNT, a private
# containerd on it, and timing. Callers call bench_args (or set MNT and DISK and call cleanup_fs
# on exit).

# `bench_args NAME STRATA IMG [RUNS]`: sets STRATA (the binary, absolute), IMG (a
# make-bench-image.py output dir) and RUNS (default 3), and MNT and DISK for run NAME's loop
# file system, removed on exit.
bench_args() {
  STRATA=$(realpath "${2:?strata binary}")
  IMG=${3:?bench image dir (make-bench-image.py output)}
  RUNS=${4:-3}
  MNT=$(mktemp -d)
  DISK=/dev/shm/strata-$1.img
  trap 'cleanup_fs; rmdir "$MNT"' EXIT
}

fresh_fs() {
  truncate -s 4G "$DISK" && mkfs.ext4 -q -F "$DISK" && mount -o loop "$DISK" "$MNT"
}

drop_fs() {
  umount "$MNT" && rm -f "$DISK"
}

cleanup_fs() {
  umount "$MNT" 2>/dev/null || true
  rm -f "$DISK"
}

# `timed LABEL COMMAND...`: runs COMMAND (stdout dropped), printing wall, user and sys time.
timed() {
  local label=$1
  shift
  /usr/bin/time -f "$label: %e s wall, %U s user, %S s sys" "$@" > /dev/null
}

# Starts a private containerd 1.6 with its root and state under $MNT/ctrd (overlayfs
# snapshotter, no CRI); sets CTR_SOCK and CTR_PID. Stop it with stop_containerd.
start_containerd() {
  local d=$MNT/ctrd
  mkdir -p "$d"
  cat > "$d/config.toml" <<EOT
version = 2
root = "$d/root"
state = "$d/state"
disabled_plugins = ["io.containerd.grpc.v1.cri"]
[grpc]
  address = "$d/containerd.sock"
[ttrpc]
  address = "$d/containerd.sock.ttrpc"
EOT
  containerd --config "$d/config.toml" > /dev/null 2>&1 &
  CTR_PID=$!
  CTR_SOCK=$d/containerd.sock
  while [ ! -S "$CTR_SOCK" ]; do sleep 0.05; done
}

stop_containerd() {
  kill "$CTR_PID" && wait "$CTR_PID" 2>/dev/null || true
}
