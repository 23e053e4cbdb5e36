/**
 * The DM server: an HTTP endpoint for SyncML DM (XML and WBXML, both MIME spellings), a root
 * actor supervising one session actor per DM session, durable per-device command queues and
 * results, Package 0 delivery to devices, and the operator REST API under /api.
 */
import type { IncomingMessage, ServerResponse } from 'node:http';
import { randomInt } from 'node:crypto';
import { createActor, type Actor, type AnyActorRef, type InspectionEvent, type SimulatedClock } from 'xstate';
import { HMAC_HEADER, nonceCandidates } from '../codec/auth.ts';
import type { Encoding } from '../codec/model.ts';
import { encodePackage0, sessionIdHex } from '../codec/package0.ts';
import { CONTENT_TYPES, decodeHeaderOnly, decodeSyncML, encodeSyncML, encodingOfContentType } from '../codec/syncml.ts';
import { DEFAULT_LIMITS } from '../codec/element.ts';
import { GwError, describeError, statusOf } from '../errors.ts';
import { createLogger, type Logger } from '../log.ts';
import { hdrStatus, numberCommands } from '../session/common.ts';
import { DEFERRED_MARK, ServerSession, type AccountNonces, type ServerAccount, type ServerSessionDeps } from '../session/server-session.ts';
import { openStore, type Section, type Store } from '../store/store.ts';
import { isLoopback, listen, parseListen, readBody, type Listener } from '../transport/http.ts';
import { dmServerMachine, type SessionMessageEvent } from '../../machines/server-session.ts';
import type { AccountConfig, ServerConfig } from './config.ts';
import { CommandQueue, type DeviceAlert, type QueueEntry, type RouteChoice, type RouteKind } from './queue.ts';
import type { Outgoing } from '../session/common.ts';
import { mapItems, prefixUri, stripPrefix } from '../session/route.ts';
import { handleApi } from './api.ts';
import { AuthGuard, type AuthGuardOptions } from './auth-guard.ts';
import { DmMetrics } from '../metrics.ts';
import { coalesceWrites, type CoalescingStore } from './write-coalescer.ts';
import { cachedSection } from './cached-section.ts';
import { peerIdentity, tlsFetch } from '../transport/tls.ts';

/** What the server remembers of a device between sessions. */
export interface DeviceRecord {
  deviceId: string;
  devInfo: Record<string, string>;
  lastSessionAt?: string;
  lastSessionId?: string;
  lastEndReason?: string;
  sessions: number;
  notifyUrl?: string;
  /** A publicly routable notification address the device reported (DevInfo/Ext/PublicNotifyURI). */
  publicNotifyUrl?: string;
}

/**
 * Where a device behind a gateway is (learnt from the gateways' DeviceAttached/DeviceChanged
 * alerts, notes §1.3): the gateway the server talks to, and the device's mount point in that
 * gateway's tree, through any number of child gateways (recursive mount, notes §1.8 (a)).
 */
export interface DeviceRoute {
  deviceId: string;
  /** The gateway account whose sessions carry the device's commands. */
  via: string;
  /** Mount point of the device in `via`'s tree, e.g. `./GwMO/Devices/d0001`. */
  prefix: string;
  /** The device's inventory record in `via`'s tree. */
  recordUri: string;
  /** Management mode, once read from the record. */
  mode?: 'transparent' | 'proxy' | 'adaptation';
  /** Whether the device is attached (DeviceDetached marks it false). */
  attached: boolean;
  /** A publicly routable notification address, read from the gateway's inventory record (`PublicAddress`). */
  publicAddress?: string;
  updatedAt: string;
}

export type { RouteChoice, RouteKind };

/** Generic Alert types of the device inventory (notes §1.3; PROPOSED names, compared case-insensitively). */
export const INVENTORY_ALERTS = {
  attached: 'urn:oma:at:gwmo:1.1:DeviceAttached',
  detached: 'urn:oma:at:gwmo:1.1:DeviceDetached',
  changed: 'urn:oma:at:gwmo:1.1:DeviceChanged',
} as const;

/** Generic Alert type of a proxied command's late result (PROPOSED; the same type marks the gateway's 202). */
export const DEFERRED_RESULT = DEFERRED_MARK;

const RECORD_RE = /^(.*?)\/?GwMO\/DeviceInventory\/Records\/([^/]+)$/;
const MODE_NAMES = ['transparent', 'proxy', 'adaptation'] as const;

/** Options for starting a server in-process. */
export interface DmServerOptions {
  config: ServerConfig;
  /** Data directory; a store may be passed instead. */
  dataDir?: string;
  store?: Store;
  logger?: Logger;
  /** Extra HTTP routes on the same listener (a gateway's relay); returns true when it handled the request. */
  extraRoute?: (req: IncomingMessage, res: ServerResponse, url: URL) => Promise<boolean>;
  /** Learn routes from inventory alerts (default true; a gateway's southbound server does not route). */
  learnRoutes?: boolean;
  /** Called when a session ends, with the device and why (a gateway tracks its devices with it). */
  onSessionEnded?: (deviceId: string, reason: string) => void;
  /** Clock for session timers (a SimulatedClock in tests). */
  clock?: SimulatedClock | { setTimeout: SimulatedClock['setTimeout']; clearTimeout: SimulatedClock['clearTimeout'] };
  /** xstate inspection observer for the server's actors (the live visualizer, src/inspect). */
  inspect?: (event: InspectionEvent) => void;
  /** Labels on every metric of this server (a gateway's southbound server: `{ gateway: id }`). */
  metricsLabels?: Record<string, string>;
  /** Brute-force guard tuning (tests shorten the windows). */
  authGuard?: AuthGuardOptions;
}

/** Package 0 MIME type (notes §3.10). */
export const NOTIFICATION_CONTENT_TYPE = 'application/vnd.syncml.notification';

/** A running DM server. */
export class DmServer {
  readonly config: ServerConfig;
  readonly log: Logger;
  readonly queue: CommandQueue;
  private readonly store: CoalescingStore;
  private readonly ownsStore: boolean;
  private readonly accounts = new Map<string, AccountConfig>();
  private readonly nonces: Section<AccountNonces>;
  private readonly devices: Section<DeviceRecord>;
  private readonly routes: Section<DeviceRoute>;
  private readonly root: Actor<typeof dmServerMachine>;
  private readonly sessions = new Map<string, ServerSession>();
  private listener: Listener | undefined;
  /** Session ids announced by Package 0 and not yet used: hex id -> deviceId. */
  private readonly announced = new Map<string, string>();
  private readonly sessionEndedHook: ((deviceId: string, reason: string) => void) | undefined;
  private readonly learnRoutes: boolean;
  private readonly extraRoute: DmServerOptions['extraRoute'];
  /** Counters at `/metrics` (Prometheus text). */
  readonly metrics: DmMetrics;
  private readonly guard: AuthGuard;
  private readonly addressGuard: AuthGuard;

