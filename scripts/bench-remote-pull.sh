#!/usr/bin/env bash
# Remote-pull benchmark: how long containerd takes to pull an image whose layers Strata already
# holds (pre-pulled with `strata pull` into the root `strata serve` serves), against containerd's
# own overlayfs snapshotter pulling the same image from the same local registry, in one run.
#
# Each measured pull gets a fresh private containerd. Rows:
#   CRI pull      runtime.v1.ImageService/PullImage on containerd's CRI plugin (what kubelet
#                 does; containerd's unpacker, which offers each layer as a remote snapshot)
#   ctr pull      `ctr images pull` (containerd 1.6 fetches every layer, then unpacks without
#                 remote snapshots: no gain is expected there)
# and the time of the `strata pull` that pre-pulled the image, for the record. The strata rows
# come twice: pre-pulled with `strata pull` (the layer trees are then built during containerd's
# pull) and with `strata pull --materialize` (built at pre-pull time). A last strata row starts
# from an empty store with snapshot annotations on: `strata serve` fetches the image itself
# (CRI-driven fetch) during containerd's CRI pull. The registry's log says how many layer blobs
# each pull fetched.
#
# Usage: scripts/bench-remote-pull.sh [TRIALS]       (default 3; medians are printed)
# Needs root and the Debian packages containerd, runc and docker-registry. Builds the release
# binary and the cri_pull example first, in $CARGO_TARGET_DIR (default: target/ of the
# repository). Environment:
#   BENCH_TREES   directories the image is made of, one gzip layer each, bottom first
#                 (default: /work/rootfs-bench/base if it exists, else /usr/share/doc)
#   TMPDIR        where registry, stores and containerds live (a few times the image's size)
set -euo pipefail

TRIALS=${1:-3}
[[ $TRIALS =~ ^[1-9][0-9]*$ ]] || { echo "TRIALS must be a positive number" >&2; exit 2; }
for tool in containerd ctr runc docker-registry python3; do
    command -v "$tool" >/dev/null || { echo "needs $tool" >&2; exit 2; }
done

REPO=$(cd "$(dirname "$0")/.." && pwd)
TARGET=${CARGO_TARGET_DIR:-$REPO/target}
(cd "$REPO" && cargo build --release --quiet -p strata-cli --bin strata --example cri_pull)
STRATA=$TARGET/release/strata
CRI_PULL=$TARGET/release/examples/cri_pull
default_tree=/usr/share/doc
[[ -d /work/rootfs-bench/base ]] && default_tree=/work/rootfs-bench/base
read -r -a TREES <<<"${BENCH_TREES:-$default_tree}"

# shellcheck source=scripts/bench-lib.sh
source "$REPO/scripts/bench-lib.sh"
bench_work bench-remote-pull

stop() {
    local pid=$1 keep=() p
    kill "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
    for p in "${PIDS[@]}"; do [[ $p == "$pid" ]] || keep+=("$p"); done
    PIDS=("${keep[@]}")
}

# The registry, on a free port of 127.0.0.1.
PORT=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
mkdir -p "$WORK/registry"
cat >"$WORK/registry/config.yml" <<EOF
version: 0.1
log:
  level: info
storage:
  filesystem:
    rootdirectory: $WORK/registry/storage
http:
  addr: 127.0.0.1:$PORT
EOF
docker-registry serve "$WORK/registry/config.yml" >"$WORK/registry/log" 2>&1 &
PIDS+=($!)
until (echo >"/dev/tcp/127.0.0.1/$PORT") 2>/dev/null; do sleep 0.05; done
REF=127.0.0.1:$PORT/bench/image:1

