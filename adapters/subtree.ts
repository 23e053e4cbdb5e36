/**
 * The DM subtree of an adapted device (notes §1.8 "Adaptation device"): the gateway synthesises
 * `DevInfo` (DevId, Man, Mod, DmV, Lang) and `DevDetail` (FwV, HwV, when known) and mounts the
 * protocol's own subtree beside them (`KNX/...`, `ZigBee/...`, `OWN/...`, `BLE/...`). Adapters
 * build only the protocol part; this composes the rest, so every adapted device answers the same
 * standard identity paths.
 */
import type { ExecArgs, PluginNodeView, PluginWrite, TreeContext, TreePlugin } from '../src/tree/tree.ts';
import { DmStatusError } from '../src/errors.ts';

/** Identity of an adapted device, as its DevInfo/DevDetail show it. */
export interface DeviceIdentity {
  deviceId: string;
  man: string;
  mod: string;
  fwV?: string;
  hwV?: string;
  /** Language of the device's texts (DevInfo/Lang); `en` unless known. */
  lang?: string;
}

const GET = ['Get'] as const;
/** DM protocol version the gateway speaks for its adapted devices (DevInfo/DmV). */
const DMV = '1.2';

/**
 * Composes an adapted device's plugin: `DevInfo`, `DevDetail` and `<root>/...` served by `protocol`
 * (whose paths are relative to `<root>`, `''` being `<root>` itself). `identity` is read on every
 * Get, so a firmware version learnt later shows at once.
 */
export function deviceSubtree(identity: () => DeviceIdentity, root: string, protocol: TreePlugin): TreePlugin {
  const inner = (path: string): string | undefined => (path === root ? '' : path.startsWith(`${root}/`) ? path.slice(root.length + 1) : undefined);
  const local = (path: string): PluginNodeView | string[] | undefined => {
    const id = identity();
    const leaf = (data: string | undefined): PluginNodeView | undefined => (data === undefined ? undefined : { format: 'chr', data, access: GET });
    switch (path) {
      case '':
        return ['DevInfo', 'DevDetail', root];
      case 'DevInfo':
        return ['DevId', 'Man', 'Mod', 'DmV', 'Lang'];
      case 'DevDetail':
        return ['FwV', 'HwV'].filter((k) => (k === 'FwV' ? id.fwV : id.hwV) !== undefined);
      case 'DevInfo/DevId':
        return leaf(id.deviceId);
      case 'DevInfo/Man':
        return leaf(id.man);
      case 'DevInfo/Mod':
        return leaf(id.mod);
      case 'DevInfo/DmV':
        return leaf(DMV);
      case 'DevInfo/Lang':
        return leaf(id.lang ?? 'en');
      case 'DevDetail/FwV':
        return leaf(id.fwV);
      case 'DevDetail/HwV':
        return leaf(id.hwV);
      default:
        return undefined;
    }
  };
  const readOnly = (path: string, cmd: string): DmStatusError => new DmStatusError(405, 'ADAPTER_READ_ONLY', `${cmd} is not supported on ${path}`);
  const sub = <T>(path: string, cmd: string, f: (p: string) => T): T => {
    const p = inner(path);
    if (p === undefined) throw readOnly(path, cmd);
    return f(p);
  };
  return {
    get: (path: string, ctx: TreeContext) => {
      const p = inner(path);
      if (p !== undefined) return protocol.get(p, ctx);
      const v = local(path);
      if (Array.isArray(v)) return { format: 'node', access: GET };
      return v;
    },
    describe: (path: string, ctx: TreeContext) => {
      const p = inner(path);
      if (p !== undefined) return protocol.describe ? protocol.describe(p, ctx) : protocol.get(p, ctx);
      const v = local(path);
      if (Array.isArray(v)) return { format: 'node', access: GET };
      return v;
    },
    children: (path: string, ctx: TreeContext) => {
      const p = inner(path);
      if (p !== undefined) return protocol.children(p, ctx);
      const v = local(path);
      return Array.isArray(v) ? v : [];
    },
    add: (path: string, value: PluginWrite, ctx: TreeContext) =>
      sub(path, 'Add', (p) => {
        if (!protocol.add) throw readOnly(path, 'Add');
        return protocol.add(p, value, ctx);
      }),
    replace: (path: string, value: PluginWrite, ctx: TreeContext) =>
      sub(path, 'Replace', (p) => {
        if (!protocol.replace) throw readOnly(path, 'Replace');
        return protocol.replace(p, value, ctx);
      }),
    delete: (path: string, ctx: TreeContext) =>
      sub(path, 'Delete', (p) => {
        if (!protocol.delete) throw readOnly(path, 'Delete');
        return protocol.delete(p, ctx);
      }),
    exec: (path: string, args: ExecArgs, ctx: TreeContext) =>
      sub(path, 'Exec', (p) => {
        if (!protocol.exec) throw readOnly(path, 'Exec');
        return protocol.exec(p, args, ctx);
      }),
  };
}
