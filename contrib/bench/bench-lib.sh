# SPDX-License-Identifier: LGPL-2.1-or-later
#
# What the benchmark scripts of contrib/bench share: checking their
# options, finding the programs, mounting vdiskfs, stopping only what they
# started, and one fio case.  Sourced, never run: the script sets prog
# (its name, for messages) first, and set -euo pipefail.  The functions
# read the script's globals where they say so (size, bytes, runtime,
# vdiskfs, vdiskfs_pid).

# die MESSAGE...: "$prog: MESSAGE" on stderr, exit 2 (a usage error or a
# missing tool).
die () { echo "$prog: $*" >&2; exit 2; }

# check_count VALUE MESSAGE: die with MESSAGE unless VALUE is a whole
# number > 0.
check_count ()
{
    case $1 in ''|*[!0-9]*|0) die "$2" ;; esac
}

# check_size: set bytes from $size (IEC units such as 1G, an optional B),
# at least 64M, or die.
check_size ()
{
    bytes=$(numfmt --from=iec "${size%B}" 2>/dev/null) || die "bad --size '$size'"
    [ "$bytes" -ge $((64 << 20)) ] || die "--size below 64M"
}

# require_cmds CMD...: die unless every CMD is installed.
require_cmds ()
{
    local c
    for c in "$@"; do
        command -v "$c" >/dev/null || die "$c is not installed"
    done
}

# find_prog GIVEN NAME: print GIVEN if set, else ./src/NAME if there (run
# from a build directory), else NAME on PATH, else nothing.
find_prog ()
{
    local given=$1 name=$2
    if [ -n "$given" ]; then echo "$given"
    elif [ -x "./src/$name" ]; then echo "./src/$name"
    else command -v "$name" || true; fi
}

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

# stop_pid PID [MOUNTPOINT]: unmount (which ends a FUSE daemon), else
# SIGTERM, else SIGKILL; only ever PID, which the script started.
stop_pid ()
{
    local pid=$1 m=${2:-}
    [ -n "$pid" ] || return 0
    if [ -n "$m" ] && is_mounted "$m"; then fusermount3 -u "$m" 2>/dev/null || true; fi
    gone () { ! kill -0 "$pid" 2>/dev/null; }
    if [ -z "$m" ] || ! wait_for 10 gone; then
        kill -TERM "$pid" 2>/dev/null || true
        wait_for 10 gone || kill -KILL "$pid" 2>/dev/null || true
    fi
    wait "$pid" 2>/dev/null || true
    if [ -n "$m" ] && is_mounted "$m"; then fusermount3 -uz "$m" 2>/dev/null || true; fi
}

# trap_cleanup: run the script's cleanup function on exit, also on ^C
# (status 130) and SIGTERM (143).
trap_cleanup ()
{
    trap cleanup EXIT
    trap 'exit 130' INT
    trap 'exit 143' TERM
}

vdiskfs_mounted () { [ -s "$1" ] && is_mounted "$2"; }

# mount_vdiskfs RUNDIR IMAGES MNT OPTION...: start $vdiskfs in the
# background on IMAGES at MNT with -o OPTION each, its pid file and log
# (appended) in RUNDIR; set vdiskfs_pid; wait at most 20 s for the pid file
# and the mount, else show the log and exit 1.
mount_vdiskfs ()
{
    local d=$1 images=$2 m=$3 o opts=()
    shift 3
    for o in "$@"; do opts+=(-o "$o"); done
    rm -f "$d/vdiskfs.pid"
    "$vdiskfs" "${opts[@]}" -f --pidfile="$d/vdiskfs.pid" \
        "$images" "$m" 2>>"$d/vdiskfs.log" </dev/null &
    vdiskfs_pid=$!
    wait_for 20 vdiskfs_mounted "$d/vdiskfs.pid" "$m" ||
        { cat "$d/vdiskfs.log" >&2; echo "$prog: vdiskfs did not mount" >&2; exit 1; }
}

# fio_case NAME FILE RW BS DEPTH OUT: one fio run on FILE ($bytes of it,
# libaio, direct=1, $runtime s after a 1 s ramp), its JSON report to OUT.
fio_case ()
{
    fio --name="$1" --filename="$2" --size="$bytes" --rw="$3" --bs="$4" \
        --iodepth="$5" --ioengine=libaio --direct=1 --numjobs=1 \
        --time_based --runtime="$runtime" --ramp_time=1 --norandommap \
        --randrepeat=0 --output-format=json --output="$6" >/dev/null
}
