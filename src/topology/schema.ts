/**
 * Topology files (`topologies/*.yaml`, version 1): a whole deployment in one document — the DM
 * server (embedded, or an external one by URL), the gateway tree to any depth, each gateway's
 * simulated DM devices, adaptation networks (with the simulators that stand in for their hardware),
 * groups and stored images. The same zod definition validates files (messages name file, line and
 * field, src/config.ts) and generates the JSON Schema editors use (`gwmo topology schema`).
 * Credentials between the parts are derived from the topology's `secret`, so a file names no
 * passwords; `${ENV}` references let the few real secrets come from the environment.
 */
import { z } from 'zod';
import { adapterConfigSchema } from '../../adapters/index.ts';

const listen = z.union([z.string(), z.number()]);
const id = z.string().regex(/^[A-Za-z0-9][A-Za-z0-9:._-]{0,127}$/, 'letters, digits and : . _ - (it is a DevId)');

/** A simulated OMA DM device behind a gateway (or, with `count`, that many). */
export const topologyDeviceSchema = z.object({
  /** DevId; with `count`, the prefix of `<id>-1` ... `<id>-<count>`. */
  id,
  count: z.number().int().min(1).max(100_000).optional(),
  /** proxy: the gateway runs its sessions; transparent: it talks to the server itself. */
  mode: z.enum(['proxy', 'transparent']).default('proxy'),
  encoding: z.enum(['xml', 'wbxml']).default('xml'),
  /** A label shown in the inventory's Mod. */
  model: z.string().default('SimDevice'),
  /** Extra nodes of its tree (`./Vendor/...`), as in `gwmo device` configs. */
  nodes: z.array(z.object({ uri: z.string().min(1), value: z.string().optional(), format: z.string().default('chr') })).default([]),
});

/** KNX devices simulated on a knxd the topology starts (skipped, with a warning, when knxd is not installed). */
const knxSimulate = z.object({
  devices: z.array(
    z.object({
      address: z.string().regex(/^\d+\.\d+\.\d+$/, 'an individual address such as 1.1.5'),
      name: z.string().optional(),
      objects: z.array(z.object({ ga: z.string().regex(/^\d+\/\d+\/\d+$/), dpt: z.string().min(1), value: z.string().optional(), write: z.boolean().optional(), read: z.boolean().optional() })).min(1),
    }),
  ),
});

/** A MyHOME gateway simulated for an OpenWebNet network. */
const ownSimulate = z.object({
  auth: z.enum(['none', 'open', 'hmac-sha1', 'hmac-sha256']).default('hmac-sha256'),
  lights: z.array(z.object({ where: z.string(), dimmer: z.boolean().optional() })).default([]),
  shutters: z.array(z.object({ where: z.string() })).default([]),
  zones: z.array(z.object({ where: z.string(), temperature: z.number().optional(), setpoint: z.number().optional() })).default([]),
});

/**
 * An adaptation network: a gateway adapter entry (see docs/adapters/), plus, for KNX and
 * OpenWebNet, what to simulate in place of the hardware (the topology starts it and points the
 * adapter at it). ZigBee and BLE carry their simulators in their own entries (`simulator`, `sim`).
 */
export const topologyAdapterSchema = z
  .looseObject({ type: z.string() })
  .transform((raw, ctx) => {
    const { simulate, ...rest } = raw as { simulate?: unknown } & Record<string, unknown>;
    let sim: z.output<typeof knxSimulate> | z.output<typeof ownSimulate> | undefined;
    if (simulate !== undefined) {
      const s = (raw.type === 'knx' ? knxSimulate : raw.type === 'own' ? ownSimulate : undefined)?.safeParse(simulate);
      if (!s) {
        ctx.addIssue({ code: 'custom', path: ['simulate'], message: `simulate is for knx and own networks (zigbee: simulator, ble: bindings: sim + sim)` });
        return z.NEVER;
      }
      if (!s.success) {
        for (const i of s.error.issues) ctx.addIssue({ ...i, path: ['simulate', ...i.path] } as z.core.$ZodRawIssue);
        return z.NEVER;
      }
      sim = s.data;
    }
    // The simulated peer's address is filled in at start; a placeholder satisfies the adapter schema now.
    const filled = sim && raw.type === 'knx' ? { gateway: '127.0.0.1:3671', localAddress: '127.0.0.1', ...rest } : sim && raw.type === 'own' ? { gatewayAddr: '127.0.0.1:20000', ...rest } : rest;
    const a = adapterConfigSchema.safeParse(filled);
    if (!a.success) {
      for (const i of a.error.issues) ctx.addIssue({ ...i } as z.core.$ZodRawIssue);
      return z.NEVER;
    }
    return { adapter: a.data, ...(sim ? { simulate: sim } : {}) };
  });

/** A group on a gateway: members by DeviceID (a child gateway means its whole subtree) and/or an inventory filter. */
export const topologyGroupSchema = z.object({
  id: z.string().regex(/^[A-Za-z0-9_.-]{1,64}$/),
  description: z.string().optional(),
  /** DeviceIDs; `{ deviceId, subGroup }` names a group on a child gateway (GwMO 1.1 recursive groups). */
  members: z.array(z.union([z.string().min(1), z.object({ deviceId: z.string().min(1), subGroup: z.string().min(1) })])).default([]),
  filter: z.string().optional(),
});

/** An image stored on a gateway (GwMO-DCIS): from a file, a URL, or generated bytes for demos. */
export const topologyImageSchema = z
  .object({
    name: z.string().regex(/^[A-Za-z0-9_.-]{1,64}$/),
    file: z.string().optional(),
    url: z.string().url().optional(),
    /** Generated content of this many bytes (deterministic from the name). */
    size: z.number().int().min(1).max(256 * 1024 * 1024).optional(),
    version: z.string().optional(),
  })
  .refine((i) => [i.file, i.url, i.size].filter((x) => x !== undefined).length === 1, { message: 'give exactly one of file, url, size' });

