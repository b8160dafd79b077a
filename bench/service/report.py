#!/usr/bin/env python3
"""The docs/benchmarks.md section of the service benchmark from service_bench's JSON files.

    bench/service/report.py --date D --time T --machine M threads_1.json threads_2.json ...

Targets (issue 5): batches of 4096 reach >= 80% of the in-process throughput; the p50 overhead of a
1-row request is <= 1 ms. Both are judged on the sequential single-client Predict numbers.
"""
import argparse
import json
import textwrap

LABELS = {
    "in_process": "in-process `ntk::predict`",
    "predict": "Predict (ntkclient)",
    "predict_stream": "PredictStream (stub)",
    "in_process_2": "in-process, 2 threads",
    "predict_2": "Predict, 2 clients",
}
ORDER = ["in_process", "predict", "predict_stream", "in_process_2", "predict_2"]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--date", required=True)
    ap.add_argument("--time", default="")
    ap.add_argument("--machine", default="")
    ap.add_argument("results", nargs="+")
    a = ap.parse_args()
    runs = [json.load(open(p)) for p in a.results]

    out = []
    out.append(f"## Service overhead on loopback, CPU backend ({a.date})")
    out.append("")
    m = runs[0]["model"]
    loads = ", ".join(
        f"{r['threads']} thread{'s' if r['threads'] != 1 else ''}: {r['load_average_start']:.2f} -> {r['load_average_end']:.2f}"
        for r in runs)
    out.append(
        f"`bench/service/run.sh` ({a.time} UTC; {a.machine}): `build/bin/service_bench` starts a real `ntk-server` "
        f"(`--listen 127.0.0.1:0 --metrics off --log-level warning --backend cpu --threads T`, default 2 predict "
        f"slots) and compares it with `ntk::predict` in the benchmark's own process. Model: N = {m['n']} rows of the "
        f"fit_bench mixture, d = {m['d']}, C = {m['classes']}, depth-3 ReLU (W_std 1.5, b_std 0.1), lambda = "
        f"{m['lambda']:g}, uploaded and fitted through the API (Upload, Fit, WatchFit) and fitted again in process; the "
        f"served model's coefficients and a 64-row prediction are bit-identical to the in-process ones "
        f"({'yes' if all(r['sanity']['predictions_bit_equal'] and r['sanity']['coefficients_bit_equal'] for r in runs) else 'NO'} "
        f"in every run). Each request is one Predict call with `batch_rows` = its rows (one response), float64 in "
        f"and out, through `ntkclient::Client::predict` (encode, call, decode); PredictStream keeps one stream open "
        f"and sends the next batch after the previous answer. Latencies are per request, sequential from one "
        f"client unless marked; \"overhead\" = service p50 (min) - in-process p50 (min). The server, its gRPC threads and the "
        f"client share the 2 vCPUs. Load average (1 min) during the runs: {loads}.")
    out.append("")
    out.append("| threads | rows / request | mode | requests | rows/s | min ms | p50 ms | p99 ms | vs in-process rows/s | "
               "p50 overhead ms | min overhead ms |")
    out.append("|---|---|---|---|---|---|---|---|---|---|---|")
    for r in runs:
        p = r["predict"]
        for bi, base in enumerate(p["in_process"]):
            for mode in ORDER:
                if mode not in p:
                    continue
                s = p[mode][bi]
                ref = p["in_process_2"][bi] if mode.endswith("_2") else base
                ratio = overhead = min_overhead = ""
                if mode not in ("in_process", "in_process_2"):
                    ratio = f"{100 * s['rows_per_s'] / ref['rows_per_s']:.0f}%"
                    overhead = f"{s['p50_ms'] - ref['p50_ms']:+.3f}"
                    min_overhead = f"{s['min_ms'] - ref['min_ms']:+.3f}"
                out.append(
                    f"| {r['threads']} | {s['batch']} | {LABELS[mode]} | {s['requests']} | {s['rows_per_s']:.0f} | "
                    f"{s['min_ms']:.3f} | {s['p50_ms']:.3f} | {s['p99_ms']:.3f} | {ratio} | {overhead} | {min_overhead} |")
    out.append("")
    if any(r.get("breakdown") for r in runs):
        out.append(
            "Where a sequential Predict's time goes (p50 / medians, ms), from one interleaved run against a second "
            "server with `--log-level debug` and the same model imported: A = in process, B = the server's own time "
            "for the call from its request log (model lookup, decoding x, backend and memory, compute, encoding, "
            "Write), C = Predict as the client sees it. Then the pieces, timed in the benchmark with the code the "
            "client and the server run (`ntkwire::encode_matrix`/`decode_matrix`, protobuf serialize/parse); "
            "\"empty RPC\" is a GetModel round trip, gRPC's floor here; the last two columns split the same call made "
            "through the stub: from the call's start to the response read, and from there to the status (trailers).")
        out.append("")
        out.append("| threads | rows | A in-process | B server handler | C Predict | B - A | C - B | client encode x | "
                   "request serialize | request parse | server decode x | response encode | response serialize + "
                   "parse | client decode | empty RPC | stub: to response | stub: response to status |")
        out.append("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|")
        for r in runs:
            for d in r["breakdown"]:
                h = d["server_handler_ms"]
                hs = f"{h:.3f}" if h >= 0 else "n/a"
                ba = f"{h - d['debug_in_process_ms']:+.3f}" if h >= 0 else ""
                cb = f"{d['debug_predict_ms'] - h:+.3f}" if h >= 0 else ""
                out.append(
                    f"| {r['threads']} | {d['batch']} | {d['debug_in_process_ms']:.3f} | {hs} | "
                    f"{d['debug_predict_ms']:.3f} | {ba} | {cb} | {d['client_encode_ms']:.3f} | "
                    f"{d['request_serialize_ms']:.3f} | {d['request_parse_ms']:.3f} | {d['server_decode_ms']:.3f} | "
                    f"{d['response_encode_ms']:.3f} | {d['response_serialize_ms'] + d['response_parse_ms']:.3f} | "
                    f"{d['client_decode_ms']:.3f} | {d['empty_rpc_ms']:.3f} | {d['stub_to_response_ms']:.3f} | "
                    f"{d['stub_to_status_ms']:.3f} |")
        out.append("")
    ups = [r for r in runs if "upload" in r]
    if ups:
        u0 = ups[0]["upload"]
        out.append(
            f"Upload (`Client::upload`, {u0['rows']} x {u0['cols']} float64 = {u0['bytes'] / 2**20:.0f} MiB, 1 MiB "
            f"chunks, no labels; {u0['runs']} runs each, deleted after each; the time ends when the server has "
            f"answered, i.e. after its durable write: temporary file, fsync, rename, directory fsync). MB = 10^6 bytes. "
            f"One more upload goes through the stub to split the client's view (building the payload, streaming the "
            f"chunks, waiting after the last one); the server's steps are then repeated in the benchmark with the "
            f"server's own functions (`UploadAssembler`, `encode_dataset_file`, `write_file_durably`) on the same "
            f"bytes (the durable write and a plain write + fsync of the payload alternate twice, best of each).")
        out.append("")
        out.append("| threads | mean s | MB/s (mean) | MB/s (best) | stub: client encode s | stub: streaming s | "
                   "stub: wait after last chunk s | server steps here: append + SHA-256 s | finish (decode) s | "
                   "encode file (copy + CRC) s | of which: one copy s | CRC-32C s | write_file_durably s | "
                   "plain write + fsync s |")
        out.append("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|")
        for r in ups:
            u = r["upload"]
            out.append(f"| {r['threads']} | {u['mean_s']:.2f} | {u['mb_per_s']:.0f} | {u['best_mb_per_s']:.0f} | "
                       f"{u['raw_encode_s']:.2f} | {u['raw_stream_s']:.2f} | {u['raw_tail_s']:.2f} | "
                       f"{u['server_append_sha256_s']:.2f} | {u['server_finish_decode_s']:.2f} | "
                       f"{u['server_encode_file_s']:.2f} | {u['memcpy_s']:.2f} | {u['crc32c_s']:.2f} | "
                       f"{u['server_write_durably_s']:.2f} | "
                       f"{u['local_write_fsync_s']:.2f} |")
        out.append("")
    verdicts = []
    for r in runs:
        p = r["predict"]
        by_batch = {s["batch"]: i for i, s in enumerate(p["in_process"])}
        if 4096 in by_batch:
            i = by_batch[4096]
            ratio = p["predict"][i]["rows_per_s"] / p["in_process"][i]["rows_per_s"]
            verdicts.append(f"{r['threads']} thread(s): 4096-row throughput {100 * ratio:.0f}% of in-process "
                            f"({'met' if ratio >= 0.8 else 'MISSED'})")
        if 1 in by_batch:
            i = by_batch[1]
            over = p["predict"][i]["p50_ms"] - p["in_process"][i]["p50_ms"]
            verdicts.append(f"{r['threads']} thread(s): 1-row p50 overhead {over:.3f} ms "
                            f"({'met' if over <= 1.0 else 'MISSED'})")
    out.append("Targets (>= 80% of in-process rows/s at 4096 rows; <= 1 ms p50 overhead at 1 row), on the p50 / rows/s "
               "differences of the first table: " + "; ".join(verdicts) + ".")
    # The same from the breakdown, which does not compare two processes' compute under a changing load:
    # overhead = (C - B) + the handler's own non-compute pieces (decode x, encode and serialize the response).
    direct = []
    for r in runs:
        for d in r.get("breakdown", []):
            if d["server_handler_ms"] < 0:
                continue
            over = (d["debug_predict_ms"] - d["server_handler_ms"]) + d["server_decode_ms"] + d["response_encode_ms"] + \
                d["response_serialize_ms"]
            comp = d["debug_in_process_ms"]
            direct.append(f"{r['threads']} thread(s), {d['batch']} row(s): {over:.3f} ms "
                          f"(= {100 * comp / (comp + over):.0f}% of in-process throughput)")
    if direct:
        out.append("")
        out.append("Overhead estimated from the breakdown instead, (C - B) + decoding x + encoding and serializing the "
                   "response: " + "; ".join(direct) + ".")
    # Prose at the width of the rest of docs/benchmarks.md; tables as they are.
    print("\n".join(line if line.startswith("|") else textwrap.fill(line, 110, break_on_hyphens=False)
                    for line in out))


if __name__ == "__main__":
    main()
