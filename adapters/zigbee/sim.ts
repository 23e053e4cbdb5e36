/**
 * A simulated ZigBee network behind a simulated ZiGate coordinator, so that the real
 * zigbee-herdsman `Controller` runs without a radio (peers.md: no open-source coordinator emulator
 * exists). The coordinator speaks the ZiGate serial protocol (zigate.ts) over TCP on 127.0.0.1;
 * herdsman connects to it with `serialPort.path = tcp://127.0.0.1:<port>` and `adapter: 'zigate'`,
 * unmodified.
 *
 * Behind it live simulated devices (an on/off dimmable light with genOnOff 0x0006 and genLevelCtrl
 * 0x0008, a temperature sensor with msTemperatureMeasurement 0x0402, both with genBasic 0x0000
 * modelId/manufacturerName). They join while permit-join is open (a device announce), answer the
 * ZDO interview (node, active endpoints and simple descriptors), answer ZCL reads, writes,
 * attribute discovery and cluster commands, join ZCL groups and take group casts, report
 * attributes, and can be made to leave, go silent or be slow. Every ZCL frame is decoded and built
 * with herdsman's own codec (`Zcl.Frame.fromBuffer` / `Zcl.Frame.create(...).toBuffer()`), which
 * is also what tests assert on: `frames` keeps every decoded frame the controller sent.
 */
import { createServer, type Server, type Socket } from 'node:net';
import { Zcl } from 'zigbee-herdsman';
import { z } from 'zod';
import { AddrMode, Cmd, FrameSplitter, Msg, Status, decodeFrame, encodeFrame, ieeeFromBE, ieeeToBE, ieeeToLE } from './zigate.ts';

const HA_PROFILE = 0x0104;
const ZDO_PROFILE = 0x0000;
/** ZDO statuses (ZigBee spec 2.4.5). */
const ZDO_SUCCESS = 0x00;
const ZDO_INVALID_EP = 0x82;
const ZDO_DEVICE_NOT_FOUND = 0x81;
/** The simulated network's manufacturer code (any code herdsman has no quirk for). */
const SIM_MANUFACTURER_CODE = 0x1234;

/** Kinds of simulated end device. */
export const ZIGBEE_SIM_KINDS = ['light', 'temperature'] as const;
/** A kind of simulated device. */
export type ZigbeeSimKind = (typeof ZIGBEE_SIM_KINDS)[number];

/** A simulated device (an entry of `simulator.devices`). */
export const zigbeeSimDeviceSchema = z.object({
  /** EUI-64, e.g. `0x00124b0001a2b3c4`. */
  ieee: z
    .string()
    .regex(/^(0x)?[0-9a-fA-F]{16}$/, 'an EUI-64 of 16 hex digits')
    .transform((s) => `0x${s.replace(/^0x/, '').toLowerCase()}`),
  kind: z.enum(ZIGBEE_SIM_KINDS).default('light'),
  modelId: z.string().optional(),
  manufacturerName: z.string().default('gwmo-sim'),
  /** Joins as soon as the coordinator permits joining (a device in pairing mode). */
  autoJoin: z.boolean().default(true),
  /** Reports its main attribute this often (0: never). */
  reportIntervalMs: z.number().int().min(0).default(0),
});
/** A simulated device's description. */
export type ZigbeeSimDeviceSpec = z.input<typeof zigbeeSimDeviceSchema>;

/** The simulated network (`simulator:` in the adapter config). */
export const zigbeeSimSchema = z.object({
  devices: z.array(zigbeeSimDeviceSchema).default([]),
  /** Coordinator EUI-64. */
  ieee: z.string().regex(/^(0x)?[0-9a-fA-F]{16}$/).default('0x00158d00000c0071'),
  /** Milliseconds between permit-join opening and a waiting device's announce. */
  joinDelayMs: z.number().int().min(0).default(20),
});
/** Simulated network configuration. */
export type ZigbeeSimConfig = z.input<typeof zigbeeSimSchema>;

/** Behaviour injected into a simulated device. */
export interface ZigbeeSimBehaviour {
  /** Drops every frame addressed to it (a device that stopped answering). */
  silent?: boolean;
  /** Answers this many milliseconds late. */
  latencyMs?: number;
  /** Answers cluster commands with this ZCL status in a default response. */
  failWith?: number;
}

/** One ZCL frame the coordinator delivered to a simulated device, decoded by herdsman's codec. */
export interface SimFrameRecord {
  ieee: string;
  endpoint: number;
  clusterId: number;
  /** The group id when the frame was a group cast. */
  group?: number;
  frame: Zcl.Frame;
}

interface SimAttr {
  type: number;
  value: unknown;
  writable: boolean;
  min?: number;
  max?: number;
}

