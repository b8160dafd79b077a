"""Runs bench/kernel_assembly_bench (or reads its JSON) and prints the docs/benchmarks.md table.

usage: report_kernel_assembly.py [--json results.json | --bench build/bin/kernel_assembly_bench]
"""
import argparse
import json
import re
import subprocess
import sys


def load(args):
    if args.json:
        with open(args.json) as f:
            return json.load(f)
    out = subprocess.run([args.bench, "--benchmark_format=json"], check=True, capture_output=True, text=True,
                         env={"NTK_LOG_LEVEL": "warning"})
    return json.loads(out.stdout)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--json")
    ap.add_argument("--bench", default="build/bin/kernel_assembly_bench")
    args = ap.parse_args()
    data = load(args)
    ms = {}
    for b in data["benchmarks"]:
        m = re.match(r"(.+?)/(\d+)/(\d+)/", b["name"])
        if not m:
            continue
        name, n, t = m.group(1), int(m.group(2)), int(m.group(3))
        unit = {"ms": 1.0, "us": 1e-3, "ns": 1e-6, "s": 1e3}[b["time_unit"]]
        ms[(name, n, t)] = b["real_time"] * unit
    ctx = data["context"]
    print(f"Machine: {ctx.get('host_name', '?')}, {ctx['num_cpus']} CPUs at {ctx['mhz_per_cpu']} MHz, "
          f"{ctx['date']}")
    print()
    print("| dtype | N | threads | bare GEMM ms (GFLOP/s) | tiled GEMM ms | NTK general ms | vs bare GEMM | "
          "recursion share | NTK symmetric ms | symmetric speed-up | NNGP+NTK general ms | NNGP+NTK symmetric ms |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|")
    for dt in ("f32", "f64"):
        for n in sorted({k[1] for k in ms}):
            for t in sorted({k[2] for k in ms}):
                key = lambda name: ms.get((name, n, t))
                whole, tiled = key(f"gemm_whole/{dt}"), key(f"gemm_tiled/{dt}")
                gen, sym = key(f"assembly/{dt}/general/ntk"), key(f"assembly/{dt}/sym/ntk")
                gen2, sym2 = key(f"assembly/{dt}/general/nngp+ntk"), key(f"assembly/{dt}/sym/nngp+ntk")
                if None in (whole, tiled, gen, sym):
                    continue
                gflops = 2.0 * n * n * 784 / (whole * 1e-3) / 1e9
                print(f"| {dt} | {n} | {t} | {whole:.1f} ({gflops:.0f}) | {tiled:.1f} | {gen:.1f} | "
                      f"{whole / gen:.2f} | {(gen - tiled) / gen:.0%} | {sym:.1f} | {gen / sym:.2f}x | "
                      f"{gen2:.1f} | {sym2:.1f} |")


if __name__ == "__main__":
    sys.exit(main())
