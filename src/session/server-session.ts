/**
 * The protocol logic of one DM session on the server side: authentication of the client (basic,
 * MD5 digest with rotated nonces, HMAC per message), authentication of the server towards the
 * client, delivery of queued commands in packages that respect the client's MaxMsgSize, large
 * objects both ways, multi-message packages (Alert 1222), abort (1223) and generic alerts (1226).
 * The xstate machine in machines/server-session.ts drives one instance per session.
 */
import {
  basicCred,
  basicMatches,
  formatHmacHeader,
  hmacMac,
  md5Cred,
  newNonce,
  nonceCandidates,
  nonceToB64,
  parseHmacHeader,
  safeEqual,
  type AuthType,
} from '../codec/auth.ts';
import type { Command, Encoding, Item, StatusCommand, SyncHdr, SyncMLMessage } from '../codec/model.ts';
import { encodeSyncML } from '../codec/syncml.ts';
import { describeError } from '../errors.ts';
import type { CommandOutcome, CommandQueue, DeviceAlert, QueueEntry } from '../server/queue.ts';
import { mapCommandUris, mapItems, prefixUri, stripPrefix } from './route.ts';
import {
  Alert,
  LargeObjectBuffer,
  SUPPORTED_PROTOCOLS,
  alertCode,
  cmdStatus,
  hdrStatus,
  splitLargeObject,
  packMessage,
  numberCommands,
  MIN_MSG_SIZE,
  type Outgoing,
} from './common.ts';

/**
 * `packMessage`, with a shortcut for the common case: when everything fits, the whole message is
 * encoded once (packMessage encodes each command alone, then the message, to find what fits) and
 * the encoded body is kept for sending, so it is not encoded again.
 */
function pack(hdr: SyncHdr, queue: Outgoing[], opts: Parameters<typeof packMessage>[2]): { message: SyncMLMessage; taken: number; body?: Uint8Array } {
  const message: SyncMLMessage = { hdr, body: numberCommands([...queue, ...(opts.trailer ?? [])]), final: opts.final };
  const body = encodeSyncML(message, opts.encoding);
  if (body.byteLength <= Math.max(opts.maxMsgSize, MIN_MSG_SIZE)) return { message, taken: queue.length, body };
  return packMessage(hdr, queue, opts);
}

/** What the server knows of one client account. */
export interface ServerAccount {
  deviceId: string;
  username: string;
  secret: string;
  authType: AuthType;
  /** Identity and secret the server presents to this client. */
  serverId: string;
  serverSecret: string;
  serverAuthType: AuthType;
}

/** Nonces of an account, base64 (notes §5.1: the digest uses the decoded bytes). */
export interface AccountNonces {
  /** Issued by the server; the client uses it in its next credentials. */
  clientNonce: string;
  /** Issued by the client; the server uses it in its credentials and in Package 0. */
  serverNonce: string;
}

/** Services a session needs from its server. */
export interface ServerSessionDeps {
  account(deviceId: string): ServerAccount | undefined;
  loadNonces(deviceId: string): Promise<AccountNonces>;
  saveNonces(deviceId: string, n: AccountNonces): Promise<void>;
  queue: CommandQueue;
  onDevInfo(deviceId: string, devInfo: Record<string, string>): Promise<void>;
  /** Called after a generic alert is stored (the server learns routes from gateways' inventory alerts). */
  onAlert?(alert: DeviceAlert): Promise<void>;
  log(level: 'info' | 'warn' | 'error' | 'debug', msg: string, fields?: Record<string, unknown>): void;
  /** Whether `log` writes lines of a level (hot paths skip building lines that would be dropped); absent: yes. */
  logEnabled?(level: 'info' | 'warn' | 'error' | 'debug'): boolean;
  /** Largest message the server itself accepts (sent as our MaxMsgSize). */
  maxMsgSize: number;
  /** How many failed authentications end the session. */
  maxAuthFailures?: number;
  /**
   * Brute-force guard (per account and source address, see AuthGuard): `result` reports each
   * credential check; for a failure it answers how many milliseconds to hold the 401.
   */
  authGate?: { result(ok: boolean, kind?: 'credentials' | 'unknown_device', firstInSession?: boolean): number };
}

