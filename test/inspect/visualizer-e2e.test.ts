/**
 * The visualizer in a real browser (Debian chromium driven by playwright-core): the page shows the
 * actor tree of a running deployment by route, draws a selected actor's machine with its current
 * state highlighted, follows live changes (a detach, a fanout job), filters, and is screenshotted
 * (GWMO_SCREENSHOT=docs/img/visualizer.png refreshes the README's picture). CI installs chromium (.ci/run).
 */
import { mkdir, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { chromium, type Browser, type Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startVisualizerDemo, type VisualizerDemo } from '../../src/inspect/demo.ts';

let demo: VisualizerDemo;
let browser: Browser;
let page: Page;

beforeAll(async () => {
  demo = await startVisualizerDemo();
  browser = await chromium.launch({
    executablePath: '/usr/bin/chromium',
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking', '--disable-component-update', '--disable-sync', '--no-first-run'],
  });
  page = await browser.newPage({ viewport: { width: 1440, height: 900 } });
  // The page must work offline: any request that leaves 127.0.0.1 fails the test.
  await page.route('**/*', (route) => (new URL(route.request().url()).hostname === '127.0.0.1' ? route.continue() : route.abort()));
  page.on('request', (req) => {
    if (new URL(req.url()).hostname !== '127.0.0.1') throw new Error(`the page requested ${req.url()}`);
  });
}, 40_000);

afterAll(async () => {
  await browser?.close();
  await demo?.close();
});

const row = (name: string) => page.locator('.row', { has: page.locator('.name', { hasText: new RegExp(`^${name.replace(/[().]/g, '\\$&')}$`) }) });
/** The ids of the highlighted states in the drawn machine (Graphviz puts the DOT node id in <title>). */
const activeStates = () => page.locator('#graph g.node.active > title').allTextContents();

describe('live visualizer page', () => {
  it('shows the route tree, highlights current states live, follows a fanout, filters, and is screenshotted', async () => {
    const errors: string[] = [];
    page.on('pageerror', (e) => errors.push(String(e)));
    await page.goto(demo.url);
    await expect.poll(() => page.locator('#status').getAttribute('class')).toContain('live');

    // The tree by route: server › gateway gw-a › child gateway gw-b › gateway gw-b › its devices.
    await expect.poll(() => page.locator('.row[data-kind="association"]').count()).toBe(11);
    expect(await page.locator('.row[data-kind="gateway"]').count()).toBe(2);
    const server = page.locator('#tree > li', { has: page.locator(':scope > .row[data-kind="server"]', { hasText: 'DM server' }) });
    const underGwB = server.locator('li', { has: page.locator(':scope > .row', { hasText: 'gateway gw-b' }) });
    expect(await server.locator('.row', { hasText: 'gateway gw-a' }).count()).toBe(1);
    expect(await underGwB.locator('.row', { hasText: 'urn:dev:sim:gw-b-s3 (adaptation)' }).count()).toBe(1);
    expect(await underGwB.locator('.row', { hasText: 'urn:dev:sim:gw-a-s1' }).count()).toBe(0);
    expect(await row('urn:dev:sim:gw-a-s1 (adaptation)').getAttribute('data-state')).toBe('attached');

    // Selecting an association draws the association machine with `attached` highlighted.
    await row('IMEI:359000000000001 (proxy)').click();
    await expect.poll(activeStates).toEqual(['association.attached']);
    expect(await page.locator('#graph g.node > title').allTextContents()).toEqual(expect.arrayContaining(['association.restoring', 'association.pending', 'association.detached']));

    // A live change of the selected actor moves the highlight (and marks the transition taken).
    const gwA = demo.gateways[0]!;
    gwA.actor.send({ type: 'association.event', deviceId: 'IMEI:359000000000001', event: { type: 'detach' } });
    await expect.poll(activeStates).toEqual(['association.detached']);
    expect(await page.locator('#graph g.edge.taken').count()).toBe(1);
    expect(await page.locator('#graph g.edge.taken text').allTextContents()).toEqual(['detach']);
    gwA.actor.send({ type: 'association.event', deviceId: 'IMEI:359000000000001', event: { type: 'session.ok' } });
    await expect.poll(activeStates).toEqual(['association.attached']);

    // An adaptation device at rest is a record (italic); an event activates its actor, which takes
    // the record's place in the tree and keeps the selection.
    const s1 = row('urn:dev:sim:gw-a-s1 (adaptation)');
    expect(await s1.getAttribute('class')).toContain('record');
    await s1.click();
    await expect.poll(activeStates).toEqual(['association.attached']);
    gwA.actor.send({ type: 'association.event', deviceId: 'urn:dev:sim:gw-a-s1', event: { type: 'detach' } });
    await expect.poll(activeStates).toEqual(['association.detached']);
    await expect.poll(() => page.locator('.row.selected').getAttribute('class')).not.toContain('record');
    expect(await page.locator('.row.selected .name').textContent()).toBe('urn:dev:sim:gw-a-s1 (adaptation)');
    gwA.actor.send({ type: 'association.event', deviceId: 'urn:dev:sim:gw-a-s1', event: { type: 'session.ok' } });
    await expect.poll(activeStates).toEqual(['association.attached']);

    // A fanout: its job actors appear under both gateways and end in `completed`; the log shows the legs.
    expect(await page.locator('.row[data-kind="fanout"]').count()).toBe(0);
    await demo.runFanout('e2e1');
    await expect.poll(() => row('fanout job e2e1').getAttribute('data-state')).toBe('completed');
    expect(await underGwB.locator('.row[data-kind="fanout"]', { hasText: 'fanout job e2e1.g0001' }).count()).toBe(1);
    await row('fanout job e2e1').click();
    await expect.poll(activeStates).toEqual(['fanout.completed']);
    // Legs are partitions: gw-a's own devices (one), its delegation to gw-b (one), gw-b's devices (one).
    await expect.poll(() => page.locator('#log td.ty', { hasText: /^leg\.done$/ }).count()).toBeGreaterThanOrEqual(3);
    expect(await page.locator('#details').textContent()).toContain('context.succeeded');

    // Filters: gateway gw-b keeps its route (server › gw-a › gw-b) and drops gw-a's own devices.
    await page.selectOption('#f-gateway', 'gw-b');
    await expect.poll(() => row('urn:dev:sim:gw-a-s1 (adaptation)').count()).toBe(0);
    expect(await row('urn:dev:sim:gw-b-s1 (adaptation)').count()).toBe(1);
    expect(await row('gateway gw-a').count()).toBe(1);
    await page.selectOption('#f-gateway', '');
    await page.fill('#f-state', 'completed');
    await expect.poll(() => page.locator('.row[data-kind="association"]').count()).toBe(1); // only the ancestor of gw-b's job
    await page.fill('#f-state', '');
    await page.fill('#f-device', 'gw-b-s4');
    await expect.poll(() => page.locator('.row[data-kind="association"]').count()).toBe(2); // gw-b's association at gw-a, and s4
    await page.fill('#f-device', '');

    // The picture for the docs: the association machine of a device behind gw-b.
    await row('urn:dev:sim:gw-b-s2 (adaptation)').click();
    await expect.poll(activeStates).toEqual(['association.attached']);
    // The README's picture is refreshed on request (GWMO_SCREENSHOT=docs/img/visualizer.png);
    // otherwise the screenshot goes to a temporary file, so a test run leaves the tree clean.
    const shot = process.env['GWMO_SCREENSHOT'] ?? join(tmpdir(), `gwmo-visualizer-${process.pid}.png`);
    await page.screenshot({ path: shot });
    expect((await stat(shot)).size).toBeGreaterThan(10_000);
    expect(errors).toEqual([]);
  }, 40_000);
});
