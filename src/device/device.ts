/**
 * A simulated OMA DM client device: its own management tree (DevInfo, DevDetail, DMAcc and extra
 * nodes), a Package 0 listener, client-initiated sessions on demand and server-initiated sessions
 * after a valid notification. Behaviours (UI answers, Exec handlers) are injectable, so tests and
 * demos shape the device instead of mocking it.
 */
import type { IncomingMessage, ServerResponse } from 'node:http';
import { createActor, type SimulatedClock } from 'xstate';
import { HMAC_HEADER, fromAAuthType, parseAuthType, toAAuthType, type AuthType } from '../codec/auth.ts';
import type { AlertCommand, Item, OperationCommand } from '../codec/model.ts';
import { decodePackage0, sessionIdHex, verifyPackage0, RESYNC_NONCE } from '../codec/package0.ts';
import { CONTENT_TYPES, decodeSyncML, encodingOfContentType } from '../codec/syncml.ts';
import { GwError, describeError, statusOf } from '../errors.ts';
import { decodeBootstrap } from '../codec/bootstrap.ts';
import { createLogger, type Logger } from '../log.ts';
import { genericAlert, ClientSession, type ClientCredentials } from '../session/client-session.ts';
import type { Outgoing } from '../session/common.ts';
import { memoryStore, openStore, type Store } from '../store/store.ts';
import { executeCommands, type ExecutorContext, type Reply, type UiHandler } from '../tree/executor.ts';
import { installStandardObjects, readAccounts, readDevInfo, storeNonce, type DmAccount, type DmAuthType, protectSecrets } from '../tree/standard.ts';
import { DmTree, LOCAL, type NodeRecord } from '../tree/tree.ts';
import { basicInTheClear, listen, post, readBody, type Listener } from '../transport/http.ts';
import { clientSessionMachine, type ClientSessionOutput } from '../../machines/client-session.ts';
import type { DeviceConfig } from './config.ts';
import { nonceCandidates } from '../codec/auth.ts';

/** Options for creating a device in-process. */
export interface SimDeviceOptions {
  config: DeviceConfig;
  dataDir?: string;
  store?: Store;
  logger?: Logger;
  ui?: UiHandler;
  clock?: SimulatedClock;
  /**
   * Runs the server's commands (default: on the device tree). A gateway passes its own, which
   * forwards commands for mounted end devices southbound and runs the rest on its tree.
   */
  executor?: CommandExecutor;
}

/** Runs a server's commands and returns statuses and results in order. */
export type CommandExecutor = (commands: OperationCommand[], msgRef: string, ctx: ExecutorContext) => Promise<Reply[]>;

/** A finished session as the device remembers it. */
export interface DeviceSessionRecord extends ClientSessionOutput {
  sessionId: string;
  initiator: 'server' | 'client';
  startedAt: string;
}

const NOTIFICATION_TYPE = 'application/vnd.syncml.notification';

/** A simulated DM client device. */
export class SimDevice {
  readonly config: DeviceConfig;
  readonly tree: DmTree;
  readonly log: Logger;
  readonly sessions: DeviceSessionRecord[] = [];
  private readonly store: Store;
  private readonly ownsStore: boolean;
  private readonly ui: UiHandler | undefined;
  private readonly clock: SimulatedClock | undefined;
  private readonly executor: CommandExecutor;
  private listener: Listener | undefined;
  private publicListener: Listener | undefined;
  /** The tail of the session chain (sessions run one at a time). */
  private sessions$: Promise<unknown> = Promise.resolve();
  private readonly seenNotifications = new Map<string, number>();
  private nextSessionId = 1;
  private readonly sessionWaiters: ((r: DeviceSessionRecord) => void)[] = [];
  /** Package 0 messages ignored (bad digest, unknown server, replay), for tests and logs. */
  ignoredNotifications = 0;