/** Holds a failure reply (brute-force slowdown); 0 answers at once. */
function holdFor(ms: number): Promise<void> {
  return ms > 0 ? new Promise((r) => setTimeout(r, ms)) : Promise.resolve();
}

/** One inbound HTTP message. */
export interface InboundMessage {
  message: SyncMLMessage;
  raw: Uint8Array;
  encoding: Encoding;
  hmacHeader?: string;
}

/** The server's reply to one message. */
export interface OutboundMessage {
  body: Uint8Array;
  message: SyncMLMessage;
  encoding: Encoding;
  hmacHeader?: string;
  /** True when the session is over after this reply. */
  ended: boolean;
}

interface Inflight {
  entry: QueueEntry;
  path: number[];
  cmd: string;
  target?: string;
  /** A non-final large-object chunk: 213 expected, not a final status. */
  chunk: boolean;
}

interface OutboxMeta {
  entry: QueueEntry;
  /** A non-final large-object piece (213 expected). */
  chunk: boolean;
  /** The remainder of a large object already started (its pieces carry no Meta Size). */
  continuation?: boolean;
}

interface Tracking {
  entry: QueueEntry;
  statuses: CommandOutcome['statuses'];
  results: Item[];
  /** The path of the Get each result answers (parallel to `results`). */
  resultPaths: number[][];
  outstanding: number;
  awaitingResults: number;
  /** A Get of it succeeded: its Results may span several client messages, complete at the client's Final. */
  resultsUntilFinal?: boolean;
}

/**
 * Meta Type of the Item a gateway puts in its 202 Status when it stored a command for a device it
 * could not reach in time (PROPOSED): the result follows as a DeferredResult alert. A device's own
 * 202 (e.g. an asynchronous Exec) has no such Item and completes the command as 202.
 */
export const DEFERRED_MARK = 'urn:oma:at:gwmo:1.1:DeferredResult';

/** Why a session ended, for logs and the API. */
export type EndReason = 'completed' | 'aborted-by-client' | 'auth-failed' | 'unknown-device' | 'protocol-error' | 'timeout';

/** Server side of one DM session. */
export class ServerSession {
  readonly sessionId: string;
  readonly deviceId: string;
  private readonly deps: ServerSessionDeps;
  private readonly account: ServerAccount | undefined;
  private nonces: AccountNonces | undefined;
  private authenticated = false;
  private authFailures = 0;
  private serverAccepted = false;
  private serverAuthFailures = 0;
  private msgId = 0;
  private clientMaxMsgSize = 16 * 1024;
  private readonly outbox: Outgoing[] = [];
  /** Queue entry of each outgoing command; `continuation` marks the remainder of a large object being sent. */
  private readonly outboxEntries = new Map<Outgoing, OutboxMeta>();
  private readonly inflight = new Map<string, Inflight>();
  private readonly tracking = new Map<string, Tracking>();
  private lastSent: { cmd: Outgoing; meta: OutboxMeta }[] = [];
  private readonly lo = new LargeObjectBuffer();
  private readonly offered = new Set<string>();
  endReason: EndReason | undefined;
  /** Number of messages handled. */
  messages = 0;

  constructor(sessionId: string, deviceId: string, deps: ServerSessionDeps) {
    this.sessionId = sessionId;
    this.deviceId = deviceId;
    this.deps = deps;
    this.account = deps.account(deviceId);
  }

  /** True once the session is over. */
  get ended(): boolean {
    return this.endReason !== undefined;
  }

