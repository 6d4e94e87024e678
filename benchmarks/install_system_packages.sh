#!/usr/bin/env bash
# Install the Debian packages listed in benchmarks/system-packages.txt (one per line, '#' comments) when missing.
set -euo pipefail

list="${1:-$(dirname "${BASH_SOURCE[0]}")/system-packages.txt}"
[[ -f "$list" ]] || { echo "error: package list not found: $list" >&2; exit 1; }

missing=()
while IFS= read -r line || [[ -n "$line" ]]; do
    pkg="${line%%#*}"
    pkg="${pkg//[[:space:]]/}"
    [[ -z "$pkg" ]] && continue
    if [[ "$(dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null || true)" == "install ok installed" ]]; then
        echo "ok: $pkg already installed"
    else
        missing+=("$pkg")
    fi
done < "$list"

if [[ ${#missing[@]} -eq 0 ]]; then
    echo "all system packages present"
    exit 0
fi

echo "missing: ${missing[*]}"
if [[ "$(id -u)" -ne 0 ]]; then
    echo "error: installing ${missing[*]} needs root; run: sudo bash $0 $*  (or: sudo apt-get install ${missing[*]})" >&2
    exit 1
fi
export DEBIAN_FRONTEND=noninteractive
apt-get update
apt-get install -y --no-install-recommends "${missing[@]}"
echo "installed: ${missing[*]}"
