"""Markdown table of an evaluate metrics.json (experiment write-ups), fastest first."""
import json, sys
m = json.load(open(sys.argv[1])); base = m["baseline"]; v = m["variants"]
print("| variant | accuracy [95% CI] | vs baseline, points [95% CI] | McNemar p | verdict | speedup p50 [95% CI] | p50 ms | MACs (nonzero) | floor |")
print("|---|---|---|---:|---|---|---:|---:|---|")
for n, r in sorted(v.items(), key=lambda kv: -kv[1]["speedup_p50"]):
    d = (r["accuracy"] - v[base]["accuracy"]) * 100
    diff = "—" if n == base else f"{d:+.2f} [{r['accuracy_diff_ci_low']*100:+.2f}, {r['accuracy_diff_ci_high']*100:+.2f}]"
    p = "—" if n == base else f"{r['mcnemar_p']:.2g}"
    verdict = "baseline" if n == base else r["accuracy_verdict"]
    macs = r["gflop"] / 2 * 1e3; eff = r["gflop_effective"] / 2 * 1e3
    mac = f"{macs:.1f} M" + (f" ({eff:.1f} M)" if abs(eff - macs) > 0.05 else "")
    ci = f"[{r['speedup_p50_ci_low']:.2f}, {r['speedup_p50_ci_high']:.2f}]"
    print(f"| {n} | {r['accuracy']:.4f} [{r['accuracy_ci_low']:.4f}, {r['accuracy_ci_high']:.4f}] | {diff} | {p} | {verdict} | "
          f"{r['speedup_p50']:.2f}× {ci} | {r['latency_p50_ms']:.3f} | {mac} | {'within' if r['within_floor'] else '**outside**'} |")
