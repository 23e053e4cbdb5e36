/**
 * `npm run bench`: every benchmark, in one process started with --expose-gc (the heap figures need
 * full collections). JSON lines on stdout (one per figure, the targets are in docs/performance.md),
 * progress on stderr.
 *
 *   npm run bench                 every figure (about 5 minutes on 2 cores)
 *   npm run bench -- --quick      every benchmark at small n (codec quick rounds, fanout and restore
 *                                 at 1,000 devices, the HTTP load for 1 s, the hierarchy at 160
 *                                 devices); part of npm test (test/bench/run-quick.test.ts), it
 *                                 asserts nothing about time
 *   npm run bench -- --million    also fanout.get and association.heap at 1,000,000 associations
 *                                 (re-runs itself with an 8 GB heap limit if the limit is lower)
 *   npm run bench -- --help
 */
import { spawnSync } from 'node:child_process';
import { getHeapStatistics } from 'node:v8';
import { runCodecBench } from './codec.bench.ts';
import { runFanoutBench } from './fanout.bench.ts';

const args = process.argv.slice(2);
if (args.includes('--help') || args.includes('-h')) {
  process.stdout.write(
    [
      'usage: npm run bench [-- --quick | --million]',
      '',
      'Prints one JSON line per figure { name, n, value, unit, baseline, ratio, ... } on stdout;',
      'progress on stderr. Baselines are measured in the same run: compare ratios.',
      '',
      '  --quick     every benchmark at small n (a smoke run: no timing is asserted)',
      '  --million   add 1,000,000 associations to fanout.get and association.heap',
      '',
      'Environment: GWMO_BENCH_N, GWMO_BENCH_STORE, GWMO_BENCH_CONCURRENCY (bench/fanout.bench.ts),',
      'GWMO_BENCH_HN and GWMO_BENCH_H* (bench/hierarchy.bench.ts), GWMO_BENCH_HTTP_* (bench/http.bench.ts).',
      'docs/performance.md has the targets, the latest figures and how each is measured.',
      '',
    ].join('\n'),
  );
  process.exit(0);
}
const unknown = args.filter((a) => !['--quick', '--million'].includes(a));
if (unknown.length) {
  process.stderr.write(`bench: unknown option ${unknown.join(' ')} (see --help)\n`);
  process.exit(2);
}
const quick = args.includes('--quick');
const million = args.includes('--million');

if (million && getHeapStatistics().heap_size_limit < 6 * 2 ** 30) {
  // 1,000,000 associations with their simulated devices and a job's results need several GB.
  const r = spawnSync(process.execPath, ['--max-old-space-size=8192', ...process.execArgv, ...process.argv.slice(1)], { stdio: 'inherit' });
  process.exit(r.status ?? 1);
}
if (quick) process.env.GWMO_BENCH_N ??= '1000';
if (million) process.env.GWMO_BENCH_N ??= '1000,10000,100000,1000000';

try {
  runCodecBench({ quick });
  await runFanoutBench();
  await (await import('./http.bench.ts')).runHttpBench({ quick }); // proxy.http: DM endpoint msg/s vs a trivial node:http handler
  await (await import('./hierarchy.bench.ts')).runHierarchyBench({ quick }); // hierarchy.*: fanout through 1→4→16 gateways vs direct DM sessions
  process.exit(0);
} catch (err) {
  process.stderr.write(`bench failed: ${(err as Error)?.stack ?? String(err)}\n`);
  process.exit(1);
}
