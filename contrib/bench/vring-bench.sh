#!/usr/bin/env bash
# SPDX-License-Identifier: LGPL-2.1-or-later
#
# The virtio-blk dataplane against fio on the backing file: `vdiskctl
# vring-test` (a simulated guest over a split virtqueue, through the
# engine) with EVENT_IDX on and off, and fio (libaio, direct=1) on the raw
# file itself, at the same block sizes and depths, on one file in one run,
# interleaved case by case so that the ratios compare like with like on a
# noisy machine.  Prints a markdown table and the targets of issue 7 with
# MET/MISSED.  See --help.
set -euo pipefail

prog=${0##*/}
runtime=8
size=1G
dir=/var/tmp
aio_modes=native
reps=1
only=
vdiskfs=${VDISKFS:-}
vdiskctl=${VDISKCTL:-}

usage ()
{
    cat <<EOF
Usage: $prog [--runtime SECONDS] [--size SIZE] [--dir DIR] [--aio MODES]
             [--reps N] [--cases NAMES] [--vdiskfs PATH] [--vdiskctl PATH]

Creates a raw file of SIZE (default $size) of random data in a temporary
directory under DIR (default $dir; it must be a disk file system, not
tmpfs: fio and the daemon use O_DIRECT), mounts it through vdiskfs
(-o aio=MODE -o cache=none) and, case by case, runs on the same file:
fio on the backing file (libaio, direct=1, time_based, 1 s ramp), then
'vdiskctl vring-test' with --event-idx on, then with --event-idx off,
RUNTIME seconds each (default $runtime).  Cases: 4k randread and randwrite
at depth 1 and 32, 1M sequential read and write at depth 4 (queue size
256).  With --reps N every run is repeated N times, interleaved, and the
median is shown.

  --aio MODES   native (default), threads, or native,threads: one mount
                and one table per mode
  --cases NAMES only these cases (comma-separated, e.g. 4k-randread-qd32)

Prints, per mode, a markdown table (IOPS and MiB/s of each, the ratio of
vring-test to fio, interrupts per completed request) and the targets:
  - 4k randread at depth 32 with aio=native: vring-test (EVENT_IDX on)
    reaches at least 0.85 x fio's IOPS;
  - with EVENT_IDX at depth 32: at most 0.25 interrupts per completed
    request;
each MET or MISSED.

The mount is unmounted and the temporary directory removed on exit, also
on ^C.  Only the processes started here are stopped.  The binaries:
--vdiskfs/--vdiskctl PATH, else \$VDISKFS/\$VDISKCTL, else ./src/ (run
from a build directory), else PATH.
EOF
}

while [ $# -gt 0 ]; do
    case $1 in
    --runtime) runtime=${2:?}; shift 2 ;;
    --runtime=*) runtime=${1#*=}; shift ;;
    --size) size=${2:?}; shift 2 ;;
    --size=*) size=${1#*=}; shift ;;
    --dir) dir=${2:?}; shift 2 ;;
    --dir=*) dir=${1#*=}; shift ;;
    --aio) aio_modes=${2:?}; shift 2 ;;
    --aio=*) aio_modes=${1#*=}; shift ;;
    --reps) reps=${2:?}; shift 2 ;;
    --reps=*) reps=${1#*=}; shift ;;
    --cases) only=${2:?}; shift 2 ;;
    --cases=*) only=${1#*=}; shift ;;
    --vdiskfs) vdiskfs=${2:?}; shift 2 ;;
    --vdiskfs=*) vdiskfs=${1#*=}; shift ;;
    --vdiskctl) vdiskctl=${2:?}; shift 2 ;;
    --vdiskctl=*) vdiskctl=${1#*=}; shift ;;
    -h|--help) usage; exit 0 ;;
    *) echo "$prog: unknown argument '$1' (see --help)" >&2; exit 2 ;;
    esac
done
case $runtime in ''|*[!0-9]*|0) echo "$prog: --runtime wants whole seconds > 0" >&2; exit 2 ;; esac
case $reps in ''|*[!0-9]*|0) echo "$prog: --reps wants a whole number > 0" >&2; exit 2 ;; esac
IFS=, read -r -a modes <<<"$aio_modes"
for m in "${modes[@]}"; do
    case $m in native|threads) ;; *) echo "$prog: bad --aio '$aio_modes'" >&2; exit 2 ;; esac
done
bytes=$(numfmt --from=iec "${size%B}" 2>/dev/null) ||
    { echo "$prog: bad --size '$size'" >&2; exit 2; }
