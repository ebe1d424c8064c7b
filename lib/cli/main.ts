/**
 * `zofo` — the command line: train, eval, replay, merge, bench, demo, smoothness, study,
 * compare. Arguments are parsed with commander; each command calls a function of
 * lib/cli/commands.ts (or its own module). The training flags are defined once, in
 * lib/cli/flags.ts. A JSON config file (--config) fills the same fields as the flags;
 * flags win.
 *
 * Commands are registered from COMMANDS: a new command is one function that adds itself
 * to the program. A bad option or config file is reported on the last line of stderr
 * with its error code, and exits with code 2; other failures exit with code 1.
 */
import { spawn, spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdtemp } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Command, CommanderError, InvalidArgumentError, Option } from 'commander';
import { packageRoot } from '../binding.js';
import { ZofoError } from '../errors.js';
import { TASK_NAMES } from '../data/tasks.js';
import { LLAMA_SHAPES } from '../model/shapes.js';
import { evalCommand, mergeCommand, replayCommand, train, type TrainConfig } from './commands.js';
import { compare, type CompareMode, type ModeOverrides } from './compare.js';
import { demo, DEMO_PRESETS } from './demo.js';
import { addTrainingFlags, givenFlags, readConfigFile, type FlagName, type FlagValues } from './flags.js';
import { ignoreBrokenPipes } from './pipes.js';
import { smoothness } from './smoothness.js';
import { UsageError } from './usage.js';
import { OBJECTIVES, study } from '../theory/study.js';

const int =
  (name: string) =>
  (v: string): number => {
    const n = Number(v);
    if (!Number.isSafeInteger(n) || n < 1) throw new InvalidArgumentError(`${name} must be a positive integer`);
    return n;
  };
const num =
  (name: string) =>
  (v: string): number => {
    const n = Number(v);
    if (!Number.isFinite(n)) throw new InvalidArgumentError(`${name} must be a number`);
    return n;
  };
const list = (v: string): string[] =>
  v
    .split(',')
    .map((s) => s.trim())
    .filter(Boolean);

// ---- train ----

const TRAIN_FLAGS: readonly FlagName[] = [
  'model',
  'device',
  'dtype',
  'compute',
  'task',
  'train',
  'dev',
  'trainSamples',
  'devSamples',
  'mode',
  'steps',
  'epochs',
  'batchSize',
  'lrX',
  'lrY',
  'mu',
  'estimator',
  'perturbations',
  'wdX',
  'wdY',
  'foOptimizer',
  'rank',
  'alpha',
  'targets',
  'seed',
  'evalEvery',
  'checkpointEvery',
  'keep',
  'out',
  'resume',
  'overwrite',
  'parallel',
];

/** Training flag values (config file, then flags over it) → the TrainConfig shape. */
export function trainConfig(flags: FlagValues, file: FlagValues): TrainConfig {
  const c: FlagValues = { ...file, ...flags };
  if (flags.steps !== undefined && flags.epochs !== undefined) throw new UsageError('ZOFO_INVALID_ARG', 'zofo train: give --steps or --epochs, not both');
  if (flags.steps !== undefined) delete c.epochs;
  if (flags.epochs !== undefined) delete c.steps;
  if (c.steps !== undefined && c.epochs !== undefined) throw new UsageError('ZOFO_INVALID_ARG', 'zofo train: give steps or epochs, not both');
  for (const k of ['model', 'task', 'train', 'out'] as const) {
    if (c[k] === undefined) throw new UsageError('ZOFO_INVALID_ARG', `zofo train: --${k} is required (or "${k}" in the --config file)`);
  }
  const pick = (entries: Array<[string, FlagName]>) => Object.fromEntries(entries.filter(([, f]) => c[f] !== undefined).map(([k, f]) => [k, c[f]]));
  const top = pick(
    (
      [
        'model',
        'device',
        'dtype',
        'task',
        'train',
        'dev',
        'trainSamples',
        'devSamples',
        'mode',
        'steps',
        'epochs',
        'batchSize',
        'seed',
        'evalEvery',
        'checkpointEvery',
        'keep',
        'out',
        'resume',
        'overwrite',
        'compute',
        'parallel',
      ] as const
    ).map((k) => [k, k]),
  );
  return {
    ...top,
    zo: pick([
      ['lr', 'lrX'],
      ['mu', 'mu'],
      ['estimator', 'estimator'],
      ['perturbations', 'perturbations'],
      ['weightDecay', 'wdX'],
    ]),
    fo: pick([
      ['lr', 'lrY'],
      ['optimizer', 'foOptimizer'],
      ['weightDecay', 'wdY'],
    ]),
    lora: pick([
      ['rank', 'rank'],
      ['alpha', 'alpha'],
      ['targets', 'targets'],
    ]),
  } as unknown as TrainConfig;
}

