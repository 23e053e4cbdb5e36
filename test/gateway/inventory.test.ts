/**
 * Device inventory on the gateway (GwMO-DI, notes §1.3): the server reads records and the summary
 * with plain DM Gets, switches the new-device alert off and on, and still finds devices by reading
 * the inventory when alerts are off.
 */
import { afterEach, describe, expect, it } from 'vitest';
import { addDevice, addGateway, operate, proxyAssociation, startDeployment, until, type Deployment } from '../support/gateways.ts';

let d: Deployment | undefined;
afterEach(async () => {
  await d?.close();
  d = undefined;
});

const byUri = (results: { uri: string; data?: string }[]): Record<string, string | undefined> => Object.fromEntries(results.map((r) => [r.uri, r.data]));

describe('device inventory', () => {
  it('answers an inventory query with records (identity cached from the device) and the summary', async () => {
    d = await startDeployment([{ deviceId: 'gw-i', username: 'gw-i-user', secret: 'gw-i-secret' }]);
    const gw = await addGateway(d, 'gw-i', { kind: 'server', server: d.server }, [
      proxyAssociation('IMEI:800000000000001'),
      proxyAssociation('IMEI:800000000000002'),
      proxyAssociation('gw-child', { gateway: true }),
    ]);
    await (await addDevice(d, 'IMEI:800000000000001', { kind: 'gateway', gateway: gw })).connect();
    await until(async () => gw.associations.get('IMEI:800000000000001')?.status === 'attached', 'the device to be attached');
    const inv = await operate(d.server, 'gw-i', { cmd: 'Get', uri: './GwMO/DeviceInventory?list=StructData' });
    expect(inv.status).toBe(200);
    const v = byUri(inv.results);
    expect(v['./GwMO/DeviceInventory/Records/d0001/DeviceID']).toBe('IMEI:800000000000001');
    expect(v['./GwMO/DeviceInventory/Records/d0001/Status']).toBe('1');
    expect(v['./GwMO/DeviceInventory/Records/d0001/Mod']).toBe('SimDevice');
    expect(v['./GwMO/DeviceInventory/Records/d0002/Status']).toBe('3'); // never seen: pending
    expect(v['./GwMO/DeviceInventory/Records/g0003/ComponentType']).toBe('1');
    expect(v['./GwMO/DeviceInventory/Summary/Total']).toBe('3');
    expect(v['./GwMO/DeviceInventory/Summary/Attached']).toBe('1');
    expect(v['./GwMO/DeviceInventory/Summary/ChildGateways']).toBe('1');
  });

  it('with new-device alerts switched off, a new device is not announced, and the server finds it by reading the inventory', async () => {
    d = await startDeployment([{ deviceId: 'gw-i', username: 'gw-i-user', secret: 'gw-i-secret' }]);
    const gw = await addGateway(d, 'gw-i', { kind: 'server', server: d.server });
    const off = await operate(d.server, 'gw-i', { cmd: 'Replace', uri: './GwMO/Config/NewDeviceAlert', value: 'false', format: 'bool' });
    expect(off.status).toBe(200);
    const NEW = 'IMEI:800000000000009';
    const assoc = await operate(d.server, 'gw-i', {
      cmd: 'Exec',
      uri: './GwMO/DeviceInventory/Operations/Associate',
      value: `DeviceID=${NEW}&Mode=proxy&AAuthName=${NEW}-user&AAuthSecret=${NEW}-secret`,
    });
    expect(assoc.status).toBe(200);
    await new Promise((r) => setTimeout(r, 300));
    expect(await d.server.route(NEW)).toBeUndefined();
    expect(d.logs.server!.some((l) => l.includes('DeviceAttached') && l.includes('gw-i'))).toBe(false);
    // The server reads the inventory and learns the route from it.
    const inv = await operate(d.server, 'gw-i', { cmd: 'Get', uri: './GwMO/DeviceInventory/Records?list=StructData' });
    expect(inv.status).toBe(200);
    await until(async () => (await d!.server.route(NEW))?.mode === 'proxy', 'the route from the inventory read');
    const dev = await addDevice(d, NEW, { kind: 'gateway', gateway: gw });
    await dev.connect();
    const get = await operate(d.server, NEW, { cmd: 'Get', uri: './Vendor/Level' });
    expect(get.results[0].data).toBe('3');
    // Switched on again, the next new device is announced.
    await operate(d.server, 'gw-i', { cmd: 'Replace', uri: './GwMO/Config/NewDeviceAlert', value: 'true', format: 'bool' });
    await gw.associate({ deviceId: 'IMEI:800000000000010', mode: 'proxy', gateway: false, username: 'u', secret: 's', authType: 'syncml:auth-md5' });
    await until(async () => (await d!.server.route('IMEI:800000000000010')) !== undefined, 'the alert-announced route');
  });
});

describe('device groups', () => {
  it('the server creates, changes, reads and deletes a group of devices and child gateways with plain DM', async () => {
    d = await startDeployment([{ deviceId: 'gw-i', username: 'gw-i-user', secret: 'gw-i-secret' }]);
    const gw = await addGateway(d, 'gw-i', { kind: 'server', server: d.server }, [proxyAssociation('IMEI:800000000000021'), proxyAssociation('gw-floor2', { gateway: true })]);
    const g = './GwMO/Groups/floor2-lights';
    const make = await operate(d.server, 'gw-i', {
      cmd: 'Atomic',
      commands: [
        { cmd: 'Add', uri: g, format: 'node' },
        { cmd: 'Add', uri: `${g}/Description`, value: 'all lights on floor 2' },
        { cmd: 'Add', uri: `${g}/Members/m1/DeviceID`, value: 'IMEI:800000000000021' },
        { cmd: 'Add', uri: `${g}/Members/m2/DeviceID`, value: 'gw-floor2' },
        { cmd: 'Add', uri: `${g}/Members/m2/SubGroup`, value: 'lights' },
      ],
    });
    expect(make.status, JSON.stringify(make)).toBe(200);
    expect((await operate(d.server, 'gw-i', { cmd: 'Replace', uri: `${g}/Description`, value: 'floor 2 lights' })).status).toBe(200);
    const read = await operate(d.server, 'gw-i', { cmd: 'Get', uri: `${g}?list=StructData` });
    expect(byUri(read.results)).toMatchObject({
      [`${g}/Description`]: 'floor 2 lights',
      [`${g}/Members/m1/DeviceID`]: 'IMEI:800000000000021',
      [`${g}/Members/m2/DeviceID`]: 'gw-floor2',
      [`${g}/Members/m2/SubGroup`]: 'lights',
    });
    expect((await gw.tree.get('./GwMO/Groups', {})).type).toBe('urn:oma:mo:oma-gwmo-group:1.1');
    expect((await operate(d.server, 'gw-i', { cmd: 'Delete', uri: `${g}/Members/m1` })).status).toBe(200);
    expect((await operate(d.server, 'gw-i', { cmd: 'Get', uri: `${g}/Members` })).results[0].data).toBe('m2');
  });
});
