#!/usr/bin/env bash
# SPDX-License-Identifier: LGPL-2.1-or-later
#
# Bad input to vring tests gets a clear message or errno:
#  - vdiskctl vring-test with a bad option, value or combination: exit 2,
#    before FILE is even opened (a FILE that does not exist is not
#    reported);
#  - values the daemon refuses (bs 1000, queue size 3, iodepth beyond the
#    queue, bs beyond 4M, an area outside the image): EINVAL, exit 1;
#  - a second test while one runs: EBUSY; STOP without a running test:
#    EINVAL;
#  - raw ioctls: a writing workload (randwrite, or a read workload with
#    flushes) on a read-only handle: EBADF, while a read-only one runs
#    there; a non-zero pad0, unknown flags, rw or inject out of range,
#    rwmix_read over 100: EINVAL;
#  - as a user who is neither root nor the owner (allow_other, a
#    world-writable image): a writing workload EPERM, a read-only one runs;
#    that user may not stop root's test (EPERM) but may stop their own.
set -euo pipefail
VDISK_TEST_TIMEOUT=180
# The non-owner part runs as `nobody`, who must reach the mount.
VDISK_TEST_TMPBASE=/tmp
source "$top_srcdir/tests/functions.sh"
requires_fuse
requires_root
requires setpriv python3
requires_programs

chmod 0755 "$tmpdir"
make_image disk.img 16 random
chmod 0666 "$images/disk.img"
mount_vdiskfs -o allow_other
f=$mnt/disk.img

# ---- usage errors: exit 2, nothing opened -----------------------------------
usage ()
{
    local rc=0
    "$VDISKCTL" vring-test "$@" > "$tmpdir/out" 2>&1 || rc=$?
    [ "$rc" -eq 2 ] || fail "vring-test $*: exit $rc, want 2: $(cat "$tmpdir/out")"
    grep -q "Try 'vdiskctl vring-test --help'" "$tmpdir/out" ||
        fail "vring-test $*: no hint: $(cat "$tmpdir/out")"
    if grep -q 'No such file' "$tmpdir/out"; then
        fail "vring-test $*: opened FILE"
    fi
}
nofile=$tmpdir/no-such-file
usage
usage --rw randwrite
usage "$nofile" "$nofile"
usage "$nofile" --bogus
usage "$nofile" --rw bogus
usage "$nofile" --rw
usage "$nofile" --rw=
usage "$nofile" --bs 0
usage "$nofile" --bs 4X
usage "$nofile" --bs 8G
usage "$nofile" --iodepth 0
usage "$nofile" --iodepth -1
usage "$nofile" --iodepth 4294967296
usage "$nofile" --queue-size x
usage "$nofile" --size 0
usage "$nofile" --offset -1
usage "$nofile" --seconds 0
usage "$nofile" --seconds 1.5
usage "$nofile" --requests 0
usage "$nofile" --seconds 1 --requests 5
usage "$nofile" --rwmix-read 50
usage "$nofile" --rw randrw --rwmix-read 101
usage "$nofile" --flush-every x
usage "$nofile" --event-idx yes
usage "$nofile" --indirect
usage "$nofile" --inject bogus
usage "$nofile" --inject none
usage "$nofile" --verify=1
usage "$nofile" --json=yes
usage "$nofile" --bs 4K --bs 8K
usage "$nofile" --status --rw read
usage "$nofile" --status --verify
"$VDISKCTL" vring-test --help | grep -q -- '--inject KIND' || fail "--help"

