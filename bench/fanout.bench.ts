/**
 * Fanout and associations at scale: how long a gateway takes to run one fanout job over n simulated
 * devices, against the same device handlers called with a plain `Promise.all` in the same run; what
 * an associated device costs in heap; and how long a gateway with n devices takes to restart.
 * (The hierarchy over HTTP is bench/hierarchy.bench.ts.) docs/performance.md has the targets.
 *
 *   npm run bench                                  (every benchmark; bench/run.ts)
 *   node --expose-gc bin/run-ts.js bench/fanout.bench.ts
 *   GWMO_BENCH_N=1000,10000 node --expose-gc bin/run-ts.js bench/fanout.bench.ts
 *
 * Environment: GWMO_BENCH_N (default 1000,10000,100000) are the sizes, GWMO_BENCH_STORE `leveldb`
 * (default: a real LevelDB in a temp dir, as in production) or `memory` (memoryStore; it keeps JSON
 * copies of every record on the heap), GWMO_BENCH_CONCURRENCY a comma list of candidate gateway
 * fanout.maxConcurrency values (default 64,256,1024,4096; the fastest is used).
 *
 * Output: one JSON line per figure on stdout, `{ name, n, value, unit, baseline, ratio, ... }`
 * (extra fields: `note`, and details such as `coldMs`, `runs`, `usPerDevice`, `rssMB`), the first
 * being `machine`; human progress on stderr. Figures:
 * - `fanout.get` (ms, Exec Start to the job's final state; job Get ./DevInfo/Mod on GroupID `*`,
 *   sim devices with latency 0), baseline: `Promise.all` of `sim.device(a).get('DevInfo/Mod')` for
 *   every device. Median of several jobs on the same gateway after one warm-up job (`coldMs`: that
 *   first job, which also builds the per-device adapter plugins), with a full GC before each job.
 *   The gateway's fanout.maxConcurrency is the fastest of the candidates on min(10000, largest n)
 *   devices (named in `note`). Every job's results are checked (n members, all 200, the right
 *   data); anything else exits non-zero.
 * - `fanout.rate` (devices/s) for the same runs; baseline: the Promise.all rate.
 * - `association.spawn` (ms, gateway start to `settled()`, every n) and `association.heap` (heap
 *   bytes per associated device after GC: heapUsed with the n-device gateway minus heapUsed with an
 *   empty started gateway, / n) at the largest n; `association.actor.heap` (heap bytes per live
 *   association actor: n `associationMachine` actors created and started alone). No baselines.
 * - `restore.ready` (ms) at the largest n: see `restoreReady`.
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { machineLine, median, now, ratio, round, sig, sizeList, sleep } from './common.ts';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import { createActor } from 'xstate';
import { associationMachine, type AssociationInput } from '../machines/association.ts';
import { SimAdapter, simAdapterConfigSchema } from '../adapters/sim.ts';
import { gatewayConfigSchema } from '../src/gateway/config.ts';
import { Gateway } from '../src/gateway/gateway.ts';
import { silentLogger } from '../src/log.ts';
import { memoryStore } from '../src/store/store.ts';
import type { PluginWrite, TreePlugin } from '../src/tree/tree.ts';

/** One reported figure. */
export interface FanoutFigure {
  name: string;
  n: number;
  value: number;
  unit: string;
  baseline: number | null;
  ratio: number | null;
  [extra: string]: unknown;
}

/** Options of a run (defaults from the environment, see the module comment). */
export interface FanoutBenchOptions {
  ns?: number[];
  store?: 'leveldb' | 'memory';
  concurrency?: number[];
  /** Receives each JSON line (default: stdout). */
  write?: (line: string) => void;
  /** Receives progress lines (default: stderr). */
  log?: (line: string) => void;
}

const DEFAULT_N = [1000, 10_000, 100_000];
const DEFAULT_CONCURRENCY = [64, 256, 1024, 4096];
const PREFIX = 'd';
const MOD = 'sim-sensor';
const PARENT = { url: 'http://127.0.0.1:9/dm', serverId: 'bench-dms', username: 'u', secret: 's', serverSecret: 'x' };