function trainCommand(p: Command): void {
  const cmd = p
    .command('train')
    .description('fine-tune a HuggingFace model directory on a task; writes checkpoints, the PEFT adapter, the ZO trajectory and curves under --out')
    .option(
      '--config <file>',
      'JSON file with the same fields (model, task, train, dev, mode, steps, zo: {lr, mu, ...}, fo: {lr, ...}, lora: {...}, out, ...); flags override it',
    );
  addTrainingFlags(cmd, TRAIN_FLAGS);
  cmd.action(async (o: Record<string, unknown>) => {
    const file = typeof o.config === 'string' ? await readConfigFile(o.config, TRAIN_FLAGS) : {};
    const summary = await train(trainConfig(givenFlags(o, TRAIN_FLAGS), file));
    if (summary.reason === 'aborted') process.exitCode = 130;
    if (summary.rank !== 0) return; // under mpirun only rank 0 reports
    const acc = summary.final?.accuracy;
    console.log(
      `${summary.reason} after ${summary.steps} steps` +
        (summary.final
          ? `; dev loss ${summary.final.loss.toFixed(4)}${acc === null || acc === undefined ? '' : `, accuracy ${(100 * acc).toFixed(1)}%`}`
          : '') +
        (summary.best ? ` (best at step ${summary.best.step})` : ''),
    );
    for (const f of summary.files) console.log(`  ${f}`);
  });
}

// ---- eval, replay, merge ----

function evalCommandCli(p: Command): void {
  p.command('eval')
    .description('loss and accuracy of a model (optionally + ZO trajectory + adapter) on a task file')
    .requiredOption('--model <dir>', 'HuggingFace model directory')
    .option('--device <device>', 'where to run: cpu, cuda, cuda:N, or auto (default: cpu)')
    .option('--adapter <dir>', 'PEFT adapter directory (one trained with ZO updates of the base needs their --log)')
    .option('--log <file>', 'ZO trajectory to replay onto the model first')
    .addOption(new Option('--task <name>', 'task format').choices([...TASK_NAMES]).makeOptionMandatory())
    .requiredOption('--data <file>', 'data file')
    .option('--samples <n>', 'sample n examples with --seed (default: all)', int('--samples'))
    .option('--seed <n>', 'sampling seed (default: 0)', (v) => {
      const n = Number(v);
      if (!Number.isSafeInteger(n) || n < 0) throw new InvalidArgumentError('--seed must be a non-negative integer');
      return n;
    })
    .option('--batch-size <n>', 'examples per forward (default: 16)', int('--batch-size'))
    .action(
      async (o: {
        model: string;
        adapter?: string;
        log?: string;
        task: TrainConfig['task'];
        data: string;
        samples?: number;
        batchSize?: number;
        seed?: number;
      }) => {
        const r = await evalCommand(o);
        console.log(`${r.examples} examples: loss ${r.loss.toFixed(4)}${r.accuracy === null ? '' : `, accuracy ${(100 * r.accuracy).toFixed(1)}%`}`);
      },
    );
}

