"""The plain-PyTorch reference on the GPU, on the shapes zofo's GPU benchmark measured.

Run by scripts/test-gpu.sh after test/cuda/test_engine.cu has written its JSON:

    python3 bench/reference/gpu_compare.py --zofo gpu-results.json --out gpu-vs-torch.json

For each model zofo measured in bf16 compute it builds the same Llama shape with
llama_ref.py's model (bf16 weights on the GPU, LoRA r8 on q/v, the last-position
2-candidate loss) and times, under torch.autocast(bfloat16) (so softmax, log-softmax and
the loss run in fp32, as in zofo) with torch.cuda.synchronize around each run: a forward,
MeZO's ZO step (per-tensor torch.manual_seed + torch.normal, +eps/-2eps/+eps, z
regenerated for the update), the PEFT-style LoRA step (autograd forward + backward, SGD
on the adapters), the straightforward hybrid step of docs/algorithm.md §2, and one
perturbation pass; peak device memory (torch.cuda.max_memory_allocated) of each. Then it
prints one table of zofo / PyTorch ratios from the two runs on this machine, the
targets of the GPU benchmark:

  forward / bf16 GEMM rate   zofo's forward_over_gemm_floor             target >= 0.6
  hybrid / (2f + 1b)         zofo's hybrid_over_2fwd_1bwd               target <= 1.15
  torch hybrid / zofo hybrid the hybrid step's speed-up over PyTorch    target >= 2
  llama-30b peak / weights   zofo's peak_hybrid_over_weights (141 GB)   target <= 1.1 (+ activations)

and ends with "N passed, N failed" (a failure: the reference could not run; a target
missed is reported, not failed: these are measurements).
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


def autocast(device):
    if device == "cuda":
        return torch.autocast(device_type="cuda", dtype=torch.bfloat16)
    return torch.autocast(device_type="cpu", dtype=torch.bfloat16)


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
    for kind in ("forward", "zo", "lora", "hybrid", "perturb"):
        if device == "cuda":
            torch.cuda.empty_cache()
            torch.cuda.reset_peak_memory_stats()
        step = getattr(st, kind)

        def run(step=step):
            with autocast(device):
                return step()

        out[kind + "_s"] = timed(run, reps, device)
        out[kind + "_peak_bytes"] = torch.cuda.max_memory_allocated() if device == "cuda" else 0
    out["model_bytes"] = sum(p.numel() * p.element_size() for p in model.parameters())
    del model, base, adapters, st
    if device == "cuda":
        torch.cuda.empty_cache()
    return out


def targets(zofo, rows):
    """The GPU benchmark's target ratios, each with its value, target and whether it was met."""
    out = []

    def add(model, name, value, target, met):
        out.append({"model": model, "ratio": name, "value": value, "target": target, "met": bool(met)})

    for z in zofo["results"]:
        if z.get("compute") != "bf16":
            continue
        add(z["model"], "forward / bf16 GEMM rate (forward_over_gemm_floor)", z["forward_over_gemm_floor"], ">= 0.6",
            z["forward_over_gemm_floor"] >= 0.6)
        add(z["model"], "hybrid step / (2 forwards + 1 adapter backward)", z["hybrid_over_2fwd_1bwd"], "<= 1.15",
            z["hybrid_over_2fwd_1bwd"] <= 1.15)
    for z, r in rows:
        speed = r["hybrid_s"] / z["hybrid_step_s"]
        add(z["model"], "PyTorch hybrid step time / zofo hybrid step time", speed, ">= 2", speed >= 2)
    m = zofo.get("memory")
    if m:
        add(m["model"], "peak device memory / weight bytes", m["peak_hybrid_over_weights"],
            "<= 1.1 + activations/weights",
            m["peak_hybrid_bytes"] <= 1.1 * m["weight_bytes"] + m["activation_bytes"])
    print("\ntargets:")
    for t in out:
        print("  %-10s %-52s %8.3f  target %-30s %s" % (t["model"], t["ratio"], t["value"], t["target"],
                                                       "met" if t["met"] else "MISSED"))
    if not m:
        print("  llama-30b peak memory: not measured on this GPU (needs >= 120 GiB)")
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
        if z.get("compute", "fp32") != "bf16":
            continue  # the reference runs in bf16: compare like with like
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
             ("LoRA step", "forward_adapter_backward_s", "lora", "peak_hybrid_bytes"),
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
    print("bf16 weights and bf16 compute on both sides (torch: autocast). zofo: ZO-only step with the forward\n"
          "estimator (2 forwards); MeZO: central (2 forwards) + 4 z generations. zofo's LoRA row: forward + adapter\n"
          "backward (no optimizer pass); torch's: PEFT-style autograd step with SGD. zofo's ZO/LoRA peaks are its\n"
          "hybrid step's (an upper bound). speed-up = torch time / zofo time. Peak: device memory allocated at the\n"
          "peak of that step, model included.")
    report["targets"] = targets(zofo, rows)
    with open(a.out, "w") as f:
        json.dump(report, f, indent=1)
    print(f"wrote {a.out}")
    print(f"{len(rows)} passed, {failed} failed")
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
