# SPDX-License-Identifier: LGPL-2.1-or-later
#
# Sourced by every tests/test-*.sh: skipping, cleanup, a private temporary
# directory, mounting and unmounting vdiskfs, bounded waits.
#
# A test runs with `set -euo pipefail`, cwd = the build directory, and
# top_srcdir / top_builddir exported (absolute) by Makefile.am.  Everything
# it creates lives in $tmpdir, made by mktemp, so `make -j check` can run
# the tests side by side.  The programs under test can be overridden:
#
#   VDISKFS=/path VDISKCTL=/path IOCTL_PROBE=/path make check
#
# A test that hangs is stopped by a watchdog after $VDISK_TEST_TIMEOUT
# seconds (set it before sourcing this file; default 300): the watchdog
# kills the daemon this test started, lazily unmounts, and the test fails.

: "${top_srcdir:?top_srcdir is not set: run the tests with make check}"
: "${top_builddir:?top_builddir is not set: run the tests with make check}"

VDISKFS=${VDISKFS:-$top_builddir/src/vdiskfs}
VDISKCTL=${VDISKCTL:-$top_builddir/src/vdiskctl}
IOCTL_PROBE=${IOCTL_PROBE:-$top_builddir/tests/ioctl-probe}
export VDISKFS VDISKCTL IOCTL_PROBE

# The longest any single wait in a test lasts before it counts as failed.
VDISK_WAIT_LIMIT=${VDISK_WAIT_LIMIT:-20}

# ---- skipping and failing ---------------------------------------------------

# requires CMD...: skip (77) unless every CMD is found on PATH.  Only for a
# real absence: CI installs everything and fails on any skip.
requires ()
{
    local c
    for c in "$@"; do
        if ! command -v "$c" >/dev/null 2>&1; then
            echo "$0: SKIP: $c is not installed"
            exit 77
        fi
    done
}

# requires_fuse: skip when this machine cannot mount FUSE at all.
requires_fuse ()
{
    requires fusermount3 mountpoint
    if [ ! -c /dev/fuse ] || [ ! -r /dev/fuse ] || [ ! -w /dev/fuse ]; then
        echo "$0: SKIP: /dev/fuse is not usable"
        exit 77
    fi
}

# fail MESSAGE...: print the message and exit 1 (cleanup runs).
fail ()
{
    echo "$0: FAIL: $*" >&2
    exit 1
}

# fail_later MESSAGE...: print the message and go on; the test fails when
# it exits.  For a check whose failure should not hide the checks after it.
_failed_later=
fail_later ()
{
    echo "$0: FAIL: $*" >&2
    _failed_later=1
}

_check_failed_later ()
{
    [ -z "$_failed_later" ]
}

# A missing program under test is a build failure, not a skip.
requires_programs ()
{
    local p
    for p in "$VDISKFS" "$VDISKCTL" "$@"; do
        [ -x "$p" ] || fail "$p has not been built"
    done
}

# ---- cleanup ----------------------------------------------------------------

_cleanup_cmds=()

# cleanup_fn FN [ARGS...]: run FN ARGS when the test exits, in reverse order
# of registration.  A cleanup function that fails makes a passing test fail.
cleanup_fn ()
{
    _cleanup_cmds+=("$(printf '%q ' "$@")")
}

