// The part of jstat (a CommonJS module without bundled types) that zofo uses.
declare module 'jstat' {
  const jstat: {
    jStat: {
      studentt: {
        /** Quantile: the t with P(T ≤ t) = p for `dof` degrees of freedom. */
        inv(p: number, dof: number): number;
      };
    };
  };
  export default jstat;
}
