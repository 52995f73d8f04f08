#!/usr/bin/env bash
# A virtualenv holding OpenCanary from PyPI, for tests/integration/test_opencanary_real.py.
#
# OpenCanary pins its dependencies exactly (setuptools, requests, redis, twisted, ...), and some
# of those pins clash with the test environment (pytest-tornado needs setuptools<82), so it gets
# a virtualenv of its own; the test finds it through NETSENTINEL_OPENCANARY_VENV.
#
#   bash tools/setup_opencanary.sh [DIR]     # DIR defaults to $NETSENTINEL_OPENCANARY_VENV,
#                                            # else .tox/opencanary-venv
#   export NETSENTINEL_OPENCANARY_VENV=DIR
set -euo pipefail
cd "$(dirname "$0")/.."
venv="${1:-${NETSENTINEL_OPENCANARY_VENV:-.tox/opencanary-venv}}"
python="${PYTHON:-python3}"
version="${OPENCANARY_VERSION:-0.9.10}"

if [ -x "$venv/bin/opencanaryd" ] && "$venv/bin/python" -c "import opencanary" 2>/dev/null; then
  echo "opencanary already in $venv"
  exit 0
fi
"$python" -m venv "$venv"
"$venv/bin/python" -m pip install -q --upgrade pip
"$venv/bin/python" -m pip install -q "opencanary==$version"
"$venv/bin/python" -c "import opencanary.logger, opencanary.modules.ftp, opencanary.modules.http"
echo "opencanary $version installed in $venv"
