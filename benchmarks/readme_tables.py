"""The README's benchmark tables, from the JSON of ``python -m bnkernels bench``.

    python -m bnkernels bench --threads 1,2 --dtype float32,float64 --json bench.json
    python benchmarks/readme_tables.py bench.json

Prints Markdown: standard numerics with reused outputs, one table per
(dtype, threads), then the Darknet-exact forward+backward rows (when the run
has them). A channels-last run (``--layout NHWC``) gets the layout in each
table's heading; a column the run left out (``--no-numpy``) shows "-".
"""
import json
import sys


def ms(value):
    return f"{value:.3f}" if value < 1 else f"{value:.2f}"


def standard_table(results, dtype, threads, layout="NCHW"):
    title = f"{dtype}, {threads} thread{'s' if threads > 1 else ''}"
    if layout != "NCHW":
        title = f"{layout}, {title}"
    lines = [f"#### {title}", "",
             "| shape | op | bnkernels ms | PyTorch ms | NumPy ms | vs PyTorch | vs NumPy "
             "| GB/s | % bw |",
             "|---|---|--:|--:|--:|--:|--:|--:|--:|"]
    for r in results:
        if (r["numerics"], r["dtype"], r["threads"], r["policy"]) != \
                ("standard", dtype, threads, "reused"):
            continue
        torch, numpy = r["torch"], r["numpy"]
        vs_torch = f"{r['speedup_vs_torch']:.2f}x" if torch else "-"
        vs_numpy = f"{r['speedup_vs_numpy']:.1f}x" if numpy else "-"
        lines.append(
            f"| {'x'.join(map(str, r['shape']))} | {r['op']} | {ms(r['bnkernels']['median_ms'])} "
            f"| {ms(torch['median_ms']) if torch else '-'} "
            f"| {ms(numpy['median_ms']) if numpy else '-'} | {vs_torch} "
            f"| {vs_numpy} | {r['gbps']:.0f} "
            f"| {100 * r['bandwidth_fraction']:.0f}% |")
    return lines


def darknet_table(results):
    lines = ["| shape | dtype | policy | Darknet-exact forward+backward ms (1 thread) |",
             "|---|---|---|--:|"]
    for r in results:
        if r["numerics"] == "darknet" and r["op"] == "forward+backward" and r["threads"] == 1:
            lines.append(f"| {'x'.join(map(str, r['shape']))} | {r['dtype']} | {r['policy']} "
                         f"| {ms(r['bnkernels']['median_ms'])} |")
    return lines


def main(path):
    with open(path) as f:
        report = json.load(f)
    results = report["results"]
    machine = report["machine"]
    cpu = machine["cpu_model"]
    if machine.get("cpu_family") is not None:
        cpu += f" (family {machine['cpu_family']}, model {machine['cpu_model_number']}"
        if machine.get("l1d_cache_bytes"):
            cpu += f", {machine['l1d_cache_bytes'] // 1024} KB L1d per core"
        if machine.get("l3_cache_bytes"):
            cpu += f", {machine['l3_cache_bytes'] // 2**20} MB L3"
        cpu += ")"
    print(f"Machine: {cpu}, {machine['logical_cores']} logical cores; "
          f"Python {machine['python']}, NumPy {machine['numpy']}, PyTorch {machine['torch']}, "
          f"bnkernels {machine['bnkernels']}. Copy bandwidth in the same run: "
          + ", ".join(f"{b['gbps']:.1f} GB/s on {b['threads']} thread(s)"
                      for b in report["bandwidth"]) + ".")
    settings = report["settings"]
    layout = results[0].get("layout", "NCHW") if results else "NCHW"
    for dtype in settings["dtypes"]:
        for threads in settings["threads"]:
            print()
            print("\n".join(standard_table(results, dtype, threads, layout)))
    darknet = darknet_table(results)
    if len(darknet) > 2:
        print()
        print("\n".join(darknet))


if __name__ == "__main__":
    main(sys.argv[1])
