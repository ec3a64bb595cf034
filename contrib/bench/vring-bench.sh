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
. "$(dirname "$0")/bench-lib.sh"
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
check_count "$runtime" "--runtime wants whole seconds > 0"
check_count "$reps" "--reps wants a whole number > 0"
IFS=, read -r -a modes <<<"$aio_modes"
for m in "${modes[@]}"; do
    case $m in native|threads) ;; *) die "bad --aio '$aio_modes'" ;; esac
done
check_size
[ $((bytes % (1 << 20))) -eq 0 ] || die "--size must be whole MiB"
vdiskfs=$(find_prog "$vdiskfs" vdiskfs)
vdiskctl=$(find_prog "$vdiskctl" vdiskctl)
for p in "$vdiskfs" "$vdiskctl"; do
    [ -n "$p" ] && [ -x "$p" ] ||
        die "vdiskfs or vdiskctl not found (use --vdiskfs/--vdiskctl)"
done
require_cmds fio fusermount3 python3 numfmt df
[ -d "$dir" ] || die "--dir $dir is not a directory"
fstype=$(df --output=fstype "$dir" | tail -n 1)
case $fstype in
tmpfs|ramfs|overlay|fuse*)
    die "$dir is on $fstype: use --dir on a disk file system" ;;
esac
avail=$(( $(df --output=avail -k "$dir" | tail -n 1) * 1024 ))
[ "$avail" -gt $((bytes + (256 << 20))) ] ||
    die "$dir has $((avail >> 20)) MiB free, $size wanted"

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
        [ -n "$found" ] || die "unknown case '$n'"
    done
    cases=("${picked[@]}")
fi

work=$(mktemp -d "$dir/vring-bench.XXXXXX")
work=$(cd "$work" && pwd -P)
img=$work/images/disk.img
mnt=$work/mnt
vdiskfs_pid=

# unmount: stop the daemon this script started, if any.
unmount () { stop_pid "$vdiskfs_pid" "$mnt"; vdiskfs_pid=; }

cleanup ()
{
    local rc=$?
    trap - EXIT INT TERM
    unmount
    rm -rf --one-file-system "$work"
    exit "$rc"
}
trap_cleanup

mkdir -p "$work/images" "$mnt"
echo "creating $size of random data in $img ($fstype)"
head -c "$bytes" /dev/urandom > "$img"
sync "$img"

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
    mount_vdiskfs "$work" "$work/images" "$mnt" aio="$mode" cache=none
    echo "aio=$mode: $(( ${#cases[@]} * 3 * reps )) runs of ${runtime}s"
    for (( r = 1; r <= reps; r++ )); do
        for c in "${cases[@]}"; do
            read -r name rw bs depth <<<"$c"
            printf '  %-18s rep %d: fio' "$name" "$r" >&2
            fio_case raw "$img" "$rw" "$bs" "$depth" \
                "$work/$mode.$name.fio.$r.json"
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
