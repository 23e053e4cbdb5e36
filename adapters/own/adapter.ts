/**
 * The OpenWebNet adapter (GwMO-AMode-001..006, notes §1.8 "OpenWebNet"): one MyHOME gateway
 * (F454, MH200N, MyHOMEServer, ...) reached over TCP, whose bus devices become adaptation devices.
 *
 * - Link: an authenticated event session (`*99*1##`) kept open by a `Link` (reconnect with jittered
 *   backoff); operations run on command sessions (`*99*0##`) from an `OwnCommandPool`, capped by
 *   `maxConcurrency`. While the link is down every operation answers 503.
 * - Discovery: after each connect and every `pollMs`, general status requests (`*#1*0##` lights,
 *   `*#2*0##` automation) list the points that answer; configured and associated WHEREs (thermo
 *   zones in particular, which have no general status) are probed one by one. A point that answers
 *   is attached; a known point that NACKs, answers nothing or times out is detached. Event-session
 *   frames keep a last-known state and attach a point heard on the bus.
 * - Device subtree (`./GwMO/Devices/<key>/OWN/...`, see docs/adapters/openwebnet.md):
 *   `OWN/<WHO>/<WHERE>/Status` (Get = `*#WHO*WHERE##`), `Command` (Replace/Exec = `*WHO*WHAT*WHERE##`,
 *   Data = WHAT), typed leaves (`On`, `Level`, `Move`, `Position`, `Temperature`, `Setpoint`,
 *   `Mode`), `LastKnown`; `OWN/Self` is the same node under a WHERE-independent name so one fanout
 *   URI reaches every light.
 * - Multicast: `Replace OWN/Self/On` to every known light of an area is one area command
 *   (`*1*1*<area>##`) when `areaMulticast` is on.
 */
import { z } from 'zod';
import { DmStatusError } from '../../src/errors.ts';
import { Limiter } from '../../src/limit.ts';
import type { ExecArgs, ExecResult, PluginNodeView, PluginWrite, TreePlugin } from '../../src/tree/tree.ts';
import type { Adapter, AdapterDevice, AdapterEvents, AdapterOperation, AdapterParam, LinkState, MulticastRequest, MulticastResult } from '../contract.ts';
import { Link, backoffSchema } from '../link.ts';
import { deviceSubtree } from '../subtree.ts';
import { OwnCommandPool, OwnNackError, OwnSession, type OwnEndpoint, parseGatewayAddr } from './client.ts';
import { type OwnFrame, areaOf, command, formatFrame, decodeTemperature, dimensionRequest, dimensionWrite, encodeTemperature, isArea, isPoint, parseFrame, statusRequest } from './frames.ts';

/** WHOs this adapter maps to devices. */
export const OWN_WHOS = ['1', '2', '4'] as const;
/** A mapped WHO: 1 lighting, 2 automation, 4 thermoregulation. */
export type OwnWho = (typeof OWN_WHOS)[number];

const whoSchema = z
  .union([z.string(), z.number()])
  .transform(String)
  .refine((v): v is OwnWho => (OWN_WHOS as readonly string[]).includes(v), 'WHO must be 1 (lighting), 2 (automation) or 4 (thermoregulation)');

/** Configuration of an OpenWebNet gateway (an entry of a gateway's `adapters`). */
export const ownAdapterConfigSchema = z.object({
  type: z.literal('own'),
  name: z.string().min(1).default('OpenWebNet'),
  /** `host[:port]` of the MyHOME gateway (port 20000 by default). */
  gatewayAddr: z.string().min(1).default('127.0.0.1:20000'),
  /** OPEN (numeric) or HMAC password; absent when the gateway trusts our address. Never logged. */
  password: z.string().optional(),
  /** Find lights with the general status request `*#1*0##`. */
  discoverLights: z.boolean().default(true),
  /** Find shutters with `*#2*0##`. */
  discoverAutomation: z.boolean().default(true),
  /** WHEREs probed one by one (thermo zones, shutters on gateways without general status). */
  wheres: z.array(z.object({ who: whoSchema, where: z.union([z.string(), z.number()]).transform(String), name: z.string().optional() })).default([]),
  /** Discovery and presence sweep period (0: only after each connect). */
  pollMs: z.number().int().min(0).default(30_000),
  /** Milliseconds for a session handshake and for each answer. */
  timeoutMs: z.number().int().min(50).default(3000),
  /** Keep command sessions open between commands, or open one per command. */
  commandSession: z.enum(['keep', 'perCommand']).default('keep'),
  /** A kept command session idle this long is closed by us (gateways close them at about 30 s). */
  idleMs: z.number().int().min(100).default(20_000),
  /** Native operations (command sessions) in flight at once. */
  maxConcurrency: z.number().int().min(1).default(4),
  /** Switch every light of an area with one area command when a fanout covers all of them. */
  areaMulticast: z.boolean().default(true),
  backoff: backoffSchema,
});
/** A validated OpenWebNet configuration. */
export type OwnAdapterConfig = z.output<typeof ownAdapterConfigSchema>;

