/**
 * A MyHOME-style OpenWebNet gateway simulator on a TCP port of 127.0.0.1 (no such simulator exists
 * elsewhere; peers.md). It speaks what a BTicino F454 / MH202 style gateway speaks to an OWN client:
 *
 * - greeting ACK, command session `*99*0##`, event session `*99*1##`;
 * - authentication: none (trusted address: ACK), OPEN numeric password (nonce `*#<digits>##`), HMAC
 *   SHA-1 (`*98*1##`) or SHA-256 (`*98*2##`), a wrong password answered NACK and the session closed;
 * - WHO 1 lights: `*1*0|1*<where>##` off/on, `*1*2..10*<where>##` dimmer levels (20..100 %), status
 *   `*#1*<where>##` answered `*1*<what>*<point>##` per point, for a point, an area (`1`..`9`, `00`,
 *   `10`), a group (`#<n>`) or general (`0`);
 * - WHO 2 automation: `*2*0|1|2*<where>##` stop/up/down, status `*#2*<where>##`, position dimension
 *   `*#2*<where>*10##` → `*#2*<where>*10*<10|11|12>*<level>*0*0##`, go-to-level
 *   `*#2*<where>*#11#001*<level>##`; shutters move over `travelMs` and stop at their ends;
 * - WHO 4 thermoregulation zones: temperature dimension 0 (`*#4*<z>*0##` → `*#4*<z>*0*<T>##`),
 *   setpoint dimension 14 (read, and write `*#4*#<z>*#14*<T>*3##`, which switches the zone to
 *   manual), mode status `*#4*<z>##` → `*4*<mode>*<z>##` and mode commands `*4*<mode>*#<z>##`
 *   (303 off, 302 protection, 310 manual, 311 automatic);
 * - WHO 13 gateway: MAC address `*#13**12##`, firmware `*#13**16##`;
 * - events: every state change is sent to every event session as the frame a status request would
 *   answer; NACK for an unknown WHERE, a device removed from the bus, or an invalid frame.
 *
 * Injectable behaviours (`behave`): latency per frame, silence (no answers at all), refused or
 * dropped connections, wrong answers (another WHERE, or garbage bytes); per device: removed from the
 * bus, answering NACK or an empty status (ACK only) like a gateway whose actuator is gone.
 */
import { randomInt } from 'node:crypto';
import { type AddressInfo, type Server, type Socket, createServer } from 'node:net';
import { algoOfDigits, clientDigest, digitsToHex, type HmacAlgo, hexToDigits, openPassword, randomHex, serverDigest } from './auth.ts';
import { ACK, COMMAND_SESSION, EVENT_SESSION, FrameSplitter, HMAC_SHA1, HMAC_SHA256, NACK, type OwnFrame, areaOf, decodeTemperature, encodeTemperature, isArea, isGroup, isPoint, parseFrame } from './frames.ts';

/** How the simulated gateway authenticates sessions. */
export type OwnSimAuth = 'none' | 'open' | 'hmac-sha1' | 'hmac-sha256';

/** Simulated installation. */
export interface OwnSimConfig {
  auth?: OwnSimAuth;
  /** OPEN: digits; HMAC: any text. */
  password?: string;
  lights?: { where: string; dimmer?: boolean; groups?: number[] }[];
  shutters?: { where: string; travelMs?: number }[];
  zones?: { where: string; temperature?: number; setpoint?: number }[];
  /** The gateway's MAC (12 hex digits). */
  mac?: string;
  /** A command session idle this long is closed by the gateway (real ones: about 30 s). */
  commandIdleMs?: number;
}

/** Faults injected into the whole gateway. */
export interface OwnSimBehaviour {
  /** Milliseconds before each command-session frame is answered. */
  latencyMs?: number;
  /** Frames on command sessions get no answer at all. */
  silent?: boolean;
  /** New connections are closed at once (a gateway rebooting or out of sessions). */
  refuseConnections?: boolean;
  /** Status answers name another WHERE (`where`) or are garbage bytes (`garbage`). */
  wrongAnswers?: 'where' | 'garbage';
}

/** What a device removed from the bus looks like through the gateway. */
export type OwnSimRemoval = 'nack' | 'empty';

