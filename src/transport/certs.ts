/**
 * A local certificate authority for demos, tests and small deployments (`gwmo certs init`): one CA
 * and, per name (the server, each gateway, each device), an EC P-256 key and a certificate with
 * CN=<name>, usable both as a TLS server and as a TLS client (gateways are both), valid for the
 * given hosts. Built with Debian's `openssl` command; keys are written with mode 0600.
 * Running it again on the same directory keeps the CA and existing certificates and adds the
 * missing names, so a deployment can grow without re-issuing everything.
 */
import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { chmod, mkdir, rm, stat, writeFile } from 'node:fs/promises';
import { isIP } from 'node:net';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { GwError } from '../errors.ts';

const run = promisify(execFile);

/** Options of `initCerts`. */
export interface CertsOptions {
  /** Names to issue certificates for (CN and file name); `server` is always included. */
  names?: string[];
  /** Host names and IP addresses every certificate is valid for (default 127.0.0.1, ::1, localhost). */
  hosts?: string[];
  /** Validity in days (default 825). */
  days?: number;
  /** Re-issue certificates that exist (the CA is kept). */
  force?: boolean;
}

/** Paths of one issued certificate. */
export interface IssuedCert {
  name: string;
  cert: string;
  key: string;
  /** Issued by this call (false: it existed and was kept). */
  created: boolean;
}

/** What `initCerts` produced. */
export interface CertsResult {
  dir: string;
  ca: string;
  caKey: string;
  caCreated: boolean;
  certs: IssuedCert[];
}

const exists = async (p: string): Promise<boolean> => !!(await stat(p).catch(() => undefined));

/** Runs openssl, turning a missing binary or a failure into a clear error. */
async function openssl(args: string[]): Promise<void> {
  try {
    await run('openssl', args, { timeout: 30_000 });
  } catch (err) {
    const e = err as NodeJS.ErrnoException & { stderr?: string };
    if (e.code === 'ENOENT') throw new GwError('CERTS_NO_OPENSSL', 'gwmo certs needs the openssl command (Debian: apt-get install openssl)');
    throw new GwError('CERTS_OPENSSL', `openssl ${args[0]} failed: ${(e.stderr ?? e.message).trim()}`, { cause: err });
  }
}

/** File-name-safe form of a name (DevIds contain ':'). */
export function certFileName(name: string): string {
  return name.replace(/[^A-Za-z0-9._-]/g, '_');
}

/** Creates (or completes) a local CA and certificates in `dir`. */
export async function initCerts(dir: string, opts: CertsOptions = {}): Promise<CertsResult> {
  const hosts = opts.hosts?.length ? opts.hosts : ['127.0.0.1', '::1', 'localhost'];
  const days = String(opts.days ?? 825);
  const names = [...new Set(['server', ...(opts.names ?? [])])];
  for (const n of names) if (!/^[^\/\\\n\r=,+"<>#;]+$/.test(n)) throw new GwError('CERTS_NAME', `"${n}" cannot be a certificate name`);
  await mkdir(dir, { recursive: true });
  const ca = join(dir, 'ca.pem');
  const caKey = join(dir, 'ca-key.pem');
  let caCreated = false;
  if (!(await exists(ca)) || !(await exists(caKey))) {
    await openssl(['req', '-x509', '-new', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes', '-keyout', caKey, '-out', ca, '-days', days,
      '-subj', '/CN=gwmo local CA', '-addext', 'basicConstraints=critical,CA:TRUE,pathlen:0', '-addext', 'keyUsage=critical,keyCertSign,cRLSign']);
    await chmod(caKey, 0o600);
    caCreated = true;
  }
  const san = hosts.map((h) => (isIP(h) ? `IP:${h}` : `DNS:${h}`)).join(',');
  const certs: IssuedCert[] = [];
  for (const name of names) {
    const base = certFileName(name);
    const cert = join(dir, `${base}.pem`);
    const key = join(dir, `${base}-key.pem`);
    if (!opts.force && !caCreated && (await exists(cert)) && (await exists(key))) {
      certs.push({ name, cert, key, created: false });
      continue;
    }
    const csr = join(dir, `${base}.csr`);
    const ext = join(dir, `${base}.ext`);
    await writeFile(ext, ['basicConstraints=CA:FALSE', 'keyUsage=critical,digitalSignature,keyAgreement', 'extendedKeyUsage=serverAuth,clientAuth', `subjectAltName=${san}`, ''].join('\n'));
    try {
      await openssl(['req', '-new', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes', '-keyout', key, '-out', csr, '-subj', `/CN=${name}`]);
      await chmod(key, 0o600);
      await openssl(['x509', '-req', '-in', csr, '-CA', ca, '-CAkey', caKey, '-set_serial', `0x${randomBytes(12).toString('hex')}`, '-days', days, '-out', cert, '-extfile', ext]);
    } finally {
      await rm(csr, { force: true });
      await rm(ext, { force: true });
    }
    certs.push({ name, cert, key, created: true });
  }
  return { dir, ca, caKey, caCreated, certs };
}
