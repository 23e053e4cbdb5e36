/**
 * Adaptation and association configuration (GwMO-AMode-006, notes §1.8 "Association / adaptation
 * config", PROPOSED layout, extended): one node per adaptation network at
 * `./GwMO/Adaptation/<name>`, where the server reads the link's state, changes the network's
 * settings, runs its operations (PermitJoin, Scan, ...) and configures associations with end
 * devices, which the gateway then establishes or removes on the native network.
 *
 * ```
 * ./GwMO/Adaptation/<name>/Protocol            chr  G     KNX | ZigBee | OpenWebNet | BLE | Sim
 *                         /Enabled             bool G,R   false stops the network (and detaches its devices)
 *                         /State               chr  G     connected | connecting | backoff | stopped | disabled
 *                         /StateDetail         chr  G     why (the last link error, the next retry)
 *                         /Devices             int  G     attached devices of this network
 *                         /<setting>           *    G,R   the adapter's settings; secrets are R only
 *                         /Operations/<op>     null E     the adapter's operations (Item Data = argument)
 *                         /Associations/<x>    node G,A,D server-configured associations
 *                              /<param>        *    G,R,A association parameters; secrets R,A only
 *                              /Operations/Establish null E  establish it now (answers the adapter's status)
 *                              /Operations/Remove    null E  remove it from the network, keep the configuration
 *                              /State          chr  G     Configured | Established | Failed | Removed
 *                              /DeviceID       chr  G     the device it established (its inventory record)
 *                              /Error          chr  G     why the last Establish failed
 * ```
 *
 * Deleting `Associations/<x>` removes an established association first. Settings and associations
 * are kept in LevelDB: at start the settings are applied before the adapter connects, and
 * established associations are established again (a KNX device configured by the server is a
 * device the adapter only knows from this record). Secret values are never logged or read back.
 */
import { DmStatusError } from '../errors.ts';
import type { Logger } from '../log.ts';
import type { Section } from '../store/store.ts';
import type { AccessType, PluginNodeView, PluginWrite, TreePlugin } from '../tree/tree.ts';
import type { Adapter, AdapterParam } from '../../adapters/contract.ts';

/** Where the adaptation networks live in the gateway's tree. */
export const ADAPTATION_ROOT = './GwMO/Adaptation';
/** MOID (notes §1.1). */
export const ADAPTATION_MOID = 'urn:oma:mo:oma-gwmo-adaptation:1.1';

/** A server-configured association. */
export interface AssociationSpec {
  network: string;
  id: string;
  params: Record<string, string>;
  state: 'Configured' | 'Established' | 'Failed' | 'Removed';
  deviceId?: string;
  address?: string;
  error?: string;
}

/** Persisted settings of one network. */
export interface NetworkSettings {
  enabled: boolean;
  values: Record<string, string>;
}

/** What the service needs from the gateway. */
export interface AdaptationHooks {
  /** Starts an adapter (wiring its events to the inventory). */
  start(adapter: Adapter): Promise<void>;
  /** Stops an adapter and marks its devices detached. */
  stop(adapter: Adapter): Promise<void>;
  /** Attached devices of a network. */
  attached(network: string): number;
  /** Forgets a device's inventory record after its association was deleted. */
  forget(deviceId: string): Promise<void>;
  log: Logger;
}

const G: readonly AccessType[] = ['Get'];
const GR: readonly AccessType[] = ['Get', 'Replace'];
const notFound = (p: string): DmStatusError => new DmStatusError(404, 'GW_ADAPT_NOT_FOUND', `${ADAPTATION_ROOT}/${p} does not exist`);
const notAllowed = (p: string, why = 'command not allowed'): DmStatusError => new DmStatusError(405, 'GW_ADAPT_NOT_ALLOWED', `${why} on ${ADAPTATION_ROOT}/${p}`);
const ASSOC_FIXED = ['Operations', 'State', 'DeviceID', 'Error'];

/** Checks a value against a parameter's DM format (the adapter checks its meaning). */
function checkFormat(p: AdapterParam, v: string, where: string): void {
  if (p.format === 'int' && !/^-?\d+$/.test(v.trim())) throw new DmStatusError(400, 'GW_ADAPT_BAD_VALUE', `${where} is an integer, not ${JSON.stringify(v)}`);
  if (p.format === 'bool' && !['true', 'false'].includes(v.trim())) throw new DmStatusError(400, 'GW_ADAPT_BAD_VALUE', `${where} is true or false`);
}

/** Serves `./GwMO/Adaptation` and keeps its state. */
export class AdaptationService {
  private readonly assoc = new Map<string, AssociationSpec>();
  private readonly settings = new Map<string, NetworkSettings>();

