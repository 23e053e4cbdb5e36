/**
 * One KNXnet/IP connection driven by npm `knx@2.5.4` (its `Connection` state machine does the
 * KNXnet/IP tunnelling: CONNECT, CONNECTIONSTATE, TUNNELING_REQUEST/ACK, cEMI L_Data), wrapped so
 * that it can be opened and closed like any link and never outlives its owner. Both the adapter and
 * the simulated devices use it.
 *
 * The wrapper exists because of the library's traps (design/peers.md):
 * - it advertises and binds on the first non-loopback IPv4: we override its local address lookup
 *   and bind the UDP socket to the configured local address (127.0.0.1 in tests), so traffic stays
 *   where the operator says;
 * - `Disconnect()` leaves the socket and several timers (idle keep-alive, connect retries) alive:
 *   `close()` sends the polite DISCONNECT_REQUEST when it can, then clears every timer the state
 *   machine owns, closes the socket and neuters the machine so nothing it deferred runs later;
 * - a CONNECT_RESPONSE refusing the tunnel (no more connections) makes the library retry in 60 s
 *   on a timer nobody can clear: we catch that response first and fail the attempt instead, and our
 *   Link retries with its own backoff;
 * - a read's callback comes with a 3 s timer of its own: we listen for the response ourselves with
 *   our timeout;
 * - it checks the link only every 60 s (KNXnet/IP 03.08.04 §5.4 heartbeat): `heartbeatMs` runs the
 *   library's own CONNECTIONSTATE_REQUEST sooner, so a dead server is noticed in about a second.
 */
import { createSocket, type Socket } from 'node:dgram';
import { DmStatusError } from '../../src/errors.ts';
import { knxRequire } from './lib.ts';

/** The parts of the library's Connection (a machina FSM) we use. */
interface KnxFsm {
  state: string;
  socket?: Socket;
  options: Record<string, unknown>;
  connecttimer?: NodeJS.Timeout;
  idletimer?: NodeJS.Timeout | null;
  disconnecttimer?: NodeJS.Timeout;
  tunnelingAckTimer?: NodeJS.Timeout;
  connstatetimer?: NodeJS.Timeout;
  getLocalAddress(): string;
  BindSocket(cb: (s: Socket) => void): Socket;
  onUdpSocketMessage(msg: Buffer, rinfo: unknown, cb?: unknown): void;
  Connect(): void;
  Disconnect(cb?: () => void): void;
  read(ga: string): void;
  writeRaw(ga: string, value: Buffer, bitlength?: number, cb?: () => void): void;
  Request(type: number, decorate: (dg: { cemi: { apdu: { apci: string; data: Buffer; bitlength: number }; dest_addr: string } }) => void): void;
  transition(state: string): void;
  handle(...args: unknown[]): void;
  on(event: string, cb: (...args: any[]) => void): unknown;
  off(event?: string, cb?: (...args: any[]) => void): void;
}

const Connection = knxRequire('knx/src/Connection.js') as (opts: Record<string, unknown>) => KnxFsm;

const TUNNELING_REQUEST = 0x0420;
const ROUTING_INDICATION = 0x0530;
const CONNECT_RESPONSE = 0x0206;

/** KNXnet/IP connect response status codes (03.08.02 §7.8.1), for error messages. */
const CONNECT_STATUS: Record<number, string> = {
  0x22: 'E_CONNECTION_TYPE',
  0x23: 'E_CONNECTION_OPTION',
  0x24: 'E_NO_MORE_CONNECTIONS',
  0x29: 'E_TUNNELLING_LAYER',
};

/** A group telegram seen on the link. */
export interface Telegram {
  apci: 'GroupValue_Read' | 'GroupValue_Response' | 'GroupValue_Write';
  /** Individual address of the sender, e.g. `1.1.5`. */
  src: string;
  /** Group address, e.g. `1/2/3`. */
  dest: string;
  /** The APDU data (undefined for a read). */
  data: Buffer | undefined;
}

/** How to open a tunnel. */
export interface TunnelOptions {
  /** `tunnelling` (unicast to a KNXnet/IP server) or `routing` (multicast 224.0.23.12). */
  mode: 'tunnelling' | 'routing';
  host: string;
  port: number;
  /** Our individual address as the source of our telegrams. */
  physAddr: string;
  /** Local IPv4 to bind and advertise; the library's own choice (first non-loopback) when absent. */
  localAddress?: string;
  connectTimeoutMs: number;
  /** Milliseconds between CONNECTIONSTATE checks (KNXnet/IP says 60 000). */
  heartbeatMs: number;
  /** How long a write waits for the server's L_Data.con. */
  confirmTimeoutMs?: number;
  onTelegram(t: Telegram): void;
  /** The link broke after it was open (server gone, tunnel refused, no ACK). */
  onLost(reason: string): void;
}