  private constructor(opts: SimDeviceOptions, tree: DmTree, store: Store, ownsStore: boolean) {
    this.config = opts.config;
    this.tree = tree;
    this.store = store;
    this.ownsStore = ownsStore;
    this.log = opts.logger ?? createLogger(`device`).child(opts.config.deviceId);
    this.ui = opts.ui;
    this.clock = opts.clock;
    this.executor = opts.executor ?? ((cmds, msgRef, ctx) => executeCommands(this.tree, cmds, msgRef, ctx));
  }

  /** Creates the device: opens its tree and installs the standard objects and configured nodes. */
  static async create(opts: SimDeviceOptions): Promise<SimDevice> {
    const dir = opts.dataDir ?? opts.config.data;
    const store = opts.store ?? (dir ? await openStore(dir) : memoryStore());
    const tree = await DmTree.open(store.section<NodeRecord>('tree'));
    const d = new SimDevice(opts, tree, store, !opts.store);
    await d.install();
    return d;
  }

  /**
   * The tree's account keeps what a server wrote into it, but a changed `server.url` in the config
   * is the operator moving the device (a gateway whose parent now listens elsewhere, e.g. after a
   * restart on an ephemeral port): the configured address then replaces the stored one. Unchanged
   * config leaves a server-made change alone.
   */
  private async followConfiguredAddress(url: string): Promise<void> {
    const meta = this.store.section<string>('install');
    const before = await meta.get('dms-address');
    const leaf = './DMAcc/dms/AppAddr/1/Addr';
    if (before !== url && this.tree.hasLocal(leaf)) {
      const cur = await this.tree.get(leaf, LOCAL);
      // Data from before this record existed: the config is all there is to go by.
      if (cur.data !== url && (before === undefined || cur.data === before)) {
        await this.tree.replace(leaf, { format: 'chr', data: url }, LOCAL);
        this.log.info(`server address changed in the config: ${String(cur.data)} -> ${url}`);
      }
    }
    if (before !== url) await meta.put('dms-address', url);
  }

  private async install(): Promise<void> {
    const c = this.config;
    const s = c.server;
    await installStandardObjects(this.tree, {
      devInfo: { devId: c.deviceId, ...c.devInfo },
      devDetail: { ...c.devDetail, lrgObj: true, maxDepth: 0, maxTotLen: 0, maxSegLen: 0 },
      accounts: !s ? [] : [
        {
          name: 'dms',
          serverId: s.serverId,
          address: s.url,
          authPref: toAAuthType(s.authType) as DmAuthType,
          client: { type: toAAuthType(s.authType) as DmAuthType, name: s.username, secret: s.secret, nonce: s.clientNonce },
          server: { type: toAAuthType(s.serverAuthType) as DmAuthType, name: s.serverId, secret: s.serverSecret, nonce: s.serverNonce },
        },
      ],
    });
    if (s) await this.followConfiguredAddress(s.url);
    await protectSecrets(this.tree);
    for (const n of c.nodes) {
      if (this.tree.hasLocal(n.uri)) continue;
      const interior = n.format === 'node';
      await this.tree.add(
        n.uri,
        {
          format: n.format,
          ...(n.type ? { type: n.type } : {}),
          ...(n.value !== undefined ? { data: n.value } : {}),
          ...(n.acl !== undefined ? { acl: n.acl } : {}),
          access: n.access ?? (interior ? ['Add', 'Delete', 'Get'] : n.exec ? ['Exec', 'Get'] : ['Get', 'Replace', 'Delete', 'Copy']),
        },
        LOCAL,
      );
    }
    for (const n of c.nodes.filter((x) => x.exec)) this.installExec(n.uri, n.exec!);
  }