interface SimEndpoint {
  id: number;
  profileId: number;
  deviceId: number;
  /** Server (input) clusters and their attributes. */
  clusters: Map<number, Map<number, SimAttr>>;
  outClusters: number[];
  groups: Set<number>;
}

/** A simulated end device. */
export class ZigbeeSimDevice {
  readonly ieee: string;
  readonly kind: ZigbeeSimKind;
  nwk = 0;
  /** On the network now. */
  joined = false;
  /** Joins when permit join opens. */
  wantsJoin: boolean;
  behaviour: ZigbeeSimBehaviour = {};
  readonly endpoints = new Map<number, SimEndpoint>();
  reportIntervalMs: number;
  reportTimer: NodeJS.Timeout | undefined;
  /** Cluster commands it executed, newest last (`<cluster>/<command name>`). */
  readonly executed: string[] = [];

  constructor(spec: z.output<typeof zigbeeSimDeviceSchema>) {
    this.ieee = spec.ieee;
    this.kind = spec.kind;
    this.wantsJoin = spec.autoJoin;
    this.reportIntervalMs = spec.reportIntervalMs;
    const D = Zcl.DataType;
    const a = (type: number, value: unknown, writable = false, min?: number, max?: number): SimAttr => ({ type, value, writable, min, max });
    const basic = new Map<number, SimAttr>([
      [0x0000, a(D.UINT8, 8)],
      [0x0001, a(D.UINT8, 1)],
      [0x0002, a(D.UINT8, 2)],
      [0x0003, a(D.UINT8, 1)],
      [0x0004, a(D.CHAR_STR, spec.manufacturerName)],
      [0x0005, a(D.CHAR_STR, spec.modelId ?? (spec.kind === 'light' ? 'SIM-LIGHT-1' : 'SIM-TEMP-1'))],
      [0x0006, a(D.CHAR_STR, '20250101')],
      [0x0007, a(D.ENUM8, spec.kind === 'light' ? 1 : 3)],
      [0x0010, a(D.CHAR_STR, '', true)],
      [0x4000, a(D.CHAR_STR, '1.0.0')],
    ]);
    const identify = new Map<number, SimAttr>([[0x0000, a(D.UINT16, 0, true)]]);
    const clusters = new Map<number, Map<number, SimAttr>>([
      [0x0000, basic],
      [0x0003, identify],
    ]);
    if (spec.kind === 'light') {
      clusters.set(0x0004, new Map([[0x0000, a(D.BITMAP8, 0)]]));
      clusters.set(
        0x0006,
        new Map([
          [0x0000, a(D.BOOLEAN, 0)],
          [0x4001, a(D.UINT16, 0, true)],
          [0x4003, a(D.ENUM8, 1, true, 0, 0xff)],
        ]),
      );
      clusters.set(
        0x0008,
        new Map([
          [0x0000, a(D.UINT8, 254)],
          [0x000f, a(D.BITMAP8, 0, true)],
          [0x0010, a(D.UINT16, 0, true)],
          // OnLevel: 1..254, 0xff means "previous level" (ZCL 3.10.2.3).
          [0x0011, a(D.UINT8, 0xff, true, 1, 0xff)],
        ]),
      );
      this.endpoints.set(1, { id: 1, profileId: HA_PROFILE, deviceId: 0x0101, clusters, outClusters: [0x0019], groups: new Set() });
    } else {
      clusters.set(
        0x0001,
        new Map([
          [0x0020, a(D.UINT8, 30)],
          [0x0021, a(D.UINT8, 200)],
        ]),
      );
      clusters.set(
        0x0402,
        new Map([
          [0x0000, a(D.INT16, 2150)],
          [0x0001, a(D.INT16, -4000)],
          [0x0002, a(D.INT16, 12500)],
          [0x0003, a(D.UINT16, 50)],
        ]),
      );
      this.endpoints.set(1, { id: 1, profileId: HA_PROFILE, deviceId: 0x0302, clusters, outClusters: [0x0003], groups: new Set() });
    }
  }

  /** An attribute's current value (what a technician would read on the device). */
  attr(endpoint: number, cluster: number, attr: number): unknown {
    return this.endpoints.get(endpoint)?.clusters.get(cluster)?.get(attr)?.value;
  }

  /** Sets an attribute's value (the physical world changed: a switch, a temperature). */
  setAttr(endpoint: number, cluster: number, attr: number, value: unknown): void {
    const a = this.endpoints.get(endpoint)?.clusters.get(cluster)?.get(attr);
    if (!a) throw new Error(`no attribute ${cluster}/${attr} on endpoint ${endpoint}`);
    a.value = value;
  }

