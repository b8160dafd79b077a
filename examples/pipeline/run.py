"""A pandas/numpy batch pipeline through ntk-server's PredictStream: a source yields pandas DataFrame
chunks of digits-like rows, each chunk goes out as one request of one bidirectional gRPC stream
(Client.predict_stream), the predictions come back in order and go to a sink (.npy files, or CSV)
and a running per-class aggregate. Prints rows/s.

    python examples/pipeline/run.py [--rows 1000000] [--chunk-rows 8192] [--out DIR] [--server HOST:PORT]

The model is an NTK classifier fitted on scikit-learn's digits (d = 64). The source makes each row from a
random digit image with pixel noise, a random brightness and random dead pixels, so that the true label
of every row is known and the pipeline can report its accuracy as a sanity check.
"""
import argparse
import collections
import json
import os
import platform
import sys
import time

import numpy as np
import pandas as pd
from sklearn.datasets import load_digits

import ntkserve

HERE = os.path.dirname(os.path.abspath(__file__))
FEATURES = [f"px{i:02d}" for i in range(64)]


def source(images, labels, rows, chunk_rows, seed=0):
    """Yields DataFrames (columns id, label, px00..px63) of chunk_rows rows until `rows` rows are made."""
    rng = np.random.default_rng(seed)
    made = 0
    while made < rows:
        n = min(chunk_rows, rows - made)
        pick = rng.integers(0, len(images), n)
        x = images[pick] * rng.uniform(0.7, 1.1, (n, 1)) + rng.normal(0.0, 0.08, (n, 64))
        x[rng.random((n, 64)) < 0.03] = 0.0
        frame = pd.DataFrame(np.clip(x, 0.0, 1.0).astype(np.float32), columns=FEATURES)
        frame.insert(0, "label", labels[pick].astype(np.int16))
        frame.insert(0, "id", np.arange(made, made + n, dtype=np.int64))
        made += n
        yield frame


class Sink:
    """Writes predicted class (int16) and its probability (float32) per row: two .npy files filled in
    place (np.lib.format.open_memmap), or one CSV appended chunk by chunk; 'none' writes nothing."""

    def __init__(self, kind, folder, rows):
        self.kind, self.paths = kind, []
        if kind == "npy":
            self.paths = [os.path.join(folder, "predicted_class.npy"), os.path.join(folder, "confidence.npy")]
            self.cls = np.lib.format.open_memmap(self.paths[0], mode="w+", dtype=np.int16, shape=(rows,))
            self.conf = np.lib.format.open_memmap(self.paths[1], mode="w+", dtype=np.float32, shape=(rows,))
        elif kind == "csv":
            self.paths = [os.path.join(folder, "predictions.csv")]
            self.header = True
            open(self.paths[0], "w").close()

    def write(self, ids, predicted, confidence):
        if self.kind == "npy":
            self.cls[ids] = predicted
            self.conf[ids] = confidence
        elif self.kind == "csv":
            pd.DataFrame({"id": ids, "predicted": predicted, "confidence": confidence}).to_csv(
                self.paths[0], mode="a", header=self.header, index=False, float_format="%.5f")
            self.header = False

    def close(self):
        if self.kind == "npy":
            self.cls.flush()
            self.conf.flush()
            del self.cls, self.conf


