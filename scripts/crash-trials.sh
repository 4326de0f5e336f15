#!/usr/bin/env bash
# Kill -9 trials: runs N random trials (default 100) of each of import, gc, commit and serve,
# each killed with SIGKILL after a random delay, then checks that the store opens, that
# `strata fsck` is clean, that everything acknowledged before the kill is still there, and that
# the interrupted operation can be done again. Prints per-kind counts of trials and bad ones.
#
# Usage: scripts/crash-trials.sh [N] [KIND...]     (KIND: import gc commit serve; default all)
# Needs root (commit mounts a container rootfs). Builds the release binary first, in
# $CARGO_TARGET_DIR (default: target/ of the repository). Environment:
#   CRASH_TRIALS_TREES  directories the large image is made of, the first also what a commit
#                       adds (default /usr/share/doc); an import must take long enough (a
#                       second or more) for kills to land mid-way
#   CRASH_TRIALS_KEEP   a directory where the logs of every bad trial are kept (default: a
#                       directory printed at the end)
#   TMPDIR              where stores are made (one at a time, a few hundred MB)
set -euo pipefail

N=${1:-100}
shift || true
KINDS=("$@")
[[ ${#KINDS[@]} -gt 0 ]] || KINDS=(import gc commit serve)
for kind in "${KINDS[@]}"; do
    case $kind in import | gc | commit | serve) ;; *) echo "unknown kind $kind" >&2; exit 2 ;; esac
done
[[ $N =~ ^[0-9]+$ ]] || { echo "N must be a number" >&2; exit 2; }

REPO=$(cd "$(dirname "$0")/.." && pwd)
TARGET=${CARGO_TARGET_DIR:-$REPO/target}
(cd "$REPO" && cargo build --release --quiet -p strata-cli --bin strata --example serve_driver)
STRATA=$TARGET/release/strata
DRIVER=$TARGET/release/examples/serve_driver
read -r -a TREES <<<"${CRASH_TRIALS_TREES:-/usr/share/doc}"

WORK=$(mktemp -d "${TMPDIR:-/tmp}/crash-trials.XXXXXX")
KEEP=${CRASH_TRIALS_KEEP:-$WORK.bad}

# Everything started or mounted is recorded here, and stopped or unmounted on any exit.
PIDS=()
MOUNTS=()
forget() {
    local keep=() pid gone
    for pid in "${PIDS[@]}"; do
        for gone in "$@"; do [[ $pid == "$gone" ]] && continue 2; done
        keep+=("$pid")
    done
    PIDS=("${keep[@]}")
}
unmount_all() {
    local mnt
    for mnt in "${MOUNTS[@]}"; do
        if mountpoint -q "$mnt"; then umount -R "$mnt"; fi
    done
}
cleanup() {
    local pid
    for pid in "${PIDS[@]}"; do
        kill -9 "$pid" 2>/dev/null || true
        wait "$pid" 2>/dev/null || true
    done
    unmount_all
    rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

now_ms() { echo $(($(date +%s%N) / 1000000)); }
sleep_ms() { sleep "$(printf '%d.%03d' $(($1 / 1000)) $(($1 % 1000)))"; }

# A random delay in [0, 1.2 × SPAN_MS], SPAN_MS being the operation's uninterrupted time, so
# that most kills land mid-way and some after the end.
random_delay() { echo $(($(shuf -i 0-1000000 -n 1) * $1 * 12 / 10 / 1000000)); }

# strata on the trial's store.
st() { "$STRATA" --root "$STORE" "$@"; }

# Runs `strata --root STORE ARGS…` (the program itself, not a function: the kill must reach it)
# in the background, kills it with SIGKILL after DELAY_MS, and sets ACKED=1 when it had exited 0
# before the kill (its output is in $LOG). Failing by itself is a problem.
run_killed() {
    local delay_ms=$1
    shift
    "$@" >"$LOG" 2>&1 &
    local pid=$!
    PIDS+=("$pid")
    sleep_ms "$delay_ms"
    kill -9 "$pid" 2>/dev/null || true
    local rc=0
    wait "$pid" 2>/dev/null || rc=$?
    forget "$pid"
    ACKED=0
    case $rc in
    0) ACKED=1 ;;
    137) ;; # killed
    *) problem "strata ${*:4} failed on its own (status $rc): $(tail -n 3 "$LOG")" ;;
    esac
}

# Problems found by the checks of one trial, one a line.
PROBLEMS=()
problem() { PROBLEMS+=("$*"); }

# The store opens, fsck finds nothing, and the images IMAGE… are listed.
check_store() {
    local images out name
    if ! images=$(st images 2>&1); then
        problem "the store does not open: $images"
        return 0
    fi
    out=$(st fsck 2>&1) || problem "fsck: $out"
    for name in "$@"; do
        if ! grep -q "^$name " <<<"$images"; then problem "acknowledged image $name is gone"; fi
    done
}

image_listed() { st images 2>/dev/null | grep -q "^$1 "; }

