#!/usr/bin/env bash
# SPDX-License-Identifier: LGPL-2.1-or-later
#
# Time to ready of `vdiskctl mirror` against qemu-storage-daemon's
# blockdev-mirror, with dd and cp as the copy limit: a raw image of random
# data, one that is half holes, and the random one again under a 4k random
# writer for both copy modes.  Repetitions are interleaved case by case so
# that the ratios compare like with like on a noisy machine.  Prints a
# table and the targets of the mirror issue with MET/MISSED.  See --help.
set -euo pipefail

prog=${0##*/}
here=$(cd "$(dirname "$0")" && pwd -P)
. "$here/bench-lib.sh"
size=1G
hole_run=1M
workdir=/var/tmp
writer_secs=120
repeat=1
peers_only=0
verify=1
keep=0
vdiskfs=${VDISKFS:-}
vdiskctl=${VDISKCTL:-}
dd_flags="iflag=direct oflag=direct"
warmup=2                # seconds the writer runs before the mirror starts

usage ()
{
    cat <<EOF
Usage: $prog [OPTIONS]

Mirrors a raw image and measures the time from the start of the job to
"ready" (the target holds all of the source and follows its writes):

  random data   SIZE (default $size) of random data
  half holes    SIZE whose first HOLE_RUN is random data, the next HOLE_RUN
                a hole, and so on (default runs of $hole_run: 512 data
                extents and 512 holes in 1 GiB)
  under writer  the random image while fio writes to it (4k random writes,
                depth 4), for each copy mode: background, write-blocking

with four tools:

  vdiskfs  vdiskfs IMAGES MNT -o aio=native -o cache=none -o mirror_dir=T,
           then vdiskctl mirror start MNT/IMG T/target --sync full
           --mode MODE (vdiskctl creates the target); ready is seen by a
           small C program, built here against src/vdisk-ioctl.h, that
           polls VDISK_IOC_MIRROR_STATUS every 2 ms (vdiskctl mirror wait
           polls every 100 ms, too coarse for a 1 s copy; it is the
           fallback when no C compiler or header is found)
  qsd      qemu-storage-daemon with the image as a file node (aio=native,
           cache.direct=on) under a raw node; the target is created empty
           (truncate) and added over QMP as file + raw nodes (aio=native,
           cache.direct=on); blockdev-mirror sync=full [copy-mode=MODE],
           until the BLOCK_JOB_READY event; then block-job-cancel
  dd       dd if=IMG of=T/target bs=1M iflag=direct oflag=direct (see
           --dd-flags)
  cp       cp --sparse=always IMG T/target, then sync T/target (fsync; the
           time includes it, or cp would measure the page cache)

The time runs from just before the start (vdiskctl mirror start; QMP
blockdev-mirror) to the moment ready is seen; for dd and cp, the whole
command.  Caches are dropped (sync; echo 3 > /proc/sys/vm/drop_caches)
before each measurement.  Speed is the image size divided by the time to ready, on both
images (so on the half-hole image it counts the holes as copied).  With
--repeat N, each case is measured N times, the repetitions interleaved,
and the table shows the median time.

Under the writer, the writer is fio with --ioengine=libaio --direct=1
--rw=randwrite --bs=4k --iodepth=4 --norandommap, started $warmup s before
the mirror: through the FUSE mount for vdiskfs; for qemu-storage-daemon
through an NBD export of the source node (--nbd-server on a unix socket,
--export type=nbd,writable=on) with fio --ioengine=nbd, because qsd 7.2
refuses to mirror a node that its writable FUSE export serves.  The wait
for ready is bounded by --writer-seconds; a job that is not ready by then
is reported as "no ready in Ns" (background mode may never converge
against this writer) and cancelled.  Each job is cancelled while the
writer still runs, then the writer is stopped.

Options:
  --size SIZE            image size (default $size; a multiple of 1M)
  --hole-run SIZE        data and hole run of the half-hole image (default
                         $hole_run)
  --workdir DIR          scratch directory is made under DIR (default
                         $workdir; must be a disk file system, not tmpfs;
                         needs about 3 x SIZE free)
  --writer-seconds S     bound on the wait for ready under the writer
                         (default $writer_secs)
  --repeat N             measure each case N times, report the median
                         (default $repeat)
  --dd-flags FLAGS       dd's flags besides bs=1M (default
                         "$dd_flags"; "oflag=direct" alone reads
                         through the page cache, about half as fast here)
  --peers-only           only qemu-storage-daemon, dd and cp (no vdiskfs)
  --no-verify            skip comparing the targets of the first repetition
                         with their source (cmp) on the two static images
  --keep                 keep the scratch directory (logs, results)
  --vdiskfs PATH         the daemon (default: \$VDISKFS, else
                         _build/default/src/vdiskfs of this tree, else
                         ./src/vdiskfs, else on PATH)
  --vdiskctl PATH        its control tool (same search, \$VDISKCTL)
  -h, --help             show this help

Needs root (drop_caches), qemu-storage-daemon, fio with the nbd engine,
python3 and fusermount3.  On exit, also on ^C, the mount is unmounted, the
processes started here (and only those) are stopped and the scratch
directory removed.
EOF
}