/** A gateway and, recursively, its child gateways. */
export interface TopologyGatewayInput {
  id: string;
  listen?: string | number;
  description?: string;
  devices?: z.input<typeof topologyDeviceSchema>[];
  adapters?: z.input<typeof topologyAdapterSchema>[];
  groups?: z.input<typeof topologyGroupSchema>[];
  images?: z.input<typeof topologyImageSchema>[];
  gateways?: TopologyGatewayInput[];
  fanout?: { timeout?: number; maxConcurrency?: number };
}

/** A validated gateway node. */
export interface TopologyGateway {
  id: string;
  listen: string | number;
  description?: string | undefined;
  devices: z.output<typeof topologyDeviceSchema>[];
  adapters: z.output<typeof topologyAdapterSchema>[];
  groups: z.output<typeof topologyGroupSchema>[];
  images: z.output<typeof topologyImageSchema>[];
  gateways: TopologyGateway[];
  fanout?: { timeout?: number | undefined; maxConcurrency?: number | undefined } | undefined;
}

export const topologyGatewaySchema: z.ZodType<TopologyGateway, TopologyGatewayInput> = z.lazy(() =>
  z.object({
    id,
    /** Southbound listener (devices and child gateways connect here). */
    listen: listen.default('127.0.0.1:0'),
    description: z.string().optional(),
    devices: z.array(topologyDeviceSchema).default([]),
    adapters: z.array(topologyAdapterSchema).default([]),
    groups: z.array(topologyGroupSchema).default([]),
    images: z.array(topologyImageSchema).default([]),
    gateways: z.array(topologyGatewaySchema).default([]),
    fanout: z.object({ timeout: z.number().positive().optional(), maxConcurrency: z.number().int().min(1).optional() }).optional(),
  }),
);

/** The embedded DM server. */
const embeddedServer = z.object({
  listen: listen.default('127.0.0.1:0'),
  serverId: z.string().min(1).default('gwmo-dms'),
  sessionTimeout: z.number().positive().default(120),
});

/** An external DM server the top gateways call (its accounts for them must match the derived credentials: `gwmo topology accounts`). */
const externalServer = z.object({
  url: z.string().url(),
  serverId: z.string().min(1),
  /** The server's secret towards the gateways. */
  serverSecret: z.string().min(1),
  /** An https server's CA (PEM file), when it is not one the system trusts. */
  ca: z.string().min(1).optional(),
});

/** A topology file. */
export const topologySchema = z
  .object({
    version: z.literal(1),
    name: z.string().regex(/^[A-Za-z0-9_.-]{1,64}$/).default('gwmo'),
    description: z.string().optional(),
    /**
     * The secret all derived credentials come from (server ↔ gateway ↔ device accounts). Put
     * `${GWMO_SECRET}` here in real deployments; the demo's default is public.
     */
    secret: z.string().min(8).default('gwmo-demo-secret'),
    server: z.union([externalServer, embeddedServer]).default({ listen: '127.0.0.1:0', serverId: 'gwmo-dms', sessionTimeout: 120 }),
    /**
     * HTTPS on every link with one switch: `true`, or `{ clientAuth }`. A local CA and a certificate
     * per server, gateway and DM device are created under `<data>/certs` (`gwmo certs init`), every
     * listener serves HTTPS with its own certificate and every client verifies its peer against
     * that CA (and presents its certificate: mutual TLS when `clientAuth` is `request` or `require`).
     */
    tls: z
      .union([z.boolean(), z.object({ clientAuth: z.enum(['none', 'request', 'require']).default('require') })])
      .default(false)
      .describe('HTTPS on every link (true, or { clientAuth: none | request | require })'),
    gateways: z.array(topologyGatewaySchema).min(1),
  })
  .superRefine((t, ctx) => {
    // DevIds are unique across the whole tree: the server routes by them.
    const seen = new Map<string, string>();
    const walk = (gws: TopologyGateway[], path: (string | number)[]): void => {
      gws.forEach((g, i) => {
        const here = [...path, i];
        const claim = (name: string, where: (string | number)[]): void => {
          const prev = seen.get(name);
          if (prev) ctx.addIssue({ code: 'custom', path: where, message: `${name} is already used (${prev})` });
          else seen.set(name, where.join('.'));
        };
        claim(g.id, [...here, 'id']);
        g.devices.forEach((d, j) => {
          if (d.count) for (let n = 1; n <= d.count; n++) claim(`${d.id}-${n}`, [...here, 'devices', j, 'id']);
          else claim(d.id, [...here, 'devices', j, 'id']);
        });
        const groupIds = new Set<string>();
        g.groups.forEach((gr, j) => {
          if (groupIds.has(gr.id)) ctx.addIssue({ code: 'custom', path: [...here, 'groups', j, 'id'], message: `group ${gr.id} is defined twice on ${g.id}` });
          groupIds.add(gr.id);
        });
        walk(g.gateways, [...here, 'gateways']);
      });
    };
    walk(t.gateways, ['gateways']);
  });

/** A validated topology. */
export type Topology = z.output<typeof topologySchema>;
/** A topology as written in a file (defaults not yet applied). */
export type TopologyInput = z.input<typeof topologySchema>;

/** The JSON Schema of topology files (for editors: `# yaml-language-server: $schema=...`). */
export function topologyJsonSchema(): Record<string, unknown> {
  return z.toJSONSchema(topologySchema, { io: 'input', unrepresentable: 'any' }) as Record<string, unknown>;
}