  /** Handles one client message and produces the reply. Never throws for protocol problems. */
  async handle(inb: InboundMessage): Promise<OutboundMessage> {
    this.messages++;
    const { message: msg } = inb;
    const hdr = msg.hdr;
    if (hdr.meta?.maxMsgSize) this.clientMaxMsgSize = hdr.meta.maxMsgSize;
    const statuses: Outgoing[] = [];

    if (!SUPPORTED_PROTOCOLS.includes(hdr.verProto)) {
      this.deps.log('warn', `protocol ${hdr.verProto} not supported`, { deviceId: this.deviceId });
      return this.finish(inb, [hdrStatus(hdr, 513)], 'protocol-error');
    }
    if (!this.account) {
      this.deps.log('warn', `session refused: unknown device ${this.deviceId}`, { deviceId: this.deviceId });
      await holdFor(this.deps.authGate?.result(false, 'unknown_device') ?? 0);
      return this.finish(inb, [hdrStatus(hdr, 401), ...this.commandStatuses(msg, 401)], 'unknown-device');
    }
    this.nonces ??= await this.deps.loadNonces(this.deviceId);

    // --- authenticate the client (notes §5.2)
    const wasAuthenticated = this.authenticated;
    const auth = await this.authenticateClient(inb);
    // The first failure of a session is often just a stale nonce (the 401 carries the fresh one).
    if (auth.code === 401) await holdFor(this.deps.authGate?.result(false, 'credentials', this.authFailures === 0) ?? 0);
    else if (!wasAuthenticated && this.authenticated) this.deps.authGate?.result(true);
    if (auth.code === 401 || auth.code === 407) {
      this.authFailures++;
      const limit = this.deps.maxAuthFailures ?? 3;
      this.deps.log('warn', `authentication of ${this.deviceId} failed: ${auth.why}`, {
        deviceId: this.deviceId,
        sessionId: this.sessionId,
        status: auth.code,
        attempt: this.authFailures,
      });
      if (this.authFailures >= limit) {
        return this.finish(inb, [hdrStatus(hdr, 401), ...this.commandStatuses(msg, 401)], 'auth-failed');
      }
      // A failure reply carries only statuses, with a challenge and a fresh nonce.
      const chal = await this.rotateClientNonce();
      return this.reply(inb, [hdrStatus(hdr, auth.code, { chal }), ...this.commandStatuses(msg, auth.code)], { final: true });
    }
    statuses.push(hdrStatus(hdr, auth.code, auth.chal ? { chal: auth.chal } : {}));

    // --- process the client's commands
    let aborted = false;
    let clientWantsMore = false;
    for (const c of msg.body) {
      try {
        const r = await this.processCommand(c, hdr, statuses);
        if (r === 'abort') aborted = true;
        if (r === 'next') clientWantsMore = true;
      } catch (err) {
        this.deps.log('error', `failed to process ${c.kind}: ${describeError(err)}`, { deviceId: this.deviceId });
        if (c.kind !== 'Status' && c.kind !== 'Results') statuses.push(cmdStatus(hdr.msgID, c, 500));
      }
    }
    await this.settleTracking(msg.final);
    if (aborted) {
      this.deps.log('info', `session ${this.sessionId} aborted by ${this.deviceId}`);
      return this.finish(inb, statuses, 'aborted-by-client');
    }

    if (!msg.final) {
      // Our own package is still open (it did not fit one message) and the client, which may not
      // close its package before we close ours, asks for our next message with Alert 1222 after
      // answering everything we sent: continue our package (notes §3.7). Answering with another
      // 1222 here made both sides ask each other for the next message forever.
      if (clientWantsMore && this.outbox.length > 0 && this.inflight.size === 0) {
        return this.reply(inb, statuses, { final: true, commands: true });
      }
      // The client's package is not complete: ask for its next message, send no new commands.
      return this.reply(inb, statuses, { final: false, trailer: [{ kind: 'Alert', data: Alert.NextMessage, items: [] }] });
    }
    // New commands only once every earlier one has its status (notes §3.7); each queued entry is
    // offered once per session, so a client that never answers cannot make the session loop.
    if (this.outbox.length === 0 && this.inflight.size === 0) await this.pullQueue();
    if (this.inflight.size > 0 && this.outbox.length === 0 && !clientWantsMore) {
      // The client closed its package without answering some commands: they stay queued for the next session.
      for (const [key, f] of this.inflight) {
        this.deps.log('warn', `no status for ${f.cmd} (entry ${f.entry.id}) from ${this.deviceId}; it stays queued`);
        this.inflight.delete(key);
      }
      this.tracking.clear();
    }
    if (this.outbox.length === 0) return this.finish(inb, statuses, 'completed');
    return this.reply(inb, statuses, { final: true, commands: true });
  }