/** What the adapter knows about one bus point. */
interface OwnDevice {
  who: OwnWho;
  where: string;
  name: string | undefined;
  attached: boolean;
  /** The last frame that told us its state (a reply or an event). */
  last: string;
  /** The last WHAT sent through `Command`. */
  lastWhat: string;
}

const G = ['Get'] as const;
const GR = ['Get', 'Replace'] as const;
const GRE = ['Get', 'Replace', 'Exec'] as const;
const MODES: Record<string, string> = { off: '303', protection: '302', manual: '310', auto: '311' };
const MODE_NAMES: Record<string, string> = Object.fromEntries(Object.entries(MODES).map(([k, v]) => [v, k]));
const MOVES: Record<string, string> = { stop: '0', up: '1', down: '2' };
const MOVE_NAMES = ['stop', 'up', 'down'];
const MODELS: Record<OwnWho, string> = { '1': 'OWN WHO 1 lighting point', '2': 'OWN WHO 2 automation point', '4': 'OWN WHO 4 thermoregulation zone' };
/** Leaves under `OWN/<WHO>/<WHERE>` per WHO. */
const LEAVES: Record<OwnWho, string[]> = {
  '1': ['Status', 'Command', 'LastKnown', 'On', 'Level'],
  '2': ['Status', 'Command', 'LastKnown', 'Move', 'Position'],
  '4': ['Status', 'Command', 'LastKnown', 'Temperature', 'Setpoint', 'Mode'],
};
/** Format and access of every leaf, as `getLeaf` answers them (TreePlugin.describe: no bus traffic). */
const LEAF_META: Record<string, PluginNodeView> = {
  Status: { format: 'chr', access: G },
  Command: { format: 'chr', access: GRE },
  LastKnown: { format: 'chr', access: G },
  Name: { format: 'chr', access: G },
  On: { format: 'bool', access: GR },
  Level: { format: 'int', access: GR },
  Move: { format: 'chr', access: GR },
  Position: { format: 'int', access: GR },
  Temperature: { format: 'float', access: G },
  Setpoint: { format: 'float', access: GR },
  Mode: { format: 'chr', access: GR },
};

const bad = (msg: string): DmStatusError => new DmStatusError(400, 'OWN_BAD_VALUE', msg);
const noAnswer = (d: OwnDevice): DmStatusError => new DmStatusError(461, 'OWN_NO_ANSWER', `OWN ${d.who}/${d.where} does not answer`);
const addressOf = (who: string, where: string): string => `${who}/${where}`;

/** Checks a WHERE for a WHO: points for lights and shutters, zones 1..99 for thermoregulation. */
function validWhere(who: OwnWho, where: string): boolean {
  return who === '4' ? /^[1-9]\d?$/.test(where) : isPoint(where);
}

/** The OpenWebNet adapter. */
export class OwnAdapter implements Adapter {
  readonly protocol = 'OpenWebNet';
  readonly name: string;
  private host: string;
  private port: number;
  private password: string | undefined;
  private pollMs: number;
  private readonly limiter: Limiter;
  private readonly pool: OwnCommandPool;
  private readonly link: Link;
  private events: AdapterEvents | undefined;
  private eventSession: OwnSession | undefined;
  private readonly devices = new Map<string, OwnDevice>();
  private readonly plugins = new Map<string, TreePlugin>();
  /** Configured and associated WHEREs, probed on every sweep. */
  private readonly watched = new Map<string, string | undefined>();
  /** Dissociated points discovery must not bring back until associated again. */
  private readonly excluded = new Set<string>();
  private pollTimer: NodeJS.Timeout | undefined;
  private sweeping: Promise<number> | undefined;
  private running = false;
  /** The gateway's MAC (12 hex digits), the scope of device ids. */
  mac: string | undefined;
  /** Native requests sent (status, dimension, command), for tests and measurements. */
  nativeOps = 0;
  /** Area commands sent by multicast. */
  multicasts = 0;

