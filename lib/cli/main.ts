/**
 * `zofo` — the command line: train, eval, replay, merge, bench, demo. Arguments are
 * parsed with commander; each command calls a function of lib/cli/commands.ts or
 * lib/cli/demo.ts. A JSON config file (--config) fills the same fields as the flags;
 * flags win.
 */
import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Command, InvalidArgumentError, Option } from 'commander';
import { packageRoot } from '../binding.js';
import { ZofoError } from '../errors.js';
import { TASK_NAMES } from '../data/tasks.js';
import { LLAMA_SHAPES } from '../model/shapes.js';
import { evalCommand, mergeCommand, MODES, readConfig, replayCommand, train, type TrainConfig } from './commands.js';
import { compare } from './compare.js';
import { demo } from './demo.js';
import { smoothness } from './smoothness.js';
import { OBJECTIVES, study } from '../theory/study.js';

const int = (name: string) => (v: string): number => {
  const n = Number(v);
  if (!Number.isSafeInteger(n) || n < 1) throw new InvalidArgumentError(`${name} must be a positive integer`);
  return n;
};
const num = (name: string) => (v: string): number => {
  const n = Number(v);
  if (!Number.isFinite(n)) throw new InvalidArgumentError(`${name} must be a number`);
  return n;
};
const list = (v: string): string[] => v.split(',').map((s) => s.trim()).filter(Boolean);

// Flags → the TrainConfig shape (only the ones given, so a config file's values survive).
function trainConfig(flags: Record<string, unknown>, file: Record<string, unknown>): TrainConfig {
  const c: Record<string, unknown> = { ...file };
  const zo = { ...(file.zo as object) } as Record<string, unknown>, fo = { ...(file.fo as object) } as Record<string, unknown>;
  const lora = { ...(file.lora as object) } as Record<string, unknown>;
  const set = (target: Record<string, unknown>, key: string, flag: string) => { if (flags[flag] !== undefined) target[key] = flags[flag]; };
  for (const k of ['model', 'device', 'dtype', 'compute', 'task', 'train', 'dev', 'trainSamples', 'devSamples', 'mode', 'steps', 'epochs', 'batchSize', 'seed', 'evalEvery', 'checkpointEvery', 'keep', 'out', 'resume', 'parallel']) set(c, k, k);
  set(zo, 'lr', 'lrX'); set(zo, 'mu', 'mu'); set(zo, 'estimator', 'estimator'); set(zo, 'perturbations', 'perturbations'); set(zo, 'weightDecay', 'wdX');
  set(fo, 'lr', 'lrY'); set(fo, 'optimizer', 'foOptimizer'); set(fo, 'weightDecay', 'wdY');
  set(lora, 'rank', 'rank'); set(lora, 'alpha', 'alpha'); set(lora, 'targets', 'targets');
  Object.assign(c, { zo, fo, lora });
  for (const k of ['model', 'task', 'train', 'out']) {
    if (typeof c[k] !== 'string' || c[k] === '') throw new ZofoError('ZOFO_INVALID_ARG', `zofo train: --${k} is required (or "${k}" in the --config file)`);
  }
  if (c.steps !== undefined && c.epochs !== undefined && flags.steps !== undefined && flags.epochs !== undefined) {
    throw new ZofoError('ZOFO_INVALID_ARG', 'zofo train: give --steps or --epochs, not both');
  }
  if (flags.steps !== undefined) delete c.epochs;
  if (flags.epochs !== undefined) delete c.steps;
  return c as unknown as TrainConfig;
}

