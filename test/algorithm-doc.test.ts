// docs/algorithm.md is checked, not just written: its known-answer vectors must be
// reproduced by the addon AND by an independent Python implementation written from the
// page's text (test/helpers/noise_ref.py); the two must also agree bit for bit on fresh
// random inputs. And no tracked file may cite the spec anywhere but docs/.
import t from 'tap';
import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { kernels, stepSeed } from '../lib/index.js';
import { freshSeed, rng } from './helpers/reference.js';

const root = join(import.meta.dirname, '..');
const doc = readFileSync(join(root, 'docs', 'algorithm.md'), 'utf8');

type Query = { stream: string } | { stepSeed: [string, number, number] } | { z: [string, string, string, number] };
interface Vector {
  line: string;
  query: Query;
  expected: string | string[];
}

/** The lines between the known-answers markers, parsed. */
function knownAnswers(): Vector[] {
  const block = /<!-- known-answers:begin -->\s*```\n([\s\S]*?)```\s*<!-- known-answers:end -->/.exec(doc);
  if (!block) throw new Error('docs/algorithm.md has no known-answers block');
  return block[1]
    .trim()
    .split('\n')
    .map((line) => {
      let m = /^stream "([^"]+)" = (0x[0-9a-f]{16})$/.exec(line);
      if (m) return { line, query: { stream: m[1] }, expected: m[2] };
      m = /^stepSeed (\d+) (\d+) (\d+) = (0x[0-9a-f]{16})$/.exec(line);
      if (m) return { line, query: { stepSeed: [m[1], Number(m[2]), Number(m[3])] }, expected: m[4] };
      m = /^z (\d+) "([^"]+)" (\d+) = ((?:0x[0-9a-f]{8} ?)+)$/.exec(line);
      if (m) {
        const words = m[4].trim().split(' ');
        return { line, query: { z: [m[1], m[2], m[3], words.length] }, expected: words };
      }
      throw new Error(`docs/algorithm.md: cannot parse known-answer line ${JSON.stringify(line)}`);
    });
}

const hex64 = (v: bigint) => `0x${v.toString(16).padStart(16, '0')}`;
const bitsOf = (z: Float32Array) => Array.from(new Uint32Array(z.buffer, z.byteOffset, z.length), (w) => `0x${w.toString(16).padStart(8, '0')}`);

function native(q: Query): string | string[] {
  if ('stream' in q) return hex64(kernels.streamId(q.stream));
  if ('stepSeed' in q) return hex64(stepSeed(BigInt(q.stepSeed[0]), q.stepSeed[1], q.stepSeed[2]));
  const [seed, name, first, count] = q.z;
  return bitsOf(kernels.gaussian(count, { seed: BigInt(seed), name, offset: BigInt(first) }));
}

function python(queries: Query[]): Array<string | string[]> {
  const out = execFileSync('python3', [join(root, 'test', 'helpers', 'noise_ref.py')], { input: JSON.stringify(queries), encoding: 'utf8' });
  return JSON.parse(out) as Array<string | string[]>;
}

t.test('the known-answer vectors of docs/algorithm.md', async (t) => {
  const vectors = knownAnswers();
  t.ok(vectors.length >= 10, `${vectors.length} vectors parsed`);
  const kinds = new Set(vectors.map((v) => Object.keys(v.query)[0]));
  t.same([...kinds].sort(), ['stepSeed', 'stream', 'z'], 'every kind of vector is listed');
  const fromPython = python(vectors.map((v) => v.query));
  vectors.forEach((v, i) => {
    t.same(native(v.query), v.expected, `addon: ${v.line}`);
    t.same(fromPython[i], v.expected, `independent Python reference: ${v.line}`);
  });
});

t.test('the Python reference and the addon agree on fresh random inputs', async (t) => {
  const seed0 = freshSeed();
  const r = rng(seed0);
  const u64 = () => (BigInt(Math.floor(r() * 2 ** 32)) << 32n) | BigInt(Math.floor(r() * 2 ** 32));
  const queries: Query[] = [];
  for (let i = 0; i < 6; i++) {
    const name = `model.layers.${Math.floor(r() * 64)}.mlp.up_proj.weight`;
    // Offsets below and above 2^34 (the block counter's high word), not multiples of 4.
    const first = i % 2 === 0 ? BigInt(Math.floor(r() * 10_000)) : (u64() >> 4n) + 1n;
    queries.push({ z: [u64().toString(), name, first.toString(), 24] });
    queries.push({ stream: `${name}.${i}` });
    queries.push({ stepSeed: [(u64() >> 11n).toString(), Math.floor(r() * 2 ** 40), Math.floor(r() * 65536)] });
  }
  const fromPython = python(queries);
  let mismatches = 0;
  queries.forEach((q, i) => {
    if (JSON.stringify(native(q)) !== JSON.stringify(fromPython[i])) {
      mismatches++;
      t.comment(`mismatch on ${JSON.stringify(q)}: addon ${JSON.stringify(native(q))}, Python ${JSON.stringify(fromPython[i])}`);
    }
  });
  t.equal(mismatches, 0, `${queries.length} random queries (144 z values) bit-identical (input seed ${seed0})`);
});

t.test('no tracked file cites the spec or the design notes outside the repository', async (t) => {
  const files = execFileSync('git', ['ls-files', '-z'], { cwd: root, encoding: 'utf8' }).split('\0').filter(Boolean);
  // The spec is docs/algorithm.md; the external notes it replaced must not be cited.
  const external = /\b(?:ALGORITHM|DESIGN|STYLE)\.md\b|ALGORITHM (?:§|section)|\/work\/(?:shared|main|wt)\b/;
  const offenders: string[] = [];
  for (const file of files) {
    if (file === 'test/algorithm-doc.test.ts') continue; // this pattern
    let text: string;
    try {
      text = readFileSync(join(root, file), 'utf8');
    } catch {
      continue; // a tracked file deleted in the working tree
    }
    if (text.includes('\0')) continue; // binary
    text.split('\n').forEach((line, i) => {
      if (external.test(line)) offenders.push(`${file}:${i + 1}: ${line.trim()}`);
    });
  }
  t.same(offenders, [], 'cite docs/algorithm.md (or another file in the repository) instead');
});
