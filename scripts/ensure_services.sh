#!/usr/bin/env bash
# Make sure the servers the test-suite talks to are reachable:
#   PostgreSQL, MariaDB/MySQL and Redis (required), RabbitMQ (optional: warns only).
#
# For each required service:
#   1. FSS_TEST_POSTGRES_URL / FSS_TEST_MYSQL_URL / FSS_TEST_REDIS_URL set -> use it as is,
#      only check that its host:port answers (never start or install anything for it).
#   2. the default port on 127.0.0.1 answers -> fine.
#   3. the server is installed -> start it, poll until ready (at most ~30 s).
#   4. root with apt-get -> apt-get install the missing packages, open them to the test
#      client (trust / empty root password on loopback), start them.
#   5. otherwise exit non-zero and print the exact install command.
# Idempotent; prints one line per service when everything is already up.
set -uo pipefail

READY_TIMEOUT_S="${FSS_SERVICES_TIMEOUT:-30}"
RABBIT_TIMEOUT_S="${FSS_RABBITMQ_TIMEOUT:-30}"

declare -A ENV_NAME=([postgres]=FSS_TEST_POSTGRES_URL [mysql]=FSS_TEST_MYSQL_URL
                     [redis]=FSS_TEST_REDIS_URL)
declare -A DEFAULT_PORT=([postgres]=5432 [mysql]=3306 [redis]=6379 [rabbitmq]=5672)
declare -A PACKAGE=([postgres]=postgresql [mysql]=mariadb-server [redis]=redis-server
                    [rabbitmq]=rabbitmq-server)
declare -A HOST PORT URL FROM_ENV

have() { command -v "$1" >/dev/null 2>&1; }
say() { printf '%s\n' "$*"; }
err() { printf '%s\n' "$*" >&2; }

# parse_url SERVICE URL -> HOST[SERVICE], PORT[SERVICE]
# Accepts scheme://[user[:pw]@]host[:port][/path][?query], host may be [ipv6].
parse_url() {
    local svc="$1" rest="${2#*://}" host port
    rest="${rest%%/*}"
    rest="${rest%%\?*}"
    rest="${rest##*@}"
    if [[ "$rest" == \[* ]]; then
        host="${rest%%]*}"
        host="${host#[}"
        port="${rest#*]}"
        port="${port#:}"
    elif [[ "$rest" == *:* ]]; then
        host="${rest%%:*}"
        port="${rest##*:}"
    else
        host="$rest"
        port=""
    fi
    HOST[$svc]="${host:-127.0.0.1}"
    PORT[$svc]="${port:-${DEFAULT_PORT[$svc]}}"
}

tcp_open() {  # tcp_open HOST PORT
    timeout 2 bash -c 'exec 3<>"/dev/tcp/$1/$2"' _ "$1" "$2" 2>/dev/null
}

# ready SERVICE: 0 when the server accepts connections (protocol level where a client exists).
ready() {
    local svc="$1" host="${HOST[$1]}" port="${PORT[$1]}"
    case "$svc" in
        postgres)
            if have pg_isready; then
                pg_isready -q -h "$host" -p "$port" -t 2
            else
                tcp_open "$host" "$port"
            fi
            ;;
        mysql)
            if have mysqladmin; then
                # `ping` succeeds as soon as the server answers, even if access is denied.
                mysqladmin --no-defaults --protocol=tcp -h "$host" -P "$port" -u root \
                    --connect-timeout=2 ping >/dev/null 2>&1
            else
                tcp_open "$host" "$port"
            fi
            ;;
        redis)
            if have redis-cli; then
                local out
                if [[ "${FROM_ENV[redis]}" == 1 ]]; then
                    out="$(timeout 3 redis-cli -u "${URL[redis]}" ping 2>/dev/null)"
                else
                    out="$(timeout 3 redis-cli -h "$host" -p "$port" ping 2>/dev/null)"
                fi
                # PONG, or an auth error: either way a Redis server answers.
                [[ "$out" == PONG || "$out" == *NOAUTH* || "$out" == *WRONGPASS* ]]
            else
                tcp_open "$host" "$port"
            fi
            ;;
        rabbitmq)
            tcp_open "$host" "$port"
            ;;
    esac
}

wait_ready() {  # wait_ready SERVICE TIMEOUT_S
    local deadline=$((SECONDS + $2))
    while ((SECONDS < deadline)); do
        ready "$1" && return 0
        sleep 0.2
    done
    ready "$1"
}

