#!/usr/bin/env bash
# Builds the Debian package, unpacks it into a clean prefix and runs the installed binary with
# the installed example configurations against a real broker:
#   - `ssm check send` / `ssm check receive` (TLS handshake, harmless destination probe)
#   - a receiver under a pidfile with the metrics endpoint, a second copy refused by the pidfile
#   - `ssm send` of N messages, then the metrics and `ssm status` must show them stored
#   - `ssmsend` / `ssmreceive` are symlinks to ssm; `-v`, a missing `-c` file (status 1), and
#     `ssmsend -c` of N more messages (and of none) through the same receiver
#
# Needs: cargo-deb (`cargo install cargo-deb`), dpkg, curl, RabbitMQ with STOMP on
# 127.0.0.1:${RMQ_STOMP_PORT:-61613} and over TLS on 127.0.0.1:${RMQ_STOMP_TLS_PORT:-61615}, the test PKI of scripts/brokers.sh in
# ${SSM_TEST_TLS_DIR:-/tmp/ssm-tls} (`scripts/brokers.sh start` makes both).
# Exit status 0 only if every step passed. Usage: scripts/package-check.sh [N]
set -euo pipefail

N=${1:-5}
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
TLS=${SSM_TEST_TLS_DIR:-/tmp/ssm-tls}
TLS_PORT=${RMQ_STOMP_TLS_PORT:-61615}
PLAIN_PORT=${RMQ_STOMP_PORT:-61613}
METRICS_PORT=${SSM_METRICS_PORT:-19464}
WORK="$(mktemp -d /tmp/ssm-package-check.XXXXXX)"
RECEIVER_PID=""

step() { echo "package-check: $*" >&2; }
fail() { echo "package-check: FAIL: $*" >&2; exit 1; }
cleanup() {
    if [ -n "$RECEIVER_PID" ] && kill -0 "$RECEIVER_PID" 2>/dev/null; then
        kill -TERM "$RECEIVER_PID" 2>/dev/null || true
        wait "$RECEIVER_PID" 2>/dev/null || true
    fi
    rm -rf "$WORK"
}
trap cleanup EXIT

command -v cargo-deb >/dev/null || fail "cargo-deb is not installed (cargo install cargo-deb)"
command -v curl >/dev/null || fail "curl is needed to scrape the metrics"
for f in client.pem client.key server.pem server.key capath; do
    [ -e "$TLS/$f" ] || fail "$TLS/$f missing: run scripts/brokers.sh start (or pki)"
done

cd "$ROOT"
step "building the release binary"
cargo build --release --locked --quiet
step "generating man pages and completions"
rm -rf target/assets
target/release/ssm generate-man target/assets/man
mkdir -p target/assets/completions
target/release/ssm completions bash >target/assets/completions/ssm.bash
target/release/ssm completions zsh >target/assets/completions/_ssm
target/release/ssm completions fish >target/assets/completions/ssm.fish
step "building the package"
DEB="$(cargo deb --no-build --quiet 2>/dev/null | tail -n 1)"
[ -f "$DEB" ] || DEB="$(ls -t target/debian/ssm_*.deb | head -n 1)"
[ -f "$DEB" ] || fail "no package built"
step "package: $DEB"
dpkg-deb --info "$DEB" >/dev/null
PREFIX="$WORK/root"
dpkg -x "$DEB" "$PREFIX"
for f in usr/bin/ssm etc/ssm/sender.cfg etc/ssm/receiver.cfg etc/apel/dns \
         lib/systemd/system/ssm-receiver.service lib/systemd/system/ssm-sender.service \
         lib/systemd/system/ssm-sender.timer usr/share/man/man1/ssm.1.gz \
         usr/share/man/man1/ssm-check-send.1.gz usr/share/bash-completion/completions/ssm \
         etc/logrotate.d/ssm usr/share/doc/ssm/operations.md usr/share/doc/ssm/migrating.md; do
    [ -e "$PREFIX/$f" ] || fail "$f is not in the package"
done
# The Python SSM's commands: symlinks to ssm, which acts by the name it is called by.
for f in ssmsend ssmreceive; do
    [ -L "$PREFIX/usr/bin/$f" ] || fail "usr/bin/$f is not a symlink"
    [ "$(readlink "$PREFIX/usr/bin/$f")" = ssm ] || fail "usr/bin/$f does not point at ssm"
    [ "$("$PREFIX/usr/bin/$f" -v)" = "SSM $("$PREFIX/usr/bin/ssm" --version | sed 's/^ssm //')" ] \
        || fail "$f -v: $("$PREFIX/usr/bin/$f" -v 2>&1)"
    if "$PREFIX/usr/bin/$f" -c "$WORK/none.cfg" >"$WORK/$f.out" 2>&1; then
        fail "$f started without a configuration file"
    fi
    grep -q "Config file not found at $WORK/none.cfg" "$WORK/$f.out" || fail "$f: $(cat "$WORK/$f.out")"
done
dpkg-deb --ctrl-tarfile "$DEB" | tar -t | grep -q conffiles || fail "no conffiles in the package"
SSM="$PREFIX/usr/bin/ssm"
"$SSM" --version

