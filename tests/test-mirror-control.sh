#!/usr/bin/env bash
# SPDX-License-Identifier: LGPL-2.1-or-later
#
# Steering a mirror job with vdiskctl, on a 64 MiB image.  A job started
# with --speed 1M cannot get ready within this test (64 s of copying), so
# it is "not ready" for as long as the test needs; set-speed 0 lets it
# finish.
#  1. No job: status says so (exit 0), wait/complete/cancel/pause exit 1
#     with a message naming the absence.
#  2. A running job shows the parameters it was started with, and
#     refuses: complete (EBUSY, not ready), a second start
#     (EBUSY, and no second target is created), a truncate through the
#     mount (EBUSY) and a write past the end (EFBIG); the size stays.
#  3. pause/resume: state paused with the user-paused flag, pauses count
#     (two pauses need two resumes), a resume too many is refused (EINVAL);
#     set-speed changes the status's speed field.
#  4. A drain held with `vdiskctl drain --hold` pauses the job (state
#     paused, flag drained) and complete is refused while it holds; the job
#     runs again once the drain ends.
#  5. set-speed 0, wait --ready; cancel after ready: state cancelled,
#     consistent, the target equals the source as of the cancel, the file
#     stays on its source; then a write goes to the source only, and the
#     size is free again (truncate and a write past the end work).
#     Commands on a job that is over are refused (EINVAL).
#  6. cancel before ready: cancelled, not consistent, the file unchanged;
#     `mirror wait` on it exits 1 saying it was cancelled.
#  7. cancel --force of a running job: cancelled at once.
#  8. The daemon exits 0 when it is unmounted (or gets SIGTERM) with a job
#     running, which it stops and logs, and when the unmount comes right
#     after a cancel.
set -euo pipefail
VDISK_TEST_TIMEOUT=120
source "$top_srcdir/tests/functions.sh"
requires_fuse
requires python3 cmp cksum dd truncate
requires_programs "$IOCTL_PROBE"

mirror=$tmpdir/mirror
mkdir -p "$mirror"
make_image disk.img 64 random
mount_vdiskfs -o mirror_dir="$mirror"
f=$mnt/disk.img
size=$((64 << 20))
st () { mirror_json "$f" "$@"; }
backing () { info_json "$f" '["backing"]'; }
head -c 1M /dev/urandom > "$tmpdir/pattern"

# ---- 1. no job -------------------------------------------------------------
out=$("$VDISKCTL" mirror status "$f")
[ "$out" = "no mirror job on $f" ] || fail "status without a job: '$out'"
[ "$(st '["state"]')" = none ] || fail "status --json without a job"
[ "$(info_json "$f" '["mirror_state"]')" = none ] || fail "info mirror_state"
ctl_expect 1 "no mirror job on $f" mirror wait "$f"
ctl_expect 1 "no mirror job on $f" mirror complete "$f"
ctl_expect 1 "no mirror job on $f" mirror cancel "$f"
ctl_expect 1 'mirror pause: No such file or directory \(no mirror job' mirror pause "$f"
ctl_expect 1 'mirror resume: No such file or directory \(no mirror job' mirror resume "$f"
ctl_expect 1 'mirror set-speed: No such file or directory \(no mirror job' \
    mirror set-speed "$f" 1M

# ---- 2. a running job refuses ----------------------------------------------
"$VDISKCTL" mirror start "$f" "$mirror/a.img" --speed 1M --granularity 128K \
    --buf-size 4M >/dev/null
