/**
 * The protocol logic of one DM session on the client (device) side: Package 1 with the DevInfo,
 * authentication of both parties, execution of the server's commands on the device tree through
 * an injected executor, replies split under the server's MaxMsgSize, large objects both ways,
 * multi-message packages (1222), abort (1223). The xstate machine in machines/client-session.ts
 * drives one instance per session.
 */
import { basicCred, formatHmacHeader, hmacMac, md5Cred, newNonce, nonceCandidates, nonceToB64, parseHmacHeader, safeEqual, type AuthType, basicMatches } from '../codec/auth.ts';
import type { AlertCommand, Command, DataValue, Encoding, Item, OperationCommand, StatusCommand, SyncHdr, SyncMLMessage } from '../codec/model.ts';
import { encodeSyncML } from '../codec/syncml.ts';
import { GwError, describeError } from '../errors.ts';
import { Alert, LargeObjectBuffer, MIN_MSG_SIZE, alertCode, cmdStatus, hdrStatus, numberCommands, packMessage, withChunkMeta, type Outgoing } from './common.ts';

/** Credentials of one party as the client holds them (DMAcc AppAuth, notes §5.3). */
export interface ClientCredentials {
  type: AuthType;
  name: string;
  secret: string;
  /** base64 nonce. */
  nonce: string;
}

/** Everything a client session needs from its device. */
export interface ClientSessionDeps {
  deviceId: string;
  serverUri: string;
  serverId: string;
  /** The client's own credentials (CLCRED). */
  client: ClientCredentials;
  /** What the client expects of the server (SRVCRED). */
  server: ClientCredentials;
  devInfo: Record<string, string>;
  encoding: Encoding;
  maxMsgSize: number;
  /** Executes server commands on the tree; returns statuses and results in order. */
  execute(commands: OperationCommand[], msgRef: string): Promise<Outgoing[]>;
  /** Persists a nonce in DMAcc (only ever with a nonce from an authenticated peer). */
  storeNonce(level: 'CLCRED' | 'SRVCRED', nonceB64: string): Promise<void>;
  log(level: 'info' | 'warn' | 'error' | 'debug', msg: string, fields?: Record<string, unknown>): void;
}

/** A message the client sends. */
export interface ClientOutbound {
  body: Uint8Array;
  message: SyncMLMessage;
  hmacHeader?: string;
  /** Where to send it (the server's RespURI once given). */
  url: string;
}

/** Why the client session ended. */
export type ClientEndReason = 'completed' | 'aborted-by-server' | 'auth-failed' | 'server-auth-failed' | 'protocol-error';

/** Client side of one DM session. */
export class ClientSession {
  readonly sessionId: string;
  private readonly deps: ClientSessionDeps;
  private readonly initiator: 'server' | 'client';
  private readonly alerts: Omit<AlertCommand, 'cmdID'>[];
  private msgId = 0;
  private clientAuthenticated = false;
  private serverAuthenticated = false;
  private clientNonce: string;
  private authRestarts = 0;
  private serverRejections = 0;
  private serverMaxMsgSize = 16 * 1024;
  private url: string;
  private readonly outbox: Outgoing[] = [];
  /** Remainders of Results items being sent as large objects (their pieces carry no Meta Size). */
  private readonly continuations = new WeakSet<Outgoing>();
  private readonly lo = new LargeObjectBuffer();
  /** The encoded message with the large-object piece splitResults just cut (it measured it). */
  private encodedCut: Uint8Array | undefined;
  private loCommand: { kind: 'Add' | 'Replace'; cmd: Command } | undefined;
  endReason: ClientEndReason | undefined;
  /** Commands executed in this session, for the device's log and tests. */
  executed: { cmd: string; target: string; status: string }[] = [];

  constructor(sessionId: string, initiator: 'server' | 'client', deps: ClientSessionDeps, alerts: Omit<AlertCommand, 'cmdID'>[] = []) {
    this.sessionId = sessionId;
    this.initiator = initiator;
    this.deps = deps;
    this.alerts = alerts;
    this.clientNonce = deps.client.nonce;
    this.url = deps.serverUri;
  }

  /** True once the session is over. */
  get ended(): boolean {
    return this.endReason !== undefined;
  }