  /** Registers the built-in Exec behaviours of configured nodes. */
  private installExec(uri: string, kind: 'count' | 'echo' | 'async'): void {
    this.tree.onExec(uri, async (req) => {
      if (kind === 'count') {
        const v = await this.tree.get(uri, LOCAL);
        await this.tree.replace(uri, { data: String((Number(v.data) || 0) + 1) }, LOCAL);
        return { status: 200 };
      }
      if (kind === 'echo') return { status: 200, ...(typeof req.data === 'string' ? { data: req.data } : {}) };
      // async: accept now (202), report completion later with a Generic Alert echoing the Correlator.
      setTimeout(() => {
        const alert = genericAlert(
          [{ source: { locURI: uri }, meta: { type: 'org.openmobilealliance.dm.gwmo.ExecComplete', format: 'int' }, data: '200' }],
          req.correlator,
        );
        this.connect({ alerts: [alert] }).catch((err: unknown) => this.log.warn(`completion alert not delivered: ${describeError(err)}`));
      }, 20);
      return { status: 202 };
    });
  }

  /** Registers an Exec handler on a node (injectable behaviour). */
  onExec(uri: string, handler: Parameters<DmTree['onExec']>[1]): () => void {
    return this.tree.onExec(uri, handler);
  }

  /**
   * syncml:auth-basic sends the password itself: never over plain HTTP to a host that is not this
   * machine, unless the config says `allowBasicOverHttp: true` (SECCONF-001).
   */
  private refuseBasicInTheClear(address: string, type: string): void {
    const why = basicInTheClear(address, type);
    if (!why) return;
    if (this.config.allowBasicOverHttp) {
      this.log.warn(`${why} (allowBasicOverHttp is set)`);
      return;
    }
    this.log.error(`refusing to send credentials: ${why}`);
    throw new GwError('DEVICE_BASIC_CLEARTEXT', `refusing to send credentials: ${why}; use https, MD5 or HMAC, or set allowBasicOverHttp: true`);
  }

  /** Starts the Package 0 listener (and the public one, when configured); returns its URL. */
  async start(): Promise<string> {
    const tls = { tls: this.config.notify.tls };
    this.listener = await listen(this.config.notify.listen, (req, res) => this.onHttp(req, res, 'local'), tls);
    const pub = this.config.notify.public;
    if (pub?.listen !== undefined) this.publicListener = await listen(pub.listen, (req, res) => this.onHttp(req, res, 'public'), tls);
    this.log.info(`device listening for Package 0`, { url: this.notifyUrl, ...(this.publicNotifyUrl ? { public: this.publicNotifyUrl } : {}) });
    return this.notifyUrl;
  }

  /** URL of the Package 0 listener. */
  get notifyUrl(): string {
    if (!this.listener) throw new GwError('DEVICE_NOT_STARTED', 'the device is not listening');
    return this.listener.url + this.config.notify.path;
  }

  /** The publicly routable notification URL, when the device has one. */
  get publicNotifyUrl(): string | undefined {
    const pub = this.config.notify.public;
    if (pub?.url) return pub.url;
    return this.publicListener ? this.publicListener.url + this.config.notify.path : undefined;
  }

  /** Package 0 messages received, by listener (`local`: the gateway's network; `public`: direct pushes). */
  readonly notifications = { local: 0, public: 0 };

  /** Stops the listeners, waits for a running session and closes the store. */
  async stop(): Promise<void> {
    await this.listener?.close();
    await this.publicListener?.close();
    this.listener = undefined;
    this.publicListener = undefined;
    await this.sessions$;
    if (this.ownsStore) await this.store.close();
  }

  /** Resolves with the next session that finishes. */
  nextSession(): Promise<DeviceSessionRecord> {
    return new Promise((resolve) => this.sessionWaiters.push(resolve));
  }

