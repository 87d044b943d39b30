#!/usr/bin/env bash
# Smoke fuzzing for CI: a short campaign on the fixed model must find nothing, and a short
# campaign with each modelled switch on must find it and leave a reproducer that replays.
set -euo pipefail
cd "$(dirname "$0")/.."

cargo build --release -p harness --bin mmfuzz
mmfuzz=target/release/mmfuzz
out=target/ci-smoke
rm -rf "$out"

echo "== fixed model, PCT, 30s: must find nothing"
"$mmfuzz" fuzz --engine pct --duration 30s --seed 1 --jobs 2 --out "$out/fixed-pct"
echo "== fixed model, random walk, 15s: must find nothing"
"$mmfuzz" fuzz --engine random --duration 15s --seed 1 --out "$out/fixed-random"

for bug in gup-no-head-recheck gup-pin-bias-early collapse-publish-early buildid-no-uptodate buildid-nmi-spin hibernate-trust-present hibernate-map-unchecked retract-no-recheck retract-no-notifier pin-writeback-race longterm-pin-file-write vmap-dirty-after-notifier; do
  echo "== $bug, PCT: must find it"
  set +e
  "$mmfuzz" fuzz --bug "$bug" --max-execs 50000 --seed 1 --stop-on-crash --out "$out/$bug"
  status=$?
  set -e
  if [ "$status" -ne 1 ]; then
    echo "smoke: $bug not found (exit status $status)" >&2
    exit 1
  fi
  repro=$(ls "$out/$bug"/crashes/*/repro.mmprog | head -1)
  set +e
  "$mmfuzz" run "$repro"
  status=$?
  set -e
  if [ "$status" -ne 1 ]; then
    echo "smoke: the reproducer $repro does not replay (exit status $status)" >&2
    exit 1
  fi
done
echo "smoke fuzz: ok"
