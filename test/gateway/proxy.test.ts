/**
 * GwMO proxy mode end to end (PMode-001..005): the server names a device behind a gateway, the
 * server finds the route (learnt from the gateway's DeviceAttached alert), the gateway runs its own
 * session with the device, and the device's results come back under the device's own URIs.
 */
import { afterEach, describe, expect, it } from 'vitest';
import { readAccounts } from '../../src/tree/standard.ts';
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

describe('hierarchy', () => {
  it('the server manages a device through a chain of three gateways, and each gateway through its parents', async () => {
    d = await startDeployment([{ deviceId: 'gw-a', username: 'gw-a-user', secret: 'gw-a-secret' }]);
    const a = await addGateway(d, 'gw-a', { kind: 'server', server: d.server }, [proxyAssociation('gw-b', { gateway: true })]);
    const b = await addGateway(d, 'gw-b', { kind: 'gateway', gateway: a }, [proxyAssociation('gw-c', { gateway: true })]);
    const c = await addGateway(d, 'gw-c', { kind: 'gateway', gateway: b }, [proxyAssociation('IMEI:700000000000009')]);
    const dev = await addDevice(d, 'IMEI:700000000000009', { kind: 'gateway', gateway: c }, { encoding: 'wbxml' });
    await dev.connect();
    await until(async () => (await d!.server.route('IMEI:700000000000009'))?.mode === 'proxy', 'the route to the deep device');
    expect(await d.server.route('IMEI:700000000000009')).toMatchObject({
      via: 'gw-a',
      prefix: './GwMO/Devices/g0001/GwMO/Devices/g0001/GwMO/Devices/d0001',
    });
    expect(await d.server.route('gw-c')).toMatchObject({ via: 'gw-a', prefix: './GwMO/Devices/g0001/GwMO/Devices/g0001' });

    const get = await operate(d.server, 'IMEI:700000000000009', { cmd: 'Get', uri: './Vendor?list=StructData' });
    expect(get.status, JSON.stringify(get)).toBe(200);
    expect(get.results.map((r: { uri: string }) => r.uri)).toEqual(['./Vendor', './Vendor/Name', './Vendor/Level']);
    const rep = await operate(d.server, 'IMEI:700000000000009', { cmd: 'Replace', uri: './Vendor/Name', value: 'deep' });
    expect(rep.status).toBe(200);
    expect((await dev.tree.get('./Vendor/Name', {})).data).toBe('deep');

    // A gateway managed through other gateways (HLF-009): read gw-c's own DevInfo through gw-a and gw-b.
    const gc = await operate(d.server, 'gw-c', { cmd: 'Get', uri: './GwMO/Config/GatewayID' });
    expect(gc.results).toEqual([{ uri: './GwMO/Config/GatewayID', format: 'chr', data: 'gw-c' }]);
  });
});

describe('authorization on the gateway', () => {
  it('refuses a command the mount ACL does not allow (425) and never sends it to the device', async () => {
    d = await startDeployment([{ deviceId: 'gw-1', username: 'gw-1-user', secret: 'gw-1-secret' }]);
    const gw = await addGateway(d, 'gw-1', { kind: 'server', server: d.server }, [proxyAssociation('IMEI:700000000000002')]);
    const dev = await addDevice(d, 'IMEI:700000000000002', { kind: 'gateway', gateway: gw });
    await dev.connect();
    await until(async () => (await d!.server.route('IMEI:700000000000002'))?.mode === 'proxy', 'the route');
    // The server restricts itself on this device to Get (PMode-004: ACL on the mount node, set by the server through DM).
    const acl = await operate(d.server, 'gw-1', { cmd: 'Replace', uri: './GwMO/Devices/d0001?prop=ACL', value: `Get=${d.server.config.serverId}` });
    expect(acl.status, JSON.stringify(acl)).toBe(200);
    const sessionsBefore = dev.sessions.length;
    const rep = await operate(d.server, 'IMEI:700000000000002', { cmd: 'Replace', uri: './Vendor/Level', value: '9', format: 'int' });
    expect(rep.status).toBe(425);
    expect((await dev.tree.get('./Vendor/Level', {})).data).toBe('3');
    expect(dev.sessions.length).toBe(sessionsBefore);
    expect(d.logs['gw-1']!.some((l) => l.includes('refused') && l.includes('lacks Replace'))).toBe(true);
    const get = await operate(d.server, 'IMEI:700000000000002', { cmd: 'Get', uri: './Vendor/Level' });
    expect(get.status).toBe(200);
  });
});

