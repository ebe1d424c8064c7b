/**
 * The fixed slice rule of data-parallel steps: of a global batch of B examples, rank r of
 * P takes the contiguous block [⌊r·B/P⌋, ⌊(r+1)·B/P⌋). Every rank walks the same
 * permutation (same sampler seed), so together the slices are exactly the global batch.
 */

/** [start, end) of rank `rank`'s examples in a global batch of `batch` examples over `size` ranks. */
export function sliceOf(batch: number, rank: number, size: number): [number, number] {
  return [Math.floor((rank * batch) / size), Math.floor(((rank + 1) * batch) / size)];
}
