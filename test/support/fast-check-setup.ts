/**
 * Global fast-check settings for the suite (a vitest setup file).
 *
 * Property and fuzz tests run on a fixed seed by default, so CI is reproducible: a red run is a
 * change in the code, not a roll of the dice. `npm run test:fuzz` (FC_SEED=random) explores new
 * inputs; a failure prints its seed, and `FC_SEED=<n> npm test` replays it. Whatever fuzzing finds
 * becomes an ordinary regression test. A time limit bounds a run (and its shrinking) so a
 * counterexample on a large message cannot hold CI for many minutes.
 */
import fc from 'fast-check';

const DEFAULT_SEED = 20261123;
const raw = process.env['FC_SEED'];
// "random" picks a seed here (not inside fast-check) so it can be printed for replay.
// (Kept in the environment: a test file importing this module evaluates it again in the same worker.)
const picked = process.env['FC_SEED_USED'];
const seed =
  raw === 'random'
    ? picked !== undefined
      ? Number(picked)
      : (Date.now() ^ Math.floor(Math.random() * 0x7fffffff)) | 0
    : raw !== undefined && raw !== ''
      ? Number(raw)
      : DEFAULT_SEED;
if (!Number.isInteger(seed)) throw new Error(`FC_SEED must be an integer or "random", got ${raw}`);
process.env['FC_SEED_USED'] = String(seed);

fc.configureGlobal({
  seed,
  interruptAfterTimeLimit: Number(process.env['FUZZ_TIME_LIMIT_MS'] ?? 90_000),
  markInterruptAsFailure: false,
});

/** Cases per fuzz property: 10,000 in `npm test`, more with FUZZ_RUNS (`npm run fuzz`). */
export const FUZZ_RUNS = Number(process.env['FUZZ_RUNS'] ?? 10_000);

/** Test budget of a fuzz test: enough for the configured runs (a long `npm run fuzz` is not cut off by vitest). */
export const FUZZ_TIMEOUT_MS = Math.max(120_000, FUZZ_RUNS * 5, Number(process.env['FUZZ_TIME_LIMIT_MS'] ?? 0) * 2);

/** Prints what a fuzz pass covered, with the seed that replays it. */
export function reportFuzz(name: string, cases: number, extra = ''): void {
  process.stdout.write(`fuzz ${name}: ${cases} cases${extra ? `, ${extra}` : ''}; seed ${seed} (replay: FC_SEED=${seed} npm test)\n`);
}