def throughput_plot(times, rows_done, chunk_rows, path):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    times, rows_done = np.asarray(times), np.asarray(rows_done)
    fig, (a, b) = plt.subplots(1, 2, figsize=(9, 3.3))
    a.plot(times, rows_done / 1e6, color="#4878d0")
    a.set_xlabel("seconds")
    a.set_ylabel("rows predicted (millions)")
    a.set_title(f"{rows_done[-1] / times[-1]:,.0f} rows/s overall")
    gaps = np.diff(np.concatenate([[0.0], times]))
    rate = np.diff(np.concatenate([[0], rows_done])) / np.maximum(gaps, 1e-9)
    b.hist(rate / 1e3, bins=30, color="#999999", edgecolor="k")
    b.set_xlabel(f"rows/s per response (thousands), chunks of {chunk_rows}")
    b.set_ylabel("responses")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rows", type=int, default=1_000_000, help="rows to stream (default %(default)d)")
    ap.add_argument("--chunk-rows", type=int, default=8192, help="rows per DataFrame chunk = per request")
    ap.add_argument("--out", default=os.path.join(HERE, "output"), help="output folder (default: %(default)s)")
    ap.add_argument("--sink", choices=("npy", "csv", "none"), default="npy",
                    help="where per-row predictions go (default npy; pyarrow/parquet is not assumed)")
    ap.add_argument("--server", default=None, help="HOST:PORT of an ntk-server (default: start a local one)")
    ap.add_argument("--train-size", type=int, default=0, help="fit on only this many digits (0: all 1797)")
    ap.add_argument("--lambda", dest="lam", type=float, default=1e-5)
    ap.add_argument("--float32", action="store_true", help="ask for float32 results (half the response bytes)")
    args = ap.parse_args(argv)
    os.makedirs(args.out, exist_ok=True)

    x, y = load_digits(return_X_y=True)
    x = x / 16.0
    if args.train_size:
        x, y = x[:args.train_size], y[:args.train_size]

    started = time.time()
    with ntkserve.Client(args.server) as client:
        name = f"pipeline-digits-{os.getpid()}-{int(started)}"
        client.upload(name, x, y.astype(np.int64), num_classes=10)
        t0 = time.time()
        info = client.fit(name, lambda_=args.lam, depth=3, w_std=1.5, b_std=0.1,
                          description="examples/pipeline").wait()
        fit_s = time.time() - t0
        print(f"model {info.model_id}: digits, {len(x)} rows, d = 64, fitted in {fit_s:.1f} s")

        sink = Sink(args.sink, args.out, args.rows)
        pending = collections.deque()  # (ids, labels) of the chunks sent and not yet answered
        source_s = [0.0]

        def batches():
            it = source(x, y, args.rows, args.chunk_rows)
            while True:
                t = time.perf_counter()
                frame = next(it, None)
                if frame is None:
                    return
                features = frame[FEATURES].to_numpy()
                pending.append((frame["id"].to_numpy(), frame["label"].to_numpy()))
                source_s[0] += time.perf_counter() - t
                yield features

        counts = np.zeros(10, np.int64)
        conf_sum = np.zeros(10)
        correct = 0
        done = 0
        times, rows_done = [], []
        t0 = time.perf_counter()
        for pred in client.predict_stream(info.model_id, batches(), float32_results=args.float32):
            ids, labels = pending.popleft()
            if len(ids) != len(pred.classes):
                raise RuntimeError(f"response of {len(pred.classes)} rows for a chunk of {len(ids)}")
            confidence = pred.probs.max(axis=1)
            sink.write(ids, pred.classes.astype(np.int16), confidence.astype(np.float32))
            counts += np.bincount(pred.classes, minlength=10)
            conf_sum += np.bincount(pred.classes, weights=confidence, minlength=10)
            correct += int(np.sum(pred.classes == labels))
            done += len(ids)
            times.append(time.perf_counter() - t0)
            rows_done.append(done)
        stream_s = time.perf_counter() - t0
        sink.close()
        client.delete_model(info.model_id)
        client.delete_dataset(name)

    if done != args.rows or pending:
        raise RuntimeError(f"{done} rows came back for {args.rows} sent")
    rate = done / stream_s
    throughput_plot(times, rows_done, args.chunk_rows, os.path.join(args.out, "throughput.png"))
    load = os.getloadavg()[0]
    print(f"streamed {done:,} rows in {len(times)} chunks of {args.chunk_rows} in {stream_s:.1f} s: "
          f"{rate:,.0f} rows/s (source {source_s[0]:.1f} s of it); accuracy against the source labels "
          f"{correct / done:.4f}")
    print("predicted class   " + " ".join(f"{c:>7d}" for c in range(10)))
    print("rows              " + " ".join(f"{n:>7d}" for n in counts))
    print("mean confidence   " + " ".join(f"{s / max(n, 1):7.3f}" for s, n in zip(conf_sum, counts)))
    print(f"total {time.time() - started:.1f} s; load average {load:.2f} on {os.cpu_count()} CPUs")
    results = {
        "example": "pipeline",
        "date": time.strftime("%Y-%m-%d"),
        "host": {"cpus": os.cpu_count(), "load_average_1m": round(load, 2), "python": platform.python_version()},
        "model": {"train_rows": int(len(x)), "features": 64, "lambda": args.lam, "depth": 3, "w_std": 1.5,
                  "b_std": 0.1, "fit_seconds": round(fit_s, 2)},
        "rows": done, "chunk_rows": args.chunk_rows, "chunks": len(times), "sink": args.sink,
        "float32_results": args.float32,
        "stream_seconds": round(stream_s, 2), "rows_per_second": round(rate, 1),
        "source_seconds": round(source_s[0], 2),
        "accuracy_vs_source_labels": round(correct / done, 5),
        "predicted_class_counts": counts.tolist(),
        "mean_confidence_per_class": [round(s / max(n, 1), 4) for s, n in zip(conf_sum, counts)],
        "total_seconds": round(time.time() - started, 2),
        "files": ["throughput.png"] + [os.path.basename(p) for p in sink.paths],
    }
    with open(os.path.join(args.out, "results.json"), "w") as f:
        json.dump(results, f, indent=2)
    print(f"wrote {args.out}/results.json, throughput.png" + "".join(", " + os.path.basename(p) for p in sink.paths))
    return results


if __name__ == "__main__":
    main()
