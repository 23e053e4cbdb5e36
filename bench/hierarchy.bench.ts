/**
 * The hierarchy figures: how long the DM server takes to read one node of every one of n devices,
 * and how many HTTP messages it exchanges for it, when the devices sit behind a three-level gateway
 * tree (one fanout job on the top gateway), against the same server reading the same number of
 * devices that it manages directly (one DM session each), in the same run.
 *
 *   node bin/run-ts.js bench/hierarchy.bench.ts                (1,000 and 10,000: ~4 min on 2 cores)
 *   GWMO_BENCH_HN=1000 GWMO_BENCH_HRUNS=5 node bin/run-ts.js bench/hierarchy.bench.ts
 *   node bin/run-ts.js bench/hierarchy.bench.ts --quick        (n = 160, one run each)
 *
 * Processes: the DM server, the operator (its REST API client) and, for the hierarchy, the counting
 * HTTP proxy run in this process; the devices' side ("the field": the 21 gateways, or the n direct
 * DM clients) runs in one child process forked per case and size. Both cases therefore have the
 * same shape: one process for the server, one for everything it manages (2 cores here).
 *
 * - Hierarchy: server → gw-top → 4 gateways → 16 leaf gateways (each with its own listener, LevelDB
 *   data dir in a temp dir, real HTTP on 127.0.0.1); n/16 simulated adaptation devices (`sim`
 *   adapter, latency 0) per leaf. The operator defines and starts a fanout job on gw-top (Target
 *   GroupID `*`, Get ./DevInfo/Mod) in one API request, waits for the FanoutComplete alert (an
 *   in-process subscription to the server's alert events, as a push channel would deliver it), then
 *   asks for the job's `Report` (or, with GWMO_BENCH_HREAD=results, `Results?list=StructData`).
 *   The time ends when the server's queue entry of that read is done (the server holds every value).
 *   Messages are counted by a proxy in front of the server's DM URL (gw-top's parent URL).
 * - Direct (the baseline): n SimDevice DM clients (src/device/device.ts, in-memory trees, MD5 both
 *   ways, XML) with server accounts whose notify URL is one shared Package 0 listener in the field
 *   process (`/n/<i>`, answering 202 and handing the bytes to the device's `onPackage0`, exactly what
 *   the device's own listener does). The operator POSTs `Get ./DevInfo/Mod` for every device to
 *   `/api/devices/<id>/commands` (wait: true, notify: true), at most GWMO_BENCH_HOPS requests in
 *   flight (default 64: among the fastest on 2 cores with the current server, 3,000 devices, median
 *   of 3: 8 → 9.1 s, 16 → 8.1 s, 64 → 6.9 s, 128 → 7.2 s, 256 → 9.7 s; before the server's
 *   group-committed writes 16 was best; 1,000 in flight reaches the server's limits.maxSessions,
 *   whose 503s fail sessions).
 *   Each request: the server queues the Get and pushes a Package 0; the device opens a session
 *   (Package 1 → 2 with the Get → 3 with the Results → 4). The time ends when the last device's
 *   entry is done. Messages are counted at the server's listener (DM requests) plus Package 0 pushes.
 *
 * Output: JSON lines `{ name, n, value, unit, baseline, ratio, ... }` on stdout (the first is
 * `machine`), progress on stderr. Figures per n: `hierarchy.get` (ms, baseline: direct ms),
 * `hierarchy.server_messages` (count, baseline: direct count), `hierarchy.get_per_device` (µs per
 * device, both cases), `hierarchy.rss` (MB, peak RSS of the field process; server process RSS in
 * `serverRss`). Each time is the median of GWMO_BENCH_HRUNS runs (default 3; --quick: 1); every run
 * is checked (n values, every one `sim-sensor` with status 200) or the bench exits non-zero.
 *
 * Environment: GWMO_BENCH_HN (default 1000,10000), GWMO_BENCH_HRUNS, GWMO_BENCH_HOPS (operator
 * concurrency of the direct case), GWMO_BENCH_HCONC (gateway fanout.maxConcurrency, default 256),
 * GWMO_BENCH_HREAD (`report` or `results`), GWMO_BENCH_FIELD_ARGS (extra node flags for the field
 * process, e.g. `--cpu-prof --cpu-prof-dir=/tmp/prof`), GWMO_BENCH_HONLY (`hierarchy` or `direct`: run
 * one case only and print progress lines, no figures; for profiling), GWMO_BENCH_HLOG (`info`, `debug`:
 * the server's and the gateways' logs on stderr).
 */
