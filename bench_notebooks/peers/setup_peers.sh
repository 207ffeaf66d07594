#!/usr/bin/env bash
# Create the peer-backtester virtualenvs used for cross-checks and benchmarks.
#
#   bash bench_notebooks/peers/setup_peers.sh                 # all peers
#   bash bench_notebooks/peers/setup_peers.sh vectorbt        # only some
#
# Each peer gets its own venv at <repo>/.peers/<peer>/ (override the root with PEERS_DIR),
# built with python3.11 (override with PYTHON) from requirements-<peer>.txt next to this
# script. Idempotent: a venv whose .stamp holds the same hash (requirements file + Python
# version) is left alone; a stale or half-built one is removed and rebuilt from scratch.
# Sizes on disk (measured): vectorbt ~1.1 GB, nautilus ~670 MB, backtrader ~360 MB (pandas +
# pyarrow). Each build takes 10-40 s from a warm pip cache.
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$HERE/../.." && pwd)"
PEERS_DIR="${PEERS_DIR:-$ROOT/.peers}"
PYTHON="${PYTHON:-python3.11}"
ALL_PEERS=(vectorbt backtrader nautilus)

if [ "$#" -gt 0 ]; then peers=("$@"); else peers=("${ALL_PEERS[@]}"); fi

command -v "$PYTHON" >/dev/null || { echo "setup_peers: $PYTHON not found" >&2; exit 1; }
pyver="$("$PYTHON" -c 'import sys; print(sys.version.split()[0])')"
mkdir -p "$PEERS_DIR"

status=0
for peer in "${peers[@]}"; do
    req="$HERE/requirements-$peer.txt"
    if [ ! -f "$req" ]; then
        echo "setup_peers: unknown peer '$peer' (no $req)" >&2
        status=1
        continue
    fi
    venv="$PEERS_DIR/$peer"
    want="$( { cat "$req"; echo "python=$pyver"; } | sha256sum | cut -d' ' -f1)"
    if [ -f "$venv/.stamp" ] && [ "$(cat "$venv/.stamp")" = "$want" ]; then
        echo "[$peer] up to date ($venv)"
        continue
    fi
    echo "[$peer] building $venv (python $pyver) ..."
    rm -rf "$venv"
    start=$SECONDS
    if "$PYTHON" -m venv "$venv" \
        && "$venv/bin/python" -m pip install -q --disable-pip-version-check -r "$req"; then
        echo "$want" > "$venv/.stamp"
        echo "[$peer] done in $((SECONDS - start)) s ($(du -sh "$venv" | cut -f1))"
    else
        echo "[$peer] FAILED; removing the partial venv" >&2
        rm -rf "$venv"
        status=1
    fi
done
exit $status
