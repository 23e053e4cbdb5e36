/**
 * DM endpoint throughput (`proxy.http`): how many DM messages per second the server's DM endpoint
 * answers under load, against a trivial `node:http` handler under the same load in the same run.
 *
 *   node bin/run-ts.js bench/http.bench.ts            (~5 s per measurement, ~15 s in all)
 *   node bin/run-ts.js bench/http.bench.ts --quick    (~1 s per measurement; test/bench/http-bench.test.ts)
 *
 * Environment: GWMO_BENCH_HTTP_CONN (default 32) concurrent virtual clients and keep-alive
 * connections; GWMO_BENCH_HTTP_MS (default 5000, quick 1000) the measurement window of each side;
 * GWMO_BENCH_HTTP_ONLY=dm skips the baseline (to profile the server alone: its figure is then meaningless);
 * GWMO_BENCH_STORE=memory gives the server an in-memory store instead of LevelDB (to see what the
 * store costs; the note says so).
 *
 * Method. This process runs only the server under test: a real `DmServer` (src/server/server.ts) on
 * 127.0.0.1, LevelDB in a temp dir, one MD5-digest account per virtual client, the server
 * authenticating itself with MD5 too, logging at info level (GWMO_LOG_LEVEL overrides) into a sink
 * that drops the lines (formatted, not written). The load comes from a separate process
 * (bench/http-load.ts, started with `node bin/run-ts.js`), so client CPU is not charged to the
 * server's event loop: K virtual clients over an undici Pool of K keep-alive connections, each one
 * running client-initiated DM sessions back to back with its own device account: Package 1 (Alert
 * 1201, DevInfo, MD5 Cred over the nonce the previous session's Chal gave), the server's reply
 * (212 + Chal, its own MD5 Cred, and the two Gets queued for the device), the client's statuses
 * and Results (with the server's next nonce), and the server's final status-only message, which
 * ends the session. After each session the bench queues two Gets again for that device (the
 * operator's load: it runs in this process too). Every answer must be HTTP 200 with the SyncML the
 * protocol requires (header status 212/200, a valid server Cred, the expected Gets, Final); every
 * Get's outcome must come back as 200 with the device's value; every session must end `completed`.
 * Anything else fails the run (exit 1). Only answers inside the window (after a warm-up) count.
 *
 * Baseline: the same generator (`fixed` mode: the same K connections and loop, posting a fixed
 * Package 1 body) against a trivial `node:http` handler in this process that reads the body and
 * answers a fixed small SyncML body. ratio = value / baseline; the target is ≥ 0.5.
 *
 * Output: one JSON line on stdout,
 *   {"name":"proxy.http","n":<connections>,"value":<msg/s>,"unit":"req/s","baseline":<req/s>,"ratio":…,"note":…, …}
 * with extras: sessions/s, messages per session, p50/p99 latency of both sides, and this process's
 * CPU time (all threads: LevelDB's too) per answered message and per baseline request, which moves
 * less than throughput when the machine is shared. Progress on stderr.
 */
import { spawn } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { cpus, tmpdir } from 'node:os';
import { sig } from './common.ts';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { CONTENT_TYPES, encodeSyncML } from '../src/codec/syncml.ts';
import { createLogger, type LogLevel } from '../src/log.ts';
import { serverConfigSchema } from '../src/server/config.ts';
import type { QueueEntry } from '../src/server/queue.ts';
import { DmServer } from '../src/server/server.ts';
import { memoryStore } from '../src/store/store.ts';
import type { LoadAccount, LoadConfig, LoadResult } from './http-load.ts';

/** The reported figure. */
export interface HttpFigure {
  name: 'proxy.http';
  n: number;
  value: number;
  unit: 'req/s';
  baseline: number;
  ratio: number;
  note: string;
  [extra: string]: unknown;
}

/** Options of a run. */
export interface HttpBenchOptions {
  /** ~1 s windows (smoke test). */
  quick?: boolean;
  /** Concurrent virtual clients / connections (default GWMO_BENCH_HTTP_CONN or 32). */
  connections?: number;
  /** Measurement window per side in ms (default GWMO_BENCH_HTTP_MS, or 5000; quick 1000). */
  durationMs?: number;
  /** Receives the JSON line (default: stdout). */
  write?: (line: string) => void;
  /** Receives progress lines (default: stderr). */
  log?: (line: string) => void;
}

const ROOT = fileURLToPath(new URL('..', import.meta.url));
const SERVER_ID = 'gwmo-bench-dms';
const SERVER_SECRET = 'bench-server-secret-0123456789';
const GETS: Record<string, string> = { './DevDetail/SwV': '1.4.2', './Vendor/Temp': '21.5' };

