/**
 * TLS for every HTTP link (GwMO-SECCONF-001): the `tls:` block of a listener, the `ca`/`cert`/`key`
 * of a client, and a fetch that verifies the peer against the configured CA. TLS 1.2 is the floor
 * on both sides. PEM files are read once, when the part starts; a missing or unreadable file is a
 * config error naming the file.
 */
import { readFileSync } from 'node:fs';
import type { ServerOptions } from 'node:https';
import { Agent, fetch as undiciFetch } from 'undici';
import { z } from 'zod';
import { GwError } from '../errors.ts';

/** A listener's TLS settings (paths to PEM files). */
export const tlsServerSchema = z.object({
  cert: z.string().min(1),
  key: z.string().min(1),
  /** CA bundle for client certificates (needed with clientAuth request/require). */
  ca: z.string().min(1).optional(),
  /** none: no client certificate asked; request: asked and checked if sent; require: refused at the TLS layer without one. */
  clientAuth: z.enum(['none', 'request', 'require']).default('none'),
});
export type TlsServerConfig = z.output<typeof tlsServerSchema>;

/** A client's TLS settings: the CA it trusts (system CAs without it) and, for mutual TLS, its own certificate. */
export const tlsClientSchema = z.object({
  ca: z.string().min(1).optional(),
  cert: z.string().min(1).optional(),
  key: z.string().min(1).optional(),
});
export type TlsClientConfig = z.output<typeof tlsClientSchema>;

const MIN_VERSION = 'TLSv1.2' as const;

function pem(path: string, what: string): Buffer {
  try {
    return readFileSync(path);
  } catch (err) {
    throw new GwError('CONFIG_TLS', `cannot read the TLS ${what} file ${path}: ${(err as Error).message}`, { cause: err });
  }
}

/** node:https server options for a `tls:` block. */
export function serverTlsOptions(cfg: TlsServerConfig): ServerOptions {
  if (cfg.clientAuth !== 'none' && !cfg.ca) throw new GwError('CONFIG_TLS', `tls.clientAuth: ${cfg.clientAuth} needs tls.ca (the CA that signs client certificates)`);
  return {
    cert: pem(cfg.cert, 'certificate'),
    key: pem(cfg.key, 'key'),
    ...(cfg.ca ? { ca: pem(cfg.ca, 'CA') } : {}),
    minVersion: MIN_VERSION,
    requestCert: cfg.clientAuth !== 'none',
    // 'request': an unverified certificate still gets through the handshake; the application sees
    // `authorized: false` and treats the client as unauthenticated at the transport layer.
    rejectUnauthorized: cfg.clientAuth === 'require',
  };
}

const agents = new Map<string, Agent>();

/** One keep-alive agent per distinct client TLS config (CA, certificate). */
function agentFor(cfg: TlsClientConfig): Agent {
  const key = JSON.stringify([cfg.ca, cfg.cert, cfg.key]);
  let a = agents.get(key);
  if (!a) {
    if (!!cfg.cert !== !!cfg.key) throw new GwError('CONFIG_TLS', 'a client certificate needs both cert and key');
    a = new Agent({
      connect: {
        ...(cfg.ca ? { ca: pem(cfg.ca, 'CA') } : {}),
        ...(cfg.cert ? { cert: pem(cfg.cert, 'certificate') } : {}),
        ...(cfg.key ? { key: pem(cfg.key, 'key') } : {}),
        minVersion: MIN_VERSION,
        rejectUnauthorized: true,
      },
    });
    agents.set(key, a);
  }
  return a;
}

/** Whether a client config changes anything (a CA or a certificate). */
export function hasClientTls(cfg: TlsClientConfig | undefined): cfg is TlsClientConfig {
  return !!cfg && !!(cfg.ca || cfg.cert);
}

/**
 * fetch with the client's TLS settings for https URLs (the global fetch otherwise). TLS failures
 * become GwError `TLS_*` with a message that says what to check.
 */
export async function tlsFetch(url: string | URL, init: RequestInit, tls: TlsClientConfig | undefined): Promise<Response> {
  const href = String(url);
  try {
    if (href.startsWith('https:') && hasClientTls(tls)) {
      return (await undiciFetch(href, { ...(init as object), dispatcher: agentFor(tls) } as Parameters<typeof undiciFetch>[1])) as unknown as Response;
    }
    return await fetch(href, init);
  } catch (err) {
    throw tlsError(err, href) ?? err;
  }
}

/** TLS error codes of Node (OpenSSL) that mean "the peer's certificate is not acceptable". */
const CERT_CODES: Record<string, string> = {
  UNABLE_TO_VERIFY_LEAF_SIGNATURE: 'its certificate is not signed by a CA this side trusts (check `ca`)',
  UNABLE_TO_GET_ISSUER_CERT_LOCALLY: 'its certificate is not signed by a CA this side trusts (check `ca`)',
  SELF_SIGNED_CERT_IN_CHAIN: 'its certificate chain ends in a CA this side does not trust (check `ca`)',
  DEPTH_ZERO_SELF_SIGNED_CERT: 'it presents a self-signed certificate this side does not trust (check `ca`)',
  CERT_HAS_EXPIRED: 'its certificate has expired',
  CERT_NOT_YET_VALID: 'its certificate is not valid yet',
  ERR_TLS_CERT_ALTNAME_INVALID: 'its certificate does not name this host (check the host in the URL and the certificate)',
};

/** A readable GwError for a TLS failure inside `err` (fetch wraps the cause), or undefined if it is none. */
export function tlsError(err: unknown, url: string): GwError | undefined {
  for (let e: unknown = err, i = 0; e && i < 5; e = (e as { cause?: unknown }).cause, i++) {
    const code = (e as { code?: unknown }).code;
    if (typeof code !== 'string') continue;
    if (CERT_CODES[code]) return new GwError('TLS_PEER_UNTRUSTED', `TLS: ${url} refused: ${CERT_CODES[code]} [${code}]`, { cause: err });
    if (/^ERR_SSL_|^ERR_TLS_|^EPROTO$/.test(code) || /alert|handshake|certificate required/i.test(String((e as Error).message ?? ''))) {
      return new GwError('TLS_HANDSHAKE', `TLS: handshake with ${url} failed: ${(e as Error).message ?? code}`, { cause: err });
    }
    // TLS 1.3: a server that refuses the client's certificate (or its absence) sends its alert after
    // the client has finished the handshake, and the client only sees the connection close.
    if (url.startsWith('https:') && (code === 'UND_ERR_SOCKET' || code === 'ECONNRESET')) {
      return new GwError('TLS_CLOSED', `TLS: ${url} closed the connection after the handshake; a server that requires a client certificate does this when none (or one it does not trust) is sent (--cert/--key, or cert/key in the config)`, { cause: err });
    }
  }
  return undefined;
}

/** The verified client certificate's common name on a TLS request (undefined: none, or not verified). */
export function peerIdentity(socket: unknown): string | undefined {
  const s = socket as { authorized?: boolean; getPeerCertificate?: () => { subject?: { CN?: string | string[] } } };
  if (!s?.authorized || typeof s.getPeerCertificate !== 'function') return undefined;
  const cn = s.getPeerCertificate().subject?.CN;
  return Array.isArray(cn) ? cn[0] : cn;
}
