#!/usr/bin/env bash
# SPDX-License-Identifier: LGPL-2.1-or-later
#
# Bad input gets a clear errno or message and changes nothing:
#  - ioctls (1..15: info, flush, drains, stats, the mirror commands 6..12,
#    the vring test commands 13..15) with a wrong size in the command
#    number, a wrong version or size field, non-zero reserved bytes or pad,
#    another direction: EINVAL; unknown command numbers: ENOTTY
#    (tests/ioctl-probe sends them).  If this daemon does not dispatch the
#    vring commands yet (a well-formed VRING_TEST_STATUS answers ENOTTY),
#    ENOTTY is what 13..15 must answer instead;
#  - MIRROR_START with a target without NUL, a relative or empty target, a
#    target naming mirror_dir itself, bad enum values, unknown flags, a
#    non-zero pad, a granularity or buffer size the engine refuses: EINVAL,
#    no job and no file left behind; VRING_TEST_START with bad enum values,
#    unknown flags, a non-zero pad: EINVAL;
#  - MIRROR_COMPLETE and _CANCEL with unknown flags or a non-zero pad:
#    EINVAL, and the job goes on (checked against a running job);
#  - COMPLETE, CANCEL, PAUSE, RESUME, SET_SPEED without a job: ENOENT; a
#    second START: EBUSY; any of them once the job is over: EINVAL;
#  - mutating ioctls on a read-only handle: EBADF;
#  - mutating ioctls from a caller who is neither root nor the owner, on an
#    image they may open for writing (allow_other, world-writable): EPERM;
#  - vdiskctl with missing or wrong arguments: exit 2 (the mirror
#    sub-commands too: no sub-command, unknown ones and options, a TARGET
#    ending in '/', '.' or '..', bad --sync, --mode, --on-*-error values,
#    bad sizes, rates and timeouts), and none of them reaches the daemon;
#    on a file that is not in a vdiskfs mount: exit 1;
#  - vdiskfs with a mount point that does not exist, an IMAGE_DIR that is a
#    file or missing, bad option values, a mirror_dir that is missing, not
#    a directory, or overlaps IMAGE_DIR: exit 2 with one line on stderr.
set -euo pipefail
VDISK_TEST_TIMEOUT=120
# The non-owner part runs as `nobody`, who must reach the mount: use a
# private directory under /tmp, not the build tree (whose parents may be
# closed to others).
VDISK_TEST_TMPBASE=/tmp
source "$top_srcdir/tests/functions.sh"
requires_fuse
requires setpriv python3
requires_programs "$IOCTL_PROBE"

chmod 0755 "$tmpdir"
make_image disk.img 4 random
cp "$images/disk.img" "$tmpdir/orig"
m=$tmpdir/mirror
mkdir "$m"
mount_vdiskfs -o allow_other -o mirror_dir="$m"
f=$mnt/disk.img

# expect WANT FLAG SPEC...: run the probe on $f, compare its output.
expect ()
{
    local want=$1 flag=$2 got; shift 2
    got=$("$IOCTL_PROBE" "$flag" "$f" "$@" | tr '\n' ' ')
    got=${got% }
    [ "$got" = "$want" ] || fail "ioctl-probe $flag $*: got '$got', want '$want'"
}

# expect_later: as expect, but a mismatch fails the test only at its end.
expect_later ()
{
    local want=$1 flag=$2 got; shift 2
    got=$("$IOCTL_PROBE" "$flag" "$f" "$@" | tr '\n' ' ')
    got=${got% }
    [ "$got" = "$want" ] ||
        fail_later "ioctl-probe $flag $*: got '$got', want '$want'"
}

