/**
 * Configuration of a simulated DM client device (device.yaml): its identity, its DM account on
 * the server, where it listens for Package 0, and extra nodes of its management tree.
 */
import { z } from 'zod';
import { tlsServerSchema } from '../transport/tls.ts';
import { authTypeSchema } from '../config.ts';

const authType = authTypeSchema;

/** An extra node of the device tree. */
export const deviceNodeSchema = z.object({
  uri: z.string().min(1),
  value: z.string().optional(),
  format: z.string().default('chr'),
  type: z.string().optional(),
  acl: z.string().optional(),
  /** DDF AccessType; defaults to Get/Replace for leaves, Get/Add/Delete for interior nodes. */
  access: z.array(z.enum(['Add', 'Copy', 'Delete', 'Exec', 'Get', 'Replace'])).optional(),
  /** An executable node: what Exec does (`count` increments `<uri>/../Count`-style counter, `echo` returns the argument). */
  exec: z.enum(['count', 'echo', 'async']).optional(),
});

/** The device configuration file. */
export const deviceConfigSchema = z.object({
  deviceId: z.string().min(1),
  /** Wire encoding the device uses. */
  encoding: z.enum(['xml', 'wbxml']).default('xml'),
  /** Largest message the device accepts (its MaxMsgSize). */
  maxMsgSize: z.number().int().min(1024).default(16 * 1024),
  /** Data directory (LevelDB); without it the tree lives in memory. */
  data: z.string().optional(),
  devInfo: z
    .object({
      man: z.string().default('gwmo'),
      mod: z.string().default('SimDevice'),
      dmV: z.string().default('1.2'),
      lang: z.string().default('en-US'),
    })
    .default({ man: 'gwmo', mod: 'SimDevice', dmV: '1.2', lang: 'en-US' }),
  devDetail: z
    .object({
      devTyp: z.string().default('sensor'),
      oem: z.string().default('gwmo'),
      fwV: z.string().default('1.0.0'),
      swV: z.string().default('1.0.0'),
      hwV: z.string().default('A'),
    })
    .default({ devTyp: 'sensor', oem: 'gwmo', fwV: '1.0.0', swV: '1.0.0', hwV: 'A' }),
  /** The DM server account (DMAcc). Optional: a factory-fresh device gets one by bootstrap. */
  server: z.object({
    serverId: z.string().min(1),
    url: z.string().url(),
    username: z.string().min(1),
    secret: z.string().min(1),
    authType: authType.default('syncml:auth-md5' as const),
    serverSecret: z.string().min(1),
    serverAuthType: authType.default('syncml:auth-md5' as const),
    clientNonce: z.string().default(''),
    serverNonce: z.string().default(''),
    /** HTTPS to the server: the CA its certificate must chain to (system CAs without it) ... */
    ca: z.string().min(1).optional(),
    /** ... and this device's own certificate and key, for servers that ask for one (mutual TLS). */
    cert: z.string().min(1).optional(),
    key: z.string().min(1).optional(),
  }).optional(),
  /** DM bootstrap (notes §2.5): the PIN that keys the HMAC of bootstrap messages; without it bootstrap is refused. */
  bootstrap: z.object({ pin: z.string().min(4).optional() }).default({}),
  /** Package 0 listener (HTTP POST of application/vnd.syncml.notification). */
  notify: z
    .object({
      listen: z.union([z.string(), z.number()]).default('127.0.0.1:0'),
      path: z.string().startsWith('/').default('/notify'),
      /** Report the listener's URL to the server in DevInfo/Ext/NotifyURI. */
      advertise: z.boolean().default(true),
      /** Where the same listener accepts DM bootstrap messages. */
      bootstrapPath: z.string().startsWith('/').default('/bootstrap'),
      /**
       * A publicly routable notification address besides the one on the gateway's network (GwMO use
       * case "server initiated session bypassing the DM gateway"): a second listener (`listen`), or a
       * URL that reaches the first one from outside (`url`, e.g. a port forward). Advertised as
       * DevInfo/Ext/PublicNotifyURI; a Package 0 arriving there is checked exactly like any other.
       */
      public: z.object({ listen: z.union([z.string(), z.number()]).optional(), url: z.string().url().optional() }).optional(),
      /** HTTPS on the Package 0 listener(s). */
      tls: tlsServerSchema.optional(),
    })
    .default({ listen: '127.0.0.1:0', path: '/notify', advertise: true, bootstrapPath: '/bootstrap' }),
  /** Allow syncml:auth-basic over plain HTTP to a non-loopback server (refused otherwise: the password would travel readable). */
  allowBasicOverHttp: z.boolean().default(false),
  /** Seconds to wait for each server answer. */
  requestTimeout: z.number().positive().default(30),
  nodes: z.array(deviceNodeSchema).default([]),
});

/** A validated device configuration. */
export type DeviceConfig = z.output<typeof deviceConfigSchema>;
/** An extra node definition. */
export type DeviceNodeConfig = z.output<typeof deviceNodeSchema>;
