/**
 * HTTP transport: bytes in, bytes out, no DM semantics. A listener helper with a body-size cap
 * (oversized requests are refused before they are buffered) and a client POST with a timeout.
 */
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { createServer as createHttpsServer } from 'node:https';
import type { AddressInfo } from 'node:net';
import { GwError } from '../errors.ts';
import { serverTlsOptions, tlsFetch, type TlsClientConfig, type TlsServerConfig } from './tls.ts';

/** Bytes past the limit that readBody still reads (and discards) so the 413 can reach the client. */
const DRAIN_LIMIT = 1024 * 1024;

/** Reads a request body, refusing more than `limit` bytes (413) without buffering the rest. */
export function readBody(req: IncomingMessage, limit: number): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const declared = Number(req.headers['content-length'] ?? '0');
    if (declared > limit) {
      reject(new GwError('HTTP_TOO_LARGE', `request body of ${declared} bytes exceeds ${limit}`, { status: 413 }));
      req.resume();
      return;
    }
    const chunks: Buffer[] = [];
    let size = 0;
    let overflow = false;
    const tooLarge = (): GwError => new GwError('HTTP_TOO_LARGE', `request body exceeds ${limit} bytes`, { status: 413 });
    req.on('data', (c: Buffer) => {
      size += c.length;
      if (overflow) {
        // Draining an oversized body (see below); a sender that keeps going is cut off.
        if (size > limit + DRAIN_LIMIT) req.destroy();
        return;
      }
      if (size > limit) {
        // Stop buffering but keep reading (and discarding) until the body ends, then refuse it.
        // Destroying the socket here (as before) made the kernel reset the connection, so a
        // client streaming a body without Content-Length never saw the 413, only ECONNRESET.
        overflow = true;
        chunks.length = 0;
        return;
      }
      chunks.push(c);
    });
    let settled = false;
    req.on('end', () => {
      settled = true;
      if (overflow) reject(tooLarge());
      else resolve(chunks.length === 1 ? chunks[0]! : Buffer.concat(chunks, size));
    });
    // Destroyed before the end (cut off while draining, or the client went away). Once settled there
    // is nothing to do (building the error, with its stack, for every request was a measurable cost).
    req.on('close', () => {
      if (settled) return;
      settled = true;
      reject(overflow ? tooLarge() : new GwError('HTTP_ABORTED', 'request aborted before its body ended'));
    });
    req.on('error', (err) => {
      settled = true;
      reject(err);
    });
  });
}

/** Parses "host:port" (or ":port", or "port") into its parts; host defaults to 127.0.0.1. */
export function parseListen(listen: string | number): { host: string; port: number } {
  const s = String(listen);
  const idx = s.lastIndexOf(':');
  const host = idx > 0 ? s.slice(0, idx).replace(/^\[|\]$/g, '') : '127.0.0.1';
  const port = Number(idx >= 0 ? s.slice(idx + 1) : s);
  if (!Number.isInteger(port) || port < 0 || port > 65535) throw new GwError('CONFIG_LISTEN', `invalid listen address "${s}"`);
  return { host, port };
}

/** Whether a host (name or address) is this machine's loopback. */
export function isLoopback(host: string): boolean {
  const h = host.replace(/^\[|\]$/g, '').toLowerCase();
  return h === 'localhost' || h === '::1' || /^127\./.test(h) || h === '::ffff:127.0.0.1';
}

/**
 * Why sending (or accepting) syncml:auth-basic credentials at `url` would expose the password — plain
 * HTTP to a host other than loopback — or undefined when it is safe (https, loopback, another scheme).
 */
export function basicInTheClear(url: string, authType: string): string | undefined {
  if (authType !== 'syncml:auth-basic') return undefined;
  const u = new URL(url);
  if (u.protocol !== 'http:' || isLoopback(u.hostname)) return undefined;
  return `syncml:auth-basic over plain HTTP to ${u.host}: the password would cross the network readable`;
}

/** A running HTTP listener. */
export interface Listener {
  server: Server;
  host: string;
  port: number;
  /** Base URL, e.g. http://127.0.0.1:8080 */
  url: string;
  /** HTTP exchanges in progress (request received, response not finished). */
  readonly inFlight: number;
  /**
   * Stops accepting connections; with `drainMs`, exchanges in progress get that long to finish
   * (idle keep-alive connections are closed at once), then every connection is closed.
   */
  close(opts?: { drainMs?: number }): Promise<void>;
}