const down = (why: string): DmStatusError => new DmStatusError(503, 'KNX_LINK_DOWN', `KNX link is down: ${why}`);

/** An open KNXnet/IP tunnel (or routing socket). */
export class KnxTunnel {
  private conn: KnxFsm | undefined;
  private open = false;
  private closed = false;
  private heartbeat: NodeJS.Timeout | undefined;
  private readonly pending = new Set<{ reject(err: Error): void }>();

  private constructor(private readonly opts: TunnelOptions) {}

  /** Opens a tunnel; rejects (and releases everything) when the server does not accept it in time. */
  static async open(opts: TunnelOptions): Promise<KnxTunnel> {
    const t = new KnxTunnel(opts);
    try {
      await t.connect();
    } catch (err) {
      await t.close();
      throw err;
    }
    return t;
  }

  /** True while the tunnel is usable. */
  get usable(): boolean {
    return this.open && !this.closed;
  }

  private connect(): Promise<void> {
    const o = this.opts;
    const routing = o.mode === 'routing';
    const conn = Connection({
      ipAddr: o.host,
      ipPort: o.port,
      physAddr: o.physAddr,
      manualConnect: true,
      forceTunneling: !routing,
      loglevel: 'error',
    });
    this.conn = conn;
    if (o.localAddress) {
      const local = o.localAddress;
      conn.getLocalAddress = () => local;
      if (!routing) {
        // Tunnelling needs no fixed port: bind an ephemeral one on the chosen address only.
        conn.BindSocket = (cb) => {
          const s = createSocket('udp4');
          s.on('error', () => {});
          s.bind(0, local, () => cb(s));
          return s;
        };
      }
    }
    return new Promise<void>((resolve, reject) => {
      let settled = false;
      const fail = (why: string): void => {
        if (settled) return;
        settled = true;
        clearTimeout(timer);
        reject(down(why));
      };
      const timer = setTimeout(() => fail(`no answer from ${o.host}:${o.port} within ${o.connectTimeoutMs} ms`), o.connectTimeoutMs);
      const inbound = conn.onUdpSocketMessage;
      conn.onUdpSocketMessage = (msg, rinfo, cb) => {
        if (this.closed) return;
        // A refused tunnel: fail this attempt ourselves (the library would retry on a 60 s timer).
        if (msg.length >= 8 && msg.readUInt16BE(2) === CONNECT_RESPONSE && msg[7] !== 0) {
          const code = msg[7]!;
          const why = `the KNXnet/IP server refused the tunnel: ${CONNECT_STATUS[code] ?? `status 0x${code.toString(16)}`}`;
          if (!settled) fail(why);
          else this.lose(why);
          return;
        }
        inbound.call(conn, msg, rinfo, cb);
      };
      conn.on('connected', () => {
        if (settled || this.closed) return;
        settled = true;
        clearTimeout(timer);
        this.open = true;
        if (!routing && o.heartbeatMs > 0) {
          this.heartbeat = setInterval(() => {
            // The library's own connection-state check (it goes back to idle on a good answer).
            if (this.conn?.state === 'idle') this.conn.transition('requestingConnState');
          }, o.heartbeatMs);
        }
        resolve();
      });
      // Entering 'connecting' again (server DISCONNECT_REQUEST, failed heartbeat) emits 'disconnected'.
      conn.on('disconnected', () => this.lose('the KNXnet/IP server closed the tunnel'));
      conn.on('error', (e: unknown) => this.lose(`KNXnet/IP error: ${String(e)}`));
      conn.on('tunnelreqfailed', () => this.lose('no TUNNELING_ACK from the KNXnet/IP server'));
      conn.on('event', (apci: string, src: string, dest: string, data: Buffer | undefined) => {
        if (this.closed) return;
        if (apci === 'GroupValue_Read' || apci === 'GroupValue_Response' || apci === 'GroupValue_Write') o.onTelegram({ apci, src, dest, data: apci === 'GroupValue_Read' ? undefined : data });
      });
      try {
        conn.Connect();
      } catch (err) {
        fail(String((err as Error)?.message ?? err));
      }
    });
  }

  private lose(reason: string): void {
    if (!this.open || this.closed) return;
    this.open = false;
    for (const p of this.pending) p.reject(down(reason));
    this.pending.clear();
    this.opts.onLost(reason);
  }

  private live(): KnxFsm {
    if (!this.usable || !this.conn) throw down(this.closed ? 'closed' : 'not connected');
    return this.conn;
  }

