/**
 * The operator REST API of the DM server, under /api on the DM listener (docs/api.md). JSON in,
 * JSON out; errors are `{ error: { code, message, status? } }` with a matching HTTP status.
 */
import type { IncomingMessage, ServerResponse } from 'node:http';
import { z } from 'zod';
import type { Item, Meta } from '../codec/model.ts';
import { GwError, describeError } from '../errors.ts';
import type { Outgoing } from '../session/common.ts';
import { readBody, sendJson } from '../transport/http.ts';
import type { QueueEntry } from './queue.ts';
import type { DmServer } from './server.ts';

const leafCommand = z.object({
  cmd: z.enum(['Get', 'Replace', 'Add', 'Delete', 'Exec', 'Copy']),
  uri: z.string().min(1),
  value: z.string().optional(),
  format: z.string().optional(),
  type: z.string().optional(),
  /** Copy: the source URI. */
  source: z.string().optional(),
  correlator: z.string().optional(),
});

/** A command as the API accepts it. */
export const apiCommandSchema = z.union([
  leafCommand,
  z.object({ cmd: z.enum(['Atomic', 'Sequence']), commands: z.array(leafCommand).min(1) }),
]);

/** The body of POST /api/devices/:id/commands. */
export const commandRequestSchema = z.intersection(
  apiCommandSchema,
  z.object({
    /** Wait for the result (default) or return as soon as the command is queued. */
    wait: z.boolean().default(true),
    /** Seconds to wait for the result. */
    timeout: z.number().positive().max(3600).default(60),
    /** Send a Package 0 so the device connects now (default true). */
    notify: z.boolean().default(true),
  }),
);

/** An API command. */
export type ApiCommand = z.infer<typeof apiCommandSchema>;
type LeafCommand = z.infer<typeof leafCommand>;

function toOutgoing(c: LeafCommand): Outgoing {
  const meta: Meta = {};
  if (c.format) meta.format = c.format;
  if (c.type) meta.type = c.type;
  const item: Item = { target: { locURI: c.uri } };
  if (Object.keys(meta).length) item.meta = meta;
  if (c.value !== undefined) item.data = c.value;
  switch (c.cmd) {
    case 'Get':
      return { kind: 'Get', items: [{ target: { locURI: c.uri } }] };
    case 'Delete':
      return { kind: 'Delete', items: [{ target: { locURI: c.uri } }] };
    case 'Exec':
      return { kind: 'Exec', ...(c.correlator ? { correlator: c.correlator } : {}), items: [item] };
    case 'Copy':
      if (!c.source) throw new GwError('API_BAD_REQUEST', 'Copy needs "source"', { status: 400 });
      return { kind: 'Copy', items: [{ target: { locURI: c.uri }, source: { locURI: c.source } }] };
    case 'Add':
    case 'Replace':
      return { kind: c.cmd, items: [item] };
  }
}

/** Converts an API command into the SyncML command queued for the device. */
export function commandFromApi(c: ApiCommand): Outgoing {
  if ('commands' in c) {
    return { kind: c.cmd, commands: c.commands.map((x) => ({ ...toOutgoing(x), cmdID: '' })) } as Outgoing;
  }
  return toOutgoing(c);
}

/** The JSON view of a queue entry. */
export function entryView(e: QueueEntry): Record<string, unknown> {
  const c = e.command;
  const target = 'items' in c ? c.items.map((i) => i.target?.locURI).filter(Boolean).join(',') : `${'commands' in c ? c.commands.length : 0} commands`;
  return {
    id: e.id,
    deviceId: e.deviceId,
    cmd: c.kind,
    target,
    state: e.state,
    createdAt: e.createdAt,
    ...(e.sentAt ? { sentAt: e.sentAt, sessionId: e.sessionId } : {}),
    ...(e.doneAt ? { doneAt: e.doneAt } : {}),
    attempts: e.attempts,
    ...(e.delivery ? { delivery: e.delivery } : {}),
    ...(e.outcome
      ? {
          status: e.outcome.status,
          statuses: e.outcome.statuses,
          results: e.outcome.results.map((r) => ({
            uri: r.source?.locURI ?? r.target?.locURI,
            format: r.meta?.format ?? 'chr',
            ...(r.meta?.type ? { type: r.meta.type } : {}),
            data: typeof r.data === 'string' ? r.data : r.data ? Buffer.from(r.data).toString('base64') : undefined,
          })),
        }
      : {}),
  };
}

async function jsonBody(req: IncomingMessage): Promise<unknown> {
  const raw = await readBody(req, 1024 * 1024);
  if (raw.length === 0) return {};
  try {
    return JSON.parse(raw.toString('utf8'));
  } catch {
    throw new GwError('API_BAD_JSON', 'request body is not valid JSON', { status: 400 });
  }
}

function fail(res: ServerResponse, err: unknown): void {
  const status = err instanceof GwError && err.status && err.status >= 400 && err.status < 600 ? err.status : 500;
  const http = status === 425 ? 403 : status === 510 ? 500 : status;
  sendJson(res, http >= 400 && http < 600 ? http : 500, {
    error: { code: err instanceof GwError ? err.code : 'INTERNAL', message: describeError(err), ...(err instanceof GwError && err.status ? { status: err.status } : {}) },
  });
}

