/**
 * Distributed hybrid training over MPI (docs/distributed.md): `await init()` gives the
 * communicator that HybridOptimizer's `parallel.comm` takes.
 */
export { init, Communicator } from './communicator.js';
export { detectLaunch } from './environment.js';
export type { LaunchInfo } from './environment.js';
export type { CommStats } from './binding.js';
export { checkReplicas, weightChecksum } from './replicas.js';
export { sliceOf } from './slice.js';
