/**
 * The gateway bootstraps a factory-fresh device to itself (HLF-005, PMode-002): on the server's
 * Exec, it makes credentials, associates the device and sends it a DM bootstrap message; the
 * device verifies it with its PIN, installs the account and calls the gateway, and the server
 * manages it through the gateway. A wrong PIN changes nothing.
 */
import { afterEach, describe, expect, it } from 'vitest';
import { secretVerifier } from '../../src/codec/auth.ts';
import { deviceConfigSchema } from '../../src/device/config.ts';
import { SimDevice } from '../../src/device/device.ts';
import { readAccounts } from '../../src/tree/standard.ts';
import { memoryLogger } from '../support/fixtures.ts';
import { addGateway, operate, startDeployment, until, type Deployment } from '../support/gateways.ts';

let d: Deployment | undefined;
afterEach(async () => {
  await d?.close();
  d = undefined;
});

async function freshDevice(dep: Deployment, id: string): Promise<{ dev: SimDevice; lines: string[] }> {
  const l = memoryLogger(id);
  const dev = await SimDevice.create({
    config: deviceConfigSchema.parse({
      deviceId: id,
      bootstrap: { pin: '482913' },
      nodes: [{ uri: './Vendor', format: 'node', acl: 'Get=*' }, { uri: './Vendor/Serial', value: 'SN-77' }],
    }),
    logger: l.logger,
  });
  await dev.start();
  dep.devices.push(dev);
  return { dev, lines: l.lines };
}

describe('gateway bootstraps a device to itself', () => {
  it('a factory-fresh device becomes manageable through the gateway', async () => {
    const ID = 'IMEI:700000000000200';
    d = await startDeployment([{ deviceId: 'gw-b', username: 'gw-b-user', secret: 'gw-b-secret' }]);
    const gw = await addGateway(d, 'gw-b', { kind: 'server', server: d.server });
    const { dev, lines } = await freshDevice(d, ID);
    expect(await readAccounts(dev.tree)).toEqual([]);
    const first = dev.nextSession();
    const r = await operate(d.server, 'gw-b', { cmd: 'Exec', uri: './GwMO/DeviceInventory/Operations/Bootstrap', value: `DeviceID=${ID}&Address=${dev.bootstrapUrl}&PIN=482913` });
    expect(r.status, JSON.stringify(r)).toBe(200);
    expect((await readAccounts(dev.tree)).map((a) => a.serverId)).toEqual([gw.config.serverId]);
    expect((await first).ok).toBe(true); // it called its new server by itself
    expect(lines.some((l) => l.includes(`bootstrapped by ${gw.config.serverId}`))).toBe(true);
    await until(async () => (await d!.server.route(ID))?.mode === 'proxy', 'the server to learn the route');
    const get = await operate(d.server, ID, { cmd: 'Get', uri: './Vendor/Serial' });
    expect(get.results).toEqual([{ uri: './Vendor/Serial', format: 'chr', data: 'SN-77' }]);
  });

  it('a bootstrap with the wrong PIN is refused (401) and changes nothing on the device', async () => {
    const ID = 'IMEI:700000000000201';
    d = await startDeployment([{ deviceId: 'gw-b', username: 'gw-b-user', secret: 'gw-b-secret' }]);
    const gw = await addGateway(d, 'gw-b', { kind: 'server', server: d.server });
    const { dev, lines } = await freshDevice(d, ID);
    const before = new Map(dev.tree.snapshot());
    const r = await operate(d.server, 'gw-b', { cmd: 'Exec', uri: './GwMO/DeviceInventory/Operations/Bootstrap', value: `DeviceID=${ID}&Address=${dev.bootstrapUrl}&PIN=000000` });
    expect(r.status).toBe(401);
    expect(new Map(dev.tree.snapshot())).toEqual(before);
    expect(gw.associations.get(ID)).toBeUndefined(); // the provisional association is withdrawn
    expect(lines.some((l) => l.includes('bootstrap refused') && l.includes('MAC does not verify'))).toBe(true);
    const bad = await operate(d.server, 'gw-b', { cmd: 'Exec', uri: './GwMO/DeviceInventory/Operations/Bootstrap', value: `DeviceID=${ID}` });
    expect(bad.status).toBe(400);
  });
});

describe('a failed bootstrap of a device the gateway already manages', () => {
  it('keeps the existing association (credentials, mode) instead of dropping it', async () => {
    const ID = 'IMEI:700000000000202';
    d = await startDeployment([{ deviceId: 'gw-b', username: 'gw-b-user', secret: 'gw-b-secret' }]);
    const gw = await addGateway(d, 'gw-b', { kind: 'server', server: d.server }, [{ deviceId: ID, mode: 'proxy', username: 'orig', secret: 'orig-pw' }]);
    const { dev } = await freshDevice(d, ID);
    const before = gw.associations.get(ID)!;
    const r = await operate(d.server, 'gw-b', { cmd: 'Exec', uri: './GwMO/DeviceInventory/Operations/Bootstrap', value: `DeviceID=${ID}&Address=${dev.bootstrapUrl}&PIN=999999` });
    expect(r.status).toBe(401);
    // The same credentials (kept as their verifier, never as the password itself).
    const verifier = secretVerifier('orig', 'orig-pw', 'syncml:auth-md5');
    expect(before.secret).toBe(verifier);
    expect(gw.associations.get(ID)).toMatchObject({ key: before.key, username: 'orig', secret: verifier, mode: 'proxy' });
    expect(gw.south.account(ID)).toMatchObject({ username: 'orig', secret: verifier });
  });
});