interface Light {
  where: string;
  dimmer: boolean;
  groups: Set<number>;
  on: boolean;
  level: number;
  gone: OwnSimRemoval | undefined;
}
interface Shutter {
  where: string;
  travelMs: number;
  pos0: number;
  t0: number;
  dir: 0 | 1 | 2;
  target: number;
  timer: NodeJS.Timeout | undefined;
  gone: OwnSimRemoval | undefined;
}
interface Zone {
  where: string;
  temperature: number;
  setpoint: number;
  mode: string;
  gone: OwnSimRemoval | undefined;
}

const ZONE_MODES = new Set(['302', '303', '310', '311']);
const DEFAULT_MAC = '00036812ab01';

interface Conn {
  socket: Socket;
  splitter: FrameSplitter;
  state: 'greet' | 'open-pass' | 'hmac-ack' | 'hmac-proof' | 'hmac-final' | 'command' | 'event' | 'closed';
  kind: 'command' | 'event' | undefined;
  nonce: string;
  algo: HmacAlgo;
  raHex: string;
  rbHex: string;
  chain: Promise<void>;
  idle: NodeJS.Timeout | undefined;
}

/** The simulated gateway. */
export class OwnGatewaySim {
  private readonly server: Server;
  private readonly conns = new Set<Conn>();
  private readonly lights = new Map<string, Light>();
  private readonly shutters = new Map<string, Shutter>();
  private readonly zones = new Map<string, Zone>();
  private behaviour: OwnSimBehaviour = {};
  auth: OwnSimAuth;
  password: string;
  readonly mac: string;
  private readonly commandIdleMs: number;
  /** Every frame received on authenticated command sessions, in order. */
  readonly received: string[] = [];
  /** Times (ms since epoch) connections were accepted or refused, for backoff checks. */
  readonly connectionTimes: number[] = [];
  /** Authentication attempts that failed. */
  authFailures = 0;

  private constructor(cfg: OwnSimConfig) {
    this.auth = cfg.auth ?? 'none';
    this.password = cfg.password ?? '';
    this.mac = (cfg.mac ?? DEFAULT_MAC).toLowerCase();
    if (!/^[0-9a-f]{12}$/.test(this.mac)) throw new RangeError(`mac must be 12 hex digits, not ${cfg.mac}`);
    this.commandIdleMs = cfg.commandIdleMs ?? 30_000;
    for (const l of cfg.lights ?? []) {
      if (!isPoint(l.where)) throw new RangeError(`light WHERE ${l.where} is not a point`);
      this.lights.set(l.where, { where: l.where, dimmer: !!l.dimmer, groups: new Set(l.groups ?? []), on: false, level: 10, gone: undefined });
    }
    for (const s of cfg.shutters ?? []) {
      if (!isPoint(s.where)) throw new RangeError(`shutter WHERE ${s.where} is not a point`);
      this.shutters.set(s.where, { where: s.where, travelMs: s.travelMs ?? 2000, pos0: 0, t0: Date.now(), dir: 0, target: 0, timer: undefined, gone: undefined });
    }
    for (const z of cfg.zones ?? []) {
      if (!/^[1-9]\d?$/.test(z.where)) throw new RangeError(`zone WHERE ${z.where} must be 1..99`);
      this.zones.set(z.where, { where: z.where, temperature: z.temperature ?? 20.5, setpoint: z.setpoint ?? 21, mode: '311', gone: undefined });
    }
    this.server = createServer((socket) => this.accept(socket));
  }

  /** Starts a simulated gateway on 127.0.0.1 (port 0: a free one). */
  static async start(cfg: OwnSimConfig = {}, port = 0): Promise<OwnGatewaySim> {
    const sim = new OwnGatewaySim(cfg);
    await new Promise<void>((resolve, reject) => {
      sim.server.once('error', reject);
      sim.server.listen(port, '127.0.0.1', () => resolve());
    });
    return sim;
  }

  /** The TCP port it listens on. */
  get port(): number {
    return (this.server.address() as AddressInfo).port;
  }

  /** `127.0.0.1:<port>`. */
  get addr(): string {
    return `127.0.0.1:${this.port}`;
  }

  /** Injects faults (replaces the previous behaviour; `{}` clears). */
  behave(b: OwnSimBehaviour): void {
    this.behaviour = { ...b };
  }

