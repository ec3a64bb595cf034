#!/usr/bin/env bash
# SPDX-License-Identifier: LGPL-2.1-or-later
#
# Fault injection: after a few good requests the simulated guest sends a
# broken descriptor chain of each kind.  For every kind (direct and, where
# the kind allows, with indirect descriptors and several requests in
# flight) the device breaks the queue with the matching error, the verdict
# says so, vdiskctl exits 0, and the daemon goes on serving: a read
# through the mount returns the backing file's data, and a new test on a
# fresh queue passes.
set -euo pipefail
VDISK_TEST_TIMEOUT=180
source "$top_srcdir/tests/functions.sh"
requires_fuse
requires python3 cmp dd
requires_programs

make_image disk.img 16 random
mount_vdiskfs
f=$mnt/disk.img

field ()
{
    python3 -c "import json, sys; d = json.load(open(sys.argv[1])); v = d$2; print(str(v).lower() if isinstance(v, bool) else v)" "$1"
}

n=0
for kind in loop too-long out-of-bounds nested-indirect bad-indirect-len \
            read-after-write; do
    for opts in "" "--indirect on --iodepth 4 --rw randwrite"; do
        n=$((n + 1))
        out=$tmpdir/inject-$n.json
        rc=0
        # shellcheck disable=SC2086
        "$VDISKCTL" vring-test "$f" --inject "$kind" $opts --json > "$out" ||
            rc=$?
        [ "$rc" -eq 0 ] || { cat "$out" >&2; fail "--inject $kind $opts: exit $rc"; }
        [ "$(field "$out" '["broken"]')" = true ] ||
            fail "--inject $kind $opts: the queue is not broken"
        [ "$(field "$out" '["device_error"]')" -ne 0 ] ||
            fail "--inject $kind $opts: no device error"
        field "$out" '["verdict"]' | grep -q '(as expected)$' ||
            fail "--inject $kind $opts: verdict '$(field "$out" '["verdict"]')'"
        [ "$(field "$out" '["unexpected"]')" -eq 0 ] ||
            fail "--inject $kind $opts: unexpected failures"
        [ "$(field "$out" '["status_ok"]')" -gt 0 ] ||
            fail "--inject $kind $opts: no good request before the broken one"
        # Still serving: a read through the mount, a test on a new queue.
        dd if="$f" of="$tmpdir/read" bs=64k count=1 skip=$n iflag=direct \
            status=none || fail "after --inject $kind: a read failed"
        dd if="$images/disk.img" bs=64k count=1 skip=$n status=none |
            cmp - "$tmpdir/read" || fail "after --inject $kind: wrong data"
    done
done
# The table says it too.
"$VDISKCTL" vring-test "$f" --inject loop > "$tmpdir/plain.txt" ||
    fail "--inject loop (plain) failed"
grep -q '^queue: broken' "$tmpdir/plain.txt" || fail "no 'queue: broken' line"
grep -q '^inject: loop$' "$tmpdir/plain.txt" || fail "no 'inject: loop' line"
grep -q '^verdict: .*(as expected)$' "$tmpdir/plain.txt" || fail "no verdict line"
"$VDISKCTL" vring-test "$f" --rw randwrite --iodepth 8 --requests 2000 --verify \
    > /dev/null || fail "a test after the injections failed"
exit 0
