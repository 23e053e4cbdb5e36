/**
 * GwMO transparent mode (TMode-001, notes §2.1): the server has no route to the device's
 * notification listener; it hands a Package 0, built with the device's own credentials, to the
 * gateway in a DM session (EDTrigger), the gateway pushes the bytes untouched, and the device
 * validates them and opens its own session with the server.
 */
import { afterEach, describe, expect, it } from 'vitest';
import { deviceConfigSchema } from '../../src/device/config.ts';
import { SimDevice } from '../../src/device/device.ts';
import { memoryLogger } from '../support/fixtures.ts';
import { addGateway, operate, startDeployment, until, SERVER_ID, type Deployment } from '../support/gateways.ts';

let d: Deployment | undefined;
afterEach(async () => {
  await d?.close();
  d = undefined;
});

const DEV = 'urn:dev:mac:0024e8000099';

async function transparentDevice(dep: Deployment): Promise<{ dev: SimDevice; lines: string[] }> {
  const l = memoryLogger(DEV);
  const dev = await SimDevice.create({
    config: deviceConfigSchema.parse({
      deviceId: DEV,
      server: {
        serverId: SERVER_ID,
        url: dep.server.dmUrl,
        username: 'tdev',
        secret: 'tdev-secret',
        authType: 'md5',
        serverSecret: dep.server.config.serverSecret,
        serverAuthType: 'md5',
      },
      // The device never tells the server where it listens: only its gateway knows (no route from the server).
      notify: { listen: '127.0.0.1:0', advertise: false },
      nodes: [
        { uri: './Vendor', format: 'node', acl: `Get=*&Replace=${SERVER_ID}` },
        { uri: './Vendor/Mode', value: 'eco' },
      ],
    }),
    logger: l.logger,
  });
  await dev.start();
  dep.devices.push(dev);
  return { dev, lines: l.lines };
}

/** The transparent-mode device and a gateway that knows its notification address. */
async function transparentBehindGateway(dep: Deployment): Promise<{ dev: SimDevice; lines: string[] }> {
  const t = await transparentDevice(dep);
  await addGateway(dep, 'gw-t', { kind: 'server', server: dep.server }, [
    { deviceId: DEV, mode: 'transparent', notify: t.dev.notifyUrl, serverId: SERVER_ID },
  ]);
  return t;
}

