// config.json parsing: each supported family from a real model's config (fixtures
// copied field for field), the derived fields the engine relies on, and one test per
// rejection, each checking that the message names the file and the offending field.
import t, { type Test } from 'tap';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { loadConfig, parseConfig, ZofoError, type ModelConfig } from '../lib/index.js';

const FIXTURES = fileURLToPath(new URL('./fixtures/configs/', import.meta.url));
const FILE = 'model/config.json'; // the name parseConfig is told, checked in every message

/** A fresh copy of a fixture's config.json, to be edited by a test. */
function fixture(name: string): Record<string, unknown> {
  return JSON.parse(readFileSync(join(FIXTURES, name, 'config.json'), 'utf8')) as Record<string, unknown>;
}

/** The ZofoError that `fn` throws (or rejects with); fails the test when there is none. */
async function caught(fn: () => unknown): Promise<ZofoError> {
  try {
    await fn();
  } catch (err) {
    if (err instanceof ZofoError) return err;
    throw err;
  }
  throw new Error('expected a ZofoError, but nothing was thrown');
}

/** Asserts that parsing `json` fails with `code`, naming the file, and that the message matches every pattern. */
async function rejected(t: Test, json: unknown, code: string, ...patterns: RegExp[]): Promise<void> {
  const err = await caught(() => parseConfig(json, FILE));
  t.equal(err.code, code, err.message);
  t.ok(err.message.startsWith(`${FILE}: `), `names the file: ${err.message}`);
  for (const p of patterns) t.match(err.message, p);
}

/** Asserts the fields `expected` states (comparing only those, so a failure shows only those). */
function hasFields(t: Test, config: ModelConfig, expected: Partial<ModelConfig>): void {
  t.same(Object.fromEntries(Object.keys(expected).map((k) => [k, config[k as keyof ModelConfig]])), expected);
}

