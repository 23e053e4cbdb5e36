/**
 * Gateways as separate OS processes (`gwmo up --processes`, `startTopology({ processes: true })`).
 *
 * The parent (the `gwmo up` process, with the embedded DM server) spawns one `gwmo up-part` process
 * per gateway and talks to it over Node's IPC channel: it sends the gateway's topology entry and
 * where its parent listens; the child starts the gateway exactly as the in-process run does
 * (`startGatewayPart`, same data directory layout, so either way resumes the other's data), reports
 * progress and readiness, answers the few calls a reload needs (associate, forget), mirrors its
 * actors to the parent's visualizer, and writes its log lines to stdout for the parent's log.
 * A child whose parent process disappears (IPC channel closed) stops by itself.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { dirname, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { RemoteModel } from '../inspect/hub.ts';
import { InspectionHub } from '../inspect/hub.ts';
import { describeError, GwError } from '../errors.ts';
import { associationConfigSchema, type AssociationConfig } from '../gateway/config.ts';
import type { Gateway } from '../gateway/gateway.ts';
import { createLogger, type LogLevel } from '../log.ts';
import type { SimDevice } from '../device/device.ts';
import { southOf, startGatewayPart, type ParentLink, type PartEnv, type TopologyTls } from './part.ts';
import type { TopologyGateway } from './schema.ts';

/** A running gateway of a topology, in this process or in its own. */
export interface GatewayHandle {
  readonly id: string;
  readonly southUrl: string;
  /** What its child gateways and proxy devices connect to. */
  readonly link: ParentLink;
  /** The OS process running it (this one's pid for an in-process gateway). */
  readonly pid: number;
  /** Number of associations in its inventory. */
  associationCount(): Promise<number>;
  hasAssociation(deviceId: string): Promise<boolean>;
  associate(config: AssociationConfig): Promise<void>;
  forget(deviceId: string): Promise<void>;
}

/** The handle of a gateway running in this process. */
export function inProcessHandle(gw: Gateway): GatewayHandle {
  return {
    id: gw.config.id,
    southUrl: gw.southUrl,
    link: { url: gw.southUrl, serverId: gw.config.serverId, serverSecret: gw.config.serverSecret, ...(gw.config.tls?.ca ? { ca: gw.config.tls.ca } : {}) },
    pid: process.pid,
    associationCount: async () => gw.associations.all().length,
    hasAssociation: async (id) => !!gw.associations.get(id),
    associate: async (cfg) => {
      await gw.associate(cfg);
    },
    forget: async (id) => {
      await gw.forget(id);
    },
  };
}

/** Messages from the parent to a gateway process. */
type ToChild =
  | { t: 'start'; gateway: TopologyGateway; secret: string; parent: ParentLink; top: ParentLink; tls?: TopologyTls; dataDir: string; logLevel: LogLevel; logJson: boolean; inspect: boolean }
  | { t: 'call'; id: number; op: 'associationCount' | 'hasAssociation' | 'associate' | 'forget'; arg?: unknown }
  | { t: 'stop' };

/** Messages from a gateway process to its parent. */
type FromChild =
  | { t: 'step'; what: string }
  | { t: 'warn'; message: string }
  | { t: 'ready'; southUrl: string }
  | { t: 'failed'; message: string; code?: string }
  | { t: 'reply'; id: number; ok: boolean; value?: unknown; error?: string }
  | { t: 'inspect'; model: RemoteModel };

/** How the parent follows a gateway process. */
export interface SpawnOptions {
  gateway: TopologyGateway;
  secret: string;
  parent: ParentLink;
  top: ParentLink;
  tls?: TopologyTls;
  dataDir: string;
  logLevel?: LogLevel;
  logJson?: boolean;
  /** Each log line of the process (and anything else it prints). */
  onLine: (line: string) => void;
  onStep: (what: string) => void;
  onWarn: (message: string) => void;
  /** Mirrors of its actors for a visualizer (omit: the process runs no inspection at all). */
  onInspect?: (model: RemoteModel) => void;
  /** The process ended without being asked to (crash, kill): code or signal. */
  onCrash: (why: string) => void;
  /** How long the start may take (default 120 s: knxd, herdsman and first sessions included). */
  startTimeoutMs?: number;
}

/** A gateway process seen from its parent. */
export interface GatewayProcess extends GatewayHandle {
  readonly child: ChildProcess;
  /** Asks it to stop, waits (10 s at most, then kills it). */
  stop(): Promise<void>;
}