describe('transparent mode', () => {
  it('a device the server cannot reach is triggered through its gateway and completes its own session', async () => {
    d = await startDeployment([
      { deviceId: 'gw-t', username: 'gw-t-user', secret: 'gw-t-secret' },
      { deviceId: DEV, username: 'tdev', secret: 'tdev-secret' },
    ]);
    const { dev, lines } = await transparentBehindGateway(d);
    // The device has talked to the server before, yet the server has no address for it.
    expect((await dev.connect()).ok).toBe(true);
    expect((await d.server.device(DEV))?.notifyUrl).toBeUndefined();
    await until(async () => (await d!.server.route(DEV))?.mode === 'transparent', 'the server to learn the transparent route');

    const next = dev.nextSession();
    const get = await operate(d.server, DEV, { cmd: 'Get', uri: './Vendor/Mode' });
    expect(get.status, JSON.stringify(get)).toBe(200);
    expect(get.results).toEqual([{ uri: './Vendor/Mode', format: 'chr', data: 'eco' }]);
    // The session was the device's own, server-initiated, with the server directly.
    const s = await next;
    expect(s).toMatchObject({ ok: true, initiator: 'server' });
    expect(lines.some((l) => l.includes(`valid Package 0 from ${SERVER_ID}`))).toBe(true);
    expect(d.logs['gw-t']!.some((l) => l.includes(`Package 0 forwarded to ${DEV}`))).toBe(true);
    expect(d.logs.server!.some((l) => l.includes(`handed to gateway gw-t (transparent mode)`))).toBe(true);
  });

  it('a forged notification relayed by the gateway is ignored by the device', async () => {
    d = await startDeployment([
      { deviceId: 'gw-t', username: 'gw-t-user', secret: 'gw-t-secret' },
      { deviceId: DEV, username: 'tdev', secret: 'tdev-secret' },
    ]);
    const { dev, lines } = await transparentBehindGateway(d);
    // A Package 0 that the server did not make (garbage digest), delivered through EDTrigger by the server's own session.
    const forged = Buffer.concat([Buffer.alloc(16, 7), Buffer.from('02d80000001a2b', 'hex'), Buffer.from([SERVER_ID.length]), Buffer.from(SERVER_ID)]);
    const r = await operate(d.server, 'gw-t', {
      cmd: 'Sequence',
      commands: [
        { cmd: 'Add', uri: './GwMO/EDTrigger/f1', format: 'node' },
        { cmd: 'Add', uri: './GwMO/EDTrigger/f1/DeviceID', value: DEV },
        { cmd: 'Add', uri: './GwMO/EDTrigger/f1/Pkg0', value: forged.toString('base64'), format: 'b64' },
        { cmd: 'Exec', uri: './GwMO/EDTrigger/f1/Operations/Trigger' },
      ],
    });
    expect(r.status, JSON.stringify(r)).toBe(200);
    expect(r.statuses.map((s: { status: number }) => s.status)).toEqual([200, 200, 200, 200, 200]);
    await until(() => dev.ignoredNotifications === 1, 'the device to ignore the forged notification');
    expect(lines.some((l) => l.includes('digest does not verify'))).toBe(true);
    expect(dev.sessions).toHaveLength(0);
    // Trigger state: delivered (the gateway cannot judge the digest; the device does).
    const st = await operate(d.server, 'gw-t', { cmd: 'Get', uri: './GwMO/EDTrigger/f1/State' });
    expect(st.results[0].data).toBe('20');
  });

  it('refuses a trigger for a device that is not in transparent mode (406) or unknown (404)', async () => {
    d = await startDeployment([{ deviceId: 'gw-t', username: 'gw-t-user', secret: 'gw-t-secret' }]);
    await addGateway(d, 'gw-t', { kind: 'server', server: d.server }, [
      { deviceId: 'IMEI:1', mode: 'proxy', username: 'u', secret: 's' },
    ]);
    const seq = (id: string, dev: string) => ({
      cmd: 'Sequence',
      commands: [
        { cmd: 'Add', uri: `./GwMO/EDTrigger/${id}`, format: 'node' },
        { cmd: 'Add', uri: `./GwMO/EDTrigger/${id}/DeviceID`, value: dev },
        { cmd: 'Add', uri: `./GwMO/EDTrigger/${id}/Pkg0`, value: 'AAAA', format: 'b64' },
        { cmd: 'Exec', uri: `./GwMO/EDTrigger/${id}/Operations/Trigger` },
      ],
    });
    const proxy = await operate(d.server, 'gw-t', seq('a', 'IMEI:1'));
    expect(proxy.statuses.at(-1).status).toBe(406);
    const unknown = await operate(d.server, 'gw-t', seq('b', 'IMEI:404'));
    expect(unknown.statuses.at(-1).status).toBe(404);
  });
});

describe('route learning is for gateways only', () => {
  it('an ordinary client cannot redirect another device by sending inventory alerts', async () => {
    d = await startDeployment([
      { deviceId: 'gw-t', username: 'gw-t-user', secret: 'gw-t-secret' },
      { deviceId: DEV, username: 'tdev', secret: 'tdev-secret' },
    ]);
    const { dev } = await transparentDevice(d);
    await addGateway(d, 'gw-t', { kind: 'server', server: d.server }, [{ deviceId: 'IMEI:victim', mode: 'proxy', username: 'v', secret: 'v' }]);
    await until(async () => (await d!.server.route('IMEI:victim'))?.via === 'gw-t', 'the real route');
    // DEV is a plain client: it claims the victim is behind it.
    await dev.sendGenericAlert([{ source: { locURI: './GwMO/DeviceInventory/Records/x1' }, meta: { type: 'urn:oma:at:gwmo:1.1:DeviceAttached', format: 'chr' }, data: 'IMEI:victim' }]);
    expect(await d.server.route('IMEI:victim')).toMatchObject({ via: 'gw-t', prefix: './GwMO/Devices/d0001' });
  });
});
