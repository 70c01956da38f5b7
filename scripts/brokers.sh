#!/usr/bin/env bash
# Real STOMP brokers (RabbitMQ and ActiveMQ from Debian packages) for ssm's tests and for users
# who want to try ssm against the brokers it is deployed with.
#
#   scripts/brokers.sh install|start|stop|restart|status|env|pki [rabbitmq|activemq|all]
#
#   install  apt-get install the broker packages (skipped when present; needs root)
#   start    start on loopback, wait until a real STOMP CONNECT gets CONNECTED on every
#            listener, then print the SSM_TEST_* lines on stdout (so `eval "$(... start)"` works)
#   stop     stop by PID and wait until the process is gone
#   restart  stop, then start with the same configuration (tests use it to exercise reconnects)
#   status   say whether each listener answers STOMP (exit 1 if any does not)
#   env      print the SSM_TEST_* lines without starting anything
#   pki      (re)generate the test PKI in $SSM_TEST_TLS_DIR if it is missing or expiring
#
# Listeners (all 127.0.0.1; guest/guest on both):
#   RabbitMQ STOMP $RMQ_STOMP_PORT (61613), STOMP over TLS $RMQ_STOMP_TLS_PORT (61615)
#   ActiveMQ STOMP $AMQ_STOMP_PORT (61614), STOMP over TLS $AMQ_STOMP_TLS_PORT (61616)
# Both TLS listeners require a client certificate issued by the test CA in $SSM_TEST_TLS_DIR.
#
# Everything the brokers write lives under $SSM_BROKER_DIR (default /tmp/ssm-brokers); the system
# configuration in /etc is neither read nor changed, so a system broker can run alongside as long
# as the ports differ. As root the brokers run as the package users (rabbitmq, activemq); as
# another user they run as that user.
#
# Sourcing this file (`source scripts/brokers.sh`) only defines the variables and functions
# (rmq_start, amq_stop, stomp_probe, pki_ensure, ...); it changes no shell option.

SSM_BROKER_HOST=127.0.0.1
RMQ_STOMP_PORT=${RMQ_STOMP_PORT:-61613}
RMQ_STOMP_TLS_PORT=${RMQ_STOMP_TLS_PORT:-61615}
# Erlang distribution port: off the default 25672 so a system RabbitMQ does not collide.
RMQ_DIST_PORT=${RMQ_DIST_PORT:-25679}
RMQ_NODENAME=${RMQ_NODENAME:-ssm@localhost}
AMQ_STOMP_PORT=${AMQ_STOMP_PORT:-61614}
AMQ_STOMP_TLS_PORT=${AMQ_STOMP_TLS_PORT:-61616}
# 64 MiB bodies must pass (the protocol allows them); the frame limit leaves room for headers.
AMQ_HEAP=${AMQ_HEAP:-1g}
SSM_BROKER_MAX_FRAME=${SSM_BROKER_MAX_FRAME:-134217728}
SSM_TEST_TLS_DIR=${SSM_TEST_TLS_DIR:-/tmp/ssm-tls}
SSM_BROKER_DIR=${SSM_BROKER_DIR:-/tmp/ssm-brokers}
# Seconds to wait for a broker to answer STOMP after launch (first boot of RabbitMQ is slowest).
SSM_BROKER_WAIT=${SSM_BROKER_WAIT:-120}
SSM_BROKER_CTL="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/$(basename "${BASH_SOURCE[0]}")"
# Password of the ActiveMQ JKS key and trust stores (they only hold the throwaway test PKI).
AMQ_STORE_PASS=ssm-test

brokers_log() { echo "brokers: $*" >&2; }

# Millisecond clock for the timing lines.
brokers_now_ms() { date +%s%3N; }

# --------------------------------------------------------------------------------------------
# STOMP probes. A broker counts as up only when a real CONNECT gets CONNECTED: an open port is
# not enough (RabbitMQ and ActiveMQ both accept TCP before their STOMP stack is ready).
# The probe also sends DISCONNECT so the broker closes the connection itself and logs no error.

