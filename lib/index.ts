/**
 * zofo — hybrid zeroth-order / first-order fine-tuning as a native Node.js addon.
 *
 * This entry point exposes the perturbation engine (`kernels`), checkpoint I/O, the
 * model engine (`loadModel`: logits, losses, LoRA gradients), the hybrid optimizer
 * (`HybridOptimizer`, trajectory logs and `replay`) and the trainer.
 */
import * as kernels from './kernels.js';
import { addonFiles, cpuBinding, cudaBinding, cudaLoadErrors } from './binding.js';

export { kernels };
/** Distributed (MPI) training: `await distributed.init()` gives the communicator for HybridOptimizer's `parallel`. */
export * as distributed from './distributed/index.js';
export type { Communicator } from './distributed/communicator.js';
export { ZofoError } from './errors.js';
export { OptionError } from './errors.js';
export { editDistance, nearestKey, unknownKeyMessage } from './validate/suggest.js';
export type { KeyAliases } from './validate/suggest.js';
export { MAX_LORA_RANK, MAX_LORA_SCALING } from './validate/options.js';
export { openSafetensors, openCheckpoint, writeSafetensors, SafetensorsFile, Checkpoint } from './formats/safetensors.js';
export type { SafetensorsDtype, TensorInfo, TensorData, TensorLocation } from './formats/safetensors.js';
export { loadConfig, parseConfig } from './model/config.js';
export type { ModelConfig, ModelFamily, Activation } from './model/config.js';
export { loadTokenizer, MAX_TOKEN_ID } from './model/tokenizer.js';
export type { LoadTokenizerOptions } from './model/tokenizer.js';
export { loadModel, Model } from './model/model.js';
export { randomModel, LLAMA_SHAPES } from './model/shapes.js';
export type { LlamaShape, RandomModelOptions } from './model/shapes.js';
export { ReshufflingSampler, epochPermutation } from './train/sampler.js';
export type { SamplerOptions, SamplerState } from './train/sampler.js';
export { learningRate } from './train/schedule.js';
export { HybridOptimizer, applyTrajectory, stepSeed } from './train/optimizer.js';
export { replay } from './train/replay.js';
export { Trainer, evaluate } from './train/trainer.js';
export type { TrainerOptions, TrainerEvent, EvalOptions, CheckpointOptions, FitOptions, BestInfo } from './train/trainer.js';
export { loadCheckpoint } from './train/checkpoint.js';
export { loadTask, sampleExamples, sampleIndices, splitTask, TASK_LIMITS, TASK_NAMES } from './data/tasks.js';
export type { Task, TaskName } from './data/tasks.js';
export { estimateSmoothness, stepSizeAdvice } from './theory/smoothness.js';
export { makeObjective, runStudy, study, studyChart, OBJECTIVES } from './theory/study.js';
export type { ObjectiveName, StudyOptions, StudyResult, StudyRun } from './theory/study.js';
export type { SmoothnessTarget, SmoothnessOptions, SmoothnessReport, Estimate, CurvatureEstimate, StepSizeAdvice } from './theory/smoothness.js';
export type { ReplayOptions } from './train/replay.js';
export { readTrajectory, writeTrajectory, TrajectoryAppender, TRAJECTORY_VERSION } from './train/trajectory.js';
export type {
  ZoOptions,
  FoOptions,
  HybridOptimizerOptions,
  StepResult,
  StepOptions,
  TrajectoryRecord,
  TrajectoryTensor,
  TrajectoryHeader,
  Trajectory,
  OptimizerState,
  TrainableOptimizer,
  AbortSignalLike,
  ParallelOptions,
  ParallelInfo,
} from './train/types.js';
export type { ScheduleOptions } from './train/schedule.js';
export type { Example, ClassificationExample, LmExample, LoadModelOptions, LoraOptions, LossResult, LoraGradients, Compute } from './model/model.js';
export type { Tokenizer } from './model/tokenizer.js';
export type { ZofoErrorCode } from './errors.js';
export type { Device, Dtype, U64, GaussianOptions, PerturbOptions, RestoreUpdateOptions, TensorSlice, MatmulOptions } from './kernels.js';

export { demoModelDir } from './demo/model.js';

/**
 * What this installation runs on, as `backendInfo()` reports it: the CPU addon's SIMD
 * level, Philox implementation, BLAS and default thread count, and whether the CUDA addon
 * loaded (with the reasons when it did not).
 */
export interface BackendInfo {
  /** `file`: the zofo_cpu.node that was loaded (a source build, or a prebuilt platform package). */
  cpu: { simd: string; philox: string; blas: string; threads: number; file: string };
  /** `file`: the zofo_cuda.node that was loaded, when one was. */
  cuda: { available: boolean; reasons: string[]; file?: string };
}

/** What this installation runs on: the CPU build's SIMD level, BLAS, and CUDA status. */
export function backendInfo(): BackendInfo {
  const cpu = cpuBinding();
  const cuda = cudaBinding();
  return {
    cpu: { simd: cpu.simd, philox: cpu.philoxImpl, blas: cpu.blas, threads: cpu.defaultThreads, file: addonFiles().cpu ?? '' },
    cuda: {
      available: cuda !== null,
      reasons: cuda ? [] : cudaLoadErrors().map((a) => `${a.file}: ${a.error}`),
      ...(cuda ? { file: addonFiles().cuda } : {}),
    },
  };
}

// Types that appear in the signatures above, exported so that callers can name them.
export type { ChartBandPoint, ChartPanel, ChartPoint, ChartRow, ChartSeries, ChartSpec } from './chart.js';
export type { LoadTaskOptions, SplitOptions, TaskText } from './data/tasks.js';
export type { ModelTarget, PlainObjective, StepSizeInput, VecLike, Verdict as StepSizeVerdict, VerdictLevel } from './theory/smoothness.js';
export type { ObjectiveOptions, StudyGrid, StudyObjective, StudyRecord, StudyReport, Verdict as StudyVerdict } from './theory/study.js';
export type { EvalRecord, LoadedCheckpoint, TrainerCheckpointState } from './train/checkpoint.js';
export type { HybridObjective, HybridRecord, Vec } from './train/quadratic.js';