t.test('families parsed from real configs', async (t) => {
  t.test('OPT-125m: pre-LN, learned positions offset by 2, tied head', async (t) => {
    const config = await loadConfig(join(FIXTURES, 'opt-125m'));
    t.same(config, {
      family: 'opt',
      architecture: 'OPTForCausalLM',
      modelType: 'opt',
      vocabSize: 50272,
      hiddenSize: 768,
      numLayers: 12,
      numHeads: 12,
      numKvHeads: 12,
      headDim: 64,
      ffnSize: 3072,
      maxPositions: 2048,
      norm: 'layernorm',
      normEps: 1e-5,
      activation: 'relu',
      ropeTheta: undefined,
      tieWordEmbeddings: true,
      attentionBias: true,
      outputBias: true,
      mlpBias: true,
      preNorm: true,
      finalNorm: true,
      embedProjDim: 768,
      positionOffset: 2,
      slidingWindow: null,
      bosTokenId: 2,
      eosTokenId: 2,
      eosTokenIds: [2],
      padTokenId: 1,
      torchDtype: 'float16',
      raw: fixture('opt-125m'),
    });
  });

  t.test('OPT-350m: post-LN, no final norm, project_in/out from 512 to 1024', async (t) => {
    const config = await loadConfig(join(FIXTURES, 'opt-350m'));
    hasFields(t, config, { preNorm: false, finalNorm: false, embedProjDim: 512, hiddenSize: 1024, numLayers: 24, numHeads: 16, headDim: 64, ffnSize: 4096 });
  });

  t.test('GPT-2: n_inner null gives 4·n_embd, gelu_new, tied head, Conv1D biases', async (t) => {
    const config = await loadConfig(join(FIXTURES, 'gpt2'));
    t.same(config, {
      family: 'gpt2',
      architecture: 'GPT2LMHeadModel',
      modelType: 'gpt2',
      vocabSize: 50257,
      hiddenSize: 768,
      numLayers: 12,
      numHeads: 12,
      numKvHeads: 12,
      headDim: 64,
      ffnSize: 3072,
      maxPositions: 1024,
      norm: 'layernorm',
      normEps: 1e-5,
      activation: 'gelu_new',
      ropeTheta: undefined,
      tieWordEmbeddings: true,
      attentionBias: true,
      outputBias: true,
      mlpBias: true,
      preNorm: true,
      finalNorm: true,
      embedProjDim: 768,
      positionOffset: 0,
      slidingWindow: null,
      bosTokenId: 50256,
      eosTokenId: 50256,
      eosTokenIds: [50256],
      padTokenId: undefined,
      torchDtype: undefined,
      raw: fixture('gpt2'),
    });
  });

  t.test('TinyLlama-1.1B: grouped-query attention (32 query heads over 4 kv heads)', async (t) => {
    const config = await loadConfig(join(FIXTURES, 'tinyllama-1.1b'));
    t.same(config, {
      family: 'llama',
      architecture: 'LlamaForCausalLM',
      modelType: 'llama',
      vocabSize: 32000,
      hiddenSize: 2048,
      numLayers: 22,
      numHeads: 32,
      numKvHeads: 4,
      headDim: 64,
      ffnSize: 5632,
      maxPositions: 2048,
      norm: 'rmsnorm',
      normEps: 1e-5,
      activation: 'silu',
      ropeTheta: 10000,
      tieWordEmbeddings: false,
      attentionBias: false,
      outputBias: false,
      mlpBias: false,
      preNorm: true,
      finalNorm: true,
      embedProjDim: 2048,
      positionOffset: 0,
      slidingWindow: null,
      bosTokenId: 1,
      eosTokenId: 2,
      eosTokenIds: [2],
      padTokenId: undefined,
      torchDtype: 'bfloat16',
      raw: fixture('tinyllama-1.1b'),
    });
  });

  t.test('Llama-2-7b: no rope_theta means 10000; multi-head attention', async (t) => {
    const config = await loadConfig(join(FIXTURES, 'llama-2-7b'));
    hasFields(t, config, { ropeTheta: 10000, numKvHeads: 32, headDim: 128, ffnSize: 11008, maxPositions: 4096 });
  });

  t.test('Mistral-7B-v0.1: Llama family with a 4096-token sliding window and 8 kv heads', async (t) => {
    const config = await loadConfig(join(FIXTURES, 'mistral-7b-v0.1'));
    hasFields(t, config, { family: 'llama', architecture: 'MistralForCausalLM', modelType: 'mistral', slidingWindow: 4096, numKvHeads: 8, ffnSize: 14336 });
  });

  t.test('Mistral with sliding_window null attends over the whole sequence', async (t) => {
    const json = fixture('mistral-7b-v0.1');
    json.sliding_window = null;
    t.equal(parseConfig(json, FILE).slidingWindow, null);
  });

  t.test('Qwen2-0.5B: q/k/v biases without an o_proj bias, tied head, window unused', async (t) => {
    const config = await loadConfig(join(FIXTURES, 'qwen2-0.5b'));
    hasFields(t, config, {
      family: 'llama',
      modelType: 'qwen2',
      attentionBias: true,
      outputBias: false,
      mlpBias: false,
      tieWordEmbeddings: true,
      ropeTheta: 1e6,
      normEps: 1e-6,
      numHeads: 14,
      numKvHeads: 2,
      headDim: 64,
      slidingWindow: null,
    });
  });

  t.test('Llama attention_bias covers q, k, v and o; mlp_bias the MLP', async (t) => {
    const json = fixture('tinyllama-1.1b');
    Object.assign(json, { attention_bias: true, mlp_bias: true });
    hasFields(t, parseConfig(json, FILE), { attentionBias: true, outputBias: true, mlpBias: true });
  });

  t.test('a list of eos ids is kept whole (Llama 3.1 without its rope_scaling)', async (t) => {
    const json = fixture('llama-3.1-8b-instruct');
    json.rope_scaling = null;
    const config = parseConfig(json, FILE);
    t.same(config.eosTokenIds, [128001, 128008, 128009]);
    t.equal(config.eosTokenId, 128001);
    t.equal(config.ropeTheta, 500000);
  });

  t.test('head_dim, when stated, need not be hidden_size / heads', async (t) => {
    const json = fixture('tinyllama-1.1b');
    Object.assign(json, { hidden_size: 2050, head_dim: 96 });
    t.equal(parseConfig(json, FILE).headDim, 96);
  });

  t.test('model_type alone decides the architecture', async (t) => {
    const json = fixture('gpt2');
    delete json.architectures;
    t.equal(parseConfig(json, FILE).architecture, 'GPT2LMHeadModel');
  });

  t.test('pretraining_tp > 1 only splits matmuls in HF training: accepted', async (t) => {
    const json = fixture('llama-2-7b');
    json.pretraining_tp = 2;
    t.equal(parseConfig(json, FILE).numLayers, 32);
  });

  t.test('rope_scaling of type "default" is plain RoPE', async (t) => {
    for (const rope of [{ rope_type: 'default' }, { type: 'default' }]) {
      const json = fixture('tinyllama-1.1b');
      json.rope_scaling = rope;
      t.equal(parseConfig(json, FILE).ropeTheta, 10000);
    }
  });

  t.test('transformers 5 rope_parameters carry rope_theta', async (t) => {
    const json = fixture('llama-2-7b');
    json.rope_parameters = { rope_type: 'default', rope_theta: 500000 };
    t.equal(parseConfig(json, FILE).ropeTheta, 500000);
  });

  t.test('OPT enable_bias false removes every bias; _remove_final_layer_norm drops the final norm', async (t) => {
    const json = fixture('opt-125m');
    Object.assign(json, { enable_bias: false, _remove_final_layer_norm: true });
    hasFields(t, parseConfig(json, FILE), { attentionBias: false, outputBias: false, mlpBias: false, preNorm: true, finalNorm: false });
  });

  t.test('GPT-2 n_inner and the other activations it supports', async (t) => {
    const json = fixture('gpt2');
    Object.assign(json, { n_inner: 1024, activation_function: 'relu', layer_norm_epsilon: 1e-6 });
    hasFields(t, parseConfig(json, FILE), { ffnSize: 1024, activation: 'relu', normEps: 1e-6 });
    json.activation_function = 'gelu';
    t.equal(parseConfig(json, FILE).activation, 'gelu');
  });

  t.test('the input object is returned as raw, unchanged', async (t) => {
    const json = fixture('opt-350m');
    const config = parseConfig(json, FILE);
    t.equal(config.raw, json);
    t.same(json, fixture('opt-350m'));
  });
});

