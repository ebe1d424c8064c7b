/**
 * Loads the native addons. The CUDA addon (zofo_cuda.node) is a separate binary so a
 * missing driver or cuBLAS can never break the CPU one (zofo_cpu.node). Each is looked
 * for, in order: in ZOFO_BINDING_DIR; in a local source build (build/Release, then
 * build/Debug); in the prebuilt platform package of this machine (lib/platform.ts; the
 * CUDA variants only when an NVIDIA driver is loaded). If the CPU addon loads from
 * none of them, ONE error lists every attempt, why it failed, and what to do.
 */
import { createRequire } from 'node:module';
import { existsSync, readFileSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { ZofoError } from './errors.js';
import { CPU_TARGETS, cpuPackageName, cudaPackageNames, nvidiaDriverPresent, platformTarget } from './platform.js';

/** The raw CPU binding (native/addon/addon.cpp). Arguments are validated in kernels.ts. */
export interface CpuBinding {
  readonly backend: 'cpu';
  readonly simd: string;
  readonly philoxImpl: string;
  readonly blas: string;
  readonly defaultThreads: number;
  readonly philoxChunkBlocks: number;
  philox4x32(counter: Uint32Array, key: Uint32Array): Uint32Array;
  philoxChunk(seed: bigint, stream: bigint, block: bigint, best: boolean): Uint32Array;
  fnv1a64(name: string): bigint;
  gaussian(seed: bigint, stream: bigint, offset: bigint, out: Float32Array, threads: number | undefined): void;
  axpby(
    weights: Float32Array | Uint16Array,
    dtype: number,
    table: BigUint64Array,
    decay: Float32Array,
    seed: bigint,
    scale: number,
    etaLambda: number,
    threads: number | undefined,
  ): void;
  axpbyAsync(
    weights: Float32Array | Uint16Array,
    dtype: number,
    table: BigUint64Array,
    decay: Float32Array,
    seed: bigint,
    scale: number,
    etaLambda: number,
    threads: number | undefined,
  ): Promise<void>;
  sgemm(
    transA: boolean,
    transB: boolean,
    M: number,
    N: number,
    K: number,
    alpha: number,
    A: Float32Array,
    B: Float32Array,
    beta: number,
    C: Float32Array,
    impl: number,
    threads: number | undefined,
    compute?: number,
  ): void;
  /** The model engine (native/addon/model.cpp); lib/model/model.ts is its typed face. */
  readonly NativeModel: {
    new (config: NativeModelConfig, dtype?: number, device?: string, compute?: number): NativeModel;
    /** The tensor table a config implies, with nothing allocated (checked against a checkpoint first). */
    tensorSpecsOf(config: NativeModelConfig): NativeTensorSpec[];
  };
  /** The hybrid step (native/addon/optimizer.cpp); lib/train/optimizer.ts is its typed face. */
  readonly NativeOptimizer: {
    new (model: NativeModel, config: NativeOptimizerConfig): NativeOptimizer;
    /** s_{k,j}, the perturbation seed of step k, perturbation j. */
    stepSeed(runSeed: bigint, k: number, j: number): bigint;
  };
  /** The CPU model kernels, for tests (native/addon/ops.cpp). Shapes as in native/cpu/*.h. */
  readonly ops: ModelOps;
  benchCopy(dst: Float32Array | Uint16Array, src: Float32Array | Uint16Array, threads?: number): void;
  benchScale(x: Float32Array, s: number, threads?: number): void;
  benchMaterializeAxpy(x: Float32Array | Uint16Array, scratch: Float32Array, seed: bigint, stream: bigint, a: number, threads?: number): void;
  /** A read-only file (mmap, or positioned reads) for checkpoint loading; bounds-checked, close() explicitly. */
  MappedFile: new (path: string) => {
    readonly size: number;
    readonly mapped: boolean;
    /** out ← bytes [offset, offset + out.length). */
    readRaw(offset: number, out: Uint8Array): Promise<void>;
    /** out ← fp32 of the little-endian values in [offset, offset + nbytes); dtype 0 f32 | 1 bf16 | 2 f16. */
    readF32(offset: number, nbytes: number, dtype: number, out: Float32Array): Promise<void>;
    close(): void;
  };
}

/** What the engine needs to know of a model (built from ModelConfig by lib/model/model.ts). */
export interface NativeModelConfig {
  family: number;
  vocab: number;
  hidden: number;
  layers: number;
  heads: number;
  kvHeads: number;
  headDim: number;
  ffn: number;
  maxPositions: number;
  embedDim: number;
  positionOffset: number;
  rmsnorm: boolean;
  normEps: number;
  activation: number;
  ropeTheta: number;
  tieEmbeddings: boolean;
  attentionBias: boolean;
  outputBias: boolean;
  mlpBias: boolean;
  preNorm: boolean;
  finalNorm: boolean;
}

export interface NativeTensorSpec {
  name: string;
  shape: number[];
  offset: number;
}

export interface NativeModel {
  tensorSpecs(): NativeTensorSpec[];
  setTensor(name: string, data: Float32Array): void;
  deviceMemory(resetPeak: boolean): { inUse: number; peak: number } | null;
  loadTensors(path: string, fileSize: number, names: string[], offsets: Float64Array, dtypes: Uint8Array): Promise<void>;
  getTensor(name: string, out: Float32Array): void;
  addLoRA(targets: string[], rank: number, alpha: number): NativeTensorSpec[];
  loraSpecs(): NativeTensorSpec[];
  setLoraTensor(name: string, data: Float32Array): void;
  getLoraTensor(name: string, out: Float32Array): void;
  logits(ids: Int32Array, positions: Int32Array, mask: Uint8Array, B: number, T: number, rows: Int32Array, out: Float32Array): Promise<void>;
  loss(
    ids: Int32Array,
    positions: Int32Array,
    mask: Uint8Array,
    B: number,
    T: number,
    kind: number,
    rows: Int32Array,
    targets: Int32Array,
    group: Int32Array,
    candidateExample: Int32Array,
    candidateIsLabel: Uint8Array,
    examples: number,
    gradOut: Float32Array | null,
    baseGradOut?: Float32Array | null,
  ): Promise<{ loss: number; scores: Float64Array }>;
  /** Philox streams from the checkpoint keys as stored (one per tensor, tensorSpecs() order). */
  setStreamNames(names: string[]): void;
  /** 64-bit identity of the stored base weights. */
  hashParameters(): Promise<bigint>;
  /** Base-weight update passes x ← (1 − etaλ·decay)·x + scale·z(seed), in order (seed replay). */
  applyUpdates(seeds: BigUint64Array, scales: Float32Array, etaLambdas: Float32Array, trainable: Uint8Array, decay: Float32Array): Promise<void>;
  dispose(): void;
}

export interface NativeOptimizerConfig {
  zo: boolean;
  central: boolean;
  foAtPlus: boolean;
  q: number;
  mu: number;
  /** Per base tensor (tensorSpecs() order). */
  trainable: Uint8Array;
  decay: Float32Array;
  foAdapters: boolean;
  foBase: boolean;
  /** 0 sgd, 1 momentum, 2 adamw */
  foKind: number;
  momentum: number;
  beta1: number;
  beta2: number;
  eps: number;
  seed: bigint;
  /** 0 one process, 1 data-parallel, 2 perturbation-parallel; comm: the handle from lib/distributed. */
  parallel?: number;
  comm?: object;
}

export interface NativeStepResult {
  /** 0 applied, 1 rejected (non-finite), 2 cancelled */
  status: number;
  loss: number;
  reason: string;
  scores: Float64Array;
  perturbed: Float64Array;
  projected: Float64Array;
  seeds: BigUint64Array;
  scales: Float32Array;
  etaLambda: number;
}

export interface NativeOptimizer {
  step(
    ids: Int32Array,
    positions: Int32Array,
    mask: Uint8Array,
    B: number,
    T: number,
    kind: number,
    rows: Int32Array,
    targets: Int32Array,
    group: Int32Array,
    candidateExample: Int32Array,
    candidateIsLabel: Uint8Array,
    examples: number,
    args: { step: number; lrX: number; wdX: number; lrY: number; wdY: number; idle?: boolean },
  ): Promise<NativeStepResult>;
  /** Asks the in-flight step to stop before its update phase. */
  cancel(): void;
  moments(): Array<{ name: string; length: number }>;
  getMoment(name: string, out: Float32Array): void;
  setMoment(name: string, data: Float32Array): void;
  /** First-order updates applied so far (AdamW's t). */
  foUpdates: number;
  dispose(): void;
}

/** Raw CPU model kernels: forward beside backward; backwards accumulate (+=). */
export interface ModelOps {
  rmsnormForward(out: Float32Array, rstd: Float32Array, inp: Float32Array, weight: Float32Array, N: number, C: number, eps: number): void;
  rmsnormBackward(
    dinp: Float32Array,
    dweight: Float32Array | null,
    dout: Float32Array,
    inp: Float32Array,
    weight: Float32Array,
    rstd: Float32Array,
    N: number,
    C: number,
  ): void;
  layernormForward(
    out: Float32Array,
    mean: Float32Array,
    rstd: Float32Array,
    inp: Float32Array,
    weight: Float32Array,
    bias: Float32Array | null,
    N: number,
    C: number,
    eps: number,
  ): void;
  layernormBackward(
    dinp: Float32Array,
    dweight: Float32Array | null,
    dbias: Float32Array | null,
    dout: Float32Array,
    inp: Float32Array,
    weight: Float32Array,
    mean: Float32Array,
    rstd: Float32Array,
    N: number,
    C: number,
  ): void;
  rope(x: Float32Array, positions: Int32Array, B: number, T: number, NH: number, HS: number, theta: number, backward: boolean): void;
  /** kind 0 = gelu_new, 1 = relu */
  activationForward(kind: number, out: Float32Array, inp: Float32Array, N: number): void;
  activationBackward(kind: number, dinp: Float32Array, inp: Float32Array, dout: Float32Array, N: number): void;
  swigluForward(out: Float32Array, gate: Float32Array, up: Float32Array, N: number): void;
  swigluBackward(dgate: Float32Array, dup: Float32Array, gate: Float32Array, up: Float32Array, dout: Float32Array, N: number): void;
  attentionForward(
    out: Float32Array,
    att: Float32Array,
    q: Float32Array,
    k: Float32Array,
    v: Float32Array,
    mask: Uint8Array,
    B: number,
    T: number,
    NH: number,
    NKV: number,
    HS: number,
    scale: number,
  ): void;
  attentionBackward(
    dq: Float32Array,
    dk: Float32Array,
    dv: Float32Array,
    dout: Float32Array,
    att: Float32Array,
    q: Float32Array,
    k: Float32Array,
    v: Float32Array,
    B: number,
    T: number,
    NH: number,
    NKV: number,
    HS: number,
    scale: number,
  ): void;
}

/**
 * The raw CUDA binding (native/addon/addon_cuda.cpp), present only where the CUDA addon
 * was built and a device is usable. Its kernels take host arrays, run on the device and
 * copy back (the conformance path); same argument conventions as the CPU binding.
 */
export interface CudaBinding {
  readonly backend: 'cuda';
  readonly device: string;
  readonly computeCapability: string;
  readonly memoryBytes: number;
  gaussian(seed: bigint, stream: bigint, offset: bigint, out: Float32Array): void;
  axpby(weights: Float32Array | Uint16Array, dtype: number, table: BigUint64Array, decay: Float32Array, seed: bigint, scale: number, etaLambda: number): void;
  /** The model engine with its weights, activations and optimizer state in device memory. */
  readonly NativeModel: {
    new (config: NativeModelConfig, dtype?: number, device?: string, compute?: number): NativeModel;
    /** The tensor table a config implies, with nothing allocated (checked against a checkpoint first). */
    tensorSpecsOf(config: NativeModelConfig): NativeTensorSpec[];
  };
  readonly NativeOptimizer: CpuBinding['NativeOptimizer'];
}

/** The engine classes of one addon: a model's optimizer must come from its model's addon. */
export interface EngineBinding {
  readonly backend: 'cpu' | 'cuda';
  readonly NativeModel: {
    new (config: NativeModelConfig, dtype?: number, device?: string, compute?: number): NativeModel;
    /** The tensor table a config implies, with nothing allocated (checked against a checkpoint first). */
    tensorSpecsOf(config: NativeModelConfig): NativeTensorSpec[];
  };
  readonly NativeOptimizer: CpuBinding['NativeOptimizer'];
}

export interface LoadAttempt {
  file: string;
  error: string;
}

// The package root: the nearest folder above this file holding package.json (this file
// runs from lib/ in development and from dist/lib/ when installed).
function findPackageRoot(): string {
  let dir = dirname(fileURLToPath(import.meta.url));
  while (!existsSync(join(dir, 'package.json'))) {
    const up = dirname(dir);
    if (up === dir) return dirname(fileURLToPath(import.meta.url));
    dir = up;
  }
  return dir;
}
/** The folder of zofo's package.json (native builds, demo/, bench/ live under it). */
export const packageRoot = findPackageRoot();
const require = createRequire(import.meta.url);

type AddonName = 'zofo_cpu' | 'zofo_cuda';

/** A place an addon may be; `unavailable` says why it cannot be there without looking. */
interface Place {
  file: string;
  unavailable?: string;
}

let target: string | undefined;
const thisTarget = () => (target ??= platformTarget());
const hasPrebuilt = () => CPU_TARGETS.includes(thisTarget());

// Where an addon may be, in the order tried.
function candidates(name: AddonName): Place[] {
  const dirs = process.env.ZOFO_BINDING_DIR ? [resolve(process.env.ZOFO_BINDING_DIR)] : []; // relative to the cwd
  // ZOFO_BINDING_ONLY=1: look nowhere else (tests of the loader, pinned deployments).
  if (process.env.ZOFO_BINDING_ONLY !== '1') dirs.push(join(packageRoot, 'build', 'Release'), join(packageRoot, 'build', 'Debug'));
  const places: Place[] = dirs.map((d) => ({ file: join(d, `${name}.node`) }));
  if (process.env.ZOFO_BINDING_ONLY === '1') return places;
  if (name === 'zofo_cpu' && !hasPrebuilt()) {
    return [...places, { file: cpuPackageName(thisTarget()), unavailable: `no prebuilt package for ${thisTarget()}` }];
  }
  const packages = name === 'zofo_cpu' ? [cpuPackageName(thisTarget())] : cudaPackageNames(thisTarget());
  const driver = name === 'zofo_cpu' || nvidiaDriverPresent();
  for (const pkg of packages) {
    const label = `${pkg}/${name}.node`;
    if (!driver) {
      places.push({ file: label, unavailable: 'skipped: no NVIDIA driver is loaded (/proc/driver/nvidia/version)' });
      continue;
    }
    try {
      places.push({ file: join(dirname(require.resolve(`${pkg}/package.json`)), `${name}.node`) });
    } catch {
      places.push({ file: label, unavailable: `the package ${pkg} is not installed` });
    }
  }
  return places;
}

const loadedFrom: Partial<Record<AddonName, string>> = {};

function tryLoad<T>(name: AddonName, attempts: LoadAttempt[]): T | undefined {
  for (const { file, unavailable } of candidates(name)) {
    if (unavailable) {
      attempts.push({ file, error: unavailable });
      continue;
    }
    if (!existsSync(file)) {
      attempts.push({ file, error: 'not found' });
      continue;
    }
    try {
      const binding = require(file) as T;
      loadedFrom[name] = file;
      return binding;
    } catch (err) {
      attempts.push({ file, error: err instanceof Error ? err.message : String(err) });
    }
  }
  return undefined;
}

/** The .node file each addon was loaded from (absent: not loaded, or not yet). */
export function addonFiles(): { cpu?: string; cuda?: string } {
  return { cpu: loadedFrom.zofo_cpu, cuda: loadedFrom.zofo_cuda };
}

function packageVersion(): string {
  try {
    return (JSON.parse(readFileSync(join(packageRoot, 'package.json'), 'utf8')) as { version?: string }).version ?? 'latest';
  } catch {
    return 'latest';
  }
}

let cpu: CpuBinding | undefined;
let cuda: CudaBinding | null | undefined;
const cudaAttempts: LoadAttempt[] = [];

/** The CPU addon; throws ZOFO_LOAD_FAILED listing every attempt if it cannot load. */
export function cpuBinding(): CpuBinding {
  if (cpu) return cpu;
  const attempts: LoadAttempt[] = [];
  cpu = tryLoad<CpuBinding>('zofo_cpu', attempts);
  if (!cpu) {
    const cudaNote = cudaBinding() ? '' : cudaAttempts.map((a) => `\n  - ${a.file}: ${a.error}`).join('');
    throw new ZofoError(
      'ZOFO_LOAD_FAILED',
      `zofo could not load its native addon (${thisTarget()}, Node.js ${process.version}). Tried:` +
        attempts.map((a) => `\n  - ${a.file}: ${a.error}`).join('') +
        cudaNote +
        '\nFix: ' +
        (hasPrebuilt()
          ? `install this platform's prebuilt package (\`npm install ${cpuPackageName(thisTarget())}@${packageVersion()}\`;` +
            ' it is an optional dependency of zofo, so --omit=optional or --no-optional leaves it out), or '
          : '') +
        'compile the addon from the installed sources with `npx zofo build` (cmake-js, or node-gyp when' +
        ' cmake is missing; needs a C++17 compiler, no network). Set ZOFO_BINDING_DIR to load a build from elsewhere.',
    );
  }
  return cpu;
}

/** The CUDA addon, or null when it is absent or cannot load (see cudaLoadErrors()). */
export function cudaBinding(): CudaBinding | null {
  if (cuda !== undefined) return cuda;
  cuda = process.env.ZOFO_CUDA === '0' ? null : (tryLoad<CudaBinding>('zofo_cuda', cudaAttempts) ?? null);
  return cuda;
}

/** Why the CUDA addon did not load (empty when it did). */
export function cudaLoadErrors(): readonly LoadAttempt[] {
  cudaBinding();
  return cudaAttempts;
}