function replayCommandCli(p: Command): void {
  p.command('replay')
    .description('rebuild a ZO-fine-tuned base from the base checkpoint and its trajectory log')
    .requiredOption('--base <dir>', 'the base model directory the log starts from')
    .requiredOption('--log <file>', 'trajectory log (trajectory.zlog)')
    .requiredOption('--out <dir>', 'output HuggingFace directory (written whole, or not at all)')
    .option('--overwrite', 'replace --out when it exists')
    .action(async (o: { base: string; log: string; out: string; overwrite?: boolean }) => {
      await replayCommand(o);
      console.log(`wrote ${o.out}`);
    });
}

function mergeCommandCli(p: Command): void {
  p.command('merge')
    .description('merge a PEFT adapter (and optionally a ZO trajectory) into the base: one HuggingFace directory')
    .requiredOption('--model <dir>', 'base model directory')
    .requiredOption('--adapter <dir>', 'PEFT adapter directory (one trained with ZO updates of the base needs their --log)')
    .option('--log <file>', 'ZO trajectory to replay first')
    .requiredOption('--out <dir>', 'output HuggingFace directory (written whole, or not at all)')
    .option('--overwrite', 'replace --out when it exists')
    .action(async (o: { model: string; adapter: string; log?: string; out: string; overwrite?: boolean }) => {
      await mergeCommand(o);
      console.log(`wrote ${o.out}`);
    });
}

// ---- bench ----

/**
 * What `zofo bench` runs and roughly costs, said before it starts. Peak RSS measured
 * with /usr/bin/time on a 2-core CPU machine: perturb 1.3 GiB, forward 1.2 GiB; without
 * BLAS the forward benchmark alone ran past 15 minutes there.
 */
export const BENCH_PLAN = {
  suite: {
    runs: ['perturb', 'forward', 'step'],
    about: 'the perturbation engine (256 MiB buffers), the forward pass and the hybrid step (a 134M-parameter model)',
    cost: 'several minutes with BLAS (much longer without), up to about 2 GB of memory',
  },
  memory: {
    runs: ['memory'],
    about: 'a random Llama-shaped model of --shape built in memory, then hybrid steps (bench/memory.ts)',
    cost: "the shape's weights in memory (llama-7b in bf16: about 13.5 GB, minutes a step on a small CPU)",
  },
  torch: {
    runs: ['torch'],
    about: 'zofo vs the plain-PyTorch reference, machine limits and scaling; writes bench/RESULTS.md',
    cost: 'longer than the suite (and --large adds a 134M-parameter model), up to a few GB of memory',
  },
} as const;

