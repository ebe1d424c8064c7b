"""Plain-PyTorch reference for bench/torch.ts (no transformers, no peft).

Same Llama-shaped model as bench/step.ts: RMSNorm, RoPE (rotate-half), causal attention,
SwiGLU MLP, untied lm_head, fp32, random weights; LoRA rank 8 / alpha 16 on q_proj and v_proj.
Classification batch of B prompts x T tokens with 2 single-token candidates; MeZO's loss:
cross-entropy over the candidates' scores at the last position (logits are computed at the
last position only, as zofo does).

Step kinds:
  forward  one forward under torch.inference_mode (MeZO's zo_forward)
  zo       MeZO's zo_step + zo_update (princeton-nlp/MeZO, large_models/trainer.py): one seed
           per step; each perturbation pass calls torch.manual_seed(seed) and draws
           z = torch.normal(0, 1, size=param.shape) per named parameter; passes +eps, -2eps,
           +eps around two forwards; the update regenerates z: param -= lr * projected_grad * z
  lora     FO-LoRA step: autograd forward+backward, SGD on the adapters, base requires_grad False
  hybrid   docs/algorithm.md §2 the straightforward way: loss+backward on the adapters at x;
           MeZO-style perturbation x += mu z, one forward (no grad), restore x -= mu z,
           update x -= lr c z (z regenerated each pass), SGD on the adapters
  perturb  one MeZO perturbation pass alone over every base parameter
  all      every kind, each in a fresh subprocess (so peak RSS is per kind)
  limits   not a step: the machine's limits as torch sees them (bench/limits.ts does zofo's):
           Tensor.copy_ over --copy-mib MiB of fp32 (bytes read + written per second) and
           torch.mm on a square --gemm-n fp32 GEMM (2 n^3 FLOP per call); prints
           {kind, copy_bytes_per_s, gemm_flop_per_s, copy_mib, gemm_n, blas}

Prints one JSON line per measured kind:
  {kind, median_s, min_s, max_s, peak_rss_mib, built_rss_mib, rss_reset, params, reps, other_load, torch, threads}
other_load: other processes' CPU use during the timed runs, in cores ((machine busy CPU-seconds from
/proc/stat - this process's CPU-seconds) / wall seconds): how contended the shared machine was;
null when the timed runs took under 0.5 s (/proc/stat counts 10 ms ticks).
Peak RSS: resource.getrusage maxrss after 3 runs of the kind (warm-up included), with the
peak mark reset after the model is built (Linux /proc/self/clear_refs 5), as bench/step.ts does.

  /usr/bin/python3 bench/reference/llama_ref.py --dim 288 --layers 6 --heads 6 --ffn 768 \
      --vocab 32000 --batch 16 --seq 64 --reps 5 --threads 2 --step all
"""
import argparse
import json
import math
import resource
import statistics
import subprocess
import sys
import time

import torch
import torch.nn.functional as F

KINDS = ["forward", "zo", "lora", "hybrid", "perturb"]


class LoRALinear(torch.nn.Module):
    def __init__(self, base, rank, alpha):
        super().__init__()
        self.base = base
        self.lora_A = torch.nn.Parameter(torch.randn(rank, base.in_features) * 0.01)
        self.lora_B = torch.nn.Parameter(torch.zeros(base.out_features, rank))
        self.scaling = alpha / rank

    def forward(self, x):
        return self.base(x) + (x @ self.lora_A.t() @ self.lora_B.t()) * self.scaling


class RMSNorm(torch.nn.Module):
    def __init__(self, dim, eps=1e-5):
        super().__init__()
        self.weight = torch.nn.Parameter(torch.ones(dim))
        self.eps = eps

    def forward(self, x):
        return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + self.eps) * self.weight


def rotate_half(x):
    h = x.shape[-1] // 2
    return torch.cat((-x[..., h:], x[..., :h]), dim=-1)


