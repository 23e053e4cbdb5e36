/**
 * Helpers shared by the end-to-end acceptance tests in this folder: REST calls against a test
 * bed, waiting for conditions without sleeping blindly, and direct SyncML posts for the
 * malformed-message tests.
 */
import { expect } from 'vitest';
import type { Encoding } from '../../src/codec/model.ts';
import type { DmServer } from '../../src/server/server.ts';
import { api, type TestBed } from '../support/fixtures.ts';

/** Both wire encodings; most suites run once per encoding. */
export const ENCODINGS: Encoding[] = ['xml', 'wbxml'];

/** The REST path of a device's command queue. */
export const commandsPath = (deviceId: string): string => `/api/devices/${encodeURIComponent(deviceId)}/commands`;

/** A command as the REST API takes it. */
export type ApiCmd = Record<string, unknown>;

/**
 * Sends a command through the REST API (Package 0 wakes the device) and waits for its result.
 * Fails with the server log attached when the command did not complete.
 */
export async function run(bed: TestBed, deviceId: string, cmd: ApiCmd, timeout = 10): Promise<any> {
  const r = await api(bed.server, 'POST', commandsPath(deviceId), { timeout, ...cmd });
  if (r.status !== 200 || r.json?.state !== 'done') {
    const shown = JSON.stringify(cmd).slice(0, 300);
    throw new Error(`command ${shown} -> HTTP ${r.status} ${JSON.stringify(r.json).slice(0, 500)}\n--- server log\n${bed.serverLog.join('\n')}`);
  }
  return r.json;
}

/** Queues a command without waking the device and without waiting (HTTP 202). */
export async function enqueue(server: DmServer, deviceId: string, cmd: ApiCmd): Promise<any> {
  const r = await api(server, 'POST', commandsPath(deviceId), { ...cmd, wait: false, notify: false });
  expect(r.status, JSON.stringify(r.json)).toBe(202);
  expect(r.json.state).toBe('queued');
  return r.json;
}

/** All queue entries of a device as the REST API lists them. */
export async function listCommands(server: DmServer, deviceId: string): Promise<any[]> {
  const r = await api(server, 'GET', commandsPath(deviceId));
  expect(r.status).toBe(200);
  return r.json.commands;
}

/** Polls `cond` (every 10 ms) until it holds; throws with `what` after `ms`. */
export async function until(cond: () => boolean | Promise<boolean>, what: string, ms = 5000): Promise<void> {
  const end = Date.now() + ms;
  while (!(await cond())) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 10));
  }
}

/** The data of the results of a finished command, by URI. */
export function resultsByUri(entry: any): Map<string, string | undefined> {
  return new Map((entry.results ?? []).map((r: any) => [r.uri, r.data]));
}

/** Log lines matching a pattern (for readable assertions). */
export function grep(lines: string[], re: RegExp): string[] {
  return lines.filter((l) => re.test(l));
}