describe('store and forward for unreachable devices', () => {
  it('answers 202 when the device does not answer in time, and the result follows as a DeferredResult', async () => {
    d = await startDeployment([{ deviceId: 'gw-1', username: 'gw-1-user', secret: 'gw-1-secret' }]);
    const gw = await addGateway(d, 'gw-1', { kind: 'server', server: d.server }, [proxyAssociation('IMEI:700000000000003')], { proxyTimeout: 0.5 });
    const dev = await addDevice(d, 'IMEI:700000000000003', { kind: 'gateway', gateway: gw });
    await dev.connect();
    await until(async () => (await d!.server.route('IMEI:700000000000003'))?.mode === 'proxy', 'the route');
    await dev.stop(); // now unreachable: its Package 0 listener is gone
    d.devices.splice(d.devices.indexOf(dev), 1);
    const queued = await operate(d.server, 'IMEI:700000000000003', { cmd: 'Get', uri: './Vendor/Level', wait: false });
    const entryUrl = `${d.server.url}/api/devices/${encodeURIComponent('IMEI:700000000000003')}/commands/${queued.id}`;
    await until(async () => ((await (await fetch(entryUrl)).json()) as { state: string }).state === 'accepted', 'the gateway to accept it (202)');
    expect(d.logs['gw-1']!.some((l) => l.includes('still pending after 500 ms; answering 202'))).toBe(true);
    // The device comes back (same tree store) and calls its gateway: the result travels up.
    const back = await addDevice(d, 'IMEI:700000000000003', { kind: 'gateway', gateway: gw });
    await back.connect();
    await until(async () => ((await (await fetch(entryUrl)).json()) as { state: string }).state === 'done', 'the deferred result');
    const done = (await (await fetch(entryUrl)).json()) as any;
    expect(done).toMatchObject({ status: 200, results: [{ uri: './Vendor/Level', data: '3', format: 'int' }] });
  });
});

describe('provisioning', () => {
  it('a new device added by the server with its credentials becomes manageable (HLF-003, PMode-003)', async () => {
    d = await startDeployment([{ deviceId: 'gw-1', username: 'gw-1-user', secret: 'gw-1-secret' }]);
    const gw = await addGateway(d, 'gw-1', { kind: 'server', server: d.server });
    const NEW = 'IMEI:700000000000042';
    const assoc = await operate(d.server, 'gw-1', {
      cmd: 'Exec',
      uri: './GwMO/DeviceInventory/Operations/Associate',
      value: `DeviceID=${NEW}&Mode=proxy&AAuthName=${NEW}-user&AAuthSecret=${NEW}-secret&AAuthType=md5`,
    });
    expect(assoc.status, JSON.stringify(assoc)).toBe(200);
    await until(async () => (await d!.server.route(NEW))?.mode === 'proxy', 'the new device to be announced');
    // The device was never bootstrapped with this server; it only knows its gateway.
    const dev = await addDevice(d, NEW, { kind: 'gateway', gateway: gw });
    await dev.connect();
    const get = await operate(d.server, NEW, { cmd: 'Get', uri: './DevInfo/DevId' });
    expect(get.results).toEqual([{ uri: './DevInfo/DevId', format: 'chr', data: NEW }]);
    // A malformed provisioning request is refused with 400 and creates nothing.
    const bad = await operate(d.server, 'gw-1', { cmd: 'Exec', uri: './GwMO/DeviceInventory/Operations/Associate', value: 'Mode=proxy' });
    expect(bad.status).toBe(400);
    expect(gw.associations.all()).toHaveLength(1);
    // Removal: the device is forgotten and reported detached.
    const rm = await operate(d.server, 'gw-1', { cmd: 'Exec', uri: './GwMO/DeviceInventory/Operations/Remove', value: NEW });
    expect(rm.status).toBe(200);
    await until(async () => (await d!.server.route(NEW))?.attached === false, 'the removal to be reported');
  });
});