[ "$(st '["state"]')" = running ] || fail "state '$(st '["state"]')' after start"
[ "$(st '["speed"]')" -eq $((1 << 20)) ] || fail "speed $(st '["speed"]')"
[ "$(st '["granularity"]')" -eq $((128 << 10)) ] || fail "granularity $(st '["granularity"]')"
[ "$(st '["buf_size"]')" -eq $((4 << 20)) ] || fail "buf_size $(st '["buf_size"]')"
[ "$(st '["sync"]')" = full ] || fail "sync $(st '["sync"]')"
[ "$(st '["mode"]')" = background ] || fail "mode $(st '["mode"]')"
[ "$(st '["target"]')" = "$mirror/a.img" ] || fail "status target"
[ "$(info_json "$f" '["mirror_state"]')" = running ] || fail "info mirror_state"
ctl_expect 1 'mirror complete: Device or resource busy \(the mirror is not ready yet' \
    mirror complete "$f"
ctl_expect 1 'mirror start: Device or resource busy \(a mirror job already runs' \
    mirror start "$f" "$mirror/b.img"
[ ! -e "$mirror/b.img" ] || fail "a refused second start created its target"
[ "$(st '["state"]')" = running ] || fail "a refused command changed the job"
# The size is fixed while the job runs.
truncate -s 32M "$f" 2>"$tmpdir/err" && fail "truncate down during a mirror succeeded"
grep -q 'Device or resource busy' "$tmpdir/err" || fail "truncate down: $(cat "$tmpdir/err")"
truncate -s 128M "$f" 2>"$tmpdir/err" && fail "truncate up during a mirror succeeded"
grep -q 'Device or resource busy' "$tmpdir/err" || fail "truncate up: $(cat "$tmpdir/err")"
dd if="$tmpdir/pattern" of="$f" bs=64k seek=1024 count=1 conv=notrunc \
   status=none 2>"$tmpdir/err" && fail "a write past the end during a mirror succeeded"
grep -q 'File too large' "$tmpdir/err" || fail "write past the end: $(cat "$tmpdir/err")"
# ... also one that starts inside and ends outside
dd if="$tmpdir/pattern" of="$f" bs=64k seek=1023 count=2 conv=notrunc \
   oflag=direct status=none 2>"$tmpdir/err" && fail "a write across the end succeeded"
grep -q 'File too large' "$tmpdir/err" || fail "write across the end: $(cat "$tmpdir/err")"
[ "$(stat -c %s "$f")" -eq "$size" ] || fail "the size changed: $(stat -c %s "$f")"
[ "$(stat -c %s "$images/disk.img")" -eq "$size" ] || fail "the backing size changed"

# ---- 3. pause, resume, set-speed -------------------------------------------
"$VDISKCTL" mirror pause "$f"
[ "$(st '["state"]')" = paused ] || fail "state '$(st '["state"]')' after pause"
[ "$(st '["user_paused"]')" = true ] || fail "pause: no user_paused flag"
[ "$(st '["drained"]')" = false ] || fail "pause: drained flag"
"$VDISKCTL" mirror status "$f" | grep -qx 'state: paused (user)' ||
    fail "status does not say 'paused (user)'"
"$VDISKCTL" mirror pause "$f"                   # pauses count
"$VDISKCTL" mirror resume "$f"
[ "$(st '["state"]')" = paused ] || fail "one resume ended two pauses"
"$VDISKCTL" mirror resume "$f"
[ "$(st '["state"]')" = running ] || fail "state '$(st '["state"]')' after resume"
[ "$(st '["user_paused"]')" = false ] || fail "resume: user_paused flag left"
ctl_expect 1 'mirror resume: Invalid argument \(the job is not paused by a user' \
    mirror resume "$f"
"$VDISKCTL" mirror set-speed "$f" 2M/s
[ "$(st '["speed"]')" -eq $((2 << 20)) ] || fail "set-speed 2M/s: speed $(st '["speed"]')"
"$VDISKCTL" mirror set-speed "$f" 1536K
[ "$(st '["speed"]')" -eq $((1536 << 10)) ] || fail "set-speed 1536K: speed $(st '["speed"]')"