  /** Closes every open session at once (a gateway reboot or a network cut). */
  dropConnections(): void {
    for (const c of this.conns) this.end(c);
  }

  /** Sessions open now by kind. */
  sessions(): { command: number; event: number; total: number } {
    let command = 0;
    let event = 0;
    for (const c of this.conns) {
      if (c.state === 'command') command++;
      if (c.state === 'event') event++;
    }
    return { command, event, total: this.conns.size };
  }

  /** Takes a device off the bus; the gateway then answers NACK or an empty status for it. */
  remove(who: string, where: string, how: OwnSimRemoval = 'nack'): void {
    const d = this.deviceOf(who, where);
    if (!d) throw new RangeError(`no device ${who}/${where}`);
    d.gone = how;
  }

  /** Puts a removed device back on the bus (it announces its state, as an actuator does at power-up). */
  restore(who: string, where: string): void {
    const d = this.deviceOf(who, where);
    if (!d) throw new RangeError(`no device ${who}/${where}`);
    d.gone = undefined;
    this.broadcast(this.statusFrames(who, where) ?? []);
  }

  private deviceOf(who: string, where: string): { gone: OwnSimRemoval | undefined } | undefined {
    return who === '1' ? this.lights.get(where) : who === '2' ? this.shutters.get(where) : who === '4' ? this.zones.get(where) : undefined;
  }

  /** A light's state as a technician would see it on the actuator. */
  light(where: string): { on: boolean; level: number; present: boolean } | undefined {
    const l = this.lights.get(where);
    return l && { on: l.on, level: l.level, present: !l.gone };
  }

  /** A shutter's state (position 0 closed .. 100 open; moving 0 stopped, 1 up, 2 down). */
  shutter(where: string): { position: number; moving: 0 | 1 | 2; present: boolean } | undefined {
    const s = this.shutters.get(where);
    return s && { position: Math.round(this.posAt(s)), moving: s.dir, present: !s.gone };
  }

  /** A zone's state. */
  zone(where: string): { temperature: number; setpoint: number; mode: string; present: boolean } | undefined {
    const z = this.zones.get(where);
    return z && { temperature: z.temperature, setpoint: z.setpoint, mode: z.mode, present: !z.gone };
  }

  /** Someone pressed a wall switch: the light changes and the bus reports it. */
  press(where: string, on: boolean): void {
    const l = this.lights.get(where);
    if (!l) throw new RangeError(`no light ${where}`);
    l.on = on;
    this.broadcast([this.lightFrame(l)]);
  }

  /** The room temperature changes; the probe reports it. */
  setTemperature(where: string, t: number): void {
    const z = this.zones.get(where);
    if (!z) throw new RangeError(`no zone ${where}`);
    z.temperature = t;
    this.broadcast([`*#4*${z.where}*0*${encodeTemperature(t)}##`]);
  }

  /** Stops listening and closes every session and timer. */
  async close(): Promise<void> {
    for (const s of this.shutters.values()) if (s.timer) clearTimeout(s.timer);
    this.dropConnections();
    await new Promise<void>((resolve) => this.server.close(() => resolve()));
  }

  // ---- sessions ----

  private accept(socket: Socket): void {
    this.connectionTimes.push(Date.now());
    socket.on('error', () => undefined);
    if (this.behaviour.refuseConnections) {
      socket.destroy();
      return;
    }
    const c: Conn = { socket, splitter: new FrameSplitter(), state: 'greet', kind: undefined, nonce: '', algo: 'sha1', raHex: '', rbHex: '', chain: Promise.resolve(), idle: undefined };
    this.conns.add(c);
    socket.setNoDelay(true);
    socket.on('close', () => {
      if (c.idle) clearTimeout(c.idle);
      c.state = 'closed';
      this.conns.delete(c);
    });
    socket.on('data', (chunk: Buffer) => {
      let frames: string[];
      try {
        frames = c.splitter.push(chunk);
      } catch {
        // Bytes that are not frames: a real gateway NACKs and keeps going.
        this.send(c, NACK);
        return;
      }
      for (const f of frames) c.chain = c.chain.then(() => this.onFrame(c, f));
    });
    this.send(c, ACK);
  }

  private send(c: Conn, ...frames: string[]): void {
    if (c.state === 'closed' || c.socket.destroyed) return;
    c.socket.write(frames.join(''), 'latin1');
  }