describe('nomadic devices', () => {
  it('a device that moves from gateway 1 to gateway 2 stays manageable; its pending commands follow it', async () => {
    const NOMAD = 'IMEI:700000000000077';
    d = await startDeployment([
      { deviceId: 'gw-1', username: 'gw-1-user', secret: 'gw-1-secret' },
      { deviceId: 'gw-2', username: 'gw-2-user', secret: 'gw-2-secret' },
    ]);
    const g1 = await addGateway(d, 'gw-1', { kind: 'server', server: d.server }, [proxyAssociation(NOMAD)]);
    const g2 = await addGateway(d, 'gw-2', { kind: 'server', server: d.server });
    // Its tree lets both gateways' servers manage it (ACLs name servers; §5.4).
    const vendorAcl = { nodes: [
      { uri: './Vendor', format: 'node', acl: 'Get=*&Replace=gw-1-south+gw-2-south' },
      { uri: './Vendor/Name', value: `name-of-${NOMAD}` },
    ] };
    const atG1 = await addDevice(d, NOMAD, { kind: 'gateway', gateway: g1 }, { bootstrapPin: '246810', ...vendorAcl });
    await atG1.connect();
    await until(async () => (await d!.server.route(NOMAD))?.via === 'gw-1' && (await d!.server.route(NOMAD))?.mode === 'proxy', 'route via gw-1');
    expect((await operate(d.server, NOMAD, { cmd: 'Get', uri: './Vendor/Name' })).status).toBe(200);

    // It leaves gw-1 (its listener goes away) while a command is queued for it.
    await atG1.stop();
    d.devices.splice(d.devices.indexOf(atG1), 1);
    const pending = await operate(d.server, NOMAD, { cmd: 'Replace', uri: './Vendor/Name', value: 'travelled', wait: false, notify: false });

    // It comes up on gw-2's network (same device, same tree, a new address). gw-2 was never its
    // gateway: the server has gw-2 bootstrap it (HLF-005), and management continues.
    const atG2 = await addDevice(d, NOMAD, { kind: 'gateway', gateway: g1 }, { bootstrapPin: '246810', ...vendorAcl });
    const boot = await operate(d.server, 'gw-2', {
      cmd: 'Exec',
      uri: './GwMO/DeviceInventory/Operations/Bootstrap',
      value: `DeviceID=${NOMAD}&Address=${atG2.bootstrapUrl}&PIN=246810`,
    });
    expect(boot.status, JSON.stringify(boot)).toBe(200);
    await until(async () => (await d!.server.route(NOMAD))?.via === 'gw-2', 'the route to follow the move');
    expect((await readAccounts(atG2.tree)).map((a) => a.serverId).sort()).toEqual([g1.config.serverId, g2.config.serverId].sort());
    const get = await operate(d.server, NOMAD, { cmd: 'Get', uri: './Vendor/Name' });
    expect(get.status).toBe(200);
    const entry = (await (await fetch(`${d.server.url}/api/devices/${encodeURIComponent(NOMAD)}/commands/${pending.id}`)).json()) as any;
    expect(entry).toMatchObject({ state: 'done', status: 200 });
    expect(get.results[0].data).toBe('travelled');
    expect(d.logs.server!.some((l) => l.includes(`${NOMAD} moved from gw-1`))).toBe(true);
  });
});

describe('one account and one authentication for a group of devices (HLF-004, SECACATE-002)', () => {
  it('commands for several devices behind a gateway travel in one authenticated session of the gateway', async () => {
    d = await startDeployment([{ deviceId: 'gw-1', username: 'gw-1-user', secret: 'gw-1-secret' }]);
    const ids = ['IMEI:700000000000101', 'IMEI:700000000000102', 'IMEI:700000000000103'];
    const gw = await addGateway(d, 'gw-1', { kind: 'server', server: d.server }, ids.map((id) => proxyAssociation(id)));
    for (const id of ids) await (await addDevice(d, id, { kind: 'gateway', gateway: gw })).connect();
    for (const id of ids) await until(async () => (await d!.server.route(id))?.mode === 'proxy', `route to ${id}`);
    // None of them has an account on the server: the gateway's account is the only one.
    for (const id of ids) expect(d.server.account(id)).toBeUndefined();
    const queued = [];
    for (const id of ids) queued.push(await operate(d.server, id, { cmd: 'Replace', uri: './Vendor/Level', value: '5', format: 'int', wait: false, notify: false }));
    const opened = () => d!.logs.server!.filter((l) => l.includes('opened by gw-1')).length;
    const before = opened();
    await d.server.notify('gw-1');
    for (const q of queued) {
      await until(async () => ((await (await fetch(`${d!.server.url}/api/devices/${encodeURIComponent(q.deviceId)}/commands/${q.id}`)).json()) as any).state === 'done', 'all three results');
    }
    expect(opened() - before).toBe(1);
    for (const dev of d.devices) expect((await dev.tree.get('./Vendor/Level', {})).data).toBe('5');
  });
});

describe('a device\'s own asynchronous answer through a gateway', () => {
  it('completes with the device\'s 202 and files its completion alert (with the Correlator) under the device', async () => {
    const ID = 'IMEI:700000000000303';
    d = await startDeployment([{ deviceId: 'gw-1', username: 'gw-1-user', secret: 'gw-1-secret' }]);
    const gw = await addGateway(d, 'gw-1', { kind: 'server', server: d.server }, [proxyAssociation(ID)]);
    const dev = await addDevice(d, ID, { kind: 'gateway', gateway: gw }, {
      nodes: [
        { uri: './Vendor', format: 'node', acl: `Get=*&Exec=${gw.config.serverId}` },
        { uri: './Vendor/Update', format: 'chr', value: '', exec: 'async' },
      ],
    });
    await dev.connect();
    await until(async () => (await d!.server.route(ID))?.mode === 'proxy', 'the route');
    const r = await operate(d.server, ID, { cmd: 'Exec', uri: './Vendor/Update', correlator: 'fw-42' });
    expect(r).toMatchObject({ state: 'done', status: 202 }); // the device's own 202, not a gateway deferral
    const alertsUrl = `${d.server.url}/api/devices/${encodeURIComponent(ID)}/alerts`;
    await until(async () => ((await (await fetch(alertsUrl)).json()) as { alerts: unknown[] }).alerts.length === 1, 'the completion alert');
    const { alerts } = (await (await fetch(alertsUrl)).json()) as { alerts: any[] };
    expect(alerts[0]).toMatchObject({ code: '1226', correlator: 'fw-42', items: [{ source: { locURI: './Vendor/Update' }, data: '200' }] });
  });
});