[ "$bytes" -ge $((64 << 20)) ] || { echo "$prog: --size below 64M" >&2; exit 2; }
[ $((bytes % (1 << 20))) -eq 0 ] || { echo "$prog: --size must be whole MiB" >&2; exit 2; }
find_prog ()
{
    local given=$1 name=$2
    if [ -n "$given" ]; then echo "$given"
    elif [ -x "./src/$name" ]; then echo "./src/$name"
    else command -v "$name" || true; fi
}
vdiskfs=$(find_prog "$vdiskfs" vdiskfs)
vdiskctl=$(find_prog "$vdiskctl" vdiskctl)
for p in "$vdiskfs" "$vdiskctl"; do
    [ -n "$p" ] && [ -x "$p" ] ||
        { echo "$prog: vdiskfs or vdiskctl not found (use --vdiskfs/--vdiskctl)" >&2; exit 2; }
done
for c in fio fusermount3 python3 numfmt df; do
    command -v "$c" >/dev/null || { echo "$prog: $c is not installed" >&2; exit 2; }
done
[ -d "$dir" ] || { echo "$prog: --dir $dir is not a directory" >&2; exit 2; }
fstype=$(df --output=fstype "$dir" | tail -n 1)
case $fstype in
tmpfs|ramfs|overlay|fuse*)
    echo "$prog: $dir is on $fstype: use --dir on a disk file system" >&2; exit 2 ;;
esac
avail=$(( $(df --output=avail -k "$dir" | tail -n 1) * 1024 ))
[ "$avail" -gt $((bytes + (256 << 20))) ] ||
    { echo "$prog: $dir has $((avail >> 20)) MiB free, $size wanted" >&2; exit 2; }

cases=(
    "4k-randread-qd1    randread  4k 1"
    "4k-randread-qd32   randread  4k 32"
    "4k-randwrite-qd1   randwrite 4k 1"
    "4k-randwrite-qd32  randwrite 4k 32"
    "1M-read-qd4        read      1M 4"
    "1M-write-qd4       write     1M 4"
)
if [ -n "$only" ]; then
    picked=()
    IFS=, read -r -a names <<<"$only"
    for n in "${names[@]}"; do
        found=
        for c in "${cases[@]}"; do
            [ "${c%% *}" = "$n" ] && { picked+=("$c"); found=1; }
        done
        [ -n "$found" ] || { echo "$prog: unknown case '$n'" >&2; exit 2; }
    done
    cases=("${picked[@]}")
fi

work=$(mktemp -d "$dir/vring-bench.XXXXXX")
work=$(cd "$work" && pwd -P)
img=$work/images/disk.img
mnt=$work/mnt
vdiskfs_pid=

is_mounted () { awk -v m="$1" '$2 == m { f = 1 } END { exit !f }' /proc/mounts; }

# wait_for LIMIT CMD...: poll CMD every 50 ms for at most LIMIT seconds.
wait_for ()
{
    local i n=$(( $1 * 20 )); shift
    for (( i = 0; i < n; i++ )); do
        "$@" && return 0
        sleep 0.05
    done
    return 1
}

# unmount: fusermount3 -u (which ends the daemon), else SIGTERM, else
# SIGKILL; only ever the daemon this script started.
unmount ()
{
    local pid=$vdiskfs_pid
    [ -n "$pid" ] || return 0
    if is_mounted "$mnt"; then fusermount3 -u "$mnt" 2>/dev/null || true; fi
    gone () { ! kill -0 "$pid" 2>/dev/null; }
    if ! wait_for 10 gone; then
        kill -TERM "$pid" 2>/dev/null || true
        wait_for 10 gone || kill -KILL "$pid" 2>/dev/null || true
    fi
    wait "$pid" 2>/dev/null || true
    if is_mounted "$mnt"; then fusermount3 -uz "$mnt" 2>/dev/null || true; fi
    vdiskfs_pid=
}