# malformed CMD WANT: every malformed form of CMD gets WANT (EINVAL).
malformed ()
{
    local cmd=$1 want=$2 size sf v last size_of
    size_of=$("$IOCTL_PROBE" -r "$f" "sizeof:$cmd")
    # Another size in the command number: the kernel copies that many bytes
    # and the daemon refuses the size.  (16383 is the largest encodable.)
    for size in 0 8 63 65 $((size_of - 1)) $((size_of + 1)) 16383; do
        expect "$want" -w "$cmd:size=$size"
    done
    # The size field in the struct disagrees with the struct's size.
    for sf in 0 8 4096 $((size_of + 8)) 0xffffffff; do
        expect "$want" -w "$cmd:sizefield=$sf"
    done
    # A version this daemon does not speak.
    for v in 0 2 0xffffffff; do
        expect "$want" -w "$cmd:version=$v"
    done
    # Non-zero reserved bytes: the first, a later one, the last.
    case $cmd in
    info)                       last=255 ;;
    mirror-status|vring-status) last=127 ;;
    mirror-start|vring-start)   last=63 ;;
    drain-begin|mirror-complete|mirror-cancel|mirror-set-speed) last=47 ;;
    *)                          last=55 ;;
    esac
    expect "$want" -w "$cmd:reserved=0"
    expect "$want" -w "$cmd:reserved=40"
    expect "$want" -w "$cmd:reserved=$last"
    # The right number with another direction: _IOR brings no input
    # struct to check, _IOW gives no room for the answer.
    expect "$want" -w "$cmd:dir=r"
    expect "$want" -w "$cmd:dir=w"
    expect "$want" -w "$cmd:dir=none:size=0"
}

# ---- well-formed requests work (so the refusals below mean something) ----
expect OK -w info
expect OK -w flush
expect OK -w stats-reset
expect "OK OK" -w drain-begin drain-end
expect OK -W flush                      # O_WRONLY is opened for writing
expect OK -r info                       # reading info needs no write access
expect 0 -r drain-depth
expect "OK none" -r mirror-status mirror-state

# ---- malformed requests: EINVAL, and none of them starts anything --------
for cmd in info flush drain-begin drain-end stats-reset \
           mirror-start mirror-status mirror-complete mirror-cancel \
           mirror-pause mirror-resume mirror-set-speed; do
    malformed "$cmd" EINVAL
done
# drain-begin's pad must be zero.
expect EINVAL -w drain-begin:pad=1
expect 0 -r drain-depth
expect none -r mirror-state

# ---- MIRROR_START: values the daemon refuses (EINVAL), nothing left -------
t=$m/t.img
expect EINVAL -w mirror-start:unterminated=1      # no NUL in target[]
expect EINVAL -w mirror-start                     # empty target
expect EINVAL -w mirror-start:target=t.img        # relative
expect EINVAL -w "mirror-start:target=$m"         # mirror_dir itself
expect EINVAL -w "mirror-start:target=$m/"
expect EINVAL -w "mirror-start:target=$m/."
for bad in sync=2 sync=0xffffffff mode=2 mode=0xffffffff \
           source_error=3 target_error=3 source_error=0xffffffff \
           flags=2 flags=0x80000000 pad=1 pad=0xffffffff \
           granularity=3 granularity=2048 granularity=$((128 << 20)) \
           buf_size=65537 buf_size=$((8 << 30)) \
           granularity=65536:buf_size=4096; do
    expect EINVAL -w "mirror-start:target=$t:$bad"
done
expect none -r mirror-state
[ -z "$(ls -A "$m")" ] || fail "refused MIRROR_STARTs left files: $(ls -A "$m")"

# ---- the vring test commands (13..15) -----------------------------------
vring=$("$IOCTL_PROBE" -r "$f" vring-status)
case $vring in
OK)     vbad=EINVAL ;;
ENOTTY) vbad=ENOTTY
        echo "this daemon does not dispatch the vring commands: they must answer ENOTTY" ;;
*)      fail "a well-formed VRING_TEST_STATUS answered $vring" ;;
esac
for cmd in vring-start vring-status vring-stop; do
    malformed "$cmd" "$vbad"
done
for bad in rw=5 rw=0xffffffff inject=7 inject=0xffffffff flags=8 \
           flags=0x80000000 pad=1 rwmix_read=101; do
    expect "$vbad" -w "vring-start:requests=1:$bad"
done
expect "$vbad" -w vring-stop                      # no test runs
cmp "$images/disk.img" "$tmpdir/orig" || fail "a refused vring test wrote"

