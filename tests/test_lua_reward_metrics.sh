#!/usr/bin/env bash
# ctest-labels: cpu
# gkd.reward.metrics, the registry of reward/registry.h seen from Lua: the flags of a few entries, and
# the names gkd.run accepts in eval.metrics (gkd.METRICS) are exactly the registry's eval metrics.
set -u
GKD=${GKD_BIN:?}
out=$("$GKD" run -e '
local reg = gkd.reward.metrics
assert(reg.bleu.corpus and reg.bleu.reward and reg.bleu.eval and reg.bleu.higher_is_better, "bleu")
assert(reg.distinct2.corpus and not reg.distinct2.reward, "distinct2")
assert(not reg.divergence.higher_is_better and reg.divergence.eval, "divergence")
assert(not reg.rougeL.corpus and reg.rougeL.reward, "rougeL")
for name, m in pairs(reg) do
  if m.eval then assert(gkd.METRICS[name], "gkd.run does not accept the eval metric " .. name) end
end
for name in pairs(gkd.METRICS) do
  assert(reg[name] and reg[name].eval, "gkd.METRICS has " .. name .. ", the registry has no such eval metric")
end
print("ok")
' 2>&1)
rc=$?
echo "$out"
if [ $rc -ne 0 ] || [ "$out" != "ok" ]; then echo "FAIL: exit $rc"; exit 1; fi
echo "ok   gkd.reward.metrics matches the registry and gkd.run's eval names"