import { fork, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { mkdtemp, rm } from 'node:fs/promises';
import { Agent, createServer, request as httpRequest, type Server } from 'node:http';
import { tmpdir } from 'node:os';
import { machineLine, median, now, ratio, round, sig, sizeList, sleep } from './common.ts';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { SimDevice } from '../src/device/device.ts';
import { deviceConfigSchema } from '../src/device/config.ts';
import { gatewayConfigSchema } from '../src/gateway/config.ts';
import { Gateway } from '../src/gateway/gateway.ts';
import { FANOUT_COMPLETE_ALERT, parseReport } from '../src/gateway/fanout.ts';
import { createLogger, silentLogger, type LogLevel, type Logger } from '../src/log.ts';
import { accountSchema, serverConfigSchema } from '../src/server/config.ts';
import type { DeviceAlert, QueueEntry } from '../src/server/queue.ts';
import { DmServer } from '../src/server/server.ts';
import { memoryStore } from '../src/store/store.ts';
import { listen, readBody, type Listener } from '../src/transport/http.ts';

/** One reported figure. */
export interface HierarchyFigure {
  name: string;
  n: number;
  value: number;
  unit: string;
  baseline: number | null;
  ratio: number | null;
  [extra: string]: unknown;
}

/** Options of a run (defaults from the environment, see the module comment). */
export interface HierarchyBenchOptions {
  ns?: number[];
  runs?: number;
  /** Operator requests in flight in the direct case. */
  operatorConcurrency?: number;
  /** Gateway fanout.maxConcurrency. */
  fanoutConcurrency?: number;
  read?: 'report' | 'results';
  /** Receives each JSON line (default: stdout). */
  write?: (line: string) => void;
  /** Receives progress lines (default: stderr). */
  log?: (line: string) => void;
}

const ROOT = fileURLToPath(new URL('..', import.meta.url));
const SELF = fileURLToPath(import.meta.url);
const DEFAULT_HN = [1000, 10_000];
const QUICK_HN = [160];
const MOD = 'sim-sensor';
const LEAVES_PER_MID = 4;
const MIDS = 4;
const LEAVES = MIDS * LEAVES_PER_MID;
const SERVER = { serverId: 'bench-dms', serverSecret: 'dms-secret' };
const TOP = { deviceId: 'gw-top', username: 'gw-top-user', secret: 'gw-top-secret' };

const positiveInt = (v: string | undefined, name: string, dflt: number): number => {
  if (!v?.trim()) return dflt;
  const x = Number(v);
  if (!Number.isInteger(x) || x < 1) throw new Error(`${name} must be a positive integer, not ${JSON.stringify(v)}`);
  return x;
};

/** The sizes and settings of a run, from the environment (and --quick). */
export function hierarchyOptionsFromEnv(env: NodeJS.ProcessEnv = process.env, quick = false): Required<Pick<HierarchyBenchOptions, 'ns' | 'runs' | 'operatorConcurrency' | 'fanoutConcurrency' | 'read'>> {
  const read = env.GWMO_BENCH_HREAD?.trim() || 'report';
  if (read !== 'report' && read !== 'results') throw new Error(`GWMO_BENCH_HREAD must be report or results, not ${read}`);
  return {
    ns: sizeList(env.GWMO_BENCH_HN, quick ? QUICK_HN : DEFAULT_HN, LEAVES),
    runs: positiveInt(env.GWMO_BENCH_HRUNS, 'GWMO_BENCH_HRUNS', quick ? 1 : 3),
    operatorConcurrency: positiveInt(env.GWMO_BENCH_HOPS, 'GWMO_BENCH_HOPS', 64),
    fanoutConcurrency: positiveInt(env.GWMO_BENCH_HCONC, 'GWMO_BENCH_HCONC', 256),
    read,
  };
}

// ----------------------------------------------------------------------------------------------
// Helpers
// ----------------------------------------------------------------------------------------------

const mb = (bytes: number): number => round(bytes / 2 ** 20, 1);

async function until(cond: () => boolean, what: string, ms = 120_000): Promise<void> {
  const end = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await sleep(10);
  }
}

const HOP_HEADERS = new Set(['host', 'connection', 'keep-alive', 'content-length', 'transfer-encoding', 'content-encoding']);

/** A counting HTTP proxy in front of `target` (a base URL): every request is counted, then forwarded as is. */
async function countingProxy(target: string): Promise<{ url: string; count(): number; bytes(): { up: number; down: number }; close(): Promise<void> }> {
  let count = 0;
  const bytes = { up: 0, down: 0 };
  const server: Server = createServer((req, res) => {
    count++;
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      void (async () => {
        try {
          const headers: Record<string, string> = {};
          for (const [k, v] of Object.entries(req.headers)) if (typeof v === 'string' && !HOP_HEADERS.has(k)) headers[k] = v;
          const sent = Buffer.concat(chunks);
          bytes.up += sent.byteLength;
          const up = await fetch(target + (req.url ?? '/'), { method: req.method ?? 'POST', headers, ...(req.method === 'POST' ? { body: sent } : {}) });
          const body = Buffer.from(await up.arrayBuffer());
          bytes.down += body.byteLength;
          const out: Record<string, string> = {};
          up.headers.forEach((v, k) => {
            if (!HOP_HEADERS.has(k)) out[k] = v;
          });
          res.writeHead(up.status, out).end(body);
        } catch (err) {
          res.writeHead(502, { 'content-type': 'text/plain' }).end(String(err));
        }
      })();
    });
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  const addr = server.address() as { port: number };
  return {
    url: `http://127.0.0.1:${addr.port}`,
    count: () => count,
    bytes: () => ({ ...bytes }),
    close: async () => {
      server.closeAllConnections();
      await new Promise<void>((r) => server.close(() => r()));
    },
  };
}

