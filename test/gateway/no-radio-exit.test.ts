/**
 * Adaptation mode without hardware (issue "Adaptation mode", acceptance 3): a `gwmo gateway` process
 * with all four real adapters configured against peers that are not there — a KNX/IP interface
 * nobody runs, a ZiGate coordinator at a closed TCP port, an OpenWebNet gateway that refuses
 * connections, and noble on its real HCI bindings on a machine with no Bluetooth — keeps running
 * with every link backing off, and exits by itself on Ctrl-C. The CLI forces an exit (code 130)
 * after 20 s if a clean stop leaves handles open, so exit code 0 within 5 s proves none is.
 */
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { tempDir } from '../support/fixtures.ts';
import { startGwmo, type GwmoProcess } from '../support/processes.ts';

let proc: GwmoProcess | undefined;
let cleanup: (() => Promise<void>) | undefined;
afterEach(async () => {
  await proc?.stop('SIGKILL');
  await cleanup?.();
  proc = undefined;
});

async function writeConfig(): Promise<{ config: string; data: string }> {
  const tmp = await tempDir('gwmo-noradio-');
  cleanup = tmp.cleanup;
  const config = join(tmp.dir, 'gateway.yaml');
  await writeFile(
    config,
      `id: gw-noradio
parent: { url: 'http://127.0.0.1:9/dm', serverId: dms, username: gw, secret: gw-secret, authType: md5, serverSecret: s, serverAuthType: md5 }
listen: 127.0.0.1:0
serverId: gw-noradio-south
serverSecret: south-secret
adapters:
  - { type: knx, gateway: '127.0.0.1:9', physAddr: 1.1.250, localAddress: 127.0.0.1, backoff: { initialMs: 100, maxMs: 400 } }
  - { type: zigbee, interface: 'tcp://127.0.0.1:9', dataDir: '${join(tmp.dir, 'zigbee')}', startTimeoutMs: 1000, backoff: { initialMs: 100, maxMs: 400 } }
  - { type: own, gatewayAddr: '127.0.0.1:9', backoff: { initialMs: 100, maxMs: 400 } }
  - { type: ble, bindings: hci, backoff: { initialMs: 100, maxMs: 400 } }
`,
  );
  return { config, data: join(tmp.dir, 'data') };
}

/** Resolves with the exit code of the running process (null when a signal killed it). */
const exitCode = (p: GwmoProcess): Promise<number | null> => new Promise((resolve) => p.proc.once('exit', (code) => resolve(code)));

describe('a gateway with every adapter and no radio hardware', () => {
  it('runs with its links backing off and exits cleanly on Ctrl-C', async () => {
    const { config, data } = await writeConfig();
    proc = await startGwmo(['gateway', '--config', config, '--data', data], /gateway gw-noradio running/, 30_000);
    // Every link reports that it is retrying (the reasons vary by library).
    const deadline = Date.now() + 15_000;
    const backingOff = (n: string): boolean => new RegExp(`${n} link backoff`).test(proc!.output());
    while (!['KNX', 'ZigBee', 'OpenWebNet', 'BLE'].every(backingOff) && Date.now() < deadline) await new Promise((r) => setTimeout(r, 100));
    expect(['KNX', 'ZigBee', 'OpenWebNet', 'BLE'].filter((n) => !backingOff(n)), proc.output()).toEqual([]);
    const t0 = Date.now();
    const exited = exitCode(proc);
    proc.proc.kill('SIGINT');
    const code = await exited;
    expect(code, proc.output()).toBe(0);
    expect(Date.now() - t0).toBeLessThan(5000);
  });

  it('latches a Ctrl-C that arrives while it is still starting and then stops cleanly', async () => {
    // The KNX link's first attempt takes its 3 s connect timeout, so the signal lands mid-start
    // (before the CI fix, the default SIGINT action killed such a process half-started: exit code null).
    const { config, data } = await writeConfig();
    proc = await startGwmo(['gateway', '--config', config, '--data', data], /KNX link connecting/, 30_000);
    const exited = exitCode(proc);
    proc.proc.kill('SIGINT');
    expect(await exited, proc.output()).toBe(0);
    expect(proc.output()).toMatch(/gateway gw-noradio running/);
  });
});