  private constructor(opts: DmServerOptions, store: CoalescingStore, queue: CommandQueue, ownsStore: boolean) {
    this.config = opts.config;
    this.metrics = new DmMetrics({ processMetrics: true, openSessions: () => this.sessions.size, ...(opts.metricsLabels ? { labels: opts.metricsLabels } : {}) });
    this.guard = new AuthGuard(opts.authGuard);
    // Addresses are shared (NAT, gateways): more failures are answered at once before slots start.
    this.addressGuard = new AuthGuard({ freeAttempts: 10, ...opts.authGuard, ...(opts.authGuard?.freeAttempts !== undefined ? { freeAttempts: opts.authGuard.freeAttempts * 3 } : {}) });
    this.sessionEndedHook = opts.onSessionEnded;
    this.extraRoute = opts.extraRoute;
    this.learnRoutes = opts.learnRoutes ?? true;
    this.log = opts.logger ?? createLogger('server');
    this.store = store;
    this.ownsStore = ownsStore;
    this.queue = queue;
    // Read at every session, written only here: kept in memory after the first read.
    this.nonces = cachedSection(store.section<AccountNonces>('nonces'));
    this.devices = cachedSection(store.section<DeviceRecord>('devices'));
    this.routes = store.section<DeviceRoute>('routes');
    for (const a of opts.config.accounts) this.accounts.set(a.deviceId, a);
    this.queue.events.on('done', (e: QueueEntry) => {
      if (e.tag?.startsWith('route-mode:')) void this.onModeRead(e.tag.slice('route-mode:'.length), e);
      else if (e.tag?.startsWith('route-addr:')) void this.onAddressRead(e.tag.slice('route-addr:'.length), e);
      else void this.onInventoryRead(e);
    });
    this.root = createActor(dmServerMachine, {
      input: { onEnded: (key, reason) => void this.onSessionEnded(key, reason) },
      ...(opts.clock ? { clock: opts.clock } : {}),
      ...(opts.inspect ? { inspect: opts.inspect } : {}),
    });
    this.root.start();
  }

  /** Opens the store and creates the server (not yet listening). */
  static async create(opts: DmServerOptions): Promise<DmServer> {
    const dir = opts.dataDir ?? opts.config.data;
    if (!opts.store && !dir) throw new GwError('CONFIG_DATA', 'the server needs a data directory (--data or `data:` in the config)');
    // Group commit (src/server/write-coalescer.ts): a session's records go to LevelDB in a few batches, not one by one.
    const store = coalesceWrites(opts.store ?? (await openStore(dir!)));
    const queue = await CommandQueue.open(store);
    return new DmServer(opts, store, queue, !opts.store);
  }

  /**
   * syncml:auth-basic carries the password itself (B64 of user:password): over plain HTTP on an
   * address other than loopback anyone on the path reads it (SECCONF-001). Refused unless the
   * config says `allowBasicOverHttp: true`.
   */
  private refuseBasicInTheClear(): void {
    if (this.config.tls) return;
    const { host } = parseListen(this.config.listen);
    if (isLoopback(host)) return;
    const basic = [...this.accounts.values()].filter((a) => a.authType === 'syncml:auth-basic').map((a) => a.deviceId);
    const serverBasic = this.config.serverAuthType === 'syncml:auth-basic';
    if (!basic.length && !serverBasic) return;
    const what = serverBasic ? 'the server authenticates itself with syncml:auth-basic' : `accounts ${basic.join(', ')} use syncml:auth-basic`;
    if (this.config.allowBasicOverHttp) {
      this.log.warn(`${what} over plain HTTP on ${host}: passwords cross the network readable (allowBasicOverHttp is set)`);
      return;
    }
    throw new GwError('CONFIG_BASIC_CLEARTEXT', `refusing to start: ${what}, and the listener ${host} is plain HTTP on a non-loopback address, where the passwords would cross the network readable; configure tls, use syncml:auth-md5 or HMAC, or set allowBasicOverHttp: true`);
  }

  /** Starts listening; returns the base URL. */
  async start(): Promise<string> {
    this.refuseBasicInTheClear();
    const l = this.config.limits;
    this.listener = await listen(this.config.listen, (req, res) => this.routeHttp(req, res), { tls: this.config.tls, headersTimeoutMs: l.headersTimeout * 1000, requestTimeoutMs: l.requestTimeout * 1000 });
    this.log.info(`DM server ${this.config.serverId} listening`, { url: this.url, accounts: this.accounts.size });
    return this.listener.url;
  }

  /** Base URL (http://host:port) once started. */
  get url(): string {
    if (!this.listener) throw new GwError('SERVER_NOT_STARTED', 'the server is not listening');
    return this.listener.url;
  }

  /** The DM endpoint URL. */
  get dmUrl(): string {
    return this.url + this.config.path;
  }

  /** Stops listening, ends sessions and closes the store. */
  /**
   * Stops the server. With `drain` (what `gwmo server` does on SIGTERM and Ctrl-C) sessions already
   * open may finish first, up to `limits.drainTimeout` (their next messages are still served; new
   * sessions get 503). Either way the listener lets messages in progress complete before it closes,
   * so nothing a device was told is done is lost.
   */
  async stop(opts: { drain?: boolean } = {}): Promise<void> {
    if (this.stopped) return;
    if (opts.drain) await this.drainSessions();
    this.stopped = true;
    const drainMs = opts.drain ? this.config.limits.drainTimeout * 1000 : 0;
    this.queue.close();
    for (const t of this.fallbackTimers) clearTimeout(t);
    this.fallbackTimers.clear();
    await this.listener?.close({ drainMs: opts.drain ? Math.max(1000, Math.min(drainMs, 5000)) : 1000 });
    this.listener = undefined;
    this.root.send({ type: 'shutdown' });
    this.root.stop();
    if (this.ownsStore) await this.store.close();
    else await this.store.flush();
  }

  private stopped = false;

  /** Refuses new sessions (503) and waits, up to `limits.drainTimeout`, for the open ones to end. */
  async drainSessions(): Promise<void> {
    this.draining = true;
    const drainMs = this.config.limits.drainTimeout * 1000;
    if (!this.listener || this.sessions.size === 0 || drainMs === 0) return;
    this.log.info(`stopping: ${this.sessions.size} open session(s) may finish (up to ${this.config.limits.drainTimeout} s); new sessions are refused`);
    const end = Date.now() + drainMs;
    while (this.sessions.size > 0 && Date.now() < end) await new Promise((r) => setTimeout(r, 50));
    if (this.sessions.size > 0) this.log.warn(`stopping with ${this.sessions.size} session(s) still open; their unfinished commands stay queued`);
  }
  /** Stopping: open sessions are served, new ones refused. */
  private draining = false;
  /** The remote address each open session started from (later messages must come from it). */
  private readonly sessionAddress = new Map<string, string>();

