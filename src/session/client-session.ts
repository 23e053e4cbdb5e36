/**
 * The protocol logic of one DM session on the client (device) side: Package 1 with the DevInfo,
 * authentication of both parties, execution of the server's commands on the device tree through
 * an injected executor, replies split under the server's MaxMsgSize, large objects both ways,
 * multi-message packages (1222), abort (1223). The xstate machine in machines/client-session.ts
 * drives one instance per session.
 */
import { basicCred, formatHmacHeader, hmacMac, md5Cred, newNonce, nonceCandidates, nonceToB64, parseHmacHeader, safeEqual, type AuthType, basicMatches } from '../codec/auth.ts';
import type { AlertCommand, Command, Encoding, Item, OperationCommand, StatusCommand, SyncHdr, SyncMLMessage } from '../codec/model.ts';
import { encodeSyncML } from '../codec/syncml.ts';
import { GwError, describeError } from '../errors.ts';
import { Alert, LargeObjectBuffer, alertCode, cmdStatus, hdrStatus, packMessage, splitLargeObject, type Outgoing } from './common.ts';

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
    let { message, taken } = packMessage(hdr, this.outbox, opts);
    // A Results that does not fit what is left of this message is split so the package can progress
    // (notes §3.7). This used to happen only when nothing at all fitted (taken === 0), which never
    // occurs in practice because statuses always come first: a Results larger than the room after
    // them was deferred forever and the session looped on Alert 1222.
    for (let i = 0; i < 3 && taken < this.outbox.length && this.splitResults(taken, message, opts); i++) {
      ({ message, taken } = packMessage(hdr, this.outbox, opts));
    }
    if (taken === 0 && this.outbox.length > 0) {
      const first = this.outbox[0]!;
      throw new GwError('SESSION_MSG_SIZE', `a ${first.kind} does not fit the server's MaxMsgSize ${this.serverMaxMsgSize}`, { status: 413 });
    }
    this.outbox.splice(0, taken);
    if (this.outbox.length > 0 && message.final) message = { ...message, final: false };
    return this.emit(message);
  }

  /**
   * Makes the Results at `outbox[at]`, which does not fit after what `current` already holds, fit:
   * first one Results per item (same CmdRef/MsgRef; the server collects them until our Final), then
   * the largest piece of a single item that fits the room left is sent as a large-object chunk and
   * the rest waits for the next message (notes §3.7). Returns true when the outbox changed.
   */
  private splitResults(at: number, current: SyncMLMessage, packOpts: Parameters<typeof packMessage>[2]): boolean {
    const next = this.outbox[at]!;
    if (next.kind !== 'Results') return false;
    if (next.items.length > 1) {
      this.outbox.splice(at, 1, ...next.items.map((it) => ({ ...next, items: [it] })));
      return true;
    }
    const before = this.outbox.slice(0, at);
    // An item that would fit whole in the next message (which starts with about two statuses) waits
    // for it rather than becoming a large object.
    const head = before.slice(0, 2);
    if (at > head.length && packMessage(current.hdr, [...head, next], { ...packOpts, final: false }).taken === head.length + 1) return false;
    const split = splitLargeObject(next, {
      first: !this.continuations.has(next),
      fits: (piece) => packMessage(current.hdr, [...before, piece], { ...packOpts, final: false }).taken === at + 1,
      minBytes: 64,
      maxBytes: packOpts.maxMsgSize,
    });
    if (!split) {
      if (at > 0) return false; // little room left here: it starts the next message
      throw new GwError('SESSION_MSG_SIZE', `server MaxMsgSize ${this.serverMaxMsgSize} is too small`, { status: 413 });
    }
    this.continuations.add(split.rest);
    this.outbox.splice(at, 1, split.piece, split.rest);
    return true;
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

  private emit(message: SyncMLMessage): ClientOutbound {
    const body = encodeSyncML(message, this.deps.encoding);
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