# ---- no job: ENOENT; a running job: EBUSY, and flags checked --------------
expect "ENOENT ENOENT ENOENT ENOENT ENOENT ENOENT ENOENT" -w \
    mirror-complete mirror-complete:flags=1 mirror-cancel mirror-cancel:flags=1 \
    mirror-pause mirror-resume mirror-set-speed:speed=1
expect none -r mirror-state
# A running job (at 1 MiB/s it stays running) for the flags and pad of
# COMPLETE and CANCEL, which must be refused, not taken for something.
expect "OK running" -w "mirror-start:target=$m/job.img:speed=1048576" mirror-state
expect EBUSY -w "mirror-start:target=$m/other.img"
[ ! -e "$m/other.img" ] || fail "a refused second MIRROR_START created its target"
expect EBUSY -w mirror-complete                   # not ready
expect EINVAL -w mirror-resume                    # not paused
for bad in flags=2 flags=0x80000000 pad=1; do
    expect_later "EINVAL running" -w "mirror-complete:$bad" mirror-state
done
cancelled () { [ "$("$IOCTL_PROBE" -r "$f" mirror-state)" = cancelled ]; }
for bad in flags=2 flags=0x80000000 flags=0x80000001 pad=1; do
    got=$("$IOCTL_PROBE" -w "$f" "mirror-cancel:$bad")
    [ "$got" = EINVAL ] ||
        fail_later "ioctl-probe -w mirror-cancel:$bad: got '$got', want 'EINVAL'"
    if [ "$got" = OK ]; then
        # It was taken for a cancel: start another job for the next check.
        wait_until "$VDISK_WAIT_LIMIT" cancelled || fail "the job did not end"
        rm -f "$m/job.img"
        expect OK -w "mirror-start:target=$m/job.img:speed=1048576"
    fi
    expect running -r mirror-state
done
expect OK -w mirror-cancel:flags=1
wait_until "$VDISK_WAIT_LIMIT" cancelled || fail "a forced cancel did not end the job"
# Over: EINVAL.
expect "EINVAL EINVAL EINVAL EINVAL EINVAL" -w \
    mirror-complete mirror-cancel mirror-pause mirror-resume mirror-set-speed
cmp "$images/disk.img" "$tmpdir/orig"

# ---- unknown command numbers: ENOTTY ----------------------------------
for nr in 0 16 31 32 200 255; do
    expect ENOTTY -w "raw:nr=$nr"
    expect ENOTTY -r "raw:nr=$nr:size=4096"
done
# another type letter (one the VFS does not intercept)
expect ENOTTY -w "raw:type=0xd8:nr=1"
expect ENOTTY -w "raw:type=0x7a:nr=9:size=128"

# ---- read-only handle: mutating commands answer EBADF -----------------
expect EBADF -r flush
expect EBADF -r stats-reset
expect EBADF -r drain-begin
expect EBADF -r drain-begin:timeout=5
expect EBADF -r drain-end
expect 0 -r drain-depth
expect EBADF -r "mirror-start:target=$m/ro.img"
expect "EBADF EBADF EBADF EBADF EBADF" -r \
    mirror-complete mirror-cancel mirror-pause mirror-resume mirror-set-speed
expect OK -r mirror-status                      # reading needs no write
[ ! -e "$m/ro.img" ] || fail "MIRROR_START on a read-only handle created its target"
cmp "$images/disk.img" "$tmpdir/orig"

# ---- a caller who is neither root nor the owner: EPERM ----------------
# The image belongs to root and is world-writable, so `nobody` opens it
# O_RDWR: the daemon's own check is what refuses.  A file `nobody` owns
# (mode 0600) shows the refusal is about ownership.
chown 0:0 "$images/disk.img"
chmod 0666 "$images/disk.img"
chmod 0755 "$images"
make_image own.img 1 zero
chown nobody: "$images/own.img"
chmod 0600 "$images/own.img"
got=$(as_nobody "$IOCTL_PROBE" -w "$f" info flush drain-begin drain-end \
          stats-reset drain-depth | tr '\n' ' ')
[ "$got" = "OK EPERM EPERM EPERM EPERM 0 " ] ||
    fail "nobody on root's world-writable image: '$got'"
got=$(as_nobody "$IOCTL_PROBE" -w "$f" "mirror-start:target=$m/nobody.img" \
          mirror-complete mirror-cancel mirror-pause mirror-resume \
          mirror-set-speed mirror-status | tr '\n' ' ')