  private constructor(
    private readonly adapters: ReadonlyMap<string, Adapter>,
    private readonly assocSection: Section<AssociationSpec>,
    private readonly settingsSection: Section<NetworkSettings>,
    private readonly hooks: AdaptationHooks,
  ) {}

  /** Loads the persisted settings and associations. */
  static async open(adapters: ReadonlyMap<string, Adapter>, assoc: Section<AssociationSpec>, settings: Section<NetworkSettings>, hooks: AdaptationHooks): Promise<AdaptationService> {
    const s = new AdaptationService(adapters, assoc, settings, hooks);
    for (const [, a] of await assoc.entries()) s.assoc.set(`${a.network}/${a.id}`, a);
    for (const [name, v] of await settings.entries()) s.settings.set(name, v);
    return s;
  }

  /** Applies persisted settings, starts the enabled networks, re-establishes their associations. */
  async startAll(): Promise<void> {
    for (const adapter of this.adapters.values()) {
      const st = this.settings.get(adapter.name);
      if (st && Object.keys(st.values).length) {
        await adapter.configure(st.values).catch((err: unknown) => this.hooks.log.warn(`saved settings of ${adapter.name} refused: ${String((err as Error).message ?? err)}`));
      }
      if (st?.enabled === false) continue;
      await this.hooks.start(adapter);
      await this.reestablish(adapter);
    }
  }

  private async reestablish(adapter: Adapter): Promise<void> {
    for (const a of this.assoc.values()) {
      if (a.network !== adapter.name || a.state !== 'Established') continue;
      await this.establish(a).catch(() => undefined); // its State/Error say what happened
    }
  }

  /** Whether a network is enabled (persisted `Enabled`; true unless the server switched it off). */
  enabled(network: string): boolean {
    return this.settings.get(network)?.enabled !== false;
  }

  private async saveSettings(network: string, change: (s: NetworkSettings) => void): Promise<void> {
    const s = this.settings.get(network) ?? { enabled: true, values: {} };
    change(s);
    this.settings.set(network, s);
    await this.settingsSection.put(network, s);
  }

  private async saveAssoc(a: AssociationSpec): Promise<void> {
    this.assoc.set(`${a.network}/${a.id}`, a);
    await this.assocSection.put(`${a.network}/${a.id}`, a);
  }

  /** Establishes an association through its adapter; records the outcome. */
  private async establish(a: AssociationSpec): Promise<{ status: number; data?: string }> {
    const adapter = this.adapters.get(a.network)!;
    for (const p of adapter.associationParams) {
      if (p.required && !a.params[p.name]) {
        throw new DmStatusError(412, 'GW_ADAPT_INCOMPLETE', `association ${a.id} on ${a.network} needs ${p.name}`);
      }
    }
    try {
      const dev = await adapter.associate({ ...a.params });
      a.state = 'Established';
      a.deviceId = dev.deviceId;
      a.address = dev.address;
      delete a.error;
      await this.saveAssoc(a);
      this.hooks.log.info(`association ${a.network}/${a.id} established: ${dev.deviceId}`);
      return { status: 200, data: dev.deviceId };
    } catch (err) {
      a.state = 'Failed';
      a.error = String((err as Error).message ?? err);
      await this.saveAssoc(a);
      this.hooks.log.warn(`association ${a.network}/${a.id} failed: ${a.error}`);
      throw err instanceof DmStatusError ? err : new DmStatusError(500, 'GW_ADAPT_FAILED', a.error);
    }
  }

  private async remove(a: AssociationSpec): Promise<void> {
    if (a.state === 'Established' && a.address !== undefined) {
      await this.adapters.get(a.network)!.dissociate(a.address);
      this.hooks.log.info(`association ${a.network}/${a.id} removed from the network`);
    }
    a.state = 'Removed';
    await this.saveAssoc(a);
  }