# ---- 4. a drain pauses the job -----------------------------------------
start_hold "$f"
[ "$(st '["state"]')" = paused ] || fail "state '$(st '["state"]')' while drained"
[ "$(st '["drained"]')" = true ] || fail "no drained flag while drained"
[ "$(st '["user_paused"]')" = false ] || fail "a drain set user_paused"
"$VDISKCTL" mirror status "$f" | grep -qx 'state: paused (drain)' ||
    fail "status does not say 'paused (drain)'"
ctl_expect 1 'mirror complete: Device or resource busy' mirror complete "$f"
exec {hold_in}>&-
wait_until "$VDISK_WAIT_LIMIT" eval '! kill -0 "$hold_pid" 2>/dev/null' ||
    fail "drain --hold did not exit on stdin EOF"
wait "$hold_pid" || fail "drain --hold failed"
exec {hold_out}<&-
running () { mirror_state_is "$f" running; }
wait_until "$VDISK_WAIT_LIMIT" running || fail "state '$(st '["state"]')' after the drain"
[ "$(st '["drained"]')" = false ] || fail "drained flag left after the drain"

# ---- 5. ready, then cancel: a consistent copy, the file stays -------------
dd if="$tmpdir/pattern" of="$f" bs=1M seek=3 oflag=direct conv=notrunc status=none
"$VDISKCTL" mirror set-speed "$f" 0
[ "$(st '["speed"]')" -eq 0 ] || fail "set-speed 0: speed $(st '["speed"]')"
"$VDISKCTL" mirror wait "$f" --ready --timeout 60
[ "$(st '["state"]')" = ready ] || fail "state '$(st '["state"]')' after wait --ready"
dd if="$tmpdir/pattern" of="$f" bs=1M seek=7 oflag=direct conv=notrunc status=none
"$VDISKCTL" mirror cancel "$f" > "$tmpdir/cancel.out"
grep -q "cancelled; $mirror/a.img is a consistent copy of it as of the cancel" \
    "$tmpdir/cancel.out" || fail "cancel after ready printed '$(cat "$tmpdir/cancel.out")'"
[ "$(st '["state"]')" = cancelled ] || fail "state '$(st '["state"]')' after cancel"
[ "$(st '["consistent"]')" = true ] || fail "cancel after ready: not consistent"
[ "$(st '["pivoted"]')" = false ] || fail "cancel after ready: pivoted"
[ "$(backing)" = "$images/disk.img" ] || fail "cancel: backing '$(backing)'"
[ "$(info_json "$f" '["pivoted"]')" = false ] || fail "cancel: info pivoted"
cmp "$images/disk.img" "$mirror/a.img" || fail "cancel after ready: the target differs"
a_sum=$(cksum < "$mirror/a.img")
dd if=/dev/zero of="$f" bs=1M seek=9 count=1 oflag=direct conv=notrunc status=none
cmp -n 1M -i 9M:0 "$images/disk.img" /dev/zero || fail "a write after the cancel missed the source"
[ "$(cksum < "$mirror/a.img")" = "$a_sum" ] || fail "a write after the cancel reached the target"
cmp_mounted "$f" "$images/disk.img"
# Over: further commands are refused, and the size is free again.
ctl_expect 1 'mirror complete: Invalid argument \(the job is already over' mirror complete "$f"
ctl_expect 1 'mirror cancel: Invalid argument \(the job is already over' mirror cancel "$f"
ctl_expect 1 'mirror pause: Invalid argument' mirror pause "$f"
ctl_expect 1 'mirror set-speed: Invalid argument' mirror set-speed "$f" 1M
dd if="$tmpdir/pattern" of="$f" bs=64k seek=1024 count=1 conv=notrunc \
   oflag=direct status=none || fail "a write past the end after the job failed"
[ "$(stat -c %s "$images/disk.img")" -eq $((size + 65536)) ] || fail "write past the end: size"
truncate -s "$size" "$f" || fail "truncate after the job failed"
[ "$(stat -c %s "$images/disk.img")" -eq "$size" ] || fail "truncate after the job: size"