  readonly settings: readonly AdapterParam[] = [
    { name: 'GatewayAddr', format: 'chr', description: 'host[:port] of the MyHOME gateway (OWN port 20000 by default)' },
    { name: 'Password', format: 'chr', secret: true, description: 'OPEN (numeric) or HMAC password of the gateway; empty when it trusts this address' },
    { name: 'PollMs', format: 'int', description: 'discovery and presence sweep period in ms (0: only after each connect)' },
  ];
  readonly associationParams: readonly AdapterParam[] = [
    { name: 'WHO', format: 'chr', required: true, description: '1 lighting, 2 automation or 4 thermoregulation' },
    { name: 'WHERE', format: 'chr', required: true, description: 'the point (lights, shutters: e.g. 11, 0105, 1001) or zone (1..99)' },
    { name: 'Name', format: 'chr', description: 'a label for the point' },
  ];
  readonly operations: readonly AdapterOperation[] = [
    {
      name: 'Discover',
      description: 'runs a discovery and presence sweep now; Data = attached points after it',
      run: async () => ({ status: 200, data: String(await this.sweep()) }),
    },
  ];

  constructor(private readonly config: OwnAdapterConfig) {
    this.name = config.name;
    ({ host: this.host, port: this.port } = parseGatewayAddr(config.gatewayAddr));
    this.password = config.password;
    this.pollMs = config.pollMs;
    this.limiter = new Limiter(config.maxConcurrency);
    this.pool = new OwnCommandPool(() => this.endpoint(), config.commandSession, config.idleMs);
    for (const w of config.wheres) {
      if (!validWhere(w.who as OwnWho, w.where)) throw new DmStatusError(400, 'OWN_BAD_WHERE', `WHERE ${w.where} is not valid for WHO ${w.who}`);
      this.watched.set(addressOf(w.who, w.where), w.name);
    }
    this.link = new Link({ open: () => this.openLink(), close: () => this.closeLink() }, config.backoff, (state, detail) => this.onLinkState(state, detail));
  }

  private endpoint(): OwnEndpoint {
    return { host: this.host, port: this.port, password: this.password, timeoutMs: this.config.timeoutMs };
  }

  get linkState(): LinkState {
    return this.link.state;
  }

  /** Reconnections so far (`connects - 1`) and why the link last failed. */
  get linkInfo(): { connects: number; lastError: string } {
    return { connects: this.link.connects, lastError: this.link.lastError };
  }

  /** Command sessions opened so far. */
  get sessionsOpened(): number {
    return this.pool.opened;
  }

  // ---- link ----

  private async openLink(): Promise<void> {
    this.pool.reopen();
    const s = await OwnSession.open(this.endpoint(), 'event');
    this.eventSession = s;
    s.listen(
      (f) => this.onEvent(f),
      (reason) => this.link.lost(`event session lost: ${reason}`),
    );
    if (this.mac === undefined) this.mac = await this.readMac();
    // The event session may have died while we read the MAC: `lost` is ignored until connected.
    if (!s.open) throw new DmStatusError(503, 'OWN_CLOSED', 'the event session closed during the connection');
  }

  private async closeLink(): Promise<void> {
    this.eventSession?.close();
    this.eventSession = undefined;
    this.pool.close();
  }

  /** The gateway's MAC (`*#13**12##`); gateways that do not answer get an id scoped by host and port. */
  private async readMac(): Promise<string> {
    try {
      const replies = await this.pool.request(dimensionRequest('13', '', '12'));
      for (const r of replies) {
        const f = parseFrame(r);
        if (f.kind === 'dimension' && f.who === '13' && f.dim === '12' && f.values.length === 6) {
          return f.values.map((v) => Number(v).toString(16).padStart(2, '0')).join('');
        }
      }
    } catch (err) {
      if (!(err instanceof OwnNackError)) throw err;
    }
    return `${this.host}-${this.port}`.replace(/[^A-Za-z0-9.-]/g, '-');
  }