  private end(c: Conn): void {
    if (c.idle) clearTimeout(c.idle);
    c.state = 'closed';
    this.conns.delete(c);
    c.socket.destroy();
  }

  private refuse(c: Conn): void {
    this.authFailures++;
    this.send(c, NACK);
    c.socket.end();
    c.state = 'closed';
    this.conns.delete(c);
  }

  private authenticated(c: Conn): void {
    c.state = c.kind === 'event' ? 'event' : 'command';
    if (c.state === 'command') this.touch(c);
  }

  private touch(c: Conn): void {
    if (c.idle) clearTimeout(c.idle);
    c.idle = setTimeout(() => this.end(c), this.commandIdleMs);
  }

  private async onFrame(c: Conn, frame: string): Promise<void> {
    switch (c.state) {
      case 'closed':
        return;
      case 'greet': {
        if (frame !== COMMAND_SESSION && frame !== EVENT_SESSION) return this.refuse(c);
        c.kind = frame === COMMAND_SESSION ? 'command' : 'event';
        if (this.auth === 'none') {
          this.send(c, ACK);
          return this.authenticated(c);
        }
        if (this.auth === 'open') {
          c.nonce = String(randomInt(100_000_000, 999_999_999));
          c.state = 'open-pass';
          return this.send(c, `*#${c.nonce}##`);
        }
        c.algo = this.auth === 'hmac-sha1' ? 'sha1' : 'sha256';
        c.state = 'hmac-ack';
        return this.send(c, c.algo === 'sha1' ? HMAC_SHA1 : HMAC_SHA256);
      }
      case 'open-pass': {
        const answer = /^\*#(\d+)##$/.exec(frame)?.[1];
        if (answer === undefined || !/^\d+$/.test(this.password) || answer !== openPassword(this.password, c.nonce)) return this.refuse(c);
        this.send(c, ACK);
        return this.authenticated(c);
      }
      case 'hmac-ack': {
        if (frame !== ACK) return this.refuse(c);
        c.raHex = randomHex(c.algo);
        c.state = 'hmac-proof';
        return this.send(c, `*#${hexToDigits(c.raHex)}##`);
      }
      case 'hmac-proof': {
        const m = /^\*#(\d+)\*(\d+)##$/.exec(frame);
        const rbHex = m ? digitsToHex(m[1]!) : undefined;
        if (!m || rbHex === undefined || algoOfDigits(m[1]!) !== c.algo) return this.refuse(c);
        if (m[2] !== hexToDigits(clientDigest(c.algo, c.raHex, rbHex, this.password))) return this.refuse(c);
        c.rbHex = rbHex;
        c.state = 'hmac-final';
        return this.send(c, `*#${hexToDigits(serverDigest(c.algo, c.raHex, rbHex, this.password))}##`);
      }
      case 'hmac-final':
        // The client checked our proof: ACK opens the session (no answer), NACK ends it.
        if (frame !== ACK) return this.end(c);
        return this.authenticated(c);
      case 'event':
        return; // event sessions only listen
      case 'command': {
        this.touch(c);
        this.received.push(frame);
        const b = this.behaviour;
        if (b.latencyMs) await new Promise((r) => setTimeout(r, b.latencyMs));
        if (b.silent || c.state !== 'command') return;
        let f: OwnFrame;
        try {
          f = parseFrame(frame);
        } catch {
          return this.send(c, NACK);
        }
        const { replies, events } = this.execute(f);
        this.send(c, ...this.distort(replies));
        this.broadcast(events);
        return;
      }
    }
  }

