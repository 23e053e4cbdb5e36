/**
 * A standard OMA DM 1.2 client (test/support/standard-client.ts: Basic towards its server, MD5
 * required from its server, raw SyncML, libwbxml for WBXML) placed behind a gateway in proxy mode
 * is managed by the DM server through that gateway.
 */
import { afterEach, describe, expect, it } from 'vitest';
import { StandardClient } from '../support/standard-client.ts';
import { addGateway, operate, startDeployment, until, type Deployment } from '../support/gateways.ts';

let d: Deployment | undefined;
afterEach(async () => {
  await d?.close();
  d = undefined;
});

describe.each(['xml', 'wbxml'] as const)('a standard DM 1.2 client behind a gateway (%s)', (encoding) => {
  it('is managed by the server through the gateway (Get and Replace)', async () => {
    const DEV = 'IMEI:493005100592801';
    d = await startDeployment([{ deviceId: 'gw-s', username: 'gw-s-user', secret: 'gw-s-secret' }]);
    const gw = await addGateway(d, 'gw-s', { kind: 'server', server: d.server }, [
      { deviceId: DEV, mode: 'proxy', username: 'std', secret: 'std-pw', authType: 'basic' },
    ]);
    const client = new StandardClient({
      url: gw.southUrl,
      deviceId: DEV,
      user: 'std',
      password: 'std-pw',
      serverId: gw.config.serverId,
      serverSecret: gw.config.serverSecret,
      values: { './DevInfo/Mod': 'RefClient', './Vendor/Setpoint': '19' },
    });
    await until(async () => (await d!.server.route(DEV))?.mode === 'proxy', 'the route');

    // The client has no Package 0 listener: it is polled. Queue, then let it call in while the gateway waits.
    const run = async (body: Record<string, unknown>, session: string) => {
      const q = await operate(d!.server, DEV, { ...body, wait: false });
      await until(async () => (await gw.south.queue.pending(DEV)).length > 0, 'the gateway to queue it for the device');
      const s = await client.session(encoding, session);
      expect(s.serverCredChecks.every(Boolean)).toBe(true);
      const url = `${d!.server.url}/api/devices/${encodeURIComponent(DEV)}/commands/${q.id}?wait=10`;
      return (await (await fetch(url)).json()) as any;
    };
    const get = await run({ cmd: 'Get', uri: './DevInfo/Mod' }, '11');
    expect(get).toMatchObject({ state: 'done', status: 200, results: [{ uri: './DevInfo/Mod', data: 'RefClient' }] });
    const rep = await run({ cmd: 'Replace', uri: './Vendor/Setpoint', value: '22' }, '12');
    expect(rep).toMatchObject({ state: 'done', status: 200 });
    expect(client.cfg.values['./Vendor/Setpoint']).toBe('22');
  });
});
