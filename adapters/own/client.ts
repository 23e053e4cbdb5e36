/**
 * OpenWebNet client: TCP sessions to a MyHOME gateway (default port 20000).
 *
 * Every connection starts the same way: the gateway greets with ACK, the client names the session
 * (`*99*0##` command, `*99*1##` event) and the gateway either ACKs at once (no password: the client's
 * address is in the gateway's trusted range), sends an OPEN nonce `*#<digits>##`, or asks for HMAC
 * with `*98*1##` / `*98*2##` (see auth.ts). A refused password is a NACK.
 *
 * - `OwnSession` is one authenticated connection. On a command session `request(frame)` sends one
 *   frame and collects the answer: zero or more status/dimension frames, then ACK (success) or NACK.
 *   On an event session `onFrame` receives what happens on the bus.
 * - `OwnCommandPool` runs requests on command sessions. Real gateways drop an idle command session
 *   after about 30 s and some accept only one command per session; `mode: 'keep'` keeps sessions
 *   open between requests (closed after `idleMs`, reopened on demand, discarded on any error), and
 *   `mode: 'perCommand'` opens a fresh session per request, the way the MyHOME apps do.
 *
 * Errors are DmStatusError so the adapter can pass them on: 461 timeout (no answer in time),
 * 503 gateway unreachable (connect failed or dropped), 500 authentication refused / NACK / garbage.
 * The password never appears in an error or log line.
 */
import { Socket, connect } from 'node:net';
import { DmStatusError } from '../../src/errors.ts';
import { algoOfDigits, clientDigest, digitsToHex, hexToDigits, isOpenPassword, openPassword, randomHex, serverDigest } from './auth.ts';
import { ACK, COMMAND_SESSION, EVENT_SESSION, FrameSplitter, HMAC_SHA1, HMAC_SHA256, NACK, OwnCodecError } from './frames.ts';

/** How to reach and authenticate with a gateway. */
export interface OwnEndpoint {
  host: string;
  port: number;
  /** OPEN (numeric) or HMAC password; undefined when the gateway trusts our address. */
  password?: string | undefined;
  /** Milliseconds for connect + authentication, and for each request's answer. */
  timeoutMs: number;
}

/** A gateway answered NACK to a request. */
export class OwnNackError extends DmStatusError {
  constructor(
    readonly frame: string,
    readonly replies: string[],
  ) {
    super(500, 'OWN_NACK', `the gateway refused ${frame} (NACK)`);
    this.name = 'OwnNackError';
  }
}

const timeout = (what: string, ms: number): DmStatusError => new DmStatusError(461, 'OWN_TIMEOUT', `no answer from the OpenWebNet gateway to ${what} within ${ms} ms`);
const authFailed = (why: string): DmStatusError => new DmStatusError(500, 'OWN_AUTH_FAILED', `OpenWebNet authentication failed: ${why}`);

/** Splits "host:port" (port defaults to 20000, the MyHOME OWN port). */
export function parseGatewayAddr(addr: string): { host: string; port: number } {
  const m = /^\[?([^\]]+?)\]?(?::(\d{1,5}))?$/.exec(addr.trim());
  const port = m?.[2] === undefined ? 20000 : Number(m[2]);
  if (!m || !m[1] || !(port >= 1 && port <= 65535)) throw new DmStatusError(400, 'OWN_BAD_ADDR', `GatewayAddr must be host[:port], not ${JSON.stringify(addr)}`);
  return { host: m[1], port };
}

/** One authenticated OWN session. */
export class OwnSession {
  private readonly splitter = new FrameSplitter();
  private readonly inbox: string[] = [];
  private waiter: (() => void) | undefined;
  private closedWith: DmStatusError | undefined;
  private queue: Promise<unknown> = Promise.resolve();
  /** Frames of an event session, once authenticated. */
  onFrame: ((frame: string) => void) | undefined;
  /** Called once when the session ends for any reason other than `close()`. */
  onClose: ((reason: string) => void) | undefined;
  private ready = false;
  private closing = false;

  private constructor(
    private readonly socket: Socket,
    readonly kind: 'command' | 'event',
  ) {
    socket.setNoDelay(true);
    socket.on('data', (chunk: Buffer) => {
      let frames: string[];
      try {
        frames = this.splitter.push(chunk);
      } catch (err) {
        this.fail(new DmStatusError(500, 'OWN_BAD_FRAME', (err as OwnCodecError).message));
        return;
      }
      for (const f of frames) {
        if (this.ready && this.kind === 'event' && this.onFrame) this.onFrame(f);
        else this.inbox.push(f);
      }
      this.wake();
    });
    socket.on('error', (err: NodeJS.ErrnoException) => this.fail(new DmStatusError(503, 'OWN_UNREACHABLE', `OpenWebNet gateway connection: ${err.code ?? err.message}`)));
    socket.on('close', () => this.fail(new DmStatusError(503, 'OWN_CLOSED', 'the OpenWebNet gateway closed the session')));
  }