  private distort(frames: string[]): string[] {
    const w = this.behaviour.wrongAnswers;
    if (!w || frames.length < 2) return frames;
    const body = frames.slice(0, -1);
    if (w === 'garbage') return ['@@garbage##'];
    return [...body.map((f) => f.replace(/\*(\d+)##$/, (_m, where: string) => `*${where === '99' ? '98' : '99'}##`)), frames.at(-1)!];
  }

  private broadcast(frames: string[]): void {
    if (frames.length === 0) return;
    // (events go to authenticated event sessions only)
    for (const c of this.conns) if (c.state === 'event') this.send(c, ...frames);
  }

  // ---- the installation ----

  /** Runs one frame: the frames to answer (ending in ACK/NACK) and the events it causes. */
  private execute(f: OwnFrame): { replies: string[]; events: string[] } {
    const nack = { replies: [NACK], events: [] };
    if (f.kind === 'normal' && f.where !== undefined) {
      if (f.who === '1') return this.lightCommand(f.what, f.where) ?? nack;
      if (f.who === '2') return this.shutterCommand(f.what, f.where) ?? nack;
      if (f.who === '4') return this.zoneCommand(f.what, f.where) ?? nack;
      return nack;
    }
    if (f.kind === 'status') {
      if (!['1', '2', '4'].includes(f.who)) return nack;
      const frames = this.statusFrames(f.who, f.where);
      if (frames === undefined) return nack;
      return { replies: [...frames, ACK], events: [] };
    }
    if (f.kind === 'dimension' && f.values.length === 0) {
      const reply = this.dimension(f.who, f.where, f.dim);
      return reply === undefined ? nack : { replies: [...reply, ACK], events: [] };
    }
    if (f.kind === 'dimWrite') return this.dimensionWrite(f.who, f.where, f.dim, f.values) ?? nack;
    return nack;
  }

  private lightFrame(l: Light): string {
    return `*1*${!l.on ? 0 : l.dimmer ? l.level : 1}*${l.where}##`;
  }

  private lightsAt(where: string): Light[] | undefined {
    let out: Light[];
    if (where === '0') out = [...this.lights.values()];
    else if (isArea(where)) out = [...this.lights.values()].filter((l) => areaOf(l.where) === where);
    else if (isGroup(where)) out = [...this.lights.values()].filter((l) => l.groups.has(Number(where.slice(1))));
    else {
      const l = this.lights.get(where);
      if (!l || l.gone) return undefined; // a point: nobody there
      return [l];
    }
    return out.length ? out : undefined;
  }

  private lightCommand(what: string, where: string): { replies: string[]; events: string[] } | undefined {
    const targets = this.lightsAt(where);
    if (!targets) return undefined;
    const n = Number(what);
    if (!/^\d+$/.test(what) || n > 10) return undefined;
    if (n >= 2 && targets.length === 1 && !targets[0]!.dimmer) return undefined; // a relay has no levels
    const events: string[] = [];
    for (const l of targets) {
      if (l.gone) continue; // a bus command: absent actuators simply miss it
      if (n === 0) l.on = false;
      else if (n === 1) l.on = true;
      else if (l.dimmer) {
        l.on = true;
        l.level = n;
      } else continue;
      events.push(this.lightFrame(l));
    }
    return { replies: [ACK], events };
  }

  private posAt(s: Shutter): number {
    if (s.dir === 0) return s.pos0;
    const moved = s.travelMs <= 0 ? 100 : ((Date.now() - s.t0) / s.travelMs) * 100;
    return s.dir === 1 ? Math.min(s.target, s.pos0 + moved) : Math.max(s.target, s.pos0 - moved);
  }

  private shutterStatus(s: Shutter): string[] {
    return [`*2*${s.dir}*${s.where}##`];
  }

  private shutterDim(s: Shutter): string {
    return `*#2*${s.where}*10*${10 + s.dir}*${Math.round(this.posAt(s))}*0*0##`;
  }

  private move(s: Shutter, target: number): string[] {
    const pos = this.posAt(s);
    if (s.timer) clearTimeout(s.timer);
    s.timer = undefined;
    s.pos0 = pos;
    s.t0 = Date.now();
    s.target = target;
    s.dir = target > pos ? 1 : target < pos ? 2 : 0;
    if (s.dir !== 0) {
      const ms = s.travelMs <= 0 ? 0 : (Math.abs(target - pos) / 100) * s.travelMs;
      s.timer = setTimeout(() => {
        s.timer = undefined;
        s.pos0 = target;
        s.dir = 0;
        this.broadcast([...this.shutterStatus(s), this.shutterDim(s)]);
      }, ms);
    }
    return [...this.shutterStatus(s), this.shutterDim(s)];
  }

  private shuttersAt(where: string): Shutter[] | undefined {
    if (where === '0') return this.shutters.size ? [...this.shutters.values()] : undefined;
    if (isArea(where)) {
      const out = [...this.shutters.values()].filter((s) => areaOf(s.where) === where);
      return out.length ? out : undefined;
    }
    const s = this.shutters.get(where);
    return s && !s.gone ? [s] : undefined;
  }

  private shutterCommand(what: string, where: string): { replies: string[]; events: string[] } | undefined {
    const targets = this.shuttersAt(where);
    if (!targets || !['0', '1', '2'].includes(what)) return undefined;
    const events: string[] = [];
    for (const s of targets) {
      if (s.gone) continue;
      events.push(...this.move(s, what === '1' ? 100 : what === '2' ? 0 : this.posAt(s)));
    }
    return { replies: [ACK], events };
  }

  private zoneOf(where: string): Zone | undefined {
    const z = this.zones.get(where.startsWith('#') ? where.slice(1) : where);
    return z && !z.gone ? z : undefined;
  }

  private zoneCommand(what: string, where: string): { replies: string[]; events: string[] } | undefined {
    const z = this.zoneOf(where);
    if (!z || !ZONE_MODES.has(what)) return undefined;
    z.mode = what;
    return { replies: [ACK], events: [`*4*${z.mode}*${z.where}##`] };
  }

  /** Status frames for a WHERE (points, areas, groups, general), or undefined when nobody answers with a NACK. */
  private statusFrames(who: string, where: string): string[] | undefined {
    if (who === '1') {
      const ls = where === '0' || isArea(where) || isGroup(where) ? this.lightsAt(where) : [this.lights.get(where)].filter((l): l is Light => l !== undefined);
      if (!ls || ls.length === 0) return undefined;
      if (ls.length === 1 && ls[0]!.where === where && ls[0]!.gone) return ls[0]!.gone === 'nack' ? undefined : [];
      return ls.filter((l) => !l.gone).map((l) => this.lightFrame(l));
    }
    if (who === '2') {
      const one = this.shutters.get(where);
      if (one?.gone) return one.gone === 'nack' ? undefined : [];
      const ss = this.shuttersAt(where);
      return ss?.filter((s) => !s.gone).flatMap((s) => this.shutterStatus(s));
    }
    if (who === '4') {
      const z = this.zones.get(where);
      if (!z) return undefined;
      if (z.gone) return z.gone === 'nack' ? undefined : [];
      return [`*4*${z.mode}*${z.where}##`];
    }
    return undefined;
  }

  private dimension(who: string, where: string, dim: string): string[] | undefined {
    if (who === '13' && where === '') {
      if (dim === '12') return [`*#13**12*${(this.mac.match(/../g) ?? []).map((b) => Number.parseInt(b, 16)).join('*')}##`];
      if (dim === '16') return ['*#13**16*1*4*7##'];
      return undefined;
    }
    if (who === '2' && dim === '10') {
      const s = this.shutters.get(where);
      if (!s || s.gone === 'nack') return undefined;
      return s.gone ? [] : [this.shutterDim(s)];
    }
    if (who === '4') {
      const z = this.zones.get(where);
      if (!z || z.gone === 'nack') return undefined;
      if (z.gone) return [];
      if (dim === '0') return [`*#4*${z.where}*0*${encodeTemperature(z.temperature)}##`];
      if (dim === '14') return [`*#4*${z.where}*14*${encodeTemperature(z.setpoint)}*3##`];
    }
    return undefined;
  }

  private dimensionWrite(who: string, where: string, dim: string, values: string[]): { replies: string[]; events: string[] } | undefined {
    if (who === '2' && dim === '11#001' && values.length === 1) {
      const s = this.shuttersAt(where);
      const level = Number(values[0]);
      if (!s || s.length !== 1 || !(level >= 0 && level <= 100)) return undefined;
      return { replies: [ACK], events: this.move(s[0]!, level) };
    }
    if (who === '4' && dim === '14' && values.length === 2) {
      const z = this.zoneOf(where);
      if (!z) return undefined;
      let t: number;
      try {
        t = decodeTemperature(values[0]!);
      } catch {
        return undefined;
      }
      if (t < 3 || t > 40 || !['1', '2', '3'].includes(values[1]!)) return undefined;
      z.setpoint = t;
      z.mode = '310';
      return { replies: [ACK], events: [`*#4*${z.where}*14*${encodeTemperature(t)}*3##`, `*4*310*${z.where}##`] };
    }
    return undefined;
  }
}