function benchCommand(p: Command): void {
  p.command('bench')
    .description(
      'run the benchmark suite (perturbation engine, forward, hybrid step) and print its tables; --torch: side by side with the plain-PyTorch reference, writing bench/RESULTS.md; `bench memory`: peak memory and step time of a large random model. Says what it will run and cost first; Ctrl-C stops it',
    )
    .argument('[suite]', "'memory': a random Llama-shaped model of --shape, hybrid steps, one JSON line of weight bytes, peak memory and step time")
    .option(
      '--torch',
      'zofo vs the PyTorch reference (MeZO, LoRA, hybrid), machine limits and scaling (needs python3-torch; installs it with apt when missing)',
    )
    .option('--large', 'with --torch: add the ~134M model')
    .option('--shape <name>', `memory: the model shape (${Object.keys(LLAMA_SHAPES).join(', ')})`, 'llama-1b')
    .option('--dtype <dtype>', 'memory: storage dtype (f32, bf16, f16)', 'bf16')
    .option('--device <device>', 'memory: cpu, cuda or cuda:N', 'cpu')
    .option('--steps <n>', 'memory: hybrid steps to run', '2')
    .option('--batch <n>', 'memory: examples per step', '1')
    .option('--seq <n>', 'memory: tokens per example', '64')
    .option('--checkpoint', 'memory: write the random model to a temporary fp32 checkpoint first, load it back and report the load too')
    .action(
      async (
        suite: string | undefined,
        o: { torch?: boolean; large?: boolean; shape: string; dtype: string; device: string; steps: string; batch: string; seq: string; checkpoint?: boolean },
      ) => {
        const dist = join(dirname(fileURLToPath(import.meta.url)), '..', '..', 'bench');
        if (suite !== undefined && suite !== 'memory')
          throw new UsageError('ZOFO_INVALID_ARG', `zofo bench: unknown suite ${JSON.stringify(suite)} (the one named suite is 'memory')`);
        const plan = suite === 'memory' ? BENCH_PLAN.memory : o.torch ? BENCH_PLAN.torch : BENCH_PLAN.suite;
        const memoryArgs = [
          '--shape',
          o.shape,
          '--dtype',
          o.dtype,
          '--device',
          o.device,
          '--steps',
          o.steps,
          '--batch',
          o.batch,
          '--seq',
          o.seq,
          ...(o.checkpoint ? ['--checkpoint'] : []),
        ];
        const runs = plan.runs.map((name) => [name, ...(name === 'torch' && o.large ? ['--large'] : []), ...(name === 'memory' ? memoryArgs : [])]);
        for (const [name] of runs) {
          const file = join(dist, `${name}.js`);
          if (!existsSync(file)) throw new ZofoError('ZOFO_LOAD_FAILED', `${file} is missing: run \`npm run build:ts\` first`);
        }
        process.stderr.write(
          `zofo bench: ${plan.about}; runs ${runs.map(([n]) => n).join(', ')} one after another: ` + `${plan.cost}, on every CPU core. Ctrl-C stops it.\n`,
        );
        for (const [name, ...args] of runs) {
          const code = await runInterruptibly(process.execPath, [join(dist, `${name}.js`), ...args]);
          if (code !== 0) {
            process.exitCode = code;
            return;
          }
        }
      },
    );
}

/** Runs a child with this terminal; Ctrl-C goes to it, and this process waits for it and returns 130. */
function runInterruptibly(cmd: string, args: string[]): Promise<number> {
  return new Promise((resolve, reject) => {
    const child = spawn(cmd, args, { stdio: 'inherit' });
    let interrupted = false;
    // The terminal sends SIGINT to the whole process group: the child gets it too.
    const onSigint = () => {
      interrupted = true;
    };
    process.on('SIGINT', onSigint);
    child.on('error', (err) => {
      process.removeListener('SIGINT', onSigint);
      reject(err);
    });
    child.on('close', (code, signal) => {
      process.removeListener('SIGINT', onSigint);
      resolve(interrupted || signal === 'SIGINT' ? 130 : (code ?? 1));
    });
  });
}

// ---- demo ----

const DEMO_FLAGS: readonly FlagName[] = ['steps', 'batchSize', 'lrX', 'lrY', 'mu', 'rank', 'alpha', 'seed'];

function demoCommand(p: Command): void {
  const cmd = p
    .command('demo')
    .description(
      'fine-tune the embedded pretrained model on the built-in task with hybrid, ZO-only and LoRA-only (same budget), print accuracy before/after, and plot it',
    );
  addTrainingFlags(cmd, DEMO_FLAGS, {
    steps: '150 per mode',
    lrX: `${DEMO_PRESETS.hybrid.zo!.lr}, the demo preset of hybrid and zo`,
    lrY: `${DEMO_PRESETS.hybrid.fo!.lr}, the demo preset of hybrid and lora`,
    seed: '0; the optimizer and the LoRA init use seed + 1',
  });
  cmd
    .option('--modes <list>', 'modes to run, comma-separated (default: hybrid,zo,lora)', list)
    .option('--out <dir>', 'where the chart and CSV go (default: a new folder under the system temp dir)')
    .action(async (o: Record<string, unknown>) => {
      const f = givenFlags(o, DEMO_FLAGS);
      const out = (o.out as string | undefined) ?? (await mkdtemp(join(tmpdir(), 'zofo-demo-')));
      await demo({
        out,
        modes: o.modes as never,
        steps: f.steps as number | undefined,
        batchSize: f.batchSize as number | undefined,
        seed: f.seed as number | undefined,
        lrX: f.lrX as number | undefined,
        lrY: f.lrY as number | undefined,
        mu: f.mu as number | undefined,
        lora: { ...(f.rank !== undefined ? { rank: f.rank as number } : {}), ...(f.alpha !== undefined ? { alpha: f.alpha as number } : {}) },
      });
    });
}

