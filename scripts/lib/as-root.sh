# Sourced by the ensure-*.sh scripts: how to run a command as root to install packages.
#
# as_root_or_explain SCRIPT WHAT PACKAGES: sets the array `as_root` to () when running as
# root, to (sudo) when sudo is there; otherwise says what to install by hand and exits 1.
as_root_or_explain() {
    local script="$1" what="$2" packages="$3"
    if [[ "$(id -u)" -eq 0 ]]; then
        as_root=()
    elif command -v sudo >/dev/null 2>&1; then
        as_root=(sudo)
    else
        echo "$script: $what is not installed and this is not root (no sudo either)." >&2
        echo "$script: install the Debian $packages and re-run." >&2
        exit 1
    fi
}