  /** Number of active session actors. */
  get activeSessions(): number {
    return this.root.getSnapshot().context.active;
  }

  /** Account configuration of a device. */
  account(deviceId: string): AccountConfig | undefined {
    return this.accounts.get(deviceId);
  }

  /** All account device ids. */
  deviceIds(): string[] {
    return [...this.accounts.keys()];
  }

  /** Adds (or replaces) a client account at run time, e.g. a device a gateway provisions. */
  addAccount(a: AccountConfig): void {
    this.accounts.set(a.deviceId, a);
  }

  /** Removes a client account; its queued commands stay in the store. */
  removeAccount(deviceId: string): boolean {
    return this.accounts.delete(deviceId);
  }

  /** The route to a device behind a gateway, if the server knows one. */
  async route(deviceId: string): Promise<DeviceRoute | undefined> {
    return this.routes.get(deviceId);
  }

  /** Every known route. */
  async allRoutes(): Promise<DeviceRoute[]> {
    return (await this.routes.entries()).map(([, v]) => v);
  }

  /** True when the server can address the device: an account of its own, or a route through a gateway. */
  async knows(deviceId: string): Promise<boolean> {
    return this.accounts.has(deviceId) || (await this.routes.get(deviceId)) !== undefined;
  }

  /**
   * The routes to a device, best first (issue "server-initiated session bypassing the gateway"):
   * a direct Package 0 when the gateway's inventory shows a routable address and the device has an
   * account of its own here (the server is bootstrapped to it); transparent mode through the gateway
   * for a DM client without a route; proxy mode otherwise; adaptation devices always through their
   * gateway. The account's `route` policy and `routing.direct` narrow the list; a direct push that
   * failed recently is skipped for `routing.directRetryAfter` seconds.
   */
  routesFor(deviceId: string, r: DeviceRoute | undefined): Omit<RouteChoice, 'at'>[] {
    const acct = this.accounts.get(deviceId);
    if (!r) return acct ? [{ kind: 'own', reason: 'not behind a gateway: its own notification address' }] : [];
    if (r.mode === 'adaptation') return [{ kind: 'adaptation', via: r.via, reason: 'an adaptation device is always reached through its gateway' }];
    const policy = acct?.route ?? 'auto';
    const out: Omit<RouteChoice, 'at'>[] = [];
    const failedAt = this.directFailed.get(deviceId);
    const recentFailure = failedAt !== undefined && Date.now() - failedAt < this.config.routing.directRetryAfter * 1000;
    if (acct && r.publicAddress && this.config.routing.direct && policy !== 'gateway' && (!recentFailure || policy === 'direct')) {
      out.push({ kind: 'direct', via: r.via, address: r.publicAddress, reason: `routable address in ${r.via}'s inventory; the gateway is bypassed` });
    }
    if (policy === 'direct') return out;
    if (acct && r.mode === 'transparent') out.push({ kind: 'transparent', via: r.via, reason: `a DM client with no route from the server: Package 0 through ${r.via} (EDTrigger)` });
    else if (acct && r.mode === undefined) out.push({ kind: 'own', reason: `mode at ${r.via} not known yet: its own notification address` });
    else out.push({ kind: 'proxy', via: r.via, reason: `proxy mode: ${r.via} runs the device's session` });
    return out;
  }

  /** The route a device's commands take now, and why (`gwmo results`, the API). */
  async routeChoice(deviceId: string): Promise<RouteChoice | undefined> {
    const last = this.lastChoice.get(deviceId);
    if (last) return last;
    const first = this.routesFor(deviceId, await this.routes.get(deviceId))[0];
    return first ? { ...first, at: new Date().toISOString() } : undefined;
  }

  /** Per-device chains that serialise read-modify-write updates of a route (Mode and address reads race otherwise). */
  private readonly routeLocks = new Map<string, Promise<unknown>>();

  private withRouteLock<T>(deviceId: string, f: () => Promise<T>): Promise<T> {
    const prev = this.routeLocks.get(deviceId) ?? Promise.resolve();
    const run = prev.then(f, f);
    const tail = run.catch(() => undefined);
    this.routeLocks.set(deviceId, tail);
    void tail.then(() => {
      if (this.routeLocks.get(deviceId) === tail) this.routeLocks.delete(deviceId);
    });
    return run;
  }

  /** Last route used per device (in memory: the routes themselves are durable). */
  private readonly lastChoice = new Map<string, RouteChoice>();
  /** When a direct push to a device last went unanswered. */
  private readonly directFailed = new Map<string, number>();
  /** Waiters for a device's next session, by device. */
  private readonly sessionWaiters = new Map<string, Set<() => void>>();
  /** Fallback timers of direct pushes, cleared at stop. */
  private readonly fallbackTimers = new Set<NodeJS.Timeout>();

  /**
   * Queues a command for a device. A device with an account of its own gets it in its own sessions
   * (also a transparent-mode device, or one reached with a direct push); a device managed by its
   * gateway (proxy, adaptation) gets it through that gateway's session, addressed at its mount point.
   */
  async enqueueFor(deviceId: string, command: Outgoing): Promise<QueueEntry> {
    const r = await this.routes.get(deviceId);
    const first = this.routesFor(deviceId, r)[0];
    const delivery = first ? { ...first, at: new Date().toISOString() } : undefined;
    if (r && first && (first.kind === 'proxy' || first.kind === 'adaptation')) return this.queue.enqueue(deviceId, command, { via: r.via, prefix: r.prefix }, undefined, delivery);
    if (this.accounts.has(deviceId)) return this.queue.enqueue(deviceId, command, undefined, undefined, delivery);
    if (r) throw new GwError('SERVER_NO_ACCOUNT', `${deviceId} is in transparent mode behind ${r.via} but has no account on this server`, { status: 404 });
    throw new GwError('SERVER_UNKNOWN_DEVICE', `unknown device ${deviceId}`, { status: 404 });
  }

  /**
   * Whether a device's commands travel in its gateway's sessions (proxy or adaptation mode) rather
   * than in its own (transparent mode, a direct push, or a device with no gateway).
   */
  private throughGateway(deviceId: string, r: DeviceRoute): boolean {
    const first = this.routesFor(deviceId, r)[0];
    return first?.kind === 'proxy' || first?.kind === 'adaptation';
  }