// ---- smoothness ----

const SMOOTHNESS_FLAGS: readonly FlagName[] = ['model', 'task', 'batchSize', 'rank', 'lrX', 'lrY', 'perturbations', 'seed'];

function smoothnessCommand(p: Command): void {
  const cmd = p
    .command('smoothness')
    .description('estimate the hybrid smoothness constants L_x, L_y on a model and task, and judge learning rates against what the analysis admits');
  addTrainingFlags(cmd, SMOOTHNESS_FLAGS, {
    model: 'the embedded demo model and task',
    lrX: 'none; give one to have it judged',
    lrY: 'none; give one to have it judged',
  });
  cmd
    .option('--adapter <dir>', 'PEFT adapter to estimate L_y at (default: fresh LoRA adapters)')
    .option('--data <file>', 'data file (minibatches are sampled from it)')
    .option('--batches <n>', 'minibatches to estimate on (default: 3)', int('--batches'))
    .option('--iterations <n>', 'power iterations (default: 20)', int('--iterations'))
    .option('--directions <n>', 'random directions for the forward-only curvature (default: 8)', int('--directions'))
    .action(async (o: Record<string, unknown>) => {
      await smoothness(o as never);
    });
}

function studyCommand(p: Command): void {
  p.command('study')
    .description(
      "the convergence testbed: hybrid reshuffling SGD on objectives with KNOWN L_x, L_y (and one violating hybrid smoothness) for several rates; gradient norm vs epoch next to the theory's reference slope",
    )
    .addOption(new Option('--objective <name>', 'objective (default: all)').choices([...OBJECTIVES]))
    .option('--dim-x <n>', 'dimension of x (default 16)', int('--dim-x'))
    .option('--dim-y <n>', 'dimension of y (default 8)', int('--dim-y'))
    .option('--n <n>', 'examples in the finite sum (default 32)', int('--n'))
    .option('--batch-size <n>', 'minibatch size (default 8)', int('--batch-size'))
    .option('--epochs <n>', 'epochs (default 300)', int('--epochs'))
    .option('--lr-x <list>', "η_x values, comma-separated (default: the theory's 1/(4(d_x+4)L_x) × {1, 4})", list)
    .option('--lr-y <list>', 'η_y values, comma-separated (default: {0.5, 1, 2.5}/L_y)', list)
    .option('--mu <list>', 'smoothing radii, comma-separated (default 1e-3)', list)
    .option('--seed <n>', 'seed (default 0)', (v) => Number(v))
    .option('--out <dir>', 'where the charts and CSVs go (default ./zofo-study)')
    .action(async (o: Record<string, unknown>) => {
      const nums = (v: unknown, name: string) =>
        (v as string[]).map((x) => {
          const n = Number(x);
          if (!Number.isFinite(n) || n <= 0) throw new UsageError('ZOFO_INVALID_ARG', `zofo study: ${name} ${x} is not a positive number`);
          return n;
        });
      const out = (o.out as string | undefined) ?? 'zofo-study';
      for (const objective of o.objective ? [o.objective as (typeof OBJECTIVES)[number]] : OBJECTIVES) {
        const r = await study({
          objective,
          dimX: (o.dimX as number) ?? 16,
          dimY: (o.dimY as number) ?? 8,
          n: (o.n as number) ?? 32,
          batchSize: (o.batchSize as number) ?? 8,
          epochs: (o.epochs as number) ?? 300,
          seed: (o.seed as number) ?? 0,
          grid: { lrX: o.lrX ? nums(o.lrX, '--lr-x') : 'theory', lrY: o.lrY ? nums(o.lrY, '--lr-y') : 'theory', mu: o.mu ? nums(o.mu, '--mu') : [1e-3] },
          out: join(out, objective),
        });
        console.log(`\n${objective}\n${r.table}\nchart: ${r.files.svg}`);
      }
    });
}
// ---- compare ----

