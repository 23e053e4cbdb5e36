/**
 * GwMO proxy mode end to end (PMode-001..005): the server names a device behind a gateway, the
 * server finds the route (learnt from the gateway's DeviceAttached alert), the gateway runs its own
 * session with the device, and the device's results come back under the device's own URIs.
 */
import { afterEach, describe, expect, it } from 'vitest';
import { addDevice, addGateway, operate, proxyAssociation, startDeployment, until, type Deployment } from '../support/gateways.ts';

let d: Deployment | undefined;
afterEach(async () => {
  await d?.close();
  d = undefined;
});

describe('proxy mode through one gateway', () => {
  it('the server reads and writes a proxy-mode device through the gateway', async () => {
    d = await startDeployment([{ deviceId: 'gw-1', username: 'gw-1-user', secret: 'gw-1-secret' }]);
    const gw = await addGateway(d, 'gw-1', { kind: 'server', server: d.server }, [proxyAssociation('IMEI:700000000000001')]);
    const dev = await addDevice(d, 'IMEI:700000000000001', { kind: 'gateway', gateway: gw });
    await dev.connect(); // the device registers with its gateway (and reports its notification address)
    await until(async () => (await d!.server.route('IMEI:700000000000001'))?.mode === 'proxy', 'the server to learn the route');
    const route = await d.server.route('IMEI:700000000000001');
    expect(route).toMatchObject({ via: 'gw-1', prefix: './GwMO/Devices/d0001', recordUri: './GwMO/DeviceInventory/Records/d0001' });

    const get = await operate(d.server, 'IMEI:700000000000001', { cmd: 'Get', uri: './Vendor/Name' });
    expect(get.status, JSON.stringify(get) + d.logs['gw-1']!.join('\n')).toBe(200);
    expect(get.results).toEqual([{ uri: './Vendor/Name', format: 'chr', data: 'name-of-IMEI:700000000000001' }]);

    const rep = await operate(d.server, 'IMEI:700000000000001', { cmd: 'Replace', uri: './Vendor/Level', value: '7', format: 'int' });
    expect(rep.status).toBe(200);
    expect((await dev.tree.get('./Vendor/Level', {})).data).toBe('7');
  });
});