  private wake(): void {
    const w = this.waiter;
    this.waiter = undefined;
    w?.();
  }

  private fail(err: DmStatusError): void {
    if (this.closedWith) return;
    this.closedWith = err;
    this.socket.destroy();
    this.wake();
    if (!this.closing) this.onClose?.(err.message);
  }

  /** Event session: starts delivering frames (those already received first) and reports its end. */
  listen(onFrame: (frame: string) => void, onClose: (reason: string) => void): void {
    this.onFrame = onFrame;
    this.onClose = onClose;
    for (const f of this.inbox.splice(0)) onFrame(f);
    if (this.closedWith && !this.closing) onClose(this.closedWith.message);
  }

  /** Whether the session is still usable. */
  get open(): boolean {
    return this.closedWith === undefined;
  }

  /** The next frame, or an error after `ms` (461) or when the session ends. */
  private async next(ms: number, what: string): Promise<string> {
    const deadline = Date.now() + ms;
    for (;;) {
      const f = this.inbox.shift();
      if (f !== undefined) return f;
      if (this.closedWith) throw this.closedWith;
      const left = deadline - Date.now();
      if (left <= 0) throw timeout(what, ms);
      await new Promise<void>((resolve) => {
        const t = setTimeout(() => {
          if (this.waiter === done) this.waiter = undefined;
          resolve();
        }, left);
        const done = (): void => {
          clearTimeout(t);
          resolve();
        };
        this.waiter = done;
      });
    }
  }

  private write(frame: string): void {
    if (this.closedWith) throw this.closedWith;
    this.socket.write(frame, 'latin1');
  }

  /** Connects and authenticates a session; rejects with 503 (unreachable), 461 (timeout) or 500 (refused). */
  static async open(ep: OwnEndpoint, kind: 'command' | 'event'): Promise<OwnSession> {
    const socket = connect({ host: ep.host, port: ep.port });
    const s = new OwnSession(socket, kind);
    const guard = setTimeout(() => s.fail(timeout(`the ${kind} session handshake`, ep.timeoutMs)), ep.timeoutMs);
    try {
      await s.handshake(ep, kind);
      s.ready = true;
      return s;
    } catch (err) {
      s.close();
      throw err;
    } finally {
      clearTimeout(guard);
    }
  }

  private async handshake(ep: OwnEndpoint, kind: 'command' | 'event'): Promise<void> {
    const ms = ep.timeoutMs;
    const greet = await this.next(ms, 'the connection');
    if (greet !== ACK) throw new DmStatusError(500, 'OWN_PROTOCOL', `the gateway greeted with ${greet}, not ACK`);
    this.write(kind === 'command' ? COMMAND_SESSION : EVENT_SESSION);
    const answer = await this.next(ms, 'the session request');
    if (answer === ACK) return; // trusted address: no password asked
    if (answer === NACK) throw authFailed('the gateway refused the session (NACK); is this address allowed?');
    if (ep.password === undefined || ep.password === '') throw authFailed('the gateway asks for a password and none is configured');
    if (answer === HMAC_SHA1 || answer === HMAC_SHA256) return this.hmac(ep.password, ms);
    const nonce = /^\*#(\d+)##$/.exec(answer)?.[1];
    if (nonce === undefined) throw new DmStatusError(500, 'OWN_PROTOCOL', `unexpected answer to the session request: ${answer}`);
    if (!isOpenPassword(ep.password)) throw authFailed('the gateway asks for an OPEN (numeric) password and the configured one is not numeric');
    this.write(`*#${openPassword(ep.password, nonce)}##`);
    const verdict = await this.next(ms, 'the password');
    if (verdict === NACK) throw authFailed('password refused by the gateway');
    if (verdict !== ACK) throw new DmStatusError(500, 'OWN_PROTOCOL', `unexpected answer to the password: ${verdict}`);
  }