/** Routes one /api request. */
export async function handleApi(server: DmServer, req: IncomingMessage, res: ServerResponse, url: URL): Promise<void> {
  try {
    let parts: string[];
    try {
      parts = url.pathname.split('/').filter(Boolean).map(decodeURIComponent); // ['api', ...]
    } catch {
      throw new GwError('API_BAD_PATH', `malformed percent-encoding in ${url.pathname}`, { status: 400 });
    }
    const method = req.method ?? 'GET';
    if (parts.length === 2 && parts[1] === 'health' && method === 'GET') {
      sendJson(res, 200, { ok: true, serverId: server.config.serverId, sessions: server.activeSessions });
      return;
    }
    if (parts.length === 2 && parts[1] === 'sessions' && method === 'GET') {
      sendJson(res, 200, { sessions: server.openSessions() });
      return;
    }
    if (parts[1] !== 'devices') throw new GwError('API_NOT_FOUND', `no such endpoint ${url.pathname}`, { status: 404 });
    if (parts.length === 2 && method === 'GET') {
      const routes = new Map((await server.allRoutes()).map((r) => [r.deviceId, r]));
      const ids = [...new Set([...server.deviceIds(), ...routes.keys()])];
      const list = await Promise.all(
        ids.map(async (id) => {
          const rec = await server.device(id);
          const pending = (await server.queue.pending(id)).length;
          const r = routes.get(id);
          return {
            deviceId: id,
            pending,
            ...(rec ? { devInfo: rec.devInfo, lastSessionAt: rec.lastSessionAt, sessions: rec.sessions } : { sessions: 0 }),
            ...(r ? { via: r.via, mountPath: r.prefix, ...(r.mode ? { mode: r.mode } : {}), attached: r.attached, ...(r.publicAddress ? { publicAddress: r.publicAddress } : {}) } : {}),
            ...(await server.routeChoice(id).then((c) => (c ? { delivery: c } : {}))),
          };
        }),
      );
      sendJson(res, 200, { devices: list });
      return;
    }
    const deviceId = parts[2]!;
    if (!(await server.knows(deviceId))) throw new GwError('API_UNKNOWN_DEVICE', `unknown device ${deviceId}`, { status: 404 });
    if (parts.length === 3 && method === 'GET') {
      const rec = await server.device(deviceId);
      const route = await server.route(deviceId);
      const delivery = await server.routeChoice(deviceId);
      sendJson(res, 200, { deviceId, ...(rec ?? {}), ...(route ? { route } : {}), ...(delivery ? { delivery } : {}), pending: (await server.queue.pending(deviceId)).length });
      return;
    }
    const sub = parts[3];
    if (sub === 'notify' && method === 'POST') {
      const sessionId = await server.notify(deviceId);
      sendJson(res, sessionId ? 200 : 409, sessionId ? { sessionId } : { error: { code: 'API_NO_NOTIFY', message: 'the device has no notification address' } });
      return;
    }
    if (sub === 'alerts' && method === 'GET') {
      sendJson(res, 200, { alerts: await server.queue.listAlerts(deviceId) });
      return;
    }
    if (sub === 'commands' && parts.length === 4 && method === 'GET') {
      sendJson(res, 200, { commands: (await server.queue.list(deviceId)).map(entryView) });
      return;
    }
    if (sub === 'commands' && parts.length === 5 && method === 'GET') {
      const e = await server.queue.get(deviceId, parts[4]!);
      if (!e) throw new GwError('API_NOT_FOUND', `no command ${parts[4]} for ${deviceId}`, { status: 404 });
      const wait = Number(url.searchParams.get('wait') ?? '0');
      const done = wait > 0 ? ((await server.queue.waitFor(deviceId, e.id, wait * 1000)) ?? e) : e;
      sendJson(res, 200, entryView(done));
      return;
    }
    if (sub === 'commands' && parts.length === 4 && method === 'POST') {
      const raw = await jsonBody(req);
      const CMDS = ['Get', 'Replace', 'Add', 'Delete', 'Exec', 'Copy', 'Atomic', 'Sequence'];
      const cmd = (raw as { cmd?: unknown } | null)?.cmd;
      // Checked first: the schema is a union, whose own message for a wrong cmd says little.
      if (typeof cmd !== 'string' || !CMDS.includes(cmd)) {
        throw new GwError('API_BAD_REQUEST', `cmd: must be one of ${CMDS.join(', ')}`, { status: 400 });
      }
      const parsed = commandRequestSchema.safeParse(raw);
      if (!parsed.success) {
        throw new GwError('API_BAD_REQUEST', parsed.error.issues.map((i) => `${i.path.join('.') || 'body'}: ${i.message}`).join('; '), { status: 400 });
      }
      const body = parsed.data;
      const entry = await server.enqueueFor(deviceId, commandFromApi(body));
      if (body.notify) {
        await server.notify(deviceId).catch((err: unknown) => server.log.warn(`notify failed: ${describeError(err)}`));
      }
      if (!body.wait) {
        sendJson(res, 202, entryView(entry));
        return;
      }
      const done = await server.queue.waitFor(deviceId, entry.id, body.timeout * 1000);
      sendJson(res, done ? 200 : 202, entryView(done ?? entry));
      return;
    }
    throw new GwError('API_NOT_FOUND', `no such endpoint ${method} ${url.pathname}`, { status: 404 });
  } catch (err) {
    fail(res, err);
  }
}