/** What the server sent and received, counted at the server itself. */
interface ServerCounters {
  dm: number;
  api: number;
  package0: number;
}

/**
 * Counts the server's HTTP traffic: requests on its DM path and on /api (its listener's `request`
 * event), and Package 0 pushes (its pushPackage0, wrapped). Cheap enough for 10,000s of sessions.
 */
function countServer(server: DmServer): ServerCounters {
  const c: ServerCounters = { dm: 0, api: 0, package0: 0 };
  const internals = server as unknown as { listener: Listener; pushPackage0: (...args: unknown[]) => Promise<void> };
  const path = server.config.path;
  internals.listener.server.on('request', (req: { url?: string }) => {
    const u = req.url ?? '';
    if (u.startsWith('/api')) c.api++;
    else if (u === path || u.startsWith(path + '/') || u.startsWith(path + '?')) c.dm++;
  });
  const push = internals.pushPackage0.bind(server);
  internals.pushPackage0 = async (...args: unknown[]) => {
    c.package0++;
    return push(...args);
  };
  return c;
}

/** A keep-alive HTTP client for the operator API (node:http; one socket per request in flight). */
function operatorClient(baseUrl: string, maxSockets: number): { post(path: string, body: unknown): Promise<{ status: number; json: any }>; close(): void } {
  const agent = new Agent({ keepAlive: true, maxSockets });
  const u = new URL(baseUrl);
  return {
    post: (path, body) =>
      new Promise((resolveReq, reject) => {
        const data = Buffer.from(JSON.stringify(body));
        const req = httpRequest(
          { host: u.hostname, port: u.port, path, method: 'POST', agent, headers: { 'content-type': 'application/json', 'content-length': String(data.length) } },
          (res) => {
            const chunks: Buffer[] = [];
            res.on('data', (c: Buffer) => chunks.push(c));
            res.on('end', () => {
              try {
                resolveReq({ status: res.statusCode ?? 0, json: JSON.parse(Buffer.concat(chunks).toString('utf8')) });
              } catch (err) {
                reject(err);
              }
            });
            res.on('error', reject);
          },
        );
        req.on('error', reject);
        req.end(data);
      }),
    close: () => agent.destroy(),
  };
}

const commandsPath = (deviceId: string): string => `/api/devices/${encodeURIComponent(deviceId)}/commands`;

// ----------------------------------------------------------------------------------------------
// The field process (child): the gateway tree, or the direct DM clients
// ----------------------------------------------------------------------------------------------

/** Messages from the bench to the field process. */
type ToField =
  | { type: 'hierarchy'; n: number; parentUrl: string; concurrency: number }
  | { type: 'direct'; n: number; serverUrl: string }
  | { type: 'rss' }
  | { type: 'stop' };

/** Messages from the field process to the bench. */
type FromField =
  | { type: 'ready'; notifyBase?: string; setupMs: number }
  | { type: 'rss'; rss: number; maxRss: number }
  | { type: 'error'; message: string }
  | { type: 'stopped' };

/** GWMO_BENCH_HLOG=debug|info|warn: the server's and the gateways' logs on stderr (latency hunting). */
const benchLogger = (name: string): Logger => {
  const level = process.env.GWMO_BENCH_HLOG?.trim() as LogLevel | undefined;
  return level ? createLogger(name, { level }) : silentLogger;
};

const directId = (i: number): string => `urn:dev:bench:${i}`;
const directUser = (i: number): string => `bench-user-${i}`;
const directSecret = (i: number): string => `bench-secret-${i}`;

/** The field side of one case; runs until told to stop. */
async function field(): Promise<void> {
  const send = (m: FromField): void => void process.send!(m);
  let stop: () => Promise<void> = async () => {};
  // The bench process went away (killed, crashed): do not outlive it.
  process.once('disconnect', () => setTimeout(() => process.exit(0), 1000).unref());
  process.on('message', (m: ToField) => {
    void (async () => {
      try {
        if (m.type === 'hierarchy') {
          const t0 = now();
          stop = await fieldHierarchy(m.n, m.parentUrl, m.concurrency);
          send({ type: 'ready', setupMs: now() - t0 });
        } else if (m.type === 'direct') {
          const t0 = now();
          const d = await fieldDirect(m.n, m.serverUrl);
          stop = d.stop;
          send({ type: 'ready', notifyBase: d.notifyBase, setupMs: now() - t0 });
        } else if (m.type === 'rss') {
          send({ type: 'rss', rss: process.memoryUsage.rss(), maxRss: process.resourceUsage().maxRSS * 1024 });
        } else if (m.type === 'stop') {
          await stop();
          send({ type: 'stopped' });
          process.disconnect();
          setTimeout(() => process.exit(0), 100).unref();
        }
      } catch (err) {
        send({ type: 'error', message: (err as Error)?.stack ?? String(err) });
      }
    })();
  });
}

