/**
 * Helpers every benchmark uses: timing, rounding, medians, size lists from the environment, and
 * the machine line that starts a benchmark's output.
 */
import { cpus, platform, release, totalmem } from 'node:os';

/** Milliseconds, high resolution. */
export const now = (): number => performance.now();
export const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));
/** `x` rounded to `digits` decimals. */
export const round = (x: number, digits = 0): number => Number(x.toFixed(digits));
/** Four significant digits. */
export const sig = (x: number): number => Number(x.toPrecision(4));
/** `a / b` to four significant digits (the `ratio` field). */
export const ratio = (a: number, b: number): number => sig(a / b);

/** The median of a non-empty list. */
export function median(xs: readonly number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  const mid = s.length >> 1;
  return s.length % 2 ? s[mid]! : (s[mid - 1]! + s[mid]!) / 2;
}

/** A comma-separated list of sizes from the environment, each an integer ≥ `min`; `dflt` when unset. */
export function sizeList(v: string | undefined, dflt: number[], min = 1): number[] {
  if (!v?.trim()) return dflt;
  const out = v.split(',').map((s) => Number(s.trim()));
  if (!out.length || out.some((x) => !Number.isInteger(x) || x < min)) {
    throw new Error(`bad size list ${JSON.stringify(v)} (${min === 1 ? 'positive integers' : `integers ≥ ${min}`}, comma separated)`);
  }
  return out;
}

/** The `machine` line of a benchmark's output, with the benchmark's own settings. */
export function machineLine(extra: Record<string, unknown>): Record<string, unknown> {
  const cpu = cpus();
  return { name: 'machine', cpu: cpu[0]?.model ?? 'unknown', cores: cpu.length, memGB: round(totalmem() / 2 ** 30, 1), node: process.version, os: `${platform()} ${release()}`, ...extra };
}