class Block(torch.nn.Module):
    def __init__(self, dim, heads, ffn):
        super().__init__()
        self.heads, self.hd = heads, dim // heads
        self.input_layernorm = RMSNorm(dim)
        self.q_proj = torch.nn.Linear(dim, dim, bias=False)
        self.k_proj = torch.nn.Linear(dim, dim, bias=False)
        self.v_proj = torch.nn.Linear(dim, dim, bias=False)
        self.o_proj = torch.nn.Linear(dim, dim, bias=False)
        self.post_attention_layernorm = RMSNorm(dim)
        self.gate_proj = torch.nn.Linear(dim, ffn, bias=False)
        self.up_proj = torch.nn.Linear(dim, ffn, bias=False)
        self.down_proj = torch.nn.Linear(ffn, dim, bias=False)

    def forward(self, x, cos, sin, mask):
        B, T, C = x.shape
        h = self.input_layernorm(x)
        q = self.q_proj(h).view(B, T, self.heads, self.hd).transpose(1, 2)
        k = self.k_proj(h).view(B, T, self.heads, self.hd).transpose(1, 2)
        v = self.v_proj(h).view(B, T, self.heads, self.hd).transpose(1, 2)
        q = q * cos + rotate_half(q) * sin
        k = k * cos + rotate_half(k) * sin
        att = (q @ k.transpose(-2, -1)) / math.sqrt(self.hd) + mask
        y = torch.softmax(att, dim=-1) @ v
        x = x + self.o_proj(y.transpose(1, 2).reshape(B, T, C))
        h = self.post_attention_layernorm(x)
        return x + self.down_proj(F.silu(self.gate_proj(h)) * self.up_proj(h))


class Llama(torch.nn.Module):
    def __init__(self, vocab, dim, layers, heads, ffn):
        super().__init__()
        self.embed_tokens = torch.nn.Embedding(vocab, dim)
        self.layers = torch.nn.ModuleList(Block(dim, heads, ffn) for _ in range(layers))
        self.norm = RMSNorm(dim)
        self.lm_head = torch.nn.Linear(dim, vocab, bias=False)
        self.hd = dim // heads

    def rope(self, T, device, dtype):
        inv = 1.0 / (10000 ** (torch.arange(0, self.hd, 2, device=device).float() / self.hd))
        f = torch.outer(torch.arange(T, device=device).float(), inv)
        emb = torch.cat((f, f), dim=-1)
        return emb.cos().to(dtype), emb.sin().to(dtype)

    def forward(self, ids):  # on the device and in the dtype of the weights (gpu_compare.py: bf16 on CUDA)
        T = ids.shape[1]
        w = self.embed_tokens.weight
        cos, sin = self.rope(T, ids.device, w.dtype)
        mask = torch.full((T, T), float("-inf"), device=ids.device, dtype=w.dtype).triu(1)
        x = self.embed_tokens(ids)
        for layer in self.layers:
            x = layer(x, cos, sin, mask)
        return self.lm_head(self.norm(x[:, -1, :]))  # last position only


def build(a):
    torch.manual_seed(12345)
    model = Llama(a.vocab, a.dim, a.layers, a.heads, a.ffn)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if p.dim() == 1:
                p.fill_(1.0)
            else:
                p.normal_(0, 0.02)
    for p in model.parameters():
        p.requires_grad_(False)
    base = [(n, p) for n, p in model.named_parameters()]  # every base weight (MeZO: all trainable)
    for layer in model.layers:
        layer.q_proj = LoRALinear(layer.q_proj, 8, 16)
        layer.v_proj = LoRALinear(layer.v_proj, 8, 16)
    adapters = [p for n, p in model.named_parameters() if "lora_" in n]
    return model, base, adapters


def make_batch(a):
    g = torch.Generator().manual_seed(7)
    ids = torch.randint(0, a.vocab, (a.batch, a.seq), generator=g)
    e = torch.arange(a.batch)
    cands = torch.stack((1 + e % 7, 100 + e % 5), dim=1)  # as bench/step.ts
    labels = e % 2
    return ids, cands, labels