/** gw-top → 4 mid gateways → 16 leaf gateways with n/16 sim devices each, all in this process. */
async function fieldHierarchy(n: number, parentUrl: string, concurrency: number): Promise<() => Promise<void>> {
  const dir = await mkdtemp(join(tmpdir(), 'gwmo-bench-hier-'));
  const gateways: Gateway[] = [];
  const common = { serverAuthType: 'md5', newDeviceAlert: false, requestTimeout: 300, proxyTimeout: 300, fanout: { timeout: 300, maxConcurrency: concurrency } };
  const childAccount = (id: string) => ({ deviceId: id, mode: 'proxy', gateway: true, username: `${id}-user`, secret: `${id}-secret`, authType: 'md5' });
  const parentOf = (gw: Gateway, id: string) => ({ url: gw.southUrl, serverId: gw.config.serverId, username: `${id}-user`, secret: `${id}-secret`, authType: 'md5', serverSecret: gw.config.serverSecret, serverAuthType: 'md5' });
  const make = async (id: string, extra: Record<string, unknown>): Promise<Gateway> => {
    const g = await Gateway.create({
      config: gatewayConfigSchema.parse({ id, serverId: `${id}-south`, serverSecret: `${id}-south-secret`, ...common, ...extra }),
      dataDir: join(dir, id),
      logger: benchLogger(id),
    });
    await g.start();
    gateways.push(g);
    return g;
  };
  const mids = Array.from({ length: MIDS }, (_, i) => `gw-m${i + 1}`);
  const top = await make(TOP.deviceId, {
    parent: { url: parentUrl, serverId: SERVER.serverId, username: TOP.username, secret: TOP.secret, authType: 'md5', serverSecret: SERVER.serverSecret, serverAuthType: 'md5' },
    devices: mids.map(childAccount),
  });
  const per = Math.floor(n / LEAVES);
  const waits: [Gateway, string][] = mids.map((m) => [top, m]);
  for (const [i, m] of mids.entries()) {
    const leaves = Array.from({ length: LEAVES_PER_MID }, (_, k) => `gw-m${i + 1}l${k + 1}`);
    const mid = await make(m, { parent: parentOf(top, m), devices: leaves.map(childAccount) });
    for (const [k, l] of leaves.entries()) {
      const idx = i * LEAVES_PER_MID + k;
      const count = idx === LEAVES - 1 ? n - per * (LEAVES - 1) : per;
      const leaf = await make(l, {
        parent: parentOf(mid, l),
        adapters: [{ type: 'sim', generate: { count, prefix: `m${i + 1}l${k + 1}-`, kind: 'sensor' }, latencyMs: 0, maxConcurrency: concurrency }],
      });
      await leaf.settled();
      waits.push([mid, l]);
    }
  }
  await until(() => waits.every(([p, c]) => p.associations.get(c)?.status === 'attached'), 'every child gateway to attach', 120_000);
  return async () => {
    for (const g of gateways.reverse()) await g.stop();
    await rm(dir, { recursive: true, force: true });
  };
}

/** n DM client devices (in-memory trees) and one shared Package 0 listener for all of them. */
async function fieldDirect(n: number, serverUrl: string): Promise<{ notifyBase: string; stop(): Promise<void> }> {
  const devices: SimDevice[] = [];
  for (let i = 0; i < n; i++) {
    const config = deviceConfigSchema.parse({
      deviceId: directId(i),
      encoding: 'xml',
      devInfo: { mod: MOD },
      server: { serverId: SERVER.serverId, url: serverUrl, username: directUser(i), secret: directSecret(i), authType: 'md5', serverSecret: SERVER.serverSecret, serverAuthType: 'md5' },
      notify: { advertise: false },
      requestTimeout: 300,
    });
    devices.push(await SimDevice.create({ config, store: memoryStore(), logger: silentLogger }));
  }
  // What SimDevice's own listener does (answer 202 at once, then verify and run the session), for
  // n devices on one socket: n listeners would cost n file descriptors and nothing else.
  const listener = await listen('127.0.0.1:0', async (req, res) => {
    const i = Number(/^\/n\/(\d+)$/.exec(req.url ?? '')?.[1] ?? NaN);
    const d = devices[i];
    const body = await readBody(req, 4096).catch(() => undefined);
    if (!d || !body || req.method !== 'POST') {
      res.writeHead(d ? 400 : 404).end();
      return;
    }
    res.writeHead(202).end();
    void d.onPackage0(body);
  });
  return {
    notifyBase: `${listener.url}/n/`,
    stop: async () => {
      await listener.close();
      for (const d of devices) await d.stop();
    },
  };
}

/** A forked field process and a typed request/answer channel to it. */
interface Field {
  proc: ChildProcess;
  ask<T extends FromField['type']>(m: ToField, answer: T): Promise<Extract<FromField, { type: T }>>;
  close(): Promise<void>;
}