  /** The plugin mounted at `./GwMO/Adaptation`. */
  plugin(): TreePlugin {
    const parts = (path: string): string[] => (path === '' ? [] : path.split('/'));
    const adapterOf = (name: string | undefined): Adapter | undefined => (name === undefined ? undefined : this.adapters.get(name));
    const paramOf = (list: readonly AdapterParam[], name: string | undefined): AdapterParam | undefined => list.find((p) => p.name === name);
    const leafView = (p: AdapterParam, data: string | undefined, writable: readonly AccessType[]): PluginNodeView | undefined =>
      // A secret leaf exists but cannot be read: Get is not in its AccessType, so the tree answers 405.
      p.secret ? { format: p.format === 'bin' ? 'b64' : p.format, access: writable.filter((x) => x !== 'Get') } : data === undefined ? undefined : { format: p.format === 'bin' ? 'b64' : p.format, data, access: writable };

    const get = (path: string): PluginNodeView | undefined => {
      const p = parts(path);
      if (p.length === 0) return { format: 'node', type: ADAPTATION_MOID, access: G };
      const a = adapterOf(p[0]);
      if (!a) return undefined;
      if (p.length === 1) return { format: 'node', access: G };
      const [, k, x, y, z] = p;
      if (p.length === 2) {
        switch (k) {
          case 'Protocol':
            return { format: 'chr', data: a.protocol, access: G };
          case 'Enabled':
            return { format: 'bool', data: String(this.enabled(a.name)), access: GR };
          case 'State':
            return { format: 'chr', data: this.enabled(a.name) ? a.linkState : 'disabled', access: G };
          case 'StateDetail':
            return { format: 'chr', data: this.linkDetail.get(a.name) ?? '', access: G };
          case 'Devices':
            return { format: 'int', data: String(this.hooks.attached(a.name)), access: G };
          case 'Operations':
          case 'Associations':
            return { format: 'node', access: k === 'Associations' ? ['Get', 'Add'] : G };
        }
        const s = paramOf(a.settings, k);
        return s ? leafView(s, a.getSettings()[s.name] ?? '', GR) : undefined;
      }
      if (k === 'Operations') return p.length === 3 && a.operations.some((o) => o.name === x) ? { format: 'null', access: ['Exec'] } : undefined;
      if (k !== 'Associations') return undefined;
      const spec = this.assoc.get(`${a.name}/${x}`);
      if (!spec) return undefined;
      if (p.length === 3) return { format: 'node', access: ['Get', 'Add', 'Delete'] };
      if (p.length === 4) {
        if (y === 'Operations') return { format: 'node', access: G };
        if (y === 'State') return { format: 'chr', data: spec.state, access: G };
        if (y === 'DeviceID') return spec.deviceId === undefined ? undefined : { format: 'chr', data: spec.deviceId, access: G };
        if (y === 'Error') return spec.error === undefined ? undefined : { format: 'chr', data: spec.error, access: G };
        const ap = paramOf(a.associationParams, y);
        return ap && (ap.name in spec.params) ? leafView(ap, spec.params[ap.name], ['Get', 'Replace', 'Add', 'Delete']) : undefined;
      }
      if (p.length === 5 && y === 'Operations' && (z === 'Establish' || z === 'Remove')) return { format: 'null', access: ['Exec'] };
      return undefined;
    };

    const children = (path: string): string[] => {
      const p = parts(path);
      if (p.length === 0) return [...this.adapters.keys()];
      const a = adapterOf(p[0]);
      if (!a) return [];
      if (p.length === 1) return ['Protocol', 'Enabled', 'State', 'StateDetail', 'Devices', ...a.settings.map((s) => s.name), 'Operations', 'Associations'];
      if (p.length === 2 && p[1] === 'Operations') return a.operations.map((o) => o.name);
      if (p.length === 2 && p[1] === 'Associations') return [...this.assoc.values()].filter((s) => s.network === a.name).map((s) => s.id);
      const spec = p[1] === 'Associations' ? this.assoc.get(`${a.name}/${p[2]}`) : undefined;
      if (!spec) return [];
      if (p.length === 3) {
        return [...Object.keys(spec.params), 'Operations', 'State', ...(spec.deviceId !== undefined ? ['DeviceID'] : []), ...(spec.error !== undefined ? ['Error'] : [])];
      }
      if (p.length === 4 && p[3] === 'Operations') return ['Establish', 'Remove'];
      return [];
    };

    /** Add/Replace of a setting or an association parameter (Add also creates an association). */
    const write = async (path: string, value: PluginWrite, adding: boolean): Promise<{ status: number }> => {
      const p = parts(path);
      const a = adapterOf(p[0]);
      if (!a) throw notFound(path);
      const data = value.data ?? '';
      if (p.length === 2) {
        if (adding) throw new DmStatusError(418, 'GW_ADAPT_EXISTS', `${ADAPTATION_ROOT}/${path} already exists`);
        if (p[1] === 'Enabled') {
          checkFormat({ name: 'Enabled', format: 'bool', description: '' }, data, path);
          await this.setEnabled(a, data.trim() === 'true');
          return { status: 200 };
        }
        const s = paramOf(a.settings, p[1]);
        if (!s) throw notAllowed(path, 'Replace is not allowed');
        checkFormat(s, data, path);
        await a.configure({ [s.name]: data });
        await this.saveSettings(a.name, (st) => void (st.values[s.name] = data));
        this.hooks.log.info(`${a.name}: setting ${s.name} changed${s.secret ? '' : ` to ${JSON.stringify(data)}`}`);
        return { status: 200 };
      }
      if (p[1] !== 'Associations' || p.length < 3) throw notAllowed(path);
      const id = p[2]!;
      if (!/^[A-Za-z0-9_.-]{1,64}$/.test(id)) throw new DmStatusError(400, 'GW_ADAPT_BAD_NAME', `association name ${JSON.stringify(id)}: letters, digits, _ . - (1..64)`);
      const key = `${a.name}/${id}`;
      let spec = this.assoc.get(key);
      if (p.length === 3) {
        if (!adding || value.format !== 'node') throw notAllowed(path);
        if (spec) throw new DmStatusError(418, 'GW_ADAPT_EXISTS', `association ${id} already exists`);
        await this.saveAssoc({ network: a.name, id, params: {}, state: 'Configured' });
        return { status: 200 };
      }
      if (p.length !== 4) throw notAllowed(path);
      if (!spec) {
        if (!adding) throw notFound(path);
        spec = { network: a.name, id, params: {}, state: 'Configured' }; // interior node created implicitly, as Add does
      }
      const ap = paramOf(a.associationParams, p[3]);
      if (!ap) {
        throw new DmStatusError(405, 'GW_ADAPT_NO_PARAM', `${a.name} associations have no parameter ${p[3]} (known: ${a.associationParams.map((x) => x.name).join(', ')})`);
      }
      if (adding && ap.name in spec.params) throw new DmStatusError(418, 'GW_ADAPT_EXISTS', `${ADAPTATION_ROOT}/${path} already exists`);
      if (!adding && !(ap.name in spec.params)) throw notFound(path);
      checkFormat(ap, data, path);
      spec.params[ap.name] = data;
      await this.saveAssoc(spec);
      return { status: 200 };
    };

    return {
      get,
      children,
      add: (path, value) => write(path, value, true),
      replace: (path, value) => write(path, value, false),
      delete: async (path) => {
        const p = parts(path);
        const a = adapterOf(p[0]);
        if (!a || p[1] !== 'Associations' || p.length < 3 || p.length > 4) throw notAllowed(path, 'Delete is not allowed');
        const spec = this.assoc.get(`${a.name}/${p[2]}`);
        if (!spec) throw notFound(path);
        if (p.length === 4) {
          if (!(p[3]! in spec.params)) throw notFound(path);
          delete spec.params[p[3]!];
          await this.saveAssoc(spec);
          return { status: 200 };
        }
        await this.remove(spec);
        this.assoc.delete(`${a.name}/${spec.id}`);
        await this.assocSection.del(`${a.name}/${spec.id}`);
        if (spec.deviceId) await this.hooks.forget(spec.deviceId);
        return { status: 200 };
      },
      exec: async (path, args) => {
        const p = parts(path);
        const a = adapterOf(p[0]);
        if (!a) throw notFound(path);
        if (p[1] === 'Operations' && p.length === 3) {
          const op = a.operations.find((o) => o.name === p[2]);
          if (!op) throw notFound(path);
          if (!this.enabled(a.name)) throw new DmStatusError(503, 'GW_ADAPT_DISABLED', `${a.name} is disabled`);
          return op.run(args.data instanceof Uint8Array ? Buffer.from(args.data).toString('utf8') : args.data);
        }
        if (p[1] === 'Associations' && p.length === 5 && p[3] === 'Operations') {
          const spec = this.assoc.get(`${a.name}/${p[2]}`);
          if (!spec) throw notFound(path);
          if (p[4] === 'Establish') {
            if (!this.enabled(a.name)) throw new DmStatusError(503, 'GW_ADAPT_DISABLED', `${a.name} is disabled`);
            return this.establish(spec);
          }
          if (p[4] === 'Remove') {
            await this.remove(spec);
            return { status: 200 };
          }
        }
        throw notAllowed(path, 'Exec is not allowed');
      },
    };
  }

  /** The last link detail each adapter reported (StateDetail). */
  readonly linkDetail = new Map<string, string>();

  private async setEnabled(a: Adapter, on: boolean): Promise<void> {
    if (on === this.enabled(a.name)) return;
    await this.saveSettings(a.name, (s) => void (s.enabled = on));
    this.hooks.log.info(`${a.name}: ${on ? 'enabled' : 'disabled'} by the server`);
    if (on) {
      await this.hooks.start(a);
      await this.reestablish(a);
    } else await this.hooks.stop(a);
  }
}