  /** Marks the session as timed out (the machine calls this when the idle timer fires). */
  timeout(): void {
    if (!this.endReason) this.endReason = 'timeout';
  }

  private commandStatuses(msg: SyncMLMessage, code: number): Outgoing[] {
    return msg.body.filter((c) => c.kind !== 'Status' && c.kind !== 'Results').map((c) => cmdStatus(msg.hdr.msgID, c, code));
  }

  private async rotateClientNonce(): Promise<StatusCommand['chal']> {
    const nonce = nonceToB64(newNonce());
    this.nonces = { ...this.nonces!, clientNonce: nonce };
    await this.deps.saveNonces(this.deviceId, this.nonces);
    return { meta: { type: this.account!.authType, format: 'b64', nextNonce: nonce } };
  }

  private async authenticateClient(
    inb: InboundMessage,
  ): Promise<{ code: number; why?: string; chal?: StatusCommand['chal'] }> {
    const acct = this.account!;
    const hdr = inb.message.hdr;
    if (acct.authType === 'syncml:auth-MAC') {
      // HMAC: every message is checked; the status is 200 with a nonce for the next message.
      if (!inb.hmacHeader) return { code: 407, why: 'x-syncml-hmac header missing' };
      let h;
      try {
        h = parseHmacHeader(inb.hmacHeader);
      } catch (err) {
        return { code: 401, why: describeError(err) };
      }
      if (h.username !== acct.username) return { code: 401, why: `HMAC username "${h.username}" does not match the account` };
      const ok = nonceCandidates(this.nonces!.clientNonce).some((n) => safeEqual(hmacMac(acct.username, acct.secret, n, inb.raw), h.mac));
      if (!ok) return { code: 401, why: 'HMAC digest does not match' };
      this.authenticated = true;
      return { code: 200, chal: await this.rotateClientNonce() };
    }
    if (this.authenticated) return { code: 200 };
    const cred = hdr.cred;
    if (!cred) return { code: 407, why: 'no credentials' };
    const type = cred.meta?.type ?? 'syncml:auth-basic';
    if (type.toLowerCase() !== acct.authType.toLowerCase()) {
      return { code: 401, why: `credentials of type ${type}, the account requires ${acct.authType}` };
    }
    if (acct.authType === 'syncml:auth-basic') {
      // Compare by recomputing: user names such as IMEI:... contain ':' and cannot be split reliably.
      if (!basicMatches(cred.data, acct.username, acct.secret)) return { code: 401, why: 'wrong user name or password' };
      this.authenticated = true;
      return { code: 212 };
    }
    // MD5 digest: the user name travels in Source/LocName.
    const user = hdr.source.locName ?? acct.username;
    if (user !== acct.username) return { code: 401, why: `user name "${user}" does not match the account` };
    const ok = nonceCandidates(this.nonces!.clientNonce).some((n) => safeEqual(md5Cred(acct.username, acct.secret, n), cred.data.trim()));
    if (!ok) return { code: 401, why: 'MD5 digest does not match (wrong password or stale nonce)' };
    this.authenticated = true;
    // 212 plus a fresh nonce for the next session: the nonce is rotated every session.
    return { code: 212, chal: await this.rotateClientNonce() };
  }