function startField(): Field {
  const extra = (process.env.GWMO_BENCH_FIELD_ARGS ?? '').split(/\s+/).filter(Boolean);
  const proc = fork(join(ROOT, 'bin/run-ts.js'), [SELF, '--field'], { cwd: ROOT, stdio: ['ignore', 2, 2, 'ipc'], execArgv: [...extra] });
  let exited = false;
  proc.once('exit', () => (exited = true));
  const ask = <T extends FromField['type']>(m: ToField, answer: T): Promise<Extract<FromField, { type: T }>> =>
    new Promise((resolveAsk, reject) => {
      const onMsg = (r: FromField): void => {
        if (r.type === 'error') {
          cleanup();
          reject(new Error(`field process: ${r.message}`));
        } else if (r.type === answer) {
          cleanup();
          resolveAsk(r as Extract<FromField, { type: T }>);
        }
      };
      const onExit = (code: number | null): void => {
        cleanup();
        reject(new Error(`field process exited (${code}) before answering ${m.type}`));
      };
      const cleanup = (): void => {
        proc.off('message', onMsg);
        proc.off('exit', onExit);
      };
      proc.on('message', onMsg);
      proc.once('exit', onExit);
      proc.send(m);
    });
  return {
    proc,
    ask,
    close: async () => {
      if (exited) return;
      const gone = once(proc, 'exit');
      await ask({ type: 'stop' }, 'stopped').catch(() => undefined);
      const t = setTimeout(() => proc.kill('SIGKILL'), 30_000);
      await gone;
      clearTimeout(t);
    },
  };
}

// ----------------------------------------------------------------------------------------------
// The two cases (server side)
// ----------------------------------------------------------------------------------------------

/** One measured run. */
interface RunResult {
  ms: number;
  /** HTTP messages of the server until it held every value: DM requests + Package 0 pushes. */
  messages: number;
  dm: number;
  package0: number;
  api: number;
  /** DM requests after that, until the server was quiet (sessions closing). */
  tail: number;
  phases?: Record<string, number>;
  bytes?: { up: number; down: number };
}

/** A case set up for n devices: runs as often as asked, then stops. */
interface Case {
  setupMs: number;
  run(k: number): Promise<RunResult>;
  rss(): Promise<{ field: number; fieldPeak: number; server: number }>;
  stop(): Promise<void>;
}

async function newServer(dir: string, extra: Record<string, unknown> = {}): Promise<DmServer> {
  const server = await DmServer.create({
    config: serverConfigSchema.parse({
      listen: '127.0.0.1:0',
      ...SERVER,
      serverAuthType: 'md5',
      sessionTimeout: 300,
      ...extra,
    }),
    dataDir: join(dir, 'server'),
    logger: benchLogger('server'),
  });
  await server.start();
  return server;
}

/** Waits until the server has no open session and nothing arrived for `quietMs`. */
async function quiet(server: DmServer, count: () => number, quietMs = 300): Promise<void> {
  for (let last = -1, since = now(); ; await sleep(20)) {
    const c = count();
    if (c !== last || server.openSessions().length) {
      last = c;
      since = now();
    } else if (now() - since > quietMs) return;
  }
}

