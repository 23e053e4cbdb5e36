/**
 * Bootstrap of a proxy-mode device to the server (HLF-006, PMode-002, notes §2.5) and the mode
 * switch that follows (MOO-001): the server adds a DM account for itself on the device through the
 * gateway's mount, switches the association to transparent mode with a Replace of the inventory
 * record's Mode, and from then on manages the device directly, triggered through the gateway.
 */
import { afterEach, describe, expect, it } from 'vitest';
import { readAccounts } from '../../src/tree/standard.ts';
import { addDevice, addGateway, operate, proxyAssociation, startDeployment, until, SERVER_ID, type Deployment } from '../support/gateways.ts';

let d: Deployment | undefined;
afterEach(async () => {
  await d?.close();
  d = undefined;
});

describe('bootstrap to the server and mode switch', () => {
  it('a proxy-mode device is bootstrapped to the server through the gateway and then managed transparently', async () => {
    const DEV = 'IMEI:700000000000055';
    d = await startDeployment([{ deviceId: 'gw-1', username: 'gw-1-user', secret: 'gw-1-secret' }]);
    const gw = await addGateway(d, 'gw-1', { kind: 'server', server: d.server }, [proxyAssociation(DEV)]);
    const dev = await addDevice(d, DEV, { kind: 'gateway', gateway: gw });
    await dev.connect();
    await until(async () => (await d!.server.route(DEV))?.mode === 'proxy', 'the proxy route');

    // 1. The server creates the device's account on its side and its DMAcc on the device (through the mount).
    d.server.addAccount({ deviceId: DEV, username: 'direct-user', secret: 'direct-secret', authType: 'syncml:auth-md5', gateway: false, clientNonce: '', serverNonce: '' });
    const acc = './DMAcc/operator';
    const leaf = (uri: string, value: string) => ({ cmd: 'Add', uri: `${acc}/${uri}`, value });
    const boot = await operate(d.server, DEV, {
      cmd: 'Atomic',
      commands: [
        { cmd: 'Add', uri: acc, format: 'node' },
        leaf('AppID', 'w7'),
        leaf('ServerID', SERVER_ID),
        leaf('AppAddr/1/Addr', d.server.dmUrl),
        leaf('AppAddr/1/AddrType', 'URI'),
        leaf('AppAuth/CL/AAuthLevel', 'CLCRED'),
        leaf('AppAuth/CL/AAuthType', 'DIGEST'),
        leaf('AppAuth/CL/AAuthName', 'direct-user'),
        leaf('AppAuth/CL/AAuthSecret', 'direct-secret'),
        leaf('AppAuth/SRV/AAuthLevel', 'SRVCRED'),
        leaf('AppAuth/SRV/AAuthType', 'DIGEST'),
        leaf('AppAuth/SRV/AAuthName', SERVER_ID),
        leaf('AppAuth/SRV/AAuthSecret', d.server.config.serverSecret),
      ],
    });
    expect(boot.status, JSON.stringify(boot)).toBe(200);
    expect((await readAccounts(dev.tree)).map((a) => a.serverId).sort()).toEqual([SERVER_ID, gw.config.serverId].sort());

    // 2. Mode switch: Replace the record's Mode with 0 (transparent).
    const sw = await operate(d.server, 'gw-1', { cmd: 'Replace', uri: './GwMO/DeviceInventory/Records/d0001/Mode', value: '0', format: 'int' });
    expect(sw.status).toBe(200);
    expect(gw.associations.get(DEV)?.mode).toBe('transparent');
    await until(async () => (await d!.server.route(DEV))?.mode === 'transparent', 'the server to see the new mode');

    // 3. From now on the server manages the device directly: Package 0 via the gateway, session with the server.
    const next = dev.nextSession();
    const get = await operate(d.server, DEV, { cmd: 'Get', uri: './Vendor/Name' });
    expect(get.status, JSON.stringify(get)).toBe(200);
    expect(get.results[0].data).toBe(`name-of-${DEV}`);
    const s = await next;
    expect(s).toMatchObject({ ok: true, initiator: 'server' });
    expect(d.logs.server!.some((l) => l.includes(`session ${s.sessionId} opened by ${DEV}`))).toBe(true);
    expect(d.logs['gw-1']!.some((l) => l.includes(`Package 0 forwarded to ${DEV}`))).toBe(true);
  });

  it('refuses adaptation mode for a child gateway (MOO-002) and keeps its mode', async () => {
    d = await startDeployment([{ deviceId: 'gw-1', username: 'gw-1-user', secret: 'gw-1-secret' }]);
    const gw = await addGateway(d, 'gw-1', { kind: 'server', server: d.server }, [proxyAssociation('gw-child', { gateway: true })]);
    const r = await operate(d.server, 'gw-1', { cmd: 'Replace', uri: './GwMO/DeviceInventory/Records/g0001/Mode', value: '2', format: 'int' });
    expect(r.status).toBe(403);
    const bad = await operate(d.server, 'gw-1', { cmd: 'Replace', uri: './GwMO/DeviceInventory/Records/g0001/Mode', value: '7', format: 'int' });
    expect(bad.status).toBe(400);
    expect(gw.associations.get('gw-child')?.mode).toBe('proxy');
    const mode = await operate(d.server, 'gw-1', { cmd: 'Get', uri: './GwMO/DeviceInventory/Records/g0001/Mode' });
    expect(mode.results[0].data).toBe('1');
    expect(d.logs['gw-1']!.some((l) => l.includes('mode 2 refused for gw-child'))).toBe(true);
  });
});

describe('mode switches are commands of their own', () => {
  it('refuses a Mode switch inside an Atomic (405) and changes nothing', async () => {
    d = await startDeployment([{ deviceId: 'gw-1', username: 'gw-1-user', secret: 'gw-1-secret' }]);
    const gw = await addGateway(d, 'gw-1', { kind: 'server', server: d.server }, [proxyAssociation('IMEI:700000000000066')]);
    const r = await operate(d.server, 'gw-1', {
      cmd: 'Atomic',
      commands: [{ cmd: 'Replace', uri: './GwMO/DeviceInventory/Records/d0001/Mode', value: '0', format: 'int' }],
    });
    expect(r.status).toBe(405);
    expect(r.statuses.map((s: { status: number }) => s.status)).toEqual([405, 215]);
    expect(gw.associations.get('IMEI:700000000000066')?.mode).toBe('proxy');
  });
});