  /** Processes one client command; returns 'abort' on Alert 1223, 'next' on Alert 1222. */
  private async processCommand(c: Command, hdr: SyncHdr, statuses: Outgoing[]): Promise<'abort' | 'next' | undefined> {
    switch (c.kind) {
      case 'Status':
        await this.onStatus(c);
        return undefined;
      case 'Results':
        this.onResults(c, hdr, statuses);
        return undefined;
      case 'Alert': {
        const code = alertCode(c);
        if (code === Alert.SessionAbort) {
          statuses.push(cmdStatus(hdr.msgID, c, 200));
          return 'abort';
        }
        if (code === Alert.Generic || code === Alert.ClientEvent) {
          const alert: DeviceAlert = {
            deviceId: this.deviceId,
            at: new Date().toISOString(),
            sessionId: this.sessionId,
            code,
            items: c.items,
            ...(c.correlator !== undefined ? { correlator: c.correlator } : {}),
          };
          await this.deps.queue.addAlert(alert);
          await this.deps.onAlert?.(alert);
          this.deps.log('info', `generic alert from ${this.deviceId}`, { types: c.items.map((i) => i.meta?.type) });
          statuses.push(cmdStatus(hdr.msgID, c, 200));
          return undefined;
        }
        if (code === Alert.NextMessage) {
          statuses.push(cmdStatus(hdr.msgID, c, 200));
          return 'next';
        }
        if (code === Alert.ClientInitiated || code === Alert.ServerInitiated) {
          statuses.push(cmdStatus(hdr.msgID, c, 200));
          return undefined;
        }
        statuses.push(cmdStatus(hdr.msgID, c, 406));
        return undefined;
      }
      case 'Replace': {
        // Package 1 carries the client's DevInfo as Replace items (notes §3.6).
        const devInfo: Record<string, string> = {};
        let ok = true;
        for (const it of c.items) {
          const uri = it.source?.locURI ?? it.target?.locURI ?? '';
          const m = /^(?:\.\/)?DevInfo\/(.+)$/.exec(uri);
          if (!m) ok = false;
          else devInfo[m[1]!] = typeof it.data === 'string' ? it.data : Buffer.from(it.data ?? new Uint8Array()).toString('utf8');
        }
        if (!ok) {
          statuses.push(cmdStatus(hdr.msgID, c, 405));
          return undefined;
        }
        await this.deps.onDevInfo(this.deviceId, devInfo);
        statuses.push(cmdStatus(hdr.msgID, c, 200));
        return undefined;
      }
      case 'Unsupported':
        statuses.push(cmdStatus(hdr.msgID, c, 406));
        return undefined;
      default:
        // A client may send only Alert, Replace (DevInfo), Results and Status (notes §3.3).
        statuses.push(cmdStatus(hdr.msgID, c, 405));
        return undefined;
    }
  }

  private async onStatus(s: StatusCommand): Promise<void> {
    const code = Number(s.data);
    if (s.cmdRef === '0') {
      // The client's verdict on our credentials.
      if (code === 212 || code === 200) {
        this.serverAccepted = code === 212 || this.serverAccepted;
      } else if (code === 401 || code === 407) {
        this.serverAuthFailures++;
        if (s.chal?.meta.nextNonce) {
          this.nonces = { ...this.nonces!, serverNonce: s.chal.meta.nextNonce };
          await this.deps.saveNonces(this.deviceId, this.nonces);
        }
        this.deps.log('warn', `${this.deviceId} rejected the server credentials (${code})`, { attempt: this.serverAuthFailures });
        // It executed nothing of that message: send those commands again with new credentials.
        if (this.serverAuthFailures <= 2) {
          for (const k of [...this.inflight.keys()]) this.inflight.delete(k);
          for (const t of this.tracking.values()) {
            t.statuses = [];
            t.results = [];
            t.outstanding = 0;
            t.awaitingResults = 0;
          }
          this.tracking.clear();
          for (const s2 of [...this.lastSent].reverse()) {
            this.outbox.unshift(s2.cmd);
            this.outboxEntries.set(s2.cmd, s2.meta);
          }
          this.lastSent = [];
        }
      }
      if (s.chal?.meta.nextNonce && (code === 212 || code === 200)) {
        // A nonce for our next credentials (next session, or next message with HMAC).
        this.nonces = { ...this.nonces!, serverNonce: s.chal.meta.nextNonce };
        await this.deps.saveNonces(this.deviceId, this.nonces);
      }
      return;
    }
    const key = `${s.msgRef}:${s.cmdRef}`;
    const f = this.inflight.get(key);
    if (!f) {
      if (s.cmd !== 'Alert' && this.deps.logEnabled?.('debug') !== false) this.deps.log('debug', `status ${code} for unknown command ${key}`);
      return;
    }
    this.inflight.delete(key);
    if (f.chunk && code === 213) return; // chunk buffered; the final status comes after the last chunk
    const t = this.tracking.get(f.entry.id);
    if (!t) return;
    const deferred = code === 202 && s.items.some((i) => i.meta?.type?.toLowerCase() === DEFERRED_MARK.toLowerCase());
    t.statuses.push({ path: f.path, cmd: f.cmd, ...(f.target !== undefined ? { target: f.target } : {}), status: code, ...(deferred ? { deferred } : {}) });
    t.outstanding--;
    if (f.cmd === 'Get' && code === 200) {
      t.awaitingResults++;
      t.resultsUntilFinal = true;
    }
  }

