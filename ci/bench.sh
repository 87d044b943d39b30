#!/usr/bin/env bash
# The measurements of BENCHMARKS.md. Run on an idle machine; takes a few minutes.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release -p harness --bin mmfuzz
mmfuzz=target/release/mmfuzz

echo "== throughput: random 3 threads x 6 ops, fixed model, one core"
for order in 2 3 4; do "$mmfuzz" bench throughput --order "$order" | tail -1; done
echo "== checker cost (CPU time with and without it, 5 processes each)"
for i in 1 2 3 4 5; do /usr/bin/time -f "with check: %U user %S sys" "$mmfuzz" bench throughput --runs 1 > /dev/null; done
for i in 1 2 3 4 5; do /usr/bin/time -f "without:    %U user %S sys" "$mmfuzz" bench throughput --runs 1 --no-check > /dev/null; done
"$mmfuzz" bench checker --threads 3 --ops 6
"$mmfuzz" bench checker
echo "== raw facade"
"$mmfuzz" bench facade | tail -1
"$mmfuzz" bench facade --every 0 | tail -1
echo "== executions to find, seed program without its hand-written schedule (10 seeds)"
for bug in gup-no-head-recheck gup-pin-bias-early collapse-publish-early buildid-no-uptodate buildid-nmi-spin hibernate-trust-present hibernate-map-unchecked retract-no-recheck retract-no-notifier pin-writeback-race longterm-pin-file-write vmap-dirty-after-notifier; do "$mmfuzz" bench find --bug "$bug"; done
"$mmfuzz" bench find --bug buildid-no-uptodate --program corpora/seeds/buildid-collapse.mmprog
echo "== campaign time-to-bug: PCT campaign from the embedded corpus, 5 seeds"
for bug in gup-no-head-recheck gup-pin-bias-early; do
  for seed in 1 2 3 4 5; do
    out=$(mktemp -d)
    start=$(date +%s.%N)
    "$mmfuzz" fuzz --bug "$bug" --seed "$seed" --stop-on-crash --max-execs 1000000 --quiet --out "$out" | grep '^found' || true
    end=$(date +%s.%N)
    echo "$bug seed $seed: $(echo "$end - $start" | bc) s"
    rm -rf "$out"
  done
done
