/**
 * zofo — hybrid zeroth-order / first-order fine-tuning as a native Node.js addon.
 *
 * This entry point exposes the perturbation engine (`kernels`), checkpoint I/O, the
 * model engine (`loadModel`: logits, losses, LoRA gradients), the hybrid optimizer
 * (`HybridOptimizer`, trajectory logs and `replay`) and the trainer.
 */
import * as kernels from './kernels.js';
import { cpuBinding, cudaBinding, cudaLoadErrors } from './binding.js';

export { kernels };
export { ZofoError } from './errors.js';
export {
  openSafetensors, openCheckpoint, writeSafetensors, SafetensorsFile, Checkpoint,
} from './formats/safetensors.js';
export type { SafetensorsDtype, TensorInfo, TensorData } from './formats/safetensors.js';
export { loadConfig, parseConfig } from './model/config.js';
export type { ModelConfig, ModelFamily, Activation } from './model/config.js';
export { loadTokenizer } from './model/tokenizer.js';
export { loadModel, Model } from './model/model.js';
export { ReshufflingSampler, epochPermutation } from './train/sampler.js';
export type { SamplerOptions, SamplerState } from './train/sampler.js';
export { learningRate } from './train/schedule.js';
export { HybridOptimizer, applyTrajectory, stepSeed } from './train/optimizer.js';
export { replay } from './train/replay.js';
export { Trainer, evaluate } from './train/trainer.js';
export type { TrainerOptions, TrainerEvent, EvalOptions, CheckpointOptions, FitOptions, BestInfo } from './train/trainer.js';
export { loadCheckpoint } from './train/checkpoint.js';
export { loadTask, sampleExamples, sampleIndices, splitTask, TASK_NAMES } from './data/tasks.js';
export type { Task, TaskName } from './data/tasks.js';
export { estimateSmoothness, stepSizeAdvice } from './theory/smoothness.js';
export { makeObjective, runStudy, study, studyChart, OBJECTIVES } from './theory/study.js';
export type { ObjectiveName, StudyOptions, StudyResult, StudyRun } from './theory/study.js';
export type { SmoothnessTarget, SmoothnessOptions, SmoothnessReport, Estimate, CurvatureEstimate, StepSizeAdvice } from './theory/smoothness.js';
export type { ReplayOptions } from './train/replay.js';
export { readTrajectory, writeTrajectory, TrajectoryAppender, TRAJECTORY_VERSION } from './train/trajectory.js';
export type {
  ZoOptions, FoOptions, HybridOptimizerOptions, StepResult, StepOptions, TrajectoryRecord, TrajectoryTensor,
  TrajectoryHeader, Trajectory, OptimizerState, TrainableOptimizer,
} from './train/types.js';
export type { ScheduleOptions } from './train/schedule.js';
export type {
  Example, ClassificationExample, LmExample, LoadModelOptions, LoraOptions, LossResult, LoraGradients,
} from './model/model.js';
export type { Tokenizer } from './model/tokenizer.js';
export type { ZofoErrorCode } from './errors.js';
export type {
  Device, Dtype, U64, GaussianOptions, PerturbOptions, RestoreUpdateOptions, TensorSlice, MatmulOptions,
} from './kernels.js';

/**
 * What this installation runs on, as `backendInfo()` reports it: the CPU addon's SIMD
 * level, Philox implementation, BLAS and default thread count, and whether the CUDA addon
 * loaded (with the reasons when it did not).
 */
export interface BackendInfo {
  cpu: { simd: string; philox: string; blas: string; threads: number };
  cuda: { available: boolean; reasons: string[] };
}

/** What this installation runs on: the CPU build's SIMD level, BLAS, and CUDA status. */
export function backendInfo(): BackendInfo {
  const cpu = cpuBinding();
  const cuda = cudaBinding();
  return {
    cpu: { simd: cpu.simd, philox: cpu.philoxImpl, blas: cpu.blas, threads: cpu.defaultThreads },
    cuda: { available: cuda !== null, reasons: cuda ? [] : cudaLoadErrors().map((a) => `${a.file}: ${a.error}`) },
  };
}

// Types that appear in the signatures above, exported so that callers can name them.
export type { ChartPanel, ChartPoint, ChartRow, ChartSeries, ChartSpec } from './chart.js';
export type { LoadTaskOptions, SplitOptions, TaskText } from './data/tasks.js';
export type { ModelTarget, PlainObjective, StepSizeInput, VecLike, Verdict as StepSizeVerdict, VerdictLevel } from './theory/smoothness.js';
export type { ObjectiveOptions, StudyGrid, StudyObjective, StudyRecord, StudyReport, Verdict as StudyVerdict } from './theory/study.js';
export type { EvalRecord, LoadedCheckpoint, TrainerCheckpointState } from './train/checkpoint.js';
export type { HybridObjective, HybridRecord, Vec } from './train/quadratic.js';