  private onResults(r: Command & { kind: 'Results' }, hdr: SyncHdr, statuses: Outgoing[]): void {
    // MsgRef is optional on Results: without it, take the latest of our messages with that CmdID.
    const key =
      r.msgRef !== undefined
        ? `${r.msgRef}:${r.cmdRef}`
        : ([...this.resultKeys.keys()].filter((k) => k.endsWith(`:${r.cmdRef}`)).sort((a, b) => Number(b.split(':')[0]) - Number(a.split(':')[0]))[0] ?? `:${r.cmdRef}`);
    const owner = [...this.tracking.values()].find((t) => t.entry && this.resultKeys.get(key) === t.entry.id);
    if (!owner) {
      if (this.deps.logEnabled?.('debug') !== false) this.deps.log('debug', `results for unknown command ${key}`);
      return;
    }
    for (const it of r.items) {
      const res = this.lo.feed(it.source?.locURI ?? '', { ...it, ...(r.meta && !it.meta ? { meta: r.meta } : {}) });
      if (res.state === 'partial') {
        statuses.push(cmdStatus(hdr.msgID, r, 213));
        owner.awaitingResults = Math.max(owner.awaitingResults, 1);
        return;
      }
      if (res.state === 'mismatch') {
        statuses.push(cmdStatus(hdr.msgID, r, 424));
        owner.statuses.push({ path: [], cmd: 'Results', status: 424 });
        continue;
      }
      owner.results.push(res.item);
      owner.resultPaths.push(this.resultPathOf.get(key) ?? []);
    }
    owner.awaitingResults = 0;
  }

  /** Results carry the CmdRef/MsgRef of their Get; this maps that to the queue entry. */
  private readonly resultKeys = new Map<string, string>();
  /** ... and to the Get's path inside the entry (a Sequence of several Gets keeps each one's results apart). */
  private readonly resultPathOf = new Map<string, number[]>();

  private async settleTracking(clientFinal: boolean): Promise<void> {
    for (const [id, t] of [...this.tracking]) {
      if (t.outstanding > 0 || t.awaitingResults > 0 || this.lo.active) continue;
      // A client whose Results do not fit one message sends one Results per item (or chunks) over
      // several messages: settling at the first one recorded a partial result. They are all in by
      // the end of the client's package.
      if (t.resultsUntilFinal && !clientFinal) continue;
      if (this.outbox.some((o) => this.outboxEntries.get(o)?.entry.id === id)) continue;
      this.tracking.delete(id);
      const top = t.statuses.find((s) => s.path.length === 0);
      const route = t.entry.route;
      // Results of a routed command are reported with the device's own URIs.
      const unmap = (u: string): string => (route ? stripPrefix(route.prefix, u) : u);
      const outcome: CommandOutcome = {
        status: top?.status ?? 500,
        statuses: t.statuses.map((x) => (x.target !== undefined ? { ...x, target: unmap(x.target) } : x)),
        results: route ? mapItems(t.results, unmap) : t.results,
        resultPaths: t.resultPaths,
      };
      if (route && outcome.status === 202 && top?.deferred) {
        // The gateway accepted it for a device it could not reach in time: the result follows in a
        // DeferredResult alert (src/server/server.ts), so it is neither done nor sent again.
        await this.deps.queue.markAccepted(t.entry);
        this.deps.log('info', `${t.entry.command.kind} for ${t.entry.deviceId} accepted by ${this.deviceId}; result to follow`, { entry: t.entry.id });
        continue;
      }
      await this.deps.queue.complete(t.entry, outcome);
      if (this.deps.logEnabled?.('info') !== false) {
        this.deps.log('info', `${t.entry.command.kind} ${describeTarget(t.entry.command)} on ${this.deviceId}: ${outcome.status}`, { entry: t.entry.id });
      }
    }
  }

