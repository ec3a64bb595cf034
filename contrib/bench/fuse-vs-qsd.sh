#!/usr/bin/env bash
# SPDX-License-Identifier: LGPL-2.1-or-later
#
# fio through vdiskfs, through qemu-storage-daemon's FUSE export, and on the
# raw backing file itself: the same file, the same run, interleaved case by
# case so that the ratios compare like with like on a noisy machine.  Prints
# a table and the targets of issue 5 with ok/MISSED.  See --help.
set -euo pipefail

prog=${0##*/}
. "$(dirname "$0")/bench-lib.sh"
runtime=8
size=1G
dir=
vdiskfs=${VDISKFS:-}

usage ()
{
    cat <<EOF
Usage: $prog [--runtime SECONDS] [--size SIZE] [--dir DIR] [--vdiskfs PATH]

Creates a raw file of SIZE (default 1G) of random data in a temporary
directory under DIR (default: the current directory), mounts it through
vdiskfs (-o aio=native,cache=none) and through qemu-storage-daemon's FUSE
export (driver=file, aio=native, cache.direct=on, writable=on), and runs fio
(libaio, direct=1, time_based, 1 s ramp, RUNTIME seconds per case; default
$runtime) on all three: 4k random read and write at depth 1 and 16, 1M
sequential read and write at depth 4.  Prints IOPS (4k) or MiB/s (1M), the
ratios, mean completion latency, and the targets with ok/MISSED.

Both mounts are unmounted and the temporary directory removed on exit, also
on ^C.  Only the processes started here are stopped.

The vdiskfs binary: --vdiskfs PATH, else \$VDISKFS, else ./src/vdiskfs (run
from a build directory), else the one on PATH.
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
    --vdiskfs) vdiskfs=${2:?}; shift 2 ;;
    --vdiskfs=*) vdiskfs=${1#*=}; shift ;;
    -h|--help) usage; exit 0 ;;
    *) echo "$prog: unknown argument '$1' (see --help)" >&2; exit 2 ;;
    esac
done
check_count "$runtime" "--runtime wants whole seconds > 0"
check_size
vdiskfs=$(find_prog "$vdiskfs" vdiskfs)
[ -n "$vdiskfs" ] && [ -x "$vdiskfs" ] || die "vdiskfs not found (use --vdiskfs PATH)"
require_cmds fio qemu-storage-daemon fusermount3 python3 numfmt

work=$(mktemp -d "${dir:-$PWD}/fuse-vs-qsd.XXXXXX")
work=$(cd "$work" && pwd -P)
img=$work/images/disk.img
mnt=$work/mnt
qsd_file=$work/qsd-export
vdiskfs_pid=
qsd_pid=

cleanup ()
{
    local rc=$?
    trap - EXIT INT TERM
    stop_pid "$vdiskfs_pid" "$mnt"
    stop_pid "$qsd_pid" "$qsd_file"
    rm -rf --one-file-system "$work"
    exit "$rc"
}
trap_cleanup

mkdir -p "$work/images" "$mnt"
: > "$qsd_file"
echo "creating $size of random data in $img"
head -c "$bytes" /dev/urandom > "$img"

echo "mounting vdiskfs ($vdiskfs) at $mnt"
mount_vdiskfs "$work" "$work/images" "$mnt" aio=native cache=none

echo "exporting through qemu-storage-daemon at $qsd_file"
qemu-storage-daemon \
    --blockdev "driver=file,node-name=file,filename=$img,aio=native,cache.direct=on" \
    --export "type=fuse,id=exp,node-name=file,mountpoint=$qsd_file,writable=on" \
    2>"$work/qsd.log" </dev/null &
qsd_pid=$!
qready () { is_mounted "$qsd_file"; }
wait_for 20 qready || { cat "$work/qsd.log" >&2; echo "$prog: qemu-storage-daemon did not export" >&2; exit 1; }

cases=(
    "4k-randread-qd1   randread  4k 1"
    "4k-randread-qd16  randread  4k 16"
    "4k-randwrite-qd1  randwrite 4k 1"
    "4k-randwrite-qd16 randwrite 4k 16"
    "1M-seqread-qd4    read      1M 4"
    "1M-seqwrite-qd4   write     1M 4"
)
targets=(raw "$img" vdiskfs "$mnt/disk.img" qsd "$qsd_file")

