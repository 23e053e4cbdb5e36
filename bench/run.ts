/**
 * `npm run bench`: the codec benchmark, then the fanout benchmark, in one process started with
 * --expose-gc (the fanout bench's heap figures need full collections; without the flag it turns
 * the collector on at run time itself). JSON lines on stdout, progress on stderr.
 *
 *   npm run bench                 (about 15 s of codec, then ~1.5 min of fanout on 2 cores)
 *   npm run bench -- --quick      (codec in quick mode; fanout with GWMO_BENCH_N=1000 and
 *                                  GWMO_BENCH_HN=200 unless those are set)
 */
import { runCodecBench } from './codec.bench.ts';
import { runFanoutBench } from './fanout.bench.ts';

const quick = process.argv.includes('--quick');
if (quick) {
  process.env.GWMO_BENCH_N ??= '1000';
  process.env.GWMO_BENCH_HN ??= '200';
}
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