  /** Package 1: the session alert, the DevInfo, and any generic alerts (notes §3.6). */
  start(): ClientOutbound {
    const body: Outgoing[] = [
      { kind: 'Alert', data: this.initiator === 'server' ? Alert.ServerInitiated : Alert.ClientInitiated, items: [] },
      {
        kind: 'Replace',
        items: Object.entries(this.deps.devInfo).map(([k, v]) => ({ source: { locURI: `./DevInfo/${k}` }, data: v })),
      },
      ...this.alerts,
    ];
    return this.send(body, true);
  }

  /** Handles one server message; returns the next client message, or undefined when the session is over. */
  async handle(msg: SyncMLMessage, raw: Uint8Array, hmacHeader: string | undefined): Promise<ClientOutbound | undefined> {
    // After an abort the server's status-only answer needs no reply (notes §3.6 "Abort").
    if (this.endReason) return undefined;
    const hdr = msg.hdr;
    if (hdr.respURI) this.url = hdr.respURI;
    if (hdr.meta?.maxMsgSize) this.serverMaxMsgSize = hdr.meta.maxMsgSize;
    const statuses: Outgoing[] = [];

    // --- the server's verdict on our credentials
    const hs = msg.body.find((c): c is StatusCommand => c.kind === 'Status' && c.cmdRef === '0');
    if (hs) {
      const code = Number(hs.data);
      const nonce = hs.chal?.meta.nextNonce;
      if (code === 401 || code === 407) {
        if (hs.chal?.meta.type && hs.chal.meta.type.toLowerCase() !== this.deps.client.type.toLowerCase()) {
          this.deps.log('error', `server asks for ${hs.chal.meta.type}, the account uses ${this.deps.client.type}`);
          this.endReason = 'auth-failed';
          return undefined;
        }
        // Use the newest nonce even from a not yet authenticated server, but do not store it (notes §5.2).
        if (nonce) this.clientNonce = nonce;
        this.authRestarts++;
        if (this.authRestarts > 2 || !hs.chal) {
          this.deps.log('error', `authentication rejected by the server (${code})`);
          this.endReason = 'auth-failed';
          return undefined;
        }
        this.deps.log('info', `server challenged (${code}); re-sending package 1`);
        this.clientAuthenticated = false;
        return this.start();
      }
      if (code === 212) this.clientAuthenticated = true;
      if (nonce) this.clientNonce = nonce;
    }

    // --- authenticate the server before executing anything it sends
    const verdict = this.verifyServer(msg, raw, hmacHeader);
    const commands = msg.body.filter((c) => c.kind !== 'Status' && c.kind !== 'Results');
    if (!verdict.ok) {
      this.serverRejections++;
      this.deps.log('warn', `server credentials rejected: ${verdict.why}`);
      if (this.serverRejections > 2) {
        // Give up, but say so (Alert 1223) so the server closes the session now, not at its idle timeout.
        return this.abort('the server failed to authenticate', 'server-auth-failed');
      }
      if (commands.length === 0 && msg.final) {
        // Nothing was asked of us and the server closed its package: there is nobody to answer.
        this.endReason = 'server-auth-failed';
        return undefined;
      }
      const next = nonceToB64(newNonce());
      // The server is not authenticated, so the nonce it must use is ours to choose and store.
      await this.deps.storeNonce('SRVCRED', next);
      this.deps.server.nonce = next;
      statuses.push(hdrStatus(hdr, verdict.code, { chal: { meta: { type: this.deps.server.type, format: 'b64', nextNonce: next } } }));
      for (const c of commands) statuses.push(cmdStatus(hdr.msgID, c, verdict.code));
      return this.send(statuses, true);
    }
    const serverAuthNow = verdict.code === 212 || verdict.code === 200;
    const wasAuthenticated = this.serverAuthenticated;
    if (serverAuthNow) {
      this.serverAuthenticated = this.serverAuthenticated || verdict.code === 212 || this.deps.server.type === 'syncml:auth-MAC';
    }
    // The server is authenticated: a nonce it handed us with 212/200 may now be stored.
    if (this.clientNonce !== this.deps.client.nonce) {
      this.deps.client.nonce = this.clientNonce;
      await this.deps.storeNonce('CLCRED', this.clientNonce);
    }

    // --- execute the server's commands, in order
    let wantsNext = false;
    const runnable: OperationCommand[] = [];
    const flush = async (): Promise<void> => {
      if (!runnable.length) return;
      const out = await this.deps.execute(runnable.splice(0), hdr.msgID);
      for (const o of out) {
        if (o.kind === 'Status' && o.cmdRef !== '0') this.executed.push({ cmd: o.cmd, target: o.targetRefs.join(','), status: o.data });
      }
      statuses.push(...out);
    };
    for (const c of commands) {
      if (this.lo.active && !(this.loCommand && c.kind === this.loCommand.kind && 'items' in c && c.items[0]?.target?.locURI === this.lo.key)) {
        // Anything between chunks interrupts the large object: Alert 1225 (notes §3.7).
        const first = this.lo.abandon();
        statuses.push({ kind: 'Alert', data: Alert.NoEndOfData, items: first?.target ? [{ target: first.target }] : [] });
        this.loCommand = undefined;
      }
      if (c.kind === 'Alert') {
        const code = alertCode(c);
        if (code === Alert.SessionAbort) {
          this.deps.log('info', 'server aborted the session');
          this.endReason = 'aborted-by-server';
          return undefined;
        }
        if (code === Alert.NextMessage) {
          statuses.push(cmdStatus(hdr.msgID, c, 200));
          wantsNext = true;
          continue;
        }
      }
      if ((c.kind === 'Add' || c.kind === 'Replace') && c.items.length === 1 && (c.items[0]!.moreData || this.lo.active)) {
        const res = this.lo.feed(c.items[0]!.target?.locURI ?? '', c.items[0]!);
        if (res.state === 'partial') {
          this.loCommand = { kind: c.kind, cmd: c };
          await flush();
          statuses.push(cmdStatus(hdr.msgID, c, 213));
          continue;
        }
        this.loCommand = undefined;
        if (res.state === 'mismatch') {
          await flush();
          statuses.push(cmdStatus(hdr.msgID, c, 424));
          continue;
        }
        runnable.push({ ...c, items: [res.item] });
        continue;
      }
      if (c.kind === 'Unsupported') {
        await flush();
        statuses.push(cmdStatus(hdr.msgID, c, 406));
        continue;
      }
      runnable.push(c as OperationCommand);
    }
    await flush();

    const hasCommands = commands.length > 0;
    if (!hasCommands && msg.final && this.outbox.length === 0 && !wantsNext && verdict.code !== 401) {
      // A server package with no commands ends the session; the client does not answer it (notes §3.6).
      this.endReason = 'completed';
      return undefined;
    }
    // Rotate the server's nonce once per session (per message with HMAC), now that it is
    // authenticated, and only in a message that will actually be sent (else both sides diverge).
    let chal: StatusCommand['chal'];
    if (serverAuthNow && (!wasAuthenticated || this.deps.server.type === 'syncml:auth-MAC')) {
      const next = nonceToB64(newNonce());
      await this.deps.storeNonce('SRVCRED', next);
      this.deps.server.nonce = next;
      chal = { meta: { type: this.deps.server.type, format: 'b64', nextNonce: next } };
    }
    statuses.unshift(hdrStatus(hdr, serverAuthNow ? verdict.code : 200, chal ? { chal } : {}));
    this.outbox.unshift(...statuses);
    if (!msg.final && !wantsNext) {
      // The server's package continues: answer without Final and ask for the next message.
      return this.sendOutbox(false, [{ kind: 'Alert', data: Alert.NextMessage, items: [] }]);
    }
    // A final server message, or a "next message" reply (Alert 1222 without Final: the server has
    // closed its package and asks for the rest of ours, notes §3.7): send what is left, with Final
    // on the last part. Answering such a reply with another 1222 (as before) looped forever as
    // soon as our replies needed more than one message.
    return this.sendOutbox(true);
  }