cleanup ()
{
    local rc=$?
    trap - EXIT INT TERM
    unmount
    rm -rf --one-file-system "$work"
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

mount_mode ()
{
    rm -f "$work/vdiskfs.pid"
    "$vdiskfs" -o aio="$1" -o cache=none -f --pidfile="$work/vdiskfs.pid" \
        "$work/images" "$mnt" 2>>"$work/vdiskfs.log" </dev/null &
    vdiskfs_pid=$!
    vready () { [ -s "$work/vdiskfs.pid" ] && is_mounted "$mnt"; }
    wait_for 20 vready ||
        { cat "$work/vdiskfs.log" >&2; echo "$prog: vdiskfs did not mount" >&2; exit 1; }
}

mkdir -p "$work/images" "$mnt"
echo "creating $size of random data in $img ($fstype)"
head -c "$bytes" /dev/urandom > "$img"
sync "$img"


# run_fio RW BS DEPTH OUT: fio on the backing file, JSON to OUT.
run_fio ()
{
    fio --name=raw --filename="$img" --size="$bytes" --rw="$1" --bs="$2" \
        --iodepth="$3" --ioengine=libaio --direct=1 --numjobs=1 \
        --time_based --runtime="$runtime" --ramp_time=1 --norandommap \
        --randrepeat=0 --output-format=json --output="$4" >/dev/null
}

# run_vring RW BS DEPTH EVENT_IDX OUT: vring-test on the mount, JSON to OUT.
run_vring ()
{
    "$vdiskctl" vring-test "$mnt/disk.img" --rw "$1" --bs "$2" \
        --iodepth "$3" --queue-size 256 --event-idx "$4" \
        --seconds "$runtime" --json > "$5" 2>>"$work/vring.err" || {
        echo "$prog: vring-test $* failed:" >&2
        cat "$5" "$work/vring.err" >&2
        exit 1
    }
}

for mode in "${modes[@]}"; do
    mount_mode "$mode"
    echo "aio=$mode: $(( ${#cases[@]} * 3 * reps )) runs of ${runtime}s"
    for (( r = 1; r <= reps; r++ )); do
        for c in "${cases[@]}"; do
            read -r name rw bs depth <<<"$c"
            printf '  %-18s rep %d: fio' "$name" "$r" >&2
            run_fio "$rw" "$bs" "$depth" "$work/$mode.$name.fio.$r.json"
            printf ' vring-on' >&2
            run_vring "$rw" "$bs" "$depth" on "$work/$mode.$name.on.$r.json"
            printf ' vring-off\n' >&2
            run_vring "$rw" "$bs" "$depth" off "$work/$mode.$name.off.$r.json"
        done
    done
    unmount
done

env="$(uname -sr), $(nproc) CPUs, $fstype on $(df --output=source "$dir" | tail -n 1), $size file"
python3 - "$work" "$runtime" "$reps" "$env" "$aio_modes" "${cases[@]}" <<'EOF'
import json, statistics, sys
work, runtime, reps, env, modes = sys.argv[1:6]
cases = [c.split() for c in sys.argv[6:]]
reps = int(reps)

def fio(mode, name, r):
    job = json.load(open("%s/%s.%s.fio.%d.json" % (work, mode, name, r)))["jobs"][0]
    side = job["read"] if job["read"]["io_bytes"] > 0 else job["write"]
    return {"iops": side["iops"], "mibs": side["bw_bytes"] / 1048576.0,
            "irq": None}

def vring(mode, name, ev, r):
    d = json.load(open("%s/%s.%s.%s.%d.json" % (work, mode, name, ev, r)))
    assert d["ok"], "%s %s %s: %s" % (mode, name, ev, d)
    return {"iops": d["iops"], "mibs": d["mib_s"],
            "irq": d["irqs_per_request"]}

def median(runs):
    return {k: (statistics.median(x[k] for x in runs)
                if runs[0][k] is not None else None) for k in runs[0]}

print()
print("vring-bench: %s, %s s per run, %d rep(s)%s" % (
    env, runtime, reps, ", medians" if reps > 1 else ""))
checks = []
for mode in modes.split(","):
    print()
    print("aio=%s, cache=none; vring-test queue size 256; fio libaio direct=1 "
          "on the backing file" % mode)
    print()
    print("| case | fio IOPS | fio MiB/s | EVENT_IDX on IOPS | MiB/s | ratio | irq/req "
          "| EVENT_IDX off IOPS | MiB/s | ratio | irq/req |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for name, rw, bs, depth in cases:
        f = median([fio(mode, name, r) for r in range(1, reps + 1)])
        on = median([vring(mode, name, "on", r) for r in range(1, reps + 1)])
        off = median([vring(mode, name, "off", r) for r in range(1, reps + 1)])
        print("| %s | %.0f | %.1f | %.0f | %.1f | %.2f | %.3f | %.0f | %.1f | %.2f | %.3f |" % (
            name, f["iops"], f["mibs"], on["iops"], on["mibs"],
            on["iops"] / f["iops"], on["irq"], off["iops"], off["mibs"],
            off["iops"] / f["iops"], off["irq"]))
        if mode == "native" and name == "4k-randread-qd32":
            checks.append(("4k randread qd32, aio=native: EVENT_IDX on >= 0.85 x fio IOPS",
                           "%.2f x" % (on["iops"] / f["iops"]),
                           on["iops"] >= 0.85 * f["iops"]))
        if depth == "32":
            checks.append(("%s, aio=%s: EVENT_IDX on <= 0.25 irq/request" % (name, mode),
                           "%.3f" % on["irq"], on["irq"] <= 0.25))
print()
print("targets:")
for label, value, ok in checks:
    print("- %s: %s %s" % (label, value, "MET" if ok else "MISSED"))
print("%d of %d targets met" % (sum(ok for _, _, ok in checks), len(checks)))
print()
print("commands:")
print("  vdiskfs -o aio=MODE -o cache=none IMAGE_DIR MNT")
print("  vdiskctl vring-test MNT/disk.img --rw RW --bs BS --iodepth QD "
      "--queue-size 256 --event-idx on|off --seconds %s --json" % runtime)
print("  fio --ioengine=libaio --direct=1 --time_based --runtime=%s --ramp_time=1 "
      "--norandommap --randrepeat=0 --rw=RW --bs=BS --iodepth=QD (backing file)" % runtime)
EOF