async function hierarchyCase(n: number, opts: { fanoutConcurrency: number; read: 'report' | 'results' }, log: (l: string) => void): Promise<Case> {
  log(`hierarchy n=${n}: server → gw-top → ${MIDS} gateways → ${LEAVES} gateways × ${Math.floor(n / LEAVES)} sim devices, over HTTP…`);
  const t0 = now();
  const dir = await mkdtemp(join(tmpdir(), 'gwmo-bench-hsrv-'));
  const server = await newServer(dir, { accounts: [{ deviceId: TOP.deviceId, username: TOP.username, secret: TOP.secret, authType: 'md5', gateway: true }] });
  const counters = countServer(server);
  const proxy = await countingProxy(server.url);
  const f = startField();
  const op = operatorClient(server.url, 4);
  try {
    await f.ask({ type: 'hierarchy', n, parentUrl: `${proxy.url}${server.config.path}`, concurrency: opts.fanoutConcurrency }, 'ready');
    await quiet(server, () => proxy.count(), 500);
  } catch (err) {
    await f.close();
    throw err;
  }
  const setupMs = now() - t0;
  return {
    setupMs,
    async run(k) {
      const job = `hjob${k}`;
      const correlator = `c-${job}`;
      const base = `./GwMO/Fanout/${job}`;
      const readUri = opts.read === 'report' ? `${base}/Report` : `${base}/Results?list=StructData`;
      let alertAt = 0;
      let doneAt = 0;
      let doneCount = { proxy: 0, dm: 0, package0: 0 };
      const alerted = new Promise<void>((r) => {
        const onAlert = (a: DeviceAlert): void => {
          if (a.deviceId === TOP.deviceId && a.correlator === correlator && a.items.some((it) => it.meta?.type === FANOUT_COMPLETE_ALERT)) {
            alertAt ||= now();
            server.queue.events.off('alert', onAlert);
            r();
          }
        };
        server.queue.events.on('alert', onAlert);
      });
      const onDone = (e: QueueEntry): void => {
        if (e.deviceId !== TOP.deviceId || e.command.kind !== 'Get' || e.command.items[0]?.target?.locURI !== readUri) return;
        doneAt = now();
        doneCount = { proxy: proxy.count(), dm: counters.dm, package0: counters.package0 };
      };
      server.queue.events.on('done', onDone);
      const c0 = { proxy: proxy.count(), dm: counters.dm, package0: counters.package0, api: counters.api };
      const b0 = proxy.bytes();
      const tStart = now();
      try {
        const started = await op.post(commandsPath(TOP.deviceId), {
          timeout: 300,
          cmd: 'Sequence',
          commands: [
            { cmd: 'Add', uri: base, format: 'node' },
            { cmd: 'Add', uri: `${base}/Target/GroupID`, value: '*' },
            { cmd: 'Add', uri: `${base}/Commands/1/Cmd`, value: 'Get' },
            { cmd: 'Add', uri: `${base}/Commands/1/URI`, value: './DevInfo/Mod' },
            { cmd: 'Exec', uri: `${base}/Operations/Start`, correlator },
          ],
        });
        const startStatus = started.json?.statuses?.at(-1)?.status;
        if (started.status !== 200 || startStatus !== 202) throw new Error(`the job was not started: HTTP ${started.status} ${JSON.stringify(started.json).slice(0, 500)}`);
        const cDefine = proxy.count();
        await alerted;
        const cAlert = proxy.count();
        const read = await op.post(commandsPath(TOP.deviceId), { timeout: 300, cmd: 'Get', uri: readUri });
        if (read.status !== 200 || read.json?.status !== 200) throw new Error(`Get ${readUri}: HTTP ${read.status} ${JSON.stringify(read.json).slice(0, 500)}`);
        if (!doneAt) throw new Error('the read finished without its queue entry being done');
        const ms = doneAt - tStart;
        verifyHierarchy(read.json, n, opts.read, base);
        await quiet(server, () => proxy.count());
        const b1 = proxy.bytes();
        const dm = doneCount.proxy - c0.proxy;
        if (doneCount.dm - c0.dm !== dm) log(`  warning: proxy counted ${dm} DM requests, the server ${doneCount.dm - c0.dm}`);
        const res: RunResult = {
          ms,
          dm,
          package0: doneCount.package0 - c0.package0,
          messages: dm + doneCount.package0 - c0.package0,
          api: counters.api - c0.api,
          tail: proxy.count() - doneCount.proxy,
          phases: { define: cDefine - c0.proxy, alert: cAlert - cDefine, read: doneCount.proxy - cAlert },
          bytes: { up: b1.up - b0.up, down: b1.down - b0.down },
        };
        log(`  hierarchy n=${n} run ${k}: ${round(ms)} ms (alert after ${round(alertAt - tStart)} ms), ${res.messages} messages (${dm} DM: define ${res.phases!.define}, alert ${res.phases!.alert}, read ${res.phases!.read}; ${res.package0} Package 0)`);
        // Not measured: the operator removes the job.
        await op.post(commandsPath(TOP.deviceId), { timeout: 300, cmd: 'Delete', uri: base });
        await quiet(server, () => proxy.count());
        return res;
      } finally {
        server.queue.events.off('done', onDone);
      }
    },
    async rss() {
      const r = await f.ask({ type: 'rss' }, 'rss');
      return { field: r.rss, fieldPeak: r.maxRss, server: process.memoryUsage.rss() };
    },
    async stop() {
      op.close();
      await f.close();
      await proxy.close();
      await server.stop();
      await rm(dir, { recursive: true, force: true });
    },
  };
}

/** Every member 200 with the model, n members: anything else fails the bench. */
function verifyHierarchy(entry: any, n: number, read: 'report' | 'results', base: string): void {
  const results = (entry.results ?? []) as { uri: string; data?: string }[];
  let total = 0;
  let bad = 0;
  let example = '';
  if (read === 'report') {
    const xml = results[0]?.data;
    if (typeof xml !== 'string') throw new Error(`the Report read returned no document: ${JSON.stringify(entry).slice(0, 300)}`);
    const report = parseReport(xml);
    const keys = new Set<string>();
    for (const m of report.members) {
      keys.add(m.key);
      const c = m.result.cmds[0];
      if (m.result.status !== 200 || c?.status !== 200 || c.items?.[0]?.data !== MOD) {
        bad++;
        example ||= JSON.stringify(m);
      }
    }
    total = keys.size;
  } else {
    const prefix = `${base}/Results/`;
    const status = new Map<string, string>();
    const data = new Map<string, string>();
    for (const it of results) {
      if (!it.uri.startsWith(prefix)) continue;
      const rest = it.uri.slice(prefix.length);
      const slash = rest.indexOf('/');
      const m = rest.slice(0, slash);
      const leaf = rest.slice(slash + 1);
      if (leaf === 'Status') status.set(m, it.data ?? '');
      else if (leaf === 'Cmd/1/Data') data.set(m, it.data ?? '');
    }
    total = status.size;
    for (const [m, s] of status) {
      if (s !== '200' || data.get(m) !== MOD) {
        bad++;
        example ||= `${m}: ${s} ${data.get(m)}`;
      }
    }
  }
  if (total !== n || bad) throw new Error(`hierarchy n=${n}: ${total}/${n} members, ${bad} not 200 with ${MOD}${example ? ` (e.g. ${example})` : ''}`);
}

