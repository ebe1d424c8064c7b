/**
 * Whether this process was started by an MPI launcher (mpirun / mpiexec / srun), read
 * from the variables the launchers set, without loading MPI.
 */

/** Rank and world size as the launcher announced them. */
export interface LaunchInfo {
  rank: number;
  size: number;
  /** The variable the size came from (e.g. OMPI_COMM_WORLD_SIZE). */
  source: string;
}

// Open MPI's mpirun; MPICH / Intel MPI's mpiexec and srun (PMI, PMIx).
const SIZE_RANK: Array<[string, string]> = [
  ['OMPI_COMM_WORLD_SIZE', 'OMPI_COMM_WORLD_RANK'],
  ['PMIX_SIZE', 'PMIX_RANK'],
  ['PMI_SIZE', 'PMI_RANK'],
];

/** The launch this process is part of, or null when no MPI launcher started it. */
export function detectLaunch(env: Readonly<Record<string, string | undefined>> = process.env): LaunchInfo | null {
  for (const [sizeVar, rankVar] of SIZE_RANK) {
    const size = Number(env[sizeVar]),
      rank = Number(env[rankVar] ?? 0);
    if (env[sizeVar] !== undefined && Number.isSafeInteger(size) && size >= 1 && Number.isSafeInteger(rank) && rank >= 0 && rank < size) {
      return { rank, size, source: sizeVar };
    }
  }
  return null;
}