  private async onHttp(req: IncomingMessage, res: ServerResponse, via: 'local' | 'public'): Promise<void> {
    const url = new URL(req.url ?? '/', 'http://localhost');
    // Bootstrap only on the local listener: a public address must not accept a new DM account.
    if (via === 'local' && req.method === 'POST' && url.pathname === this.config.notify.bootstrapPath) {
      await this.onBootstrap(req, res);
      return;
    }
    if (req.method !== 'POST' || url.pathname !== this.config.notify.path) {
      res.writeHead(404).end();
      return;
    }
    const body = await readBody(req, 4096).catch(() => undefined);
    // Answer at once: the notification is a trigger, the session runs afterwards.
    res.writeHead(body ? 202 : 413).end();
    if (body && (req.headers['content-type'] ?? '').startsWith(NOTIFICATION_TYPE)) {
      this.notifications[via]++;
      void this.onPackage0(body);
    }
    else if (body) this.log.warn(`notification with content type ${req.headers['content-type']} ignored`);
  }

  /** URL of the bootstrap endpoint. */
  get bootstrapUrl(): string {
    if (!this.listener) throw new GwError('DEVICE_NOT_STARTED', 'the device is not listening');
    return this.listener.url + this.config.notify.bootstrapPath;
  }

  /**
   * A DM bootstrap message (notes §2.5): verified with the device's PIN, applied to the tree as the
   * device's own operation (no session, no Status), then the device calls its new server.
   */
  private async onBootstrap(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const pin = this.config.bootstrap.pin;
    const body = await readBody(req, 64 * 1024).catch(() => undefined);
    if (!body) {
      res.writeHead(413).end();
      return;
    }
    if (!pin) {
      this.log.warn('bootstrap refused: this device has no bootstrap PIN');
      res.writeHead(403).end();
      return;
    }
    let parsed;
    try {
      parsed = decodeBootstrap(body, req.headers['content-type'] ?? '', pin);
    } catch (err) {
      this.log.warn(`bootstrap refused: ${describeError(err)}`);
      res.writeHead(statusOf(err) === 401 ? 401 : 400).end();
      return;
    }
    try {
      for (const n of parsed.nodes) {
        const secret = /\/(AAuthSecret|AAuthData)$/.test(n.uri);
        const opts = { ...(n.format ? { format: n.format } : {}), ...(n.data !== undefined ? { data: n.data } : {}) };
        if (this.tree.hasLocal(n.uri)) {
          if (n.format !== 'node') await this.tree.replace(n.uri, opts, LOCAL);
        } else {
          await this.tree.add(n.uri, { ...opts, ...(secret ? { access: ['Add', 'Delete', 'Replace'] as const } : {}) }, LOCAL);
        }
      }
    } catch (err) {
      this.log.error(`bootstrap could not be applied: ${describeError(err)}`);
      res.writeHead(500).end();
      return;
    }
    res.writeHead(200).end();
    const added = (await readAccounts(this.tree)).find((a) => parsed.nodes.some((n) => n.data === a.serverId && n.uri.endsWith('/ServerID')));
    this.log.info(`bootstrapped by ${parsed.serverId}: ${parsed.nodes.length} nodes`, { account: added?.serverId });
    // The client is expected to call the new server at the next chance (notes §2.5).
    if (added) void this.connect({ serverId: added.serverId }).catch((err: unknown) => this.log.warn(`first session after bootstrap failed: ${describeError(err)}`));
  }