  /** Shorthand for the light: genOnOff.onOff. */
  get on(): boolean {
    return this.attr(1, 0x0006, 0x0000) === 1;
  }
}

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/** The simulated coordinator and its network. */
export class ZigbeeSim {
  private server: Server | undefined;
  private socket: Socket | undefined;
  private listenPort = 0;
  private seq = 0;
  private zdoTsn = 0;
  private zclTsn = 100;
  private readonly timers = new Set<NodeJS.Timeout>();
  readonly devices = new Map<string, ZigbeeSimDevice>();
  readonly coordinatorIeee: string;
  private readonly joinDelayMs: number;
  /** Network state the coordinator keeps in its persistent memory (survives host reconnects). */
  readonly network = { formed: false, channel: 11, panId: 0, extPanId: '0xdddddddddddddddd', keySet: false };
  private pendingExtPanId = '0xdddddddddddddddd';
  private pendingChannel = 11;
  private permitUntil = 0;
  /** Every ZCL frame delivered to a device, decoded with herdsman's codec. */
  readonly frames: SimFrameRecord[] = [];
  /** ZiGate commands received, by name of code (for tests): `0x0530` etc. */
  readonly commands: number[] = [];
  /** Host connections accepted so far. */
  connections = 0;

  constructor(config: ZigbeeSimConfig = {}) {
    const c = zigbeeSimSchema.parse(config);
    this.coordinatorIeee = `0x${c.ieee.replace(/^0x/, '').toLowerCase()}`;
    this.joinDelayMs = c.joinDelayMs;
    for (const d of c.devices) this.addDevice(d);
  }

  /** The path herdsman connects to. */
  get url(): string {
    return `tcp://127.0.0.1:${this.listenPort}`;
  }

  get port(): number {
    return this.listenPort;
  }

