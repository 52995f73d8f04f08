#!/usr/bin/env bash
# Prepare a real Cowrie (from PyPI) for tests/integration/test_cowrie_real.py, from scratch.
#
# Cowrie refuses to run as root, so it runs as an unprivileged user from a virtualenv that user
# can read. The virtualenv is made with Debian's /usr/bin/python3: a pyenv interpreter under
# /root is not readable by another user. Run as root; idempotent. Prints the export lines the
# test reads.
#
#   NETSENTINEL_COWRIE_USER     user Cowrie runs as (default: cowrie, created if missing)
#   NETSENTINEL_COWRIE_VENV     where the virtualenv goes (default: /opt/netsentinel-cowrie)
#   NETSENTINEL_COWRIE_SPEC     what pip installs (default: cowrie, i.e. the newest release)
#   NETSENTINEL_COWRIE_PYTHON   interpreter for the virtualenv (default: /usr/bin/python3)
set -euo pipefail

user="${NETSENTINEL_COWRIE_USER:-cowrie}"
venv="${NETSENTINEL_COWRIE_VENV:-/opt/netsentinel-cowrie}"
spec="${NETSENTINEL_COWRIE_SPEC:-cowrie}"
python="${NETSENTINEL_COWRIE_PYTHON:-/usr/bin/python3}"

if [ "$(id -u)" -ne 0 ]; then
  echo "setup_cowrie.sh: run as root (it creates a user and installs packages)" >&2
  exit 1
fi

# Debian splits venv/ensurepip into python3-venv.
if [ ! -x "$python" ] || ! "$python" -c 'import ensurepip, venv' 2>/dev/null; then
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3 python3-venv >/dev/null
fi

if ! id -u "$user" >/dev/null 2>&1; then
  useradd --system --create-home --shell /usr/sbin/nologin "$user"
fi

if [ ! -x "$venv/bin/twistd" ]; then
  "$python" -m venv "$venv"
  "$venv/bin/python" -m pip install -q --upgrade pip
  "$venv/bin/python" -m pip install -q "$spec"
fi
# Twisted caches its plugin list (dropin.cache) next to the plugins; build it now so twistd,
# running as the user, finds Cowrie's plugin without writing into the virtualenv.
# (Loading Cowrie's plugin writes var/lib/cowrie/uuid under the current directory: run it in
# a scratch one.)
scratch="$(mktemp -d)"
(cd "$scratch" && "$venv/bin/python" -c 'from twisted.plugin import IPlugin, getPlugins; list(getPlugins(IPlugin))')
chown -R "$user:" "$venv"
chmod -R u+rwX,go+rX "$venv"

# The user must be able to run the interpreter and import Cowrie from where it is.
chmod 0777 "$scratch"
(cd "$scratch" && runuser -u "$user" -- "$venv/bin/python" -c 'import cowrie, twisted.plugins.cowrie_plugin' >/dev/null)
rm -rf "$scratch"
version="$("$venv/bin/python" -c 'from importlib.metadata import version; print(version("cowrie"))')"
echo "# Cowrie $version ready in $venv, run as $user" >&2
echo "export NETSENTINEL_COWRIE_VENV=$venv"
echo "export NETSENTINEL_COWRIE_USER=$user"
