/** Operator API edge cases: bad paths, bad bodies and unknown devices answer with clear errors. */
import { afterEach, describe, expect, it } from 'vitest';
import { startBed, type TestBed } from '../support/fixtures.ts';

let bed: TestBed | undefined;
afterEach(async () => {
  await bed?.close();
  bed = undefined;
});

describe('operator API errors', () => {
  it('answers 400 for malformed paths and bodies, 404 for unknown devices and endpoints', async () => {
    bed = await startBed([{ deviceId: 'IMEI:1' }]);
    const at = (p: string, init?: RequestInit) => fetch(bed!.server.url + p, init);
    const bad = await at('/api/devices/%E0%A4%A/commands');
    expect(bad.status).toBe(400);
    expect(((await bad.json()) as any).error.code).toBe('API_BAD_PATH');
    expect((await at('/api/devices/IMEI%3A404')).status).toBe(404);
    expect((await at('/api/nothing')).status).toBe(404);
    const body = await at('/api/devices/IMEI%3A1/commands', { method: 'POST', body: '{not json', headers: { 'content-type': 'application/json' } });
    expect(body.status).toBe(400);
    expect(((await body.json()) as any).error.code).toBe('API_BAD_JSON');
    const schema = await at('/api/devices/IMEI%3A1/commands', { method: 'POST', body: JSON.stringify({ cmd: 'Frobnicate', uri: './X' }), headers: { 'content-type': 'application/json' } });
    expect(schema.status).toBe(400);
    expect(((await schema.json()) as any).error.message).toContain('cmd');
    // Nothing was queued by the refused requests.
    expect(((await (await at('/api/devices/IMEI%3A1/commands')).json()) as any).commands).toEqual([]);
  });
});