  private async pullQueue(): Promise<void> {
    const pending = await this.deps.queue.deliverable(this.deviceId);
    for (const e of pending) {
      if (this.tracking.has(e.id) || this.offered.has(e.id)) continue;
      this.offered.add(e.id);
      // A command for a device behind this gateway goes to its mount point (GwMO proxy mode).
      const route = e.route;
      const cmd = route ? mapCommandUris(e.command, (u) => prefixUri(route.prefix, u)) : e.command;
      this.outbox.push(cmd);
      this.outboxEntries.set(cmd, { entry: e, chunk: false });
    }
  }

  /** Packs statuses and (optionally) queued commands into the next message. */
  private async reply(
    inb: InboundMessage,
    statuses: Outgoing[],
    opts: { final: boolean; trailer?: Outgoing[]; commands?: boolean },
  ): Promise<OutboundMessage> {
    // One header per message: packing again after a split must not consume another MsgID.
    const hdr = this.makeHdr(inb.message.hdr);
    const packOpts = { encoding: inb.encoding, maxMsgSize: this.clientMaxMsgSize, final: opts.final, ...(opts.trailer ? { trailer: opts.trailer } : {}) };
    const packNext = () => {
      const queue = opts.commands ? [...statuses, ...this.outbox] : statuses;
      return { queue, ...pack(hdr, queue, packOpts) };
    };
    let { queue, message, taken, body: encoded } = packNext();
    while (opts.commands && taken === statuses.length && taken < queue.length) {
      // The next command does not fit: split an Add/Replace as a large object, or fail it.
      const next = queue[taken]!;
      const meta = this.outboxEntries.get(next);
      if (!meta) break;
      if ((next.kind === 'Add' || next.kind === 'Replace') && next.items.length === 1) {
        // Cut the largest piece that fits this message (by its encoded size); the rest is cut
        // again in the next messages. (Pieces cut by raw size did not fit once XML-escaped, and
        // re-chunking them recursed until the stack overflowed.)
        const split = splitLargeObject(next, {
          first: !meta.continuation,
          fits: (piece) => packMessage(hdr, [...statuses, piece], { ...packOpts, final: false }).taken === statuses.length + 1,
          minBytes: 64,
          maxBytes: packOpts.maxMsgSize,
        });
        if (split) {
          this.outbox.splice(0, 1, split.piece, split.rest);
          this.outboxEntries.delete(next);
          this.outboxEntries.set(split.piece, { entry: meta.entry, chunk: true });
          this.outboxEntries.set(split.rest, { entry: meta.entry, chunk: false, continuation: true });
          ({ queue, message, taken, body: encoded } = packNext());
          break;
        }
      }
      // A continuation that does not fit here goes first in the next message.
      if (meta.continuation) break;
      this.outbox.shift();
      this.outboxEntries.delete(next);
      this.deps.log('warn', `command ${meta.entry.id} does not fit the client's MaxMsgSize ${this.clientMaxMsgSize}`);
      await this.deps.queue.complete(meta.entry, { status: 413, statuses: [{ path: [], cmd: next.kind, status: 413 }], results: [] });
      ({ queue, message, taken, body: encoded } = packNext());
    }
    if (opts.commands) {
      const sentCmds = this.outbox.splice(0, Math.max(0, taken - statuses.length));
      const body = message.body;
      const sentNow: typeof this.lastSent = [];
      const newlySent: QueueEntry[] = [];
      sentCmds.forEach((cmd, i) => {
        const numbered = body[statuses.length + i]!;
        const meta = this.outboxEntries.get(cmd)!;
        this.outboxEntries.delete(cmd);
        sentNow.push({ cmd, meta });
        this.track(meta.entry, numbered, [], message.hdr.msgID, meta.chunk);
        // Mark once per session (not once ever): an entry left 'sent' by a session that died is
        // redelivered here, and its sessionId/sentAt/attempts must say so. Later chunks of a large
        // object in this same session do not count again.
        const already = meta.entry.state === 'sent' && meta.entry.sessionId === this.sessionId;
        if (!newlySent.includes(meta.entry) && !already) newlySent.push(meta.entry);
      });
      this.lastSent = sentNow;
      if (newlySent.length) await this.deps.queue.markSent(newlySent, this.sessionId);
      if (this.outbox.length > 0 && message.final) {
        message = { ...message, final: false };
        encoded = undefined;
      }
    }
    return this.emit(message, inb.encoding, false, encoded);
  }

