#!/usr/bin/env bash
# SPDX-License-Identifier: LGPL-2.1-or-later
#
# vring tests through vdiskctl, with both drivers (-o aio=native and
# -o aio=threads):
#  1. `vdiskctl vring-test --verify` writes (randwrite; sequential write in
#     64K blocks with indirect descriptors; randrw with flushes and
#     EVENT_IDX off) and reads everything back: exit 0, blocks checked and
#     no mismatch, no unexpected status.  The writes are in the backing
#     file: it changed, and a read through the mount returns it.
#  2. A read-only workload runs on a read-only handle; --status shows the
#     last test, plain and JSON.
#  3. SIGINT stops the test (VRING_TEST_STOP): vdiskctl prints what was
#     done, state "stopped", and exits 130; the next test starts at once.
#  4. The daemon stops (SIGTERM) while a test runs: the test is stopped
#     and freed with the image, the daemon exits 0, and vdiskctl, whose
#     status requests then fail, exits 1.
set -euo pipefail
VDISK_TEST_TIMEOUT=240
source "$top_srcdir/tests/functions.sh"
requires_fuse
requires python3 cmp sha256sum
requires_programs

f=

# field FILE PYEXPR: d PYEXPR of the JSON object in FILE.
field ()
{
    python3 -c "import json, sys; d = json.load(open(sys.argv[1])); v = d$2; print(str(v).lower() if isinstance(v, bool) else v)" "$1"
}

# run_verify NAME OPTIONS...: a vring test that must pass, with checks.
run_verify ()
{
    local name=$1 rc=0 out=$tmpdir/$1.json; shift
    "$VDISKCTL" vring-test "$f" --json "$@" > "$out" || rc=$?
    [ "$rc" -eq 0 ] || { cat "$out" >&2; fail "$name: vring-test $* exited $rc"; }
    [ "$(field "$out" '["state"]')" = done ] || fail "$name: not done"
    [ "$(field "$out" '["verify_checked"]')" -gt 0 ] ||
        fail "$name: verify checked nothing"
    [ "$(field "$out" '["verify_mismatches"]')" -eq 0 ] ||
        fail "$name: verify mismatches"
    [ "$(field "$out" '["unexpected"]')" -eq 0 ] ||
        fail "$name: unexpected failures"
    [ "$(field "$out" '["status_ioerr"]')" -eq 0 ] || fail "$name: IOERR"
    [ "$(field "$out" '["ok"]')" = true ] || fail "$name: ok is not true"
    [ "$(field "$out" '["ops"]["out"]')" -gt 0 ] || fail "$name: no writes"
}