while [ $# -gt 0 ]; do
    case $1 in
    --size) size=${2:?}; shift 2 ;;
    --size=*) size=${1#*=}; shift ;;
    --hole-run) hole_run=${2:?}; shift 2 ;;
    --hole-run=*) hole_run=${1#*=}; shift ;;
    --workdir) workdir=${2:?}; shift 2 ;;
    --workdir=*) workdir=${1#*=}; shift ;;
    --writer-seconds) writer_secs=${2:?}; shift 2 ;;
    --writer-seconds=*) writer_secs=${1#*=}; shift ;;
    --repeat) repeat=${2:?}; shift 2 ;;
    --repeat=*) repeat=${1#*=}; shift ;;
    --dd-flags) dd_flags=${2?}; shift 2 ;;
    --dd-flags=*) dd_flags=${1#*=}; shift ;;
    --peers-only) peers_only=1; shift ;;
    --no-verify) verify=0; shift ;;
    --keep) keep=1; shift ;;
    --vdiskfs) vdiskfs=${2:?}; shift 2 ;;
    --vdiskfs=*) vdiskfs=${1#*=}; shift ;;
    --vdiskctl) vdiskctl=${2:?}; shift 2 ;;
    --vdiskctl=*) vdiskctl=${1#*=}; shift ;;
    -h|--help) usage; exit 0 ;;
    *) echo "$prog: unknown argument '$1' (see --help)" >&2; exit 2 ;;
    esac
done

check_count "$writer_secs" "--writer-seconds wants whole seconds > 0"
check_count "$repeat" "--repeat wants a whole number > 0"
require_cmds qemu-storage-daemon fio python3 numfmt truncate cmp
check_size
[ $((bytes % (1 << 20))) -eq 0 ] || die "--size must be a multiple of 1M"
run_bytes=$(numfmt --from=iec "${hole_run%B}" 2>/dev/null) || die "bad --hole-run '$hole_run'"
if [ "$run_bytes" -lt 4096 ] || [ $((run_bytes % 4096)) -ne 0 ] ||
    [ $((2 * run_bytes)) -gt "$bytes" ]; then
    die "--hole-run must be a multiple of 4k, at most half of --size"
fi
[ "$(id -u)" -eq 0 ] || die "needs root (to drop the page cache between runs)"
fio --enghelp 2>/dev/null | grep -qw nbd || die "this fio has no nbd engine"
[ -d "$workdir" ] || die "--workdir $workdir is no directory"
case $(stat -f -c %T "$workdir") in
tmpfs|ramfs) die "--workdir $workdir is $(stat -f -c %T "$workdir"): no O_DIRECT, no disk; use a disk file system" ;;
esac
avail=$(( $(stat -f -c '%a * %S' "$workdir") ))
[ "$avail" -ge $(( bytes * 3 + (256 << 20) )) ] ||
    die "--workdir $workdir has $((avail >> 20)) MiB free, needs about $(( (bytes * 3 >> 20) + 256 )) MiB"

# find_tool VALUE NAME: the given path, else this tree's build, else
# ./src/NAME, else PATH.
find_tool ()
{
    local v=$1 name=$2
    if [ -z "$v" ]; then
        if [ -x "$here/../../_build/default/src/$name" ]; then
            v=$here/../../_build/default/src/$name
        elif [ -x "./src/$name" ]; then v=./src/$name
        else v=$(command -v "$name" || true); fi
    fi
    [ -n "$v" ] && [ -x "$v" ] || return 1
    (cd "$(dirname "$v")" && echo "$(pwd -P)/${v##*/}")
}
if [ "$peers_only" = 0 ]; then
    command -v fusermount3 >/dev/null || die "fusermount3 is not installed"
    vdiskfs=$(find_tool "$vdiskfs" vdiskfs) || die "vdiskfs not found (use --vdiskfs PATH, or --peers-only)"
    vdiskctl=$(find_tool "$vdiskctl" vdiskctl) || die "vdiskctl not found (use --vdiskctl PATH, or --peers-only)"
    "$vdiskctl" mirror --help >/dev/null 2>&1 ||
        die "$vdiskctl has no 'mirror' command yet (build it, or use --peers-only)"
fi

work=$(mktemp -d "$workdir/mirror-vs-qsd.XXXXXX")
work=$(cd "$work" && pwd -P)
images=$work/images            # vdiskfs IMAGE_DIR
targets=$work/targets          # vdiskfs mirror_dir; every tool's target
mnt=$work/mnt
run=$work/run                  # sockets, logs, fio output
results=$work/results
vdiskfs_pid=
qsd_pid=
fio_pid=
vd_job=                        # MNT/IMG with a mirror job that may be live
readywait=                     # the C poller, if it could be built
ready_how="vdiskctl mirror wait MNT/IMG --ready (polls every 100 ms)"