const BIN = resolve(dirname(fileURLToPath(import.meta.url)), '../../bin/gwmo.js');

/** Spawns `gwmo up-part` for one gateway and resolves once the gateway runs. */
export function spawnGatewayProcess(opts: SpawnOptions): Promise<GatewayProcess> {
  const child = spawn(process.execPath, [BIN, 'up-part'], { stdio: ['ignore', 'pipe', 'pipe', 'ipc'] });
  const id = opts.gateway.id;
  let stopping = false;
  let nextCall = 1;
  const pending = new Map<number, { resolve: (v: unknown) => void; reject: (e: Error) => void }>();
  for (const stream of [child.stdout!, child.stderr!]) {
    let buf = '';
    stream.setEncoding('utf8');
    stream.on('data', (d: string) => {
      buf += d;
      let nl: number;
      while ((nl = buf.indexOf('\n')) >= 0) {
        const line = buf.slice(0, nl);
        buf = buf.slice(nl + 1);
        if (line.trim()) opts.onLine(line);
      }
    });
  }
  const call = (op: Extract<ToChild, { t: 'call' }>['op'], arg?: unknown): Promise<unknown> =>
    new Promise((res, rej) => {
      if (!child.connected) return rej(new GwError('GATEWAY_PROCESS', `gateway process ${id} is not running`));
      const n = nextCall++;
      pending.set(n, { resolve: res, reject: rej });
      child.send({ t: 'call', id: n, op, ...(arg !== undefined ? { arg } : {}) } satisfies ToChild);
    });
  const exited = new Promise<void>((res) => child.once('exit', () => res()));

  return new Promise<GatewayProcess>((resolveStart, rejectStart) => {
    let started = false;
    const timer = setTimeout(() => {
      rejectStart(new GwError('GATEWAY_PROCESS', `gateway process ${id} did not start within ${opts.startTimeoutMs ?? 120_000} ms`));
      child.kill('SIGKILL');
    }, opts.startTimeoutMs ?? 120_000);
    child.on('message', (raw: unknown) => {
      const m = raw as FromChild;
      switch (m.t) {
        case 'step':
          opts.onStep(m.what);
          break;
        case 'warn':
          opts.onWarn(m.message);
          break;
        case 'inspect':
          opts.onInspect?.(m.model);
          break;
        case 'reply': {
          const p = pending.get(m.id);
          pending.delete(m.id);
          if (m.ok) p?.resolve(m.value);
          else p?.reject(new GwError('GATEWAY_PROCESS', `gateway process ${id}: ${m.error}`));
          break;
        }
        case 'failed':
          clearTimeout(timer);
          rejectStart(new GwError(m.code ?? 'GATEWAY_PROCESS', `gateway ${id} did not start: ${m.message}`));
          break;
        case 'ready': {
          clearTimeout(timer);
          started = true;
          const south = southOf(opts.secret, id);
          resolveStart({
            id,
            child,
            southUrl: m.southUrl,
            link: { url: m.southUrl, ...south, ...(opts.tls ? { ca: opts.tls.ca } : {}) },
            pid: child.pid!,
            associationCount: async () => (await call('associationCount')) as number,
            hasAssociation: async (dev) => (await call('hasAssociation', dev)) as boolean,
            associate: async (cfg) => {
              await call('associate', cfg);
            },
            forget: async (dev) => {
              await call('forget', dev);
            },
            stop: async () => {
              stopping = true;
              if (child.exitCode === null && child.signalCode === null) {
                if (child.connected) child.send({ t: 'stop' } satisfies ToChild);
                else child.kill('SIGTERM');
                const kill = setTimeout(() => child.kill('SIGKILL'), 10_000);
                await exited;
                clearTimeout(kill);
              }
            },
          });
          break;
        }
      }
    });
    child.once('exit', (code, signal) => {
      clearTimeout(timer);
      for (const p of pending.values()) p.reject(new GwError('GATEWAY_PROCESS', `gateway process ${id} exited`));
      pending.clear();
      const why = signal ? `signal ${signal}` : `exit code ${code}`;
      if (!started) rejectStart(new GwError('GATEWAY_PROCESS', `gateway process ${id} ended while starting (${why})`));
      else if (!stopping) opts.onCrash(why);
    });
    child.send({
      t: 'start',
      gateway: opts.gateway,
      secret: opts.secret,
      parent: opts.parent,
      top: opts.top,
      ...(opts.tls ? { tls: opts.tls } : {}),
      dataDir: opts.dataDir,
      logLevel: opts.logLevel ?? 'info',
      logJson: !!opts.logJson,
      inspect: !!opts.onInspect,
    } satisfies ToChild);
  });
}