export function program(): Command {
  const p = new Command('zofo')
    .description('Hybrid zeroth-order / first-order fine-tuning of LLMs (ZO on all base weights, backprop on LoRA adapters)')
    .showHelpAfterError();

  p.command('train')
    .description('fine-tune a HuggingFace model directory on a task; writes checkpoints, the PEFT adapter, the ZO trajectory and curves under --out')
    .option('--config <file>', 'JSON file with the same fields (model, task, train, dev, mode, steps, zo: {...}, fo: {...}, lora: {...}, out, ...)')
    .option('--model <dir>', 'HuggingFace model directory (config.json, safetensors, tokenizer.json)')
    .option('--device <device>', "where to run: cpu (default), cuda, cuda:N, or auto (CUDA when usable)")
    .addOption(new Option('--dtype <dtype>', 'storage of the base weights (default bf16 on CUDA, f32 on the CPU)').choices(['f32', 'bf16', 'f16']))
    .addOption(new Option('--compute <precision>', 'matmul operand precision (default bf16 on CUDA, fp32 on the CPU; docs/precision.md)').choices(['fp32', 'tf32', 'bf16']))
    .addOption(new Option('--task <name>', 'task format').choices([...TASK_NAMES]))
    .option('--train <file>', 'training data file')
    .option('--dev <file>', 'dev data file (evaluated during training; selects the best checkpoint)')
    .option('--train-samples <n>', 'sample n training examples with --seed (MeZO-style k-shot; default all)', int('--train-samples'))
    .option('--dev-samples <n>', 'sample n dev examples with --seed (default all)', int('--dev-samples'))
    .addOption(new Option('--mode <mode>', 'hybrid: ZO on base + LoRA by backprop; zo: MeZO; lora: LoRA only; full: backprop on every weight').choices([...MODES]))
    .option('--steps <n>', 'optimizer steps', int('--steps'))
    .option('--epochs <n>', 'epochs (default 1 when neither is given)', int('--epochs'))
    .option('--batch-size <n>', 'examples per step (default 16)', int('--batch-size'))
    .option('--lr-x <lr>', 'ZO learning rate of the base weights (default 1e-6)', num('--lr-x'))
    .option('--lr-y <lr>', 'first-order learning rate (default 1e-4)', num('--lr-y'))
    .option('--mu <mu>', 'ZO smoothing radius (default 1e-3; 3e-3 under bf16 compute)', num('--mu'))
    .addOption(new Option('--estimator <name>', 'ZO estimator (default forward)').choices(['forward', 'central']))
    .option('--perturbations <q>', 'ZO perturbations per step (default 1)', int('--perturbations'))
    .option('--wd-x <wd>', 'ZO weight decay', num('--wd-x'))
    .option('--wd-y <wd>', 'first-order weight decay', num('--wd-y'))
    .addOption(new Option('--fo-optimizer <name>', 'first-order optimizer (default sgd)').choices(['sgd', 'momentum', 'adamw']))
    .option('--rank <r>', 'LoRA rank (default 8)', int('--rank'))
    .option('--alpha <a>', 'LoRA alpha (default 16)', num('--alpha'))
    .option('--targets <list>', 'LoRA target modules, comma-separated (default q_proj,v_proj; c_attn for GPT-2)', list)
    .option('--seed <n>', 'run seed (sampler and perturbations; default 0)', (v) => { const n = Number(v); if (!Number.isSafeInteger(n) || n < 0) throw new InvalidArgumentError('--seed must be a non-negative integer'); return n; })
    .option('--eval-every <n>', 'evaluate on --dev every n steps (default once per epoch)', int('--eval-every'))
    .option('--checkpoint-every <n>', 'write a checkpoint every n steps (default: at the end and on Ctrl-C)', int('--checkpoint-every'))
    .option('--keep <n>', 'step checkpoints to keep (default 2)', int('--keep'))
    .option('--out <dir>', 'output directory')
    .option('--resume', 'continue from the latest checkpoint under --out')
    .addOption(new Option('--parallel <kind>', 'under mpirun: each rank a slice of every batch (data; the default there) or a share of the q perturbations (perturbation)').choices(['data', 'perturbation']))
    .action(async (flags: Record<string, unknown>) => {
      const file = typeof flags.config === 'string' ? await readConfig(flags.config) : {};
      const summary = await train(trainConfig(flags, file));
      if (summary.reason === 'aborted') process.exitCode = 130;
      if (summary.rank !== 0) return;
      const acc = summary.final?.accuracy;
      console.log(`${summary.reason} after ${summary.steps} steps` +
        (summary.final ? `; dev loss ${summary.final.loss.toFixed(4)}${acc === null || acc === undefined ? '' : `, accuracy ${(100 * acc).toFixed(1)}%`}` : '') +
        (summary.best ? ` (best at step ${summary.best.step})` : ''));
      for (const f of summary.files) console.log(`  ${f}`);
    });

  p.command('eval')
    .description('loss and accuracy of a model (optionally + ZO trajectory + adapter) on a task file')
    .requiredOption('--model <dir>', 'HuggingFace model directory')
    .option('--device <device>', "where to run: cpu (default), cuda, cuda:N, or auto")
    .option('--adapter <dir>', 'PEFT adapter directory')
    .option('--log <file>', 'ZO trajectory to replay onto the model first')
    .addOption(new Option('--task <name>', 'task format').choices([...TASK_NAMES]).makeOptionMandatory())
    .requiredOption('--data <file>', 'data file')
    .option('--samples <n>', 'sample n examples with --seed (default all)', int('--samples'))
    .option('--seed <n>', 'sampling seed (default 0)', (v) => Number(v))
    .option('--batch-size <n>', 'examples per forward (default 16)', int('--batch-size'))
    .action(async (o: { model: string; adapter?: string; log?: string; task: TrainConfig['task']; data: string; samples?: number; batchSize?: number; seed?: number }) => {
      const r = await evalCommand(o);
      console.log(`${r.examples} examples: loss ${r.loss.toFixed(4)}${r.accuracy === null ? '' : `, accuracy ${(100 * r.accuracy).toFixed(1)}%`}`);
    });

  p.command('replay')
    .description('rebuild a ZO-fine-tuned base from the base checkpoint and its trajectory log')
    .requiredOption('--base <dir>', 'the base model directory the log starts from')
    .requiredOption('--log <file>', 'trajectory log (trajectory.zlog)')
    .requiredOption('--out <dir>', 'output HuggingFace directory')
    .action(async (o: { base: string; log: string; out: string }) => {
      await replayCommand(o);
      console.log(`wrote ${o.out}`);
    });

  p.command('merge')
    .description('merge a PEFT adapter (and optionally a ZO trajectory) into the base: one HuggingFace directory')
    .requiredOption('--model <dir>', 'base model directory')
    .requiredOption('--adapter <dir>', 'PEFT adapter directory')
    .option('--log <file>', 'ZO trajectory to replay first')
    .requiredOption('--out <dir>', 'output HuggingFace directory')
    .action(async (o: { model: string; adapter: string; log?: string; out: string }) => {
      await mergeCommand(o);
      console.log(`wrote ${o.out}`);
    });

  p.command('bench')
    .description('run the benchmark suite (perturbation engine, forward, hybrid step) and print its tables; --torch: side by side with the plain-PyTorch reference, writing bench/RESULTS.md; `bench memory`: peak memory of a large random model')
    .argument('[suite]', "'memory': a random Llama-shaped model of --shape, hybrid steps, one JSON line of weight bytes, peak RSS and step time")
    .option('--torch', 'zofo vs the PyTorch reference (MeZO, LoRA, hybrid), machine limits and scaling (needs python3-torch; installs it with apt when missing)')
    .option('--large', 'with --torch: add the ~134M model')
    .option('--shape <name>', `memory: the model shape (${Object.keys(LLAMA_SHAPES).join(', ')})`, 'llama-1b')
    .option('--dtype <dtype>', 'memory: storage dtype (f32, bf16, f16)', 'bf16')
    .option('--device <device>', 'memory: cpu (CUDA figures come from npm run test:gpu)', 'cpu')
    .option('--steps <n>', 'memory: hybrid steps to run', '2')
    .option('--batch <n>', 'memory: examples per step', '1')
    .option('--seq <n>', 'memory: tokens per example', '64')
    .option('--checkpoint', 'memory: write the random model to a temporary checkpoint first, load it back and report the load too')
    .action((suite: string | undefined, o: { torch?: boolean; large?: boolean; shape: string; dtype: string; device: string; steps: string; batch: string; seq: string; checkpoint?: boolean }) => {
      const dist = join(dirname(fileURLToPath(import.meta.url)), '..', '..', 'bench');
      if (suite !== undefined && suite !== 'memory') throw new ZofoError('ZOFO_INVALID_ARG', `bench: unknown suite ${JSON.stringify(suite)} (the one named suite is 'memory')`);
      const memory = ['memory', '--shape', o.shape, '--dtype', o.dtype, '--device', o.device, '--steps', o.steps, '--batch', o.batch, '--seq', o.seq, ...(o.checkpoint ? ['--checkpoint'] : [])];
      const runs = suite === 'memory' ? [memory] : o.torch ? [['torch', ...(o.large ? ['--large'] : [])]] : [['perturb'], ['forward'], ['step']];
      for (const [name, ...args] of runs) {
        const file = join(dist, `${name}.js`);
        if (!existsSync(file)) throw new ZofoError('ZOFO_LOAD_FAILED', `${file} is missing: run \`npm run build:ts\` first`);
        const r = spawnSync(process.execPath, [file, ...args], { stdio: 'inherit' });
        if (r.status !== 0) { process.exitCode = r.status ?? 1; return; }
      }
    });

  p.command('build')
    .description('compile the native addon from the installed sources into build/Release (cmake-js, or node-gyp when cmake is missing; needs a C++17 compiler): for platforms without a prebuilt package')
    .action(() => {
      const r = spawnSync(process.execPath, [join(packageRoot, 'scripts', 'build.mjs')], { cwd: packageRoot, stdio: 'inherit' });
      process.exitCode = r.status ?? 1;
    });

  p.command('demo')
    .description('fine-tune the embedded pretrained model on the built-in task with hybrid, ZO-only and LoRA-only (same budget), print accuracy before/after, and plot it')
    .option('--steps <n>', 'steps per mode', int('--steps'))
    .option('--out <dir>', 'where the chart and CSV go (default ./zofo-demo)')
    .option('--modes <list>', 'modes to run, comma-separated (default hybrid,zo,lora)', list)
    .action(async (o: { steps?: number; out?: string; modes?: string[] }) => {
      await demo({ steps: o.steps, out: o.out ?? 'zofo-demo', modes: o.modes as never });
    });
  p.command('smoothness')
    .description('estimate the hybrid smoothness constants L_x, L_y on a model and task, and judge learning rates against what the analysis admits')
    .option('--model <dir>', 'HuggingFace model directory (default: the embedded demo model and task)')
    .option('--adapter <dir>', 'PEFT adapter to estimate L_y at (default: fresh LoRA adapters)')
    .addOption(new Option('--task <name>', 'task format').choices([...TASK_NAMES]))
    .option('--data <file>', 'data file (minibatches are sampled from it)')
    .option('--batches <n>', 'minibatches to estimate on (default 3)', int('--batches'))
    .option('--batch-size <n>', 'examples per minibatch (default 16)', int('--batch-size'))
    .option('--rank <r>', 'LoRA rank of fresh adapters (default 8)', int('--rank'))
    .option('--lr-x <lr>', 'a ZO learning rate to judge', num('--lr-x'))
    .option('--lr-y <lr>', 'a first-order learning rate to judge', num('--lr-y'))
    .option('--perturbations <q>', 'ZO perturbations per step (default 1)', int('--perturbations'))
    .option('--iterations <n>', 'power iterations (default 20)', int('--iterations'))
    .option('--directions <n>', 'random directions for the forward-only curvature (default 8)', int('--directions'))
    .option('--seed <n>', 'seed (default 0)', (v) => Number(v))
    .action(async (o: Record<string, unknown>) => {
      await smoothness(o as never);
    });

  p.command('study')
    .description('the convergence testbed: hybrid reshuffling SGD on objectives with KNOWN L_x, L_y (and one violating hybrid smoothness) for several rates; gradient norm vs epoch next to the theory\'s reference slope')
    .addOption(new Option('--objective <name>', 'objective (default: all)').choices([...OBJECTIVES]))
    .option('--dim-x <n>', 'dimension of x (default 16)', int('--dim-x'))
    .option('--dim-y <n>', 'dimension of y (default 8)', int('--dim-y'))
    .option('--n <n>', 'examples in the finite sum (default 32)', int('--n'))
    .option('--batch-size <n>', 'minibatch size (default 8)', int('--batch-size'))
    .option('--epochs <n>', 'epochs (default 300)', int('--epochs'))
    .option('--lr-x <list>', "η_x values, comma-separated (default: the theory's 1/(4(d_x+4)L_x) × {1, 4})", list)
    .option('--lr-y <list>', "η_y values, comma-separated (default: {0.5, 1, 2.5}/L_y)", list)
    .option('--mu <list>', 'smoothing radii, comma-separated (default 1e-3)', list)
    .option('--seed <n>', 'seed (default 0)', (v) => Number(v))
    .option('--out <dir>', 'where the charts and CSVs go (default ./zofo-study)')
    .action(async (o: Record<string, unknown>) => {
      const nums = (v: unknown, name: string) => (v as string[]).map((x) => { const n = Number(x); if (!Number.isFinite(n) || n <= 0) throw new InvalidArgumentError(`${name}: ${x} is not a positive number`); return n; });
      const out = (o.out as string | undefined) ?? 'zofo-study';
      for (const objective of o.objective ? [o.objective as (typeof OBJECTIVES)[number]] : OBJECTIVES) {
        const r = await study({
          objective, dimX: (o.dimX as number) ?? 16, dimY: (o.dimY as number) ?? 8, n: (o.n as number) ?? 32, batchSize: (o.batchSize as number) ?? 8,
          epochs: (o.epochs as number) ?? 300, seed: (o.seed as number) ?? 0,
          grid: { lrX: o.lrX ? nums(o.lrX, '--lr-x') : 'theory', lrY: o.lrY ? nums(o.lrY, '--lr-y') : 'theory', mu: o.mu ? nums(o.mu, '--mu') : [1e-3] },
          out: join(out, objective),
        });
        console.log(`\n${objective}\n${r.table}\nchart: ${r.files.svg}`);
      }
    });

  p.command('compare')
    .description("the paper's experiment at your scale: hybrid, ZO-only, LoRA-only and full fine-tuning with the same model, task, batch and budget; accuracy over steps and time, steps to a target, peak memory, one chart")
    .option('--model <dir>', 'HuggingFace model directory (default: the embedded demo model)')
    .addOption(new Option('--task <name>', 'task format (with --train and --dev; default: the demo task)').choices([...TASK_NAMES]))
    .option('--train <file>', 'training data file')
    .option('--dev <file>', 'dev data file')
    .option('--train-samples <n>', 'sample n training examples', int('--train-samples'))
    .option('--dev-samples <n>', 'sample n dev examples', int('--dev-samples'))
    .option('--steps <n>', 'step budget per mode (default 150)', int('--steps'))
    .option('--seconds <s>', 'wall-time budget per mode instead (training time)', num('--seconds'))
    .option('--batch-size <n>', 'examples per step (default 16)', int('--batch-size'))
    .option('--eval-every <n>', 'evaluate every n steps (default steps/10)', int('--eval-every'))
    .option('--target <accuracy>', 'target dev accuracy in [0, 1] (default 0.95 × the best any mode reaches)', num('--target'))
    .option('--modes <list>', 'modes, comma-separated (default hybrid,zo,lora,full)', list)
    .option('--memory-budget <bytes>', 'skip full fine-tuning when weights + gradients + 2 moments exceed this (default 2 GiB)', num('--memory-budget'))
    .option('--seed <n>', 'seed (default 0)', (v) => Number(v))
    .option('--no-isolate', 'run every mode in this process (no per-mode peak memory)')
    .option('--out <dir>', 'where the chart, CSV and table go (default ./zofo-compare)')
    .action(async (o: Record<string, unknown>) => {
      const task = o.task ? { name: o.task as TrainConfig['task'], train: String(o.train), dev: String(o.dev), trainSamples: o.trainSamples as number | undefined, devSamples: o.devSamples as number | undefined } : undefined;
      if (task && (!o.train || !o.dev)) throw new ZofoError('ZOFO_INVALID_ARG', 'zofo compare: --task needs --train and --dev');
      const r = await compare({
        out: (o.out as string | undefined) ?? 'zofo-compare', model: o.model as string | undefined, task, steps: o.steps as number | undefined,
        seconds: o.seconds as number | undefined, batchSize: o.batchSize as number | undefined, evalEvery: o.evalEvery as number | undefined,
        target: o.target as number | undefined, modes: o.modes as never, memoryBudget: o.memoryBudget as number | undefined,
        seed: o.seed as number | undefined, isolate: o.isolate as boolean,
      });
      console.log(r.table);
    });
  return p;
}

export async function main(argv: string[] = process.argv): Promise<void> {
  try {
    await program().parseAsync(argv);
  } catch (err) {
    const code = (err as { code?: string }).code;
    process.stderr.write(`zofo: ${(err as Error).message}${code?.startsWith('ZOFO_') ? ` [${code}]` : ''}\n`);
    process.exitCode = 1;
  }
}
