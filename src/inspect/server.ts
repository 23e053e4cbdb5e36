/**
 * The visualizer's HTTP server: serves the page (our files in ./page and Viz.js — Graphviz compiled
 * to WebAssembly — from node_modules, so it works with no internet), `/api/model` (the whole model
 * as JSON) and a WebSocket at `/ws` that sends a snapshot of the hub's model, then batched deltas.
 *
 * One timer per server reads one delta from the hub per batch and sends it to every client:
 * building a delta is O(actors), so doing it per client would multiply that cost. A client that
 * joins gets a snapshot, after which the shared deltas may repeat things it already has; the page
 * applies them idempotently (upserts by key, events by sequence number).
 */
import { createReadStream } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { WebSocketServer, type WebSocket } from 'ws';
import type { InspectionHub } from './hub.ts';
import { createServer as createHttpsServer } from 'node:https';
import { serverTlsOptions, type TlsServerConfig } from '../transport/tls.ts';

/** Options of `startVisualizer`. */
export interface VisualizerOptions {
  hub: InspectionHub;
  /** `host:port`; default `127.0.0.1:0` (a port from the OS). */
  listen?: string;
  /** Milliseconds between batches of updates (default 100). */
  batchMs?: number;
  /** Serve the page and its websocket over HTTPS (wss). */
  tls?: TlsServerConfig;
}

/** A running visualizer. */
export interface Visualizer {
  /** The page's address, e.g. `http://127.0.0.1:40123/`. */
  url: string;
  close(): Promise<void>;
}

const PAGE_DIR = fileURLToPath(new URL('./page/', import.meta.url));
/** The page's own files (a fixed list: nothing else under the directory is served). */
const PAGE_FILES: Record<string, { file: string; type: string }> = {
  '/': { file: 'index.html', type: 'text/html; charset=utf-8' },
  '/index.html': { file: 'index.html', type: 'text/html; charset=utf-8' },
  '/app.js': { file: 'app.js', type: 'text/javascript; charset=utf-8' },
  '/graph.js': { file: 'graph.js', type: 'text/javascript; charset=utf-8' },
  '/style.css': { file: 'style.css', type: 'text/css; charset=utf-8' },
};

/** Viz.js's ESM build; its package exports only the entry, so it is found next to the CommonJS one. */
function vizPath(): string {
  const cjs = createRequire(import.meta.url).resolve('@viz-js/viz');
  return join(dirname(cjs), 'viz.js');
}

/** A WebSocket stops getting batches while this much is still unsent (a stalled tab), then resyncs. */
const MAX_BUFFERED = 8 * 1024 * 1024;

/** Starts the visualizer's HTTP and WebSocket server. */
export async function startVisualizer(opts: VisualizerOptions): Promise<Visualizer> {
  const { hub } = opts;
  const listen = opts.listen ?? '127.0.0.1:0';
  const i = listen.lastIndexOf(':');
  const host = i > 0 ? listen.slice(0, i) : '127.0.0.1';
  const port = Number(i >= 0 ? listen.slice(i + 1) : listen);
  const viz = vizPath();

  const onRequest = (req: IncomingMessage, res: ServerResponse): void => void serve(req, res).catch(() => fail(res, 500, 'internal error'));
  const http = opts.tls ? createHttpsServer(serverTlsOptions(opts.tls), onRequest) : createServer(onRequest);
  async function serve(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const path = new URL(req.url ?? '/', 'http://x').pathname;
    if (req.method !== 'GET' && req.method !== 'HEAD') return fail(res, 405, 'method not allowed');
    const page = PAGE_FILES[path];
    if (page) {
      const body = await readFile(join(PAGE_DIR, page.file));
      res.writeHead(200, { 'content-type': page.type, 'cache-control': 'no-cache' });
      res.end(body);
      return;
    }
    if (path === '/vendor/viz.js') {
      res.writeHead(200, { 'content-type': 'text/javascript; charset=utf-8', 'cache-control': 'max-age=3600' });
      createReadStream(viz).pipe(res);
      return;
    }
    if (path === '/api/model') {
      res.writeHead(200, { 'content-type': 'application/json' });
      res.end(JSON.stringify(hub.snapshot()));
      return;
    }
    fail(res, 404, 'not found');
  }

  const wss = new WebSocketServer({ noServer: true });
  const behind = new WeakSet<WebSocket>();
  http.on('upgrade', (req, socket, head) => {
    if (new URL(req.url ?? '/', 'http://x').pathname !== '/ws') return void socket.destroy();
    wss.handleUpgrade(req, socket, head, (ws) => {
      ws.on('error', () => ws.terminate());
      send(ws, { type: 'snapshot', ...hub.snapshot() });
    });
  });

  function send(ws: WebSocket, msg: unknown): void {
    if (ws.readyState !== ws.OPEN) return;
    ws.send(JSON.stringify(msg));
  }

  let version = hub.currentVersion;
  let seq = hub.lastSeq;
  const timer = setInterval(() => {
    try {
      if (hub.currentVersion === version && hub.lastSeq === seq) return;
      const delta = hub.delta(version, seq);
      version = hub.currentVersion;
      seq = hub.lastSeq;
      const msg = delta ? JSON.stringify({ type: 'delta', ...delta }) : undefined;
      for (const ws of wss.clients) {
        if (ws.readyState !== ws.OPEN) continue;
        if (ws.bufferedAmount > MAX_BUFFERED) {
          behind.add(ws);
          continue;
        }
        // A client that missed batches (or a delta too far behind) gets a fresh snapshot instead.
        if (!msg || behind.has(ws)) {
          behind.delete(ws);
          send(ws, { type: 'snapshot', ...hub.snapshot() });
        } else ws.send(msg);
      }
    } catch {
      // A failed batch is retried by the next tick; the runtime is never affected.
    }
  }, opts.batchMs ?? 100);
  timer.unref();

  await new Promise<void>((resolve, reject) => {
    http.once('error', reject);
    http.listen(port, host, () => resolve());
  });
  const addr = http.address();
  const actualPort = typeof addr === 'object' && addr ? addr.port : port;
  return {
    url: `${opts.tls ? 'https' : 'http'}://${host.includes(':') ? `[${host}]` : host}:${actualPort}/`,
    async close() {
      clearInterval(timer);
      for (const ws of wss.clients) ws.terminate();
      wss.close();
      http.closeAllConnections();
      await new Promise<void>((r) => http.close(() => r()));
    },
  };
}

function fail(res: ServerResponse, status: number, text: string): void {
  if (res.headersSent) return void res.destroy();
  res.writeHead(status, { 'content-type': 'text/plain; charset=utf-8' });
  res.end(text);
}