/** The sizes and settings of a run, from the environment. */
export function benchOptionsFromEnv(env: NodeJS.ProcessEnv = process.env): Required<Pick<FanoutBenchOptions, 'ns' | 'store' | 'concurrency'>> {
  const store = env.GWMO_BENCH_STORE?.trim() || 'leveldb';
  if (store !== 'leveldb' && store !== 'memory') throw new Error(`GWMO_BENCH_STORE must be leveldb or memory, not ${store}`);
  return {
    ns: sizeList(env.GWMO_BENCH_N, DEFAULT_N),
    store,
    concurrency: sizeList(env.GWMO_BENCH_CONCURRENCY, DEFAULT_CONCURRENCY),
  };
}

// ----------------------------------------------------------------------------------------------
// Helpers
// ----------------------------------------------------------------------------------------------

/** The garbage collector: `global.gc` under --expose-gc, else exposed at run time. */
export function collector(): () => void {
  const g = (globalThis as { gc?: () => void }).gc;
  if (g) return g;
  setFlagsFromString('--expose-gc');
  return runInNewContext('gc') as () => void;
}

/** heapUsed after full collections (and a few turns of the event loop for pending work). */
export async function settledHeap(gc: () => void): Promise<number> {
  for (let i = 0; i < 3; i++) {
    await new Promise((r) => setImmediate(r));
    gc();
  }
  return process.memoryUsage().heapUsed;
}

/** A store for one gateway: a LevelDB directory (the gateway opens and closes it) or memory. */
async function storeFor(kind: 'leveldb' | 'memory'): Promise<{ opts: { dataDir: string } | { store: ReturnType<typeof memoryStore> }; cleanup(): Promise<void> }> {
  if (kind === 'memory') return { opts: { store: memoryStore() }, cleanup: async () => {} };
  const dir = await mkdtemp(join(tmpdir(), 'gwmo-bench-'));
  return { opts: { dataDir: dir }, cleanup: () => rm(dir, { recursive: true, force: true }) };
}

interface SimGateway {
  gw: Gateway;
  sim: SimAdapter;
  plugin: TreePlugin;
  /** ms from start() to settled(). */
  spawnMs: number;
  close(): Promise<void>;
}

/** A started in-process gateway with a sim network of n devices, all associated. */
export async function simGateway(n: number, concurrency: number, store: 'leveldb' | 'memory'): Promise<SimGateway> {
  const s = await storeFor(store);
  const gw = await Gateway.create({
    config: gatewayConfigSchema.parse({
      id: 'gw-bench',
      parent: PARENT, // nobody listens there: alerts stay queued
      serverId: 'bench-south',
      serverSecret: 'y',
      newDeviceAlert: false,
      adapters: [{ type: 'sim', generate: { count: n, prefix: PREFIX, kind: 'sensor' }, latencyMs: 0, maxConcurrency: concurrency }],
      fanout: { timeout: 300, maxConcurrency: concurrency },
    }),
    ...s.opts,
    logger: silentLogger,
  });
  const t0 = now();
  await gw.start();
  await gw.settled();
  const spawnMs = now() - t0;
  if (gw.associations.size !== n) throw new Error(`expected ${n} associations, got ${gw.associations.size}`);
  return {
    gw,
    sim: gw.adapters.get('sim') as SimAdapter,
    plugin: gw.fanout.plugin(),
    spawnMs,
    async close() {
      await gw.stop();
      await s.cleanup();
    },
  };
}

let jobSeq = 0;

/**
 * Defines and runs one job (Get ./DevInfo/Mod on every device); returns ms from Exec Start to its
 * final state. A full GC runs first, so no job pays for the garbage of the one before.
 */