t.test('rope_scaling types other than "default" are rejected by name', async (t) => {
  const cases: [string, Record<string, unknown>][] = [
    ['linear', { type: 'linear', factor: 2.0 }],
    ['dynamic', { type: 'dynamic', factor: 2.0 }],
    ['yarn', { rope_type: 'yarn', factor: 4.0, original_max_position_embeddings: 32768 }],
    ['longrope', { rope_type: 'longrope', long_factor: [1], short_factor: [1] }],
  ];
  for (const [type, rope] of cases) {
    t.test(type, async (t) => {
      const json = fixture('tinyllama-1.1b');
      json.rope_scaling = rope;
      await rejected(t, json, 'ZOFO_UNSUPPORTED', /rope_scaling/, new RegExp(`"${type}"`));
    });
  }
  t.test('llama3 (the real Llama 3.1 config)', async (t) => {
    const err = await caught(() => loadConfig(join(FIXTURES, 'llama-3.1-8b-instruct')));
    t.equal(err.code, 'ZOFO_UNSUPPORTED');
    t.match(err.message, /llama-3\.1-8b-instruct[/\\]config\.json: rope_scaling type "llama3"/);
  });
  t.test('rope_parameters of another type', async (t) => {
    const json = fixture('llama-2-7b');
    json.rope_parameters = { rope_type: 'linear', factor: 2, rope_theta: 10000 };
    await rejected(t, json, 'ZOFO_UNSUPPORTED', /rope_parameters type "linear"/);
  });
  t.test('rope_scaling that is not an object', async (t) => {
    const json = fixture('tinyllama-1.1b');
    json.rope_scaling = 'linear';
    await rejected(t, json, 'ZOFO_BAD_CONFIG', /Expected an object or null for rope_scaling but received "linear" of type string/);
  });
  t.test('a bad rope_parameters.rope_theta', async (t) => {
    const json = fixture('llama-2-7b');
    json.rope_parameters = { rope_type: 'default', rope_theta: -1 };
    await rejected(t, json, 'ZOFO_BAD_CONFIG', /Expected a positive number for rope_parameters\.rope_theta but received -1 of type number/);
  });
});