  /**
   * Validates a Package 0 (digest with the stored server nonce, then the resync nonce; notes §4.2)
   * and, when valid, opens a server-initiated session. Invalid notifications are ignored and logged.
   */
  async onPackage0(raw: Uint8Array): Promise<DeviceSessionRecord | undefined> {
    let p;
    try {
      p = decodePackage0(raw);
    } catch (err) {
      this.ignoredNotifications++;
      this.log.warn(`malformed Package 0 ignored: ${describeError(err)}`);
      return undefined;
    }
    const acct = (await readAccounts(this.tree)).find((a) => a.serverId === p.serverId);
    if (!acct?.server) {
      this.ignoredNotifications++;
      this.log.warn(`Package 0 from unknown server ${p.serverId} ignored`);
      return undefined;
    }
    const verified = nonceCandidates(acct.server.nonce)
      .map((nonce) => verifyPackage0(p, raw, { password: acct.server!.secret, nonce }))
      .find((v) => v.ok);
    if (!verified || !verified.ok) {
      this.ignoredNotifications++;
      this.log.warn(`Package 0 from ${p.serverId} ignored: digest does not verify`, { sessionId: sessionIdHex(p.sessionId) });
      return undefined;
    }
    // Reject replays of an accepted notification (notes §5.5).
    const key = `${p.serverId}|${p.sessionId}|${Buffer.from(p.digest).toString('hex')}`;
    const now = Date.now();
    for (const [k, t] of this.seenNotifications) if (now - t > 10 * 60_000) this.seenNotifications.delete(k);
    if (this.seenNotifications.has(key)) {
      this.ignoredNotifications++;
      this.log.warn(`replayed Package 0 ignored`, { sessionId: sessionIdHex(p.sessionId) });
      return undefined;
    }
    this.seenNotifications.set(key, now);
    if (verified.nonceUsed === 'resync') {
      this.log.info('Package 0 verified with the resync nonce; credentials will be re-established');
      await storeNonce(this.tree, acct.serverId, 'SRVCRED', Buffer.from(RESYNC_NONCE).toString('base64'));
    }
    this.log.info(`valid Package 0 from ${p.serverId}`, { sessionId: sessionIdHex(p.sessionId), ui: p.uiMode });
    return this.runSession(acct, sessionIdHex(p.sessionId), 'server');
  }

  /** Opens a client-initiated session (Alert 1201), optionally carrying generic alerts. */
  async connect(opts: { alerts?: Omit<AlertCommand, 'cmdID'>[]; serverId?: string } = {}): Promise<DeviceSessionRecord> {
    // Secrets a server or a bootstrap wrote since the last session are kept as verifiers from now on.
    await protectSecrets(this.tree).catch((err: unknown) => this.log.warn(`cannot protect DMAcc secrets: ${describeError(err)}`));
    const accounts = await readAccounts(this.tree);
    const acct = opts.serverId ? accounts.find((a) => a.serverId === opts.serverId) : accounts[0];
    if (!acct) throw new GwError('DEVICE_NO_ACCOUNT', `no DM account${opts.serverId ? ` for ${opts.serverId}` : ''}`);
    const sid = (this.nextSessionId++ & 0xffff || 1).toString(16).toUpperCase();
    return this.runSession(acct, sid, 'client', opts.alerts ?? []);
  }

  /** Sends a Generic Alert (1226) in a client-initiated session (notes §3.9). */
  async sendGenericAlert(items: Item[], correlator?: string): Promise<DeviceSessionRecord> {
    return this.connect({ alerts: [genericAlert(items, correlator)] });
  }

  private runSession(
    acct: DmAccount,
    sessionId: string,
    initiator: 'server' | 'client',
    alerts: Omit<AlertCommand, 'cmdID'>[] = [],
  ): Promise<DeviceSessionRecord> {
    // One session at a time, in arrival order: each session is chained (synchronously, so two
    // triggers can never both see "idle") after the previous one (duplicates collapse, §4.1).
    const run = this.sessions$.then(async () => {
      // Read the account again: the session that just ran may have rotated its nonces.
      const fresh = (await readAccounts(this.tree)).find((a) => a.serverId === acct.serverId) ?? acct;
      return this.session(fresh, sessionId, initiator, alerts);
    });
    this.sessions$ = run.catch(() => undefined);
    return run;
  }


