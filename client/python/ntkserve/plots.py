"""Plot helpers (matplotlib): reliability diagram and per-class confidence / uncertainty histograms."""
import numpy as np


def _pyplot():
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError as e:  # pragma: no cover
        raise ImportError("plots need matplotlib: pip install 'ntkserve[plot]'") from e
    return plt


def reliability(probs, labels, bins=15):
    """Per confidence bin: (lower, upper, count, mean confidence, accuracy) and the ECE."""
    probs = np.asarray(probs)
    labels = np.asarray(labels)
    confidence = probs.max(axis=1)
    correct = probs.argmax(axis=1) == labels
    edges = np.linspace(0, 1, bins + 1)
    rows, ece = [], 0.0
    for i in range(bins):
        inside = (confidence > edges[i]) & (confidence <= edges[i + 1]) if i else (confidence <= edges[1])
        n = int(inside.sum())
        conf = float(confidence[inside].mean()) if n else 0.0
        acc = float(correct[inside].mean()) if n else 0.0
        ece += n / len(labels) * abs(acc - conf)
        rows.append((edges[i], edges[i + 1], n, conf, acc))
    return rows, ece


def reliability_diagram(probs, labels, path, bins=15, title="Reliability"):
    """Saves a reliability diagram (accuracy against confidence per bin, with counts) as PNG."""
    plt = _pyplot()
    rows, ece = reliability(probs, labels, bins)
    fig, (ax, hist) = plt.subplots(2, 1, figsize=(5, 6), gridspec_kw={"height_ratios": [3, 1]}, sharex=True)
    centers = [(lo + hi) / 2 for lo, hi, *_ in rows]
    width = 1.0 / bins
    ax.bar(centers, [r[4] for r in rows], width=width * 0.95, color="#4878d0", edgecolor="k", label="accuracy")
    ax.plot([0, 1], [0, 1], "k--", lw=1, label="perfect calibration")
    ax.set_ylabel("accuracy")
    ax.set_title(f"{title} (ECE {ece:.4f})")
    ax.legend(loc="upper left")
    hist.bar(centers, [r[2] for r in rows], width=width * 0.95, color="#999999")
    hist.set_xlabel("confidence")
    hist.set_ylabel("count")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return ece


def uncertainty_histograms(values, labels, predicted, path, name="mutual information", class_names=None):
    """Saves per-class histograms of an uncertainty (or confidence) value, split into correct and wrong
    predictions, as PNG."""
    plt = _pyplot()
    values, labels, predicted = map(np.asarray, (values, labels, predicted))
    classes = np.unique(labels)
    cols = min(5, len(classes))
    rows = int(np.ceil(len(classes) / cols))
    fig, axes = plt.subplots(rows, cols, figsize=(3 * cols, 2.4 * rows), squeeze=False)
    bins = np.linspace(values.min(), values.max() if values.max() > values.min() else values.min() + 1, 25)
    for ax, c in zip(axes.flat, classes):
        inside = labels == c
        right = inside & (predicted == labels)
        wrong = inside & (predicted != labels)
        ax.hist(values[right], bins=bins, alpha=0.7, label="correct", color="#4878d0")
        ax.hist(values[wrong], bins=bins, alpha=0.7, label="wrong", color="#d65f5f")
        ax.set_title(str(class_names[c]) if class_names is not None else f"class {c}", fontsize=9)
    for ax in list(axes.flat)[len(classes):]:
        ax.axis("off")
    axes.flat[0].legend(fontsize=7)
    fig.suptitle(name)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