t.test('unsupported features are rejected by name', async (t) => {
  const cases: [string, string, Record<string, unknown>, RegExp][] = [
    ['Llama activation', 'tinyllama-1.1b', { hidden_act: 'gelu' }, /hidden_act "gelu" \(supported: "silu"\)/],
    ['OPT activation', 'opt-125m', { activation_function: 'gelu' }, /activation_function "gelu" \(supported: "relu"\)/],
    ['GPT-2 activation', 'gpt2', { activation_function: 'swish' }, /activation_function "swish"/],
    ['OPT norms without affine weights', 'opt-125m', { layer_norm_elementwise_affine: false }, /layer_norm_elementwise_affine = false/],
    ['GPT-2 unscaled attention', 'gpt2', { scale_attn_weights: false }, /scale_attn_weights = false/],
    ['GPT-2 per-layer attention scaling', 'gpt2', { scale_attn_by_inverse_layer_idx: true }, /scale_attn_by_inverse_layer_idx = true/],
    ['GPT-2 reordered upcast attention', 'gpt2', { reorder_and_upcast_attn: true }, /reorder_and_upcast_attn = true/],
    ['GPT-2 cross-attention', 'gpt2', { add_cross_attention: true }, /add_cross_attention = true/],
    ['Qwen2 sliding window', 'qwen2-0.5b', { use_sliding_window: true }, /use_sliding_window = true/],
    ['sliding-attention layer types', 'qwen2-0.5b', { layer_types: ['full_attention', 'sliding_attention'] }, /layer_types entry "sliding_attention"/],
  ];
  for (const [what, name, edit, pattern] of cases) {
    t.test(what, async (t) => {
      await rejected(t, { ...fixture(name), ...edit }, 'ZOFO_UNSUPPORTED', pattern);
    });
  }
});

t.test('malformed numeric fields are named with what they held', async (t) => {
  const required: [string, string[]][] = [
    [
      'tinyllama-1.1b',
      ['vocab_size', 'hidden_size', 'intermediate_size', 'num_hidden_layers', 'num_attention_heads', 'max_position_embeddings', 'rms_norm_eps'],
    ],
    ['opt-125m', ['vocab_size', 'hidden_size', 'ffn_dim', 'num_hidden_layers', 'num_attention_heads', 'max_position_embeddings']],
    ['gpt2', ['vocab_size', 'n_embd', 'n_layer', 'n_head', 'n_positions']],
  ];
  for (const [name, fields] of required) {
    t.test(`${name}: a missing required field`, async (t) => {
      for (const field of fields) {
        const json = fixture(name);
        delete json[field];
        await rejected(t, json, 'ZOFO_BAD_CONFIG', new RegExp(`Expected a positive (integer|number) for ${field} but received undefined$`));
      }
    });
  }
  const invalid: [string, string, unknown, string][] = [
    ['tinyllama-1.1b', 'num_hidden_layers', 0, '0 of type number'],
    ['tinyllama-1.1b', 'hidden_size', '2048', '"2048" of type string'],
    ['tinyllama-1.1b', 'num_key_value_heads', 2.5, '2.5 of type number'],
    ['tinyllama-1.1b', 'head_dim', -64, '-64 of type number'],
    ['tinyllama-1.1b', 'rope_theta', 0, '0 of type number'],
    ['opt-125m', 'word_embed_proj_dim', 1e20, '100000000000000000000 of type number'],
    ['gpt2', 'n_inner', true, 'true of type boolean'],
    ['gpt2', 'layer_norm_epsilon', Infinity, 'Infinity of type number'],
    ['mistral-7b-v0.1', 'sliding_window', -1, '-1 of type number'],
  ];
  for (const [name, field, value, received] of invalid) {
    t.test(`${name}: ${field} = ${String(value)}`, async (t) => {
      await rejected(
        t,
        { ...fixture(name), [field]: value },
        'ZOFO_BAD_CONFIG',
        new RegExp(`for ${field} but received ${received.replace(/[.()]/g, '\\$&')}$`),
      );
    });
  }
  t.test('non-numeric and non-boolean fields of the wrong type', async (t) => {
    await rejected(
      t,
      { ...fixture('tinyllama-1.1b'), tie_word_embeddings: 'yes' },
      'ZOFO_BAD_CONFIG',
      /Expected a boolean for tie_word_embeddings but received "yes"/,
    );
    await rejected(t, { ...fixture('tinyllama-1.1b'), hidden_act: 7 }, 'ZOFO_BAD_CONFIG', /Expected a string for hidden_act but received 7/);
    await rejected(t, { ...fixture('tinyllama-1.1b'), eos_token_id: -1 }, 'ZOFO_BAD_CONFIG', /for eos_token_id but received -1/);
    await rejected(t, { ...fixture('tinyllama-1.1b'), torch_dtype: 16 }, 'ZOFO_BAD_CONFIG', /Expected a string for torch_dtype/);
    await rejected(t, { ...fixture('tinyllama-1.1b'), layer_types: 'full_attention' }, 'ZOFO_BAD_CONFIG', /for layer_types/);
  });
  t.test('hidden size not divisible by the heads', async (t) => {
    await rejected(
      t,
      { ...fixture('tinyllama-1.1b'), hidden_size: 2050 },
      'ZOFO_BAD_CONFIG',
      /hidden_size \(2050\) is not divisible by num_attention_heads \(32\)/,
    );
    await rejected(t, { ...fixture('gpt2'), n_embd: 770 }, 'ZOFO_BAD_CONFIG', /n_embd \(770\) is not divisible by n_head \(12\)/);
  });
  t.test('query heads not divisible by the kv heads', async (t) => {
    await rejected(
      t,
      { ...fixture('tinyllama-1.1b'), num_key_value_heads: 5 },
      'ZOFO_BAD_CONFIG',
      /num_attention_heads \(32\) is not divisible by num_key_value_heads \(5\)/,
    );
  });
});

