/**
 * Simulated KNX devices on a real KNXnet/IP server (knxd, see knxd.ts). Each device is its own
 * tunnel client with its own individual address (design/peers.md: read responses get lost when
 * clients share one), holds group-object values, answers GroupValue_Read with GroupValue_Response,
 * applies GroupValue_Write and can send telegrams of its own (a sensor reporting). Behaviours are
 * injectable: silent (connected but answering nothing), vanished (its tunnel closed), latency before
 * each answer, and ignoring writes (a device whose object has no write flag, or is broken).
 */
import { DmStatusError } from '../../src/errors.ts';
import { decodeValue, encodeValue, parseDpt, type Dpt } from './dpt.ts';
import { KnxTunnel, type Telegram } from './tunnel.ts';

/** One group object of a simulated device. */
export interface KnxSimObjectSpec {
  /** Group address, `main/middle/sub`. */
  ga: string;
  dpt: string;
  /** Initial value (text form of its DPT). */
  value?: string;
  /** Answers GroupValue_Read (the KNX read flag). Default true. */
  read?: boolean;
  /** Applies GroupValue_Write (the KNX write flag). Default true. */
  write?: boolean;
}

/** A simulated device. */
export interface KnxSimDeviceSpec {
  /** Individual address, `area.line.device`. */
  address: string;
  objects: KnxSimObjectSpec[];
}

/** Behaviour injected into a simulated device. */
export interface KnxSimBehaviour {
  /** Stays on the bus but answers no read. */
  silent?: boolean;
  /** Milliseconds before each answer. */
  latencyMs?: number;
  /** Ignores every GroupValue_Write (the value stays). */
  rejectWrites?: boolean;
}

/** Where the simulated devices connect. */
export interface KnxSimOptions {
  host?: string;
  port: number;
  localAddress?: string;
}

interface SimObject {
  ga: string;
  dpt: Dpt;
  value: string;
  read: boolean;
  write: boolean;
}

/** One simulated KNX device. */
export class KnxSimDevice {
  private tunnel: KnxTunnel | undefined;
  private readonly objects = new Map<string, SimObject>();
  private behaviour: KnxSimBehaviour = {};
  /** Group writes it received (applied or not), oldest first. */
  readonly writes: { ga: string; src: string; value: string; applied: boolean }[] = [];
  /** Reads it answered. */
  reads = 0;
  /** Reads it answered, per group address. */
  readsOf = new Map<string, number>();
  /** Why its tunnel was lost, if it was. */
  lost: string | undefined;

  constructor(
    readonly address: string,
    objects: KnxSimObjectSpec[],
    private readonly net: Required<Pick<KnxSimOptions, 'host' | 'localAddress'>> & { port: number },
  ) {
    for (const o of objects) {
      const dpt = parseDpt(o.dpt);
      const value = o.value === undefined ? decodeValue(dpt, Buffer.alloc(Math.max(1, Math.ceil(dpt.bits / 8)))) : decodeValue(dpt, encodeValue(dpt, o.value).data);
      this.objects.set(o.ga, { ga: o.ga, dpt, value, read: o.read ?? true, write: o.write ?? true });
    }
  }

  /** Whether its tunnel is up. */
  get online(): boolean {
    return !!this.tunnel?.usable;
  }

  /** Connects its tunnel to the KNXnet/IP server. */
  async connect(): Promise<void> {
    if (this.tunnel?.usable) return;
    this.lost = undefined;
    this.tunnel = await KnxTunnel.open({
      mode: 'tunnelling',
      host: this.net.host,
      port: this.net.port,
      physAddr: this.address,
      localAddress: this.net.localAddress,
      connectTimeoutMs: 3000,
      heartbeatMs: 1000,
      onTelegram: (t) => this.onTelegram(t),
      onLost: (why) => {
        this.lost = why;
      },
    });
  }

  /** Leaves the bus: its tunnel is closed, it answers nothing until `connect`. */
  async vanish(): Promise<void> {
    await this.tunnel?.close();
    this.tunnel = undefined;
  }

  /** Replaces its injected behaviour. */
  behave(b: KnxSimBehaviour): void {
    this.behaviour = { ...b };
  }

  /** The current value of a group object (text form). */
  value(ga: string): string | undefined {
    return this.objects.get(ga)?.value;
  }

  /** Sets a group object's value locally, and with `send` also reports it on the bus (GroupValue_Write). */
  async set(ga: string, text: string, send = false): Promise<void> {
    const o = this.objects.get(ga);
    if (!o) throw new DmStatusError(404, 'KNX_SIM_NO_OBJECT', `${this.address} has no group object ${ga}`);
    const enc = encodeValue(o.dpt, text);
    o.value = decodeValue(o.dpt, enc.data);
    if (send) {
      if (!this.tunnel) throw new DmStatusError(503, 'KNX_SIM_OFFLINE', `${this.address} is not on the bus`);
      await this.tunnel.send(ga, enc.data, enc.bitlength);
    }
  }

  private onTelegram(t: Telegram): void {
    const o = this.objects.get(t.dest);
    if (!o) return;
    if (t.apci === 'GroupValue_Read') {
      if (!o.read || this.behaviour.silent) return;
      void this.later(async () => {
        const enc = encodeValue(o.dpt, o.value);
        // Counted before the send: the reader may have the response before our L_Data.con.
        this.reads++;
        this.readsOf.set(o.ga, (this.readsOf.get(o.ga) ?? 0) + 1);
        await this.tunnel?.send(o.ga, enc.data, enc.bitlength, 'GroupValue_Response');
      });
    } else if (t.apci === 'GroupValue_Write' && t.data) {
      let value: string;
      try {
        value = decodeValue(o.dpt, t.data);
      } catch {
        return; // a telegram its DPT cannot carry: a real device ignores it too
      }
      const applied = o.write && !this.behaviour.rejectWrites;
      if (applied) o.value = value;
      this.writes.push({ ga: t.dest, src: t.src, value, applied });
    }
  }

  private async later(f: () => Promise<void>): Promise<void> {
    const ms = this.behaviour.latencyMs ?? 0;
    if (ms > 0) await new Promise((r) => setTimeout(r, ms));
    await f().catch(() => {}); // its tunnel went away meanwhile: the answer is lost, as on a real bus
  }
}

/** A set of simulated devices on one KNXnet/IP server. */
export class KnxSim {
  private readonly devices = new Map<string, KnxSimDevice>();
  private readonly net: Required<Pick<KnxSimOptions, 'host' | 'localAddress'>> & { port: number };

  constructor(opts: KnxSimOptions) {
    this.net = { host: opts.host ?? '127.0.0.1', port: opts.port, localAddress: opts.localAddress ?? '127.0.0.1' };
  }

  /** Adds a device and connects it. */
  async add(spec: KnxSimDeviceSpec): Promise<KnxSimDevice> {
    if (this.devices.has(spec.address)) throw new DmStatusError(418, 'KNX_SIM_EXISTS', `simulated device ${spec.address} exists`);
    const d = new KnxSimDevice(spec.address, spec.objects, this.net);
    this.devices.set(spec.address, d);
    await d.connect();
    return d;
  }

  /** A device by individual address. */
  device(address: string): KnxSimDevice | undefined {
    return this.devices.get(address);
  }

  /** Reconnects every device that is not online (after the server restarted). */
  async reconnect(): Promise<void> {
    for (const d of this.devices.values()) {
      if (d.online) continue;
      await d.vanish();
      await d.connect();
    }
  }

  /** Disconnects every device. */
  async stop(): Promise<void> {
    for (const d of this.devices.values()) await d.vanish();
    this.devices.clear();
  }
}