  /** Listens on 127.0.0.1 (a free port the first time, the same port after `online`). */
  async start(): Promise<void> {
    if (this.server) return;
    const server = createServer((s) => this.accept(s));
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(this.listenPort, '127.0.0.1', () => {
        server.off('error', reject);
        resolve();
      });
    });
    this.listenPort = (server.address() as { port: number }).port;
    this.server = server;
  }

  /** Stops listening, drops the host and every timer. */
  async stop(): Promise<void> {
    await this.offline();
    for (const t of this.timers) clearTimeout(t);
    this.timers.clear();
    for (const d of this.devices.values()) {
      if (d.reportTimer) clearInterval(d.reportTimer);
      d.reportTimer = undefined;
    }
  }

  /** The link to the host drops and connections are refused (a dongle unplugged). */
  async offline(): Promise<void> {
    const s = this.server;
    this.server = undefined;
    this.socket?.destroy();
    this.socket = undefined;
    if (s) await new Promise<void>((r) => s.close(() => r()));
  }

  /** The dongle is back, on the same port. */
  async online(): Promise<void> {
    await this.start();
  }

  private later(ms: number, f: () => void): void {
    const t = setTimeout(() => {
      this.timers.delete(t);
      f();
    }, ms);
    this.timers.add(t);
  }

  private accept(s: Socket): void {
    // One serial line: a new host connection replaces the old one.
    this.socket?.destroy();
    this.socket = s;
    this.connections++;
    s.setNoDelay(true);
    const splitter = new FrameSplitter();
    s.on('data', (chunk: Buffer) => {
      for (const inner of splitter.push(chunk)) {
        try {
          const f = decodeFrame(inner);
          this.command(f.code, f.payload);
        } catch {
          // A corrupt frame is dropped, as the firmware does; the host times out and retries.
        }
      }
    });
    s.on('error', () => {});
    s.on('close', () => {
      if (this.socket === s) this.socket = undefined;
    });
  }

  private send(code: number, payload: Buffer): void {
    const s = this.socket;
    if (!s || s.destroyed) return;
    s.write(encodeFrame(code, payload, 0xc8));
  }

  private status(cmd: number, status: number = Status.Success): void {
    const p = Buffer.alloc(4);
    p[0] = status;
    p[1] = this.seq++ & 0xff;
    p.writeUInt16BE(cmd, 2);
    this.send(Msg.Status, p);
  }

  /** Adds a device to the simulated world (not yet on the network). */
  addDevice(spec: ZigbeeSimDeviceSpec): ZigbeeSimDevice {
    const d = new ZigbeeSimDevice(zigbeeSimDeviceSchema.parse(spec));
    this.devices.set(d.ieee, d);
    if (d.wantsJoin && this.permitting()) this.later(this.joinDelayMs, () => this.tryJoin(d));
    return d;
  }

  /** The device with that EUI-64 (any case, with or without 0x). */
  device(ieee: string): ZigbeeSimDevice | undefined {
    return this.devices.get(`0x${ieee.replace(/^0x/, '').toLowerCase()}`);
  }

  private need(ieee: string): ZigbeeSimDevice {
    const d = this.device(ieee);
    if (!d) throw new Error(`no simulated device ${ieee}`);
    return d;
  }

  /** Permit join is open on the coordinator now. */
  permitting(): boolean {
    return Date.now() < this.permitUntil;
  }

  /** Puts a device in pairing mode: it joins now if joining is permitted, else as soon as it is. */
  pair(ieee: string): void {
    const d = this.need(ieee);
    d.wantsJoin = true;
    if (this.permitting()) this.tryJoin(d);
  }

  private tryJoin(d: ZigbeeSimDevice): void {
    if (d.joined || !d.wantsJoin || !this.permitting() || !this.network.formed) return;
    const used = new Set([...this.devices.values()].filter((x) => x.joined).map((x) => x.nwk));
    let nwk = 0;
    while (nwk === 0 || used.has(nwk)) nwk = 1 + Math.floor(Math.random() * 0xfff0);
    d.nwk = nwk;
    d.joined = true;
    d.wantsJoin = false;
    this.announce(d);
    if (d.reportIntervalMs > 0 && !d.reportTimer) {
      d.reportTimer = setInterval(() => {
        if (!d.joined || d.behaviour.silent) return;
        if (d.kind === 'temperature') {
          const v = Number(d.attr(1, 0x0402, 0)) + (Math.random() < 0.5 ? -5 : 5);
          d.setAttr(1, 0x0402, 0, v);
          this.report(d.ieee, 1, 0x0402, [0]);
        } else this.report(d.ieee, 1, 0x0006, [0]);
      }, d.reportIntervalMs);
    }
  }

  /** The device announces itself (ZDO Device_annce, ZiGate 0x004D): a join or a rejoin. */
  announce(d: ZigbeeSimDevice): void {
    const p = Buffer.alloc(11);
    p.writeUInt16BE(d.nwk, 0);
    ieeeToBE(d.ieee).copy(p, 2);
    // MAC capabilities: a mains-powered router (light) or a sleepy end device (sensor).
    p[10] = d.kind === 'light' ? 0x8e : 0x80;
    this.send(Msg.DeviceAnnounce, p);
  }

  /** The device leaves the network by itself (ZiGate 0x8048 leave indication, no rejoin). */
  leave(ieee: string): void {
    const d = this.need(ieee);
    if (!d.joined) return;
    this.dropOff(d);
    const p = Buffer.alloc(9);
    ieeeToBE(d.ieee).copy(p, 0);
    p[8] = 0;
    this.send(Msg.LeaveIndication, p);
  }

  private dropOff(d: ZigbeeSimDevice): void {
    d.joined = false;
    for (const ep of d.endpoints.values()) ep.groups.clear();
    if (d.reportTimer) clearInterval(d.reportTimer);
    d.reportTimer = undefined;
  }

  /** Injects a behaviour (`undefined` clears it). */
  behave(ieee: string, b: ZigbeeSimBehaviour | undefined): void {
    this.need(ieee).behaviour = b ?? {};
  }

  /** The device reports attributes (ZCL Report Attributes to the coordinator). */
  report(ieee: string, endpoint: number, clusterId: number, attrIds: number[]): void {
    const d = this.need(ieee);
    const cl = d.endpoints.get(endpoint)?.clusters.get(clusterId);
    if (!cl || !d.joined) return;
    const payload = attrIds.flatMap((id) => {
      const a = cl.get(id);
      return a ? [{ attrId: id, dataType: a.type, attrData: a.value }] : [];
    });
    const f = Zcl.Frame.create(Zcl.FrameType.GLOBAL, Zcl.Direction.SERVER_TO_CLIENT, true, undefined, this.zclTsn++ & 0xff, 'report', clusterId, payload, {});
    this.dataIndication(HA_PROFILE, clusterId, endpoint, 1, d.nwk, f.toBuffer());
  }

  private dataIndication(profile: number, cluster: number, srcEp: number, dstEp: number, srcNwk: number, data: Buffer): void {
    const head = Buffer.alloc(13);
    head[0] = 0; // status
    head.writeUInt16BE(profile, 1);
    head.writeUInt16BE(cluster, 3);
    head[5] = srcEp;
    head[6] = dstEp;
    head[7] = AddrMode.Short;
    head.writeUInt16BE(srcNwk, 8);
    head[10] = AddrMode.Short;
    head.writeUInt16BE(0x0000, 11);
    this.send(Msg.DataIndication, Buffer.concat([head, data]));
  }

  private zdoReply(srcNwk: number, cluster: number, body: Buffer): void {
    this.dataIndication(ZDO_PROFILE, cluster, 0, 0, srcNwk, Buffer.concat([Buffer.from([this.zdoTsn++ & 0xff]), body]));
  }

  private byNwk(nwk: number): ZigbeeSimDevice | undefined {
    for (const d of this.devices.values()) if (d.joined && d.nwk === nwk) return d;
    return undefined;
  }

  /** One ZiGate command from the host. */
  private command(code: number, p: Buffer): void {
    this.commands.push(code);
    if (this.commands.length > 2000) this.commands.splice(0, 1000);
    const net = this.network;
    switch (code) {
      case Cmd.Reset:
        // No Status: the firmware restarts and says whether it holds a network (herdsman: 'resumed' or 'reset').
        this.later(5, () => this.send(net.formed ? Msg.RestartNonFactoryNew : Msg.RestartFactoryNew, Buffer.from([net.formed ? 1 : 0])));
        return;
      case Cmd.ErasePersistentData:
        net.formed = false;
        net.keySet = false;
        for (const d of this.devices.values()) if (d.joined) this.dropOff(d);
        this.later(5, () => this.send(Msg.RestartFactoryNew, Buffer.from([0])));
        return;
      case Cmd.RawMode:
      case Cmd.SetDeviceType:
      case Cmd.SetTxPower:
      case Cmd.AddGroup:
        this.status(code);
        return;
      case Cmd.SetChannelMask: {
        const mask = p.length >= 4 ? p.readUInt32BE(0) : 0;
        let ch = 0;
        for (let c = 11; c <= 26; c++) if (mask & (1 << c)) { ch = c; break; }
        if (!ch) return this.status(code, Status.IncorrectParameters);
        this.pendingChannel = ch;
        this.status(code);
        return;
      }
      case Cmd.SetSecurityStateKey:
        // <key type:u8><key:16>; the key is kept as "set", never stored in clear or logged.
        if (p.length !== 17) return this.status(code, Status.IncorrectParameters);
        if (!net.formed) net.keySet = true;
        this.status(code);
        return;
      case Cmd.SetExtendedPanId:
        if (p.length !== 8) return this.status(code, Status.IncorrectParameters);
        if (net.formed) return this.status(code, Status.StackAlreadyStarted);
        this.pendingExtPanId = ieeeFromBE(p);
        this.status(code);
        return;
      case Cmd.StartNetwork: {
        this.status(code);
        const formedNow = !net.formed;
        if (formedNow) {
          net.formed = true;
          net.channel = this.pendingChannel;
          net.extPanId = this.pendingExtPanId;
          net.panId = 1 + Math.floor(Math.random() * 0xfffd);
        }
        const j = Buffer.alloc(3);
        j[0] = formedNow ? 1 : 0;
        j.writeUInt16BE(0x0000, 1);
        this.later(2, () => this.send(Msg.NetworkJoined, j));
        return;
      }
      case Cmd.GetNetworkState: {
        this.status(code);
        const s = Buffer.alloc(21);
        s.writeUInt16BE(0x0000, 0);
        ieeeToBE(this.coordinatorIeee).copy(s, 2);
        s.writeUInt16BE(net.panId, 10);
        ieeeToBE(net.extPanId).copy(s, 12);
        s[20] = net.channel;
        this.send(Msg.NetworkState, s);
        return;
      }
      case Cmd.GetVersion: {
        this.status(code);
        const v = Buffer.alloc(4);
        v[0] = 0;
        v[1] = 3;
        v.writeUInt16BE(0x031e, 2);
        this.send(Msg.VersionList, v);
        return;
      }
      case Cmd.PermitJoin: {
        // <target:u16><duration:u8><TC significance:u8> (herdsman prefixes the target).
        if (p.length < 3) return this.status(code, Status.IncorrectParameters);
        const target = p.readUInt16BE(0);
        const seconds = p[2]!;
        this.status(code);
        if (target === 0x0000 || target >= 0xfff8) {
          this.permitUntil = seconds === 0 ? 0 : Date.now() + seconds * 1000;
          if (seconds > 0) {
            let i = 0;
            for (const d of this.devices.values()) if (d.wantsJoin && !d.joined) this.later(this.joinDelayMs * ++i, () => this.tryJoin(d));
          }
        }
        return;
      }
      case Cmd.ManagementNetworkUpdate: {
        // <target:u16><channel mask:u32 BE (herdsman writes ZDO requests big-endian for ZiGate)>...
        this.status(code);
        if (p.length >= 6) {
          const mask = p.readUInt32BE(2);
          for (let c = 11; c <= 26; c++) if (mask & (1 << c)) { net.channel = c; break; }
        }
        return;
      }
      case Cmd.NodeDescriptor:
      case Cmd.ActiveEndpoint:
      case Cmd.SimpleDescriptor:
      case Cmd.IeeeAddress:
        this.status(code);
        this.zdo(code, p);
        return;
      case Cmd.LeaveRequest: {
        // <ieee:8 BE><flags:u8><remove children:u8>: the device leaves and the coordinator says so.
        this.status(code);
        if (p.length < 8) return;
        const d = this.device(ieeeFromBE(p.subarray(0, 8)));
        if (!d || !d.joined || d.behaviour.silent) return;
        this.later(d.behaviour.latencyMs ?? 1, () => this.leave(d.ieee));
        return;
      }
      case Cmd.RawApsDataRequest:
        this.aps(p);
        return;
      default:
        this.status(code, Status.UnhandledCommand);
    }
  }

  /** ZDO requests (payloads big-endian as herdsman writes them for ZiGate); answers are standard little-endian ZDO. */
  private zdo(code: number, p: Buffer): void {
    if (p.length < 2) return;
    const nwk = p.readUInt16BE(0);
    const le16 = (n: number): Buffer => {
      const b = Buffer.alloc(2);
      b.writeUInt16LE(n);
      return b;
    };
    if (nwk === 0x0000) {
      // The coordinator's own descriptors (herdsman reads them once at first start).
      if (code === Cmd.ActiveEndpoint) this.zdoReply(0, 0x8005, Buffer.concat([Buffer.from([ZDO_SUCCESS]), le16(0), Buffer.from([1, 1])]));
      else if (code === Cmd.SimpleDescriptor) {
        const ins = [0x0000, 0x0006, 0x000a, 0x0019, 0x0501];
        const outs = [0x0000, 0x0003, 0x0004, 0x0006, 0x0008, 0x0402];
        this.zdoReply(0, 0x8004, Buffer.concat([Buffer.from([ZDO_SUCCESS]), le16(0), simpleDescriptor(1, HA_PROFILE, 0x0005, ins, outs)]));
      } else if (code === Cmd.NodeDescriptor) this.zdoReply(0, 0x8002, Buffer.concat([Buffer.from([ZDO_SUCCESS]), le16(0), nodeDescriptor(0, 0x8f)]));
      return;
    }
    const d = this.byNwk(nwk);
    if (!d || d.behaviour.silent) return; // no answer: the host times out
    const reply = (cluster: number, body: Buffer): void => {
      this.later(d.behaviour.latencyMs ?? 0, () => this.zdoReply(d.nwk, cluster, body));
    };
    switch (code) {
      case Cmd.NodeDescriptor:
        reply(0x8002, Buffer.concat([Buffer.from([ZDO_SUCCESS]), le16(d.nwk), nodeDescriptor(d.kind === 'light' ? 1 : 2, d.kind === 'light' ? 0x8e : 0x80)]));
        return;
      case Cmd.ActiveEndpoint:
        reply(0x8005, Buffer.concat([Buffer.from([ZDO_SUCCESS]), le16(d.nwk), Buffer.from([d.endpoints.size, ...d.endpoints.keys()])]));
        return;
      case Cmd.SimpleDescriptor: {
        const ep = d.endpoints.get(p[2] ?? 0);
        if (!ep) return reply(0x8004, Buffer.from([ZDO_INVALID_EP]));
        reply(0x8004, Buffer.concat([Buffer.from([ZDO_SUCCESS]), le16(d.nwk), simpleDescriptor(ep.id, ep.profileId, ep.deviceId, [...ep.clusters.keys()], ep.outClusters)]));
        return;
      }
      case Cmd.IeeeAddress:
        reply(0x8001, Buffer.concat([Buffer.from([ZDO_SUCCESS]), ieeeToLE(d.ieee), le16(d.nwk)]));
        return;
      default:
        reply(0x8000 | (code & 0xff), Buffer.from([ZDO_DEVICE_NOT_FOUND]));
    }
  }

  /** 0x0530 raw APS data request: a ZCL frame to one device endpoint or to a group. */
  private aps(p: Buffer): void {
    if (p.length < 12) return this.status(Cmd.RawApsDataRequest, Status.IncorrectParameters);
    const mode = p[0]!;
    const target = p.readUInt16BE(1);
    const srcEp = p[3]!;
    const dstEp = p[4]!;
    const cluster = p.readUInt16BE(5);
    const profile = p.readUInt16BE(7);
    const len = p[11]!;
    const data = p.subarray(12, 12 + len);
    if (data.length !== len) return this.status(Cmd.RawApsDataRequest, Status.IncorrectParameters);
    this.status(Cmd.RawApsDataRequest);
    if (profile !== HA_PROFILE) return;
    let frame: Zcl.Frame;
    try {
      frame = Zcl.Frame.fromBuffer(cluster, Zcl.Header.fromBuffer(data), data, {});
    } catch {
      return; // not a frame a ZCL device would parse: dropped
    }
    if (mode === AddrMode.Group) {
      for (const d of this.devices.values()) {
        if (!d.joined || d.behaviour.silent) continue;
        for (const ep of d.endpoints.values()) {
          if (!ep.groups.has(target)) continue;
          this.record({ ieee: d.ieee, endpoint: ep.id, clusterId: cluster, group: target, frame });
          // Group casts get no response (ZCL 2.5.12.2: no default response to multicasts).
          this.later(d.behaviour.latencyMs ?? 0, () => void this.zcl(d, ep, srcEp, frame, false));
        }
      }
      return;
    }
    const d = this.byNwk(target);
    if (!d) return;
    const ep = d.endpoints.get(dstEp);
    this.record({ ieee: d.ieee, endpoint: dstEp, clusterId: cluster, frame });
    if (d.behaviour.silent || !ep) return;
    this.later(d.behaviour.latencyMs ?? 0, () => this.zcl(d, ep, srcEp, frame, true));
  }

  private record(r: SimFrameRecord): void {
    this.frames.push(r);
    if (this.frames.length > 1000) this.frames.splice(0, 500);
  }

  /** A device handles one ZCL frame; `unicast` frames get responses. */
  private zcl(d: ZigbeeSimDevice, ep: SimEndpoint, replyEp: number, f: Zcl.Frame, unicast: boolean): void {
    if (!d.joined) return;
    const S = Zcl.Status;
    const cid = f.cluster.ID;
    const tsn = f.header.transactionSequenceNumber;
    const send = (type: Zcl.FrameType, cmd: string, payload: unknown): void => {
      if (!unicast) return;
      const out = Zcl.Frame.create(type, Zcl.Direction.SERVER_TO_CLIENT, true, f.header.manufacturerCode, tsn, cmd, cid, payload as never, {});
      this.dataIndication(HA_PROFILE, cid, ep.id, replyEp, d.nwk, out.toBuffer());
    };
    const defaultRsp = (status: number, always = false): void => {
      // A default response goes back unless disabled, and always on an error (ZCL 2.5.12.2).
      if (!always && status === S.SUCCESS && f.header.frameControl.disableDefaultResponse) return;
      send(Zcl.FrameType.GLOBAL, 'defaultRsp', { cmdId: f.header.commandIdentifier, statusCode: status });
    };
    const cl = ep.clusters.get(cid);
    if (!cl) return defaultRsp(S.UNSUPPORTED_CLUSTER, true);
    if (f.header.isGlobal) {
      const name = f.command.name;
      if (name === 'read') {
        const recs = (f.payload as { attrId: number }[]).map(({ attrId }) => {
          const a = cl.get(attrId);
          return a ? { attrId, status: S.SUCCESS, dataType: a.type, attrData: a.value } : { attrId, status: S.UNSUPPORTED_ATTRIBUTE };
        });
        return send(Zcl.FrameType.GLOBAL, 'readRsp', recs);
      }
      if (name === 'write' || name === 'writeUndiv' || name === 'writeNoRsp') {
        const recs = f.payload as { attrId: number; dataType: number; attrData: unknown }[];
        const failures: { attrId: number; status: number }[] = [];
        for (const r of recs) {
          const a = cl.get(r.attrId);
          let st: number = S.SUCCESS;
          if (!a) st = S.UNSUPPORTED_ATTRIBUTE;
          else if (!a.writable) st = S.READ_ONLY;
          else if (a.type !== r.dataType) st = S.INVALID_DATA_TYPE;
          else if (typeof r.attrData === 'number' && ((a.min !== undefined && r.attrData < a.min) || (a.max !== undefined && r.attrData > a.max))) st = S.INVALID_VALUE;
          if (st !== S.SUCCESS) failures.push({ attrId: r.attrId, status: st });
        }
        // writeUndiv is all-or-nothing; write applies the attributes that passed (ZCL 2.5.3/2.5.4).
        if (!(name === 'writeUndiv' && failures.length)) {
          for (const r of recs) if (!failures.some((x) => x.attrId === r.attrId)) cl.get(r.attrId)!.value = r.attrData;
        }
        if (name === 'writeNoRsp') return;
        return send(Zcl.FrameType.GLOBAL, 'writeRsp', failures.length ? failures : [{ status: S.SUCCESS }]);
      }
      if (name === 'discover') {
        const { startAttrId, maxAttrIds } = f.payload as { startAttrId: number; maxAttrIds: number };
        const ids = [...cl.keys()].filter((id) => id >= startAttrId).sort((a, b) => a - b);
        const some = ids.slice(0, maxAttrIds);
        return send(Zcl.FrameType.GLOBAL, 'discoverRsp', { discComplete: some.length === ids.length ? 1 : 0, attrInfos: some.map((id) => ({ attrId: id, dataType: cl.get(id)!.type })) });
      }
      return defaultRsp(S.UNSUP_GENERAL_COMMAND, true);
    }
    // Cluster-specific commands.
    if (d.behaviour.failWith !== undefined) return defaultRsp(d.behaviour.failWith, true);
    const cmd = f.command.name;
    const pl = f.payload as Record<string, unknown>;
    d.executed.push(`${f.cluster.name}/${cmd}`);
    const onOff = ep.clusters.get(0x0006);
    const setOn = (v: boolean): void => {
      onOff?.get(0x0000) && (onOff.get(0x0000)!.value = v ? 1 : 0);
    };
    switch (`${cid}/${cmd}`) {
      case '6/off':
        setOn(false);
        return defaultRsp(S.SUCCESS);
      case '6/on':
        setOn(true);
        return defaultRsp(S.SUCCESS);
      case '6/toggle':
        setOn(onOff?.get(0)?.value !== 1);
        return defaultRsp(S.SUCCESS);
      case '8/moveToLevel':
      case '8/moveToLevelWithOnOff': {
        const level = Number(pl['level']);
        if (!(level >= 0 && level <= 254)) return defaultRsp(S.INVALID_FIELD, true);
        cl.get(0x0000)!.value = level;
        if (cmd === 'moveToLevelWithOnOff') setOn(level > 0);
        return defaultRsp(S.SUCCESS);
      }
      case '8/stop':
      case '8/stopWithOnOff':
        return defaultRsp(S.SUCCESS);
      case '3/identify':
        cl.get(0x0000)!.value = Number(pl['identifytime'] ?? 0);
        return defaultRsp(S.SUCCESS);
      case '4/add':
      case '4/addIfIdentifying': {
        const g = Number(pl['groupid']);
        ep.groups.add(g);
        if (cmd === 'add') return send(Zcl.FrameType.SPECIFIC, 'addRsp', { status: S.SUCCESS, groupid: g });
        return defaultRsp(S.SUCCESS);
      }
      case '4/remove': {
        const g = Number(pl['groupid']);
        const had = ep.groups.delete(g);
        return send(Zcl.FrameType.SPECIFIC, 'removeRsp', { status: had ? S.SUCCESS : S.NOT_FOUND, groupid: g });
      }
      case '4/removeAll':
        ep.groups.clear();
        return defaultRsp(S.SUCCESS);
      case '4/getMembership':
        return send(Zcl.FrameType.SPECIFIC, 'getMembershipRsp', { capacity: 16 - ep.groups.size, groupcount: ep.groups.size, grouplist: [...ep.groups] });
      default:
        d.executed.pop();
        return defaultRsp(S.UNSUP_COMMAND, true);
    }
  }

  /** Resolves with the first frame after now that matches `pred` (test helper), or rejects after `ms`. */
  async waitFrame(pred: (r: SimFrameRecord) => boolean, ms = 5000): Promise<SimFrameRecord> {
    const deadline = Date.now() + ms;
    const from = this.frames.length;
    for (;;) {
      const hit = this.frames.slice(Math.min(from, this.frames.length)).find(pred);
      if (hit) return hit;
      if (Date.now() > deadline) throw new Error('no matching frame');
      await sleep(10);
    }
  }
}