/** The child side: `gwmo up-part`, started by `spawnGatewayProcess` (not meant to be run by hand). */
export async function runGatewayProcess(): Promise<void> {
  if (!process.send) throw new GwError('USAGE', '`gwmo up-part` runs a gateway for `gwmo up --processes` and needs its IPC channel; use `gwmo gateway` to run one by hand');
  const send = (m: FromChild): void => {
    if (process.connected) process.send!(m);
  };
  const start = await new Promise<Extract<ToChild, { t: 'start' }>>((res) => process.once('message', (m) => res(m as Extract<ToChild, { t: 'start' }>)));
  const log = createLogger('gwmo', { level: start.logLevel, json: start.logJson, write: (line) => process.stdout.write(`${line}\n`) });
  const owned: (() => Promise<void>)[] = [];
  const devices = new Map<string, SimDevice>();
  const hub = start.inspect ? new InspectionHub() : undefined;
  let stopped: Promise<void> | undefined;
  const stop = (): Promise<void> =>
    (stopped ??= (async () => {
      for (const s of owned.splice(0).reverse()) await s().catch((err: unknown) => log.warn(`stop: ${describeError(err)}`));
    })());
  const exitAfterStop = (): void => {
    // A clean stop that leaves a handle open must not keep the process: exit regardless after 5 s.
    setTimeout(() => process.exit(0), 5000).unref();
    void stop().then(() => process.exit(0));
  };
  // The parent went away (killed): nobody will ask this gateway to stop, so stop now.
  process.once('disconnect', exitAfterStop);
  process.once('SIGTERM', exitAfterStop);
  // Ctrl-C in the terminal reaches the whole process group; the parent decides the order of stopping.
  process.on('SIGINT', () => undefined);

  let gw: Gateway;
  try {
    const env: PartEnv = {
      secret: start.secret,
      dataDir: start.dataDir,
      log,
      top: start.top,
      ...(start.tls ? { tls: start.tls } : {}),
      ...(hub ? { inspect: hub.observerFor({ gateway: start.gateway.id }) } : {}),
      step: (what) => send({ t: 'step', what }),
      warn: (message) => {
        log.warn(message);
        send({ t: 'warn', message });
      },
      own: (s) => owned.push(s),
      devices,
    };
    gw = await startGatewayPart(env, start.gateway, start.parent);
  } catch (err) {
    const e = err as { code?: unknown };
    send({ t: 'failed', message: describeError(err), ...(typeof e.code === 'string' ? { code: e.code } : {}) });
    await stop();
    process.exit(1);
  }
  if (hub) {
    // Deltas of this process's actors, batched; the parent's hub mirrors them (see InspectionHub.ingest).
    let version = -1;
    let seq = -1;
    const timer = setInterval(() => {
      if (hub.currentVersion === version && hub.lastSeq === seq) return;
      const d = version < 0 ? undefined : hub.delta(version, seq);
      const model: RemoteModel = d ? { type: 'delta', ...d } : { type: 'snapshot', ...hub.snapshot() };
      version = model.version;
      seq = hub.lastSeq;
      send({ t: 'inspect', model });
    }, 200);
    timer.unref();
    owned.unshift(async () => clearInterval(timer));
  }
  process.on('message', (raw) => {
    const m = raw as ToChild;
    if (m.t === 'stop') return exitAfterStop();
    if (m.t !== 'call') return;
    void (async () => {
      try {
        let value: unknown;
        if (m.op === 'associationCount') value = gw.associations.all().length;
        else if (m.op === 'hasAssociation') value = !!gw.associations.get(String(m.arg));
        else if (m.op === 'associate') await gw.associate(associationConfigSchema.parse(m.arg));
        else if (m.op === 'forget') await gw.forget(String(m.arg));
        send({ t: 'reply', id: m.id, ok: true, ...(value !== undefined ? { value } : {}) });
      } catch (err) {
        send({ t: 'reply', id: m.id, ok: false, error: describeError(err) });
      }
    })();
  });
  send({ t: 'ready', southUrl: gw.southUrl });
}