const COMPARE_FLAGS: readonly FlagName[] = [
  'model',
  'task',
  'train',
  'dev',
  'trainSamples',
  'devSamples',
  'steps',
  'batchSize',
  'lrX',
  'lrY',
  'mu',
  'estimator',
  'perturbations',
  'wdX',
  'wdY',
  'foOptimizer',
  'rank',
  'alpha',
  'targets',
  'seed',
  'evalEvery',
];

/** compare's training flags → per-mode optimizer overrides and LoRA options. */
export function compareOverrides(
  f: FlagValues,
  lrFull: number | undefined,
): { optimizers: Partial<Record<CompareMode, ModeOverrides>>; lora: Record<string, unknown> } {
  const pick = (entries: Array<[string, FlagName]>) => Object.fromEntries(entries.filter(([, n]) => f[n] !== undefined).map(([k, n]) => [k, f[n]]));
  const zo = pick([
    ['lr', 'lrX'],
    ['mu', 'mu'],
    ['estimator', 'estimator'],
    ['perturbations', 'perturbations'],
    ['weightDecay', 'wdX'],
  ]);
  const fo = pick([
    ['lr', 'lrY'],
    ['optimizer', 'foOptimizer'],
    ['weightDecay', 'wdY'],
  ]);
  return {
    optimizers: { hybrid: { zo, fo }, zo: { zo }, lora: { fo }, full: lrFull === undefined ? {} : { fo: { lr: lrFull } } },
    lora: pick([
      ['rank', 'rank'],
      ['alpha', 'alpha'],
      ['targets', 'targets'],
    ]),
  };
}

function compareCommand(p: Command): void {
  const cmd = p
    .command('compare')
    .description(
      "the paper's experiment at your scale: hybrid, ZO-only, LoRA-only and full fine-tuning with the same model, task, batch and budget; accuracy over steps and time, steps to a target, peak memory, one chart; --seeds N: N runs per mode, mean ± sd and 95% intervals",
    );
  addTrainingFlags(cmd, COMPARE_FLAGS, {
    model: 'the embedded demo model',
    task: 'the demo task (with --train and --dev)',
    steps: '150 per mode',
    lrX: `the mode's preset: ${DEMO_PRESETS.hybrid.zo!.lr} for hybrid and zo`,
    lrY: `the mode's preset: ${DEMO_PRESETS.hybrid.fo!.lr} for hybrid and lora (full: --lr-full)`,
    foOptimizer: 'sgd (full fine-tuning: adamw)',
    evalEvery: 'steps / 10',
    seed: '0: run i uses sampler seed seed+i, optimizer and LoRA seed seed+i+1',
  });
  cmd
    .option('--seeds <n>', 'runs per mode, each with other sampler and perturbation seeds (default: 1)', int('--seeds'))
    .option('--lr-full <lr>', 'AdamW learning rate of full fine-tuning (default: 0.001)', num('--lr-full'))
    .option('--seconds <s>', 'wall-time budget per mode instead (training time)', num('--seconds'))
    .option('--target <accuracy>', 'target dev accuracy in [0, 1] (default: 0.95 × the best any run reaches)', num('--target'))
    .option('--modes <list>', 'modes, comma-separated (default: hybrid,zo,lora,full)', list)
    .option('--memory-budget <bytes>', 'skip full fine-tuning when weights + gradients + 2 moments exceed this (default: 2 GiB)', num('--memory-budget'))
    .option('--no-isolate', 'run every mode in this process (no per-mode peak memory)')
    .option('--out <dir>', 'where the chart, CSV and table go (default: ./zofo-compare)')
    .action(async (o: Record<string, unknown>) => {
      const f = givenFlags(o, COMPARE_FLAGS);
      if (f.task !== undefined && (f.train === undefined || f.dev === undefined))
        throw new UsageError('ZOFO_INVALID_ARG', 'zofo compare: --task needs --train and --dev');
      if (f.task === undefined && (f.train !== undefined || f.dev !== undefined))
        throw new UsageError('ZOFO_INVALID_ARG', 'zofo compare: --train and --dev need --task');
      const task = f.task
        ? {
            name: f.task as TrainConfig['task'],
            train: f.train as string,
            dev: f.dev as string,
            trainSamples: f.trainSamples as number | undefined,
            devSamples: f.devSamples as number | undefined,
          }
        : undefined;
      const { optimizers, lora } = compareOverrides(f, o.lrFull as number | undefined);
      await compare({
        out: (o.out as string | undefined) ?? 'zofo-compare',
        model: f.model as string | undefined,
        task,
        steps: f.steps as number | undefined,
        seconds: o.seconds as number | undefined,
        batchSize: f.batchSize as number | undefined,
        evalEvery: f.evalEvery as number | undefined,
        target: o.target as number | undefined,
        modes: o.modes as never,
        memoryBudget: o.memoryBudget as number | undefined,
        seed: f.seed as number | undefined,
        seeds: o.seeds as number | undefined,
        isolate: o.isolate as boolean,
        optimizers,
        lora,
      });
    });
}