def loss_fn(model, batch):
    ids, cands, labels = batch
    logp = torch.log_softmax(model(ids), dim=-1)
    return F.cross_entropy(torch.gather(logp, 1, cands), labels)


def zo_forward(model, batch):
    model.eval()
    with torch.inference_mode():
        return loss_fn(model, batch).item()


# MeZO (large_models/trainer.py) zo_perturb_parameters / zo_update, verbatim in substance.
def zo_perturb_parameters(params, seed, eps, scaling_factor=1):
    torch.manual_seed(seed)
    for name, param in params:
        z = torch.normal(mean=0, std=1, size=param.data.size(), device=param.data.device, dtype=param.data.dtype)
        param.data = param.data + scaling_factor * z * eps


def zo_update(params, seed, lr, projected_grad):
    torch.manual_seed(seed)
    for name, param in params:
        z = torch.normal(mean=0, std=1, size=param.data.size(), device=param.data.device, dtype=param.data.dtype)
        param.data = param.data - lr * (projected_grad * z)  # weight_decay 0


class Stepper:
    def __init__(self, model, base, adapters, batch):
        self.model, self.base, self.adapters, self.batch = model, base, adapters, batch
        self.eps, self.lr_x, self.lr_y = 1e-3, 1e-6, 1e-4
        self.rng = torch.Generator().manual_seed(1)

    def seed(self):
        return int(torch.randint(0, 1000000000, (1,), generator=self.rng))

    def forward(self):
        return zo_forward(self.model, self.batch)

    def zo(self):  # MeZO zo_step + zo_update
        s = self.seed()
        zo_perturb_parameters(self.base, s, self.eps, 1)
        loss1 = zo_forward(self.model, self.batch)
        zo_perturb_parameters(self.base, s, self.eps, -2)
        loss2 = zo_forward(self.model, self.batch)
        projected_grad = (loss1 - loss2) / (2 * self.eps)
        zo_perturb_parameters(self.base, s, self.eps, 1)
        zo_update(self.base, s, self.lr_x, projected_grad)
        return loss1

    def sgd_adapters(self):
        with torch.no_grad():
            for p in self.adapters:
                p.add_(p.grad, alpha=-self.lr_y)
                p.grad = None

    def lora(self):
        self.model.train()
        loss = loss_fn(self.model, self.batch)
        loss.backward()
        self.sgd_adapters()
        return loss.item()

    def hybrid(self):  # docs/algorithm.md §2, forward estimator, q = 1
        self.model.train()
        loss = loss_fn(self.model, self.batch)  # FO at (x_k, y_k)
        loss.backward()
        l0 = loss.item()
        s = self.seed()
        zo_perturb_parameters(self.base, s, self.eps, 1)  # x + mu z
        lplus = zo_forward(self.model, self.batch)
        c = (lplus - l0) / self.eps
        zo_perturb_parameters(self.base, s, self.eps, -1)  # restore
        zo_update(self.base, s, self.lr_x, c)  # x -= lr c z
        self.sgd_adapters()  # y -= lr g_y (gradient taken at x_k)
        return l0

    def perturb(self):
        zo_perturb_parameters(self.base, self.seed(), self.eps, 1)


def machine_busy_seconds():
    """CPU-seconds the whole machine has been busy (user, nice, system, irq, softirq, steal): /proc/stat."""
    try:
        with open("/proc/stat") as f:
            v = [int(x) for x in f.readline().split()[1:]]
        return (v[0] + v[1] + v[2] + v[5] + v[6] + (v[7] if len(v) > 7 else 0)) / 100.0  # USER_HZ
    except OSError:
        return float("nan")


def self_cpu_seconds():
    r = resource.getrusage(resource.RUSAGE_SELF)  # every thread of this process
    return r.ru_utime + r.ru_stime


