/**
 * The training flags, defined once: `train`, `compare`, `smoothness` and `demo` take
 * them from here, so a flag has the same name, meaning, validation and help text in every
 * command. A flag also names its place in a `--config` file (`--lr-x` is `zo.lr`), and
 * the config file is checked against a valibot schema built from the same definitions:
 * an unknown key is an error that names it and suggests the nearest valid one.
 *
 * Defaults: each definition carries the default `zofo train` uses; a command whose
 * defaults differ (compare's and demo's per-mode presets) states its own in `defaults`,
 * and `--help` shows whichever applies.
 */
import { readFile } from 'node:fs/promises';
import { InvalidArgumentError, Option, type Command } from 'commander';
import * as v from 'valibot';
import { TASK_NAMES } from '../data/tasks.js';
import { parseJsonText } from '../formats/files.js';
import { suggestKey } from './suggest.js';
import { UsageError } from './usage.js';

/** Training modes: hybrid (ZO on the base + LoRA by backprop), zo (MeZO), lora, full. */
export const MODES = ['hybrid', 'zo', 'lora', 'full'] as const;
/** One of MODES. */
export type Mode = (typeof MODES)[number];

type Schema = v.GenericSchema<unknown, unknown>;

interface FlagDef {
  /** As typed: `--lr-x`. */
  flag: string;
  /** Value placeholder (`<lr>`); none for a switch. */
  arg?: string;
  /** Place in a --config file: `zo.lr`. */
  path: string;
  description: string;
  /** What a value must be (a flag's text is parsed first: numbers, comma lists). */
  schema: Schema;
  parse?: 'number' | 'list';
  choices?: readonly string[];
  /** The default `zofo train` uses, as the help shows it (absent: none / required). */
  default?: string;
}

const positiveInt = v.pipe(v.number('must be a number'), v.safeInteger('must be an integer'), v.minValue(1, 'must be ≥ 1'));
const count = v.pipe(v.number('must be a number'), v.safeInteger('must be an integer'), v.minValue(0, 'must be ≥ 0'));
const positive = v.pipe(v.number('must be a number'), v.finite('must be finite'), v.gtValue(0, 'must be > 0'));
const nonNegative = v.pipe(v.number('must be a number'), v.finite('must be finite'), v.minValue(0, 'must be ≥ 0'));
const text = v.pipe(v.string('must be a string'), v.minLength(1, 'must not be empty'));
const oneOf = (values: readonly string[]) => v.picklist(values, `must be one of ${values.join(', ')}`);
const names = v.pipe(v.array(text, 'must be a list of names'), v.minLength(1, 'must name at least one'));