// ---- build ----

function buildCommand(p: Command): void {
  p.command('build')
    .description(
      'compile the native addon from the installed sources into build/Release (cmake-js, or node-gyp when cmake is missing; needs a C++17 compiler): for platforms without a prebuilt package',
    )
    .action(() => {
      const r = spawnSync(process.execPath, [join(packageRoot, 'scripts', 'build.mjs')], { cwd: packageRoot, stdio: 'inherit' });
      process.exitCode = r.status ?? 1;
    });
}

/** Every command, in the order `zofo --help` lists them: one function each, adding itself to the program. */
export const COMMANDS: ReadonlyArray<(p: Command) => void> = [
  trainCommand,
  evalCommandCli,
  replayCommandCli,
  mergeCommandCli,
  benchCommand,
  buildCommand,
  demoCommand,
  smoothnessCommand,
  studyCommand,
  compareCommand,
];

/** The `zofo` program: parse errors are thrown (CommanderError), never printed by commander itself. */
export function program(): Command {
  const p = new Command('zofo')
    .description('Hybrid zeroth-order / first-order fine-tuning of LLMs (ZO on all base weights, backprop on LoRA adapters)')
    .exitOverride()
    .configureOutput({ outputError: () => {} });
  for (const add of COMMANDS) add(p);
  return p;
}

/** The message and exit code for a failure: usage mistakes exit 2, others 1; always one line. */
export function failure(err: unknown): { line: string; exitCode: number } {
  const oneLine = (s: string) => s.replace(/\s*\n\s*/g, ' ').trim();
  if (err instanceof CommanderError) {
    return { line: `zofo: ${oneLine(err.message.replace(/^error: /, ''))} [ZOFO_INVALID_ARG] (see --help)`, exitCode: 2 };
  }
  const code = (err as { code?: string } | null)?.code;
  const tag = typeof code === 'string' && code.startsWith('ZOFO_') ? ` [${code}]` : '';
  return { line: `zofo: ${oneLine((err as Error)?.message ?? String(err))}${tag}`, exitCode: err instanceof UsageError ? 2 : 1 };
}

/** Runs the `zofo` command line on `argv` (node, script, args…); sets process.exitCode instead of exiting. */
export async function main(argv: string[] = process.argv): Promise<void> {
  ignoreBrokenPipes();
  try {
    await program().parseAsync(argv);
  } catch (err) {
    // --help, --version and a bare `zofo` (help on stderr) end through here too.
    if (
      err instanceof CommanderError &&
      ['commander.helpDisplayed', 'commander.help', 'commander.version', 'commander.executeSubCommandAsync'].includes(err.code)
    ) {
      process.exitCode = err.exitCode;
      return;
    }
    const f = failure(err);
    process.stderr.write(`${f.line}\n`);
    process.exitCode = f.exitCode;
  }
}