  /**
   * Sends GroupValue_Read to `ga` and resolves with the first GroupValue_Response (from `from`
   * when given: the device we asked, since other devices may share the group address); 461 when
   * nobody answers within `timeoutMs`.
   */
  async read(ga: string, timeoutMs: number, from?: string): Promise<{ src: string; data: Buffer }> {
    const conn = this.live();
    return new Promise((resolve, reject) => {
      const event = `GroupValue_Response_${ga}`;
      const entry = { reject: (err: Error) => finish(err) };
      const onResponse = (src: string, data: Buffer): void => {
        if (from !== undefined && src !== from) return;
        finish(undefined, { src, data });
      };
      const finish = (err: Error | undefined, v?: { src: string; data: Buffer }): void => {
        clearTimeout(timer);
        conn.off(event, onResponse);
        this.pending.delete(entry);
        if (err) reject(err);
        else resolve(v!);
      };
      const timer = setTimeout(
        () => finish(new DmStatusError(461, 'KNX_NO_ANSWER', `no GroupValue_Response on ${ga}${from ? ` from ${from}` : ''} within ${timeoutMs} ms`)),
        timeoutMs,
      );
      this.pending.add(entry);
      conn.on(event, onResponse);
      conn.read(ga);
    });
  }

  /**
   * Sends GroupValue_Write (or, with `response`, GroupValue_Response) of raw APDU data. In
   * tunnelling it resolves on the server's L_Data.con (the telegram is on the bus); a group write
   * has no end-to-end acknowledgement in KNX.
   */
  async send(ga: string, data: Buffer, bitlength: number, apci: 'GroupValue_Write' | 'GroupValue_Response' = 'GroupValue_Write'): Promise<void> {
    const conn = this.live();
    const routing = this.opts.mode === 'routing';
    const service = routing ? ROUTING_INDICATION : TUNNELING_REQUEST;
    const confirmMs = this.opts.confirmTimeoutMs ?? 3000;
    return new Promise((resolve, reject) => {
      const entry = { reject: (err: Error) => finish(err) };
      const onConfirmed = (dg: { cemi?: { dest_addr?: string } }): void => {
        if (dg?.cemi?.dest_addr === ga) finish(undefined);
      };
      let timer: NodeJS.Timeout | undefined;
      const finish = (err: Error | undefined): void => {
        if (timer) clearTimeout(timer);
        conn.off('confirmed', onConfirmed);
        this.pending.delete(entry);
        if (err) reject(err);
        else resolve();
      };
      if (!routing) {
        this.pending.add(entry);
        conn.on('confirmed', onConfirmed);
        timer = setTimeout(() => finish(new DmStatusError(500, 'KNX_NOT_CONFIRMED', `no L_Data.con for the telegram to ${ga} within ${confirmMs} ms`)), confirmMs);
      }
      conn.Request(service, (dg) => {
        dg.cemi.apdu.data = data;
        dg.cemi.apdu.bitlength = bitlength;
        dg.cemi.apdu.apci = apci;
        dg.cemi.dest_addr = ga;
      });
      if (routing) finish(undefined);
    });
  }

  /** Disconnects (politely when the tunnel is up) and releases the socket and every timer. */
  async close(): Promise<void> {
    if (this.closed) return;
    const conn = this.conn;
    const wasOpen = this.open;
    this.closed = true;
    this.open = false;
    if (this.heartbeat) clearInterval(this.heartbeat);
    this.heartbeat = undefined;
    for (const p of this.pending) p.reject(down('closed'));
    this.pending.clear();
    if (!conn) return;
    if (wasOpen && conn.state === 'idle' && this.opts.mode === 'tunnelling') {
      // DISCONNECT_REQUEST frees our tunnel slot on the server at once (it would otherwise wait 120 s).
      await new Promise<void>((resolve) => {
        const t = setTimeout(resolve, 500);
        conn.on('disconnected', () => {
          clearTimeout(t);
          resolve();
        });
        try {
          conn.Disconnect();
        } catch {
          clearTimeout(t);
          resolve();
        }
      });
    }
    clearInterval(conn.connecttimer);
    clearTimeout(conn.idletimer ?? undefined);
    conn.idletimer = null;
    clearTimeout(conn.disconnecttimer);
    clearTimeout(conn.tunnelingAckTimer);
    clearTimeout(conn.connstatetimer);
    conn.off();
    // Nothing the machine deferred may run (or arm a timer) after this.
    conn.handle = () => {};
    conn.transition = () => {};
    try {
      conn.socket?.close();
    } catch {
      /* already closed by the library */
    }
  }
}