  /** Learns routes from a gateway's inventory alerts (DeviceAttached/Detached/Changed); completes deferred results. */
  private async onAlert(gatewayId: string, alert: DeviceAlert): Promise<void> {
    if (alert.items[0]?.meta?.type?.toLowerCase() === DEFERRED_RESULT.toLowerCase()) {
      await this.onDeferredResult(gatewayId, alert);
      return;
    }
    await this.fileDeviceAlert(gatewayId, alert);
    for (const it of alert.items) {
      const type = (it.meta?.type ?? '').toLowerCase();
      const kind = type === INVENTORY_ALERTS.attached.toLowerCase() ? 'attached'
        : type === INVENTORY_ALERTS.detached.toLowerCase() ? 'detached'
        : type === INVENTORY_ALERTS.changed.toLowerCase() ? 'changed' : undefined;
      if (!kind) continue;
      const recordUri = it.source?.locURI ?? '';
      const m = RECORD_RE.exec(recordUri);
      const deviceId = typeof it.data === 'string' ? it.data.trim() : '';
      if (!m || !deviceId) {
        this.log.warn(`inventory alert from ${gatewayId} without a record URI or DeviceID ignored`, { source: recordUri });
        continue;
      }
      const base = m[1] === '' || m[1] === '.' ? '.' : m[1]!;
      const prefix = `${base}/GwMO/Devices/${m[2]}`;
      const learnt = await this.withRouteLock(deviceId, async () => {
        const prev = await this.routes.get(deviceId);
        if (kind === 'detached') {
          // Only the gateway the device is at can detach it: a late Detached from a gateway it left
          // (a nomadic device) must not pull the route, or its commands, back there.
          if (prev && prev.via === gatewayId && prev.prefix === prefix) {
            await this.routes.put(deviceId, { ...prev, attached: false, updatedAt: new Date().toISOString() });
            this.log.info(`${deviceId} detached from ${gatewayId}`);
          }
          return undefined;
        }
        const same = prev?.via === gatewayId && prev.prefix === prefix;
        const route: DeviceRoute = {
          deviceId,
          via: gatewayId,
          prefix,
          recordUri: recordUri.startsWith('./') || recordUri === '.' ? recordUri : `./${recordUri}`,
          attached: true,
          updatedAt: new Date().toISOString(),
          ...(same && prev.mode ? { mode: prev.mode } : {}),
          ...(same && prev.publicAddress ? { publicAddress: prev.publicAddress } : {}),
        };
        await this.routes.put(deviceId, route);
        return { prev, route };
      });
      if (!learnt) continue;
      const { prev, route } = learnt;
      if (prev && (prev.via !== gatewayId || prev.prefix !== prefix)) {
        // A nomadic device moved: its queued commands follow it (HLF-002).
        this.log.info(`${deviceId} moved from ${prev.via} (${prev.prefix}) to ${gatewayId} (${prefix})`);
        for (const e of await this.queue.pending(deviceId)) if (e.route) await this.queue.reroute(e, { via: gatewayId, prefix });
      } else if (!prev) {
        this.log.info(`${deviceId} is behind ${gatewayId} at ${prefix}`);
      }
      // Read the record's Mode, and the device's routable address if it has one, through plain DM
      // in the same session (GwMO use case "server initiated session bypassing the DM gateway").
      await this.queue.enqueue(gatewayId, { kind: 'Get', items: [{ target: { locURI: `${route.recordUri}/Mode` } }] }, undefined, `route-mode:${deviceId}`);
      if (this.accounts.has(deviceId)) {
        await this.queue.enqueue(gatewayId, { kind: 'Get', items: [{ target: { locURI: `${route.recordUri}/PublicAddress` } }] }, undefined, `route-addr:${deviceId}`);
      }
    }
  }

  /**
   * A device's own Generic Alert relayed by its gateway (Source under the device's mount) is filed
   * under that device too, with its own URIs, so the operator finds it with the device.
   */
  private async fileDeviceAlert(gatewayId: string, alert: DeviceAlert): Promise<void> {
    const src = alert.items[0]?.source?.locURI;
    if (!src || RECORD_RE.test(src)) return;
    const route = (await this.allRoutes()).find((r) => r.via === gatewayId && (src === r.prefix || src.startsWith(r.prefix + '/')));
    if (!route) return;
    await this.queue.addAlert({ ...alert, deviceId: route.deviceId, items: mapItems(alert.items, (u) => stripPrefix(route.prefix, u)) });
  }

  /**
   * A gateway's DeferredResult (PROPOSED, docs/gateway.md): the first item's Source is the command's
   * target under the device's mount and its Data the final status; further items are results.
   */
  private async onDeferredResult(gatewayId: string, alert: DeviceAlert): Promise<void> {
    const [head, ...rest] = alert.items;
    const source = head?.source?.locURI;
    if (!source) return;
    for (const e of await this.queue.accepted(gatewayId)) {
      const route = e.route!;
      // A container (Atomic/Sequence) is reported at the mount point itself ('.').
      const target = 'items' in e.command ? e.command.items[0]?.target?.locURI : '.';
      if (target === undefined || prefixUri(route.prefix, target) !== source) continue;
      const status = Number(typeof head.data === 'string' ? head.data : '500') || 500;
      // 202 again means a child gateway deferred too: its own DeferredResult will follow.
      if (status === 202) return;
      const results = mapItems(rest, (u) => stripPrefix(route.prefix, u)).map((it) => {
        const meta = { ...(it.meta ?? {}) };
        delete meta.type;
        return Object.keys(meta).length ? { ...it, meta } : (({ meta: _m, ...x }) => x)(it);
      });
      await this.queue.complete(e, { status, statuses: [{ path: [], cmd: e.command.kind, ...(target ? { target } : {}), status }], results });
      this.log.info(`deferred result for ${e.deviceId} from ${gatewayId}: ${status}`, { entry: e.id });
      return;
    }
    this.log.warn(`deferred result from ${gatewayId} for ${source} matches no accepted command`);
  }