_run_cleanup ()
{
    local rc=$? i
    set +e
    for (( i = ${#_cleanup_cmds[@]} - 1; i >= 0; i-- )); do
        eval "${_cleanup_cmds[i]}" || { [ "$rc" -ne 0 ] || rc=1; }
    done
    exit "$rc"
}
trap _run_cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# cleanup_kill PID...: at exit, SIGKILL these processes (started by this
# test) if they are still running, and reap them.
cleanup_kill ()
{
    cleanup_fn _kill_quietly "$@"
}

_kill_quietly ()
{
    local p
    for p in "$@"; do
        kill -KILL "$p" 2>/dev/null && wait "$p" 2>/dev/null
    done
    return 0
}

# ---- the temporary directory -----------------------------------------------

# VDISK_TEST_TMPBASE: where the private directory is made (default: the
# build directory, i.e. the filesystem the build lives on).
tmpdir=$(mktemp -d "${VDISK_TEST_TMPBASE:-$PWD}/tmp-$(basename "$0" .sh).XXXXXX")
tmpdir=$(cd "$tmpdir" && pwd -P)

_remove_tmpdir ()
{
    # Never recurse into a mount that is still there.
    if [ -n "${mnt:-}" ] && mountpoint -q "$mnt" 2>/dev/null; then
        fusermount3 -uz "$mnt" 2>/dev/null
    fi
    rm -rf --one-file-system "$tmpdir"
}
cleanup_fn _remove_tmpdir

# ---- the watchdog -----------------------------------------------------------

_watchdog_flag=$tmpdir/.watchdog-fired
_test_pid=$$
(
    trap 'kill "$s" 2>/dev/null; exit 0' TERM
    sleep "${VDISK_TEST_TIMEOUT:-300}" & s=$!
    wait "$s"
    echo "$0: FAIL: the test took longer than ${VDISK_TEST_TIMEOUT:-300} s" >&2
    : > "$_watchdog_flag"
    if [ -s "$tmpdir/pid" ]; then
        kill -KILL "$(cat "$tmpdir/pid")" 2>/dev/null
    fi
    fusermount3 -uz "$tmpdir/mnt" 2>/dev/null
    kill -TERM "$_test_pid" 2>/dev/null
) </dev/null &
_watchdog_pid=$!

_stop_watchdog ()
{
    kill -TERM "$_watchdog_pid" 2>/dev/null
    wait "$_watchdog_pid" 2>/dev/null
    [ ! -e "$_watchdog_flag" ]
}
cleanup_fn _stop_watchdog
cleanup_fn _check_failed_later

# ---- bounded polls ----------------------------------------------------------

_now_ms ()
{
    local t=${EPOCHREALTIME//[.,]/}
    echo $(( t / 1000 ))
}

# wait_until TIMEOUT CMD [ARGS...]: run CMD every 50 ms until it succeeds;
# return 1 if it has not succeeded after TIMEOUT seconds.
wait_until ()
{
    local limit=$1; shift
    local deadline=$(( $(_now_ms) + limit * 1000 ))
    while ! "$@"; do
        if [ "$(_now_ms)" -ge "$deadline" ]; then
            return 1
        fi
        sleep 0.05
    done
}

# ---- vdiskctl helpers -------------------------------------------------------

# info_json FILE PYEXPR: print d PYEXPR of `vdiskctl info --json FILE`,
# e.g. info_json "$mnt/disk" '["stats"]["flushes"]'.
info_json ()
{
    local out
    out=$("$VDISKCTL" info "$1" --json) || return 1
    printf '%s\n' "$out" | python3 -c \
        "import json, sys; d = json.load(sys.stdin); v = d$2; print(str(v).lower() if isinstance(v, bool) else v)"
}

# mirror_json FILE PYEXPR: print d PYEXPR of `vdiskctl mirror status --json
# FILE`, e.g. mirror_json "$mnt/disk" '["state"]' (booleans as true/false).
mirror_json ()
{
    local out
    out=$("$VDISKCTL" mirror status "$1" --json) || return 1
    printf '%s\n' "$out" | python3 -c \
        "import json, sys; d = json.load(sys.stdin); v = d$2; print(str(v).lower() if isinstance(v, bool) else v)"
}

# mirror_state_is FILE STATE...: the image's mirror job is in one of STATE
# (as `mirror status --json` names them: running, ready, paused...).
mirror_state_is ()
{
    local file=$1 st; shift
    st=$(mirror_json "$file" '["state"]') || return 1
    local s
    for s in "$@"; do
        [ "$st" = "$s" ] && return 0
    done
    return 1
}

# ctl_expect STATUS PATTERN ARGS...: run `vdiskctl ARGS...` (stopped after
# 60 s) and require exit status STATUS and, for a PATTERN that is not
# empty, a line of its stderr matching the extended regular expression
# PATTERN.  Its output stays in $tmpdir/ctl.out and $tmpdir/ctl.err.
ctl_expect ()
{
    local want=$1 pattern=$2 rc=0; shift 2
    timeout 60 "$VDISKCTL" "$@" >"$tmpdir/ctl.out" 2>"$tmpdir/ctl.err" || rc=$?
    [ "$rc" -eq "$want" ] ||
        fail "vdiskctl $*: exit $rc, want $want ($(head -n 3 "$tmpdir/ctl.err"))"
    if [ -n "$pattern" ] && ! grep -Eq -- "$pattern" "$tmpdir/ctl.err"; then
        fail "vdiskctl $*: stderr '$(head -n 3 "$tmpdir/ctl.err")' does not match '$pattern'"
    fi
}

# start_hold FILE [OPTIONS...]: start `vdiskctl drain --hold OPTIONS FILE`
# as a coprocess whose stdin is a pipe this shell keeps open, and wait (with
# a limit) until it prints "drained".  Sets hold_pid, hold_in (write end:
# close it for EOF) and hold_out.  The holder is killed at exit if alive.
start_hold ()
{
    local file=$1 line=; shift
    coproc hold { exec "$VDISKCTL" drain --hold "$@" "$file" 2>&1; }
    hold_pid=$hold_PID
    cleanup_kill "$hold_pid"
    # Keep our own copies and close bash's, so that closing hold_in is EOF.
    exec {hold_out}<&"${hold[0]}" {hold_in}>&"${hold[1]}"
    eval "exec ${hold[0]}<&- ${hold[1]}>&-"
    read -r -t "$VDISK_WAIT_LIMIT" line <&"$hold_out" ||
        fail "vdiskctl drain --hold printed nothing"
    [ "$line" = drained ] || fail "vdiskctl drain --hold printed '$line'"
}

# end_hold_fds: close our ends of the holder's pipes.
end_hold_fds ()
{
    exec {hold_in}>&- {hold_out}<&-
}

# ---- privileges -------------------------------------------------------------

# requires_root: skip unless the test runs as root (it mounts a tmpfs, or
# acts as another user).
requires_root ()
{
    if [ "$(id -u)" -ne 0 ]; then
        echo "$0: SKIP: needs root"
        exit 77
    fi
}

# as_nobody CMD [ARGS...]: run CMD as the user nobody (group nogroup, no
# supplementary groups).  Needs root.
as_nobody ()
{
    setpriv --reuid=nobody --regid=nogroup --clear-groups "$@"
}

# ---- images -----------------------------------------------------------------

# make_image NAME SIZE_MIB [zero|random]: a backing file in $images.
make_image ()
{
    mkdir -p "$images"
    case "${3:-zero}" in
    zero)   truncate -s "$2M" "$images/$1" ;;
    random) head -c "$(( $2 * 1024 * 1024 ))" /dev/urandom > "$images/$1" ;;
    *)      fail "make_image: bad kind $3" ;;
    esac
}

# cmp_mounted FILE OTHER: compare FILE, a file of the mount, with OTHER,
# reading FILE in 4 MiB requests: cmp's own small reads cost a FUSE round
# trip each, which makes it several times slower.
cmp_mounted ()
{
    dd if="$1" bs=4M status=none | cmp - "$2"
}

# ---- mounting ---------------------------------------------------------------

images=$tmpdir/images
mnt=$tmpdir/mnt
daemon_log=$tmpdir/vdiskfs.log
vdiskfs_pid=
_vdiskfs_killed=
_vdiskfs_cleanup=

_is_mounted ()
{
    # /proc/mounts escapes blanks; our paths have none.
    awk -v m="$mnt" '$2 == m { found = 1 } END { exit !found }' /proc/mounts
}

_show_daemon_log ()
{
    if [ -s "$daemon_log" ]; then
        echo "--- $daemon_log (last 40 lines) ---" >&2
        tail -n 40 "$daemon_log" >&2
        echo "---" >&2
    fi
}

# mount_vdiskfs [OPTIONS...]: mount $images at $mnt, the daemon in the
# foreground of a background job, its stderr in $daemon_log.  Returns once
# the daemon has written its pidfile (which it does after the mount is live)
# and the mount shows in /proc/mounts; fails after $VDISK_WAIT_LIMIT s.
# Sets vdiskfs_pid.  The unmount is registered as cleanup.
mount_vdiskfs ()
{
    [ -z "$vdiskfs_pid" ] || fail "mount_vdiskfs: already mounted"
    mkdir -p "$images" "$mnt"
    rm -f "$tmpdir/pid"
    _vdiskfs_killed=
    echo "mount: $VDISKFS $* -f --pidfile=$tmpdir/pid $images $mnt" >> "$daemon_log"
    "$VDISKFS" "$@" -f --pidfile="$tmpdir/pid" "$images" "$mnt" \
        </dev/null 2>>"$daemon_log" &
    vdiskfs_pid=$!
    if [ -z "$_vdiskfs_cleanup" ]; then
        cleanup_fn unmount_vdiskfs
        _vdiskfs_cleanup=1
    fi
    if ! wait_until "$VDISK_WAIT_LIMIT" _mount_ready; then
        _show_daemon_log
        fail "vdiskfs did not mount within $VDISK_WAIT_LIMIT s"
    fi
    if _daemon_gone; then
        local status=0
        wait "$vdiskfs_pid" || status=$?
        vdiskfs_pid=
        _show_daemon_log
        fail "vdiskfs exited with status $status before mounting"
    fi
    local p
    p=$(cat "$tmpdir/pid")
    [ "$p" = "$vdiskfs_pid" ] ||
        fail "pidfile says '$p', the daemon is $vdiskfs_pid"
}

_mount_ready ()
{
    # Dead before mounting: stop polling at once (the caller checks).
    _daemon_gone && return 0
    [ -s "$tmpdir/pid" ] && _is_mounted
}

# daemon_killed: the test killed the daemon on purpose (kill -9); the
# unmount is then lazy and its exit status is not checked.
daemon_killed ()
{
    _vdiskfs_killed=1
}

# Close this shell's own fds on files of the mount (a test that failed
# between `exec {fd}<FILE` and closing it would keep the mount busy).
_close_own_fds ()
{
    local l n
    for l in /proc/$$/fd/*; do
        n=${l##*/}
        case $(readlink "$l" 2>/dev/null) in
        "$mnt"/*) eval "exec $n<&-" ;;
        esac
    done
}

_daemon_gone ()
{
    ! kill -0 "$vdiskfs_pid" 2>/dev/null
}

# unmount_vdiskfs [SIGNAL]: stop the daemon with fusermount3 -u (or with
# SIGNAL, e.g. TERM or INT), wait for it with a limit, and require exit
# status 0 and no mount left.  After daemon_killed: a lazy unmount, no
# status check.
unmount_vdiskfs ()
{
    local sig=${1:-} rc=0 status=0
    [ -n "$vdiskfs_pid" ] || return 0
    _close_own_fds

    if [ -n "$_vdiskfs_killed" ]; then
        wait_until "$VDISK_WAIT_LIMIT" _daemon_gone || rc=1
        wait "$vdiskfs_pid" 2>/dev/null || true
        if _is_mounted; then
            fusermount3 -uz "$mnt" || rc=1
        fi
        vdiskfs_pid=
        [ "$rc" -eq 0 ] || echo "$0: FAIL: killed daemon did not go away" >&2
        return "$rc"
    fi

    if [ -n "$sig" ]; then
        kill -s "$sig" "$vdiskfs_pid" || rc=1
    elif _is_mounted; then
        # A process that just closed a file (or was killed) may keep the
        # mount busy for a moment.
        wait_until "$VDISK_WAIT_LIMIT" fusermount3 -u "$mnt" 2>>"$daemon_log" || {
            echo "$0: FAIL: fusermount3 -u $mnt kept failing" >&2
            rc=1
        }
    fi
    if ! wait_until "$VDISK_WAIT_LIMIT" _daemon_gone; then
        echo "$0: FAIL: vdiskfs did not exit within $VDISK_WAIT_LIMIT s of the unmount" >&2
        kill -KILL "$vdiskfs_pid" 2>/dev/null
        rc=1
    fi
    wait "$vdiskfs_pid" || status=$?
    if [ "$status" -ne 0 ]; then
        echo "$0: FAIL: vdiskfs exited with status $status" >&2
        rc=1
    fi
    if _is_mounted; then
        echo "$0: FAIL: $mnt is still mounted after the daemon exited" >&2
        fusermount3 -uz "$mnt" 2>/dev/null
        rc=1
    fi
    vdiskfs_pid=
    [ "$rc" -eq 0 ] || _show_daemon_log
    return "$rc"
}