# ---- 6. cancel before ready -----------------------------------------------
cp "$images/disk.img" "$tmpdir/before"
"$VDISKCTL" mirror start "$f" "$mirror/c.img" --speed 1M >/dev/null
"$VDISKCTL" mirror cancel "$f" > "$tmpdir/cancel.out"
grep -q "cancelled; $mirror/c.img is incomplete" "$tmpdir/cancel.out" ||
    fail "cancel before ready printed '$(cat "$tmpdir/cancel.out")'"
[ "$(st '["state"]')" = cancelled ] || fail "state '$(st '["state"]')' after cancel"
[ "$(st '["consistent"]')" = false ] || fail "cancel before ready: consistent"
[ "$(st '["ever_ready"]')" = false ] || fail "cancel before ready: ever_ready"
[ "$(backing)" = "$images/disk.img" ] || fail "cancel before ready: backing"
cmp "$images/disk.img" "$tmpdir/before" || fail "cancel before ready changed the source"
ctl_expect 1 "mirror job [0-9]+ was cancelled; the target is incomplete" mirror wait "$f"

# ---- 7. cancel --force ------------------------------------------------------
"$VDISKCTL" mirror start "$f" "$mirror/d.img" --speed 1M >/dev/null
"$VDISKCTL" mirror cancel "$f" --force --timeout 20 > "$tmpdir/cancel.out"
grep -q "cancelled; $mirror/d.img is" "$tmpdir/cancel.out" ||
    fail "cancel --force printed '$(cat "$tmpdir/cancel.out")'"
[ "$(st '["state"]')" = cancelled ] || fail "state '$(st '["state"]')' after cancel --force"
[ "$(backing)" = "$images/disk.img" ] || fail "cancel --force: backing"
cmp "$images/disk.img" "$tmpdir/before" || fail "cancel --force changed the source"
cmp_mounted "$f" "$tmpdir/before"
unmount_vdiskfs

# ---- 8. shutdown with a job, or right after one ended -----------------------
# A running job is stopped at the unmount (logged: the target is
# incomplete) and the daemon exits 0; the same with SIGTERM.
mount_vdiskfs -o mirror_dir="$mirror"
"$VDISKCTL" mirror start "$f" "$mirror/e.img" --speed 1M >/dev/null
unmount_vdiskfs
grep -q "mirror of disk.img to $mirror/e.img stopped: the target is incomplete" \
    "$daemon_log" || fail "the unmount did not log the stopped job"
mount_vdiskfs -o mirror_dir="$mirror"
"$VDISKCTL" mirror start "$f" "$mirror/e.img" --existing --speed 1M >/dev/null
unmount_vdiskfs TERM
# The unmount right after a cancel, while the job's end (closing its
# target) may still run when the shutdown releases the image.  Cancelled
# without waiting (ioctl-probe) and with vdiskctl, which returns once the
# state is cancelled; a few rounds, since it is a race.
for round in 1 2 3 4 5 6; do
    mount_vdiskfs -o mirror_dir="$mirror"
    if [ $((round % 2)) -eq 1 ]; then
        got=$("$IOCTL_PROBE" -w "$f" \
              "mirror-start:target=$mirror/e.img:flags=1:speed=1048576" \
              mirror-cancel | tr '\n' ' ')
    else
        "$VDISKCTL" mirror start "$f" "$mirror/e.img" --existing --speed 1M >/dev/null
        "$VDISKCTL" mirror cancel "$f" >/dev/null
        got="OK OK "
    fi
    # At once (busy for a moment? unmount_vdiskfs retries).
    fusermount3 -u "$mnt" 2>/dev/null || true
    [ "$got" = "OK OK " ] || fail "probe start, cancel: '$got'"
    if ! unmount_vdiskfs; then
        fail_later "the daemon did not exit cleanly after a cancel (round $round)"
        break
    fi
done