  /**
   * Routes also come from reading a gateway's inventory (e.g. `Get ./GwMO/DeviceInventory?list=StructData`),
   * which is how the server finds devices while the gateway's new-device alerts are switched off.
   */
  private async onInventoryRead(e: QueueEntry): Promise<void> {
    if (!this.learnRoutes || !this.accounts.get(e.deviceId)?.gateway || e.route || e.outcome?.status !== 200 || e.command.kind !== 'Get') return;
    const records = new Map<string, { deviceId?: string; mode?: number; publicAddress?: string }>();
    for (const it of e.outcome.results) {
      const m = /^(.*\/Records\/[^/]+)\/(DeviceID|Mode|PublicAddress)$/.exec(it.source?.locURI ?? '');
      if (!m || !RECORD_RE.test(m[1]!)) continue;
      const r = records.get(m[1]!) ?? {};
      const v = typeof it.data === 'string' ? it.data.trim() : '';
      if (m[2] === 'DeviceID') r.deviceId = v;
      else if (m[2] === 'PublicAddress') r.publicAddress = v;
      else r.mode = Number(v);
      records.set(m[1]!, r);
    }
    for (const [recordUri, r] of records) {
      if (!r.deviceId) continue;
      const prev = await this.routes.get(r.deviceId);
      if (prev?.via === e.deviceId && prev.recordUri === recordUri && prev.mode !== undefined) continue;
      await this.onAlert(e.deviceId, {
        deviceId: e.deviceId,
        at: new Date().toISOString(),
        sessionId: e.sessionId ?? '',
        code: '1226',
        items: [{ source: { locURI: recordUri }, meta: { type: INVENTORY_ALERTS.attached, format: 'chr' }, data: r.deviceId }],
      });
      const mode = r.mode !== undefined ? MODE_NAMES[r.mode as 0 | 1 | 2] : undefined;
      const addr = r.publicAddress && /^https?:\/\//.test(r.publicAddress) ? r.publicAddress : undefined;
      await this.withRouteLock(r.deviceId, async () => {
        const learnt = await this.routes.get(r.deviceId!);
        if (learnt && (mode || addr)) await this.routes.put(r.deviceId!, { ...learnt, ...(mode ? { mode } : {}), ...(addr ? { publicAddress: addr } : {}) });
      });
    }
  }

  /** The routable address read from the gateway's record: 200 sets it, 404 (none) clears it. */
  private onAddressRead(deviceId: string, e: QueueEntry): Promise<void> {
    return this.withRouteLock(deviceId, () => this.applyAddressRead(deviceId, e));
  }

  private async applyAddressRead(deviceId: string, e: QueueEntry): Promise<void> {
    const r = await this.routes.get(deviceId);
    if (!r || !e.outcome) return;
    const v = e.outcome.results[0]?.data;
    const addr = e.outcome.status === 200 && typeof v === 'string' ? v.trim() : '';
    if (addr && !/^https?:\/\//.test(addr)) {
      this.log.warn(`${deviceId}: routable address ${JSON.stringify(addr)} in ${r.via}'s inventory is not an http(s) URL; ignored`);
      return;
    }
    if ((r.publicAddress ?? '') === addr) return;
    const { publicAddress: _old, ...rest } = r;
    await this.routes.put(deviceId, { ...rest, ...(addr ? { publicAddress: addr } : {}) });
    if (addr) this.log.info(`${deviceId} has a routable address: ${addr} (read from ${r.via}'s inventory)`);
  }

  private onModeRead(deviceId: string, e: QueueEntry): Promise<void> {
    return this.withRouteLock(deviceId, async () => {
      const r = await this.routes.get(deviceId);
      const v = Number(e.outcome?.results[0]?.data);
      if (!r || e.outcome?.status !== 200 || !(v in MODE_NAMES)) return;
      await this.routes.put(deviceId, { ...r, mode: MODE_NAMES[v as 0 | 1 | 2] });
    });
  }

  /** The stored record of a device. */
  async device(deviceId: string): Promise<DeviceRecord | undefined> {
    return this.devices.get(deviceId);
  }

  /** Nonces of an account (initialised from the config on first use). */
  async accountNonces(deviceId: string): Promise<AccountNonces> {
    const stored = await this.nonces.get(deviceId);
    if (stored) return stored;
    const a = this.accounts.get(deviceId);
    return { clientNonce: a?.clientNonce ?? '', serverNonce: a?.serverNonce ?? '' };
  }

  private serverAccount(deviceId: string): ServerAccount | undefined {
    const a = this.accounts.get(deviceId);
    if (!a) return undefined;
    return {
      deviceId,
      username: a.username,
      secret: a.secret,
      authType: a.authType,
      serverId: this.config.serverId,
      serverSecret: a.serverSecret ?? this.config.serverSecret,
      serverAuthType: a.serverAuthType ?? this.config.serverAuthType,
    };
  }

  /**
   * Wakes a device so it opens a session (notes §4), by the best route (see `routesFor`): a Package 0
   * pushed to its own or its routable address, handed to its gateway (transparent mode), or the
   * gateway woken to run its session (proxy, adaptation). A direct push that fails, or that is not
   * followed by a session within `routing.directTimeout`, falls back to the next route; the choice
   * and the reason are logged and recorded on the device's waiting commands.
   * Returns the announced session id (a gateway's, for proxy/adaptation), or undefined when the
   * device cannot be woken now.
   */
  async notify(deviceId: string, opts: { uiMode?: 0 | 1 | 2 | 3 } = {}): Promise<string | undefined> {
    const route = await this.routes.get(deviceId);
    const candidates = this.routesFor(deviceId, route);
    if (!candidates.length) throw new GwError('SERVER_UNKNOWN_DEVICE', `unknown device ${deviceId}`, { status: 404 });
    return this.deliver(deviceId, route, candidates, 0, opts.uiMode ?? 0);
  }

  private async deliver(deviceId: string, route: DeviceRoute | undefined, candidates: Omit<RouteChoice, 'at'>[], i: number, uiMode: 0 | 1 | 2 | 3): Promise<string | undefined> {
    const c = candidates[i]!;
    const choice: RouteChoice = { ...c, at: new Date().toISOString(), ...(i > 0 ? { fallbackFrom: candidates[i - 1]!.kind } : {}) };
    await this.recordChoice(deviceId, route, choice);
    const next = async (why: string): Promise<string | undefined> => {
      if (i + 1 >= candidates.length) {
        this.log.warn(`${deviceId}: ${c.kind} route failed (${why}) and there is no other route`);
        return undefined;
      }
      this.log.warn(`${deviceId}: ${c.kind} route failed (${why}); falling back to ${candidates[i + 1]!.kind}${candidates[i + 1]!.via ? ` via ${candidates[i + 1]!.via}` : ''}`);
      return this.deliver(deviceId, route, candidates, i + 1, uiMode);
    };
    if (c.kind === 'proxy' || c.kind === 'adaptation') return this.notify(c.via!, { uiMode });
    const acct = this.serverAccount(deviceId)!;
    const { p0, hex } = await this.buildPackage0(deviceId, acct, uiMode);
    if (c.kind === 'transparent') return this.triggerThroughGateway(deviceId, route!, p0, hex);
    const url = c.kind === 'direct' ? c.address! : (this.accounts.get(deviceId)?.notify ?? (await this.devices.get(deviceId))?.notifyUrl);
    if (!url) {
      this.log.info(`no notification address for ${deviceId}; commands wait for its next session`);
      return undefined;
    }
    const session = c.kind === 'direct' ? this.nextSession(deviceId) : undefined;
    try {
      await this.pushPackage0(deviceId, url, p0, hex);
    } catch (err) {
      session?.cancel();
      if (c.kind !== 'direct') throw err;
      this.directFailed.set(deviceId, Date.now());
      return next(describeError(err));
    }
    if (session) {
      // The push arrived somewhere; only a session from the device proves it reached the device.
      const ms = this.config.routing.directTimeout * 1000;
      const timer = setTimeout(() => {
        this.fallbackTimers.delete(timer);
        session.cancel();
        if (this.stopped) return;
        this.directFailed.set(deviceId, Date.now());
        void next(`no session within ${this.config.routing.directTimeout} s of the direct push`).catch((err: unknown) => this.log.warn(`fallback for ${deviceId} failed: ${describeError(err)}`));
      }, ms);
      this.fallbackTimers.add(timer);
      void session.opened.then(() => {
        clearTimeout(timer);
        this.fallbackTimers.delete(timer);
        this.directFailed.delete(deviceId);
      });
    }
    return hex;
  }