pg_versions() {  # installed PostgreSQL major versions with a "main" cluster, highest last
    local d
    [[ -d /etc/postgresql ]] || return 0
    for d in /etc/postgresql/*/main; do
        [[ -d "$d" ]] && basename "$(dirname "$d")"
    done | sort -n
}

installed() {
    case "$1" in
        postgres) have pg_ctlcluster && compgen -G '/usr/lib/postgresql/*/bin/postgres' >/dev/null ;;
        mysql) [[ -x /usr/sbin/mariadbd ]] ;;
        redis) have redis-server ;;
        rabbitmq) have rabbitmq-server ;;
    esac
}

start_cmd() {  # the command that starts SERVICE (also printed in error messages)
    case "$1" in
        postgres)
            local v
            v="$(pg_versions | tail -n 1)"
            echo "pg_ctlcluster --skip-systemctl-redirect ${v:-\$(ls /etc/postgresql)} main start"
            ;;
        mysql) echo "start-stop-daemon --start --oknodo --background --exec /usr/sbin/mariadbd" ;;
        redis)
            echo "redis-server --daemonize yes --bind 127.0.0.1 -::1 --port 6379 --save \"\"" \
                "--appendonly no --dir /var/lib/redis --logfile /var/log/redis/ci.log"
            ;;
        rabbitmq) echo "rabbitmq-server -detached" ;;
    esac
}

start() {  # start SERVICE from the installed binaries
    local svc="$1"
    case "$svc" in
        postgres)
            local v
            v="$(pg_versions | tail -n 1)"
            if [[ -z "$v" ]]; then
                v="$(basename "$(compgen -G '/usr/lib/postgresql/*/bin/postgres' | sort -V |
                    tail -n 1 | xargs dirname | xargs dirname)")"
                pg_createcluster "$v" main >/dev/null || return 1
            fi
            pg_ctlcluster --skip-systemctl-redirect "$v" main start
            ;;
        mysql)
            if id mysql >/dev/null 2>&1; then
                install -d -o mysql -g mysql /run/mysqld 2>/dev/null || true
            fi
            start-stop-daemon --start --oknodo --background --exec /usr/sbin/mariadbd
            ;;
        redis)
            mkdir -p /var/lib/redis /var/log/redis 2>/dev/null || true
            redis-server --daemonize yes --bind 127.0.0.1 -::1 --port 6379 --save "" \
                --appendonly no --dir /var/lib/redis --logfile /var/log/redis/ci.log >/dev/null
            ;;
        rabbitmq)
            rabbitmq-server -detached >/dev/null 2>&1
            ;;
    esac
}

# After our own apt-get install: let the test clients in over loopback the way the
# fixtures connect (postgres user with trust auth, MariaDB root with an empty password).
open_fresh_install() {
    case "$1" in
        postgres)
            local v hba
            v="$(pg_versions | tail -n 1)"
            hba="/etc/postgresql/$v/main/pg_hba.conf"
            if [[ -f "$hba" ]] && ! grep -qE '^host\s+all\s+all\s+127\.0\.0\.1/32\s+trust' "$hba"; then
                sed -i '1i host all all 127.0.0.1/32 trust\nhost all all ::1/128 trust' "$hba"
                pg_ctlcluster --skip-systemctl-redirect "$v" main reload || true
            fi
            ;;
        mysql)
            mariadb --no-defaults -uroot -e "
                ALTER USER 'root'@'localhost' IDENTIFIED VIA mysql_native_password USING PASSWORD('');
                CREATE USER IF NOT EXISTS 'root'@'127.0.0.1' IDENTIFIED BY '';
                GRANT ALL PRIVILEGES ON *.* TO 'root'@'127.0.0.1' WITH GRANT OPTION;
                FLUSH PRIVILEGES;" || true
            ;;
    esac
}

# Can the fixtures' default credentials log in? (only checked for the default servers)
login_ok() {
    local svc="$1" host="${HOST[$1]}" port="${PORT[$1]}"
    case "$svc" in
        postgres)
            have psql || return 0
            PGCONNECT_TIMEOUT=5 psql -X -q -w -h "$host" -p "$port" -U postgres -d postgres \
                -Atc 'SELECT 1' >/dev/null 2>&1
            ;;
        mysql)
            local client
            client="$(command -v mariadb || command -v mysql)" || return 0
            "$client" --no-defaults --protocol=tcp -h "$host" -P "$port" -u root \
                --connect-timeout=5 -e 'SELECT 1' >/dev/null 2>&1
            ;;
        *) return 0 ;;
    esac
}