cleanup ()
{
    local rc=$?
    trap - EXIT INT TERM
    # a job first: a stuck one may hold the writer's requests
    if [ -n "$vd_job" ]; then
        timeout 15 "$vdiskctl" mirror cancel "$vd_job" --force --timeout 10 \
            >/dev/null 2>&1 || true
    fi
    stop_pid "$fio_pid"
    stop_pid "$vdiskfs_pid" "$mnt"
    stop_pid "$qsd_pid"
    if [ "$keep" = 1 ]; then
        rm -f "$images"/*.img "$targets"/* 2>/dev/null || true
        echo "$prog: kept $work (images and targets removed)" >&2
    else
        rm -rf --one-file-system "$work"
    fi
    exit "$rc"
}
trap_cleanup
[ ${#run} -lt 90 ] || die "--workdir path too long for a unix socket"

mkdir -p "$images" "$targets" "$mnt" "$run"
: > "$results"

# ---- the QMP client --------------------------------------------------------

cat > "$run/qmp.py" <<'EOF'
# qmp.py SOCKET TARGET MODE TIMEOUT: blockdev-add TARGET (file + raw nodes),
# blockdev-mirror the node "src" to it (sync=full, copy-mode MODE), wait at
# most TIMEOUT s for BLOCK_JOB_READY, then block-job-cancel (force when
# not ready) and wait for the job to go.  Prints one line of JSON.
import json, select, socket, sys, time

class QMP:
    def __init__(self, path, timeout=10.0):
        deadline = time.monotonic() + timeout
        while True:
            s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            try:
                s.connect(path)
                break
            except OSError:
                s.close()
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)
        self.s, self.buf, self.events = s, b"", []
        if self.recv(timeout) is None:
            raise TimeoutError("no QMP greeting")
        self.cmd("qmp_capabilities")

    def recv(self, timeout):
        """The next message, or None after timeout seconds."""
        deadline = time.monotonic() + timeout
        while b"\n" not in self.buf:
            left = deadline - time.monotonic()
            if left <= 0:
                return None
            if select.select([self.s], [], [], left)[0]:
                data = self.s.recv(65536)
                if not data:
                    raise EOFError("qemu-storage-daemon closed QMP")
                self.buf += data
        line, self.buf = self.buf.split(b"\n", 1)
        return json.loads(line)

    def cmd(self, name, timeout=60.0, **args):
        msg = {"execute": name}
        if args:
            msg["arguments"] = args
        self.s.sendall(json.dumps(msg).encode() + b"\n")
        deadline = time.monotonic() + timeout
        while True:
            m = self.recv(deadline - time.monotonic())
            if m is None:
                raise TimeoutError("no answer to " + name)
            if "event" in m:
                self.events.append((time.monotonic(), m))
            elif "error" in m:
                raise RuntimeError("%s: %s" % (name, m["error"].get("desc")))
            else:
                return m.get("return")

    def event(self, names, job, timeout):
        """(arrival time, event) of the first of names for job, or None."""
        for i, (t, e) in enumerate(self.events):
            if e["event"] in names and self._job(e) == job:
                del self.events[i]
                return t, e
        deadline = time.monotonic() + timeout
        while True:
            m = self.recv(max(0.0, deadline - time.monotonic()))
            if m is None:
                return None
            if "event" not in m:
                continue
            t = time.monotonic()
            if m["event"] in names and self._job(m) == job:
                return t, m
            self.events.append((t, m))

    @staticmethod
    def _job(e):
        d = e.get("data", {})
        return d.get("device", d.get("id"))

sock, target, mode, timeout = sys.argv[1], sys.argv[2], sys.argv[3], float(sys.argv[4])
res = {"ready": False, "secs": None, "len": None, "error": None}
try:
    q = QMP(sock)
    q.cmd("blockdev-add", driver="raw", **{"node-name": "tgt"},
          file={"driver": "file", "filename": target, "aio": "native",
                "cache": {"direct": True}})
    args = {"job-id": "m0", "device": "src", "target": "tgt", "sync": "full",
            "copy-mode": mode}
    t0 = time.monotonic()
    q.cmd("blockdev-mirror", **args)
    ev = q.event(("BLOCK_JOB_READY", "BLOCK_JOB_COMPLETED", "BLOCK_JOB_CANCELLED"),
                 "m0", timeout - (time.monotonic() - t0))
    if ev and ev[1]["event"] == "BLOCK_JOB_READY":
        res["ready"], res["secs"] = True, ev[0] - t0
    elif ev:
        res["error"] = "%s before ready: %s" % (ev[1]["event"],
                                                ev[1]["data"].get("error", ""))
    jobs = [j for j in q.cmd("query-block-jobs") if j["device"] == "m0"]
    if jobs:
        res["len"], res["offset"] = jobs[0]["len"], jobs[0]["offset"]
        # after ready: a final sync, the target stays a consistent copy
        q.cmd("block-job-cancel", device="m0", force=not res["ready"])
        end = time.monotonic() + 60
        while time.monotonic() < end:
            ev = q.event(("JOB_STATUS_CHANGE",), "m0", end - time.monotonic())
            if ev is None or ev[1]["data"]["status"] == "null":
                break
        else:
            res["error"] = (res["error"] or "") + " job still there 60 s after cancel"
    q.cmd("blockdev-del", **{"node-name": "tgt"})
except Exception as e:          # report it, let the caller go on
    res["error"] = "%s: %s" % (type(e).__name__, e)
print(json.dumps(res))
EOF

# ---- helpers ---------------------------------------------------------------

now_ns () { date +%s%N; }
secs_since () { python3 -c "import sys; print('%.3f' % ((int(sys.argv[2]) - int(sys.argv[1])) / 1e9))" "$1" "$(now_ns)"; }
drop_caches () { sync; echo 3 > /proc/sys/vm/drop_caches; }
alloc_bytes () { echo $(( $(stat -c '%b * %B' "$1") )); }
json_get () { python3 -c "import json, sys; print(json.loads(sys.argv[1]).get(sys.argv[2]))" "$1" "$2"; }

# record ROW TOOL REP STATUS SECS [KEY=VALUE...]
record () { echo "$*" >> "$results"; }

# verify_copy ROW TOOL REP IMG TARGET: cmp on the first repetition.
verify_copy ()
{
    [ "$verify" = 1 ] && [ "$3" = 1 ] || return 0
    if cmp -s "$4" "$5"; then record "$1" "$2" "$3" verify ok
    else record "$1" "$2" "$3" verify DIFFERS; echo "    $2: target DIFFERS from $4" >&2; fi
}

# Longest a static copy may take: 60 s + 10 MiB/s.
copy_limit=$(( 60 + (bytes >> 20) / 10 ))

# start_writer ENGINE-ARGS...: fio 4k randwrite QD4 in the background.
start_writer ()
{
    fio --name=writer --rw=randwrite --bs=4k --iodepth=4 --numjobs=1 \
        --time_based --runtime=$(( warmup + writer_secs + 120 )) \
        --norandommap --randrepeat=0 --output-format=json \
        --output="$run/writer.json" "$@" >"$run/writer.log" 2>&1 </dev/null &
    fio_pid=$!
    sleep "$warmup"            # the writer's ramp, not a wait for a state
    kill -0 "$fio_pid" 2>/dev/null || {
        cat "$run/writer.log" >&2; fio_pid=; return 1; }
}

# stop_writer: stop fio (it writes its report on SIGTERM); prints its IOPS.
stop_writer ()
{
    local iops
    stop_pid "$fio_pid"
    fio_pid=
    iops=$(python3 - "$run/writer.json" <<'EOF' 2>/dev/null || echo "?"
import json, sys
text = open(sys.argv[1]).read()
print("%.0f" % json.loads(text[text.index("{"):])["jobs"][0]["write"]["iops"])
EOF
)
    echo "$iops"
}

# ---- qemu-storage-daemon ---------------------------------------------------

# start_qsd IMG NBD: the image as node "src" (file + raw); NBD=1 also exports
# it writable over NBD at $run/nbd.sock, name "src".
start_qsd ()
{
    local img=$1 nbd=$2 extra=()
    rm -f "$run/qmp.sock" "$run/nbd.sock"
    if [ "$nbd" = 1 ]; then
        extra=(--nbd-server "addr.type=unix,addr.path=$run/nbd.sock"
               --export "type=nbd,id=nbd0,node-name=src,name=src,writable=on")
    fi
    # locking=off: vdiskfs may hold the same file open meanwhile.
    qemu-storage-daemon \
        --blockdev "driver=file,node-name=src-file,filename=$img,aio=native,cache.direct=on,locking=off" \
        --blockdev "driver=raw,node-name=src,file=src-file" \
        "${extra[@]}" \
        --chardev "socket,id=qmp0,path=$run/qmp.sock,server=on,wait=off" \
        --monitor chardev=qmp0 \
        >"$run/qsd.log" 2>&1 </dev/null &
    qsd_pid=$!
    qsd_up () {
        kill -0 "$qsd_pid" 2>/dev/null || return 0     # died: stop waiting
        [ -S "$run/qmp.sock" ] && { [ "$nbd" = 0 ] || [ -S "$run/nbd.sock" ]; }
    }
    if ! wait_for 20 qsd_up || ! kill -0 "$qsd_pid" 2>/dev/null; then
        cat "$run/qsd.log" >&2
        echo "$prog: qemu-storage-daemon did not start" >&2
        exit 1
    fi
}

stop_qsd () { stop_pid "$qsd_pid"; qsd_pid=; }

# qsd_mirror ROW REP IMG MODE LIMIT [writer]
qsd_mirror ()
{
    local row=$1 rep=$2 img=$3 mode=$4 limit=$5 writer=${6:-} tgt=$targets/qsd.img
    local out ready secs err copied iops=''
    rm -f "$tgt"
    truncate -s "$bytes" "$tgt"
    drop_caches
    start_qsd "$img" "$([ -n "$writer" ] && echo 1 || echo 0)"
    if [ -n "$writer" ]; then
        start_writer --ioengine=nbd --uri="nbd+unix:///src?socket=$run/nbd.sock" ||
            { stop_qsd; record "$row" qsd "$rep" fail 0 error=writer; return 0; }
    fi
    out=$(python3 "$run/qmp.py" "$run/qmp.sock" "$tgt" "$mode" "$limit" 2>>"$run/qmp.log") ||
        out='{"ready": false, "error": "qmp.py failed, see run/qmp.log"}'
    [ -z "$writer" ] || iops=$(stop_writer)
    stop_qsd
    ready=$(json_get "$out" ready) secs=$(json_get "$out" secs) err=$(json_get "$out" error)
    copied=$(json_get "$out" offset)
    if [ "$ready" = True ]; then
        record "$row" qsd "$rep" ok "$secs" alloc="$(alloc_bytes "$tgt")" \
            copied="$copied" ${iops:+iops=$iops}
        printf ' qsd %.2fs' "$secs" >&2
        [ -n "$writer" ] || verify_copy "$row" qsd "$rep" "$img" "$tgt"
    elif [ "$err" = None ]; then
        record "$row" qsd "$rep" timeout "$limit" ${iops:+iops=$iops}
        printf ' qsd no-ready' >&2
    else
        record "$row" qsd "$rep" fail 0 ${iops:+iops=$iops}
        echo "    qsd: $err" >&2
    fi
    rm -f "$tgt"
}

# ---- vdiskfs ---------------------------------------------------------------

vd_state () { "$vdiskctl" mirror status "$1" --json 2>/dev/null | python3 -c "import json, sys; print(json.load(sys.stdin).get('state', '?'))" 2>/dev/null || echo "?"; }
vd_final () { case $(vd_state "$1") in concluded|failed|cancelled|none) return 0 ;; *) return 1 ;; esac; }

# build_readywait: $run/readywait FILE TIMEOUT_S polls the mirror status
# of FILE every 2 ms until the job is ready (exit 0, prints the
# CLOCK_REALTIME ns it saw it at and bytes_done), is over (exit 1) or
# TIMEOUT_S has passed (exit 3).
build_readywait ()
{
    local hdr
    for hdr in "$here/../../src/vdisk-ioctl.h" /usr/local/include/vdisk-ioctl.h \
               /usr/include/vdisk-ioctl.h; do
        [ -r "$hdr" ] && break
    done
    [ -r "$hdr" ] && command -v cc >/dev/null || return 1
    cat > "$run/readywait.c" <<'EOF_C'
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <time.h>
#include <unistd.h>
#include "vdisk-ioctl.h"

static unsigned long long now_ns(clockid_t c)
{
	struct timespec ts;

	clock_gettime(c, &ts);
	return ts.tv_sec * 1000000000ull + ts.tv_nsec;
}

int main(int argc, char **argv)
{
	struct vdisk_ioc_mirror_status st;
	struct timespec ms = { 0, 2000000 };
	unsigned long long deadline;
	int fd;

	if (argc != 3)
		return 2;
	fd = open(argv[1], O_RDONLY);
	if (fd < 0) {
		perror(argv[1]);
		return 2;
	}
	deadline = now_ns(CLOCK_MONOTONIC) + strtoull(argv[2], NULL, 10) * 1000000000ull;
	for (;;) {
		memset(&st, 0, sizeof(st));
		st.version = VDISK_IOC_VERSION;
		st.size = sizeof(st);
		if (ioctl(fd, VDISK_IOC_MIRROR_STATUS, &st) < 0) {
			perror("VDISK_IOC_MIRROR_STATUS");
			return 2;
		}
		if (st.state == VDISK_MIRROR_READY ||
		    st.state == VDISK_MIRROR_COMPLETING ||
		    (st.flags & VDISK_MIRROR_ST_EVER_READY)) {
			printf("%llu %llu\n", now_ns(CLOCK_REALTIME),
			       (unsigned long long)st.bytes_done);
			return 0;
		}
		if (st.state == VDISK_MIRROR_NONE ||
		    st.state == VDISK_MIRROR_CONCLUDED ||
		    st.state == VDISK_MIRROR_FAILED ||
		    st.state == VDISK_MIRROR_CANCELLED) {
			fprintf(stderr, "job over (state %u, error %d) before ready\n",
				st.state, st.error);
			return 1;
		}
		if (now_ns(CLOCK_MONOTONIC) >= deadline)
			return 3;
		nanosleep(&ms, NULL);
	}
}
EOF_C
    cc -O2 -Wall -I"$(dirname "$hdr")" -o "$run/readywait" "$run/readywait.c" \
        2>"$run/readywait.log" || return 1
    readywait=$run/readywait
}

start_vdiskfs ()
{
    if build_readywait; then
        ready_how="VDISK_IOC_MIRROR_STATUS every 2 ms (built here against vdisk-ioctl.h)"
        echo "ready seen by $readywait (2 ms polls)"
    else echo "no C poller (see $run/readywait.log); ready seen by vdiskctl mirror wait (100 ms polls)"; fi
    echo "mounting vdiskfs ($vdiskfs) at $mnt, mirror_dir=$targets"
    mount_vdiskfs "$run" "$images" "$mnt" aio=native cache=none \
        "mirror_dir=$targets"
}

# vd_mirror ROW REP IMG MODE LIMIT [writer]
vd_mirror ()
{
    local row=$1 rep=$2 img=$3 mode=$4 limit=$5 writer=${6:-} tgt=$targets/vdiskfs.img
    local file=$mnt/${3##*/} t0 t1 out secs='' state iops='' rc=0 copied='?' stuck=0
    rm -f "$tgt"
    drop_caches
    if [ -n "$writer" ]; then
        start_writer --ioengine=libaio --direct=1 --filename="$file" --size="$bytes" ||
            { record "$row" vdiskfs "$rep" fail 0 error=writer; return 0; }
    fi
    t0=$(now_ns)
    if "$vdiskctl" mirror start "$file" "$tgt" --sync full --mode "$mode" \
            >"$run/vd-start.log" 2>&1; then
        vd_job=$file
        if [ -n "$readywait" ]; then
            out=$(timeout $(( limit + 30 )) "$readywait" "$file" "$limit" \
                  2>"$run/vd-wait.log") || rc=$?
            if [ "$rc" = 0 ]; then
                read -r t1 copied <<<"$out"
                secs=$(python3 -c "import sys; print('%.3f' % ((int(sys.argv[2]) - int(sys.argv[1])) / 1e9))" "$t0" "$t1")
            fi
        else
            timeout $(( limit + 30 )) "$vdiskctl" mirror wait "$file" --ready \
                --timeout "$limit" >"$run/vd-wait.log" 2>&1 || rc=$?
            secs=$(secs_since "$t0")
        fi
        state=$(vd_state "$file")
        # ready seen by the poller, even if the job has moved on since
        [ "$rc" != 0 ] || [ -z "$readywait" ] || state=ready
        "$vdiskctl" mirror status "$file" --json >"$run/vd-status.json" 2>&1 || true
        [ -n "$readywait" ] ||
            copied=$(python3 -c "import json, sys; print(json.load(open(sys.argv[1]))['bytes_done'])" \
                "$run/vd-status.json" 2>/dev/null || echo "?")
        # after ready: a final sync, the target stays a consistent copy;
        # each cancel bounded, then --force
        if [ "$state" = ready ] &&
           ! timeout 40 "$vdiskctl" mirror cancel "$file" --timeout 30 \
                >>"$run/vd-wait.log" 2>&1; then
            stuck=1
            echo "    vdiskfs: cancel after ready not over in 30 s, forcing" >&2
        fi
        if [ "$state" != ready ] || [ "$stuck" = 1 ]; then
            timeout 40 "$vdiskctl" mirror cancel "$file" --force --timeout 30 \
                >>"$run/vd-wait.log" 2>&1 || true
        fi
        wait_for 30 vd_final "$file" || echo "    vdiskfs: job still there after cancel --force" >&2
        vd_job=
    else
        state="start failed: $(tr '\n' ' ' <"$run/vd-start.log")"
    fi
    [ -z "$writer" ] || iops=$(stop_writer)
    if [ "$rc" = 0 ] && [ "$state" = ready ]; then
        record "$row" vdiskfs "$rep" ok "$secs" alloc="$(alloc_bytes "$tgt")" \
            copied="$copied" stuck="$stuck" ${iops:+iops=$iops}
        printf ' vdiskfs %.2fs' "$secs" >&2
        [ -n "$writer" ] || verify_copy "$row" vdiskfs "$rep" "$img" "$tgt"
    elif case $state in running|paused|created) true ;; *) false ;; esac; then
        record "$row" vdiskfs "$rep" timeout "$limit" stuck="$stuck" ${iops:+iops=$iops}
        printf ' vdiskfs no-ready' >&2
    else
        record "$row" vdiskfs "$rep" fail 0 stuck="$stuck" ${iops:+iops=$iops}
        echo "    vdiskfs: wait exit $rc, state $state: $(tr '\n' ' ' <"$run/vd-wait.log")" >&2
    fi
    rm -f "$tgt"
}

