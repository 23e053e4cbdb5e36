/**
 * Configuration of one gateway process (gateway.yaml): its identity, its parent (the DM server or
 * a parent gateway) and the credentials it uses there, its southbound DM endpoint and the server
 * identity it presents to devices, and the end devices associated in advance.
 */
import { z } from 'zod';
import { tlsServerSchema, type TlsClientConfig } from '../transport/tls.ts';
import { authTypeSchema } from '../config.ts';
import { adapterConfigSchema } from '../../adapters/index.ts';

/** Management modes of an association (GwMO-MOO-001). */
export const MODES = ['transparent', 'proxy', 'adaptation'] as const;
/** A management mode. */
export type Mode = (typeof MODES)[number];
/** Mode leaf values in the inventory (notes §1.3: 0 Transparent, 1 Proxy, 2 Adaptation). */
export const MODE_VALUE: Record<Mode, number> = { transparent: 0, proxy: 1, adaptation: 2 };

/** An end device (or child gateway) associated with the gateway. */
export const associationConfigSchema = z
  .object({
    /** The device's DevId (its Source LocURI towards the gateway). */
    deviceId: z.string().min(1),
    mode: z.enum(MODES).default('proxy'),
    /** A child gateway (GwMO 1.1 hierarchy): associated in proxy or transparent mode only (MOO-002). */
    gateway: z.boolean().default(false),
    /** Proxy mode: the credentials the device uses towards the gateway. */
    username: z.string().min(1).optional(),
    secret: z.string().min(1).optional(),
    authType: authTypeSchema.default('syncml:auth-md5' as const),
    /** Where the device listens for Package 0 (transparent mode: needed; proxy: optional, the device may report it). */
    notify: z.string().url().optional(),
    /**
     * A publicly routable notification address of the device, when it has one (learnt at association;
     * a device may also report it in DevInfo/Ext/PublicNotifyURI). Shown as the record's PublicAddress,
     * so the server can push Package 0 to the device directly, bypassing the gateway.
     */
    publicNotify: z.string().url().optional(),
    /** Transparent mode: the ServerID of the DM server that manages the device directly. */
    serverId: z.string().optional(),
    /** Adaptation mode: the network (adapter name, e.g. `sim`, `knx`) and the device's address on it. */
    protocol: z.string().min(1).optional(),
    address: z.string().min(1).optional(),
  })
  .superRefine((a, ctx) => {
    if (a.mode === 'proxy' && (!a.username || !a.secret)) {
      ctx.addIssue({ code: 'custom', path: ['username'], message: 'a proxy-mode device needs username and secret (its account on the gateway)' });
    }
    if (a.mode === 'adaptation' && (!a.protocol || !a.address)) {
      ctx.addIssue({ code: 'custom', path: ['protocol'], message: 'an adaptation-mode device needs protocol (its adapter) and address' });
    }
    if (a.gateway && a.mode === 'adaptation') {
      ctx.addIssue({ code: 'custom', path: ['mode'], message: 'a child gateway is associated in proxy or transparent mode only (GwMO-MOO-002)' });
    }
  });