/** ZDO node descriptor body after the NWK address (ZigBee spec 2.3.2.3), little-endian. */
function nodeDescriptor(logicalType: number, macCap: number): Buffer {
  const b = Buffer.alloc(10);
  b[0] = logicalType & 0x07;
  b[1] = 0x40; // 2.4 GHz band
  b[2] = macCap;
  b.writeUInt16LE(SIM_MANUFACTURER_CODE, 3);
  b[5] = 0x52; // max buffer size
  b.writeUInt16LE(0x0052, 6); // max incoming transfer size
  b.writeUInt16LE(22 << 9, 8); // server mask: stack compliance revision 22
  // max outgoing transfer size + descriptor capabilities follow.
  return Buffer.concat([b, Buffer.from([0x52, 0x00, 0x00])]);
}

/** ZDO simple descriptor with its length byte (ZigBee spec 2.3.2.5), little-endian. */
function simpleDescriptor(ep: number, profile: number, device: number, ins: number[], outs: number[]): Buffer {
  const body = Buffer.alloc(8 + 2 * ins.length + 2 * outs.length);
  let o = 0;
  body[o++] = ep;
  o = body.writeUInt16LE(profile, o);
  o = body.writeUInt16LE(device, o);
  body[o++] = 1; // device version
  body[o++] = ins.length;
  for (const c of ins) o = body.writeUInt16LE(c, o);
  body[o++] = outs.length;
  for (const c of outs) o = body.writeUInt16LE(c, o);
  return Buffer.concat([Buffer.from([body.length]), body]);
}