# ---- dd, cp ----------------------------------------------------------------

# plain_copy ROW REP IMG TOOL
plain_copy ()
{
    local row=$1 rep=$2 img=$3 tool=$4 tgt=$targets/$4.img t0 secs ok=1 dd_words
    read -ra dd_words <<<"$dd_flags"
    rm -f "$tgt"
    drop_caches
    t0=$(now_ns)
    case $tool in
    dd) timeout "$copy_limit" dd if="$img" of="$tgt" bs=1M "${dd_words[@]}" status=none || ok=0 ;;
    cp) { timeout "$copy_limit" cp --sparse=always "$img" "$tgt" && sync "$tgt"; } || ok=0 ;;
    esac
    secs=$(secs_since "$t0")
    if [ "$ok" = 1 ]; then
        record "$row" "$tool" "$rep" ok "$secs" alloc="$(alloc_bytes "$tgt")"
        printf ' %s %.2fs' "$tool" "$secs" >&2
        verify_copy "$row" "$tool" "$rep" "$img" "$tgt"
    else
        record "$row" "$tool" "$rep" fail 0
        echo "    $tool failed" >&2
    fi
    rm -f "$tgt"
}

# ---- the images ------------------------------------------------------------

echo "scratch: $work ($(stat -f -c %T "$work") on $(df --output=source "$work" | tail -1))"
echo "creating $size of random data: images/random.img"
head -c "$bytes" /dev/urandom > "$images/random.img"
echo "creating $size, $hole_run data / $hole_run hole: images/holes.img"
python3 - "$images/holes.img" "$bytes" "$run_bytes" <<'EOF'
import os, sys
path, size, run = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
with open(path, "wb") as f:
    f.truncate(size)
    for off in range(0, size, 2 * run):
        f.seek(off)
        f.write(os.urandom(min(run, size - off)))
