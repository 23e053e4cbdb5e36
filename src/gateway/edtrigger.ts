/**
 * The End Device Trigger MO (notes §1.7, PROPOSED design, GwMO-TMode-001): the server hands the
 * gateway a complete Package 0 for a transparent-mode device, built with that device's own
 * credentials, and the gateway pushes the bytes to the device untouched. The gateway can neither
 * forge nor check the digest: the device does, so a forged or replayed notification is ignored
 * there. Only a server with rights on ./GwMO/EDTrigger (its ACL) in an authenticated session gets here.
 */
import { DmStatusError } from '../errors.ts';
import type { Section } from '../store/store.ts';
import type { PluginNodeView, PluginWrite, TreePlugin } from '../tree/tree.ts';

/** Where the MO is mounted. */
export const EDTRIGGER_ROOT = './GwMO/EDTrigger';
/** MOID (PROPOSED, notes §1.1). */
export const EDTRIGGER_MOID = 'urn:oma:mo:oma-gwmo-edtrigger:1.1';

/** One trigger request. */
export interface TriggerRecord {
  deviceId?: string;
  /** base64 Package 0 bytes. */
  pkg0?: string;
  /** 10 Pending, 20 Delivered, 30 Failed. */
  state: number;
}

/** Pushes a Package 0 to a device; returns the DM status (200 delivered, 404 unknown, 406 not transparent, 500 failed). */
export type TriggerDelivery = (deviceId: string, pkg0: Uint8Array) => Promise<number>;

const notFound = (p: string): DmStatusError => new DmStatusError(404, 'GW_EDTRIGGER_NOT_FOUND', `${EDTRIGGER_ROOT}/${p} does not exist`);
const notAllowed = (p: string): DmStatusError => new DmStatusError(405, 'GW_EDTRIGGER_NOT_ALLOWED', `command not allowed on ${EDTRIGGER_ROOT}/${p}`);

/** Creates the EDTrigger plugin over a store section. */
export async function createEdTriggerPlugin(section: Section<TriggerRecord>, deliver: TriggerDelivery): Promise<TreePlugin> {
  const triggers = new Map((await section.entries()).map(([k, v]) => [k, v]));
  const save = (name: string): Promise<void> => section.put(name, triggers.get(name)!);
  const split = (path: string): [string, string] => {
    const i = path.indexOf('/');
    return i < 0 ? [path, ''] : [path.slice(0, i), path.slice(i + 1)];
  };
  const setLeaf = async (path: string, value: PluginWrite): Promise<{ status: number }> => {
    const [name, rest] = split(path);
    const t = triggers.get(name);
    if (!t) throw notFound(path);
    if (rest === 'DeviceID') t.deviceId = value.data ?? '';
    // Binary arrives normalised as base64 (Format bin); text (chr) is taken as base64 too.
    else if (rest === 'Pkg0') t.pkg0 = value.data ?? '';
    else throw notAllowed(path);
    await save(name);
    return { status: 200 };
  };
  return {
    get(path): PluginNodeView | undefined {
      if (path === '') return { format: 'node', type: EDTRIGGER_MOID };
      const [name, rest] = split(path);
      const t = triggers.get(name);
      if (!t) return undefined;
      switch (rest) {
        case '':
          return { format: 'node', access: ['Get', 'Add', 'Delete'] };
        case 'DeviceID':
          return t.deviceId === undefined ? undefined : { format: 'chr', data: t.deviceId, access: ['Get', 'Replace'] };
        case 'Pkg0':
          return t.pkg0 === undefined ? undefined : { format: 'bin', data: t.pkg0, access: ['Get', 'Replace'] };
        case 'State':
          return { format: 'int', data: String(t.state), access: ['Get'] };
        case 'Operations':
          return { format: 'node', access: ['Get'] };
        case 'Operations/Trigger':
          return { format: 'null', access: ['Exec'] };
        default:
          return undefined;
      }
    },
    children(path): string[] {
      if (path === '') return [...triggers.keys()];
      const [name, rest] = split(path);
      const t = triggers.get(name);
      if (!t) return [];
      if (rest === '') return [...(t.deviceId !== undefined ? ['DeviceID'] : []), ...(t.pkg0 !== undefined ? ['Pkg0'] : []), 'State', 'Operations'];
      if (rest === 'Operations') return ['Trigger'];
      return [];
    },
    async add(path, value: PluginWrite) {
      const [name, rest] = split(path);
      if (rest === '') {
        if (value.format !== 'node') throw notAllowed(path);
        triggers.set(name, { state: 10 });
        await save(name);
        return { status: 200 };
      }
      return setLeaf(path, value);
    },
    replace: (path, value: PluginWrite) => setLeaf(path, value),
    async delete(path) {
      const [name, rest] = split(path);
      if (rest !== '' || !triggers.has(name)) throw notFound(path);
      triggers.delete(name);
      await section.del(name);
      return { status: 200 };
    },
    async exec(path) {
      const [name, rest] = split(path);
      const t = triggers.get(name);
      if (!t) throw notFound(path);
      if (rest !== 'Operations/Trigger') throw notAllowed(path);
      if (!t.deviceId || !t.pkg0) throw new DmStatusError(412, 'GW_EDTRIGGER_INCOMPLETE', `trigger ${name} needs DeviceID and Pkg0 before Trigger`);
      const status = await deliver(t.deviceId, Buffer.from(t.pkg0, 'base64'));
      t.state = status === 200 ? 20 : 30;
      await save(name);
      return { status };
    },
  };
}