async function directCase(n: number, opts: { operatorConcurrency: number }, log: (l: string) => void): Promise<Case> {
  log(`direct n=${n}: ${n} DM clients, one session each, ${opts.operatorConcurrency} operator requests in flight…`);
  const t0 = now();
  const dir = await mkdtemp(join(tmpdir(), 'gwmo-bench-dsrv-'));
  // Sessions of this size of fleet: limits.maxSessions (default 1000) is above the operator's concurrency.
  const server = await newServer(dir);
  const counters = countServer(server);
  const f = startField();
  const op = operatorClient(server.url, opts.operatorConcurrency);
  let notifyBase: string;
  try {
    notifyBase = (await f.ask({ type: 'direct', n, serverUrl: server.dmUrl }, 'ready')).notifyBase!;
  } catch (err) {
    await f.close();
    throw err;
  }
  for (let i = 0; i < n; i++) {
    server.addAccount(accountSchema.parse({ deviceId: directId(i), username: directUser(i), secret: directSecret(i), authType: 'md5', notify: `${notifyBase}${i}` }));
  }
  const setupMs = now() - t0;
  return {
    setupMs,
    async run(k) {
      const ids = Array.from({ length: n }, (_, i) => directId(i));
      const pending = new Set(ids);
      let doneAt = 0;
      let doneCount = { dm: 0, package0: 0 };
      const values = new Map<string, string>();
      let bad = 0;
      let example = '';
      const onDone = (e: QueueEntry): void => {
        if (!pending.has(e.deviceId) || e.command.kind !== 'Get') return;
        pending.delete(e.deviceId);
        const v = e.outcome?.results[0]?.data;
        if (e.outcome?.status !== 200 || v !== MOD) {
          bad++;
          example ||= `${e.deviceId}: ${JSON.stringify(e.outcome)}`;
        } else values.set(e.deviceId, v);
        if (pending.size === 0) {
          doneAt = now();
          doneCount = { dm: counters.dm, package0: counters.package0 };
        }
      };
      server.queue.events.on('done', onDone);
      const c0 = { dm: counters.dm, package0: counters.package0, api: counters.api };
      const tStart = now();
      let failures = 0;
      try {
        let next = 0;
        const worker = async (): Promise<void> => {
          while (next < ids.length) {
            const id = ids[next++]!;
            const r = await op.post(commandsPath(id), { timeout: 300, cmd: 'Get', uri: './DevInfo/Mod' });
            if (r.status !== 200) {
              failures++;
              example ||= `${id}: HTTP ${r.status} ${JSON.stringify(r.json).slice(0, 300)}`;
            }
          }
        };
        await Promise.all(Array.from({ length: Math.min(opts.operatorConcurrency, n) }, worker));
        if (failures || bad || values.size !== n || !doneAt) throw new Error(`direct n=${n}: ${values.size}/${n} values, ${failures} requests failed, ${bad} not 200 with ${MOD}${example ? ` (e.g. ${example})` : ''}`);
        const ms = doneAt - tStart;
        await quiet(server, () => counters.dm);
        const res: RunResult = {
          ms,
          dm: doneCount.dm - c0.dm,
          package0: doneCount.package0 - c0.package0,
          messages: doneCount.dm - c0.dm + doneCount.package0 - c0.package0,
          api: counters.api - c0.api,
          tail: counters.dm - doneCount.dm,
        };
        log(`  direct n=${n} run ${k}: ${round(ms)} ms, ${res.messages} messages (${res.dm} DM, ${res.package0} Package 0; ${res.api} API requests)`);
        return res;
      } finally {
        server.queue.events.off('done', onDone);
      }
    },
    async rss() {
      const r = await f.ask({ type: 'rss' }, 'rss');
      return { field: r.rss, fieldPeak: r.maxRss, server: process.memoryUsage.rss() };
    },
    async stop() {
      op.close();
      await f.close();
      await server.stop();
      await rm(dir, { recursive: true, force: true });
    },
  };
}

// ----------------------------------------------------------------------------------------------
// The benchmark
// ----------------------------------------------------------------------------------------------

/** Sets a case up, runs it `runs` times, stops it; returns the runs, the setup time and the RSS. */
async function measure(make: () => Promise<Case>, runs: number): Promise<{ runs: RunResult[]; setupMs: number; rss: { field: number; fieldPeak: number; server: number } }> {
  const c = await make();
  try {
    const out: RunResult[] = [];
    for (let k = 1; k <= runs; k++) out.push(await c.run(k));
    return { runs: out, setupMs: c.setupMs, rss: await c.rss() };
  } finally {
    await c.stop();
  }
}

