#!/usr/bin/env bash
# Throughput regression guard: runs `ssm bench` in a short mode (release build, embedded broker)
# and fails only on a gross regression, below a fraction (default a quarter) of the targets in
# docs/performance.md, so that a noisy or shared CI machine does not make it flap.
#   1 sender  x 300 x 10 KB, aes128: target  400 msgs/s -> fails below  100
#  16 senders x  50 x 10 KB, aes128: target 1000 msgs/s -> fails below  250
# Receiver peak RSS at 16 senders: fails above 4 x 64 MB.
# Where the store lives: the 16-sender run is made twice, on the default temporary directory
# (the disk: fsync paths) and on tmpfs; the 1-sender run only on tmpfs (/dev/shm), because on
# a disk one sender measures the file system's flush latency, and on ext4 without a journal
# (this CI machine's root) the kernel's inode allocator, which varies from run to run
# (docs/performance.md). Without /dev/shm every run uses the default directory.
# SSM2 (--ssm-version 2): 1 sender x 1000, live: target 1000 msgs/s -> fails below 250; and the
# receiver draining a filled queue (--mode drain, 1,000 messages): target 800 -> fails below 200.
# Issue #17's ratios, the ones that do not move with the machine: every run's CPU per message as
# a multiple of one RSA-2048 private-key operation measured in the same run (sender_rsa_ratio,
# receiver_rsa_ratio), on the tmpfs runs (in drain mode the receiver's CPU counts from its
# READY=1). Measured on the day of issue #17's second round: senders 2.3-3.1, receiver 2.2-2.9;
# fails above SSM_BENCH_GUARD_SENDER_RATIO (default 4.5) or SSM_BENCH_GUARD_RECEIVER_RATIO
# (default 5.5): a margin for the noise of one RSA measurement on a shared machine (0.24-0.38 ms
# within an hour here), not for a slower ssm.
# AMS (--transport ams: SSM2 through an in-process ssm ams-server): the receiver draining a
# filled subscription (500 messages, a few seconds): target 800 -> fails below 200; its ratios
# (measured 3.3-3.8 and 2.8-3.2) fail above SSM_BENCH_GUARD_AMS_SENDER_RATIO (default 6) or
# SSM_BENCH_GUARD_AMS_RECEIVER_RATIO (default 6).
# Environment: SSM_BENCH_GUARD_FACTOR (default 0.25) scales the floors; SSM_BIN uses a given
# binary instead of building one.
set -euo pipefail
cd "$(dirname "$0")/.."

FACTOR=${SSM_BENCH_GUARD_FACTOR:-0.25}
SENDER_RATIO=${SSM_BENCH_GUARD_SENDER_RATIO:-4.5}
RECEIVER_RATIO=${SSM_BENCH_GUARD_RECEIVER_RATIO:-5.5}
AMS_SENDER_RATIO=${SSM_BENCH_GUARD_AMS_SENDER_RATIO:-6}
AMS_RECEIVER_RATIO=${SSM_BENCH_GUARD_AMS_RECEIVER_RATIO:-6}
if [[ -n ${SSM_BIN:-} ]]; then
  BIN=$SSM_BIN
else
  cargo build --release --quiet
  BIN=$PWD/target/release/ssm
fi

# field JSON NAME: the number NAME in a flat JSON object.
field() {
  sed -n "s/.*\"$2\":\([0-9.]*\).*/\1/p" <<<"$1"
}

# An empty directory on tmpfs for the runs that should measure ssm rather than the disk.
TMPFS_DIR=
if [[ -d /dev/shm && -w /dev/shm ]]; then
  TMPFS_DIR=$(mktemp -d /dev/shm/ssm-bench-guard-XXXXXX)
  trap 'rm -rf "$TMPFS_DIR"' EXIT
fi
# on_tmpfs NAME: the --dir arguments for a run named NAME on tmpfs (none without tmpfs).
on_tmpfs() {
  if [[ -n $TMPFS_DIR ]]; then
    echo "--dir $TMPFS_DIR/$1"
  fi
}

