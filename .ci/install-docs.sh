#!/usr/bin/env bash
# Install what the documentation build and its browser test need, idempotently.
#
#   1. MathJax 3 from the npm registry into .cache/docs-js/ (git-ignored). The mkdocs hook
#      docs/_hooks/vca_docs.py copies its es5/ build into the site; no CDN is ever used.
#   2. Debian's Chromium (headless) for tests/test_docs.py. Skipped when chromium is already
#      installed, or with VCA_DOCS_SKIP_APT=1.
#
# The Python side (mkdocs, mkdocs-material, mkdocstrings[python], mkdocs-jupyter) comes from
# `pip install -e ".[docs]"`.
set -euo pipefail
cd "$(dirname "$0")/.."

MATHJAX_VERSION="${MATHJAX_VERSION:-3.2.2}"
PREFIX=.cache/docs-js

# ---- 1. MathJax ---------------------------------------------------------------------------
have=""
if [ -f "$PREFIX/node_modules/mathjax/package.json" ]; then
    have="$(node -p "require('./$PREFIX/node_modules/mathjax/package.json').version" 2>/dev/null || true)"
fi
if [ "$have" != "$MATHJAX_VERSION" ]; then
    if ! command -v npm >/dev/null 2>&1; then
        echo "install-docs: npm not found; installing Debian's nodejs and npm" >&2
        apt-get update -qq
        DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends nodejs npm
    fi
    mkdir -p "$PREFIX"
    npm install --prefix "$PREFIX" --no-save --no-package-lock --no-audit --no-fund \
        --loglevel=error "mathjax@$MATHJAX_VERSION"
fi
test -f "$PREFIX/node_modules/mathjax/es5/tex-chtml.js"
echo "install-docs: MathJax $MATHJAX_VERSION in $PREFIX/node_modules/mathjax"

# ---- 2. Chromium --------------------------------------------------------------------------
if [ "${VCA_DOCS_SKIP_APT:-0}" != "1" ] && ! command -v chromium >/dev/null 2>&1; then
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends chromium chromium-driver
fi
if command -v chromium >/dev/null 2>&1; then
    echo "install-docs: $(chromium --version 2>/dev/null | head -1)"
else
    echo "install-docs: no chromium (VCA_DOCS_SKIP_APT=1); tests/test_docs.py will skip its browser checks"
fi