  /** Why the device gave up, when it aborted. */
  abortReason: string | undefined;

  /** Builds the abort message (Alert 1223) for a session the device gives up; pending replies are dropped. */
  abort(reason: string, endReason: ClientEndReason = 'protocol-error'): ClientOutbound {
    this.endReason = endReason;
    this.abortReason = reason;
    this.outbox.length = 0;
    return this.send([{ kind: 'Alert', data: Alert.SessionAbort, items: [] }], true);
  }

  private verifyServer(msg: SyncMLMessage, raw: Uint8Array, hmacHeader: string | undefined): { ok: boolean; code: number; why?: string } {
    const srv = this.deps.server;
    if (srv.type === 'syncml:auth-MAC') {
      if (!hmacHeader) return { ok: false, code: 407, why: 'x-syncml-hmac header missing' };
      try {
        const h = parseHmacHeader(hmacHeader);
        if (h.username !== srv.name) return { ok: false, code: 401, why: `HMAC from "${h.username}", expected "${srv.name}"` };
        const ok = nonceCandidates(srv.nonce).some((n) => safeEqual(hmacMac(srv.name, srv.secret, n, raw), h.mac));
        return ok ? { ok: true, code: 200 } : { ok: false, code: 401, why: 'HMAC digest does not match' };
      } catch (err) {
        return { ok: false, code: 401, why: describeError(err) };
      }
    }
    const cred = msg.hdr.cred;
    if (!cred) {
      if (this.serverAuthenticated) return { ok: true, code: 0 };
      return { ok: false, code: 407, why: 'the server sent no credentials' };
    }
    const type = (cred.meta?.type ?? 'syncml:auth-basic').toLowerCase();
    if (type !== srv.type.toLowerCase()) return { ok: false, code: 401, why: `server used ${type}, expected ${srv.type}` };
    if (srv.type === 'syncml:auth-basic') {
      const ok = basicMatches(cred.data, srv.name, srv.secret);
      return ok ? { ok: true, code: 212 } : { ok: false, code: 401, why: 'wrong server id or password' };
    }
    const ok = nonceCandidates(srv.nonce).some((n) => safeEqual(md5Cred(srv.name, srv.secret, n), cred.data.trim()));
    return ok ? { ok: true, code: 212 } : { ok: false, code: 401, why: 'server MD5 digest does not match' };
  }