  private onLinkState(state: LinkState, detail?: string): void {
    this.events?.link?.(state, detail);
    if (state === 'connected') void this.sweep().catch(() => undefined);
  }

  async start(events: AdapterEvents): Promise<void> {
    this.events = events;
    this.running = true;
    await this.link.start();
    if (this.pollMs > 0) this.startPolling();
  }

  private startPolling(): void {
    if (this.pollTimer) clearInterval(this.pollTimer);
    this.pollTimer = undefined;
    if (this.pollMs <= 0 || !this.running) return;
    this.pollTimer = setInterval(() => {
      if (this.link.state === 'connected') void this.sweep().catch(() => undefined);
    }, this.pollMs);
  }

  async stop(): Promise<void> {
    this.running = false;
    if (this.pollTimer) clearInterval(this.pollTimer);
    this.pollTimer = undefined;
    await this.link.stop();
    this.pool.close();
    await this.sweeping?.catch(() => undefined);
    this.events = undefined;
  }

  // ---- settings ----

  getSettings(): Record<string, string> {
    return { GatewayAddr: `${this.host}:${this.port}`, Password: this.password ?? '', PollMs: String(this.pollMs) };
  }

  async configure(values: Record<string, string>): Promise<void> {
    let addr: { host: string; port: number } | undefined;
    let poll: number | undefined;
    for (const [k, v] of Object.entries(values)) {
      if (k === 'GatewayAddr') addr = parseGatewayAddr(v);
      else if (k === 'PollMs') {
        poll = Number(v);
        if (!Number.isInteger(poll) || poll < 0) throw bad(`PollMs must be a non-negative integer, not ${JSON.stringify(v)}`);
      } else if (k !== 'Password') throw new DmStatusError(404, 'OWN_NO_SETTING', `no setting ${k}`);
    }
    let reconnect = false;
    if (addr && (addr.host !== this.host || addr.port !== this.port)) {
      ({ host: this.host, port: this.port } = addr);
      this.mac = undefined; // another gateway, maybe
      reconnect = true;
    }
    if ('Password' in values) {
      const pw = values['Password'] === '' ? undefined : values['Password'];
      if (pw !== this.password) reconnect = true;
      this.password = pw;
    }
    if (poll !== undefined && poll !== this.pollMs) {
      this.pollMs = poll;
      this.startPolling();
    }
    if (reconnect && this.running) {
      await this.link.stop();
      await this.link.start();
    }
  }

  // ---- native operations ----

  /** One request on a command session: link check, concurrency cap. */
  private native(frame: string): Promise<string[]> {
    if (this.link.state !== 'connected') return Promise.reject(new DmStatusError(503, 'OWN_LINK_DOWN', `the OpenWebNet gateway link is ${this.link.state}${this.link.lastError ? `: ${this.link.lastError}` : ''}`));
    return this.limiter.run(() => {
      this.nativeOps++;
      return this.pool.request(frame);
    });
  }