/** Every training flag, keyed by its option name (commander's camelCase of the flag). */
export const TRAINING_FLAGS = {
  model: { flag: '--model', arg: '<dir>', path: 'model', schema: text, description: 'HuggingFace model directory (config.json, safetensors, tokenizer.json)' },
  device: {
    flag: '--device',
    arg: '<device>',
    path: 'device',
    schema: text,
    description: 'where to run: cpu, cuda, cuda:N, or auto (CUDA when usable)',
    default: 'cpu',
  },
  dtype: {
    flag: '--dtype',
    arg: '<dtype>',
    path: 'dtype',
    schema: oneOf(['f32', 'bf16', 'f16']),
    choices: ['f32', 'bf16', 'f16'],
    description: 'storage of the base weights',
    default: 'bf16 on CUDA, f32 on the CPU',
  },
  compute: {
    flag: '--compute',
    arg: '<precision>',
    path: 'compute',
    schema: oneOf(['fp32', 'tf32', 'bf16']),
    choices: ['fp32', 'tf32', 'bf16'],
    description: 'matmul operand precision (docs/precision.md)',
    default: 'bf16 on CUDA, fp32 on the CPU',
  },
  task: { flag: '--task', arg: '<name>', path: 'task', schema: oneOf(TASK_NAMES), choices: TASK_NAMES, description: 'task format' },
  train: { flag: '--train', arg: '<file>', path: 'train', schema: text, description: 'training data file' },
  dev: { flag: '--dev', arg: '<file>', path: 'dev', schema: text, description: 'dev data file (evaluated during training; selects the best checkpoint)' },
  trainSamples: {
    flag: '--train-samples',
    arg: '<n>',
    path: 'trainSamples',
    schema: positiveInt,
    parse: 'number',
    description: 'sample n training examples with --seed (MeZO-style k-shot)',
    default: 'all',
  },
  devSamples: {
    flag: '--dev-samples',
    arg: '<n>',
    path: 'devSamples',
    schema: positiveInt,
    parse: 'number',
    description: 'sample n dev examples with --seed',
    default: 'all',
  },
  mode: {
    flag: '--mode',
    arg: '<mode>',
    path: 'mode',
    schema: oneOf(MODES),
    choices: MODES,
    description: 'hybrid: ZO on base + LoRA by backprop; zo: MeZO; lora: LoRA only; full: backprop on every weight',
    default: 'hybrid',
  },
  steps: { flag: '--steps', arg: '<n>', path: 'steps', schema: positiveInt, parse: 'number', description: 'optimizer steps' },
  epochs: { flag: '--epochs', arg: '<n>', path: 'epochs', schema: positiveInt, parse: 'number', description: 'epochs', default: '1 when --steps is not given' },
  batchSize: { flag: '--batch-size', arg: '<n>', path: 'batchSize', schema: positiveInt, parse: 'number', description: 'examples per step', default: '16' },
  lrX: { flag: '--lr-x', arg: '<lr>', path: 'zo.lr', schema: positive, parse: 'number', description: 'ZO learning rate of the base weights', default: '1e-6' },
  lrY: {
    flag: '--lr-y',
    arg: '<lr>',
    path: 'fo.lr',
    schema: positive,
    parse: 'number',
    description: 'first-order learning rate (the adapters)',
    default: '1e-4',
  },
  mu: {
    flag: '--mu',
    arg: '<mu>',
    path: 'zo.mu',
    schema: positive,
    parse: 'number',
    description: 'ZO smoothing radius',
    default: '1e-3; 3e-3 under bf16 compute',
  },
  estimator: {
    flag: '--estimator',
    arg: '<name>',
    path: 'zo.estimator',
    schema: oneOf(['forward', 'central']),
    choices: ['forward', 'central'],
    description: 'ZO estimator',
    default: 'forward',
  },
  perturbations: {
    flag: '--perturbations',
    arg: '<q>',
    path: 'zo.perturbations',
    schema: positiveInt,
    parse: 'number',
    description: 'ZO perturbations per step',
    default: '1',
  },
  wdX: { flag: '--wd-x', arg: '<wd>', path: 'zo.weightDecay', schema: nonNegative, parse: 'number', description: 'ZO weight decay', default: '0' },
  wdY: { flag: '--wd-y', arg: '<wd>', path: 'fo.weightDecay', schema: nonNegative, parse: 'number', description: 'first-order weight decay', default: '0' },
  foOptimizer: {
    flag: '--fo-optimizer',
    arg: '<name>',
    path: 'fo.optimizer',
    schema: oneOf(['sgd', 'momentum', 'adamw']),
    choices: ['sgd', 'momentum', 'adamw'],
    description: 'first-order optimizer',
    default: 'sgd',
  },
  rank: { flag: '--rank', arg: '<r>', path: 'lora.rank', schema: positiveInt, parse: 'number', description: 'LoRA rank', default: '8' },
  alpha: { flag: '--alpha', arg: '<a>', path: 'lora.alpha', schema: positive, parse: 'number', description: 'LoRA alpha', default: '16' },
  targets: {
    flag: '--targets',
    arg: '<list>',
    path: 'lora.targets',
    schema: names,
    parse: 'list',
    description: 'LoRA target modules, comma-separated',
    default: 'q_proj,v_proj; c_attn for GPT-2',
  },
  seed: { flag: '--seed', arg: '<n>', path: 'seed', schema: count, parse: 'number', description: 'run seed (sampler and perturbations)', default: '0' },
  evalEvery: {
    flag: '--eval-every',
    arg: '<n>',
    path: 'evalEvery',
    schema: positiveInt,
    parse: 'number',
    description: 'evaluate on --dev every n steps',
    default: 'once per epoch',
  },
  checkpointEvery: {
    flag: '--checkpoint-every',
    arg: '<n>',
    path: 'checkpointEvery',
    schema: positiveInt,
    parse: 'number',
    description: 'write a checkpoint every n steps',
    default: 'at the end and on Ctrl-C',
  },
  keep: { flag: '--keep', arg: '<n>', path: 'keep', schema: positiveInt, parse: 'number', description: 'step checkpoints to keep', default: '2' },
  out: { flag: '--out', arg: '<dir>', path: 'out', schema: text, description: 'output directory' },
  resume: { flag: '--resume', path: 'resume', schema: v.boolean('must be true or false'), description: 'continue from the latest checkpoint under --out' },
  parallel: {
    flag: '--parallel',
    arg: '<kind>',
    path: 'parallel',
    schema: oneOf(['data', 'perturbation']),
    choices: ['data', 'perturbation'],
    description: 'under mpirun: each rank a slice of every batch (data) or a share of the q perturbations (perturbation)',
    default: 'data when started by mpirun/srun with several ranks',
  },
  overwrite: {
    flag: '--overwrite',
    path: 'overwrite',
    schema: v.boolean('must be true or false'),
    description: 'replace an earlier run under --out (its checkpoints, adapter, trajectory and curves)',
  },
} as const satisfies Record<string, FlagDef>;