  private sendOutbox(final: boolean, trailer: Outgoing[] = []): ClientOutbound {
    const hdr = this.makeHdr();
    const opts = { encoding: this.deps.encoding, maxMsgSize: this.serverMaxMsgSize, final, trailer };
    const limit = Math.max(opts.maxMsgSize, MIN_MSG_SIZE);
    const pack = (): { message: SyncMLMessage; taken: number } => {
      // A command with an item larger than a whole message never fits: packing stops there anyway,
      // so the commands from it on are left out of the measuring (with Final off, as it would be).
      const big = this.outbox.findIndex((o) => oversized(o, limit));
      return big < 0 ? packMessage(hdr, this.outbox, opts) : packMessage(hdr, this.outbox.slice(0, big), { ...opts, final: false });
    };
    let { message, taken } = pack();
    /** The bytes of `message` when they were already encoded (a large-object piece just cut). */
    let encoded: Uint8Array | undefined;
    this.encodedCut = undefined;
    // A Results that does not fit what is left of this message is split so the package can progress
    // (notes §3.7). This used to happen only when nothing at all fitted (taken === 0), which never
    // occurs in practice because statuses always come first: a Results larger than the room after
    // them was deferred forever and the session looped on Alert 1222.
    for (let i = 0; i < 3 && taken < this.outbox.length; i++) {
      const split = this.splitResults(taken, message, opts);
      if (!split) break;
      if (split === 'cut') {
        // The piece was cut to the largest that fits after what the message holds (by packMessage's
        // own rule, see splitResults), so the message is those commands and the piece, already
        // encoded there, and there is no room for more (another piece would need more than one
        // more byte): no need to pack or encode again.
        taken += 1;
        message = { hdr, body: numberCommands([...this.outbox.slice(0, taken), ...trailer]), final: false };
        encoded = this.encodedCut;
        break;
      }
      ({ message, taken } = pack());
    }
    if (taken === 0 && this.outbox.length > 0) {
      const first = this.outbox[0]!;
      throw new GwError('SESSION_MSG_SIZE', `a ${first.kind} does not fit the server's MaxMsgSize ${this.serverMaxMsgSize}`, { status: 413 });
    }
    this.outbox.splice(0, taken);
    if (this.outbox.length > 0 && message.final) message = { ...message, final: false };
    return this.emit(message, encoded);
  }

