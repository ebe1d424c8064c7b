/**
 * The replica check of data- and perturbation-parallel runs: every rank's weights (base
 * and adapters) must stay bit-identical. Each rank hashes its own; rank 0's hash is
 * broadcast; the ranks that differ are counted by an allreduce, so every rank reaches
 * the same verdict and fails together, naming the step.
 */
import { createHash } from 'node:crypto';
import { ZofoError } from '../errors.js';
import type { Model } from '../model/model.js';
import type { Communicator } from './communicator.js';

/** SHA-256 of the model's trainable state: the base-weight hash and every adapter tensor's bytes, by name. */
export async function weightChecksum(model: Model): Promise<Uint8Array> {
  const h = createHash('sha256').update(await model.baseHash());
  for (const name of model.loraNames()) {
    const t = model.loraTensor(name);
    h.update(name).update(new Uint8Array(t.buffer, t.byteOffset, t.byteLength));
  }
  return new Uint8Array(h.digest());
}

/** Throws ZOFO_REPLICA_MISMATCH on every rank when any rank's weights differ from rank 0's after `step` steps. */
export async function checkReplicas(comm: Communicator, model: Model, step: number): Promise<void> {
  const mine = await weightChecksum(model);
  const root = mine.slice();
  await comm.broadcast(root, 0, `replica check after step ${step}`);
  const differ = new Float64Array([Buffer.compare(Buffer.from(mine), Buffer.from(root)) === 0 ? 0 : 1]);
  await comm.allreduce(differ, `replica check after step ${step}`);
  if (differ[0] > 0) {
    throw new ZofoError(
      'ZOFO_REPLICA_MISMATCH',
      `the replicas diverged: after step ${step}, ${differ[0]} of ${comm.size} ranks hold weights that differ from rank 0's (this is rank ${comm.rank}, ${Buffer.compare(Buffer.from(mine), Buffer.from(root)) === 0 ? 'equal to' : 'different from'} rank 0)`,
    );
  }
}
