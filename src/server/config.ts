/**
 * The DM server's configuration (server.yaml): where it listens, how it authenticates itself to
 * clients, and the client accounts it accepts.
 */
import { z } from 'zod';
import { tlsServerSchema } from '../transport/tls.ts';
import { authTypeSchema } from '../config.ts';

const authType = authTypeSchema;

/** One client account. */
export const accountSchema = z.object({
  /** The client's Source LocURI (its DevId), e.g. IMEI:493005100592800. */
  deviceId: z.string().min(1),
  username: z.string().min(1),
  secret: z.string().min(1),
  /** What the client must use to authenticate itself. */
  authType: authType.default('syncml:auth-md5' as const),
  /** Overrides the server secret for this client (the spec asks for one per client). */
  serverSecret: z.string().min(1).optional(),
  /** Overrides how the server authenticates itself to this client. */
  serverAuthType: authType.optional(),
  /**
   * The account belongs to a DM gateway: only gateways' inventory alerts teach the server where
   * devices are (an ordinary client must not be able to redirect another device's commands).
   */
  gateway: z.boolean().default(false),
  /** Where Package 0 notifications go (HTTP POST); a device may also report it in DevInfo/Ext/NotifyURI. */
  notify: z.string().url().optional(),
  /**
   * How a device behind a gateway is reached (issue "server-initiated session bypassing the
   * gateway"): `auto` tries a direct Package 0 to the routable address in the gateway's inventory,
   * then the gateway; `gateway` never pushes directly; `direct` never falls back to the gateway.
   */
  route: z.enum(['auto', 'gateway', 'direct']).optional(),
  /** Initial nonces (base64), used until the first session rotates them. */
  clientNonce: z.string().default(''),
  serverNonce: z.string().default(''),
});

/** The server configuration file. */
export const serverConfigSchema = z
  .object({
    listen: z.union([z.string(), z.number()]).default('127.0.0.1:8080'),
    /** HTTPS on the listener (DM endpoint and operator API); `tls.ca` is also what outbound pushes trust. */
    tls: tlsServerSchema.optional(),
    /**
     * syncml:auth-basic sends the password itself: over plain HTTP to an address that is not
     * loopback it is refused unless this is set (SECCONF-001).
     */
    allowBasicOverHttp: z.boolean().default(false),
    path: z.string().startsWith('/').default('/dm'),
    serverId: z.string().min(1),
    serverSecret: z.string().min(1),
    serverAuthType: authType.default('syncml:auth-md5' as const),
    /** Largest message the server accepts and announces as its MaxMsgSize. */
    maxMsgSize: z.number().int().min(1024).default(64 * 1024),
    /** Seconds a session may stay idle between messages. */
    sessionTimeout: z.number().positive().default(120),
    /** Hostile-input limits of the listener (issue "Security and reliability", point 3). */
    limits: z
      .object({
        /** Sessions open at once; a new one beyond it gets HTTP 503 with Retry-After. */
        maxSessions: z.number().int().min(1).default(1000),
        /** Sessions open at once per account (DevId). */
        maxSessionsPerAccount: z.number().int().min(1).default(4),
        /** Seconds a client has to send its request headers, and its whole request. */
        headersTimeout: z.number().positive().default(10),
        requestTimeout: z.number().positive().default(60),
        /**
         * Seconds a stopping server (SIGTERM, Ctrl-C) keeps serving the sessions already open, while
         * refusing new ones with 503, before it closes; messages in progress then finish too.
         */
        drainTimeout: z.number().min(0).default(10),
      })
      .default({ maxSessions: 1000, maxSessionsPerAccount: 4, headersTimeout: 10, requestTimeout: 60, drainTimeout: 10 }),
    /** Data directory (LevelDB); `--data` overrides it. */
    data: z.string().optional(),
    accounts: z.array(accountSchema).default([]),
    routing: z
      .object({
        /** Try a direct Package 0 to a device's routable address before going through its gateway. */
        direct: z.boolean().default(true),
        /** Seconds to wait for the device's session after a direct push before falling back to the gateway route. */
        directTimeout: z.number().positive().default(10),
        /** Seconds a device whose direct push went unanswered is reached through its gateway before direct is tried again. */
        directRetryAfter: z.number().min(0).default(300),
      })
      .default({ direct: true, directTimeout: 10, directRetryAfter: 300 }),
  })
  .superRefine((cfg, ctx) => {
    const seen = new Set<string>();
    cfg.accounts.forEach((a, i) => {
      if (seen.has(a.deviceId)) ctx.addIssue({ code: 'custom', path: ['accounts', i, 'deviceId'], message: `duplicate deviceId ${a.deviceId}` });
      seen.add(a.deviceId);
    });
  });

/** A validated server configuration. */
export type ServerConfig = z.output<typeof serverConfigSchema>;
/** A validated account. */
export type AccountConfig = z.output<typeof accountSchema>;