[ "$got" = "EPERM EPERM EPERM EPERM EPERM EPERM OK " ] ||
    fail "nobody's mirror commands on root's world-writable image: '$got'"
[ ! -e "$m/nobody.img" ] || fail "nobody's refused MIRROR_START created its target"
got=$(as_nobody "$IOCTL_PROBE" -w "$mnt/own.img" flush drain-begin drain-end \
          stats-reset mirror-pause | tr '\n' ' ')
[ "$got" = "OK OK OK OK ENOENT " ] || fail "nobody on its own image: '$got'"
# default_permissions: the kernel refuses what the modes refuse.
chmod 0600 "$images/disk.img"
got=$(as_nobody "$IOCTL_PROBE" -r "$f" info) || true
[ "$got" = "open: EACCES" ] || fail "nobody opened a 0600 root image: '$got'"
cmp "$images/disk.img" "$tmpdir/orig"

# ---- vdiskctl: usage errors exit 2, failed operations exit 1 -----------
ctl_status ()
{
    local want=$1 rc=0; shift
    timeout 20 "$VDISKCTL" "$@" >"$tmpdir/ctl.out" 2>"$tmpdir/ctl.err" || rc=$?
    [ "$rc" -eq "$want" ] ||
        fail "vdiskctl $*: exit $rc, want $want ($(head -n 3 "$tmpdir/ctl.err"))"
    if [ "$want" -ne 0 ]; then
        [ -s "$tmpdir/ctl.err" ] || fail "vdiskctl $*: no message"
    fi
}
ctl_status 2                                    # no command
ctl_status 2 bogus "$f"                         # unknown command
ctl_status 2 info                               # missing FILE
ctl_status 2 info "$f" "$f"                     # extra argument
ctl_status 2 info --bogus "$f"                  # unknown option
ctl_status 2 flush
ctl_status 2 flush "$f" extra
ctl_status 2 stats-reset
ctl_status 2 drain "$f"                         # neither -- CMD nor --hold
ctl_status 2 drain "$f" --                      # empty command
ctl_status 2 drain --timeout=abc "$f" -- true   # not a number
ctl_status 2 drain --timeout=-1 "$f" -- true    # negative
ctl_status 2 drain --hold                       # missing FILE
ctl_status 0 --help
ctl_status 0 info --help
ctl_status 1 info "$tmpdir/no-such-file"        # ENOENT
ctl_status 1 info "$tmpdir/orig"                # not vdiskfs: ENOTTY
ctl_status 1 flush "$tmpdir/orig"
ctl_status 1 drain "$tmpdir/orig" -- true       # the drain cannot begin...
# mirror: usage errors exit 2 before anything reaches the daemon.
job=$(mirror_json "$f" '["job_id"]')
x=$m/x.img
ctl_status 2 mirror                             # no sub-command
ctl_status 2 mirror bogus "$f"                  # unknown sub-command
ctl_status 2 mirror --bogus
ctl_status 2 mirror start                       # missing FILE
ctl_status 2 mirror start "$f"                  # missing TARGET
ctl_status 2 mirror start "$f" "$x" extra
ctl_status 2 mirror start "$f" "$x" --bogus     # unknown option
ctl_status 2 mirror start "$f" "$x" --no-pivot  # another sub-command's
ctl_status 2 mirror start "$f" "$m/"            # TARGET names no file
ctl_status 2 mirror start "$f" "$m//"
ctl_status 2 mirror start "$f" "$m/."
ctl_status 2 mirror start "$f" "$m/.."
ctl_status 2 mirror start "$f" ""
for opt in "--sync bogus" "--sync FULL" "--sync=" "--sync" \
           "--mode fast" "--mode=write_blocking" \
           "--on-source-error retry" "--on-target-error=" \
           "--granularity 3" "--granularity abc" "--granularity 0" \
           "--granularity 96K" "--granularity -64K" \
           "--buf-size 0" "--buf-size 1X" "--buf-size 16Q" \
           "--granularity 64K --buf-size 100K" \
           "--speed abc" "--speed -1" "--speed 1M/h" "--speed 1.5M" \
           "--existing=yes"; do
    # shellcheck disable=SC2086 # the option and its value, split
    ctl_status 2 mirror start "$f" "$x" $opt