# The image: one gzip layer per tree, as an OCI layout, imported and pushed by Strata.
layout=$WORK/layout
mkdir -p "$layout/blobs/sha256"
blob() { # FILE -> moves it into the layout, prints "DIGEST SIZE"
    local digest size
    digest=sha256:$(sha256sum "$1" | cut -d' ' -f1)
    size=$(stat -c %s "$1")
    mv "$1" "$layout/blobs/sha256/${digest#sha256:}"
    echo "$digest $size"
}
diff_ids=() layers=() layer_digests=() packed=0 unpacked=0
for tree in "${TREES[@]}"; do
    tar -C "$tree" --numeric-owner -cf "$WORK/layer.tar" .
    unpacked=$((unpacked + $(stat -c %s "$WORK/layer.tar")))
    diff_ids+=("\"sha256:$(sha256sum "$WORK/layer.tar" | cut -d' ' -f1)\"")
    gzip -c "$WORK/layer.tar" >"$WORK/layer.tar.gz"
    rm "$WORK/layer.tar"
    read -r digest size < <(blob "$WORK/layer.tar.gz")
    packed=$((packed + size))
    layer_digests+=("$digest")
    layers+=("{\"mediaType\":\"application/vnd.oci.image.layer.v1.tar+gzip\",\"digest\":\"$digest\",\"size\":$size}")
done
join() { local IFS=,; echo "$*"; }
printf '{"architecture":"%s","os":"linux","config":{"Env":["PATH=/usr/bin:/bin"]},"rootfs":{"type":"layers","diff_ids":[%s]}}' \
    "$(dpkg --print-architecture 2>/dev/null || echo amd64)" "$(join "${diff_ids[@]}")" >"$WORK/config"
read -r config_digest config_size < <(blob "$WORK/config")
printf '{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"%s","size":%s},"layers":[%s]}' \
    "$config_digest" "$config_size" "$(join "${layers[@]}")" >"$WORK/manifest"
read -r manifest_digest manifest_size < <(blob "$WORK/manifest")
printf '{"schemaVersion":2,"manifests":[{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"%s","size":%s}]}' \
    "$manifest_digest" "$manifest_size" >"$layout/index.json"
echo '{"imageLayoutVersion":"1.0.0"}' >"$layout/oci-layout"
"$STRATA" --root "$WORK/source" import "$layout" --name bench >/dev/null
"$STRATA" --root "$WORK/source" push bench "$REF" >/dev/null
rm -rf "$WORK/source" "$layout"

layer_gets() { # how many layer blob GETs the registry has served so far
    local n=0 d
    for d in "${layer_digests[@]}"; do
        n=$((n + $(grep -c "\"GET /v2/bench/image/blobs/$d" "$WORK/registry/log" || true)))
    done
    echo "$n"
}

# Starts a private containerd under DIR, SNAPSHOTTER for its CRI plugin, `strata` served on
# SOCK, snapshot annotations on when ANNOTATE is `annotate`; its PID goes to CONTAINERD.
start_containerd() {
    local dir=$1 snapshotter=$2 sock=$3 annotate=${4:-}
    mkdir -p "$dir/certs.d"
    cat >"$dir/config.toml" <<EOF
version = 2
root = "$dir/root"
state = "$dir/state"
[grpc]
  address = "$dir/containerd.sock"
[ttrpc]
  address = "$dir/containerd.sock.ttrpc"
[debug]
  address = "$dir/debug.sock"
[plugins."io.containerd.grpc.v1.cri"]
  disable_tcp_service = true
  stream_server_address = "127.0.0.1"
  stream_server_port = "0"
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "$snapshotter"
    disable_snapshot_annotations = $([[ $annotate == annotate ]] && echo false || echo true)
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "$dir/cni/bin"
    conf_dir = "$dir/cni/conf"
  [plugins."io.containerd.grpc.v1.cri".registry]
    config_path = "$dir/certs.d"
[proxy_plugins]
  [proxy_plugins.strata]
    type = "snapshot"
    address = "$sock"
EOF
    containerd --config "$dir/config.toml" >"$dir/log" 2>&1 &
    CONTAINERD=$!
    PIDS+=("$CONTAINERD")
}

# One measured pull: KIND (cri|ctr) onto SNAPSHOTTER (strata|overlayfs) in a fresh containerd
# under DIR; SOCK is the served socket; ANNOTATE as for start_containerd. Sets SECS and FETCHED
# (layer blobs fetched).
measure() {
    local kind=$1 snapshotter=$2 dir=$3 sock=$4 annotate=${5:-} before start end
    mkdir -p "$dir"
    start_containerd "$dir" "$snapshotter" "$sock" "$annotate"
    ctr --address "$dir/containerd.sock" --connect-timeout 30s version >/dev/null
    before=$(layer_gets)
    start=$(now)
    case $kind in
    cri) SECS=$("$CRI_PULL" "$dir/containerd.sock" "$REF" | cut -f2) ;;
    ctr) ctr --address "$dir/containerd.sock" -n bench images pull --plain-http \
        --snapshotter "$snapshotter" "$REF" >/dev/null ;;
    esac
    end=$(now)
    # cri_pull times the call alone, not its wait for the CRI plugin to initialize.
    [[ $kind == cri ]] || SECS=$(elapsed "$start" "$end")
    FETCHED=$(($(layer_gets) - before))
    stop "$CONTAINERD"
}