  private async session(
    acct: DmAccount,
    sessionId: string,
    initiator: 'server' | 'client',
    alerts: Omit<AlertCommand, 'cmdID'>[],
  ): Promise<DeviceSessionRecord> {
    if (!acct.address || !acct.client || !acct.server) throw new GwError('DEVICE_ACCOUNT', `account ${acct.serverId} is incomplete`);
    this.refuseBasicInTheClear(acct.address, toAuthType(acct.client.type));
    const startedAt = new Date().toISOString();
    const devInfoValues = await readDevInfo(this.tree);
    const devInfo: Record<string, string> = {
      DevId: devInfoValues.devId,
      Man: devInfoValues.man,
      Mod: devInfoValues.mod,
      DmV: devInfoValues.dmV,
      Lang: devInfoValues.lang,
    };
    if (this.listener && this.config.notify.advertise) devInfo['Ext/NotifyURI'] = this.notifyUrl;
    if (this.publicNotifyUrl && this.config.notify.advertise) devInfo['Ext/PublicNotifyURI'] = this.publicNotifyUrl;
    const cred = (c: NonNullable<DmAccount['client']>): ClientCredentials => ({
      type: toAuthType(c.type),
      name: c.name,
      secret: c.secret,
      nonce: c.nonce,
    });
    const encoding = this.config.encoding;
    const session = new ClientSession(
      sessionId,
      initiator,
      {
        deviceId: this.config.deviceId,
        serverUri: acct.address,
        serverId: acct.serverId,
        client: cred(acct.client),
        server: cred(acct.server),
        devInfo,
        encoding,
        maxMsgSize: this.config.maxMsgSize,
        execute: (cmds, msgRef) =>
          this.executor(cmds, msgRef, {
            serverId: acct.serverId,
            ...(this.ui ? { ui: this.ui } : {}),
            onError: (err: unknown) => this.log.error(`command failed: ${describeError(err)}`),
          }) as Promise<Outgoing[]>,
        storeNonce: (level, nonce) => storeNonce(this.tree, acct.serverId, level, nonce),
        log: (level, msg, fields) => this.log.log(level, msg, { ...fields, sessionId }),
      },
      alerts,
    );
    const actor = createActor(clientSessionMachine, {
      input: {
        session,
        requestTimeoutMs: this.config.requestTimeout * 1000,
        exchange: async (out) => {
          const headers: Record<string, string> = { 'content-type': CONTENT_TYPES[encoding], accept: CONTENT_TYPES[encoding] };
          if (out.hmacHeader) headers[HMAC_HEADER] = out.hmacHeader;
          const s = this.config.server;
          const res = await post(out.url, out.body, headers, this.config.requestTimeout * 1000, s ? { ...(s.ca ? { ca: s.ca } : {}), ...(s.cert ? { cert: s.cert } : {}), ...(s.key ? { key: s.key } : {}) } : undefined);
          if (res.status !== 200) {
            throw new GwError('DEVICE_HTTP', `server answered HTTP ${res.status}: ${Buffer.from(res.body).toString('utf8').slice(0, 200)}`);
          }
          const enc = encodingOfContentType(res.headers.get('content-type') ?? undefined);
          if (!enc) throw new GwError('DEVICE_HTTP', `server answered with content type ${res.headers.get('content-type')}`);
          const hmac = res.headers.get(HMAC_HEADER);
          return { message: decodeSyncML(res.body, enc), raw: res.body, ...(hmac ? { hmacHeader: hmac } : {}) };
        },
      },
      ...(this.clock ? { clock: this.clock } : {}),
    });
    const output = await new Promise<ClientSessionOutput>((resolve) => {
      actor.subscribe({ complete: () => resolve(actor.getSnapshot().output!) });
      actor.start();
    });
    const rec: DeviceSessionRecord = { ...output, sessionId, initiator, startedAt };
    this.sessions.push(rec);
    this.log.log(output.ok ? 'info' : 'warn', `session ${sessionId} ${output.ok ? 'completed' : 'failed'}: ${output.reason}`, {
      messages: output.messages,
      commands: output.executed.length,
    });
    for (const w of this.sessionWaiters.splice(0)) w(rec);
    return rec;
  }
}

/** Maps a stored AAuthType (BASIC/DIGEST/HMAC or a syncml:auth-* string) to the Meta Type. */
function toAuthType(stored: string): AuthType {
  try {
    return fromAAuthType(stored);
  } catch {
    return parseAuthType(stored);
  }
}
