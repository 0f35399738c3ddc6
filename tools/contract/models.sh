#!/usr/bin/env bash
# make contract-models: validate schemas/asyncapi.json with the AsyncAPI CLI, generate Java and
# Go models from it with Modelina, compile them, and check their names. Both tools are pinned in
# tools/contract/package-lock.json and installed with `npm ci` into .cache/node/<lock digest>
# (installed once per lock). Needs node, npm, javac and go (go on PATH or in /usr/local/go/bin).
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/../.." && pwd)
TOOLS=$ROOT/tools/contract
DOCUMENT=${1:-$ROOT/schemas/asyncapi.json}
OUT=${CONTRACT_MODELS_DIR:-$ROOT/.cache/contract-models}
PATH=$PATH:/usr/local/go/bin

missing=()
for tool in node npm javac go; do
	command -v "$tool" >/dev/null || missing+=("$tool")
done
if ((${#missing[@]})); then
	echo "contract-models: missing ${missing[*]} (Node with npm, a JDK and Go are needed: README, Quick start)" >&2
	exit 2
fi

digest=$(cat "$TOOLS/package.json" "$TOOLS/package-lock.json" | sha256sum | cut -c1-16)
NODE_DIR=$ROOT/.cache/node/$digest
if [[ ! -f $NODE_DIR/.installed ]]; then
	rm -rf "$NODE_DIR" && mkdir -p "$NODE_DIR"
	cp "$TOOLS/package.json" "$TOOLS/package-lock.json" "$NODE_DIR/"
	(cd "$NODE_DIR" && npm ci --no-audit --no-fund --loglevel=error >/dev/null)
	touch "$NODE_DIR/.installed"
fi

# The CLI sends usage metrics unless its config file says not to: it says not to.
export ASYNCAPI_METRICS_CONFIG_PATH=$NODE_DIR/analytics.json
echo '{"analyticsEnabled":"false","infoMessageShown":"true","userID":"none"}' >"$ASYNCAPI_METRICS_CONFIG_PATH"

echo "== asyncapi validate"
validation=$("$NODE_DIR/node_modules/.bin/asyncapi" validate "$DOCUMENT" 2>&1) || {
	echo "$validation" >&2
	echo "contract-models: $DOCUMENT is not a valid AsyncAPI document" >&2
	exit 1
}
echo "$validation"

echo "== modelina (Java, Go)"
rm -rf "$OUT" && mkdir -p "$OUT"
cp "$TOOLS/models.mjs" "$NODE_DIR/models.mjs"
# models.mjs fails when a message has no model, or a name is unnamed or spelled with "Minus".
node "$NODE_DIR/models.mjs" "$DOCUMENT" "$OUT" >"$OUT/models.txt"
sort -u "$OUT/models.txt"

echo "== javac"
mkdir -p "$OUT/classes"
javac -d "$OUT/classes" $(find "$OUT/java" -name '*.java')

echo "== go build"
printf 'module example.com/contract\n\ngo 1.22\n' >"$OUT/go/go.mod"
(cd "$OUT/go" && GOFLAGS=-mod=mod GOTOOLCHAIN=local go build ./... && go vet ./...)

echo "contract-models: ok ($(wc -l <"$OUT/models.txt") models in $OUT)"