done
ctl_status 2 mirror status
ctl_status 2 mirror status "$f" --ready
ctl_status 2 mirror status "$f" "$f"
ctl_status 2 mirror wait "$f" --ready --done
ctl_status 2 mirror wait "$f" --timeout 0
ctl_status 2 mirror wait "$f" --timeout abc
ctl_status 2 mirror wait "$f" --timeout 31536001
ctl_status 2 mirror wait "$f" --timeout
ctl_status 2 mirror complete "$f" --force
ctl_status 2 mirror complete "$f" --no-pivot=1
ctl_status 2 mirror cancel "$f" --no-pivot
ctl_status 2 mirror cancel
ctl_status 2 mirror pause
ctl_status 2 mirror pause "$f" extra
ctl_status 2 mirror resume "$f" --force
ctl_status 2 mirror set-speed "$f"              # missing RATE
ctl_status 2 mirror set-speed "$f" fast
ctl_status 2 mirror set-speed "$f" -5M
ctl_status 0 mirror --help
ctl_status 0 mirror start --help
ctl_status 0 mirror set-speed --help
ctl_status 1 mirror start "$f" "$tmpdir/no-such-dir/x.img"  # vdiskctl: no such dir
ctl_status 1 mirror status "$tmpdir/orig"       # not vdiskfs: ENOTTY
grep -q 'not a vdiskfs file' "$tmpdir/ctl.err" || fail "mirror status on a plain file: $(cat "$tmpdir/ctl.err")"
[ ! -e "$x" ] || fail "a mirror usage error created the target"
[ "$(mirror_json "$f" '["job_id"]')" = "$job" ] || fail "a mirror usage error started a job"
[ "$(info_json "$f" '["drain_depth"]')" -eq 0 ] || fail "drain_depth after bad vdiskctl calls"

unmount_vdiskfs

# ---- vdiskfs: bad start-up arguments exit 2 with one line ---------------
fs_status ()
{
    local rc=0
    timeout 20 "$VDISKFS" "$@" >"$tmpdir/fs.out" 2>"$tmpdir/fs.err" </dev/null ||
        rc=$?
    [ "$rc" -eq 2 ] || fail "vdiskfs $*: exit $rc, want 2 ($(head -n 3 "$tmpdir/fs.err"))"
    [ "$(wc -l < "$tmpdir/fs.err")" -eq 1 ] ||
        fail "vdiskfs $*: want one line on stderr, got: $(cat "$tmpdir/fs.err")"
    ! _is_mounted || fail "vdiskfs $* left a mount"
}
fs_status -f "$images" "$tmpdir/no-such-dir"           # mount point missing
fs_status -f "$tmpdir/orig" "$mnt"                     # IMAGE_DIR is a file
fs_status -f "$tmpdir/no-such-dir" "$mnt"              # IMAGE_DIR missing
fs_status -f "$images"                                 # MOUNTPOINT missing
fs_status -f                                           # nothing
fs_status -o aio=bogus -f "$images" "$mnt"             # bad value
fs_status -o cache=bogus -f "$images" "$mnt"
fs_status -o iothreads=0 -f "$images" "$mnt"
fs_status -o iothreads=abc -f "$images" "$mnt"
fs_status --log-level=bogus -f "$images" "$mnt"
fs_status --no-such-option -f "$images" "$mnt"
mkdir "$images/sub"
fs_status -o mirror_dir="$tmpdir/no-such-dir" -f "$images" "$mnt"
fs_status -o mirror_dir="$tmpdir/orig" -f "$images" "$mnt"     # not a directory
fs_status -o mirror_dir="$images" -f "$images" "$mnt"          # overlaps
fs_status -o mirror_dir="$images/sub" -f "$images" "$mnt"
fs_status -o mirror_dir="$tmpdir" -f "$images" "$mnt"
fs_status -o mirror_dir="$images/../images/" -f "$images" "$mnt"
[ ! -e "$tmpdir/no-such-dir" ] || fail "vdiskfs created a directory"