/** A training flag's option name (`lrX` for `--lr-x`). */
export type FlagName = keyof typeof TRAINING_FLAGS;
/** Parsed training flags by name (only those given). */
export type FlagValues = Partial<Record<FlagName, unknown>>;

const def = (name: FlagName): FlagDef => TRAINING_FLAGS[name];

/** A flag's value checked against its schema: the value, or the first problem. */
function check(name: FlagName, value: unknown): { ok: true; value: unknown } | { ok: false; message: string } {
  const r = v.safeParse(def(name).schema, value);
  return r.success ? { ok: true, value: r.output } : { ok: false, message: r.issues[0].message };
}

/** Parses a flag's text the way its definition says, then validates it. */
function parseFlag(name: FlagName, raw: string): unknown {
  const d = def(name);
  const value =
    d.parse === 'number'
      ? raw.trim() === ''
        ? NaN
        : Number(raw)
      : d.parse === 'list'
        ? raw
            .split(',')
            .map((s) => s.trim())
            .filter(Boolean)
        : raw;
  const r = check(name, value);
  if (!r.ok) throw new InvalidArgumentError(r.message);
  return r.value;
}

/**
 * Adds training flags to a command. `defaults` replaces the help's default for this
 * command (a command that applies other defaults must say so here).
 */
export function addTrainingFlags(cmd: Command, flags: readonly FlagName[], defaults: Partial<Record<FlagName, string>> = {}): Command {
  for (const name of flags) {
    const d = def(name);
    const shown = Object.hasOwn(defaults, name) ? defaults[name] : d.default;
    const opt = new Option(d.arg ? `${d.flag} ${d.arg}` : d.flag, `${d.description}${shown === undefined ? '' : ` (default: ${shown})`}`);
    if (d.choices) opt.choices(d.choices);
    else if (d.arg) opt.argParser((raw: string) => parseFlag(name, raw));
    cmd.addOption(opt);
  }
  return cmd;
}

/** The flags' values, from commander's parsed options (only the ones given). */
export function givenFlags(options: Record<string, unknown>, flags: readonly FlagName[]): FlagValues {
  const out: FlagValues = {};
  for (const name of flags) if (options[name] !== undefined) out[name] = options[name];
  return out;
}

// ---- config files ----

