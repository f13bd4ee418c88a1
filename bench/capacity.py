"""The paper's three effects in kubescribe's capacity model (workflows/capacity/), and kubescribe's own design on
the same backlog. Simulated, not measured: every input is listed with its source (``calibration.py``) in the JSON.

1. Kueue vs no queue: 32 whole-GPU Whisper Jobs (16 medium + 16 large, one created a second) on 8 GPUs,
   BestEffortFIFO, quota 8 -> makespan (paper: up to -15 %);
2. DAS slices (medium on 1g.5gb, large on 3g.20gb, A100-40GB) vs whole GPUs -> mean JCT (paper: -36 %), with
   its sensitivity to the one assumed input it hinges on (the GPU share one Whisper stream keeps busy);
3. prefix-aware vs random routing, TTFT mean and p99 at concurrency 5/10/15/20 (paper: -82 % mean, up to -90 %
   p99), over the regimes the artifacts leave open (16 or 32 transcripts, 40 or 80 GB per replica); and the same
   model on the CPU benchmark's setup (bench/ttft_routing.py) next to what was measured there;
4. kubescribe's design on setup 1's recordings, one choice at a time, against max(work / capacity, longest file).

The recordings' lengths are unknown (Earnings-22 averages ~57 min): each seed draws them anew, and the tables give
the mean and range over seeds. Run: ``.venv/bin/python bench/capacity.py --json bench/results/capacity-sim.json``
(seconds; no GPU, no cluster).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from workflows.capacity import calibration, scenarios  # noqa: E402

SEEDS = range(10)


def spread(values: list[float]) -> dict:
    return {"mean": round(statistics.fmean(values), 4), "min": round(min(values), 4), "max": round(max(values), 4)}


def pct(d: dict) -> str:
    return f"{d['mean']:+.1%} (seeds: {d['min']:+.1%} .. {d['max']:+.1%})"


def setup1(cal) -> dict:
    runs = [scenarios.kueue_vs_no_queue(cal, s) for s in SEEDS]
    return {"runs": runs, "makespan_change": spread([r["makespan_change"] for r in runs]),
            "makespan_change_vs_shuffled": spread([r["makespan_change_vs_shuffled"] for r in runs]),
            "makespan_change_large_first": spread([r["makespan_change_large_first"] for r in runs]),
            "no_queue_makespan_s": spread([r["no_queue"]["makespan_s"] for r in runs])}


def setup2(cal) -> dict:
    out: dict = {}
    for iterations in (4, 16):
        runs = [scenarios.das_vs_whole(cal, s, iterations=iterations) for s in SEEDS]
        out[f"jobs_{2 * iterations}"] = {
            "mean_jct_change": spread([r["mean_jct_change"] for r in runs]),
            "makespan_change": spread([r["makespan_change"] for r in runs]),
            "whole_mean_jct_s": spread([r["whole"]["mean_jct_s"] for r in runs]),
            "das_mean_jct_s": spread([r["das"]["mean_jct_s"] for r in runs])}
    out["sensitivity_32_jobs"] = {}
    for scale in (0.5, 1.0, 2.0, 2.5, 4.0):
        c = scenarios.with_share(cal, scale)
        runs = [scenarios.das_vs_whole(c, s) for s in SEEDS]
        out["sensitivity_32_jobs"][f"x{scale:g}"] = {
            "single_stream_share": {k: c.single_stream_share.value[k] for k in ("medium", "large")},
            "mean_jct_change": spread([r["mean_jct_change"] for r in runs])}
    return out


def setup3() -> dict:
    out: dict = {"paper": {}}
    for gb in (40, 80):
        for n in (16, 32):
            res = scenarios.paper_routing(calibration.qwen3_8b(gb), transcripts=n)
            cell = {}
            for c in (5, 10, 15, 20):
                base, px = res["random"][c], res["prefix"][c]
                cell[c] = {"random": base, "round_robin": res["round-robin"][c], "prefix": px,
                           "mean_change": px["ttft_mean_s"] / base["ttft_mean_s"] - 1,
                           "p99_change": px["ttft_p99_s"] / base["ttft_p99_s"] - 1}
            out["paper"][f"{n}_transcripts_{gb}GB"] = cell
    profile = calibration.measured_cpu_profile()
    bench = calibration.read_result("ttft-routing-cpu.json")
    if profile and bench:
        sim = scenarios.cpu_routing_check(profile, bench)
        out["cpu_check"] = {"profile": profile.inputs(), "simulated": sim, "measured": bench["summary"]}
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args()
    cal = calibration.load()
    s1, s2, s3 = setup1(cal), setup2(cal), setup3()
    design = [scenarios.kubescribe_design(cal, s) for s in SEEDS]
    rows = [{"design": design[0][i]["design"], "pods": design[0][i]["pods"],
             "makespan_s": spread([d[i]["makespan_s"] for d in design]),
             "mean_file_done_s": spread([d[i]["mean_file_done_s"] for d in design]),
             "over_lower_bound": spread([d[i]["over_lower_bound"] for d in design])} for i in range(len(design[0]))]

    print("1. Kueue vs no queue, 32 whole-GPU Jobs on 8 GPUs (paper: makespan up to -15%)")
    print(f"   FIFO quota 8:                    makespan {pct(s1['makespan_change'])}")
    print(f"   FIFO quota 8 vs no queue with a shuffled tie-break: makespan {pct(s1['makespan_change_vs_shuffled'])}")
    print(f"   quota 8, large Jobs prioritised: makespan {pct(s1['makespan_change_large_first'])}")
    print("2. DAS (1g.5gb / 3g.20gb) vs whole GPUs on 8 A100-40GB (paper: mean JCT -36%)")
    for k in ("jobs_8", "jobs_32"):
        print(f"   {k.replace('_', ' '):<8} mean JCT {pct(s2[k]['mean_jct_change'])}, makespan {pct(s2[k]['makespan_change'])}")
    for k, v in s2["sensitivity_32_jobs"].items():
        print(f"   share {k:<5} {v['single_stream_share']}: mean JCT {pct(v['mean_jct_change'])}")
    print("3. prefix-aware vs random routing, TTFT (paper: mean -82%, p99 up to -90%)")
    print("   | setup | c | random mean / p99 | prefix mean / p99 | change mean / p99 |")
    for name, cell in s3["paper"].items():
        for c, v in cell.items():
            print(f"   | {name} | {c} | {v['random']['ttft_mean_s']:.2f} / {v['random']['ttft_p99_s']:.2f} s | "
                  f"{v['prefix']['ttft_mean_s']:.2f} / {v['prefix']['ttft_p99_s']:.2f} s | "
                  f"{v['mean_change']:+.0%} / {v['p99_change']:+.0%} |")
    if "cpu_check" in s3:
        print("   CPU benchmark setup, simulated vs measured (random / prefix mean TTFT):")
        for m in s3["cpu_check"]["measured"]:
            c = m["concurrency"]
            sim = s3["cpu_check"]["simulated"]
            print(f"   c={c}: simulated {sim['random'][c]['ttft_mean_s']:.2f} / {sim['prefix'][c]['ttft_mean_s']:.2f} s, "
                  f"measured {m['random_mean_s']:.2f} / {m['prefix_mean_s']:.2f} s")
    print("4. kubescribe's design on setup 1's recordings (8 whole GPUs, Kueue quota 8), mean over seeds")
    for r in rows:
        print(f"   {r['design']:<72} makespan {r['makespan_s']['mean'] / 3600:.2f} h, "
              f"over lower bound {r['over_lower_bound']['mean']:+.0%}")
    if args.json:
        doc = {"command": " ".join(sys.argv), "seeds": list(SEEDS), "calibration": cal.inputs(),
               "llm_qwen3_8b_40gb": calibration.qwen3_8b(40).inputs(), "kueue_vs_no_queue": s1,
               "das_vs_whole": s2, "routing": s3, "kubescribe_design": rows}
        args.json.write_text(json.dumps(doc, indent=1, default=str) + "\n")
        print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
