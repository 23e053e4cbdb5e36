/**
 * Secrets at rest and in logs (issue "Security and reliability", point 2): a gateway keeps the
 * passwords of the devices it verifies only as verifiers — `B64(H(user:password))` for MD5 and
 * HMAC, a salted scrypt hash for basic — and DM clients (devices, a gateway towards its parent)
 * keep their MD5/HMAC credentials and their servers' the same way in their DMAcc, so no LevelDB
 * file of a run contains a password, yet everyone authenticates; no log line contains one either.
 * Records written before this (plaintext) are converted when the store is opened.
 */
import { readdir, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { basicCred, basicMatches, md5Cred, secretVerifier } from '../../src/codec/auth.ts';
import { AssociationStore } from '../../src/gateway/associations.ts';
import { associationConfigSchema } from '../../src/gateway/config.ts';
import { openStore } from '../../src/store/store.ts';
import { LOCAL } from '../../src/tree/tree.ts';
import { tempDir } from '../support/fixtures.ts';
import { addDevice, addGateway, operate, proxyAssociation, startDeployment, until, type Deployment } from '../support/gateways.ts';

let d: Deployment | undefined;
const cleanups: (() => Promise<void>)[] = [];
afterEach(async () => {
  await d?.close();
  d = undefined;
  for (const c of cleanups.splice(0).reverse()) await c();
});

/** Every file under `dir` (LevelDB tables, logs, manifests), raw bytes as latin1 text. */
async function rawFiles(dir: string): Promise<string> {
  let out = '';
  for (const e of await readdir(dir, { withFileTypes: true, recursive: true })) {
    if (e.isFile()) out += (await readFile(join(e.parentPath, e.name))).toString('latin1');
  }
  return out;
}

describe('account secrets', () => {
  it('verifiers match exactly the credentials the plaintext would', () => {
    const nonce = new Uint8Array([1, 2, 3, 4]);
    const md5v = secretVerifier('meter', 'pa:ss', 'syncml:auth-md5');
    expect(md5v.startsWith('$gwmo-md5$')).toBe(true);
    expect(md5Cred('meter', md5v, nonce)).toBe(md5Cred('meter', 'pa:ss', nonce));
    expect(secretVerifier('meter', md5v, 'syncml:auth-md5')).toBe(md5v); // idempotent
    const basicV = secretVerifier('meter', 'pa:ss', 'syncml:auth-basic');
    expect(basicV.startsWith('$gwmo-scrypt$')).toBe(true);
    expect(basicV).not.toBe(secretVerifier('meter', 'pa:ss', 'syncml:auth-basic')); // salted
    expect(basicMatches(basicCred('meter', 'pa:ss'), 'meter', basicV)).toBe(true);
    expect(basicMatches(basicCred('meter', 'pa:sS'), 'meter', basicV)).toBe(false);
    expect(basicMatches(basicCred('other', 'pa:ss'), 'meter', basicV)).toBe(false);
    expect(basicMatches('not base64!', 'meter', basicV)).toBe(false);
    expect(basicMatches(basicCred('meter', 'pa:ss'), 'meter', md5v)).toBe(true);
  });

  it('a gateway stores no device password, its devices still authenticate, and no log line holds one', async () => {
    const MD5_DEV = 'IMEI:700000000000951';
    const BASIC_DEV = 'IMEI:700000000000952';
    d = await startDeployment([{ deviceId: 'gw-1', username: 'gw-1-user', secret: 'gw-1-secret' }]);
    const gw = await addGateway(d, 'gw-1', { kind: 'server', server: d.server }, [proxyAssociation(MD5_DEV), { ...proxyAssociation(BASIC_DEV), authType: 'basic' }]);
    const md5Dev = await addDevice(d, MD5_DEV, { kind: 'gateway', gateway: gw });
    expect((await md5Dev.connect()).ok).toBe(true);
    await until(async () => (await d!.server.route(MD5_DEV)) !== undefined, 'the route');
    expect((await operate(d.server, MD5_DEV, { cmd: 'Get', uri: './Vendor/Name' })).results[0].data).toBe(`name-of-${MD5_DEV}`);
    const passwords = [`${MD5_DEV}-secret`, `${BASIC_DEV}-secret`];
    expect(gw.associations.get(MD5_DEV)!.secret).toBe(secretVerifier(`${MD5_DEV}-user`, passwords[0]!, 'syncml:auth-md5'));
    expect(gw.associations.get(BASIC_DEV)!.secret).toMatch(/^\$gwmo-scrypt\$/);

    // Every LevelDB file of the run, raw: the gateway's (its associations, its own DMAcc towards the
    // server) and the device's (its DMAcc). All of these accounts are MD5, so none needs a password.
    const everything = [...passwords, 'gw-1-secret', 'gw-1-south-secret', d.server.config.serverSecret];
    const files = await rawFiles(d.dir);
    expect(files.length).toBeGreaterThan(1000); // the scan read real LevelDB files
    expect(files.includes(`${MD5_DEV}-user`)).toBe(true); // ... and would see a plain string
    for (const p of everything) expect(files.includes(p), `${p} in a LevelDB file`).toBe(false);
    for (const [who, lines] of Object.entries(d.logs)) {
      for (const p of everything) expect(lines.filter((l) => l.includes(p)), `${p} in the ${who} log`).toEqual([]);
    }
  });

  it('plaintext records of an older store are converted when the gateway opens it', async () => {
    const tmp = await tempDir('gwmo-secrets-migrate-');
    cleanups.push(tmp.cleanup);
    const store = await openStore(join(tmp.dir, 'db'));
    // An old record, written as earlier versions did (the password itself).
    const cfg = associationConfigSchema.parse({ deviceId: 'IMEI:1', mode: 'proxy', username: 'u', secret: 'old-plain-secret', authType: 'md5' });
    await store.section('associations').put('d0001', { key: 'd0001', deviceId: 'IMEI:1', mode: 'proxy', gateway: false, protocol: 'OMA-DM/1.2', authType: cfg.authType, status: 'attached', createdAt: new Date().toISOString(), username: 'u', secret: 'old-plain-secret' });
    const s = await AssociationStore.open(store);
    expect(s.get('IMEI:1')!.secret).toBe(secretVerifier('u', 'old-plain-secret', 'syncml:auth-md5'));
    expect((await store.section<{ secret: string }>('associations').get('d0001'))!.secret).toMatch(/^\$gwmo-md5\$/);
    await store.close();
  });

  it('a secret a server writes into the DMAcc later is kept as a verifier from the next session on', async () => {
    const ID = 'IMEI:700000000000953';
    d = await startDeployment([{ deviceId: ID, username: `${ID}-user`, secret: `${ID}-secret` }]);
    const dev = await addDevice(d, ID, { kind: 'server', server: d.server });
    expect((await dev.connect()).ok).toBe(true);
    // The device's owner (or a server allowed to) rotates the client password in the tree.
    const auth = './DMAcc/dms/AppAuth/CLCRED/AAuthSecret';
    await dev.tree.replace(auth, { data: 'rotated-Pa55' }, LOCAL);
    d.server.removeAccount(ID);
    d.server.addAccount({ deviceId: ID, username: `${ID}-user`, secret: 'rotated-Pa55', authType: 'syncml:auth-md5', gateway: false, clientNonce: '', serverNonce: '' });
    expect((await dev.connect()).ok).toBe(true); // authenticates with the new password ...
    expect(await dev.tree.get(auth, LOCAL).then((v) => v.data)).toBe(secretVerifier(`${ID}-user`, 'rotated-Pa55', 'syncml:auth-md5')); // ... kept as a verifier
    expect((await dev.connect()).ok).toBe(true);
  });
});
