"""Analysis speed on one million class-discrimination answers against pandas' own floor.

1. Simulate a class-discrimination export (``analysis.simulate``; default 1000 workers x
   (996 trials + 4 attention checks) = 1,000,000 rows, four methods, between design) and
   write it as CSV and Parquet into a temporary folder.
2. The floor: ``pandas.read_csv`` of the same CSV and a ``groupby("method")`` mean of
   ``correct``: the least any analysis of that file has to do.
3. The whole analysis: ``analysis.load.load_export`` of the CSV (the typed read and checks)
   and ``analysis.report.analyze`` (exclusions, accuracy tables, reaction times, agreement
   with its bootstrap, CSVs, figures, HTML), with a significance hook that runs only the GEE
   method comparisons (``analysis.significance.method_comparisons_gee``) when that exists,
   never the Bayesian/mixed model.

Ratio = whole / floor. Target: <= 10. The per-part times of ``analyze`` are printed so the
part that dominates is visible.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import platform
import tempfile
import time
from pathlib import Path

import pandas as pd

from analysis.load import load_export
from analysis.report import analyze
from analysis.simulate import simulate_class_discrimination

PAPER = {"guided_gradcam": 0.6123, "guided_backprop": 0.4444, "deconvnet": 0.5333, "deconv_gradcam": 0.6037}


def gee_hook() -> tuple[object | None, str]:
    """The GEE-only significance hook, and a line saying what runs."""
    try:
        from analysis.significance import method_comparisons_gee
    except Exception as e:  # noqa: BLE001 - the module is optional here; say why it is skipped
        return None, f"significance: skipped (analysis.significance.method_comparisons_gee unavailable: {e})"

    def hook(kept: pd.DataFrame) -> dict[str, pd.DataFrame]:
        return {"gee": method_comparisons_gee(kept)}

    return hook, "significance: GEE only (method_comparisons_gee); no mixed/Bayesian model"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workers", type=int, default=1000)
    parser.add_argument("--items", type=int, default=996, help="trials per worker (plus 4 checks)")
    parser.add_argument("--n-boot", type=int, default=1000, help="agreement bootstrap resamples")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    print(
        f"machine: {platform.node()} {platform.machine()} {platform.processor() or ''} "
        f"{os.cpu_count()} cpus, python {platform.python_version()}, pandas {pd.__version__}; "
        f"{dt.datetime.now(dt.UTC):%Y-%m-%d %H:%M} UTC"
    )
    t = time.perf_counter()
    df = simulate_class_discrimination(
        args.workers,
        args.items,
        PAPER,
        seed=args.seed,
        design="between",
        attention_fail_rate=0.02,
        fast_rate=0.02,
        incomplete_rate=0.02,
    )
    print(
        f"simulated {len(df):,} answers ({args.workers} workers x {args.items} trials + 4 checks, "
        f"{df['item_id'].nunique():,} items) in {time.perf_counter() - t:.1f} s"
    )

    with tempfile.TemporaryDirectory() as tmp:
        csv, pq = Path(tmp) / "answers.csv", Path(tmp) / "answers.parquet"
        t = time.perf_counter()
        df.to_csv(csv, index=False)
        df.to_parquet(pq, index=False)
        print(
            f"wrote CSV ({csv.stat().st_size / 1e6:.0f} MB) and Parquet ({pq.stat().st_size / 1e6:.0f} MB) "
            f"in {time.perf_counter() - t:.1f} s"
        )
        del df

        t = time.perf_counter()
        floor_means = pd.read_csv(csv).groupby("method")["correct"].mean()
        floor = time.perf_counter() - t
        t = time.perf_counter()
        pd.read_parquet(pq).groupby("method")["correct"].mean()
        floor_pq = time.perf_counter() - t
        print(
            f"floor: read_csv + groupby(method).correct.mean: {floor:.2f} s "
            f"(Parquet: {floor_pq:.2f} s); {len(floor_means)} methods"
        )

        hook, what = gee_hook()
        print(what)
        t = time.perf_counter()
        data = load_export(csv)
        load_s = time.perf_counter() - t
        result = analyze(
            data, None, Path(tmp) / "report", title="bench", source=str(csv), significance=hook, n_boot=args.n_boot
        )
        whole = time.perf_counter() - t
        t = time.perf_counter()
        load_export(pq)
        load_pq = time.perf_counter() - t

    parts = {"load_export (CSV)": load_s, **{k: v for k, v in result["timings"].items() if k != "total"}}
    print("whole analysis parts (s): " + ", ".join(f"{k} {v:.2f}" for k, v in parts.items()))
    if result["significance_error"]:
        print(f"significance hook failed (reported in the HTML): {result['significance_error']}")
    top = max(parts, key=parts.get)
    print(f"largest part: {top} ({parts[top]:.1f} s, {parts[top] / whole:.0%} of the whole)")
    print(f"(load_export of the Parquet file alone: {load_pq:.2f} s)")
    print(f"whole analysis (load_export CSV + analyze, n_boot {args.n_boot}): {whole:.2f} s")
    ratio = whole / floor
    print(f"ratio whole / floor = {ratio:.1f}x (target <= 10x): {'met' if ratio <= 10 else 'NOT met'}")


if __name__ == "__main__":
    main()