/** Runs the load generator child process and returns its result. */
function runGenerator(cfg: LoadConfig): Promise<LoadResult> {
  return new Promise((resolvePromise, reject) => {
    const child = spawn(process.execPath, ['bin/run-ts.js', 'bench/http-load.ts', JSON.stringify(cfg)], { cwd: ROOT, stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    let err = '';
    child.stdout.on('data', (c: Buffer) => (out += c.toString()));
    child.stderr.on('data', (c: Buffer) => (err += c.toString()));
    child.on('error', reject);
    child.on('close', (code) => {
      if (code !== 0) return reject(new Error(`load generator (${cfg.mode}) exited with ${code}: ${err.trim()}`));
      try {
        resolvePromise(JSON.parse(out.trim().split('\n').at(-1)!) as LoadResult);
      } catch {
        reject(new Error(`load generator printed no result: ${out} ${err}`));
      }
    });
  });
}

/** The trivial baseline: reads the body, answers a fixed small SyncML body. */
async function trivialServer(): Promise<{ url: string; close(): Promise<void> }> {
  const body = Buffer.from(
    encodeSyncML(
      {
        hdr: { verDTD: '1.2', verProto: 'DM/1.2', sessionID: '1', msgID: '1', target: { locURI: 'dev' }, source: { locURI: SERVER_ID } },
        body: [{ kind: 'Status', cmdID: '1', msgRef: '1', cmdRef: '0', cmd: 'SyncHdr', targetRefs: [SERVER_ID], sourceRefs: ['dev'], data: '200', items: [] }],
        final: true,
      },
      'xml',
    ),
  );
  const headers = { 'content-type': CONTENT_TYPES.xml, 'content-length': String(body.length) };
  const server = createServer((req, res) => {
    req.on('data', () => {});
    req.on('end', () => res.writeHead(200, headers).end(body));
  });
  server.keepAliveTimeout = 5000;
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const { port } = server.address() as AddressInfo;
  return {
    url: `http://127.0.0.1:${port}/dm`,
    close: () =>
      new Promise<void>((r) => {
        server.closeAllConnections();
        server.close(() => r());
      }),
  };
}

/** Runs the benchmark and prints (and returns) the figure. */
export async function runHttpBench(opts: HttpBenchOptions = {}): Promise<HttpFigure> {
  const write = opts.write ?? ((l: string) => process.stdout.write(l + '\n'));
  const log = opts.log ?? ((l: string) => process.stderr.write(l + '\n'));
  const quick = opts.quick ?? false;
  const k = opts.connections ?? Number(process.env.GWMO_BENCH_HTTP_CONN ?? 32);
  const durationMs = opts.durationMs ?? Number(process.env.GWMO_BENCH_HTTP_MS ?? (quick ? 1000 : 5000));
  const warmupMs = quick ? 300 : 1000;
  if (!Number.isInteger(k) || k < 1) throw new Error(`bad connection count ${k}`);
  if (!(durationMs > 0)) throw new Error(`bad duration ${durationMs}`);

  const accounts: LoadAccount[] = Array.from({ length: k }, (_, i) => ({
    deviceId: `IMEI:35000000${String(i).padStart(7, '0')}`,
    username: `bench${i}`,
    secret: `bench-password-${i}-0123456789`,
    clientNonce: '',
    serverNonce: '',
  }));
  const base = {
    connections: k,
    warmupMs,
    durationMs,
    serverId: SERVER_ID,
    serverSecret: SERVER_SECRET,
    accounts,
    devInfo: { DevId: '', Man: 'gwmo', Mod: 'bench-device', DmV: '1.2', Lang: 'en-US' },
    values: GETS,
    maxMsgSize: 16 * 1024,
  };

  const cpuOf = (u: NodeJS.CpuUsage): number => u.user + u.system;
  let baselineCpuUs = 0;
  // --- baseline: trivial node:http handler (GWMO_BENCH_HTTP_ONLY=dm skips it, for profiling the server alone)
  let b: LoadResult = { messages: 1, total: 1, sessions: 0, seconds: 1, errors: 0, latency: { p50: 0, p99: 0 }, perSession: 0, emptySessions: 0 };
  if (process.env.GWMO_BENCH_HTTP_ONLY !== 'dm') {
    log(`proxy.http: baseline, trivial node:http handler, ${k} connections, ${durationMs} ms…`);
    const trivial = await trivialServer();
    try {
      const cpu0 = process.cpuUsage();
      b = await runGenerator({ ...base, mode: 'fixed', url: trivial.url });
      baselineCpuUs = cpuOf(process.cpuUsage(cpu0)) / b.total;
    } finally {
      await trivial.close();
    }
  }
  const baseline = b.messages / b.seconds;
  log(`  baseline ${Math.round(baseline)} req/s (p50 ${b.latency.p50} ms, p99 ${b.latency.p99} ms)`);

  // --- the DM server
  const dir = await mkdtemp(join(tmpdir(), 'gwmo-http-bench-'));
  const failures: string[] = [];
  let completed = 0;
  let loadDone = false;
  const level = (process.env.GWMO_LOG_LEVEL as LogLevel | undefined) ?? 'info';
  const memory = process.env.GWMO_BENCH_STORE === 'memory';
  const server = await DmServer.create({
    config: serverConfigSchema.parse({
      listen: '127.0.0.1:0',
      path: '/dm',
      serverId: SERVER_ID,
      serverSecret: SERVER_SECRET,
      serverAuthType: 'md5',
      sessionTimeout: 30,
      accounts: accounts.map((a) => ({ deviceId: a.deviceId, username: a.username, secret: a.secret, authType: 'md5' })),
    }),
    ...(memory ? { store: memoryStore() } : { dataDir: join(dir, 'server') }),
    logger: createLogger('server', { level, write: () => {} }),
    onSessionEnded: (deviceId, reason) => {
      if (loadDone) return;
      if (reason !== 'completed') failures.push(`session of ${deviceId} ended ${reason}`);
      else completed++;
      void refill(deviceId);
    },
  });
  // Keep two Gets queued per device: a session takes them, the next one finds two more.
  const pending = new Map<string, number>();
  const refill = async (deviceId: string): Promise<void> => {
    const have = pending.get(deviceId) ?? 0;
    pending.set(deviceId, Object.keys(GETS).length);
    for (const uri of Object.keys(GETS).slice(have)) await server.queue.enqueue(deviceId, { kind: 'Get', items: [{ target: { locURI: uri } }] });
  };
  server.queue.events.on('done', (e: QueueEntry) => {
    pending.set(e.deviceId, (pending.get(e.deviceId) ?? 1) - 1);
    const uri = e.command.kind === 'Get' ? e.command.items[0]?.target?.locURI : undefined;
    const data = e.outcome?.results[0]?.data;
    if (e.outcome?.status !== 200 || uri === undefined || data !== GETS[uri]) failures.push(`entry ${e.id} of ${e.deviceId}: ${JSON.stringify(e.outcome)}`);
  });
  let d: LoadResult;
  let dmCpuUs = 0;
  try {
    for (const a of accounts) await refill(a.deviceId);
    await server.start();
    log(`proxy.http: DM server (${memory ? 'memory store' : 'LevelDB'}, MD5 both ways, log level ${level}), ${k} devices, ${durationMs} ms…`);
    const cpu0 = process.cpuUsage();
    d = await runGenerator({ ...base, mode: 'dm', url: server.dmUrl });
    loadDone = true;
    dmCpuUs = cpuOf(process.cpuUsage(cpu0)) / d.total;
  } finally {
    loadDone = true;
    await server.stop();
    await rm(dir, { recursive: true, force: true });
  }
  if (failures.length) throw new Error(`the DM server failed under load: ${failures.slice(0, 5).join('; ')}${failures.length > 5 ? ` (and ${failures.length - 5} more)` : ''}`);
  if (d.messages === 0 || d.sessions === 0) throw new Error('no DM message was answered');
  if (completed < d.sessions) throw new Error(`the generator counted ${d.sessions} sessions, the server completed ${completed}`);
  const value = d.messages / d.seconds;
  log(`  DM server ${Math.round(value)} msg/s, ${Math.round(d.sessions / d.seconds)} sessions/s, ${d.perSession} messages/session (p50 ${d.latency.p50} ms, p99 ${d.latency.p99} ms); server CPU ${Math.round(dmCpuUs)} µs/message (baseline ${Math.round(baselineCpuUs)} µs/request)`);

  const figure: HttpFigure = {
    name: 'proxy.http',
    n: k,
    value: Math.round(value),
    unit: 'req/s',
    baseline: Math.round(baseline),
    ratio: sig(Math.round(value) / Math.round(baseline)),
    note:
      `valid authenticated in-session DM messages answered per second by DmServer (${memory ? 'memoryStore, NOT LevelDB' : 'LevelDB'}, MD5 digest both ways, nonces rotated per session, log level ${level} into a dropping sink), ` +
      `${k} virtual devices over ${k} keep-alive connections from a separate generator process (sessions: Package 1 + DevInfo, reply with 2 queued Gets, statuses + Results, final status), ` +
      `${durationMs} ms window after ${warmupMs} ms warm-up; baseline: same generator and connections posting a fixed Package 1 to a trivial node:http handler answering a fixed small body; ` +
      `${cpus().length} cores (${cpus()[0]?.model ?? '?'}), shared with the generator`,
    sessionsPerSecond: Math.round(d.sessions / d.seconds),
    messagesPerSession: d.perSession,
    emptySessions: d.emptySessions,
    latencyMs: { p50: d.latency.p50, p99: d.latency.p99 },
    baselineLatencyMs: { p50: b.latency.p50, p99: b.latency.p99 },
    // CPU of this (the server's) process, all threads, per answered message over the whole run:
    // steadier than throughput on a shared machine.
    cpuUsPerMessage: Math.round(dmCpuUs),
    baselineCpuUsPerRequest: Math.round(baselineCpuUs),
  };
  write(JSON.stringify(figure));
  return figure;
}

const invokedPath = process.argv[1];
if (invokedPath !== undefined && resolve(invokedPath) === fileURLToPath(import.meta.url)) {
  try {
    await runHttpBench({ quick: process.argv.includes('--quick') });
    process.exit(0);
  } catch (err) {
    process.stderr.write(`http bench failed: ${(err as Error)?.stack ?? String(err)}\n`);
    process.exit(1);
  }
}
