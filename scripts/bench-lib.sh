# Sourced by the scripts/bench-*.sh scripts: a work dir for the run, the daemons it starts, and
# timing. The caller names the run (`bench_work NAME`); every PID it appends to PIDS is stopped,
# every mount under the work dir unmounted and the dir removed when the script exits.

PIDS=()

# Makes the work dir $WORK for run NAME and arranges its clean-up.
bench_work() {
    WORK=$(mktemp -d "${TMPDIR:-/tmp}/$1.XXXXXX")
    trap bench_cleanup EXIT
}

bench_cleanup() {
    local pid mnt
    for pid in "${PIDS[@]}"; do
        kill "$pid" 2>/dev/null || true
        wait "$pid" 2>/dev/null || true
    done
    awk -v dir="$WORK/" 'index($5, dir) == 1 { print $5 }' /proc/self/mountinfo |
        sort -r | while read -r mnt; do umount "$mnt" || umount -l "$mnt"; done
    rm -rf "$WORK"
}

now() { date +%s.%N; }
# Seconds from $1 to $2 (both from `now`), to $3 decimals (default 3).
elapsed() {
    python3 -c "import sys; print(f'{float(sys.argv[2]) - float(sys.argv[1]):.{sys.argv[3]}f}')" \
        "$1" "$2" "${3:-3}"
}