# A printf format: shell strings cannot hold the NUL that ends each frame, printf makes it.
STOMP_PROBE_FRAMES='CONNECT\naccept-version:1.0,1.1,1.2\nhost:/\nlogin:guest\npasscode:guest\n\n\0DISCONNECT\nreceipt:probe\n\n\0'

# stomp_probe PORT: true when plain STOMP on 127.0.0.1:PORT answers CONNECTED.
stomp_probe() {
  local port=$1 out
  # shellcheck disable=SC2059 # the format is the frames
  out=$( (exec 3<>"/dev/tcp/$SSM_BROKER_HOST/$port" && printf "$STOMP_PROBE_FRAMES" >&3 &&
          timeout 3 head -c 9 <&3) 2>/dev/null | tr -d '\000') || true
  [[ $out == CONNECTED ]]
}

# stomp_tls_probe PORT [anonymous]: true when STOMP over TLS on 127.0.0.1:PORT answers CONNECTED.
# The client presents client.pem unless "anonymous" is given, and verifies the server against
# the test CA and the name localhost. s_client -quiet ignores stdin EOF, so it exits when the
# broker closes after the DISCONNECT receipt (or refuses us).
stomp_tls_probe() {
  local port=$1 mode=${2:-} out
  local -a cert=(-cert "$SSM_TEST_TLS_DIR/client.pem" -key "$SSM_TEST_TLS_DIR/client.key")
  [[ $mode == anonymous ]] && cert=()
  # shellcheck disable=SC2059 # the format is the frames
  out=$(printf "$STOMP_PROBE_FRAMES" |
        timeout 5 openssl s_client -quiet -connect "$SSM_BROKER_HOST:$port" \
          -servername localhost -verify_hostname localhost -verify_return_error \
          -CAfile "$SSM_TEST_TLS_DIR/ca.pem" "${cert[@]}" 2>/dev/null | tr -d '\000' |
        head -c 9) || true
  [[ $out == CONNECTED ]]
}

# wait_until SECONDS COMMAND...: retry COMMAND every 0.2 s until it succeeds or time runs out.
wait_until() {
  local deadline=$((SECONDS + $1)); shift
  until "$@"; do
    (( SECONDS < deadline )) || return 1
    sleep 0.2
  done
}