  private async hmac(password: string, ms: number): Promise<void> {
    this.write(ACK);
    const raFrame = await this.next(ms, 'the HMAC challenge');
    if (raFrame === NACK) throw authFailed('the gateway aborted the HMAC exchange');
    const raDigits = /^\*#(\d+)##$/.exec(raFrame)?.[1];
    const algo = raDigits === undefined ? undefined : algoOfDigits(raDigits);
    const raHex = raDigits === undefined ? undefined : digitsToHex(raDigits);
    if (!algo || raHex === undefined) throw new DmStatusError(500, 'OWN_PROTOCOL', `bad HMAC challenge from the gateway: ${raFrame.slice(0, 24)}...`);
    const rbHex = randomHex(algo);
    this.write(`*#${hexToDigits(rbHex)}*${hexToDigits(clientDigest(algo, raHex, rbHex, password))}##`);
    const proof = await this.next(ms, 'the HMAC answer');
    if (proof === NACK) throw authFailed('password refused by the gateway');
    if (proof !== `*#${hexToDigits(serverDigest(algo, raHex, rbHex, password))}##`) {
      // The gateway does not know our password: it is not the gateway we think it is.
      this.write(NACK);
      throw authFailed('the gateway could not prove it knows the password');
    }
    this.write(ACK);
  }

  /**
   * Sends one frame on a command session and returns the frames answered before the ACK. Requests on
   * one session are serialised (OWN has no request ids: answers are matched by order).
   */
  request(frame: string, ms: number): Promise<string[]> {
    const run = async (): Promise<string[]> => {
      // Anything left from an earlier request that timed out is stale.
      this.inbox.length = 0;
      this.write(frame);
      const replies: string[] = [];
      for (;;) {
        const f = await this.next(ms, frame);
        if (f === ACK) return replies;
        if (f === NACK) throw new OwnNackError(frame, replies);
        replies.push(f);
      }
    };
    const p = this.queue.then(run, run);
    this.queue = p.catch(() => undefined);
    return p;
  }

  /** Closes the session (idempotent); no `onClose` call. */
  close(): void {
    this.closing = true;
    this.fail(new DmStatusError(503, 'OWN_CLOSED', 'session closed'));
  }
}

/** Command sessions kept open or opened per request (see the file comment). */
export class OwnCommandPool {
  private readonly idle: { s: OwnSession; timer: NodeJS.Timeout }[] = [];
  private readonly busy = new Set<OwnSession>();
  private stopped = false;
  /** Sessions opened so far (for tests and the docs' measurements). */
  opened = 0;

  constructor(
    private readonly endpoint: () => OwnEndpoint,
    private readonly mode: 'keep' | 'perCommand',
    private readonly idleMs: number,
  ) {}

  private async acquire(): Promise<{ s: OwnSession; reused: boolean }> {
    for (;;) {
      const e = this.idle.pop();
      if (!e) break;
      clearTimeout(e.timer);
      if (e.s.open) return { s: e.s, reused: true };
    }
    this.opened++;
    return { s: await OwnSession.open(this.endpoint(), 'command'), reused: false };
  }

  private release(s: OwnSession, ok: boolean): void {
    this.busy.delete(s);
    if (!ok || this.stopped || this.mode === 'perCommand' || !s.open) {
      s.close();
      return;
    }
    const timer = setTimeout(() => {
      const i = this.idle.findIndex((e) => e.s === s);
      if (i >= 0) this.idle.splice(i, 1);
      s.close();
    }, this.idleMs);
    this.idle.push({ s, timer });
  }

  /** Runs one request; a session that failed in any way is discarded, never reused. */
  async request(frame: string): Promise<string[]> {
    if (this.stopped) throw new DmStatusError(503, 'OWN_STOPPED', 'the OpenWebNet client is stopped');
    const first = await this.acquire();
    let s = first.s;
    this.busy.add(s);
    try {
      const out = await s.request(frame, this.endpoint().timeoutMs);
      this.release(s, true);
      return out;
    } catch (err) {
      // A kept session the gateway closed while it sat idle: retry once on a fresh one.
      if (first.reused && err instanceof DmStatusError && err.code === 'OWN_CLOSED' && !this.stopped) {
        this.release(s, false);
        s = (await this.acquire()).s;
        this.busy.add(s);
        try {
          const out = await s.request(frame, this.endpoint().timeoutMs);
          this.release(s, true);
          return out;
        } catch (err2) {
          this.release(s, err2 instanceof OwnNackError);
          throw err2;
        }
      }
      // A NACK leaves the session healthy; anything else (timeout, garbage) does not.
      this.release(s, err instanceof OwnNackError);
      throw err;
    }
  }

  /** Closes every session (idle and in flight). */
  close(): void {
    this.stopped = true;
    for (const e of this.idle.splice(0)) {
      clearTimeout(e.timer);
      e.s.close();
    }
    for (const s of this.busy) s.close();
    this.busy.clear();
  }

  /** Allows requests again after `close()` (the link came back or settings changed). */
  reopen(): void {
    this.stopped = false;
  }
}