  private track(entry: QueueEntry, c: Command, path: number[], msgID: string, chunk: boolean): void {
    let t = this.tracking.get(entry.id);
    if (!t) this.tracking.set(entry.id, (t = { entry, statuses: [], results: [], resultPaths: [], outstanding: 0, awaitingResults: 0 }));
    const target = 'items' in c ? c.items[0]?.target?.locURI : undefined;
    this.inflight.set(`${msgID}:${c.cmdID}`, { entry, path, cmd: c.kind, ...(target !== undefined ? { target } : {}), chunk });
    if (!chunk) t.outstanding++;
    if (c.kind === 'Get') {
      this.resultKeys.set(`${msgID}:${c.cmdID}`, entry.id);
      this.resultPathOf.set(`${msgID}:${c.cmdID}`, path);
    }
    if (c.kind === 'Atomic' || c.kind === 'Sequence') c.commands.forEach((inner, i) => this.track(entry, inner, [...path, i], msgID, false));
  }

  private makeHdr(clientHdr: SyncHdr): SyncHdr {
    const acct = this.account;
    this.msgId++;
    const hdr: SyncHdr = {
      verDTD: '1.2',
      verProto: clientHdr.verProto === 'DM/1.3' ? 'DM/1.3' : 'DM/1.2',
      sessionID: this.sessionId,
      msgID: String(this.msgId),
      target: { locURI: clientHdr.source.locURI },
      source: { locURI: acct?.serverId ?? clientHdr.target.locURI, ...(acct ? { locName: acct.serverId } : {}) },
      meta: { maxMsgSize: this.deps.maxMsgSize },
    };
    // The server authenticates itself until the client answers 212 (basic/MD5 in Cred; HMAC in the header).
    if (acct && !this.serverAccepted && acct.serverAuthType !== 'syncml:auth-MAC') {
      const nonce = nonceCandidates(this.nonces?.serverNonce ?? '')[0] ?? new Uint8Array();
      hdr.cred =
        acct.serverAuthType === 'syncml:auth-basic'
          ? { meta: { type: 'syncml:auth-basic', format: 'b64' }, data: basicCred(acct.serverId, acct.serverSecret) }
          : { meta: { type: 'syncml:auth-md5', format: 'b64' }, data: md5Cred(acct.serverId, acct.serverSecret, nonce) };
    }
    return hdr;
  }

  private emit(message: SyncMLMessage, encoding: Encoding, ended: boolean, encoded?: Uint8Array): OutboundMessage {
    const body = encoded ?? encodeSyncML(message, encoding);
    const acct = this.account;
    const out: OutboundMessage = { body, message, encoding, ended };
    if (acct && acct.serverAuthType === 'syncml:auth-MAC') {
      const nonce = nonceCandidates(this.nonces?.serverNonce ?? '')[0] ?? new Uint8Array();
      out.hmacHeader = formatHmacHeader({ username: acct.serverId, mac: hmacMac(acct.serverId, acct.serverSecret, nonce, body) });
    }
    return out;
  }

  private finish(inb: InboundMessage, statuses: Outgoing[], reason: EndReason): OutboundMessage {
    this.endReason = reason;
    const hdr = this.makeHdr(inb.message.hdr);
    const { message, body } = pack(hdr, statuses, { encoding: inb.encoding, maxMsgSize: Math.max(this.clientMaxMsgSize, 64 * 1024), final: true });
    return this.emit(message, inb.encoding, true, body);
  }
}

/** A short human description of a command's target(s), for logs. */
export function describeTarget(c: Outgoing): string {
  if ('items' in c) return c.items.map((i) => i.target?.locURI ?? i.source?.locURI ?? '').join(',');
  if ('commands' in c) return `[${c.commands.length} commands]`;
  return '';
}
