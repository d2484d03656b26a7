#!/usr/bin/env bash
# Make `solc-v$SOLC_VERSION` available to py-solc-x (and so ape-solidity) under $SOLCX_BINARY_PATH.
# A native solc of that version on PATH is used as is; otherwise a wrapper around solc-js (npm) is installed.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
version=${SOLC_VERSION:?}
dest=${SOLCX_BINARY_PATH:?}
mkdir -p "$dest"
target="$dest/solc-v$version"
if command -v solc >/dev/null 2>&1 && solc --version | grep -q "$version"; then
  ln -sf "$(command -v solc)" "$target"
  exit 0
fi
cat > "$target" <<WRAP
#!/usr/bin/env bash
exec node "$root/tools/solcjs-standard-json.js" "\$@"
WRAP
chmod +x "$target"
"$target" --version | grep -q "$version" || { echo "solc wrapper reports another version than $version" >&2; exit 1; }