  /** Logs a route choice and records it on the device's waiting commands (moving them to the gateway for proxy). */
  private async recordChoice(deviceId: string, route: DeviceRoute | undefined, choice: RouteChoice): Promise<void> {
    this.lastChoice.set(deviceId, choice);
    this.log.info(`route for ${deviceId}: ${choice.kind}${choice.via ? ` (${choice.kind === 'direct' ? 'bypassing' : 'via'} ${choice.via})` : ''}: ${choice.reason}`, {
      ...(choice.address ? { address: choice.address } : {}),
      ...(choice.fallbackFrom ? { fallbackFrom: choice.fallbackFrom } : {}),
    });
    const pending = (await this.queue.pending(deviceId)).filter((e) => e.state === 'queued');
    if (route && (choice.kind === 'proxy' || choice.kind === 'adaptation')) {
      // Commands queued for the device's own session now travel in the gateway's.
      for (const e of pending) if (!e.route) await this.queue.reroute(e, { via: route.via, prefix: route.prefix });
    }
    await this.queue.annotate(pending, choice);
  }

  /** A promise for the device's next session (cancel to stop waiting). */
  private nextSession(deviceId: string): { opened: Promise<void>; cancel(): void } {
    let resolve!: () => void;
    const opened = new Promise<void>((r) => (resolve = r));
    const set = this.sessionWaiters.get(deviceId) ?? new Set();
    this.sessionWaiters.set(deviceId, set);
    set.add(resolve);
    return {
      opened,
      cancel: () => {
        set.delete(resolve);
        if (!set.size) this.sessionWaiters.delete(deviceId);
      },
    };
  }

  /** POSTs a Package 0 to a notification address. */
  private async pushPackage0(deviceId: string, url: string, p0: Uint8Array, hex: string): Promise<void> {
    this.announced.set(hex, deviceId);
    try {
      const res = await tlsFetch(url, { method: 'POST', body: p0, headers: { 'content-type': NOTIFICATION_CONTENT_TYPE }, signal: AbortSignal.timeout(5000) }, this.config.tls?.ca ? { ca: this.config.tls.ca } : undefined);
      await res.arrayBuffer();
      if (!res.ok) throw new GwError('SERVER_NOTIFY', `device answered HTTP ${res.status}`);
      this.log.info(`Package 0 sent to ${deviceId}`, { sessionId: hex, url });
    } catch (err) {
      this.announced.delete(hex);
      this.log.warn(`Package 0 to ${deviceId} failed: ${describeError(err)}`, { url });
      throw err instanceof GwError ? err : new GwError('SERVER_NOTIFY', `cannot reach ${url}`, { cause: err });
    }
  }

  private async buildPackage0(deviceId: string, acct: ServerAccount, uiMode: 0 | 1 | 2 | 3): Promise<{ p0: Uint8Array; hex: string }> {
    const nonces = await this.accountNonces(deviceId);
    const sid = randomInt(1, 0x10000);
    const p0 = encodePackage0(
      { uiMode, initiator: 1, sessionId: sid, serverId: acct.serverId },
      { password: acct.serverSecret, nonce: nonceCandidates(nonces.serverNonce)[0] ?? new Uint8Array() },
    );
    return { p0, hex: sessionIdHex(sid) };
  }

  /**
   * Transparent mode (GwMO-TMode-001, notes §2.1): the device has no route from the server, so the
   * Package 0 — built with the device's own credentials, which the gateway cannot forge or check —
   * goes to the gateway in a DM session (EDTrigger MO, notes §1.7), and the gateway pushes it to
   * the device untouched. The device then opens its own session with the server.
   */
  private async triggerThroughGateway(deviceId: string, route: DeviceRoute, p0: Uint8Array, hex: string): Promise<string> {
    const gwPrefix = route.prefix.replace(/\/GwMO\/Devices\/[^/]+$/, '') || '.';
    const at = (u: string): string => (gwPrefix === '.' ? u : u.replace(/^\./, gwPrefix));
    const t = `./GwMO/EDTrigger/t${hex}${randomInt(1, 1_000_000)}`;
    const seq: Outgoing = {
      kind: 'Sequence',
      commands: [
        { kind: 'Add', cmdID: '', meta: { format: 'node' }, items: [{ target: { locURI: at(t) } }] },
        { kind: 'Add', cmdID: '', items: [{ target: { locURI: at(`${t}/DeviceID`) }, data: deviceId }] },
        { kind: 'Add', cmdID: '', items: [{ target: { locURI: at(`${t}/Pkg0`) }, meta: { format: 'b64' }, data: Buffer.from(p0).toString('base64') }] },
        { kind: 'Exec', cmdID: '', items: [{ target: { locURI: at(`${t}/Operations/Trigger`) } }] },
        // The trigger holds a used Package 0: drop it once delivered (the Exec's status is kept).
        { kind: 'Delete', cmdID: '', items: [{ target: { locURI: at(t) } }] },
      ],
    } as Outgoing;
    this.announced.set(hex, deviceId);
    await this.queue.enqueue(route.via, seq, undefined, `edtrigger:${deviceId}`);
    this.log.info(`Package 0 for ${deviceId} handed to gateway ${route.via} (transparent mode)`, { sessionId: hex });
    await this.notify(route.via).catch((err: unknown) => this.log.warn(`cannot wake gateway ${route.via}: ${describeError(err)}`));
    return hex;
  }

