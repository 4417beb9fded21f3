#!/usr/bin/env bash
# Rebuilds the page's files in w3gate/web (committed; w3gate serves them as they are, no build at run time):
# index.html and style.css are copied, src/main.ts is bundled by esbuild into app.js, and the polkadot
# extension code into a chunk of its own that loads when that wallet is chosen.
#   web/build.sh          (needs node/npm; installs web/node_modules from package-lock.json when missing)
set -euo pipefail
cd "$(dirname "$0")"
[[ -d node_modules ]] || npm ci --legacy-peer-deps --no-audit --no-fund
out=../w3gate/web
rm -rf "$out" && mkdir -p "$out"
cp index.html style.css "$out/"
./node_modules/.bin/tsc -p .  # type check (esbuild only strips the types)
./node_modules/.bin/esbuild src/main.ts --bundle --splitting --format=esm --minify --target=es2020 \
  --legal-comments=none --entry-names=app --chunk-names=chunk-[hash] --outdir="$out" --log-level=warning
ls -l "$out"