# ---- the daemon refuses: EINVAL, exit 1 -----------------------------------
refused ()
{
    local want=$1 rc=0; shift
    "$VDISKCTL" vring-test "$f" "$@" > "$tmpdir/out" 2>&1 || rc=$?
    [ "$rc" -eq 1 ] || fail "vring-test $*: exit $rc, want 1: $(cat "$tmpdir/out")"
    grep -q "vring-test: start: $want" "$tmpdir/out" ||
        fail "vring-test $*: $(cat "$tmpdir/out"), want $want"
}
refused 'Invalid argument' --bs 1000
refused 'Invalid argument' --queue-size 3
refused 'Invalid argument' --queue-size 65536
refused 'Invalid argument' --iodepth 257
refused 'Invalid argument' --queue-size 16 --iodepth 32
refused 'Invalid argument' --bs 8M
refused 'Invalid argument' --offset 1000
refused 'Invalid argument' --size 1000
refused 'Invalid argument' --size 1G
refused 'Invalid argument' --offset 16M
# A 1M block takes a header, its data descriptors and a status: more than
# a queue of 4 holds.
refused 'Invalid argument' --bs 1M --queue-size 4 --iodepth 1
[ "$("$VDISKCTL" vring-test "$f" --status)" = "no vring test on $f" ] ||
    fail "a refused start left a test behind"

# ---- EBUSY, and STOP without a test ---------------------------------------
stop_probe ()
{
    # STOP through a raw ioctl on a handle opened with mode $1.
    python3 - "$1" "$f" <<'EOF'
import errno, fcntl, os, struct, sys
fd = os.open(sys.argv[2], {"r": os.O_RDONLY, "w": os.O_WRONLY}[sys.argv[1]])
buf = bytearray(struct.pack("<II56s", 1, 64, b""))
try:
    fcntl.ioctl(fd, 0xc040d70f, buf)
    print("OK")
except OSError as e:
    print(errno.errorcode[e.errno])
EOF
}
[ "$(stop_probe r)" = EINVAL ] || fail "STOP without a test: $(stop_probe r)"

"$VDISKCTL" vring-test "$f" --rw randread --seconds 600 > "$tmpdir/long.txt" \
    2> "$tmpdir/long.err" &
long=$!
cleanup_kill "$long"
st_field () {
    "$VDISKCTL" vring-test "$f" --status --json |
        python3 -c "import json, sys; print(json.load(sys.stdin)$1)"
}
running () { [ "$(st_field '["state"]')" = running ]; }
wait_until "$VDISK_WAIT_LIMIT" running || fail "the long test does not run"
refused 'Device or resource busy' --rw randread --seconds 1
# SIGTERM: vdiskctl sends STOP, prints, exits 143.
kill -TERM "$long"
rc=0; wait "$long" || rc=$?
[ "$rc" -eq 143 ] || fail "SIGTERM: exit $rc: $(cat "$tmpdir/long.err")"
grep -q ': stopped (interrupted)$' "$tmpdir/long.txt" ||
    fail "SIGTERM: $(cat "$tmpdir/long.txt")"

# ---- raw START structs ------------------------------------------------------
# start_probe MODE KEY=VALUE...: START with the fields given (the others
# zero: the daemon's defaults) on a handle opened MODE (r or w); prints
# OK (then STOPs the test) or the errno name.
start_probe ()
{
    python3 - "$f" "$@" <<'EOF'
import errno, fcntl, os, struct, sys, time
fields = ["version", "size", "rw", "bs", "iodepth", "queue_size", "offset",
          "region", "seconds", "rwmix_read", "requests", "flush_every",
          "flags", "inject", "pad0", "seed", "test_id"]
fmt = "<IIIIIIQQIIQIIIIQQ64s"
v = dict.fromkeys(fields, 0)
v.update(version=1, size=struct.calcsize(fmt), seconds=30)
reserved = bytearray(64)
for kv in sys.argv[3:]:
    k, x = kv.split("=")
    if k == "reserved":
        reserved[int(x)] = 0x5a
    else:
        v[k] = int(x, 0)
assert struct.calcsize(fmt) == 152
fd = os.open(sys.argv[1], {"r": os.O_RDONLY, "w": os.O_WRONLY}[sys.argv[2]])
buf = bytearray(struct.pack(fmt, *[v[k] for k in fields], bytes(reserved)))
try:
    fcntl.ioctl(fd, 0xc098d70d, buf)
except OSError as e:
    print(errno.errorcode[e.errno])
    sys.exit(0)
test_id = struct.unpack(fmt, buf)[16]
stop = bytearray(struct.pack("<II56s", 1, 64, b""))
try:
    fcntl.ioctl(fd, 0xc040d70f, stop)
except OSError as e:
    if e.errno != errno.EINVAL:      # EINVAL: it ended meanwhile
        raise
# Until it is over (done, stopped, failed), so the next START finds none.
for _ in range(200):
    st = bytearray(struct.pack("<II472s", 1, 480, b""))
    fcntl.ioctl(fd, 0xc1e0d70e, st)
    tid, state = struct.unpack_from("<QI", st, 8)
    if tid == test_id and state >= 3:
        break
    time.sleep(0.05)
else:
    print("NOT-STOPPED")
    sys.exit(0)
print("OK" if test_id > 0 else "NO-ID")
EOF
}
# "name of the check" WANT MODE FIELDS...
while read -r want mode fields; do
    # shellcheck disable=SC2086
    got=$(start_probe "$mode" $fields)
    [ "$got" = "$want" ] || fail "START $mode $fields: $got, want $want"