  /**
   * Makes the Results at `outbox[at]`, which does not fit after what `current` already holds, fit:
   * first one Results per item (same CmdRef/MsgRef; the server collects them until our Final), then
   * the largest piece of a single item that fits the room left is sent as a large-object chunk and
   * the rest waits for the next message (notes §3.7). Returns how the outbox changed (`items`: split
   * into one Results per item; `cut`: a piece cut off), or false when it did not.
   */
  private splitResults(at: number, current: SyncMLMessage, packOpts: Parameters<typeof packMessage>[2]): 'items' | 'cut' | false {
    const next = this.outbox[at]!;
    if (next.kind !== 'Results') return false;
    if (next.items.length > 1) {
      this.outbox.splice(at, 1, ...next.items.map((it) => ({ ...next, items: [it] })));
      return 'items';
    }
    const before = this.outbox.slice(0, at);
    const limit = Math.max(packOpts.maxMsgSize, MIN_MSG_SIZE);
    // An item that would fit whole in the next message (which starts with about two statuses) waits
    // for it rather than becoming a large object.
    const head = before.slice(0, 2);
    // (An item larger than a whole message never does.)
    if (at > head.length && !oversized(next, limit) && packMessage(current.hdr, [...head, next], { ...packOpts, final: false }).taken === head.length + 1) return false;
    const trailer = packOpts.trailer ?? [];
    const encodedSize = (cmds: Outgoing[], final: boolean): number => encodeSyncML({ hdr: current.hdr, body: numberCommands(cmds), final }, this.deps.encoding).byteLength;
    // What packMessage([...before, piece]) decides, computed the way it does (an estimate from each
    // command measured alone, then the real size, here with its bytes kept): the message of the
    // chosen piece is then sent without being encoded again.
    const empty = encodedSize([], false);
    let estimate = encodedSize(trailer, true);
    for (const c of before) estimate += encodedSize([c], false) - empty;
    let fitted: { piece: Outgoing; body: Uint8Array } | undefined;
    const split = splitToFit(next, {
      first: !this.continuations.has(next),
      fits: (piece) => {
        if (estimate + encodedSize([piece], false) - empty > limit) return false;
        const body = encodeSyncML({ hdr: current.hdr, body: numberCommands([...before, piece, ...trailer]), final: false }, this.deps.encoding);
        if (body.byteLength > limit) return false;
        fitted = { piece, body };
        return true;
      },
      size: (piece) => encodedSize([...before, piece, ...trailer], false),
      strictness: (piece) => estimate + encodedSize([piece], false) - empty - encodedSize([...before, piece, ...trailer], false),
      limit,
      minBytes: 64,
      maxBytes: packOpts.maxMsgSize,
    });
    if (!split) {
      if (at > 0) return false; // little room left here: it starts the next message
      throw new GwError('SESSION_MSG_SIZE', `server MaxMsgSize ${this.serverMaxMsgSize} is too small`, { status: 413 });
    }
    if (fitted?.piece === split.piece) this.encodedCut = fitted.body;
    this.continuations.add(split.rest);
    this.outbox.splice(at, 1, split.piece, split.rest);
    return 'cut';
  }

  private send(cmds: Outgoing[], final: boolean): ClientOutbound {
    this.outbox.unshift(...cmds);
    return this.sendOutbox(final);
  }

  private makeHdr(): SyncHdr {
    this.msgId++;
    const c = this.deps.client;
    const hdr: SyncHdr = {
      verDTD: '1.2',
      verProto: 'DM/1.2',
      sessionID: this.sessionId,
      msgID: String(this.msgId),
      target: { locURI: this.deps.serverUri },
      source: { locURI: this.deps.deviceId, locName: c.name },
      meta: { maxMsgSize: this.deps.maxMsgSize },
    };
    if (!this.clientAuthenticated && c.type !== 'syncml:auth-MAC') {
      const nonce = nonceCandidates(this.clientNonce)[0] ?? new Uint8Array();
      hdr.cred =
        c.type === 'syncml:auth-basic'
          ? { meta: { type: 'syncml:auth-basic', format: 'b64' }, data: basicCred(c.name, c.secret) }
          : { meta: { type: 'syncml:auth-md5', format: 'b64' }, data: md5Cred(c.name, c.secret, nonce) };
    }
    return hdr;
  }

  private emit(message: SyncMLMessage, encoded?: Uint8Array): ClientOutbound {
    const body = encoded ?? encodeSyncML(message, this.deps.encoding);
    const out: ClientOutbound = { body, message, url: this.url };
    const c = this.deps.client;
    if (c.type === 'syncml:auth-MAC') {
      const nonce = nonceCandidates(this.clientNonce)[0] ?? new Uint8Array();
      out.hmacHeader = formatHmacHeader({ username: c.name, mac: hmacMac(c.name, c.secret, nonce, body) });
    }
    return out;
  }
}