EOF
sync
echo "  holes.img: $(( $(alloc_bytes "$images/holes.img") >> 20 )) MiB allocated of $((bytes >> 20)) MiB"

[ "$peers_only" = 1 ] || start_vdiskfs

# ---- the runs --------------------------------------------------------------

tools=(qsd dd cp)
[ "$peers_only" = 1 ] || tools=(vdiskfs "${tools[@]}")
for (( rep = 1; rep <= repeat; rep++ )); do
    echo "repetition $rep of $repeat" >&2
    for row in random holes; do
        printf '  %-22s' "$row" >&2
        for t in "${tools[@]}"; do
            case $t in
            vdiskfs) vd_mirror "$row" "$rep" "$images/$row.img" background "$copy_limit" ;;
            qsd) qsd_mirror "$row" "$rep" "$images/$row.img" background "$copy_limit" ;;
            *) plain_copy "$row" "$rep" "$images/$row.img" "$t" ;;
            esac
        done
        echo >&2
    done
    for mode in background write-blocking; do
        printf '  %-22s' "writer $mode" >&2
        [ "$peers_only" = 1 ] ||
            vd_mirror "writer-$mode" "$rep" "$images/random.img" "$mode" "$writer_secs" writer
        qsd_mirror "writer-$mode" "$rep" "$images/random.img" "$mode" "$writer_secs" writer
        echo >&2
    done