def rss_mib():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def measure(a, kind):
    torch.set_num_threads(a.threads)
    model, base, adapters = build(a)
    st = Stepper(model, base, adapters, make_batch(a))
    fn = getattr(st, kind)
    params = sum(p.numel() for _, p in base)
    built = rss_mib()
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        reset = True
    except OSError:
        reset = False
    if reset:
        with open("/proc/self/status") as f:
            built = next(int(l.split()[1]) for l in f if l.startswith("VmRSS")) / 1024
    fn()  # warm-up
    times = []
    busy0, cpu0, wall0 = machine_busy_seconds(), self_cpu_seconds(), time.perf_counter()
    for _ in range(a.reps):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    wall = time.perf_counter() - wall0
    other = (machine_busy_seconds() - busy0 - (self_cpu_seconds() - cpu0)) / wall
    return {
        "kind": kind, "median_s": statistics.median(times), "min_s": min(times), "max_s": max(times),
        "peak_rss_mib": rss_mib(), "built_rss_mib": built, "rss_reset": reset, "params": params,
        "reps": a.reps, "other_load": max(0.0, other) if math.isfinite(other) and wall >= 0.5 else None, "torch": torch.__version__, "threads": torch.get_num_threads(),
    }


def openblas_core():
    """The core OpenBLAS picked (it honours OPENBLAS_CORETYPE), if torch's BLAS is OpenBLAS."""
    import ctypes
    for name in ("libopenblas.so.0", "libopenblas.so", "libblas.so.3"):
        try:
            lib = ctypes.CDLL(name)
            f = lib.openblas_get_corename
        except (OSError, AttributeError):
            continue
        f.restype = ctypes.c_char_p
        return "OpenBLAS " + f().decode()
    return "BLAS (not OpenBLAS, or not found)"


def limits(a):
    torch.set_num_threads(a.threads)

    def timed(fn, reps):
        fn()
        ts = []
        for _ in range(reps):
            t0 = time.perf_counter()
            fn()
            ts.append(time.perf_counter() - t0)
        return statistics.median(ts)

    n = a.copy_mib * 2 ** 20 // 4
    x = torch.full((n,), 0.25)
    y = torch.empty_like(x)
    copy_s = timed(lambda: y.copy_(x), 7)
    del x, y
    g = a.gemm_n
    A = torch.full((g, g), 0.01)
    B = torch.full((g, g), 0.02)
    C = torch.empty((g, g))
    gemm_s = timed(lambda: torch.mm(A, B, out=C), 5)
    return {"kind": "limits", "copy_bytes_per_s": 8 * n / copy_s, "gemm_flop_per_s": 2 * g ** 3 / gemm_s,
            "copy_mib": a.copy_mib, "gemm_n": g, "blas": "torch.mm (%s)" % openblas_core(),
            "torch": torch.__version__, "threads": torch.get_num_threads()}


def main():
    p = argparse.ArgumentParser()
    for k, d in [("dim", 288), ("layers", 6), ("heads", 6), ("ffn", 768), ("vocab", 32000),
                 ("batch", 16), ("seq", 64), ("reps", 5), ("threads", 2), ("copy-mib", 256), ("gemm-n", 2048)]:
        p.add_argument("--" + k, type=int, default=d)
    p.add_argument("--step", default="all", choices=KINDS + ["all", "limits"])
    a = p.parse_args()
    if a.step == "limits":
        print(json.dumps(limits(a)), flush=True)
        return
    if a.step != "all":
        print(json.dumps(measure(a, a.step)), flush=True)
        return
    for kind in KINDS:  # one fresh process per kind: peak RSS per kind
        argv = [x for x in sys.argv[1:]]
        i = argv.index("--step") if "--step" in argv else -1
        if i >= 0:
            del argv[i:i + 2]
        r = subprocess.run([sys.executable, __file__, *argv, "--step", kind], capture_output=True, text=True)
        if r.returncode != 0:
            sys.exit(f"--step {kind} failed:\n{r.stderr}")
        print(r.stdout.strip().splitlines()[-1], flush=True)


if __name__ == "__main__":
    main()