login_hint() {
    case "$1" in
        postgres)
            echo "add 'host all all 127.0.0.1/32 trust' at the top of" \
                "/etc/postgresql/*/main/pg_hba.conf and reload, or set FSS_TEST_POSTGRES_URL" \
                "with credentials"
            ;;
        mysql)
            echo "mariadb -uroot -e \"CREATE USER IF NOT EXISTS 'root'@'127.0.0.1' IDENTIFIED BY '';" \
                "GRANT ALL ON *.* TO 'root'@'127.0.0.1' WITH GRANT OPTION\", or set" \
                "FSS_TEST_MYSQL_URL with credentials"
            ;;
    esac
}

failed=0
declare -a missing=() to_start_after_install=()

for svc in postgres mysql redis; do
    env_name="${ENV_NAME[$svc]}"
    if [[ -n "${!env_name:-}" ]]; then
        FROM_ENV[$svc]=1
        URL[$svc]="${!env_name}"
        parse_url "$svc" "${URL[$svc]}"
    else
        FROM_ENV[$svc]=0
        URL[$svc]=""
        HOST[$svc]=127.0.0.1
        PORT[$svc]="${DEFAULT_PORT[$svc]}"
    fi
    where="${HOST[$svc]}:${PORT[$svc]}"

    if ready "$svc"; then
        say "$svc: ok ($where)"
        continue
    fi
    if [[ "${FROM_ENV[$svc]}" == 1 ]]; then
        err "$svc: NOT reachable at $where (from $env_name); start that server or unset $env_name"
        failed=1
        continue
    fi
    if installed "$svc"; then
        say "$svc: not reachable on $where, starting: $(start_cmd "$svc")"
        start "$svc" || true
        if wait_ready "$svc" "$READY_TIMEOUT_S"; then
            say "$svc: ok ($where)"
        else
            err "$svc: still not reachable on $where after ${READY_TIMEOUT_S}s;" \
                "start it by hand: $(start_cmd "$svc")"
            failed=1
        fi
        continue
    fi
    missing+=("${PACKAGE[$svc]}")
    to_start_after_install+=("$svc")
done

if ((${#missing[@]})); then
    install_cmd="apt-get update && apt-get install -y ${missing[*]}"
    if [[ "$(id -u)" == 0 ]] && have apt-get; then
        say "installing missing servers: $install_cmd"
        if DEBIAN_FRONTEND=noninteractive apt-get update -q >/dev/null &&
            DEBIAN_FRONTEND=noninteractive apt-get install -y -q "${missing[@]}" >/dev/null; then
            for svc in "${to_start_after_install[@]}"; do
                where="${HOST[$svc]}:${PORT[$svc]}"
                ready "$svc" || start "$svc" || true
                if wait_ready "$svc" "$READY_TIMEOUT_S"; then
                    open_fresh_install "$svc"
                    say "$svc: ok ($where)"
                else
                    err "$svc: installed but not reachable on $where; start it: $(start_cmd "$svc")"
                    failed=1
                fi
            done
        else
            err "apt-get failed; run it by hand: $install_cmd"
            failed=1
        fi
    else
        err "missing servers: ${to_start_after_install[*]}. Install them with:"
        err "  sudo sh -c '$install_cmd'"
        err "(or point ${ENV_NAME[${to_start_after_install[0]}]} and friends at running servers)"
        failed=1
    fi
fi

# Credentials the fixtures use by default (env-var URLs carry their own and are not checked).
for svc in postgres mysql; do
    if [[ "${FROM_ENV[$svc]}" == 0 ]] && ready "$svc" && ! login_ok "$svc"; then
        err "$svc: server answers on ${HOST[$svc]}:${PORT[$svc]} but the test login fails;" \
            "fix: $(login_hint "$svc")"
        failed=1
    fi
done

# RabbitMQ: optional, warn only.
HOST[rabbitmq]=127.0.0.1
PORT[rabbitmq]=5672
if ready rabbitmq; then
    say "rabbitmq: ok (127.0.0.1:5672)"
elif installed rabbitmq; then
    say "rabbitmq: not reachable on 127.0.0.1:5672, starting: $(start_cmd rabbitmq)"
    start rabbitmq || true
    if wait_ready rabbitmq "$RABBIT_TIMEOUT_S"; then
        say "rabbitmq: ok (127.0.0.1:5672)"
    else
        err "rabbitmq: WARNING: not reachable on 127.0.0.1:5672 (optional; tests needing it fail)"
    fi
else
    err "rabbitmq: WARNING: not installed (optional): apt-get install -y rabbitmq-server"
fi

exit "$failed"
