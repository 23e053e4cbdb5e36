import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { secretVerifier } from '../../src/codec/auth.ts';
import {
  DEVDETAIL_MOID,
  DEVINFO_MOID,
  DMACC_MOID,
  type StandardObjectsConfig,
  installStandardObjects,
  readAccounts,
  readDevInfo,
  storeNonce,
} from '../../src/tree/standard.ts';
import { LOCAL } from '../../src/tree/tree.ts';
import { levelTree, memoryTree, statusOfCall, tempDir } from './helpers.ts';

const config = (): StandardObjectsConfig => ({
  devInfo: { devId: 'IMEI:493005100592800', man: 'Acme', mod: 'GW-1', dmV: '1.2', lang: 'en-US' },
  devDetail: { devTyp: 'gateway', oem: 'Acme', fwV: '1.0.0', swV: '0.1.0', hwV: 'rev-a', lrgObj: true, maxDepth: 0, maxTotLen: 0, maxSegLen: 0 },
  accounts: [
    {
      name: 'north',
      serverId: 'com.example.dms',
      displayName: 'Example DMS',
      address: 'https://dms.example.com/dm',
      authPref: 'DIGEST',
      client: { type: 'DIGEST', name: 'IMEI:493005100592800', secret: 'devpwd', nonce: 'AAAAAA==' },
      server: { type: 'DIGEST', name: 'com.example.dms', secret: 'srvpwd' },
    },
    {
      name: 'other',
      serverId: 'srv.other',
      address: 'http://other/dm',
      client: { type: 'BASIC', name: 'dev', secret: 'x' },
      server: { type: 'HMAC', name: 'srv.other', secret: 'y' },
    },
  ],
});

const DMS = { serverId: 'com.example.dms' };
const OTHER = { serverId: 'srv.other' };

