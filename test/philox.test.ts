// Philox4x32-10: Random123's known-answer vectors, an independent BigInt reference on
// fresh random inputs, and the SIMD chunk path against the portable one.
import t from 'tap';
import { kernels } from '../lib/index.js';
import { cpuBinding } from '../lib/binding.js';
import { freshSeed, philoxRef, rng } from './helpers/reference.js';

const hex = (words: ArrayLike<number>) => Array.from(words, (w) => w.toString(16).padStart(8, '0')).join(' ');

t.test('Random123 kat_vectors for philox4x32_10', async (t) => {
  const kats: [number[], number[], string][] = [
    [[0, 0, 0, 0], [0, 0], '6627e8d5 e169c58d bc57ac4c 9b00dbd8'],
    [[0xffffffff, 0xffffffff, 0xffffffff, 0xffffffff], [0xffffffff, 0xffffffff], '408f276d 41c83b0e a20bc7c6 6d5451fd'],
    [[0x243f6a88, 0x85a308d3, 0x13198a2e, 0x03707344], [0xa4093822, 0x299f31d0], 'd16cfe09 94fdcceb 5001e420 24126ea1'],
  ];
  for (const [ctr, key, expected] of kats) {
    t.equal(hex(kernels.philox4x32(ctr, key)), expected, `counter ${hex(ctr)} key ${hex(key)}`);
    t.equal(hex(philoxRef(ctr, key)), expected, 'the test reference agrees');
  }
});

t.test('native Philox equals the BigInt reference on random counters and keys', async (t) => {
  const seed = freshSeed();
  const r = rng(seed);
  const word = () => Math.floor(r() * 2 ** 32) >>> 0;
  let mismatches = 0;
  for (let i = 0; i < 500; i++) {
    const ctr = [word(), word(), word(), word()],
      key = [word(), word()];
    if (hex(kernels.philox4x32(ctr, key)) !== hex(philoxRef(ctr, key))) mismatches++;
  }
  t.equal(mismatches, 0, `500 random blocks (input seed ${seed})`);
});

t.test('the SIMD chunk path is bit-identical to the portable one', async (t) => {
  const b = cpuBinding();
  t.comment(`philox implementation in use: ${b.philoxImpl}`);
  const r = rng(freshSeed());
  const big = () => (BigInt(Math.floor(r() * 2 ** 32)) << 32n) | BigInt(Math.floor(r() * 2 ** 32));
  // Include blocks whose 64 consecutive counters cross the 2^32 boundary (carry into c1).
  const blocks = [0n, 2n ** 32n - 10n, 2n ** 64n - 64n, big() >> 1n];
  for (const block of blocks) {
    const seed = big(),
      stream = big();
    const best = b.philoxChunk(seed, stream, block, true);
    const portable = b.philoxChunk(seed, stream, block, false);
    t.same(Array.from(best), Array.from(portable), `block ${block}`);
    // And both equal the reference for a few blocks.
    const n = b.philoxChunkBlocks;
    for (const j of [0, 1, n - 1]) {
      const bj = block + BigInt(j);
      const want = philoxRef(
        [Number(bj & 0xffffffffn), Number((bj >> 32n) & 0xffffffffn), Number(stream & 0xffffffffn), Number(stream >> 32n)],
        [Number(seed & 0xffffffffn), Number(seed >> 32n)],
      );
      t.same([best[j], best[n + j], best[2 * n + j], best[3 * n + j]], want, `block ${bj} vs reference`);
    }
  }
});

t.test('philox4x32 rejects malformed words', async (t) => {
  t.throws(() => kernels.philox4x32([0, 0, 0], [0, 0]), { code: 'ZOFO_INVALID_ARG' });
  t.throws(() => kernels.philox4x32([0, 0, 0, 2 ** 32], [0, 0]), { code: 'ZOFO_INVALID_ARG', message: /counter\[3\]/ });
  t.throws(() => kernels.philox4x32([0, 0, 0, 0], [0.5, 0]), { code: 'ZOFO_INVALID_ARG', message: /key\[0\]/ });
});