export async function runJob(g: SimGateway, n: number, gc: () => void, policyConcurrency?: number): Promise<number> {
  const { gw, plugin } = g;
  await settledHeap(gc);
  const name = `job${++jobSeq}`;
  const chr = (data: string): PluginWrite => ({ format: 'chr', type: '', data });
  await plugin.add!(name, { format: 'node', type: '' }, {});
  await plugin.add!(`${name}/Target/GroupID`, chr('*'), {});
  await plugin.add!(`${name}/Commands/1/Cmd`, chr('Get'), {});
  await plugin.add!(`${name}/Commands/1/URI`, chr('./DevInfo/Mod'), {});
  if (policyConcurrency !== undefined) await plugin.add!(`${name}/Policy/MaxConcurrency`, { format: 'int', type: '', data: String(policyConcurrency) }, {});
  const t0 = now();
  const started = await plugin.exec!(`${name}/Operations/Start`, {}, { serverId: PARENT.serverId });
  if (started.status !== 202) throw new Error(`job ${name}: Start answered ${started.status}`);
  while (gw.fanout.job(name)!.state < 30) await sleep(1);
  const ms = now() - t0;
  verifyJob(gw, name, n);
  await plugin.delete!(name, {});
  return ms;
}

/** The job's results must be n members, each 200 with the device's model: anything else fails the bench. */
function verifyJob(gw: Gateway, name: string, n: number): void {
  const j = gw.fanout.job(name)!;
  const results = gw.fanout.resultsOf(name);
  let bad = 0;
  let example = '';
  for (const [key, r] of results) {
    const c = r.cmds[0];
    if (r.status !== 200 || c?.status !== 200 || c.items?.[0]?.data !== MOD) {
      bad++;
      example ||= `${key}: ${JSON.stringify(r)}`;
    }
  }
  if (j.state !== 30 || results.size !== n || bad) {
    throw new Error(`job ${name} is wrong: state ${j.state}, ${results.size}/${n} results, ${bad} not 200 with ${MOD}${example ? ` (e.g. ${example})` : ''}`);
  }
}

/** The baseline: the same device handlers, called directly, all at once. */
async function promiseAll(sim: SimAdapter, addresses: string[], gc: () => void): Promise<number> {
  await settledHeap(gc);
  const t0 = now();
  const views = await Promise.all(addresses.map((a) => sim.device(a)!.get('DevInfo/Mod', {})));
  const ms = now() - t0;
  if (views.length !== addresses.length || views.some((v) => v?.data !== MOD)) throw new Error('the Promise.all baseline read something else');
  return ms;
}

// ----------------------------------------------------------------------------------------------
// In-process figures
// ----------------------------------------------------------------------------------------------

/** Picks the fastest gateway fanout.maxConcurrency among the candidates (interleaved jobs, median). */
async function calibrate(n: number, candidates: number[], store: 'leveldb' | 'memory', gc: () => void, log: (l: string) => void): Promise<{ chosen: number; medians: Record<string, number> }> {
  if (candidates.length === 1) return { chosen: candidates[0]!, medians: {} };
  const g = await simGateway(n, Math.max(...candidates), store);
  try {
    await runJob(g, n, gc); // warm-up
    const samples: Record<string, number[]> = Object.fromEntries(candidates.map((c) => [c, []]));
    const rounds = 3;
    for (let r = 0; r < rounds; r++) {
      for (let k = 0; k < candidates.length; k++) {
        const c = candidates[(r + k) % candidates.length]!;
        samples[c]!.push(await runJob(g, n, gc, c));
      }
    }
    const medians = Object.fromEntries(candidates.map((c) => [String(c), round(median(samples[c]!), 1)]));
    const chosen = candidates.reduce((best, c) => (medians[String(c)]! < medians[String(best)]! ? c : best));
    log(`fanout.maxConcurrency at n=${n}: ${Object.entries(medians).map(([c, ms]) => `${c} → ${ms} ms`).join(', ')}; using ${chosen}`);
    return { chosen, medians };
  } finally {
    await g.close();
  }
}