for aio in native threads; do
    echo "== aio=$aio"
    rm -rf "$images"
    make_image disk.img 32 zero
    sum0=$(sha256sum < "$images/disk.img")
    mount_vdiskfs -o aio=$aio
    f=$mnt/disk.img

    # ---- 1. write, read back, verify ---------------------------------
    run_verify randwrite-$aio --rw randwrite --iodepth 16 --seconds 2 --verify
    run_verify write-$aio --rw write --bs 64K --iodepth 4 --indirect on \
        --requests 512 --verify
    [ "$(field "$tmpdir/write-$aio.json" '["ops"]["out"]')" -eq 512 ] ||
        fail "write-$aio: not 512 writes"
    run_verify randrw-$aio --rw randrw --rwmix-read 30 --iodepth 8 \
        --flush-every 16 --event-idx off --seconds 2 --verify
    [ "$(field "$tmpdir/randrw-$aio.json" '["ops"]["flush"]')" -gt 0 ] ||
        fail "randrw-$aio: no flushes"
    [ "$(field "$tmpdir/randrw-$aio.json" '["ops"]["in"]')" -gt 0 ] ||
        fail "randrw-$aio: no reads"
    # With EVENT_IDX off and one request at a time the device raises an
    # interrupt per completion: the counters add up.
    "$VDISKCTL" vring-test "$f" --rw randwrite --requests 64 --event-idx off \
        --json > "$tmpdir/qd1.json"
    [ "$(field "$tmpdir/qd1.json" '["irqs_raised"] + d["irqs_suppressed"]')" -ge 64 ] ||
        fail "irqs raised + suppressed < requests"

    # The writes are in the backing file, and the mount shows that file.
    [ "$(sha256sum < "$images/disk.img")" != "$sum0" ] ||
        fail "aio=$aio: the backing file did not change"
    cmp "$f" "$images/disk.img" || fail "aio=$aio: mount and backing differ"

    # ---- 2. read-only workloads, --status ------------------------------
    # (vdiskctl opens FILE read-only for it; test-vring-bad-input.sh
    # checks that the daemon refuses a writing workload on such a handle.)
    "$VDISKCTL" vring-test "$f" --rw read --bs 128K --iodepth 4 --requests 100 \
        > "$tmpdir/read.txt" || fail "a read-only test failed"
    grep -q '^workload: read bs=128K iodepth=4' "$tmpdir/read.txt" ||
        fail "no workload line: $(cat "$tmpdir/read.txt")"
    grep -q '^read  *100 ' "$tmpdir/read.txt" ||
        fail "not 100 reads: $(cat "$tmpdir/read.txt")"
    "$VDISKCTL" vring-test "$f" --status > "$tmpdir/status.txt"
    grep -q '^vring test [0-9]* on .*: done$' "$tmpdir/status.txt" ||
        fail "--status: $(cat "$tmpdir/status.txt")"
    "$VDISKCTL" vring-test "$f" --status --json > "$tmpdir/status.json"
    [ "$(field "$tmpdir/status.json" '["ops"]["in"]')" -eq 100 ] ||
        fail "--status --json: not the last test"
    [ "$(field "$tmpdir/status.json" '["workload"]')" = None ] ||
        fail "--status --json: a workload it does not know"

    # ---- 3. SIGINT stops it ------------------------------------------
    # A background job of a script starts with SIGINT ignored, which
    # vdiskctl respects: give it the default disposition, as a terminal
    # would.
    python3 -c 'import os, signal, sys
signal.signal(signal.SIGINT, signal.SIG_DFL)
os.execv(sys.argv[1], sys.argv[1:])' "$VDISKCTL" vring-test "$f" \
        --rw randwrite --seconds 600 > "$tmpdir/int.txt" 2> "$tmpdir/int.err" &
    vr=$!
    cleanup_kill "$vr"
    running () {
        "$VDISKCTL" vring-test "$f" --status --json > "$tmpdir/st.json" &&
        [ "$(field "$tmpdir/st.json" '["state"]')" = running ] &&
        [ "$(field "$tmpdir/st.json" '["ops"]["out"]')" -gt 0 ]
    }
    wait_until "$VDISK_WAIT_LIMIT" running || fail "the test does not run"
    kill -INT "$vr"
    rc=0; wait "$vr" || rc=$?
    [ "$rc" -eq 130 ] || fail "SIGINT: exit $rc, want 130: $(cat "$tmpdir/int.err")"
    grep -q ': stopped (interrupted)$' "$tmpdir/int.txt" ||
        fail "SIGINT: $(cat "$tmpdir/int.txt")"
    grep -q '^write  *[1-9]' "$tmpdir/int.txt" || fail "SIGINT: no writes shown"
    "$VDISKCTL" vring-test "$f" --requests 10 > /dev/null ||
        fail "a test after a stopped one failed"

    unmount_vdiskfs
    grep -q "vring test .* started: randwrite" "$daemon_log" ||
        fail "no start in the daemon's log"
done

# ---- 4. shutdown during a test ---------------------------------------------
mount_vdiskfs
"$VDISKCTL" vring-test "$f" --rw randwrite --iodepth 8 --seconds 600 \
    > "$tmpdir/shut.txt" 2> "$tmpdir/shut.err" &
vr=$!
cleanup_kill "$vr"
wait_until "$VDISK_WAIT_LIMIT" running || fail "the test does not run"
unmount_vdiskfs TERM
rc=0; wait "$vr" || rc=$?
[ "$rc" -eq 1 ] || fail "vdiskctl after the daemon stopped: exit $rc"
grep -q 'vring-test: status: ' "$tmpdir/shut.err" ||
    fail "vdiskctl after the daemon stopped: $(cat "$tmpdir/shut.err")"
grep -q "vring test [0-9]* on disk.img stopped: the image is closed" \
    "$daemon_log" || fail "the daemon did not stop the test"
exit 0