failed=0
# above LABEL JSON NAME CEILING: fails the guard if the number NAME in JSON is above CEILING.
above() {
  local value
  value=$(field "$2" "$3")
  if [[ -z $value ]] || awk -v v="$value" -v c="$4" 'BEGIN { exit !(v > c) }'; then
    echo "bench-guard: $1: $3 ${value:-?} is above $4" >&2
    failed=1
  fi
}

# check LABEL TARGET ARGS...: run the bench, compare msgs/s (drain_msgs_per_s with --mode
# drain) to FACTOR x TARGET, and the CPU per message to the ratio ceilings (CHECK_SENDER_RATIO
# and CHECK_RECEIVER_RATIO, when set for the call, instead of the defaults).
check() {
  local label=$1 target=$2; shift 2
  local rate_field=msgs_per_s
  if [[ " $* " == *" --mode drain "* ]]; then
    rate_field=drain_msgs_per_s
  fi
  local json
  if ! json=$("$BIN" bench --json "$@" | tail -n 1); then
    echo "bench-guard: $label: ssm bench failed" >&2
    failed=1
    return
  fi
  echo "bench-guard: $label: $json"
  local rate floor
  rate=$(field "$json" "$rate_field")
  floor=$(awk -v t="$target" -v f="$FACTOR" 'BEGIN { print t * f }')
  if [[ -z $rate ]] || awk -v r="$rate" -v f="$floor" 'BEGIN { exit !(r < f) }'; then
    echo "bench-guard: $label: ${rate:-?} msgs/s is below the floor of $floor (target $target)" >&2
    failed=1
  fi
  # Only where the store is on tmpfs: on a disk the file system's kernel work is charged to the
  # receiver (ext4 without a journal: its inode allocator), which is not what the ratio guards.
  if [[ $json == *'"store_fs":"tmpfs"'* ]]; then
    above "$label" "$json" sender_rsa_ratio "${CHECK_SENDER_RATIO:-$SENDER_RATIO}"
    above "$label" "$json" receiver_rsa_ratio "${CHECK_RECEIVER_RATIO:-$RECEIVER_RATIO}"
  fi
  LAST_JSON=$json
}

# shellcheck disable=SC2046 # on_tmpfs's words are separate arguments on purpose
check "1 sender, 10 KB, aes128, tmpfs" 400 $(on_tmpfs one) \
  --senders 1 --messages 300 --size 10k --cipher aes128
# shellcheck disable=SC2046
check "16 senders, 10 KB, aes128, tmpfs" 1000 $(on_tmpfs sixteen) \
  --senders 16 --messages 50 --size 10k --cipher aes128
check "16 senders, 10 KB, aes128, default directory" 1000 \
  --senders 16 --messages 50 --size 10k --cipher aes128
rss=$(field "${LAST_JSON:-}" receiver_peak_rss_kb)
if [[ -n $rss ]] && ((rss > 4 * 64 * 1024)); then
  echo "bench-guard: receiver peak RSS ${rss} KiB is above 4 x 64 MB" >&2
  failed=1
fi
# shellcheck disable=SC2046
check "SSM2, 1 sender, 10 KB, aes128, tmpfs" 1000 $(on_tmpfs ssm2) \
  --ssm-version 2 --senders 1 --messages 1000 --size 10k --cipher aes128
# shellcheck disable=SC2046
check "SSM2, receiver draining a filled queue, tmpfs" 800 $(on_tmpfs drain) \
  --ssm-version 2 --mode drain --senders 1 --messages 1000 --size 10k --cipher aes128
# shellcheck disable=SC2046
CHECK_SENDER_RATIO=$AMS_SENDER_RATIO CHECK_RECEIVER_RATIO=$AMS_RECEIVER_RATIO \
  check "AMS, receiver draining a filled subscription, tmpfs" 800 $(on_tmpfs ams) \
  --transport ams --mode drain --senders 1 --messages 500 --size 10k --cipher aes128
if ((failed)); then
  echo "bench-guard: FAILED" >&2
  exit 1
fi
echo "bench-guard: ok"