t.test('architecture resolution', async (t) => {
  t.test('an unknown architecture lists the supported ones', async (t) => {
    await rejected(
      t,
      { ...fixture('tinyllama-1.1b'), architectures: ['FalconForCausalLM'], model_type: 'falcon' },
      'ZOFO_UNSUPPORTED',
      /architecture "FalconForCausalLM" is not supported/,
      /LlamaForCausalLM \(llama\)/,
      /MistralForCausalLM/,
      /Qwen2ForCausalLM/,
      /OPTForCausalLM/,
      /GPT2LMHeadModel/,
    );
  });
  t.test('an unknown model_type without architectures', async (t) => {
    const json: Record<string, unknown> = { ...fixture('tinyllama-1.1b'), model_type: 'falcon' };
    delete json.architectures;
    await rejected(t, json, 'ZOFO_UNSUPPORTED', /model_type "falcon" is not supported/);
  });
  t.test('neither architectures nor model_type', async (t) => {
    await rejected(t, { hidden_size: 8 }, 'ZOFO_UNSUPPORTED', /neither architectures nor model_type/);
  });
  t.test('model_type contradicting architectures[0]', async (t) => {
    await rejected(
      t,
      { ...fixture('tinyllama-1.1b'), model_type: 'opt' },
      'ZOFO_BAD_CONFIG',
      /model_type "opt" does not match architectures\[0\] "LlamaForCausalLM"/,
    );
  });
  t.test('architectures that is not a list of names', async (t) => {
    await rejected(
      t,
      { ...fixture('gpt2'), architectures: [] },
      'ZOFO_BAD_CONFIG',
      /Expected a non-empty list of class names for architectures but received an array of length 0/,
    );
    await rejected(t, { ...fixture('gpt2'), architectures: 'GPT2LMHeadModel' }, 'ZOFO_BAD_CONFIG', /for architectures/);
  });
  t.test('a config that is not an object', async (t) => {
    await rejected(t, [1, 2], 'ZOFO_BAD_CONFIG', /Expected a JSON object but received an array of length 2/);
    await rejected(t, null, 'ZOFO_BAD_CONFIG', /received null/);
  });
});

t.test('loadConfig file errors name the path', async (t) => {
  t.test('invalid JSON', async (t) => {
    const dir = t.testdir({ 'config.json': '{"model_type": "gpt2",' });
    const err = await caught(() => loadConfig(dir));
    t.equal(err.code, 'ZOFO_BAD_CONFIG');
    t.match(err.message, `${join(dir, 'config.json')}: not valid JSON`);
  });
  t.test('missing config.json', async (t) => {
    const dir = t.testdir({ 'tokenizer.json': '{}' });
    const err = await caught(() => loadConfig(dir));
    t.equal(err.code, 'ZOFO_IO');
    t.match(err.message, `${join(dir, 'config.json')}: cannot read: no such file`);
  });
  t.test('config.json that is a directory', async (t) => {
    const dir = t.testdir({ 'config.json': {} });
    const err = await caught(() => loadConfig(dir));
    t.equal(err.code, 'ZOFO_IO');
    t.match(err.message, join(dir, 'config.json'));
  });
});
