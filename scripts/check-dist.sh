#!/usr/bin/env bash
# Fails when the committed dist/ is not what `npm run build` produces from the current sources.
# Builds in a temporary copy of the repo (node_modules hard-linked), so the working tree is never touched.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
if [ ! -f dist/index.js ]; then
  echo "check-dist: dist/index.js is missing; run 'npm run build' and commit dist/" >&2
  exit 1
fi
TMP="$(mktemp -d "${TMPDIR:-/tmp}/check-dist.XXXXXX")"
trap 'rm -rf "$TMP"' EXIT
tar -C "$ROOT" --exclude=./node_modules --exclude=./.git --exclude=./dist --exclude=./test/sandbox/.state -cf - . | tar -C "$TMP" -xf -
[ -d "$ROOT/node_modules" ] || { echo "check-dist: node_modules missing; run npm ci first" >&2; exit 1; }
cp -al "$ROOT/node_modules" "$TMP/node_modules" 2>/dev/null || cp -a "$ROOT/node_modules" "$TMP/node_modules"
(cd "$TMP" && npm run build --silent >"$TMP/build.log" 2>&1) || { cat "$TMP/build.log" >&2; echo "check-dist: npm run build failed" >&2; exit 1; }
if ! diff -r "$ROOT/dist" "$TMP/dist" >"$TMP/dist.diff"; then
  head -n 60 "$TMP/dist.diff" >&2
  echo "check-dist: dist/ is out of date with the sources. Run 'npm run build' and commit dist/." >&2
  exit 1
fi
echo "check-dist: dist/ is up to date"
