"""The plain-PyTorch reference on the GPU, on the shapes zofo's GPU benchmark measured.

Run by scripts/test-gpu.sh after test/cuda/test_engine.cu has written its JSON:

    python3 bench/reference/gpu_compare.py --zofo gpu-results.json --out gpu-vs-torch.json

For each model in the zofo results it builds the same Llama shape with llama_ref.py's
model (bf16 weights on the GPU, LoRA r8 on q/v, the last-position 2-candidate loss) and
times, with torch.cuda.synchronize around each run: a forward, MeZO's ZO step
(per-tensor torch.manual_seed + torch.normal, +eps/-2eps/+eps, z regenerated for the
update), the straightforward hybrid step of docs/algorithm.md §2, and one perturbation
pass; peak device memory (torch.cuda.max_memory_allocated) of each. Then it prints one
table of zofo / PyTorch ratios from the two runs on this machine and ends with
"N passed, N failed" (a failure: the reference could not run).
"""
import argparse
import json
import os
import statistics
import sys
import time

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import llama_ref  # noqa: E402


def sync(device):
    if device == "cuda":
        torch.cuda.synchronize()


def timed(fn, reps, device):
    fn()
    sync(device)
    ts = []
    for _ in range(reps):
        t0 = time.perf_counter()
        fn()
        sync(device)
        ts.append(time.perf_counter() - t0)
    return statistics.median(ts)


def measure(shape, reps, device="cuda"):
    a = argparse.Namespace(vocab=shape["vocab"], dim=shape["dim"], layers=shape["layers"], heads=shape["heads"],
                           ffn=shape["ffn"], batch=shape["batch"], seq=shape["seq"])
    model, base, adapters = llama_ref.build(a)
    model.to(device=device, dtype=torch.bfloat16)
    base = [(n, p) for n, p in model.named_parameters() if "lora_" not in n]
    adapters = [p for n, p in model.named_parameters() if "lora_" in n]
    batch = tuple(t.to(device) for t in llama_ref.make_batch(a))
    st = llama_ref.Stepper(model, base, adapters, batch)
    out = {"model": shape["model"]}
    for kind in ("forward", "zo", "hybrid", "perturb"):
        if device == "cuda":
            torch.cuda.empty_cache()
            torch.cuda.reset_peak_memory_stats()
        out[kind + "_s"] = timed(getattr(st, kind), reps, device)
        out[kind + "_peak_bytes"] = torch.cuda.max_memory_allocated() if device == "cuda" else 0
    out["model_bytes"] = sum(p.numel() * p.element_size() for p in model.parameters())
    del model, base, adapters, st
    if device == "cuda":
        torch.cuda.empty_cache()
    return out


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--zofo", required=True)
    p.add_argument("--out", required=True)
    p.add_argument("--reps", type=int, default=3)
    p.add_argument("--large", action="store_true", help="accepted for symmetry; the shapes come from --zofo")
    p.add_argument("--device", default="cuda", help="cuda; cpu only to check this script on a machine without a GPU")
    a = p.parse_args()
    with open(a.zofo) as f:
        zofo = json.load(f)
    rows, failed = [], 0
    for z in zofo["results"]:
        if z["kv_heads"] != z["heads"]:
            print(f"{z['model']}: skipped (the reference has no grouped-query attention)")
            continue
        try:
            r = measure(z, a.reps, a.device)
        except Exception as e:  # noqa: BLE001 - any failure of the reference is reported, not hidden
            print(f"FAIL {z['model']}: the PyTorch reference did not run: {e!r}")
            failed += 1
            continue
        rows.append((z, r))
    print("\n%-10s %-12s %12s %12s %10s %11s %11s" % ("model", "step", "zofo s", "torch s", "speed-up",
                                                    "peak zofo", "peak torch"))
    pairs = [("forward", "forward_s", "forward", "peak_forward_bytes"),
             ("ZO step", "zo_step_s", "zo", "peak_hybrid_bytes"),
             ("hybrid step", "hybrid_step_s", "hybrid", "peak_hybrid_bytes"),
             ("perturb", "perturb_s", "perturb", None)]
    name = torch.cuda.get_device_name(0) if a.device == "cuda" else a.device
    report = {"device": name, "torch": torch.__version__, "rows": []}
    for z, r in rows:
        for label, zkey, rkind, zpeak in pairs:
            speed = r[rkind + "_s"] / z[zkey]
            peak_z = z[zpeak] / 2 ** 30 if zpeak else float("nan")
            peak_r = r[rkind + "_peak_bytes"] / 2 ** 30
            print("%-10s %-12s %12.4f %12.4f %9.2fx %9.2f G %9.2f G" % (z["model"], label, z[zkey], r[rkind + "_s"],
                                                                        speed, peak_z, peak_r))
            report["rows"].append({"model": z["model"], "step": label, "zofo_s": z[zkey], "torch_s": r[rkind + "_s"],
                                   "speedup": speed, "zofo_peak_bytes": z[zpeak] if zpeak else None,
                                   "torch_peak_bytes": r[rkind + "_peak_bytes"]})
    print("bf16 weights on both sides. zofo: ZO-only step with the forward estimator (2 forwards); MeZO: central\n"
          "(2 forwards) + 4 z generations. zofo's ZO-step peak is its hybrid step's (an upper bound). speed-up =\n"
          "torch time / zofo time. Peak: device memory allocated at the peak of that step, model included.")
    with open(a.out, "w") as f:
        json.dump(report, f, indent=1)
    print(f"wrote {a.out}")
    print(f"{len(rows)} passed, {failed} failed")
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