/** The generic alert items of a 1226 Alert (notes §3.9). */
export function genericAlert(items: Item[], correlator?: string): Omit<AlertCommand, 'cmdID'> {
  return { kind: 'Alert', data: Alert.Generic, items, ...(correlator !== undefined ? { correlator } : {}) };
}

/**
 * Whether a command holds a data item larger than a whole message of `limit` bytes. Encoding never
 * makes data smaller (XML escapes or base64, WBXML adds a length), so such a command never fits a
 * message whole: packing stops at it, and measuring it (encoding a large object's whole remainder,
 * megabytes for a fanout Report of 10,000 members, at every message of its transfer) is wasted.
 */
export function oversized(o: Outgoing, limit: number): boolean {
  if (!('items' in o) || !Array.isArray(o.items)) return false;
  // A string's UTF-8 length is at least its length in UTF-16 units.
  return o.items.some((it: Item) => it.data !== undefined && (typeof it.data === 'string' ? it.data.length : it.data.byteLength) > limit);
}

/**
 * Cuts the largest first piece off a single-item command's data such that `fits(piece)` (a large
 * object chunk, notes §3.7), the rest to follow in the next messages; undefined when less than
 * `minBytes` would fit. The same cut as common.ts `splitLargeObject` (the largest piece, never
 * inside a UTF-8 sequence, Meta Size on the first piece only), found with far fewer encodings of
 * message-sized pieces: instead of bisecting the whole range with `fits` (two encodings of a
 * message-sized piece per step, ~16 steps per message), it predicts the cut from the encoded cost of
 * the data measured in small blocks, then confirms it with `fits` (twice when the prediction is
 * right; galloping and bisection around it when not, so the result is exact either way).
 */
