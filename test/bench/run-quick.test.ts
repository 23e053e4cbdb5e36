/**
 * `npm run bench -- --quick` as npm test runs it: every benchmark at small n, in one process, the
 * way `npm run bench` runs them. Every figure of the performance targets (docs/performance.md) is
 * printed with its fields and positive numbers. Nothing about time is asserted.
 */
import { execFile } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { describe, expect, it } from 'vitest';

const ROOT = fileURLToPath(new URL('../..', import.meta.url));
const run = promisify(execFile);

/** The figures of the targets table (docs/performance.md). */
const TARGETS = ['fanout.get', 'association.heap', 'restore.ready', 'hierarchy.get', 'hierarchy.server_messages', 'proxy.http', 'codec.xml', 'codec.wbxml'] as const;

const positive = (x: unknown): boolean => typeof x === 'number' && Number.isFinite(x) && x > 0;

describe('npm run bench -- --quick', () => {
  it('prints every target figure as a JSON line with name, n, value, unit, baseline and ratio', { timeout: 240_000 }, async () => {
    const env = { ...process.env };
    delete env.GWMO_BENCH_N;
    delete env.GWMO_BENCH_HN;
    const { stdout, stderr } = await run(process.execPath, ['--expose-gc', 'bin/run-ts.js', 'bench/run.ts', '--quick'], { cwd: ROOT, env, maxBuffer: 32 * 1024 * 1024, timeout: 220_000 });
    const lines = stdout.split('\n').filter((l) => l.trim() !== '');
    const parsed = lines.map((l) => JSON.parse(l) as Record<string, unknown>);
    const figures = parsed.filter((p) => p.name !== 'machine');
    const names = new Set(figures.map((f) => String(f.name)));
    for (const t of TARGETS) expect(names, `figure ${t}`).toContain(t);
    for (const f of figures) {
      const name = String(f.name);
      for (const k of ['name', 'n', 'value', 'unit', 'baseline', 'ratio']) expect(f, `${name} has ${k}`).toHaveProperty(k);
      expect(typeof f.unit, name).toBe('string');
      expect(positive(f.value), `${name}.value = ${String(f.value)}`).toBe(true);
      if (f.baseline === null) expect(f.ratio, name).toBeNull();
      else {
        expect(positive(f.baseline), `${name}.baseline`).toBe(true);
        const expected = (f.value as number) / (f.baseline as number);
        expect(Math.abs((f.ratio as number) - expected) / expected, `${name}.ratio`).toBeLessThan(0.01);
      }
    }
    // Sizes are the quick ones: 1,000 devices for the in-process figures.
    expect(figures.find((f) => f.name === 'fanout.get')!.n).toBe(1000);
    expect(figures.find((f) => f.name === 'association.heap')!.n).toBe(1000);
    expect(stderr).not.toMatch(/bench failed/);
  });

  it('answers --help and refuses unknown options', async () => {
    const help = await run(process.execPath, ['bin/run-ts.js', 'bench/run.ts', '--help'], { cwd: ROOT });
    expect(help.stdout).toMatch(/--quick/);
    expect(help.stdout).toMatch(/--million/);
    await expect(run(process.execPath, ['bin/run-ts.js', 'bench/run.ts', '--fast'], { cwd: ROOT })).rejects.toMatchObject({ code: 2 });
  });
});
