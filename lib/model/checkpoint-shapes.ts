/**
 * Checks a config.json against the checkpoint it comes with, before the engine allocates
 * anything: every tensor the config implies must exist with exactly the implied shape,
 * and nothing HF would use may be left over. A mismatch is a ZOFO_BAD_FILE that names
 * the config field (and its value) that disagrees with the checkpoint's shape, so a
 * config with a wrong vocab_size fails in milliseconds instead of allocating for it.
 */
import { ZofoError } from '../errors.js';
import type { TensorInfo } from '../formats/safetensors.js';
import type { ModelConfig } from './config.js';

/** One tensor the engine expects (native tensorSpecs()). */
export interface ExpectedTensor {
  name: string;
  shape: number[];
}

// Checkpoint tensors that HF itself ignores when loading these models.
const IGNORED = [/\.attn\.(masked_)?bias$/, /\.rotary_emb\.inv_freq$/];
// The decoder-block index inside a tensor name (model.layers.3.…, transformer.h.3.…).
const LAYER = /(?:^|\.)(?:layers|h)\.(\d+)\./;

/** The config fields that set tensor dimensions, as config.json names them, with the size each implies. */
function sizeFields(config: ModelConfig): { field: string; value: number }[] {
  const raw = config.raw;
  const named = (field: string, value: number) => ({
    field: raw[field] !== undefined && raw[field] !== null ? `${field} = ${value}` : `${field} (default ${value})`,
    value,
  });
  if (config.family === 'gpt2') {
    return [
      named('vocab_size', config.vocabSize),
      named('n_embd', config.hiddenSize),
      named('n_inner', config.ffnSize),
      named('n_positions', config.maxPositions),
      { field: `3 × n_embd = ${3 * config.hiddenSize}`, value: 3 * config.hiddenSize },
    ];
  }
  const fields = [named('vocab_size', config.vocabSize), named('hidden_size', config.hiddenSize)];
  if (config.family === 'opt') {
    fields.push(named('ffn_dim', config.ffnSize), named('word_embed_proj_dim', config.embedProjDim), {
      field: `max_position_embeddings + 2 = ${config.maxPositions + config.positionOffset}`,
      value: config.maxPositions + config.positionOffset,
    });
  } else {
    fields.push(
      named('intermediate_size', config.ffnSize),
      { field: `num_attention_heads × head_dim = ${config.numHeads} × ${config.headDim}`, value: config.numHeads * config.headDim },
      { field: `num_key_value_heads × head_dim = ${config.numKvHeads} × ${config.headDim}`, value: config.numKvHeads * config.headDim },
    );
  }
  return fields;
}

const layersField = (config: ModelConfig) => (config.family === 'gpt2' ? 'n_layer' : 'num_hidden_layers');

function checkpointLayers(names: Iterable<string>): number {
  let layers = 0;
  for (const name of names) {
    const m = LAYER.exec(name);
    if (m) layers = Math.max(layers, Number(m[1]) + 1);
  }
  return layers;
}

const shapeText = (shape: readonly number[]) => `[${shape.join(', ')}]`;

/** Which config fields explain the dimensions where `implied` differs from `stored`. */
function blame(config: ModelConfig, implied: readonly number[], stored: readonly number[]): string {
  if (implied.length !== stored.length) return '';
  const fields = sizeFields(config);
  const culprits: string[] = [];
  implied.forEach((d, i) => {
    if (d === stored[i]) return;
    const f = fields.find((x) => x.value === d);
    culprits.push(f ? `${f.field} in config.json, but the checkpoint's dimension ${i} is ${stored[i]}` : `dimension ${i}: ${d} implied, ${stored[i]} stored`);
  });
  return culprits.length ? ` (${[...new Set(culprits)].join('; ')})` : '';
}

/**
 * Matches every expected tensor to a checkpoint key (GPT-2 keys may lack the
 * `transformer.` prefix) and checks its shape; returns the keys as stored, in
 * `expected` order. Throws ZOFO_BAD_FILE naming the tensor, the shape and the field.
 */
export function matchCheckpoint(dir: string, config: ModelConfig, expected: readonly ExpectedTensor[], tensors: ReadonlyMap<string, TensorInfo>): string[] {
  const stored: string[] = [];
  const used = new Set<string>();
  const layers = checkpointLayers(tensors.keys());
  for (const spec of expected) {
    const candidates = config.family === 'gpt2' ? [spec.name, spec.name.replace(/^transformer\./, '')] : [spec.name];
    const key = candidates.find((k) => tensors.has(k));
    if (key === undefined) {
      const layer = LAYER.exec(spec.name);
      const why =
        layer && Number(layer[1]) >= layers ? ` (${layersField(config)} = ${config.numLayers} in config.json, but the checkpoint holds ${layers} layers)` : '';
      throw new ZofoError(
        'ZOFO_BAD_FILE',
        `${dir}: the checkpoint has no tensor ${spec.name}, which a ${config.architecture} with this config.json needs${why}`,
      );
    }
    const info = tensors.get(key) as TensorInfo;
    if (info.shape.join(',') !== spec.shape.join(',')) {
      throw new ZofoError(
        'ZOFO_BAD_FILE',
        `${dir}: tensor ${key} has shape ${shapeText(info.shape)} but config.json implies ${shapeText(spec.shape)}${blame(config, spec.shape, info.shape)}`,
      );
    }
    used.add(key);
    stored.push(key);
  }
  for (const key of tensors.keys()) {
    if (used.has(key) || IGNORED.some((re) => re.test(key))) continue;
    if (config.tieWordEmbeddings && /^lm_head\.weight$/.test(key)) continue; // tied: HF uses the embedding
    const layer = LAYER.exec(key);
    const why =
      layer && Number(layer[1]) >= config.numLayers
        ? ` (${layersField(config)} = ${config.numLayers} in config.json, but the checkpoint holds ${layers} layers)`
        : '';
    throw new ZofoError('ZOFO_BAD_FILE', `${dir}: the checkpoint has a tensor ${key} that a ${config.architecture} with this config.json does not use${why}`);
  }
  return stored;
}