# The installed example configurations, pointed at this machine's broker, PKI and a scratch
# spool: only the values a site would edit are changed. The sender talks TLS (with its client
# certificate); the receiver plain STOMP to the same RabbitMQ, because the test PKI's server
# certificate has no clientAuth usage and RabbitMQ's TLS listener requires a client certificate.
edit() {
    sed -e "s|^host = .*|host = 127.0.0.1|" -e "s|^port = .*|port = $3|" \
        -e "s|^use_ssl = .*|use_ssl = $4|" \
        -e "s|^certificate = .*|certificate = $TLS/$2.pem|" -e "s|^key = .*|key = $TLS/$2.key|" \
        -e "s|^capath = /etc/grid-security/certificates|capath = $TLS/capath|" \
        -e "s|^destination = .*|destination = /topic/ssm.package-check.$$|" \
        -e "s|^path = /var/spool/apel/outgoing|path = $WORK/outgoing|" \
        -e "s|^path = /var/spool/apel\$|path = $WORK/store|" \
        -e "s|^dn_file = .*|dn_file = $WORK/dns|" \
        -e "s|^\[broker\]|[broker]\nlogin = guest\npasscode = guest|" \
        "$1"
}
edit "$PREFIX/etc/ssm/receiver.cfg" server "$PLAIN_PORT" false >"$WORK/receiver.cfg"
edit "$PREFIX/etc/ssm/sender.cfg" client "$TLS_PORT" true >"$WORK/sender.cfg"
printf '[certificates]\nserver_cert = %s\n' "$TLS/server.pem" >>"$WORK/sender.cfg"
{ cat "$PREFIX/etc/apel/dns"; openssl x509 -in "$TLS/client.pem" -noout -subject -nameopt compat | sed 's/^subject=//'; } >"$WORK/dns"

step "ssm check receive"
"$SSM" check receive -c "$WORK/receiver.cfg" || fail "ssm check receive"
step "ssm check send"
"$SSM" check send -c "$WORK/sender.cfg" || fail "ssm check send"

step "starting the receiver"
"$SSM" receive -c "$WORK/receiver.cfg" --pidfile "$WORK/receiver.pid" \
    --metrics "127.0.0.1:$METRICS_PORT" 2>"$WORK/receiver.log" &
RECEIVER_PID=$!
for _ in $(seq 100); do
    grep -q "receiver subscribed" "$WORK/receiver.log" && break
    kill -0 "$RECEIVER_PID" 2>/dev/null || { cat "$WORK/receiver.log" >&2; fail "receiver died"; }
    sleep 0.1
done
grep -q "receiver subscribed" "$WORK/receiver.log" || fail "receiver not subscribed in 10 s"
[ "$(cat "$WORK/receiver.pid")" = "$RECEIVER_PID" ] || fail "pidfile does not name the receiver"
if "$SSM" receive -c "$WORK/receiver.cfg" --pidfile "$WORK/receiver.pid" 2>"$WORK/second.log"; then
    fail "a second receiver started despite the pidfile"
fi
grep -q "already running as process $RECEIVER_PID" "$WORK/second.log" || fail "second receiver: $(cat "$WORK/second.log")"

step "sending $N messages"
for i in $(seq "$N"); do echo "APEL-summary-record-v0.3 package check $i"; done >"$WORK/records"
for i in $(seq "$N"); do sed -n "${i}p" "$WORK/records" | "$SSM" enqueue --path "$WORK/outgoing" >/dev/null; done
[ "$("$SSM" status --path "$WORK/outgoing" --json | grep -o '"outgoing":{[^}]*"messages":[0-9]*' | grep -o '[0-9]*$')" = "$N" ] \
    || fail "status does not show $N queued messages"
"$SSM" send -c "$WORK/sender.cfg" || fail "ssm send"

step "checking the metrics and the status"
for _ in $(seq 50); do
    M="$(curl -fsS "http://127.0.0.1:$METRICS_PORT/metrics")"
    echo "$M" | grep -qx "ssm_stored_total $N" && break
    sleep 0.1
done
echo "$M" | grep -qx "ssm_stored_total $N" || { echo "$M" >&2; fail "metrics do not show $N stored"; }
echo "$M" | grep -qx "ssm_received_total $N" || fail "metrics do not show $N received"
echo "$M" | grep -qx 'ssm_queue_messages{queue="incoming"} '"$N" || fail "metrics: incoming depth"
echo "$M" | grep -q '^ssm_certificate_not_after_seconds ' || fail "metrics: certificate expiry"
"$SSM" status --path "$WORK/store" --store
"$SSM" status --path "$WORK/store" --store --json | grep -q "\"incoming\":{[^}]*\"messages\":$N," \
    || fail "status does not show $N stored"

step "ssmsend: $N more messages, as cron runs the Python SSM's sender"
for i in $(seq "$N"); do echo "APEL-summary-record-v0.3 package check ssmsend $i" | "$SSM" enqueue --path "$WORK/outgoing" >/dev/null; done
"$PREFIX/usr/bin/ssmsend" -c "$WORK/sender.cfg" || fail "ssmsend"
"$PREFIX/usr/bin/ssmsend" -c "$WORK/sender.cfg" || fail "ssmsend with nothing queued"
for _ in $(seq 50); do
    M="$(curl -fsS "http://127.0.0.1:$METRICS_PORT/metrics")"
    echo "$M" | grep -qx "ssm_stored_total $((2 * N))" && break
    sleep 0.1
done
echo "$M" | grep -qx "ssm_stored_total $((2 * N))" || { echo "$M" >&2; fail "metrics do not show $((2 * N)) stored after ssmsend"; }

step "stopping the receiver"
kill -TERM "$RECEIVER_PID"
wait "$RECEIVER_PID" || fail "receiver exited with $?"
RECEIVER_PID=""
[ ! -e "$WORK/receiver.pid" ] || fail "pidfile left behind"
step "OK: package $DEB installs, checks, sends and receives"