# The inputs: a small base image every store starts with, and a large image to import.
setup() {
    mkdir -p "$WORK/base-tree"
    local i tree rel=()
    for i in $(seq 100); do echo "base file $i" >"$WORK/base-tree/f$i"; done
    tar -C "$WORK/base-tree" -cf "$WORK/base.tar" .
    STORE=$WORK/template
    st import "$WORK/base.tar" --name base >/dev/null
    for tree in "${TREES[@]}"; do rel+=("${tree#/}"); done
    tar -C / -cf "$WORK/big.tar" "${rel[@]}"
    # What commits add, copied once: the machine's own tree may change while the trials run.
    cp -a "${TREES[0]}" "$WORK/added"
}

# A fresh store holding the base image.
fresh_store() {
    STORE=$WORK/store
    rm -rf "$STORE"
    cp -a "$WORK/template" "$STORE"
}

# Each kind: prepare_KIND does what precedes the kill (acknowledged), op_KIND sets OP to the
# command killed, check_KIND checks the store afterwards and that the operation can be done again.

prepare_import() { :; }
op_import() { OP=("$STRATA" --root "$STORE" import "$WORK/big.tar" --name big); }
check_import() {
    local out
    if [[ $ACKED -eq 1 ]]; then check_store base big; else check_store base; fi
    out=$(st import "$WORK/big.tar" --name big 2>&1) || problem "import again: $out"
    check_store base big
}

prepare_gc() {
    st import "$WORK/big.tar" --name big >/dev/null
    st rmi big >/dev/null
}
op_gc() { OP=("$STRATA" --root "$STORE" gc); }
check_gc() {
    local out
    check_store base
    if image_listed big; then problem "removed image big is back"; fi
    out=$(st gc 2>&1) || problem "gc again: $out"
    check_store base
}

prepare_commit() {
    local mnt=$WORK/mnt
    st rootfs base ctr >/dev/null
    mkdir -p "$mnt"
    MOUNTS+=("$mnt")
    st snapshot mount ctr "$mnt" >/dev/null
    cp -a "$WORK/added" "$mnt/added"
    rm "$mnt/f1"
    echo changed >>"$mnt/f2"
    st snapshot umount "$mnt" >/dev/null
}
op_commit() { OP=("$STRATA" --root "$STORE" commit ctr new); }
check_commit() {
    local out
    if [[ $ACKED -eq 1 ]]; then check_store base new; else check_store base; fi
    # The container still holds its changes.
    local mnt=$WORK/mnt
    if out=$(st snapshot mount ctr "$mnt" 2>&1); then
        if ! out=$(diff -r --no-dereference "$WORK/added" "$mnt/added" 2>&1); then
            problem "the container's added tree differs: $(head -n 3 <<<"$out")"
        fi
        if [[ -e $mnt/f1 ]]; then problem "the container's removed f1 is back"; fi
        if [[ $(tail -n 1 "$mnt/f2") != changed ]]; then problem "the container's f2 lost its change"; fi
        st snapshot umount "$mnt" >/dev/null
    else
        problem "mounting the container: $out"
    fi
    out=$(st commit ctr new 2>&1) || problem "commit again: $out"
    check_store base new
}

# serve: `strata serve` with a driver (cli/examples/serve_driver.rs) preparing, committing and
# removing snapshots over gRPC until the server is killed; the driver's log says what was
# acknowledged. The server never finishes on its own, so every serve trial is killed mid-way.
prepare_serve() {
    rm -rf "$STORE"
    mkdir -p "$WORK/mnt"
    MOUNTS+=("$WORK/mnt")
}
run_killed_serve() {
    local delay_ms=$1 sock=$WORK/serve.sock err=$WORK/serve.err
    rm -f "$sock"
    : >"$err"
    "$STRATA" --root "$STORE" serve --address "$sock" 2>"$err" &
    local server=$!
    PIDS+=("$server")
    until grep -q "serving snapshots on" "$err"; do
        if ! kill -0 "$server" 2>/dev/null; then
            problem "strata serve did not start: $(cat "$err")"
            break
        fi
        sleep 0.01
    done
    "$DRIVER" "$sock" >"$LOG" 2>"$WORK/driver.err" &
    local driver=$!
    PIDS+=("$driver")
    sleep_ms "$delay_ms"
    kill -9 "$server" 2>/dev/null || true
    wait "$server" 2>/dev/null || true
    # Without its server the driver fails at its next call.
    wait "$driver" 2>/dev/null || true
    forget "$server" "$driver"
    ACKED=0
}
# The key a committed snapshot was made from.
key_of() { if [[ $1 == base ]]; then echo base-work; else echo "k${1#c}"; fi; }
check_serve() {
    local list out
    if ! list=$(st snapshot ls 2>&1); then
        problem "the store does not open: $list"
        return 0
    fi
    out=$(st fsck 2>&1) || problem "fsck: $out"
    # KEY … KIND OWNER: containerd's snapshots (what strata serve made), key and kind.
    list=$(awk 'NR > 1 && $NF == "containerd" { print $1, $(NF - 1) }' <<<"$list")
    # What the driver saw acknowledged: the last word on each snapshot.
    local verdict op name key
    declare -A state=()
    while read -r verdict op name; do
        key=$(key_of "$name")
        case "$verdict $op" in
        "ok prepare") state[$name]=active ;;
        "begin commit") state[$name]=unsure state[$key]=unsure ;;
        "ok commit") state[$name]=committed state[$key]=gone ;;
        "begin remove") state[$name]=unsure ;;
        "ok remove") state[$name]=gone ;;
        esac
    done <"$LOG"
    for name in "${!state[@]}"; do
        case ${state[$name]} in
        active | committed)
            if ! grep -qx "$name ${state[$name]}" <<<"$list"; then
                problem "acknowledged ${state[$name]} snapshot $name is not there"
            fi
            ;;
        gone)
            if grep -q "^$name " <<<"$list"; then
                problem "snapshot $name, committed or removed, is still there"
            fi
            ;;
        esac
    done
    # The files of base and of the last acknowledged commit are there, seen through a view.
    local last
    last=$(awk '$1 == "ok" && $2 == "commit" { name = $3 } END { print name }' "$LOG")
    if [[ -n $last ]]; then
        check_snapshot_files base base
        if [[ $last != base && ${state[$last]} == committed ]]; then
            check_snapshot_files "$last" "$(key_of "$last")"
        fi
    fi
    return 0
}

