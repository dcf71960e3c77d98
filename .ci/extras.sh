#!/usr/bin/env bash
# CI installs every optional integration, so their tests run instead of skipping:
# the trackers, Ray, Optuna, the report tools, the data formats, SQLAlchemy and psycopg,
# Debian's Chromium for the report's rendering test and PostgreSQL 15 for the deployments. Runs inside the virtual environment of .ci/run.
set -euo pipefail
if ! command -v chromium >/dev/null 2>&1; then
  if [ "$(id -u)" = 0 ]; then
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null
  else
    sudo apt-get update -qq
    sudo DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null
  fi
fi
chromium --version
# PostgreSQL 15 server binaries: the deployment tests start a real server from them
if [ ! -x /usr/lib/postgresql/15/bin/initdb ]; then
  if [ "$(id -u)" = 0 ]; then
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql-15 >/dev/null
  else
    sudo apt-get update -qq && sudo DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql-15 >/dev/null
  fi
fi
/usr/lib/postgresql/15/bin/initdb --version
# torch is already installed by the README's set-up block; keep pip from replacing it
pip install -q -e ".[all,dev]" "torch==$(python -c 'import torch; print(torch.__version__.split("+")[0])')"
python -c "import torch; print('torch after extras:', torch.__version__)"