done <<'EOF'
OK r rw=0
OK r rw=2
OK r rw=2 inject=1
OK w rw=3
EBADF r rw=3
EBADF r rw=1
EBADF r rw=4
EBADF r rw=2 flush_every=8
EINVAL w rw=5
EINVAL w inject=7
EINVAL w pad0=1
EINVAL w flags=8
EINVAL w rw=4 rwmix_read=101
EINVAL w reserved=0
EINVAL w reserved=63
EINVAL w version=2
EINVAL w bs=1000
EOF
wait_until "$VDISK_WAIT_LIMIT" test "$(st_field '["state"]')" != running ||
    fail "the probes' tests did not stop"

# ---- another user ---------------------------------------------------------
rc=0
as_nobody "$VDISKCTL" vring-test "$f" --rw randwrite --requests 10 \
    > "$tmpdir/out" 2>&1 || rc=$?
[ "$rc" -eq 1 ] && grep -q 'start: Operation not permitted' "$tmpdir/out" ||
    fail "nobody's randwrite on root's image: exit $rc: $(cat "$tmpdir/out")"
as_nobody "$VDISKCTL" vring-test "$f" --rw randread --requests 10 > /dev/null ||
    fail "nobody's randread failed"
# nobody may not stop root's test, but root and nobody stop nobody's.
"$VDISKCTL" vring-test "$f" --rw randread --seconds 600 > /dev/null 2>&1 &
long=$!
cleanup_kill "$long"
wait_until "$VDISK_WAIT_LIMIT" running || fail "root's test does not run"
got=$(as_nobody bash -c "$(declare -f stop_probe); f=$f; stop_probe r")
[ "$got" = EPERM ] || fail "nobody stopping root's test: $got"
[ "$(stop_probe r)" = OK ] || fail "root stopping its test"
rc=0; wait "$long" || rc=$?
[ "$rc" -eq 1 ] || fail "a test stopped by someone else: exit $rc, want 1"
as_nobody "$VDISKCTL" vring-test "$f" --rw randread --seconds 600 \
    > /dev/null 2>&1 &
long=$!
cleanup_kill "$long"
wait_until "$VDISK_WAIT_LIMIT" running || fail "nobody's test does not run"
got=$(as_nobody bash -c "$(declare -f stop_probe); f=$f; stop_probe r")
[ "$got" = OK ] || fail "nobody stopping its own test: $got"
rc=0; wait "$long" || rc=$?
[ "$rc" -eq 1 ] || fail "nobody's stopped test: exit $rc, want 1"

# The daemon is still serving.
dd if="$f" of=/dev/null bs=64k count=4 status=none || fail "a read failed"
exit 0