/** The gateway configuration file. */
export const gatewayConfigSchema = z.object({
  /** The gateway's DevId; also its account name at its parent. */
  id: z.string().min(1),
  /** The gateway's parent: the DM server or a parent gateway's southbound endpoint. */
  parent: z.object({
    url: z.string().url(),
    serverId: z.string().min(1),
    username: z.string().min(1),
    secret: z.string().min(1),
    authType: authTypeSchema.default('syncml:auth-md5' as const),
    serverSecret: z.string().min(1),
    serverAuthType: authTypeSchema.default('syncml:auth-md5' as const),
    /** HTTPS to the parent: the CA its certificate must chain to, and this gateway's own certificate and key for mutual TLS. */
    ca: z.string().min(1).optional(),
    cert: z.string().min(1).optional(),
    key: z.string().min(1).optional(),
  }),
  /** Southbound DM endpoint for proxy-mode devices and child gateways. */
  listen: z.union([z.string(), z.number()]).default('127.0.0.1:0'),
  /**
   * HTTPS on the southbound listener (DM endpoint, image store, relay) and the Package 0 listener;
   * `tls.ca` (else `parent.ca`) is what the gateway trusts when it pushes to its devices.
   */
  tls: tlsServerSchema.optional(),
  path: z.string().startsWith('/').default('/dm'),
  /** The server identity the gateway presents to its devices. */
  serverId: z.string().min(1),
  serverSecret: z.string().min(1),
  serverAuthType: authTypeSchema.default('syncml:auth-md5' as const),
  /** Northbound Package 0 listener. */
  notify: z
    .object({ listen: z.union([z.string(), z.number()]).default('127.0.0.1:0'), path: z.string().startsWith('/').default('/notify') })
    .default({ listen: '127.0.0.1:0', path: '/notify' }),
  /**
   * Transparent mode: an HTTP relay on the southbound listener that forwards DM messages unchanged
   * to `upstream` (the DM server), for devices whose only network path to the server is the gateway
   * (notes §2.1: "E's DMAcc Addr points at an HTTP relay on G that forwards the bytes unchanged").
   */
  relay: z.object({ path: z.string().startsWith('/').default('/relay'), upstream: z.string().url() }).optional(),
  /** Seconds the gateway waits for a proxied command's result before answering 202. */
  proxyTimeout: z.number().positive().default(20),
  /** Seconds the gateway waits for each answer of its parent. */
  requestTimeout: z.number().positive().default(120),
  encoding: z.enum(['xml', 'wbxml']).default('xml'),
  maxMsgSize: z.number().int().min(1024).default(64 * 1024),
  data: z.string().optional(),
  devices: z.array(associationConfigSchema).default([]),
  /** Adaptation networks (GwMO-AMode): their devices are associated as they are found. */
  adapters: z.array(adapterConfigSchema).default([]),
  /** Initial value of ./GwMO/Config/NewDeviceAlert (the server switches it afterwards). */
  newDeviceAlert: z.boolean().default(true),
  /** Fanout defaults (./GwMO/Config/Fanout, notes §1.2); a job's Policy overrides them. */
  fanout: z
    .object({
      /** Seconds a member may take before it counts as unreachable (GwMO 461). */
      timeout: z.number().positive().default(30),
      /** Members worked on at once per job. */
      maxConcurrency: z.number().int().min(1).default(64),
    })
    .default({ timeout: 30, maxConcurrency: 64 }),
  /**
   * The durable outbox towards the parent (store-and-forward): alerts (device alerts, inventory,
   * fanout and download completions) go before bulk results (results of proxied commands finished
   * after a 202); entries older than their class's TTL are dropped (logged and counted); beyond
   * `maxEntries` the oldest results go first, and an alert is only ever dropped with an error log.
   */
  outbox: z
    .object({
      maxEntries: z.number().int().min(10).default(100_000),
      /** Seconds an entry may wait, per class. */
      ttl: z.object({ alert: z.number().positive().default(7 * 86_400), result: z.number().positive().default(86_400) }).default({ alert: 7 * 86_400, result: 86_400 }),
      /** Entries per delivery session (the session splits them into messages within MaxMsgSize). */
      batch: z.number().int().min(1).default(2000),
    })
    .default({ maxEntries: 100_000, ttl: { alert: 7 * 86_400, result: 86_400 }, batch: 2000 }),
  /**
   * Seconds an association actor stays live after its last event before it retires to its record
   * (virtual actors, machines/gateway.ts); it is activated again by the next event that needs it.
   */
  associationIdle: z.number().positive().default(60),
  /** Image and configuration storage (GwMO-DCIS, notes §1.6): initial settings; the server changes them in the tree. */
  images: z
    .object({
      /** Blob directory; default `images/` inside the data directory. */
      dir: z.string().optional(),
      enabled: z.boolean().default(true),
      /** `hash`: identical bytes are stored once (content-addressed); `none`: one copy per image. */
      dedup: z.enum(['hash', 'none']).default('hash'),
      quotaBytes: z.number().int().min(0).default(1024 * 1024 * 1024),
      /** Seconds a LocalURL stays valid. */
      urlLifetime: z.number().int().min(1).default(3600),
    })
    .default({ enabled: true, dedup: 'hash', quotaBytes: 1024 * 1024 * 1024, urlLifetime: 3600 }),
});

/** A validated gateway configuration. */
export type GatewayConfig = z.output<typeof gatewayConfigSchema>;
/** A validated association. */
export type AssociationConfig = z.output<typeof associationConfigSchema>;

/** The TLS client settings a gateway uses towards its parent (sessions, image downloads). */
export function parentTls(c: GatewayConfig): TlsClientConfig {
  return { ...(c.parent.ca ? { ca: c.parent.ca } : {}), ...(c.parent.cert ? { cert: c.parent.cert } : {}), ...(c.parent.key ? { key: c.parent.key } : {}) };
}

/** What a gateway trusts when it connects to its devices (Package 0 relay, bootstrap): `tls.ca`, else `parent.ca`. */
export function southTrust(c: GatewayConfig): TlsClientConfig | undefined {
  const ca = c.tls?.ca ?? c.parent.ca;
  return ca ? { ca } : undefined;
}