  /**
   * The frames answering a status or dimension request that concern `d` (answers about another
   * WHERE are not its answer); empty when the point is not there (NACK or nothing). Timeouts and
   * link errors propagate.
   */
  private async ask(d: OwnDevice, frame: string, match: (f: OwnFrame) => boolean): Promise<OwnFrame[]> {
    let replies: string[];
    try {
      replies = await this.native(frame);
    } catch (err) {
      if (err instanceof OwnNackError) return [];
      throw err;
    }
    const out: OwnFrame[] = [];
    for (const r of replies) {
      let f: OwnFrame;
      try {
        f = parseFrame(r);
      } catch {
        continue;
      }
      const where = f.kind === 'normal' || f.kind === 'dimension' ? (f.where ?? '').replace(/^#/, '') : undefined;
      if (where !== d.where || !('who' in f) || f.who !== d.who || !match(f)) continue;
      d.last = r;
      out.push(f);
    }
    return out;
  }

  /** Like `ask`, but a point that is not there is detached and the read ends with 461. */
  private async read(d: OwnDevice, frame: string, match: (f: OwnFrame) => boolean): Promise<OwnFrame> {
    const got = await this.ask(d, frame, match);
    if (got.length === 0) {
      this.detach(d);
      throw noAnswer(d);
    }
    this.attach(d);
    return got.at(-1)!;
  }

  /** The WHAT a point's status request answers. */
  private async whatOf(d: OwnDevice): Promise<string> {
    const f = await this.read(d, statusRequest(d.who, d.where), (f) => f.kind === 'normal');
    return f.kind === 'normal' ? f.what : '';
  }

  private dimensionOf(d: OwnDevice, dim: string, minValues: number): Promise<OwnFrame & { kind: 'dimension' }> {
    return this.read(d, dimensionRequest(d.who, d.where, dim), (f) => f.kind === 'dimension' && f.dim === dim && f.values.length >= minValues) as Promise<OwnFrame & { kind: 'dimension' }>;
  }

  /** Sends a command or dimension write; a NACK from a point that no longer answers is 461 (and detaches it), otherwise 500. */
  private async send(d: OwnDevice, frame: string): Promise<ExecResult> {
    try {
      await this.native(frame);
      return { status: 200 };
    } catch (err) {
      if (!(err instanceof OwnNackError)) throw err;
      const present = await this.probe(d).catch(() => true);
      if (!present) throw noAnswer(d);
      throw err;
    }
  }

  /** Whether a point answers its presence request (thermo zones: their temperature). */
  private async probe(d: OwnDevice): Promise<boolean> {
    const got =
      d.who === '4'
        ? await this.ask(d, dimensionRequest('4', d.where, '0'), (f) => f.kind === 'dimension' && f.dim === '0')
        : await this.ask(d, statusRequest(d.who, d.where), (f) => f.kind === 'normal');
    if (got.length) this.attach(d);
    else this.detach(d);
    return got.length > 0;
  }

  // ---- devices ----

  private describe(d: OwnDevice): AdapterDevice {
    return { address: addressOf(d.who, d.where), deviceId: `urn:dev:own:${this.mac ?? 'unknown'}:${d.who}-${d.where}`, man: 'BTicino', mod: MODELS[d.who] };
  }

  private upsert(who: OwnWho, where: string): OwnDevice {
    const a = addressOf(who, where);
    let d = this.devices.get(a);
    if (!d) this.devices.set(a, (d = { who, where, name: this.watched.get(a), attached: false, last: '', lastWhat: '' }));
    return d;
  }

  private attach(d: OwnDevice): void {
    if (d.attached || this.excluded.has(addressOf(d.who, d.where))) return;
    d.attached = true;
    this.events?.attached(this.describe(d));
  }

  private detach(d: OwnDevice): void {
    if (!d.attached) return;
    d.attached = false;
    this.events?.detached(addressOf(d.who, d.where));
  }

  /** Points known now and whether they are attached. */
  list(): (AdapterDevice & { attached: boolean; lastKnown: string })[] {
    return [...this.devices.values()].map((d) => ({ ...this.describe(d), attached: d.attached, lastKnown: d.last }));
  }

  /** A frame heard on the event session: last-known state, and a sign of life. */
  private onEvent(frame: string): void {
    let f: OwnFrame;
    try {
      f = parseFrame(frame);
    } catch {
      return; // a frame we cannot read says nothing about our points
    }
    if (f.kind !== 'normal' && f.kind !== 'dimension') return;
    const who = f.who as OwnWho;
    if (!(OWN_WHOS as readonly string[]).includes(who) || f.where === undefined) return;
    const where = who === '4' ? f.where.replace(/^#/, '') : f.where;
    if (who !== '4' && (where === '0' || isArea(where))) {
      // An area or general command echoed on the bus: every known light there takes its WHAT.
      if (f.kind === 'normal') for (const d of this.devices.values()) if (d.who === who && (where === '0' || areaOf(d.where) === where)) d.last = command(who, f.what, d.where);
      return;
    }
    const a = addressOf(who, where);
    const known = this.devices.get(a);
    const discoverable = (who === '1' && this.config.discoverLights) || (who === '2' && this.config.discoverAutomation) || this.watched.has(a);
    if (!known && (!discoverable || !validWhere(who, where))) return;
    const d = known ?? this.upsert(who, where);
    d.last = frame;
    this.attach(d);
  }

  /** Discovery and presence sweep; resolves with the number of attached points. */
  sweep(): Promise<number> {
    if (this.sweeping) return this.sweeping;
    const run = async (): Promise<number> => {
      const seen = new Set<string>();
      const general = async (who: '1' | '2'): Promise<void> => {
        let replies: string[];
        try {
          replies = await this.native(statusRequest(who, '0'));
        } catch (err) {
          if (err instanceof OwnNackError) return; // nobody of that kind on the bus
          throw err;
        }
        for (const r of replies) {
          let f: OwnFrame;
          try {
            f = parseFrame(r);
          } catch {
            continue;
          }
          if (f.kind !== 'normal' || f.who !== who || f.where === undefined || !isPoint(f.where)) continue;
          const a = addressOf(who, f.where);
          if (this.excluded.has(a)) continue;
          const d = this.upsert(who, f.where);
          d.last = r;
          seen.add(a);
          this.attach(d);
        }
      };
      if (this.config.discoverLights) await general('1');
      if (this.config.discoverAutomation) await general('2');
      const toProbe = new Set<string>([...this.watched.keys()]);
      for (const [a, d] of this.devices) if (d.attached) toProbe.add(a);
      await Promise.all(
        [...toProbe]
          .filter((a) => !seen.has(a) && !this.excluded.has(a))
          .map(async (a) => {
            const [who, where] = a.split('/') as [OwnWho, string];
            const d = this.upsert(who, where);
            try {
              await this.probe(d);
            } catch (err) {
              // Link trouble says nothing about the point; silence or garbage means it is not answering.
              if (err instanceof DmStatusError && err.status === 503) return;
              this.detach(d);
            }
          }),
      );
      return [...this.devices.values()].filter((d) => d.attached).length;
    };
    this.sweeping = run().finally(() => {
      this.sweeping = undefined;
    });
    return this.sweeping;
  }

  // ---- association (AMode-006) ----

  async associate(params: Record<string, string>): Promise<AdapterDevice> {
    const who = (params['WHO'] ?? '').trim();
    const where = (params['WHERE'] ?? '').trim();
    if (!who || !where) throw new DmStatusError(412, 'OWN_INCOMPLETE', 'WHO and WHERE are required');
    if (!(OWN_WHOS as readonly string[]).includes(who)) throw bad(`WHO must be 1, 2 or 4, not ${JSON.stringify(who)}`);
    if (!validWhere(who as OwnWho, where)) throw bad(`WHERE ${JSON.stringify(where)} is not a ${who === '4' ? 'zone (1..99)' : 'point'}`);
    const a = addressOf(who, where);
    this.excluded.delete(a);
    const d = this.upsert(who as OwnWho, where);
    if (params['Name']) d.name = params['Name'];
    if (!(await this.probe(d))) throw new DmStatusError(461, 'OWN_NO_ANSWER', `OWN ${a} does not answer a status request`);
    this.watched.set(a, d.name);
    return this.describe(d);
  }

  async dissociate(address: string): Promise<void> {
    const d = this.devices.get(address);
    if (!d && !this.watched.has(address)) throw new DmStatusError(404, 'OWN_UNKNOWN', `no OWN point ${address}`);
    this.watched.delete(address);
    this.excluded.add(address);
    if (d) {
      const was = d.attached;
      this.devices.delete(address);
      this.plugins.delete(address);
      if (was) this.events?.detached(address);
    }
  }

  // ---- multicast ----

  async multicast(req: MulticastRequest): Promise<MulticastResult> {
    const out: MulticastResult = new Map();
    if (!this.config.areaMulticast || req.kind !== 'Replace' || req.path !== 'OWN/Self/On') return out;
    const v = parseBool(req.data);
    if (v === undefined) return out; // the per-device legs report the 400
    const wanted = new Set(req.addresses);
    const byArea = new Map<string, OwnDevice[]>();
    for (const a of req.addresses) {
      const d = this.devices.get(a);
      const area = d?.who === '1' && d.attached ? areaOf(d.where) : undefined;
      if (!d || area === undefined) continue;
      byArea.set(area, [...(byArea.get(area) ?? []), d]);
    }
    for (const [area, members] of byArea) {
      // An area command reaches every light of the area: only when the fanout covers all we know there.
      const all = [...this.devices.values()].filter((d) => d.who === '1' && areaOf(d.where) === area);
      if (members.length < 2 || !all.every((d) => wanted.has(addressOf(d.who, d.where)) && d.attached)) continue;
      try {
        await this.native(command('1', v ? '1' : '0', area));
        this.multicasts++;
        for (const d of members) out.set(addressOf(d.who, d.where), { status: 200 });
      } catch {
        // Left to the per-device legs, which report each point's own status.
      }
    }
    return out;
  }

  // ---- the DM subtree ----

  device(address: string): TreePlugin | undefined {
    const d = this.devices.get(address);
    if (!d) return undefined;
    let p = this.plugins.get(address);
    if (!p) {
      p = deviceSubtree(
        () => ({ deviceId: this.describe(d).deviceId, man: 'BTicino', mod: MODELS[d.who] }),
        'OWN',
        this.protocolPlugin(d),
      );
      this.plugins.set(address, p);
    }
    return p;
  }

  private protocolPlugin(d: OwnDevice): TreePlugin {
    const self = `${d.who}/${d.where}`;
    /** The leaf name for a path, or '' for the point node itself; undefined when not ours. */
    const leafOf = (path: string): string | undefined => {
      for (const base of [self, 'Self']) {
        if (path === base) return '';
        if (path.startsWith(`${base}/`)) return path.slice(base.length + 1);
      }
      return undefined;
    };
    const leaves = (): string[] => (d.name ? [...LEAVES[d.who], 'Name'] : LEAVES[d.who]);
    return {
      children: (path) => {
        if (path === '') return [d.who, 'Self'];
        if (path === d.who) return [d.where];
        return leafOf(path) === '' ? leaves() : [];
      },
      get: (path) => {
        if (path === '' || path === d.who) return { format: 'node', access: G };
        const leaf = leafOf(path);
        if (leaf === undefined) return undefined;
        if (leaf === '') return { format: 'node', access: G };
        if (!leaves().includes(leaf)) return undefined;
        return this.getLeaf(d, leaf);
      },
      // The same nodes without a status request: a write costs only its command frame.
      describe: (path) => {
        if (path === '' || path === d.who) return { format: 'node', access: G };
        const leaf = leafOf(path);
        if (leaf === undefined) return undefined;
        if (leaf === '') return { format: 'node', access: G };
        if (!leaves().includes(leaf)) return undefined;
        const meta = LEAF_META[leaf];
        return meta && { ...meta }; // a copy: callers may keep or adjust what they get
      },
      replace: (path, value: PluginWrite) => {
        const leaf = leafOf(path);
        if (leaf === undefined || leaf === '' || !leaves().includes(leaf)) throw new DmStatusError(404, 'OWN_NOT_MAPPED', `no node ${path}`);
        return this.write(d, leaf, value.data);
      },
      exec: (path, args: ExecArgs) => {
        const leaf = leafOf(path);
        if (leaf !== 'Command') {
          if (leaf === undefined || (leaf !== '' && !leaves().includes(leaf))) throw new DmStatusError(404, 'OWN_NOT_MAPPED', `no node ${path}`);
          throw new DmStatusError(405, 'OWN_NOT_EXECUTABLE', `${path} cannot be executed`);
        }
        return this.write(d, 'Command', typeof args.data === 'string' ? args.data : args.data === undefined ? undefined : String(args.data));
      },
    };
  }

  /** Reads a leaf (a status or dimension request for live values); LEAF_META gives the same format and access. */
  private async getLeaf(d: OwnDevice, leaf: string): Promise<PluginNodeView> {
    const chr = (data: string, access: readonly ('Get' | 'Replace' | 'Exec')[] = G): PluginNodeView => ({ format: 'chr', data, access });
    switch (leaf) {
      case 'Status': {
        const replies = await this.ask(d, statusRequest(d.who, d.where), (f) => f.kind === 'normal');
        if (!replies.length) {
          this.detach(d);
          throw noAnswer(d);
        }
        this.attach(d);
        return chr(formatFrame(replies.at(-1)!));
      }
      case 'Command':
        return chr(d.lastWhat, GRE);
      case 'LastKnown':
        return chr(d.last);
      case 'Name':
        return chr(d.name ?? '');
      case 'On': {
        return { format: 'bool', data: (await this.whatOf(d)) === '0' ? 'false' : 'true', access: GR };
      }
      case 'Level': {
        const n = Number(await this.whatOf(d));
        // WHAT 0 off, 1 on (a relay: full), 2..10 dimmer steps of 10 %.
        return { format: 'int', data: String(n === 0 ? 0 : n === 1 ? 100 : Math.min(100, n * 10)), access: GR };
      }
      case 'Move': {
        const what = await this.whatOf(d);
        return chr(MOVE_NAMES[Number(what)] ?? what, GR);
      }
      case 'Position': {
        const f = await this.dimensionOf(d, '10', 2);
        return { format: 'int', data: String(Number(f.values[1])), access: GR };
      }
      case 'Temperature': {
        const f = await this.dimensionOf(d, '0', 1);
        return { format: 'float', data: decodeTemperature(f.values[0]!).toFixed(1), access: G };
      }
      case 'Setpoint': {
        const f = await this.dimensionOf(d, '14', 1);
        return { format: 'float', data: decodeTemperature(f.values[0]!).toFixed(1), access: GR };
      }
      case 'Mode': {
        const what = await this.whatOf(d);
        return chr(MODE_NAMES[what] ?? what, GR);
      }
      default:
        throw new DmStatusError(404, 'OWN_NOT_MAPPED', `no leaf ${leaf}`);
    }
  }

  private async write(d: OwnDevice, leaf: string, raw: string | undefined): Promise<ExecResult> {
    const v = (raw ?? '').trim();
    switch (leaf) {
      case 'Command': {
        if (!/^\d+(#\d+)*$/.test(v)) throw bad(`Command Data is an OWN WHAT (digits, # parameters), not ${JSON.stringify(v)}`);
        const r = await this.send(d, command(d.who, v, d.who === '4' ? `#${d.where}` : d.where));
        d.lastWhat = v;
        return r;
      }
      case 'On': {
        const on = parseBool(v);
        if (on === undefined) throw bad(`On is true or false, not ${JSON.stringify(v)}`);
        return this.send(d, command('1', on ? '1' : '0', d.where));
      }
      case 'Level': {
        const n = Number(v);
        if (!/^\d+$/.test(v) || n > 100) throw bad(`Level is an integer 0..100, not ${JSON.stringify(v)}`);
        // 1..100 % maps to the dimmer steps 2..10 (20..100 %); 0 switches off.
        return this.send(d, command('1', n === 0 ? '0' : String(Math.max(2, Math.min(10, Math.round(n / 10)))), d.where));
      }
      case 'Move': {
        const what = MOVES[v.toLowerCase()];
        if (what === undefined) throw bad(`Move is up, down or stop, not ${JSON.stringify(v)}`);
        return this.send(d, command('2', what, d.where));
      }
      case 'Position': {
        const n = Number(v);
        if (!/^\d+$/.test(v) || n > 100) throw bad(`Position is an integer 0..100, not ${JSON.stringify(v)}`);
        return this.send(d, dimensionWrite('2', d.where, '11#001', [String(n)]));
      }
      case 'Setpoint': {
        const t = Number(v);
        if (v === '' || !Number.isFinite(t) || t < 3 || t > 40) throw bad(`Setpoint is a temperature 3..40 °C, not ${JSON.stringify(v)}`);
        return this.send(d, dimensionWrite('4', `#${d.where}`, '14', [encodeTemperature(t), '3']));
      }
      case 'Mode': {
        const what = MODES[v.toLowerCase()];
        if (what === undefined) throw bad(`Mode is one of ${Object.keys(MODES).join(', ')}, not ${JSON.stringify(v)}`);
        return this.send(d, command('4', what, `#${d.where}`));
      }
      default:
        throw new DmStatusError(405, 'OWN_READ_ONLY', `${leaf} cannot be written`);
    }
  }
}

function parseBool(v: string | undefined): boolean | undefined {
  const s = (v ?? '').trim().toLowerCase();
  return s === 'true' || s === '1' || s === 'on' ? true : s === 'false' || s === '0' || s === 'off' ? false : undefined;
}
