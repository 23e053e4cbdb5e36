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
const seed = raw === 'random' ? undefined : raw !== undefined && raw !== '' ? Number(raw) : DEFAULT_SEED;
if (seed !== undefined && !Number.isInteger(seed)) throw new Error(`FC_SEED must be an integer or "random", got ${raw}`);

fc.configureGlobal({
  ...(seed !== undefined ? { seed } : {}),
  interruptAfterTimeLimit: 90_000,
  markInterruptAsFailure: false,
});