/** Heap bytes per association actor: n actors alone (their DeviceIDs exist beforehand, as in a gateway). */
async function actorHeap(n: number, gc: () => void): Promise<{ perActor: number; spawnMs: number }> {
  const ids = Array.from({ length: n }, (_, i) => `urn:dev:sim:${PREFIX}${i + 1}`);
  const h0 = await settledHeap(gc);
  const t0 = now();
  const actors = ids.map((deviceId) => {
    const input: AssociationInput = { deviceId, mode: 'adaptation', status: 'attached', gateway: false, maxFailures: 2, onChange: (ch) => void ch };
    return createActor(associationMachine, { id: deviceId, input }).start();
  });
  const spawnMs = now() - t0;
  const h1 = await settledHeap(gc);
  if (actors.some((a) => a.getSnapshot().value !== 'attached')) throw new Error('an association actor is not attached');
  for (const a of actors) a.stop();
  return { perActor: (h1 - h0) / n, spawnMs };
}

/** Heap bytes per simulated device of the sim network itself (not the gateway's cost). */
async function simHeap(n: number, gc: () => void): Promise<number> {
  const cfg = simAdapterConfigSchema.parse({ type: 'sim', generate: { count: n, prefix: PREFIX, kind: 'sensor' } });
  const h0 = await settledHeap(gc);
  const sim = new SimAdapter(cfg);
  const h1 = await settledHeap(gc);
  if (sim.list().length !== n) throw new Error('sim network size');
  return (h1 - h0) / n;
}

// ----------------------------------------------------------------------------------------------
// Restart on an existing data directory
// ----------------------------------------------------------------------------------------------

/** The gateway config of the restore figure: n sim devices (the same network as before the restart). */
function restoreConfig(n: number) {
  return gatewayConfigSchema.parse({
    id: 'gw-restore',
    parent: PARENT,
    serverId: 'bench-south',
    serverSecret: 'y',
    newDeviceAlert: false,
    adapters: [{ type: 'sim', generate: { count: n, prefix: PREFIX, kind: 'sensor' }, latencyMs: 0 }],
  });
}

/**
 * `restore.ready`: a gateway with n associated devices is stopped; then (interleaved, several
 * times) its data directory is (a) opened and every LevelDB record read and decoded in one plain
 * iteration (the baseline), and (b) opened by a new Gateway, started, and asked for an inventory
 * node of the last device through its DM tree (what its parent's Get reads), timed until that
 * answer. The sim network's own construction (n simulated devices, the devices' world, not the
 * gateway) is timed apart and left out of (b): `simMs`.
 */