  private async routeHttp(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const url = new URL(req.url ?? '/', 'http://localhost');
    if (this.extraRoute && (await this.extraRoute(req, res, url))) return;
    if (url.pathname === this.config.path || url.pathname.startsWith(this.config.path + '/')) {
      if (req.method !== 'POST') {
        res.writeHead(405, { allow: 'POST' }).end();
        return;
      }
      await this.handleDm(req, res);
      return;
    }
    if (url.pathname === '/api' || url.pathname.startsWith('/api/')) {
      await handleApi(this, req, res, url);
      return;
    }
    if (url.pathname === '/metrics' && (req.method === 'GET' || req.method === 'HEAD')) {
      res.writeHead(200, { 'content-type': this.metrics.contentType, 'cache-control': 'no-store' }).end(await this.metrics.text());
      return;
    }
    res.writeHead(404, { 'content-type': 'text/plain' }).end('not found');
  }

  /** Decoder limits of DM messages (the config's maxMsgSize). */
  private decodeLimits: typeof DEFAULT_LIMITS | undefined;

  private async handleDm(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const encoding = encodingOfContentType(req.headers['content-type']);
    if (!encoding) {
      this.metrics.rejected.inc({ reason: 'content_type' });
      res.writeHead(415, { 'content-type': 'text/plain' }).end(`unsupported content type ${req.headers['content-type'] ?? '(none)'}`);
      return;
    }
    let raw: Buffer;
    try {
      raw = await readBody(req, this.config.maxMsgSize);
    } catch (err) {
      this.log.warn(`message refused: ${describeError(err)}`);
      this.metrics.rejected.inc({ reason: 'too_large' });
      res.writeHead(413, { 'content-type': 'text/plain', connection: 'close' }).end(describeError(err));
      return;
    }
    const limits = (this.decodeLimits ??= { ...DEFAULT_LIMITS, maxBytes: this.config.maxMsgSize });
    let msg;
    try {
      msg = decodeSyncML(raw, encoding, limits);
    } catch (err) {
      this.metrics.rejected.inc({ reason: 'malformed' });
      this.replyMalformed(res, raw, encoding, err);
      return;
    }
    const deviceId = msg.hdr.source.locURI;
    // Mutual TLS: a verified client certificate names the device (CN = DevId); it cannot speak for another.
    const certId = peerIdentity(req.socket);
    if (certId !== undefined && certId !== deviceId) {
      this.log.warn(`message refused: the client certificate (CN=${certId}) does not belong to ${deviceId}`);
      this.metrics.rejected.inc({ reason: 'certificate' });
      this.metrics.authFailures.inc({ kind: 'certificate' });
      res.writeHead(403, { 'content-type': 'text/plain', connection: 'close' }).end(`client certificate CN=${certId} does not match the message's source ${deviceId}`);
      return;
    }
    const key = `${deviceId}|${msg.hdr.sessionID}`;
    let session = this.sessions.get(key);
    if (session && msg.hdr.msgID === '1' && session.messages > 0 && (req.socket.remoteAddress ?? '') === this.sessionAddress.get(key)) {
      // A new Package 1 (MsgID 1) under the id of a session still open here: the client started
      // over (a reset device reuses its session ids). The old session, idle between messages, is
      // dropped; continuing it would charge the new session with the old one's state (e.g. its
      // failed authentications).
      const old = this.root.system.get(`session:${key}`) as AnyActorRef | undefined;
      if (old && (old.getSnapshot() as { value?: unknown }).value === 'awaitingMessage') {
        this.log.info(`session ${msg.hdr.sessionID} of ${deviceId} started over by a new Package 1; the open one is dropped`);
        old.send({ type: 'stop' });
        session = this.sessions.get(key);
      }
    }
    if (!session) {
      // Caps on open sessions, overall and per account: a flood (or a looping client) gets 503 and
      // a Retry-After instead of growing the server without bound.
      const busy = this.draining ? 'the server is stopping' : this.sessionCapReached(deviceId);
      if (busy) {
        this.metrics.rejected.inc({ reason: 'busy' });
        this.log.warn(`session refused: ${busy}`, { deviceId, sessionId: msg.hdr.sessionID });
        res.writeHead(503, { 'content-type': 'text/plain', 'retry-after': '5' }).end(`${busy}; retry later`);
        return;
      }
      session = new ServerSession(msg.hdr.sessionID, deviceId, {
        account: (id) => this.serverAccount(id),
        loadNonces: (id) => this.accountNonces(id),
        saveNonces: (id, n) => this.nonces.put(id, n),
        queue: this.queue,
        onDevInfo: (id, info) => this.recordDevInfo(id, info, msg.hdr.sessionID),
        ...(this.learnRoutes && this.accounts.get(deviceId)?.gateway ? { onAlert: (a: DeviceAlert) => this.onAlert(deviceId, a) } : {}),
        log: (level, m, fields) => {
          if (this.log.enabled?.(level) !== false) this.log.log(level, m, { ...fields, sessionId: msg.hdr.sessionID });
        },
        logEnabled: (level) => this.log.enabled?.(level) !== false,
        maxMsgSize: this.config.maxMsgSize,
        authGate: this.authGate(deviceId, req.socket.remoteAddress ?? 'unknown'),
      });
      this.sessions.set(key, session);
      if (this.announced.get(msg.hdr.sessionID) === deviceId) this.announced.delete(msg.hdr.sessionID);
      const waiters = this.sessionWaiters.get(deviceId);
      if (waiters) {
        this.sessionWaiters.delete(deviceId);
        for (const w of waiters) w();
      }
      if (this.log.enabled?.('info') !== false) this.log.info(`session ${msg.hdr.sessionID} opened by ${deviceId}`, { encoding });
      this.sessionAddress.set(key, req.socket.remoteAddress ?? '');
      this.root.send({ type: 'session.open', input: { key, session, idleTimeoutMs: this.config.sessionTimeout * 1000 } });
    } else if ((req.socket.remoteAddress ?? '') !== this.sessionAddress.get(key)) {
      // MD5 authenticates a session once: later messages are tied to it by DevId and SessionID only,
      // which anyone who saw them could forge. Binding the session to the address it started from
      // keeps another host from acting in it (HMAC, or TLS client certificates, bind every message).
      this.metrics.rejected.inc({ reason: 'session_address' });
      this.log.warn(`message refused: session ${msg.hdr.sessionID} of ${deviceId} belongs to another address`, { address: req.socket.remoteAddress });
      res.writeHead(403, { 'content-type': 'text/plain', connection: 'close' }).end(`session ${msg.hdr.sessionID} of ${deviceId} was opened from another address`);
      return;
    }
    const actor = this.root.system.get(`session:${key}`) as AnyActorRef | undefined;
    if (!actor) {
      res.writeHead(503, { 'content-type': 'text/plain' }).end('session is closing');
      return;
    }
    const hmac = req.headers[HMAC_HEADER];
    const result = await new Promise<Parameters<SessionMessageEvent['reply']>[0]>((resolve) => {
      const ev: SessionMessageEvent = {
        type: 'message',
        inbound: { message: msg, raw, encoding, ...(typeof hmac === 'string' ? { hmacHeader: hmac } : {}) },
        reply: resolve,
      };
      actor.send(ev);
    });
    if (!result.ok) {
      this.log.error(`session ${msg.hdr.sessionID} of ${deviceId} failed: ${describeError(result.error)}`);
      this.sendSyncML(res, encodeSyncML(this.errorReply(msg.hdr, statusOf(result.error)), encoding), encoding);
      return;
    }
    const headers: Record<string, string> = {};
    if (result.out.hmacHeader) headers[HMAC_HEADER] = result.out.hmacHeader;
    this.sendSyncML(res, result.out.body, encoding, headers);
  }