echo "fio: ${runtime}s per case, $(( ${#cases[@]} * 3 )) runs"
for c in "${cases[@]}"; do
    read -r name rw bs depth <<<"$c"
    printf '  %-18s' "$name" >&2
    for (( t = 0; t < ${#targets[@]}; t += 2 )); do
        printf ' %s' "${targets[t]}" >&2
        fio_case "$name" "${targets[t+1]}" "$rw" "$bs" "$depth" \
            "$work/$name.${targets[t]}.json"
    done
    echo >&2
done

commands="vdiskfs -o aio=native -o cache=none IMAGE_DIR MNT
qemu-storage-daemon --blockdev driver=file,node-name=file,filename=F,aio=native,cache.direct=on --export type=fuse,id=exp,node-name=file,mountpoint=MNTFILE,writable=on
fio --ioengine=libaio --direct=1 --time_based --runtime=$runtime --ramp_time=1 --size=$bytes --rw=RW --bs=BS --iodepth=QD"

python3 - "$work" "$runtime" "$commands" "${cases[@]}" <<'EOF'
import json, sys
work, runtime, commands, cases = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4:]

def load(name, target):
    job = json.load(open("%s/%s.%s.json" % (work, name, target)))["jobs"][0]
    side = job["read"] if job["read"]["io_bytes"] > 0 else job["write"]
    return {"iops": side["iops"], "mibs": side["bw"] / 1024.0,
            "lat_us": side["clat_ns"]["mean"] / 1000.0}

rows, res = [], {}
for c in cases:
    name, rw, bs, depth = c.split()
    r = {t: load(name, t) for t in ("raw", "vdiskfs", "qsd")}
    res[name] = r
    key = "iops" if bs == "4k" else "mibs"
    unit = "IOPS" if bs == "4k" else "MiB/s"
    rows.append((name, unit, r["raw"][key], r["vdiskfs"][key], r["qsd"][key],
                 r["vdiskfs"][key] / r["qsd"][key], r["vdiskfs"][key] / r["raw"][key],
                 r["raw"]["lat_us"], r["vdiskfs"]["lat_us"], r["qsd"]["lat_us"]))

print()
print("%-18s %-5s %10s %10s %10s %8s %8s   %s" % (
    "case", "unit", "raw", "vdiskfs", "qsd", "vd/qsd", "vd/raw",
    "mean clat us (raw/vdiskfs/qsd)"))
for row in rows:
    print("%-18s %-5s %10.0f %10.0f %10.0f %8.2f %8.2f   %.1f / %.1f / %.1f" % row)

checks = []
for name, r in res.items():
    key = "iops" if name.startswith("4k") else "mibs"
    want = 1.5 if name == "4k-randwrite-qd16" else 1.0
    checks.append(("%s vs qsd >= %.1f" % (name, want),
                   r["vdiskfs"][key] / r["qsd"][key], want))
for name in ("4k-randread-qd1", "4k-randwrite-qd1"):
    r = res[name]
    # latency "no worse": qsd latency / vdiskfs latency >= 1.0
    checks.append(("%s latency no worse than qsd (qsd/vdiskfs)" % name,
                   r["qsd"]["lat_us"] / r["vdiskfs"]["lat_us"], 1.0))
for name in ("4k-randread-qd16", "4k-randwrite-qd16",
             "1M-seqread-qd4", "1M-seqwrite-qd4"):
    r = res[name]
    key = "iops" if name.startswith("4k") else "mibs"
    checks.append(("%s vs raw >= 0.8" % name, r["vdiskfs"][key] / r["raw"][key], 0.8))

print()
print("targets (ratios in this run, %s s per case):" % runtime)
missed = 0
for label, ratio, want in checks:
    ok = ratio >= want
    missed += not ok
    print("  %-58s %6.2f  %s" % (label, ratio, "ok" if ok else "MISSED"))
print("%d of %d targets met" % (len(checks) - missed, len(checks)))
print()
print("commands:")
for line in commands.splitlines():
    print("  " + line)
EOF