/** Starts an HTTP server (HTTPS with `tls`) on `listen` with the given handler; errors in the handler become 500s. */
export async function listen(
  address: string | number,
  handler: (req: IncomingMessage, res: ServerResponse) => Promise<void>,
  opts: {
    tls?: TlsServerConfig | undefined;
    /** A client must have sent its request headers within this time (default 10 s): slow clients cannot hold sockets. */
    headersTimeoutMs?: number;
    /** ... and the whole request within this time (default 60 s). */
    requestTimeoutMs?: number;
  } = {},
): Promise<Listener> {
  const { host, port } = parseListen(address);
  let inFlight = 0;
  const drained: (() => void)[] = [];
  const onRequest = (req: IncomingMessage, res: ServerResponse): void => {
    inFlight++;
    res.once('close', () => {
      inFlight--;
      if (inFlight === 0) for (const f of drained.splice(0)) f();
    });
    handler(req, res).catch((err: unknown) => {
      if (!res.headersSent) {
        res.writeHead(500, { 'content-type': 'text/plain' });
        res.end(`internal error: ${err instanceof Error ? err.message : String(err)}`);
      } else res.destroy();
    });
  };
  const headersTimeout = opts.headersTimeoutMs ?? 10_000;
  const requestTimeout = Math.max(opts.requestTimeoutMs ?? 60_000, headersTimeout);
  // Node checks these deadlines every connectionsCheckingInterval (30 s by default): check often
  // enough that a deadline means what it says.
  const timing = { headersTimeout, requestTimeout, connectionsCheckingInterval: Math.min(1000, headersTimeout) };
  const server: Server = opts.tls ? createHttpsServer({ ...serverTlsOptions(opts.tls), ...timing }, onRequest) : createServer(timing, onRequest);
  server.keepAliveTimeout = 5000;
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, host, () => {
      server.off('error', reject);
      resolve();
    });
  });
  const addr = server.address() as AddressInfo;
  const shownHost = addr.address.includes(':') ? `[${addr.address}]` : addr.address;
  return {
    server,
    host: addr.address,
    port: addr.port,
    url: `${opts.tls ? 'https' : 'http'}://${shownHost}:${addr.port}`,
    get inFlight() {
      return inFlight;
    },
    close: async (c = {}) => {
      const closed = new Promise<void>((resolve) => server.close(() => resolve()));
      if (c.drainMs && inFlight > 0) {
        server.closeIdleConnections();
        await new Promise<void>((resolve) => {
          const t = setTimeout(resolve, c.drainMs);
          drained.push(() => {
            clearTimeout(t);
            resolve();
          });
        });
      }
      server.closeAllConnections();
      await closed;
    },
  };
}

/** The reply to a POST. */
export interface PostResult {
  status: number;
  headers: Headers;
  body: Uint8Array;
}

/** POSTs bytes to a URL with a timeout (verifying an https peer against `tls`); network errors become GwError `HTTP_UNREACHABLE`, TLS failures `TLS_*`. */
export async function post(url: string, body: Uint8Array, headers: Record<string, string>, timeoutMs = 30_000, tls?: TlsClientConfig): Promise<PostResult> {
  let res: Response;
  try {
    res = await tlsFetch(url, { method: 'POST', body, headers, signal: AbortSignal.timeout(timeoutMs) }, tls);
  } catch (err) {
    if (err instanceof GwError) throw err;
    const timedOut = err instanceof Error && (err.name === 'TimeoutError' || err.name === 'AbortError');
    throw new GwError(timedOut ? 'HTTP_TIMEOUT' : 'HTTP_UNREACHABLE', `${timedOut ? 'no answer from' : 'cannot reach'} ${url}`, { cause: err });
  }
  return { status: res.status, headers: res.headers, body: new Uint8Array(await res.arrayBuffer()) };
}

/** Sends a JSON response. */
export function sendJson(res: ServerResponse, status: number, value: unknown): void {
  const body = JSON.stringify(value, null, 2);
  res.writeHead(status, { 'content-type': 'application/json; charset=utf-8', 'cache-control': 'no-store' });
  res.end(body);
}