done

# ---- the report ------------------------------------------------------------

commands="vdiskfs -o aio=native -o cache=none -o mirror_dir=TARGETS IMAGES MNT
vdiskctl mirror start MNT/IMG TARGETS/vdiskfs.img --sync full --mode MODE; ready: $ready_how
qemu-storage-daemon --blockdev driver=file,node-name=src-file,filename=IMG,aio=native,cache.direct=on,locking=off --blockdev driver=raw,node-name=src,file=src-file [--nbd-server addr.type=unix,addr.path=SOCK --export type=nbd,id=nbd0,node-name=src,name=src,writable=on]
QMP: blockdev-add raw tgt over file (aio=native, cache.direct=on) of an empty TARGETS/qsd.img; blockdev-mirror job-id=m0 device=src target=tgt sync=full copy-mode=MODE; wait for BLOCK_JOB_READY
dd if=IMG of=TARGETS/dd.img bs=1M $dd_flags
cp --sparse=always IMG TARGETS/cp.img && sync TARGETS/cp.img
writer: fio --rw=randwrite --bs=4k --iodepth=4 --norandommap (vdiskfs: --ioengine=libaio --direct=1 on MNT/IMG; qsd: --ioengine=nbd --uri=nbd+unix:///src?socket=SOCK), from ${warmup} s before the mirror until it is ready or ${writer_secs} s have passed"

python3 - "$results" "$bytes" "$size" "$hole_run" "$repeat" "$writer_secs" "$peers_only" "$commands" <<'EOF'
import math, statistics, sys
path, nbytes, size, hole_run, repeat, wsecs, peers_only, commands = sys.argv[1:9]
nbytes, repeat, peers_only = int(nbytes), int(repeat), peers_only == "1"
mib = nbytes / 2**20

runs, verified = {}, {}
for line in open(path):
    f = line.split()
    row, tool, rep, status = f[0], f[1], int(f[2]), f[3]
    if status == "verify":
        verified.setdefault((row, tool), []).append(f[4])
        continue
    extra = dict(kv.split("=", 1) for kv in f[5:])
    runs.setdefault((row, tool), []).append((status, float(f[4]), extra))

def median_secs(row, tool):
    """Median time to ready, inf for a run that did not get there."""
    r = runs.get((row, tool))
    if not r:
        return None
    return statistics.median([s if st == "ok" else math.inf for st, s, _ in r])

def n_ok(row, tool):
    return sum(st == "ok" for st, _, _ in runs.get((row, tool), []))

def n_fail(row, tool):
    return sum(st == "fail" for st, _, _ in runs.get((row, tool), []))

def speed(row, tool):
    s = median_secs(row, tool)
    return None if s is None or s == math.inf or s <= 0 else mib / s

def cell_static(row, tool):
    s = median_secs(row, tool)
    if s is None:
        return "–"
    if s == math.inf:
        return "failed" if n_fail(row, tool) else "no ready"
    return "%.0f MiB/s (%.2f s)" % (mib / s, s)

def cell_writer(row, tool):
    s = median_secs(row, tool)
    if s is None:
        return "–"
    n = len(runs[(row, tool)])
    tail = " (%d/%d ready)" % (n_ok(row, tool), n) if n > 1 else ""
    if s == math.inf:
        what = "failed" if n_fail(row, tool) == n else "no ready in %s s" % wsecs
        return what + tail
    return "%.2f s%s" % (s, tail)

def ratio(a, b):
    return "–" if a is None or b is None else "%.2f" % (a / b)

def alloc(row, tool):
    a = [int(x["alloc"]) for st, _, x in runs.get((row, tool), []) if "alloc" in x]
    return "–" if not a else "%.0f" % (statistics.median(a) / 2**20)

def copied(row, tool):
    a = [int(x["copied"]) for st, _, x in runs.get((row, tool), [])
         if x.get("copied", "?").isdigit()]
    return "–" if not a else "%.0f" % (statistics.median(a) / 2**20)

def iops(row, tool):
    a = [float(x["iops"]) for _, _, x in runs.get((row, tool), [])
         if x.get("iops", "?") != "?"]
    return "–" if not a else "%.0f" % statistics.median(a)

stat = "median of %d" % repeat if repeat > 1 else "one run"
print()
print("## Mirror of a %s raw image: vdiskfs against qemu-storage-daemon 7.2, dd, cp (%s)" % (size, stat))
print()
print("| case | vdiskfs | qsd | dd | cp | vdiskfs/qsd | vdiskfs/dd |")
print("|---|---:|---:|---:|---:|---:|---:|")
labels = {"random": "random data", "holes": "half holes (%s runs)" % hole_run}
for row in ("random", "holes"):
    print("| %s | %s | %s | %s | %s | %s | %s |" % (
        labels[row], cell_static(row, "vdiskfs"), cell_static(row, "qsd"),
        cell_static(row, "dd"), cell_static(row, "cp"),
        ratio(speed(row, "vdiskfs"), speed(row, "qsd")),
        ratio(speed(row, "vdiskfs"), speed(row, "dd"))))
for mode in ("background", "write-blocking"):
    row = "writer-" + mode
    vs, qs = median_secs(row, "vdiskfs"), median_secs(row, "qsd")
    r = "–"
    if vs is not None and qs is not None and vs != math.inf and qs != math.inf:
        r = "%.2f" % (qs / vs)
    print("| under writer, %s | %s | %s | – | – | %s | – |" % (
        mode, cell_writer(row, "vdiskfs"), cell_writer(row, "qsd"), r))
print()
print("Speed: image size (%.0f MiB, holes included) / time from the start of "
      "the job to ready; the time in brackets.  Under the writer: the time to "
      "ready, and vdiskfs/qsd is qsd's time over vdiskfs' (above 1: vdiskfs "
      "faster)." % mib)
print()
print("| detail | vdiskfs | qsd | dd | cp |")
print("|---|---:|---:|---:|---:|")
for row in ("random", "holes"):
    print("| %s: target allocated, MiB | %s | %s | %s | %s |" % (
        labels[row], alloc(row, "vdiskfs"), alloc(row, "qsd"),
        alloc(row, "dd"), alloc(row, "cp")))
for row in ("random", "holes"):
    print("| %s: copied by the job at ready, MiB | %s | %s | – | – |" % (
        labels[row], copied(row, "vdiskfs"), copied(row, "qsd")))
for mode in ("background", "write-blocking"):
    row = "writer-" + mode
    print("| under writer, %s: copied by the job at ready, MiB | %s | %s | – | – |" % (
        mode, copied(row, "vdiskfs"), copied(row, "qsd")))
for mode in ("background", "write-blocking"):
    row = "writer-" + mode
    print("| writer IOPS over its run (%d s warm-up, %s mirror to ready, cancel) | %s | %s | – | – |" % (
        2, mode, iops(row, "vdiskfs"), iops(row, "qsd")))
stuck = ["%s rep %d" % (row, i + 1) for (row, tool), r in sorted(runs.items())
         if tool == "vdiskfs" for i, (_, _, x) in enumerate(r) if x.get("stuck") == "1"]
if stuck:
    print()
    print("vdiskfs: cancel after ready (final sync, no pivot) did not end within "
          "30 s, forced with --force: %s" % ", ".join(stuck))
bad = ["%s %s" % k for k, v in sorted(verified.items()) if "DIFFERS" in v]
checked = sorted("%s %s" % k for k in verified)
if checked:
    print()
    print("verified with cmp (first repetition): %s" % (
        "all %d targets equal their source" % len(checked) if not bad
        else "TARGET DIFFERS: " + ", ".join(bad)))

print()
print("targets:")
def target(label, value, want, met):
    if peers_only:
        print("  %-62s %8s  n/a (--peers-only)" % (label, "–"))
    else:
        print("  %-62s %8s  %s" % (label, value, "MET" if met else "MISSED"))
for row in ("random", "holes"):
    v, q = speed(row, "vdiskfs"), speed(row, "qsd")
    target("throughput >= 1.0 x qsd, %s" % labels[row], ratio(v, q),
           1.0, v is not None and q is not None and v / q >= 1.0)
v, d = speed("random", "vdiskfs"), speed("random", "dd")
target("throughput >= 0.9 x dd, random data", ratio(v, d), 0.9,
       v is not None and d is not None and v / d >= 0.9)
row = "writer-write-blocking"
n = len(runs.get((row, "vdiskfs"), []))
k = n_ok(row, "vdiskfs")
target("write-blocking reaches ready under the writer, every time",
       "%d/%d" % (k, n), n, n > 0 and k == n)

print()
print("commands:")
for line in commands.splitlines():
    print("  " + line)
EOF