/** Valid config paths → flag name. */
function configPaths(flags: readonly FlagName[]): Map<string, FlagName> {
  return new Map(flags.map((n) => [def(n).path, n]));
}

/** The valibot schema of a config file that may hold `flags`: strict objects, nested by path. */
export function configSchema(flags: readonly FlagName[]): v.GenericSchema<unknown, Record<string, unknown>> {
  const tree: Record<string, Schema | Record<string, Schema>> = {};
  for (const name of flags) {
    const [head, tail] = def(name).path.split('.') as [string, string | undefined];
    const s = v.optional(def(name).schema);
    if (tail === undefined) tree[head] = s;
    else ((tree[head] ??= {}) as Record<string, Schema>)[tail] = s;
  }
  const entries: Record<string, Schema> = {};
  for (const [k, s] of Object.entries(tree)) {
    entries[k] = typeof (s as Schema).kind === 'string' ? (s as Schema) : v.optional(v.strictObject(s as Record<string, Schema>, `must be an object`));
  }
  return v.strictObject(entries, 'must be a JSON object') as v.GenericSchema<unknown, Record<string, unknown>>;
}

/**
 * Checks a parsed config file against the flags a command takes; returns the values by
 * flag name. Errors (ZOFO_BAD_CONFIG) name the file and the key, and an unknown key gets
 * the nearest valid one as a suggestion.
 */
export function validateConfig(file: string, json: unknown, flags: readonly FlagName[]): FlagValues {
  const paths = configPaths(flags);
  // valibot's objects take arrays too (indices as keys): a config file is a JSON object.
  if (typeof json !== 'object' || json === null || Array.isArray(json)) throw new UsageError('ZOFO_BAD_CONFIG', `${file}: must be a JSON object`);
  const r = v.safeParse(configSchema(flags), json);
  if (!r.success) {
    const where = (issue: v.BaseIssue<unknown>) => (issue.path ?? []).map((p) => String((p as { key: unknown }).key)).join('.');
    // Unknown keys: valibot reports each as a strict object's issue whose path ends at the key.
    const unknown = r.issues.filter((i) => i.type === 'strict_object' && i.expected === 'never' && (i.path?.length ?? 0) > 0).map(where);
    if (unknown.length > 0) {
      const aliases = new Map<string, string>();
      for (const [path, name] of paths) {
        aliases.set(path, path);
        aliases.set(name, path);
        aliases.set(def(name).flag.slice(2), path);
      }
      const named = unknown.map((key) => {
        const near = suggestKey(key, aliases);
        return `"${key}"${near ? ` (did you mean "${near}"?)` : ''}`;
      });
      throw new UsageError(
        'ZOFO_BAD_CONFIG',
        `${file}: unknown key${unknown.length > 1 ? 's' : ''} ${named.join(', ')}; valid keys: ${[...paths.keys()].join(', ')}`,
      );
    }
    const issue = r.issues[0];
    throw new UsageError('ZOFO_BAD_CONFIG', `${file}: ${where(issue) ? `"${where(issue)}" ` : ''}${issue.message}`);
  }
  const out: FlagValues = {};
  for (const [path, name] of paths) {
    const [head, tail] = path.split('.') as [string, string | undefined];
    const value = tail === undefined ? r.output[head] : (r.output[head] as Record<string, unknown> | undefined)?.[tail];
    if (value !== undefined) out[name] = value;
  }
  return out;
}

/** Reads and validates a JSON config file (see validateConfig). */
export async function readConfigFile(file: string, flags: readonly FlagName[]): Promise<FlagValues> {
  let content: string;
  try {
    content = await readFile(file, 'utf8');
  } catch (err) {
    throw new UsageError('ZOFO_IO', `${file}: cannot read the config file: ${(err as Error).message}`);
  }
  let json: unknown;
  try {
    json = parseJsonText(file, content);
  } catch (err) {
    throw new UsageError('ZOFO_BAD_CONFIG', (err as Error).message);
  }
  return validateConfig(file, json, flags);
}
