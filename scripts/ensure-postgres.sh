#!/usr/bin/env bash
# Make sure PostgreSQL server binaries (initdb, pg_ctl, postgres) are installed.
#
# The test suite (durable_sa/testing/servers.py) starts its own throwaway server from
# /usr/lib/postgresql/<version>/bin; this script only installs the binaries.
# Idempotent: when initdb is already there it exits at once without touching apt.
set -euo pipefail

have_initdb() {
    compgen -G '/usr/lib/postgresql/*/bin/initdb' >/dev/null
}

if have_initdb; then
    echo "ensure-postgres: found $(compgen -G '/usr/lib/postgresql/*/bin/initdb' | sort -V | tail -n 1)"
    exit 0
fi

# shellcheck source=lib/as-root.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib/as-root.sh"
as_root_or_explain ensure-postgres "PostgreSQL" "package 'postgresql'"

echo "ensure-postgres: PostgreSQL server binaries missing; installing the 'postgresql' package"

# The tests never use Debian's default "main" cluster. Tell postgresql-common not to
# create it, so installing the package does not leave (or, where services may start,
# run) a system server on port 5432. A drop-in file is used because it is not a dpkg
# conffile, so it cannot cause a configuration prompt during the install.
dropin=/etc/postgresql-common/createcluster.d/durable-sa-no-main-cluster.conf
if [[ ! -e "$dropin" ]]; then
    "${as_root[@]}" mkdir -p "$(dirname "$dropin")"
    echo "create_main_cluster = false" | "${as_root[@]}" tee "$dropin" >/dev/null
fi

"${as_root[@]}" env DEBIAN_FRONTEND=noninteractive apt-get update
"${as_root[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y postgresql

if ! have_initdb; then
    echo "ensure-postgres: 'postgresql' installed but no /usr/lib/postgresql/*/bin/initdb found" >&2
    exit 1
fi
echo "ensure-postgres: installed $(compgen -G '/usr/lib/postgresql/*/bin/initdb' | sort -V | tail -n 1)"