  /** A malformed message: answer with a SyncHdr status when the header is readable, else HTTP 400. */
  private replyMalformed(res: ServerResponse, raw: Uint8Array, encoding: Encoding, err: unknown): void {
    const status = statusOf(err);
    const hdr = decodeHeaderOnly(raw, encoding);
    this.log.warn(`malformed message${hdr ? ` from ${hdr.source.locURI}` : ''}: ${describeError(err)}`, { status });
    if (!hdr) {
      res.writeHead(400, { 'content-type': 'text/plain' }).end(`malformed SyncML: ${describeError(err)}`);
      return;
    }
    this.sendSyncML(res, encodeSyncML(this.errorReply(hdr, status), encoding), encoding);
  }

  private errorReply(hdr: import('../codec/model.ts').SyncHdr, status: number): import('../codec/model.ts').SyncMLMessage {
    return {
      hdr: {
        verDTD: '1.2',
        verProto: 'DM/1.2',
        sessionID: hdr.sessionID,
        msgID: '1',
        target: { locURI: hdr.source.locURI },
        source: { locURI: this.config.serverId },
      },
      body: numberCommands([hdrStatus(hdr, status)]),
      final: true,
    };
  }

  private sendSyncML(res: ServerResponse, body: Uint8Array, encoding: Encoding, extra: Record<string, string> = {}): void {
    res.writeHead(200, {
      'content-type': CONTENT_TYPES[encoding],
      'content-length': String(body.byteLength),
      'cache-control': 'no-store, private',
      ...extra,
    });
    res.end(body);
  }

  private async recordDevInfo(deviceId: string, devInfo: Record<string, string>, sessionId: string): Promise<void> {
    const prev = await this.devices.get(deviceId);
    const notifyUrl = devInfo['Ext/NotifyURI'];
    const publicNotifyUrl = devInfo['Ext/PublicNotifyURI'];
    const rec: DeviceRecord = {
      deviceId,
      devInfo: { ...(prev?.devInfo ?? {}), ...devInfo },
      sessions: (prev?.sessions ?? 0) + 1,
      lastSessionAt: new Date().toISOString(),
      lastSessionId: sessionId,
      ...(notifyUrl ? { notifyUrl } : prev?.notifyUrl ? { notifyUrl: prev.notifyUrl } : {}),
      ...(publicNotifyUrl ? { publicNotifyUrl } : prev?.publicNotifyUrl ? { publicNotifyUrl: prev.publicNotifyUrl } : {}),
    };
    await this.devices.put(deviceId, rec);
  }

  /** Why a new session of `deviceId` would exceed a cap, or undefined. */
  private sessionCapReached(deviceId: string): string | undefined {
    const { maxSessions, maxSessionsPerAccount } = this.config.limits;
    if (this.sessions.size >= maxSessions) return `${this.sessions.size} sessions are open (limits.maxSessions ${maxSessions})`;
    let mine = 0;
    for (const s of this.sessions.values()) if (s.deviceId === deviceId) mine++;
    if (mine >= maxSessionsPerAccount) return `${deviceId} has ${mine} sessions open (limits.maxSessionsPerAccount ${maxSessionsPerAccount})`;
    return undefined;
  }

  /** The brute-force guard of one session: its account and the address it came from (AuthGuard). */
  private authGate(deviceId: string, address: string): NonNullable<ServerSessionDeps['authGate']> {
    const account = `account:${deviceId}`;
    const addr = `address:${address}`;
    return {
      result: (ok, kind, firstInSession) => {
        if (ok) {
          this.guard.success([account]);
          this.addressGuard.success([addr]);
          return 0;
        }
        this.metrics.authFailures.inc({ kind: kind ?? 'credentials' });
        // Every failure counts against the account. Against the address (shared by every device
        // behind one NAT or gateway, which may all present stale nonces at once after a restart)
        // only an unknown device or a failure after this session's fresh challenge counts.
        const v1 = kind === 'unknown_device' ? { delayMs: 0, failures: {} } : this.guard.failure([account]);
        const v2 = kind === 'unknown_device' || !firstInSession ? this.addressGuard.failure([addr]) : { delayMs: 0, failures: {} };
        const v = { delayMs: Math.max(v1.delayMs, v2.delayMs), failures: { ...v1.failures, ...v2.failures } };
        if (v.delayMs > 0) {
          this.metrics.authHeld.inc();
          const counts = Object.entries(v.failures).map(([k, n]) => `${n} for ${k}`).join(', ');
          this.log.warn(`repeated authentication failures (${counts}): this 401 is held ${v.delayMs} ms`, { deviceId, address });
        }
        return v.delayMs;
      },
    };
  }

  private async onSessionEnded(key: string, reason: string | undefined): Promise<void> {
    this.metrics.sessions.inc({ outcome: reason ?? 'unknown' });
    this.sessionAddress.delete(key);
    const session = this.sessions.get(key);
    this.sessions.delete(key);
    if (!session) return;
    if (this.log.enabled?.('info') !== false) this.log.info(`session ${session.sessionId} of ${session.deviceId} ended: ${reason ?? 'unknown'}`, { messages: session.messages });
    this.sessionEndedHook?.(session.deviceId, reason ?? 'unknown');
    if (!this.accounts.has(session.deviceId)) return; // unknown devices get no record (no storage for strangers)
    const rec: DeviceRecord = (await this.devices.get(session.deviceId).catch(() => undefined)) ?? { deviceId: session.deviceId, devInfo: {}, sessions: 0 };
    await this.devices
      .put(session.deviceId, { ...rec, lastEndReason: reason ?? 'unknown', lastSessionId: session.sessionId })
      .catch((err: unknown) => this.log.error(`cannot record the end of session ${session.sessionId}: ${describeError(err)}`));
  }

  /** Sessions currently open. */
  openSessions(): { deviceId: string; sessionId: string; messages: number }[] {
    return [...this.sessions.values()].map((s) => ({ deviceId: s.deviceId, sessionId: s.sessionId, messages: s.messages }));
  }
}