# pid_alive PID: the process exists (and is not a zombie).
# Reads /proc rather than ps: minimal Debian images have no procps.
pid_alive() {
  local stat
  [[ ${1:-} =~ ^[0-9]+$ ]] || return 1
  stat=$(cat "/proc/$1/stat" 2>/dev/null) || return 1
  stat=${stat##*) }   # the state letter follows the parenthesised command name
  [[ ${stat:0:1} != Z ]]
}

# pid_file_read FILE MARK: the PID in FILE if that process's command line contains MARK (so a
# stale file whose PID was reused by another process is ignored); nothing otherwise.
pid_file_read() {
  local pid; pid=$(cat "$1" 2>/dev/null || true)
  if [[ $pid =~ ^[0-9]+$ ]] && tr '\0' ' ' 2>/dev/null < "/proc/$pid/cmdline" | grep -qF -- "$2"
  then
    echo "$pid"
  fi
  return 0
}

pid_gone() { ! pid_alive "${1:-}"; }

# stop_pid NAME PID: SIGTERM (graceful in both brokers), SIGKILL after 30 s, wait until gone.
stop_pid() {
  local name=$1 pid=$2 deadline=$((SECONDS + 30))
  kill -TERM "$pid" 2>/dev/null || true
  while pid_alive "$pid"; do
    if (( SECONDS >= deadline )); then
      brokers_log "$name (pid $pid) ignored SIGTERM for 30 s; sending SIGKILL"
      kill -KILL "$pid" 2>/dev/null || true
      deadline=$((SECONDS + 3600))
    fi
    sleep 0.1
  done
}

# run_as USER: the command prefix that drops root to USER (nothing when not root).
run_as() {
  if (( EUID == 0 )) && id "$1" >/dev/null 2>&1; then
    printf '%s\0' setpriv "--reuid=$1" "--regid=$1" --init-groups --
  fi
}

# launch PIDFILE LOGFILE DIR COMMAND...: start COMMAND detached (own session, stdin from
# /dev/null, output to LOGFILE, no inherited lock fd) in DIR and record its PID in PIDFILE. The
# PID is written by the process itself before it execs, so it is right however setsid forks.
launch() {
  local pidfile=$1 logfile=$2 dir=$3; shift 3
  # shellcheck disable=SC2016 # $$ and $@ belong to the inner sh
  (cd "$dir" && exec setsid sh -c 'echo $$ > "$0"; exec "$@"' "$pidfile" "$@") \
    >"$logfile" 2>&1 </dev/null 9>&- &
  for _ in $(seq 50); do [[ -s $pidfile ]] && return 0; sleep 0.1; done
  brokers_log "no pid file $pidfile after launch"; return 1
}

# --------------------------------------------------------------------------------------------
# Test PKI: a CA, a server certificate for localhost (the brokers) and a client certificate
# (the tests), made with the openssl CLI. The keys are deliberately world-readable: the PKI is
# throwaway, only these loopback test brokers trust it, and their guest/guest login is public
# anyway; readable keys let the brokers (rabbitmq user) and tests (any user) use them.

pki_valid() {
  local d=$SSM_TEST_TLS_DIR f
  for f in ca.pem ca.key server.pem server.key client.pem client.key; do
    [[ -s $d/$f ]] || return 1
  done
  [[ -e $d/capath/$(openssl x509 -noout -hash -in "$d/ca.pem").0 ]] || return 1
  for f in ca.pem server.pem client.pem; do
    openssl x509 -noout -checkend 86400 -in "$d/$f" >/dev/null || return 1
  done
  openssl verify -CAfile "$d/ca.pem" "$d/server.pem" "$d/client.pem" >/dev/null 2>&1
}

pki_ensure() {
  local d=$SSM_TEST_TLS_DIR
  pki_valid && return 0
  # The directory is replaced wholesale: refuse to do that to one that is not a test PKI.
  if [[ -d $d && -n $(ls -A "$d" 2>/dev/null) && ! -e $d/ca.pem ]]; then
    brokers_log "$d is not empty and holds no ca.pem; not replacing it (set SSM_TEST_TLS_DIR)"
    return 1
  fi
  brokers_log "generating test PKI in $d"
  local t
  t=$(mktemp -d "${d%/}.new.XXXXXX") || return 1
  (
    set -e
    cd "$t"
    openssl req -x509 -newkey rsa:2048 -nodes -days 3650 -subj "/O=ssm test/CN=ssm test CA" \
      -addext "basicConstraints=critical,CA:TRUE" \
      -addext "keyUsage=critical,keyCertSign,cRLSign" \
      -keyout ca.key -out ca.pem 2>/dev/null
    # issue NAME SUBJECT EXTENSIONS
    issue() {
      openssl req -new -newkey rsa:2048 -nodes -subj "$2" -keyout "$1.key" -out "$1.csr" \
        2>/dev/null
      printf '%s\n' "$3" > "$1.ext"
      openssl x509 -req -in "$1.csr" -CA ca.pem -CAkey ca.key -days 3650 \
        -set_serial "0x$(openssl rand -hex 8)" -extfile "$1.ext" -out "$1.pem" 2>/dev/null
      rm -f "$1.csr" "$1.ext"
    }
    issue server "/O=ssm test/CN=localhost" "basicConstraints=CA:FALSE
keyUsage=critical,digitalSignature,keyEncipherment
extendedKeyUsage=serverAuth
subjectAltName=DNS:localhost,IP:127.0.0.1"
    issue client "/O=ssm test/CN=ssm test client" "basicConstraints=CA:FALSE
keyUsage=critical,digitalSignature,keyEncipherment
extendedKeyUsage=clientAuth"
    mkdir capath
    cp ca.pem "capath/$(openssl x509 -noout -hash -in ca.pem).0"
    chmod 0644 ./*.pem ./*.key capath/*
    chmod 0755 . capath
  ) || { rm -rf "$t"; brokers_log "test PKI generation failed"; return 1; }
  rm -rf "$d"
  mv "$t" "$d"
}

# --------------------------------------------------------------------------------------------
# RabbitMQ: the packaged server with its own config, mnesia and log dirs under
# $SSM_BROKER_DIR/rabbitmq, node $RMQ_NODENAME, the STOMP plugin only, no AMQP TCP listener.

RMQ_DIR=$SSM_BROKER_DIR/rabbitmq

rmq_install() { brokers_apt_install rabbitmq-server; }

rmq_pid() { pid_file_read "$RMQ_DIR/rabbitmq.pid" "$RMQ_DIR"; }

rmq_running() { pid_alive "$(rmq_pid)"; }

rmq_write_config() {
  mkdir -p "$RMQ_DIR/mnesia" "$RMQ_DIR/log"
  local d=$SSM_TEST_TLS_DIR
  cat > "$RMQ_DIR/rabbitmq.conf" <<EOC
# Written by scripts/brokers.sh; regenerated on every start.
listeners.tcp = none
distribution.listener.interface = 127.0.0.1
stomp.listeners.tcp.1 = $SSM_BROKER_HOST:$RMQ_STOMP_PORT
stomp.listeners.ssl.1 = $SSM_BROKER_HOST:$RMQ_STOMP_TLS_PORT
ssl_options.cacertfile = $d/ca.pem
ssl_options.certfile = $d/server.pem
ssl_options.keyfile = $d/server.key
ssl_options.verify = verify_peer
ssl_options.fail_if_no_peer_cert = true
ssl_options.versions.1 = tlsv1.3
ssl_options.versions.2 = tlsv1.2
# The STOMP plugin of 3.10 has no frame limit of its own; messages are capped by this.
max_message_size = $SSM_BROKER_MAX_FRAME
log.console = true
log.console.level = info
log.file = false
EOC
  echo '[rabbitmq_stomp].' > "$RMQ_DIR/enabled_plugins"
  : > "$RMQ_DIR/rabbitmq-env.conf"
  if (( EUID == 0 )) && id rabbitmq >/dev/null 2>&1; then
    chown -R rabbitmq:rabbitmq "$RMQ_DIR"
  fi
}

rmq_start() {
  if rmq_running; then
    brokers_log "rabbitmq already running (pid $(rmq_pid))"
    wait_until "$SSM_BROKER_WAIT" rmq_ready ||
      { brokers_log "rabbitmq runs but does not answer STOMP; try restart"; return 1; }
  elif stomp_probe "$RMQ_STOMP_PORT"; then
    brokers_log "rabbitmq: port $RMQ_STOMP_PORT already answers STOMP but was not started" \
      "by this script ($RMQ_DIR/rabbitmq.pid); stop that broker first"
    return 1
  else
    [[ -x /usr/lib/rabbitmq/bin/rabbitmq-server ]] ||
      { brokers_log "rabbitmq-server is not installed: run '$SSM_BROKER_CTL install rabbitmq'"; return 1; }
    pki_ensure || return 1
    mkdir -p "$RMQ_DIR"; chmod 0755 "$SSM_BROKER_DIR" 2>/dev/null || true
    rm -f "$RMQ_DIR/rabbitmq.pid" "$RMQ_DIR/launch.pid"
    rmq_write_config
    local t0; t0=$(brokers_now_ms)
    local -a as=(); mapfile -d '' as < <(run_as rabbitmq)
    # The Debian wrapper would su and ignore our environment; call the real script directly.
    launch "$RMQ_DIR/launch.pid" "$RMQ_DIR/rabbitmq.out" "$RMQ_DIR" env \
      HOME="$RMQ_DIR" \
      RABBITMQ_NODENAME="$RMQ_NODENAME" \
      RABBITMQ_CONFIG_FILE="$RMQ_DIR/rabbitmq.conf" \
      RABBITMQ_ADVANCED_CONFIG_FILE="$RMQ_DIR/advanced.config" \
      RABBITMQ_CONF_ENV_FILE="$RMQ_DIR/rabbitmq-env.conf" \
      RABBITMQ_ENABLED_PLUGINS_FILE="$RMQ_DIR/enabled_plugins" \
      RABBITMQ_MNESIA_BASE="$RMQ_DIR/mnesia" \
      RABBITMQ_LOG_BASE="$RMQ_DIR/log" \
      RABBITMQ_PID_FILE="$RMQ_DIR/rabbitmq.pid" \
      RABBITMQ_DIST_PORT="$RMQ_DIST_PORT" \
      ERL_EPMD_ADDRESS=127.0.0.1 \
      "${as[@]}" /usr/lib/rabbitmq/bin/rabbitmq-server || return 1
    if ! wait_until "$SSM_BROKER_WAIT" rmq_ready; then
      brokers_log "rabbitmq did not answer STOMP on $RMQ_STOMP_PORT and $RMQ_STOMP_TLS_PORT" \
        "within ${SSM_BROKER_WAIT}s; last output:"
      tail -40 "$RMQ_DIR/rabbitmq.out" >&2
      rmq_stop_launched
      return 1
    fi
    brokers_log "rabbitmq ready in $(( $(brokers_now_ms) - t0 )) ms (pid $(rmq_pid))"
  fi
}

# After a failed start the node may not have written its pid yet: stop via the launcher script
# (its TERM trap stops the node), else the node.
rmq_stop_launched() {
  local lpid; lpid=$(pid_file_read "$RMQ_DIR/launch.pid" rabbitmq-server)
  if [[ -s $RMQ_DIR/rabbitmq.pid ]]; then rmq_stop
  elif pid_alive "$lpid"; then stop_pid rabbitmq-server "$lpid"
  fi
  return 0
}

# Ready: both listeners answer and the node has written its pid (used to stop it).
rmq_ready() {
  [[ -s $RMQ_DIR/rabbitmq.pid ]] && stomp_probe "$RMQ_STOMP_PORT" &&
    stomp_tls_probe "$RMQ_STOMP_TLS_PORT"
}

# rmq_stop [keep-epmd]: stop the node; epmd too unless asked to keep it (restart) or another
# Erlang node still uses it.
rmq_stop() {
  local pid; pid=$(rmq_pid)
  if pid_alive "$pid"; then
    local t0; t0=$(brokers_now_ms)
    stop_pid rabbitmq "$pid"
    # The rabbitmq-server shell script that waited on the node exits right after it.
    local lpid; lpid=$(pid_file_read "$RMQ_DIR/launch.pid" rabbitmq-server)
    wait_until 10 pid_gone "$lpid" || true
    brokers_log "rabbitmq stopped in $(( $(brokers_now_ms) - t0 )) ms"
  else
    brokers_log "rabbitmq not running"
  fi
  rm -f "$RMQ_DIR/rabbitmq.pid" "$RMQ_DIR/launch.pid"
  if [[ ${1:-} != keep-epmd ]] && command -v epmd >/dev/null &&
     ! ERL_EPMD_ADDRESS=127.0.0.1 epmd -names 2>/dev/null | grep -q '^name '; then
    ERL_EPMD_ADDRESS=127.0.0.1 epmd -kill >/dev/null 2>&1 || true
  fi
  return 0
}

rmq_status() {
  brokers_status_line rabbitmq "$RMQ_STOMP_PORT" "$RMQ_STOMP_TLS_PORT" "$(rmq_pid)"
}

# --------------------------------------------------------------------------------------------
# ActiveMQ: the packaged jars run straight from java (no init script), non-persistent, with a
# broker XML, key/trust stores and log config under $SSM_BROKER_DIR/activemq.

AMQ_DIR=$SSM_BROKER_DIR/activemq

amq_install() { brokers_apt_install activemq; }

amq_pid() { pid_file_read "$AMQ_DIR/activemq.pid" "$AMQ_DIR"; }

amq_running() { pid_alive "$(amq_pid)"; }

# JKS key store (server key + chain) and trust store (test CA), rebuilt when the PKI changes.
amq_stores() {
  local d=$SSM_TEST_TLS_DIR c=$AMQ_DIR/conf
  if [[ -s $c/broker.ks && -s $c/broker.ts && $c/broker.ks -nt $d/server.pem &&
        $c/broker.ts -nt $d/ca.pem ]]; then
    return 0
  fi
  rm -f "$c/broker.ks" "$c/broker.ts" "$c/broker.p12"
  openssl pkcs12 -export -name localhost -in "$d/server.pem" -inkey "$d/server.key" \
    -certfile "$d/ca.pem" -passout "pass:$AMQ_STORE_PASS" -out "$c/broker.p12" || return 1
  keytool -importkeystore -noprompt -srckeystore "$c/broker.p12" -srcstoretype PKCS12 \
    -srcstorepass "$AMQ_STORE_PASS" -destkeystore "$c/broker.ks" -deststoretype JKS \
    -deststorepass "$AMQ_STORE_PASS" >/dev/null 2>&1 || return 1
  keytool -importcert -noprompt -alias ssm-test-ca -file "$d/ca.pem" -keystore "$c/broker.ts" \
    -storetype JKS -storepass "$AMQ_STORE_PASS" >/dev/null 2>&1 || return 1
  rm -f "$c/broker.p12"
}

amq_write_config() {
  mkdir -p "$AMQ_DIR/conf" "$AMQ_DIR/data" "$AMQ_DIR/tmp"
  amq_stores || { brokers_log "could not build the ActiveMQ key/trust stores"; return 1; }
  # maxDataLength caps a body, maxFrameSize a whole frame; ActiveMQ's default data cap
  # (100 MiB) is raised to the same 128 MiB as RabbitMQ so the brokers behave alike.
  local wf="wireFormat.maxFrameSize=$SSM_BROKER_MAX_FRAME&amp;wireFormat.maxDataLength=$SSM_BROKER_MAX_FRAME"
  cat > "$AMQ_DIR/conf/activemq.xml" <<EOC
<!-- Written by scripts/brokers.sh; regenerated on every start. -->
<beans xmlns="http://www.springframework.org/schema/beans"
       xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance"
       xsi:schemaLocation="http://www.springframework.org/schema/beans http://www.springframework.org/schema/beans/spring-beans.xsd
                           http://activemq.apache.org/schema/core http://activemq.apache.org/schema/core/activemq-core.xsd">
  <broker xmlns="http://activemq.apache.org/schema/core" brokerName="ssm-test"
          useJmx="false" persistent="false" advisorySupport="false" schedulerSupport="false"
          dataDirectory="$AMQ_DIR/data">
    <sslContext>
      <sslContext keyStore="file:$AMQ_DIR/conf/broker.ks" keyStorePassword="$AMQ_STORE_PASS"
                  trustStore="file:$AMQ_DIR/conf/broker.ts" trustStorePassword="$AMQ_STORE_PASS"/>
    </sslContext>
    <transportConnectors>
      <transportConnector name="stomp"
          uri="stomp://$SSM_BROKER_HOST:$AMQ_STOMP_PORT?transport.tcpNoDelay=true&amp;$wf"/>
      <transportConnector name="stomp+ssl"
          uri="stomp+ssl://$SSM_BROKER_HOST:$AMQ_STOMP_TLS_PORT?needClientAuth=true&amp;transport.tcpNoDelay=true&amp;$wf"/>
    </transportConnectors>
  </broker>
</beans>
EOC
  # Debian's ActiveMQ 5.17 logs through log4j 1.2, found on activemq.classpath (conf/).
  cat > "$AMQ_DIR/conf/log4j.properties" <<'EOC'
log4j.rootLogger=INFO, out
log4j.logger.org.springframework=WARN
log4j.appender.out=org.apache.log4j.ConsoleAppender
log4j.appender.out.layout=org.apache.log4j.PatternLayout
log4j.appender.out.layout.ConversionPattern=%d{HH:mm:ss,SSS} %-5p %c{1} - %m%n
EOC
  if (( EUID == 0 )) && id activemq >/dev/null 2>&1; then
    chown -R activemq:activemq "$AMQ_DIR"
  fi
}

amq_start() {
  if amq_running; then
    brokers_log "activemq already running (pid $(amq_pid))"
    wait_until "$SSM_BROKER_WAIT" amq_ready ||
      { brokers_log "activemq runs but does not answer STOMP; try restart"; return 1; }
  elif stomp_probe "$AMQ_STOMP_PORT"; then
    brokers_log "activemq: port $AMQ_STOMP_PORT already answers STOMP but was not started" \
      "by this script ($AMQ_DIR/activemq.pid); stop that broker first"
    return 1
  else
    [[ -r /usr/share/activemq/bin/activemq.jar ]] ||
      { brokers_log "activemq is not installed: run '$SSM_BROKER_CTL install activemq'"; return 1; }
    pki_ensure || return 1
    mkdir -p "$AMQ_DIR"; chmod 0755 "$SSM_BROKER_DIR" 2>/dev/null || true
    rm -f "$AMQ_DIR/activemq.pid"
    amq_write_config || return 1
    local t0; t0=$(brokers_now_ms)
    local -a as=(); mapfile -d '' as < <(run_as activemq)
    launch "$AMQ_DIR/activemq.pid" "$AMQ_DIR/activemq.out" "$AMQ_DIR" "${as[@]}" \
      java "-Xms128m" "-Xmx$AMQ_HEAP" \
      -Djava.awt.headless=true -Duser.home="$AMQ_DIR" -Djava.io.tmpdir="$AMQ_DIR/tmp" \
      -Dactivemq.classpath="$AMQ_DIR/conf" -Dactivemq.home=/usr/share/activemq \
      -Dactivemq.base="$AMQ_DIR" -Dactivemq.conf="$AMQ_DIR/conf" \
      -Dactivemq.data="$AMQ_DIR/data" \
      -jar /usr/share/activemq/bin/activemq.jar start "xbean:file:$AMQ_DIR/conf/activemq.xml" ||
      return 1
    if ! wait_until "$SSM_BROKER_WAIT" amq_ready; then
      brokers_log "activemq did not answer STOMP on $AMQ_STOMP_PORT and $AMQ_STOMP_TLS_PORT" \
        "within ${SSM_BROKER_WAIT}s; last output:"
      tail -40 "$AMQ_DIR/activemq.out" >&2
      amq_stop
      return 1
    fi
    brokers_log "activemq ready in $(( $(brokers_now_ms) - t0 )) ms (pid $(amq_pid))"
  fi
}

amq_ready() {
  amq_running || return 1
  stomp_probe "$AMQ_STOMP_PORT" && stomp_tls_probe "$AMQ_STOMP_TLS_PORT"
}

amq_stop() {
  local pid; pid=$(amq_pid)
  if pid_alive "$pid"; then
    local t0; t0=$(brokers_now_ms)
    stop_pid activemq "$pid"   # the JVM shutdown hook stops the broker cleanly
    brokers_log "activemq stopped in $(( $(brokers_now_ms) - t0 )) ms"
  else
    brokers_log "activemq not running"
  fi
  rm -f "$AMQ_DIR/activemq.pid"
}

amq_status() {
  brokers_status_line activemq "$AMQ_STOMP_PORT" "$AMQ_STOMP_TLS_PORT" "$(amq_pid)"
}

# --------------------------------------------------------------------------------------------
# Shared pieces.

# brokers_apt_install PACKAGE...: install what is missing, nothing when all are present.
brokers_apt_install() {
  local -a missing=() p
  for p in "$@" openssl; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' ||
      missing+=("$p")
  done
  if (( ${#missing[@]} == 0 )); then
    brokers_log "already installed: $*"
    return 0
  fi
  (( EUID == 0 )) || { brokers_log "installing ${missing[*]} needs root"; return 1; }
  brokers_log "apt-get install ${missing[*]}"
  # Fresh machines often have empty package lists; update first when install cannot find them.
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${missing[@]}" ||
    { DEBIAN_FRONTEND=noninteractive apt-get update -q &&
      DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${missing[@]}"; }
}

# brokers_status_line NAME PORT TLS_PORT PID: one line; false when a listener does not answer.
brokers_status_line() {
  local name=$1 port=$2 tport=$3 pid=$4 ok=0 plain tls anon
  if stomp_probe "$port"; then plain=up; else plain=DOWN; ok=1; fi
  if stomp_tls_probe "$tport"; then
    tls=up
    if stomp_tls_probe "$tport" anonymous; then anon="client cert NOT required"; ok=1
    else anon="client cert required"; fi
  else
    tls=DOWN; anon=; ok=1
  fi
  local who="pid $pid"
  if ! pid_alive "$pid"; then
    if [[ $plain == up || $tls == up ]]; then who="not started by this script"
    else who="not running"; fi
  fi
  printf '%s: stomp %s:%s %s, stomp+tls %s:%s %s%s, %s\n' "$name" "$SSM_BROKER_HOST" \
    "$port" "$plain" "$SSM_BROKER_HOST" "$tport" "$tls" "${anon:+ ($anon)}" "$who"
  return "$ok"
}

# brokers_env NAME...: the lines tests read (see docs/brokers.md), as shell exports.
brokers_env() {
  local -a plain=() tls=()
  local b
  for b in "$@"; do
    case $b in
      rabbitmq)
        plain+=("rabbitmq=$SSM_BROKER_HOST:$RMQ_STOMP_PORT")
        tls+=("rabbitmq=$SSM_BROKER_HOST:$RMQ_STOMP_TLS_PORT") ;;
      activemq)
        plain+=("activemq=$SSM_BROKER_HOST:$AMQ_STOMP_PORT")
        tls+=("activemq=$SSM_BROKER_HOST:$AMQ_STOMP_TLS_PORT") ;;
    esac
  done
  local IFS=,
  echo "export SSM_TEST_BROKERS=${plain[*]}"
  echo "export SSM_TEST_TLS_BROKERS=${tls[*]}"
  echo "export SSM_TEST_TLS_DIR=$SSM_TEST_TLS_DIR"
  echo "export SSM_TEST_BROKER_CTL=$SSM_BROKER_CTL"
}

brokers_usage() {
  sed -n '5,14p' "$SSM_BROKER_CTL" | sed 's/^# \{0,1\}//' >&2
}

brokers_main() {
  local cmd=${1:-} which=${2:-all}
  local -a names
  case $which in
    all) names=(rabbitmq activemq) ;;
    rabbitmq|activemq) names=("$which") ;;
    *) brokers_usage; return 2 ;;
  esac
  local -A pre=([rabbitmq]=rmq [activemq]=amq)
  local n rc=0
  case $cmd in
    install) for n in "${names[@]}"; do "${pre[$n]}_install" || return 1; done ;;
    pki) pki_ensure && echo "export SSM_TEST_TLS_DIR=$SSM_TEST_TLS_DIR" ;;
    env) brokers_env "${names[@]}" ;;
    status) for n in "${names[@]}"; do "${pre[$n]}_status" || rc=1; done; return "$rc" ;;
    start|stop|restart)
      mkdir -p "$SSM_BROKER_DIR" || return 1
      # One start/stop at a time: several test processes may call restart concurrently. The
      # lock is fd 9 of this subshell; launch() keeps it from the brokers.
      (
      flock -w 600 9 || { brokers_log "could not lock $SSM_BROKER_DIR/.lock"; exit 1; }
      case $cmd in
        start) for n in "${names[@]}"; do "${pre[$n]}_start" || exit 1; done
               brokers_env "${names[@]}" ;;
        stop) for n in "${names[@]}"; do "${pre[$n]}_stop" || rc=1; done ;;
        restart)
          local t0; t0=$(brokers_now_ms)
          for n in "${names[@]}"; do
            if [[ $n == rabbitmq ]]; then rmq_stop keep-epmd; else amq_stop; fi
            "${pre[$n]}_start" || exit 1
          done
          brokers_log "restart of ${names[*]} took $(( $(brokers_now_ms) - t0 )) ms" ;;
      esac
      exit "$rc"
      ) 9>"$SSM_BROKER_DIR/.lock" ;;
    *) brokers_usage; return 2 ;;
  esac
}

if [[ ${BASH_SOURCE[0]} == "$0" ]]; then
  set -euo pipefail
  brokers_main "$@"
fi
