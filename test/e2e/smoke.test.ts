import { afterEach, describe, expect, it } from 'vitest';
import { api, startBed, type TestBed } from '../support/fixtures.ts';

let bed: TestBed | undefined;
afterEach(async () => {
  await bed?.close();
  bed = undefined;
});

describe('smoke', () => {
  it('gets a leaf through a server-initiated session', async () => {
    bed = await startBed([{ deviceId: 'IMEI:000000000000001' }]);
    const [dev] = bed.devices;
    // First a client-initiated session so the server learns the notify URL.
    const first = await dev!.connect();
    expect(first.ok, first.reason).toBe(true);
    const r = await api(bed.server, 'POST', `/api/devices/${encodeURIComponent('IMEI:000000000000001')}/commands`, { cmd: 'Get', uri: './Vendor/Temp', timeout: 10 });
    expect(r.status, JSON.stringify(r.json) + bed.serverLog.join('\n')).toBe(200);
    expect(r.json.status).toBe(200);
    expect(r.json.results[0].data).toBe('21.5');
  });
});