describe('standard objects (§6.1, §5.3)', () => {
  it('creates DevInfo and DevDetail with their MOIDs, readable by every configured server', async () => {
    const { tree } = await memoryTree();
    await installStandardObjects(tree, config());
    expect(await tree.get('./DevInfo', DMS)).toEqual({ uri: './DevInfo', format: 'node', type: DEVINFO_MOID, data: 'DevId/Man/Mod/DmV/Lang' });
    expect((await tree.get('./DevInfo/DevId', OTHER)).data).toBe('IMEI:493005100592800');
    expect((await tree.get('./DevDetail', OTHER)).type).toBe(DEVDETAIL_MOID);
    expect(await tree.get('./DevDetail/LrgObj', DMS)).toMatchObject({ format: 'bool', data: 'true' });
    expect((await tree.get('./DevDetail/URI/MaxDepth', DMS)).data).toBe('0');
    expect(await readDevInfo(tree)).toEqual(config().devInfo);
  });

  it('makes DevInfo read-only and permanent for servers', async () => {
    const { tree } = await memoryTree();
    await installStandardObjects(tree, config());
    expect(await statusOfCall(tree.replace('./DevInfo/Mod', { data: 'x' }, DMS))).toBe(405);
    expect(await statusOfCall(tree.delete('./DevInfo', DMS))).toBe(405);
    expect(await statusOfCall(tree.add('./DevInfo/Ext2', { data: 'x' }, DMS))).toBe(405);
  });

  it('builds DMAcc/<x> as in §5.3', async () => {
    const { tree } = await memoryTree();
    await installStandardObjects(tree, config());
    const base = './DMAcc/north';
    expect((await tree.get(base, DMS)).type).toBe(DMACC_MOID);
    expect((await tree.get(`${base}/AppID`, DMS)).data).toBe('w7');
    expect((await tree.get(`${base}/ServerID`, DMS)).data).toBe('com.example.dms');
    expect((await tree.get(`${base}/Name`, DMS)).data).toBe('Example DMS');
    expect((await tree.get(`${base}/AppAddr/1/Addr`, DMS)).data).toBe('https://dms.example.com/dm');
    expect((await tree.get(`${base}/AppAddr/1/AddrType`, DMS)).data).toBe('URI');
    expect((await tree.get(`${base}/AAuthPref`, DMS)).data).toBe('DIGEST');
    expect((await tree.get(`${base}/AppAuth`, DMS)).data).toBe('CLCRED/SRVCRED');
    expect((await tree.get(`${base}/AppAuth/CLCRED/AAuthLevel`, DMS)).data).toBe('CLCRED');
    expect((await tree.get(`${base}/AppAuth/SRVCRED/AAuthLevel`, DMS)).data).toBe('SRVCRED');
    expect((await tree.get(`${base}/AppAuth/CLCRED/AAuthType`, DMS)).data).toBe('DIGEST');
    expect((await tree.get(`${base}/AppAuth/CLCRED/AAuthName`, DMS)).data).toBe('IMEI:493005100592800');
  });

  it('never lets a server Get AAuthSecret or AAuthData (405), though its owner may replace them', async () => {
    const { tree } = await memoryTree();
    await installStandardObjects(tree, config());
    const auth = './DMAcc/north/AppAuth/SRVCRED';
    expect(await statusOfCall(tree.get(`${auth}/AAuthSecret`, DMS))).toBe(405);
    expect(await statusOfCall(tree.get(`${auth}/AAuthData`, DMS))).toBe(405);
    expect(await statusOfCall(tree.getProperty(`${auth}/AAuthSecret`, 'Size', DMS))).toBe(405);
    const listing = await tree.list('./DMAcc/north', 'StructData', DMS);
    expect(listing.find((e) => e.uri === `${auth}/AAuthSecret`)).toEqual({ uri: `${auth}/AAuthSecret`, format: 'chr', type: 'text/plain' });
    await tree.replace(`${auth}/AAuthSecret`, { data: 'rotated' }, DMS);
    expect((await readAccounts(tree))[0]?.server?.secret).toBe('rotated');
  });

  it('keeps each server to its own account', async () => {
    const { tree } = await memoryTree();
    await installStandardObjects(tree, config());
    expect(await statusOfCall(tree.get('./DMAcc/north/ServerID', OTHER))).toBe(425);
    expect(await statusOfCall(tree.replace('./DMAcc/north/AppAddr/1/Addr', { data: 'http://evil' }, OTHER))).toBe(425);
    expect(await statusOfCall(tree.delete('./DMAcc/north', OTHER))).toBe(425);
    expect(await statusOfCall(tree.get('./DMAcc', { serverId: 'stranger' }))).toBe(425);
    await tree.replace('./DMAcc/north/AppAddr/1/Addr', { data: 'https://dms2.example.com/dm' }, DMS);
    expect((await tree.get('./DMAcc', OTHER)).data).toBe('north/other');
  });

  it('lets a configured server add an account it then controls (creator ACL, §5.4)', async () => {
    const { tree } = await memoryTree();
    await installStandardObjects(tree, config());
    await tree.add('./DMAcc/new', { format: 'node', type: DMACC_MOID }, DMS);
    expect(await tree.getProperty('./DMAcc/new', 'ACL', DMS)).toBe('Get=*&Add=com.example.dms&Delete=com.example.dms&Replace=com.example.dms');
    await tree.add('./DMAcc/new/ServerID', { data: 'srv.new' }, DMS);
    expect((await readAccounts(tree)).map((a) => a.serverId)).toEqual(['com.example.dms', 'srv.other', 'srv.new']);
  });

  it('reads accounts with address, preference and both credentials', async () => {
    const { tree } = await memoryTree();
    await installStandardObjects(tree, config());
    expect(await readAccounts(tree)).toEqual([
      {
        account: 'north',
        serverId: 'com.example.dms',
        displayName: 'Example DMS',
        address: 'https://dms.example.com/dm',
        authPref: 'DIGEST',
        // Kept as verifiers: B64(H(name:secret)) is all DIGEST and HMAC (and Package 0) need.
        client: { type: 'DIGEST', name: 'IMEI:493005100592800', secret: secretVerifier('IMEI:493005100592800', 'devpwd', 'syncml:auth-md5'), nonce: 'AAAAAA==' },
        server: { type: 'DIGEST', name: 'com.example.dms', secret: secretVerifier('com.example.dms', 'srvpwd', 'syncml:auth-md5'), nonce: '' },
      },
      {
        account: 'other',
        serverId: 'srv.other',
        address: 'http://other/dm',
        // A BASIC client credential sends the password itself: the one secret kept as given.
        client: { type: 'BASIC', name: 'dev', secret: 'x', nonce: '' },
        server: { type: 'HMAC', name: 'srv.other', secret: secretVerifier('srv.other', 'y', 'syncml:auth-md5'), nonce: '' },
      },
    ]);
  });

  it('stores nonces as base64 in AAuthData and rejects unknown accounts and bad nonces', async () => {
    const { tree } = await memoryTree();
    await installStandardObjects(tree, config());
    await storeNonce(tree, 'com.example.dms', 'SRVCRED', 'LG3iZQhhdmKNHg==');
    await storeNonce(tree, 'srv.other', 'CLCRED', 'MTIzNA==');
    const [north, other] = await readAccounts(tree);
    expect(north?.server?.nonce).toBe('LG3iZQhhdmKNHg==');
    expect(other?.client?.nonce).toBe('MTIzNA==');
    expect(await tree.getProperty('./DMAcc/north/AppAuth/SRVCRED/AAuthData', 'Format', LOCAL)).toBe('bin');
    expect(await tree.getProperty('./DMAcc/north/AppAuth/SRVCRED/AAuthData', 'Size', LOCAL)).toBe('10');
    expect(await statusOfCall(storeNonce(tree, 'nobody', 'CLCRED', 'AAAA'))).toBe(404);
    expect(await statusOfCall(storeNonce(tree, 'srv.other', 'CLCRED', 'not b64!'))).toBe(400);
  });

  describe('reinstall over an existing LevelDB tree', () => {
    let dir: string;
    let cleanup: () => Promise<void>;
    beforeEach(async () => ({ dir, cleanup } = await tempDir()));
    afterEach(async () => cleanup());

    it('is idempotent, keeps persisted nonces and server changes, and refreshes device facts', async () => {
      const first = await levelTree(dir);
      await installStandardObjects(first.tree, config());
      await storeNonce(first.tree, 'com.example.dms', 'CLCRED', 'bm9uY2Ux');
      await first.tree.replace('./DMAcc/north/AppAuth/CLCRED/AAuthSecret', { data: 'rotated-by-server' }, DMS);
      await first.store.close();

      const second = await levelTree(dir);
      const before = second.tree.snapshot();
      await installStandardObjects(second.tree, config());
      expect(second.tree.snapshot()).toEqual(before); // nothing rewritten, VerNo/TStamp untouched

      const changed = config();
      changed.devDetail.fwV = '1.1.0';
      await installStandardObjects(second.tree, changed);
      expect((await second.tree.get('./DevDetail/FwV', DMS)).data).toBe('1.1.0');
      const [north] = await readAccounts(second.tree);
      expect(north?.client?.nonce).toBe('bm9uY2Ux');
      expect(north?.client?.secret).toBe('rotated-by-server');
      await second.store.close();
    });

    it('adds an account configured later and lets its server read DMAcc', async () => {
      const first = await levelTree(dir);
      const cfg = config();
      const later = cfg.accounts.pop()!;
      await installStandardObjects(first.tree, cfg);
      expect(await statusOfCall(first.tree.get('./DMAcc', OTHER))).toBe(425);
      cfg.accounts.push(later);
      await installStandardObjects(first.tree, cfg);
      expect((await first.tree.get('./DMAcc', OTHER)).data).toBe('north/other');
      expect(await first.tree.getProperty('./DMAcc', 'ACL', LOCAL)).toBe('Get=com.example.dms+srv.other&Add=com.example.dms+srv.other');
      await first.store.close();
    });
  });
});
