/** `gwmo demo`: a scripted management session (the main job before `gwmo up`) runs from a fresh state and every step gives the expected DM status. */
import { describe, expect, it } from 'vitest';
import { gwmo } from '../support/processes.ts';

describe('gwmo demo', () => {
  it('runs the management session end to end, including a device behind a gateway', { timeout: 60_000 }, async () => {
    const r = await gwmo(['demo', '--json']);
    expect(r.code, r.stderr).toBe(0);
    const out = JSON.parse(r.stdout) as { steps: { step: string; device: string; status: string }[] };
    expect(out.steps.map((s) => `${s.device}: ${s.status.split(' ')[0]}`)).toEqual([
      'thermostat: 200', 'thermostat: 200', 'thermostat: 200',
      'light: 200', 'light: 200',
      'meter: 200', 'meter: 200', 'meter: 507', 'meter: 200',
      'thermostat: 425',
      'boiler: 200', 'boiler: 200', 'boiler: 200',
    ]);
  });
});
