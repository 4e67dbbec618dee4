// Medians with their spread, and paired ratios: every figure of the benchmark is reported through these.

export interface Summary {
  median: number;
  min: number;
  max: number;
  /** Every run, in the order measured. */
  runs: number[];
}

export function median(values: readonly number[]): number {
  if (values.length === 0) return Number.NaN;
  const sorted = [...values].sort((a, b) => a - b);
  const mid = Math.floor(sorted.length / 2);
  return sorted.length % 2 === 1 ? sorted[mid]! : (sorted[mid - 1]! + sorted[mid]!) / 2;
}

export function summarize(values: readonly number[]): Summary {
  return {
    median: median(values),
    min: values.length ? Math.min(...values) : Number.NaN,
    max: values.length ? Math.max(...values) : Number.NaN,
    runs: [...values],
  };
}

/**
 * Ratio of two series measured in interleaved rounds: the median (min, max) of the per-round ratios, so that
 * a noisy neighbour slowing one round down slows both sides of that round's ratio.
 */
export function pairedRatio(a: readonly number[], b: readonly number[]): Summary {
  const n = Math.min(a.length, b.length);
  const ratios: number[] = [];
  for (let i = 0; i < n; i++) {
    const den = b[i]!;
    if (den > 0) ratios.push(a[i]! / den);
  }
  return summarize(ratios);
}

/** Nearest-rank percentile (p in 0..100) of raw samples. */
export function percentile(values: readonly number[], p: number): number {
  if (values.length === 0) return Number.NaN;
  const sorted = [...values].sort((x, y) => x - y);
  const rank = Math.min(sorted.length, Math.max(1, Math.ceil((p / 100) * sorted.length)));
  return sorted[rank - 1]!;
}

export function round(value: number, digits = 0): number {
  if (!Number.isFinite(value)) return value;
  const f = 10 ** digits;
  return Math.round(value * f) / f;
}

/** `1234 (1100-1300)`, the way every table cell shows a summary. */
export function fmt(s: Summary | null | undefined, digits = 0, unit = ''): string {
  if (!s || !Number.isFinite(s.median)) return 'n/a';
  const r = (v: number) => round(v, digits).toLocaleString('en-US', { maximumFractionDigits: digits });
  return `${r(s.median)}${unit} (${r(s.min)}-${r(s.max)})`;
}