declare -A TIMES GETS
record() { TIMES[$1]+="$2 "; GETS[$1]=$3; }
for trial in $(seq "$TRIALS"); do
    t=$WORK/trial$trial
    for pre in "" "--materialize"; do
        s=$t/serve$pre
        mkdir -p "$s"
        "$STRATA" --root "$s/store" serve --address "$s/strata.sock" >"$s/serve.log" 2>&1 &
        serve=$!
        PIDS+=("$serve")
        until [[ -S $s/strata.sock ]]; do sleep 0.05; done
        before=$(layer_gets)
        start=$(now)
        "$STRATA" --root "$s/store" pull ${pre:+"$pre"} "$REF" >/dev/null
        end=$(now)
        record "strata pull $pre" "$(elapsed "$start" "$end")" "$(($(layer_gets) - before))"
        measure cri strata "$s/cri" "$s/strata.sock"
        record "CRI pull, strata, pre-pulled $pre" "$SECS" "$FETCHED"
        if [[ -z $pre ]]; then
            measure ctr strata "$s/ctr" "$s/strata.sock"
            record "ctr pull, strata, pre-pulled" "$SECS" "$FETCHED"
        fi
        stop "$serve"
    done
    s=$t/serve-fetch
    mkdir -p "$s"
    STRATA_LOG=info "$STRATA" --root "$s/store" serve --address "$s/strata.sock" >"$s/serve.log" 2>&1 &
    serve=$!
    PIDS+=("$serve")
    until [[ -S $s/strata.sock ]]; do sleep 0.05; done
    measure cri strata "$s/cri" "$s/strata.sock" annotate
    record "CRI pull, strata, CRI-driven fetch" "$SECS" "$FETCHED"
    # A fetch that failed would have left the pull to containerd: not the row's subject.
    grep -q "fetched an image for containerd" "$s/serve.log" ||
        { echo "strata serve did not fetch the image:" >&2; cat "$s/serve.log" >&2; exit 1; }
    stop "$serve"
    for kind in cri ctr; do
        measure "$kind" overlayfs "$t/$kind-overlayfs" "$t/none.sock"
        record "${kind/cri/CRI} pull, overlayfs" "$SECS" "$FETCHED"
    done
    rm -rf "$t"
done

median() { tr ' ' '\n' | grep . | sort -g | awk '{ v[NR] = $1 } END { print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }
echo "image: ${#TREES[@]} layer(s) from ${TREES[*]}: $((packed >> 20)) MiB gzip, $((unpacked >> 20)) MiB tar"
echo "trials: $TRIALS ($(nproc) CPUs, $(uname -r))"
printf '%-44s %10s %12s   %s\n' "pull" "median s" "layer GETs" "all trials (s)"
for row in "strata pull " "strata pull --materialize" "CRI pull, strata, pre-pulled " \
    "CRI pull, strata, pre-pulled --materialize" "CRI pull, strata, CRI-driven fetch" "CRI pull, overlayfs" \
    "ctr pull, strata, pre-pulled" "ctr pull, overlayfs"; do
    printf '%-44s %10s %12s   %s\n' "$row" "$(median <<<"${TIMES[$row]}")" "${GETS[$row]}" "${TIMES[$row]}"
done
overlay_cri=$(median <<<"${TIMES["CRI pull, overlayfs"]}")
for row in "pre-pulled " "pre-pulled --materialize" "CRI-driven fetch"; do
    strata_cri=$(median <<<"${TIMES["CRI pull, strata, $row"]}")
    python3 -c "import sys; print(f'CRI pull: overlayfs / strata {sys.argv[3]} = {float(sys.argv[1]) / float(sys.argv[2]):.2f}x')" \
        "$overlay_cri" "$strata_cri" "$row"
done
