/**
 * Seed replay (docs/algorithm.md §7): a fine-tuned base is the base checkpoint plus
 * its trajectory log. `replay(baseDir, log)` loads the base, checks that the log names
 * it (parameter table and hash), and re-applies every logged update pass.
 */
import { loadModel, type LoadModelOptions, type Model } from '../model/model.js';
import { applyTrajectory } from './optimizer.js';
import { readTrajectory } from './trajectory.js';

/**
 * Options of `replay()`: the device the base is rebuilt on.
 */
export interface ReplayOptions {
  device?: LoadModelOptions['device'];
}

/** The base model with the log's updates applied: bit-identical to the trained base on the same backend. */
export async function replay(baseDir: string, logFile: string, opts: ReplayOptions = {}): Promise<Model> {
  const traj = await readTrajectory(logFile);
  const model = await loadModel(baseDir, { device: opts.device, dtype: traj.header.base.dtype as LoadModelOptions['dtype'] });
  try {
    await applyTrajectory(model, traj);
  } catch (err) {
    model.dispose();
    if (err instanceof Error) err.message = `replay ${logFile} onto ${baseDir}: ${err.message}`;
    throw err;
  }
  return model;
}