export async function restoreReady(n: number, gc: () => void, log: (l: string) => void): Promise<{ value: number; baseline: number; simMs: number; runs: number[]; base: number[]; records: number }> {
  const dir = await mkdtemp(join(tmpdir(), 'gwmo-bench-r-'));
  try {
    {
      const gw = await Gateway.create({ config: restoreConfig(n), dataDir: dir, logger: silentLogger });
      await gw.start();
      await gw.settled();
      if (gw.associations.size !== n) throw new Error(`restore: expected ${n} associations, got ${gw.associations.size}`);
      await gw.stop();
    }
    const { Level } = await import('level');
    const lastKey = `d${String(n).padStart(4, '0')}`;
    const runs: number[] = [];
    const base: number[] = [];
    const sims: number[] = [];
    let records = 0;
    for (let r = 0; r < 3; r++) {
      await settledHeap(gc);
      let t0 = now();
      const db = new Level<string, unknown>(dir, { valueEncoding: 'json' });
      await db.open();
      let count = 0;
      for await (const [k, v] of db.iterator()) if (k && v !== undefined) count++;
      await db.close();
      base.push(now() - t0);
      records = count;
      await settledHeap(gc);
      // The simulated network is built first (its cost is the simulator's), then the gateway is timed.
      t0 = now();
      const config = restoreConfig(n);
      const sim = new SimAdapter(simAdapterConfigSchema.parse(config.adapters[0]));
      sims.push(now() - t0);
      t0 = now();
      const gw = await Gateway.create({ config, dataDir: dir, logger: silentLogger, adapters: [sim] });
      await gw.start();
      const v = await gw.tree.get(`./GwMO/DeviceInventory/Records/${lastKey}/DeviceID`, { serverId: 'bench-dms' });
      runs.push(now() - t0);
      if (v.data !== `urn:dev:sim:${PREFIX}${n}`) throw new Error(`restore: the inventory answered ${JSON.stringify(v.data)} for ${lastKey}`);
      await gw.settled();
      await gw.stop();
    }
    log(`restore n=${n}: ready ${runs.map((x) => round(x)).join(', ')} ms; plain iteration of ${records} records ${base.map((x) => round(x)).join(', ')} ms`);
    return { value: median(runs), baseline: median(base), simMs: median(sims), runs, base, records };
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

// ----------------------------------------------------------------------------------------------
// The benchmark
// ----------------------------------------------------------------------------------------------

/** Runs the benchmark, writes one JSON line per figure, and returns the figures. */
export async function runFanoutBench(options: FanoutBenchOptions = {}): Promise<FanoutFigure[]> {
  const env = benchOptionsFromEnv();
  const ns = [...(options.ns ?? env.ns)].sort((a, b) => a - b);
  const store = options.store ?? env.store;
  const candidates = options.concurrency ?? env.concurrency;
  const write = options.write ?? ((l: string) => process.stdout.write(`${l}\n`));
  const log = options.log ?? ((l: string) => process.stderr.write(`${l}\n`));
  const figures: FanoutFigure[] = [];
  const emit = (f: FanoutFigure): void => {
    figures.push(f);
    write(JSON.stringify(f));
  };
  const gc = collector();
  const t0 = now();

  write(JSON.stringify(machineLine({ store, ns })));
  const storeNote = store === 'leveldb' ? 'LevelDB in a temp dir' : 'memoryStore (records also kept as JSON copies on the heap)';

  // The gateway's fanout.maxConcurrency: the fastest candidate on a mid-size network.
  const calN = Math.min(10_000, ns.at(-1)!);
  log(`calibrating fanout.maxConcurrency (${candidates.join(', ')}) on ${calN} devices…`);
  const { chosen, medians } = await calibrate(calN, candidates, store, gc, log);
  const concNote = `gateway fanout.maxConcurrency ${chosen}${Object.keys(medians).length ? ` (fastest at n=${calN}: ${Object.entries(medians).map(([c, ms]) => `${c}=${ms}ms`).join(' ')})` : ''}`;

  const largest = ns.at(-1)!;
  let liveActors = 0;
  for (const n of ns) {
    const reps = n <= 2000 ? 7 : n <= 20_000 ? 5 : 3;
    let heap: { empty: number; full: number; sim: number } | undefined;
    if (n === largest) {
      // Heap of an empty started gateway, then of the sim network alone (for the note).
      const empty = await simGateway(0, chosen, store);
      await sleep(50);
      const hEmpty = await settledHeap(gc);
      await empty.close();
      heap = { empty: hEmpty, full: 0, sim: await simHeap(n, gc) };
    }
    log(`n=${n}: associating…`);
    const g = await simGateway(n, chosen, store);
    try {
      log(`n=${n}: associated in ${round(g.spawnMs)} ms`);
      if (heap) {
        await sleep(50);
        heap.full = await settledHeap(gc);
        liveActors = g.gw.actor.getSnapshot().context.associations.size;
      }
      emit({
        name: 'association.spawn',
        n,
        value: round(g.spawnMs, 1),
        unit: 'ms',
        baseline: null,
        ratio: null,
        usPerDevice: round((g.spawnMs * 1000) / n, 2),
        rssMB: round(process.memoryUsage().rss / 2 ** 20),
        note: `gateway start() to settled(): n devices reported by the sim adapter, recorded in one batch each 5,000, kept as records (association actors are activated on demand), ${storeNote}`,
      });
      const coldMs = await runJob(g, n, gc);
      log(`n=${n}: first job ${round(coldMs)} ms; ${reps} more…`);
      const runs: number[] = [];
      for (let r = 0; r < reps; r++) runs.push(await runJob(g, n, gc));
      const addresses = Array.from({ length: n }, (_, i) => `${PREFIX}${i + 1}`);
      const base: number[] = [];
      for (let r = 0; r < Math.max(5, reps); r++) base.push(await promiseAll(g.sim, addresses, gc));
      const value = median(runs);
      const baseline = median(base);
      log(`n=${n}: fanout ${round(value, 1)} ms (runs ${runs.map((x) => round(x)).join(', ')}), Promise.all ${round(baseline, 2)} ms`);
      const note = `job Get ./DevInfo/Mod, GroupID *, sim latency 0, ${concNote}, ${storeNote}; median of ${reps} jobs after a warm-up job (coldMs), a full GC before each; baseline Promise.all of sim.device(a).get('DevInfo/Mod'), median of ${base.length}`;
      emit({ name: 'fanout.get', n, value: sig(value), unit: 'ms', baseline: sig(baseline), ratio: ratio(value, baseline), usPerDevice: round((value * 1000) / n, 2), rssMB: round(process.memoryUsage().rss / 2 ** 20), coldMs: round(coldMs, 1), runs: runs.map((x) => round(x, 1)), note });
      const rate = (n * 1000) / value;
      const baseRate = (n * 1000) / baseline;
      emit({ name: 'fanout.rate', n, value: round(rate), unit: 'devices/s', baseline: round(baseRate), ratio: ratio(rate, baseRate), note: 'n / fanout.get; baseline n / Promise.all' });
    } finally {
      await g.close();
    }
    if (heap) {
      log(`n=${n}: association actors alone…`);
      const actors = await actorHeap(n, gc);
      const perDevice = (heap.full - heap.empty) / n;
      emit({
        name: 'association.heap',
        n,
        value: round(perDevice),
        unit: 'bytes/device',
        baseline: null,
        ratio: null,
        note: `heapUsed after GC with ${n} devices associated minus with an empty started gateway, / n; ${storeNote}${store === 'leveldb' ? ' (LevelDB memory is off the V8 heap)' : ''}; includes the sim network's own state, ~${round(heap.sim)} B/device; associations at rest are records (a live association actor costs ~${round(actors.perActor)} B more: association.actor.heap; ${liveActors} live here)`,
        simBytes: round(heap.sim),
      });
      emit({
        name: 'association.actor.heap',
        n,
        value: round(actors.perActor),
        unit: 'bytes/actor',
        baseline: null,
        ratio: null,
        spawnMs: round(actors.spawnMs, 1),
        note: 'createActor(associationMachine, { id, input }).start() n times, alone, heapUsed delta after GC / n (DeviceID strings excluded)',
      });
    }
  }

  {
    const n = largest;
    log(`restore n=${n}: stopping and restarting a gateway with ${n} devices…`);
    const r = await restoreReady(n, gc, log);
    emit({
      name: 'restore.ready',
      n,
      // Four significant digits: at small n the times are a few ms, where 0.1 ms rounding would
      // make value / baseline differ from the ratio printed.
      value: sig(r.value),
      unit: 'ms',
      baseline: sig(r.baseline),
      ratio: ratio(sig(r.value), sig(r.baseline)),
      runs: r.runs.map((x) => round(x, 1)),
      simMs: round(r.simMs, 1),
      note: `Gateway.create + start() on the data directory of ${n} associated devices until its tree answers Get ./GwMO/DeviceInventory/Records/<last>/DeviceID (associations come back as records; actors are activated on demand); baseline: open the same LevelDB and iterate and JSON-decode all its ${r.records} records; median of 3, interleaved; the sim network (${round(r.simMs)} ms to build) is built beforehand and not counted`,
    });
  }

  log(`fanout bench done in ${round((now() - t0) / 1000, 1)} s`);
  return figures;
}

const invokedPath = process.argv[1];
if (invokedPath !== undefined && resolve(invokedPath) === fileURLToPath(import.meta.url)) {
  try {
    await runFanoutBench();
    process.exit(0);
  } catch (err) {
    process.stderr.write(`fanout bench failed: ${(err as Error)?.stack ?? String(err)}\n`);
    process.exit(1);
  }
}
