#!/usr/bin/env bash
# Make sure the redis-server binary is installed.
#
# The test suite (durable_sa/testing/servers.py) starts its own throwaway server as a child
# process on a free loopback port; this script only installs the binary. It must not leave
# Debian's system service running on port 6379: the tests never use it.
# Idempotent: when redis-server is already there it exits at once without touching apt.
set -euo pipefail

find_redis_server() {
    command -v redis-server 2>/dev/null || {
        [[ -x /usr/bin/redis-server ]] && echo /usr/bin/redis-server
    }
}

if found="$(find_redis_server)"; then
    echo "ensure-redis: found $found"
    exit 0
fi

# shellcheck source=lib/as-root.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib/as-root.sh"
as_root_or_explain ensure-redis "redis-server" "package 'redis-server'"

# Whether something accepts TCP connections on 127.0.0.1:$1 (bash's /dev/tcp: no extra tools).
port_open() {
    (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null
}

echo "ensure-redis: redis-server missing; installing the 'redis-server' package"

# The package's postinst starts the system service through invoke-rc.d (or
# deb-systemd-invoke), which both ask /usr/sbin/policy-rc.d first: exit code 101 means
# "not allowed". Install such a policy for the duration of the install, unless one is
# there already (e.g. in containers); only a file we created is removed afterwards.
policy=/usr/sbin/policy-rc.d
created_policy=false
remove_policy() {
    if [[ "$created_policy" == true ]]; then
        "${as_root[@]}" rm -f "$policy"
        created_policy=false
    fi
}
trap remove_policy EXIT
if [[ ! -e "$policy" ]]; then
    printf '#!/bin/sh\n# Temporary, from scripts/ensure-redis.sh: start no services.\nexit 101\n' \
        | "${as_root[@]}" tee "$policy" >/dev/null
    "${as_root[@]}" chmod 0755 "$policy"
    created_policy=true
fi

# Lets us tell a server that the install started from one that was there before.
busy_before=false
if port_open 6379; then
    busy_before=true
fi

"${as_root[@]}" env DEBIAN_FRONTEND=noninteractive apt-get update
"${as_root[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y redis-server

remove_policy

# Belt and braces: should the service have started anyway, stop it with its own tooling
# (never by killing processes by name). On systemd hosts also keep it from starting at boot.
if [[ -d /run/systemd/system ]]; then
    "${as_root[@]}" systemctl disable --now redis-server.service >/dev/null 2>&1 || true
elif [[ "$busy_before" == false ]] && port_open 6379 && [[ -x /etc/init.d/redis-server ]]; then
    echo "ensure-redis: the install started the system service; stopping it"
    "${as_root[@]}" /etc/init.d/redis-server stop || true
fi
if [[ "$busy_before" == false ]]; then
    for _ in $(seq 1 50); do
        port_open 6379 || break
        sleep 0.2
    done
    if port_open 6379; then
        echo "ensure-redis: a server still listens on 127.0.0.1:6379 after the install" >&2
        exit 1
    fi
fi

if ! found="$(find_redis_server)"; then
    echo "ensure-redis: 'redis-server' installed but no redis-server binary found" >&2
    exit 1
fi
echo "ensure-redis: installed $found ($("$found" --version))"
