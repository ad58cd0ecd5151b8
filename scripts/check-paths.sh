#!/usr/bin/env bash
# Fails when two paths of the repository differ only by case: on a case-insensitive file system (macOS's default) a
# clone would merge them, and nothing would build. Run by `make test`.
set -euo pipefail
cd "$(dirname "$0")/.."
# Every tracked path and every folder on the way to one, lower-cased; a name that appears twice differs only by case.
clashes=$(git ls-files | awk -F/ '{ path = ""; for (i = 1; i <= NF; i++) { path = path (i > 1 ? "/" : "") $i; print path } }' \
    | sort -u | awk '{ lower = tolower($0); if (lower in seen && seen[lower] != $0) print seen[lower] " and " $0; else seen[lower] = $0 }')
if [ -n "$clashes" ]; then
    echo "check-paths: these paths differ only by case (a case-insensitive disk would merge them):" >&2
    echo "$clashes" >&2
    exit 1
fi
echo "check-paths: no two paths differ only by case"