export function splitToFit<T extends { items: Item[] }>(
  cmd: T,
  opts: {
    first: boolean;
    fits: (piece: T) => boolean;
    /** The encoded size of the message `fits` would build with this piece. */
    size: (piece: T) => number;
    /** How much stricter than `size <= limit` fits is (measured with an empty piece); 0 if unknown. */
    strictness?: (piece: T) => number;
    limit: number;
    minBytes?: number;
    maxBytes?: number;
  },
): { piece: T; rest: T } | undefined {
  const item = cmd.items[0]!;
  const data: DataValue = item.data ?? '';
  const text = typeof data === 'string';
  // ASCII text (the common case: XML reports, URIs, numbers) is cut by string index, with no copy
  // of the whole remainder into a buffer and back at every message.
  const ascii = text && Buffer.byteLength(data) === data.length;
  const bytes = ascii ? undefined : text ? Buffer.from(data, 'utf8') : Buffer.from(data);
  const length = bytes ? bytes.length : (data as string).length;
  if (length < 2) return undefined;
  const slice = (from: number, to: number): DataValue =>
    ascii ? (data as string).slice(from, to) : text ? bytes!.subarray(from, to).toString('utf8') : new Uint8Array(bytes!.subarray(from, to));
  // Never cut inside a UTF-8 sequence.
  const boundary = (n: number): number => {
    if (!text || ascii) return n;
    while (n > 0 && n < bytes!.length && (bytes![n]! & 0xc0) === 0x80) n--;
    return n;
  };
  const withMeta = (it: Item, size: number | undefined): Item => withChunkMeta(item, it, size);
  /** The command with the data from `from` to `to` as a chunk (Meta Size on the first piece only). */
  const withData = (from: number, to: number): T =>
    ({ ...cmd, items: [withMeta({ ...item, data: slice(from, to), moreData: true }, opts.first ? length : undefined)] }) as T;
  // The same object for the same cut: the caller may recognise the piece it measured last.
  const pieces = new Map<number, T>();
  const pieceOf = (n: number): T => {
    let p = pieces.get(n);
    if (!p) pieces.set(n, (p = withData(0, n)));
    return p;
  };
  /** The smallest character boundary above `n` and below `below`, if any. */
  const nextBoundary = (n: number, below: number): number | undefined => {
    for (let m = n + 1; m < below; m++) if (boundary(m) === m) return m;
    return undefined;
  };
  const top = boundary(Math.min(length - 1, opts.maxBytes ?? Number.POSITIVE_INFINITY));
  const ok = (n: number): boolean => n > 0 && opts.fits(pieceOf(n));
  // 1. A guess: data costs the same encoded bytes wherever it is cut (XML escapes each character on
  // its own; WBXML strings are bytes), so the encoded cost of the data is measured in blocks, each
  // in a message of its own (small encodings), until the room is used up, then within the last
  // block by bisection. The room is what an empty piece leaves, less the packer's strictness.
  const guess = (): number => {
    const block = Math.max(256, Math.floor(opts.limit / 16));
    const blockEnd = (at: number): number => {
      const to = Math.min(top, boundary(at + block));
      return to > at ? to : (nextBoundary(at, top + 1) ?? top);
    };
    const sizeOf = (from: number, to: number): number => opts.size(withData(from, to));
    const strictness = Math.max(0, opts.strictness?.(withData(0, 0)) ?? 0);
    // Not even an empty piece fits (the commands before it fill the message): nothing will.
    if (sizeOf(0, 0) + strictness > opts.limit) return 0;
    // The message without the data's own bytes: from two blocks and their concatenation (an empty
    // Data may be written differently from a non-empty one, e.g. as an empty tag).
    const t0 = blockEnd(0);
    const t1 = t0 < top ? blockEnd(t0) : t0;
    const base = t0 > 0 && t1 > t0 ? sizeOf(0, t0) + sizeOf(t0, t1) - sizeOf(0, t1) : sizeOf(0, 0);
    const budget = opts.limit - base - strictness;
    const cost = (from: number, to: number): number => sizeOf(from, to) - base;
    let used = 0;
    for (let at = 0; at < top; ) {
      const to = blockEnd(at);
      const c = cost(at, to);
      if (used + c > budget) {
        // Within the block: interpolate on the cost, never past lo + what is left (a byte of data
        // costs at least a byte), bisecting whenever that does not halve the bracket.
        let lo = at;
        let costLo = 0;
        let hi = to;
        let costHi = c;
        for (let m = nextBoundary(lo, hi), halve = false; m !== undefined; m = nextBoundary(lo, hi)) {
          const left = budget - used - costLo;
          const guessed = halve ? lo + Math.ceil((hi - lo) / 2) : Math.min(lo + Math.floor((left * (hi - lo)) / (costHi - costLo)), lo + left);
          const b = boundary(Math.min(Math.max(guessed, lo + 1), hi - 1));
          const n = b > lo ? b : m;
          const width = hi - lo;
          const k = cost(at, n);
          if (used + k <= budget) {
            lo = n;
            costLo = k;
          } else {
            hi = n;
            costHi = k;
          }
          halve = hi - lo > width / 2;
        }
        return lo;
      }
      used += c;
      at = to;
    }
    return top;
  };
  // 2. The exact cut, with `fits` (the packer's own test) around the guess: a fitting piece whose
  // next larger one does not fit. Usually two calls; galloping when the guess is off.
  let lo = 0;
  let hi = top + 1;
  const g = Math.min(top, Math.max(0, guess()));
  if (g > 0 && ok(g)) {
    lo = g;
    for (let step = 1; ; step *= 2) {
      let n = lo + step >= hi ? top : boundary(lo + step);
      if (n <= lo) n = nextBoundary(lo, hi) ?? hi;
      if (n >= hi) break;
      if (ok(n)) lo = n;
      else {
        hi = n;
        break;
      }
    }
  } else if (g === 0) {
    // Predicted not to fit at all (typically: the commands before it fill the message already).
    const first = nextBoundary(0, hi);
    if (first !== undefined && !ok(first)) hi = first;
  } else {
    hi = g;
    for (let step = 1; ; step *= 2) {
      const n = boundary(Math.max(0, hi - step));
      if (n <= 0) break;
      if (ok(n)) {
        lo = n;
        break;
      }
      hi = n;
    }
  }
  // lo fits (or is 0), hi does not (or is past the range): bisect what is left between them.
  for (let m = nextBoundary(lo, hi); m !== undefined; m = nextBoundary(lo, hi)) {
    const mid = boundary(lo + Math.ceil((hi - lo) / 2));
    const n = mid > lo ? mid : m;
    if (ok(n)) lo = n;
    else hi = n;
  }
  if (lo < (opts.minBytes ?? 1)) return undefined;
  const restItem: Item = withMeta({ ...item, data: slice(lo, length) }, undefined);
  delete restItem.moreData;
  return { piece: pieceOf(lo), rest: { ...cmd, items: [restItem] } as T };
}