# Committed snapshot NAME (containerd's, made through strata serve) holds the files the driver
# wrote under TAG/ (see serve_driver.rs).
check_snapshot_files() {
    local name=$1 tag=$2 mnt=$WORK/mnt out i
    local ns=(--namespace containerd)
    if ! out=$(st "${ns[@]}" snapshot view "check-$name" "$name" 2>&1 &&
        st "${ns[@]}" snapshot mount "check-$name" "$mnt" 2>&1); then
        problem "viewing snapshot $name: $out"
        return 0
    fi
    for i in 0 1 2 3 4 5 6 7; do
        if [[ $(cat "$mnt/$tag/f$i" 2>/dev/null) != "$(yes "$tag $i" | head -n 512)" ]]; then
            problem "snapshot $name lacks its file $tag/f$i"
        fi
    done
    st snapshot umount "$mnt" >/dev/null
    st "${ns[@]}" snapshot rm "check-$name" >/dev/null
}

# Times one uninterrupted run of KIND, in ms (serve runs until killed: 2 s of it).
calibrate() {
    local kind=$1 start
    if [[ $kind == serve ]]; then
        echo 2000
        return 0
    fi
    fresh_store
    "prepare_$kind" >/dev/null
    start=$(now_ms)
    "op_$kind"
    "${OP[@]}" >/dev/null 2>&1 || { echo "an uninterrupted $kind fails" >&2; return 1; }
    echo $(($(now_ms) - start))
}

setup
declare -A TRIALS=() BAD=() MIDWAY=()
for kind in "${KINDS[@]}"; do
    span=$(calibrate "$kind")
    unmount_all
    echo "$kind: an uninterrupted run takes $span ms" >&2
    TRIALS[$kind]=0 BAD[$kind]=0 MIDWAY[$kind]=0
    for ((i = 1; i <= N; i++)); do
        fresh_store
        LOG=$WORK/op.log
        PROBLEMS=()
        "prepare_$kind" >/dev/null
        delay=$(random_delay "$span")
        if [[ $kind == serve ]]; then
            run_killed_serve "$delay"
        else
            "op_$kind"
            run_killed "$delay" "${OP[@]}"
        fi
        if [[ $ACKED -eq 0 ]]; then MIDWAY[$kind]=$((MIDWAY[$kind] + 1)); fi
        "check_$kind"
        unmount_all
        TRIALS[$kind]=$((TRIALS[$kind] + 1))
        if [[ ${#PROBLEMS[@]} -gt 0 ]]; then
            BAD[$kind]=$((BAD[$kind] + 1))
            mkdir -p "$KEEP/$kind-$i"
            cp "$LOG" "$KEEP/$kind-$i/op.log"
            printf '%s\n' "${PROBLEMS[@]}" >"$KEEP/$kind-$i/problems"
            echo "$kind trial $i (killed after $delay ms): BAD" >&2
            printf '  %s\n' "${PROBLEMS[@]}" >&2
        fi
    done
done

printf '%-8s %7s %13s %5s\n' KIND TRIALS KILLED-MIDWAY BAD
total_bad=0
for kind in "${KINDS[@]}"; do
    printf '%-8s %7d %13d %5d\n' "$kind" "${TRIALS[$kind]}" "${MIDWAY[$kind]}" "${BAD[$kind]}"
    total_bad=$((total_bad + BAD[$kind]))
done
if [[ $total_bad -gt 0 ]]; then
    echo "logs of the bad trials: $KEEP" >&2
    exit 1
fi