/** Runs the benchmark, writes one JSON line per figure, and returns the figures. */
export async function runHierarchyBench(options: HierarchyBenchOptions & { quick?: boolean } = {}): Promise<HierarchyFigure[]> {
  const env = hierarchyOptionsFromEnv(process.env, options.quick ?? false);
  const ns = [...(options.ns ?? env.ns)].sort((a, b) => a - b);
  const runs = options.runs ?? env.runs;
  const operatorConcurrency = options.operatorConcurrency ?? env.operatorConcurrency;
  const fanoutConcurrency = options.fanoutConcurrency ?? env.fanoutConcurrency;
  const read = options.read ?? env.read;
  const write = options.write ?? ((l: string) => process.stdout.write(`${l}\n`));
  const log = options.log ?? ((l: string) => process.stderr.write(`${l}\n`));
  const figures: HierarchyFigure[] = [];
  const emit = (f: HierarchyFigure): void => {
    figures.push(f);
    write(JSON.stringify(f));
  };
  const t0 = now();
  write(JSON.stringify(machineLine({ bench: 'hierarchy', hns: ns, runs, operatorConcurrency, fanoutConcurrency, read })));

  for (const n of ns) {
    const only = process.env.GWMO_BENCH_HONLY?.trim();
    const h = only === 'direct' ? undefined : await measure(() => hierarchyCase(n, { fanoutConcurrency, read }, log), runs);
    if (h) log(`  set up in ${round(h.setupMs)} ms`);
    const d = only === 'hierarchy' ? undefined : await measure(() => directCase(n, { operatorConcurrency }, log), runs);
    if (d) log(`  set up in ${round(d.setupMs)} ms`);
    if (!h || !d) continue; // GWMO_BENCH_HONLY (profiling one case): progress lines only

    const hMs = median(h.runs.map((r) => r.ms));
    const dMs = median(d.runs.map((r) => r.ms));
    const hMsg = median(h.runs.map((r) => r.messages));
    const dMsg = median(d.runs.map((r) => r.messages));
    const hRun = h.runs[0]!;
    const dRun = d.runs[0]!;
    const layout = 'server + operator (+ counting proxy) in the bench process; gateways or devices in one forked field process';
    emit({
      name: 'hierarchy.get',
      n,
      value: sig(hMs),
      unit: 'ms',
      baseline: sig(dMs),
      ratio: ratio(hMs, dMs),
      runs: h.runs.map((r) => round(r.ms, 1)),
      baselineRuns: d.runs.map((r) => round(r.ms, 1)),
      note: `operator request to the server holding every value; hierarchy: fanout job (GroupID *, Get ./DevInfo/Mod) on gw-top of server → 1 → ${MIDS} → ${LEAVES} gateways, sim devices (latency 0), LevelDB, HTTP on 127.0.0.1, read of ${read === 'report' ? 'Report' : 'Results?list=StructData'} after the FanoutComplete alert, gateway fanout.maxConcurrency ${fanoutConcurrency}; baseline: one server-initiated DM session per device (API Get with notify, Package 0, MD5, XML), ${operatorConcurrency} API requests in flight; ${layout}; median of ${runs}`,
    });
    emit({
      name: 'hierarchy.server_messages',
      n,
      value: hMsg,
      unit: 'messages',
      baseline: dMsg,
      ratio: ratio(hMsg, dMsg),
      dm: hRun.dm,
      package0: hRun.package0,
      api: hRun.api,
      tail: hRun.tail,
      phases: hRun.phases,
      bytes: hRun.bytes,
      baselineDm: dRun.dm,
      baselinePackage0: dRun.package0,
      baselineApi: dRun.api,
      note: 'HTTP messages between the server and the devices side until the server holds every value: DM requests received (counting proxy on gw-top\'s parent URL; the server\'s own count in the direct case) + Package 0 pushes sent; operator API requests (api) not included; tail: DM requests after that (sessions closing)',
    });
    emit({
      name: 'hierarchy.get_per_device',
      n,
      value: sig((hMs * 1000) / n),
      unit: 'µs/device',
      baseline: sig((dMs * 1000) / n),
      ratio: ratio(hMs, dMs),
      note: 'hierarchy.get / n; baseline: direct / n',
    });
    emit({
      name: 'hierarchy.rss',
      n,
      value: mb(h.rss.fieldPeak),
      unit: 'MB',
      baseline: mb(d.rss.fieldPeak),
      ratio: ratio(h.rss.fieldPeak, d.rss.fieldPeak),
      fieldNow: mb(h.rss.field),
      baselineFieldNow: mb(d.rss.field),
      serverRss: mb(h.rss.server),
      baselineServerRss: mb(d.rss.server),
      note: 'peak RSS of the field process (21 gateways with their sim devices; baseline: n DM clients with in-memory trees); fieldNow: after the runs; serverRss: the bench process (server, operator, proxy) after the runs',
    });
  }
  log(`hierarchy bench done in ${round((now() - t0) / 1000, 1)} s`);
  return figures;
}

const invokedPath = process.argv[1];
if (invokedPath !== undefined && resolve(invokedPath) === SELF) {
  if (process.argv.includes('--field')) {
    await field();
  } else {
    try {
      await runHierarchyBench({ quick: process.argv.includes('--quick') });
      process.exit(0);
    } catch (err) {
      process.stderr.write(`hierarchy bench failed: ${(err as Error)?.stack ?? String(err)}\n`);
      process.exit(1);
    }
  }
}
