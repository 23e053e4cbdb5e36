/**
 * The operator CLI's view of the server: a thin client of the REST API (docs/api.md). The CLI
 * never opens the server's database (LevelDB is single-process); everything goes through /api.
 */
import { GwError } from '../errors.ts';
import { tlsError, tlsFetch, type TlsClientConfig } from '../transport/tls.ts';

/** Default server API base URL (GWMO_SERVER overrides it). */
export const DEFAULT_SERVER = process.env.GWMO_SERVER ?? 'http://127.0.0.1:8080';

/** The CA (and client certificate) the CLI verifies an https server API against: `--ca`, else GWMO_CA. */
let apiTls: TlsClientConfig | undefined =
  process.env.GWMO_CA || process.env.GWMO_CERT
    ? { ...(process.env.GWMO_CA ? { ca: process.env.GWMO_CA } : {}), ...(process.env.GWMO_CERT ? { cert: process.env.GWMO_CERT } : {}), ...(process.env.GWMO_KEY ? { key: process.env.GWMO_KEY } : {}) }
    : undefined;

/** Sets the CLI's TLS settings for the server API (`--ca`, `--cert`/`--key`). */
export function setApiTls(tls: TlsClientConfig | undefined): void {
  if (tls && (tls.ca || tls.cert)) apiTls = tls;
}

/** Calls the API and returns the JSON body; HTTP errors become GwError with the API's code. */
export async function callApi(server: string, method: string, path: string, body?: unknown, timeoutMs = 600_000): Promise<{ status: number; json: any }> {
  let res: Response;
  try {
    const url = new URL(path, server.endsWith('/') ? server : server + '/');
    res = await tlsFetch(url, { method, signal: AbortSignal.timeout(timeoutMs), ...(body !== undefined ? { body: JSON.stringify(body), headers: { 'content-type': 'application/json' } } : {}) }, apiTls);
  } catch (err) {
    // A certificate problem says what to fix (--ca), not "is the server running?".
    const tls = err instanceof GwError && err.code.startsWith('TLS_') ? err : tlsError(err, server);
    if (tls) throw tls;
    throw new GwError('CLI_UNREACHABLE', `cannot reach the server API at ${server} (is \`gwmo server\` running? use --server URL)`, { cause: err });
  }
  const text = await res.text();
  let json: any;
  try {
    json = text ? JSON.parse(text) : undefined;
  } catch {
    throw new GwError('CLI_BAD_REPLY', `the server answered HTTP ${res.status} with non-JSON content`);
  }
  if (res.status >= 400) {
    const e = json?.error;
    throw new GwError(e?.code ?? 'CLI_HTTP', e?.message ?? `HTTP ${res.status}`, e?.status ? { status: e.status } : {});
  }
  return { status: res.status, json };
}

/** Formats rows as an aligned text table. */
export function table(headers: string[], rows: (string | number | undefined)[][]): string {
  const cells = [headers, ...rows.map((r) => r.map((c) => (c === undefined ? '' : String(c))))];
  const widths = headers.map((_, i) => Math.max(...cells.map((r) => (r[i] ?? '').length)));
  const line = (r: string[]): string => r.map((c, i) => (c ?? '').padEnd(widths[i]!)).join('  ').trimEnd();
  return [line(cells[0]!), line(widths.map((w) => '-'.repeat(w))), ...cells.slice(1).map(line)].join('\n');
}

/** Human text for a DM status code. */
export function statusText(code: number | undefined): string {
  if (code === undefined) return 'pending';
  const names: Record<number, string> = {
    200: 'OK', 202: 'Accepted', 212: 'Authenticated', 213: 'Chunk accepted', 215: 'Not executed', 216: 'Rolled back',
    304: 'Not modified', 400: 'Bad request', 401: 'Unauthorized', 403: 'Forbidden', 404: 'Not found',
    405: 'Command not allowed', 406: 'Optional feature not supported', 407: 'Authentication required',
    412: 'Incomplete command', 413: 'Too large', 414: 'URI too long', 415: 'Unsupported media type',
    418: 'Already exists', 424: 'Size mismatch', 425: 'Permission denied', 500: 'Command failed',
    501: 'Not implemented', 507: 'Atomic failed', 516: 'Atomic rollback failed',
  };
  return `${code} ${names[code] ?? ''}`.trim();
}
