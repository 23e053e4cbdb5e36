/**
 * Model-based test of the association actors: paths generated from the association machine by
 * xstate/graph (not hand-picked) are replayed against a real in-process gateway, whose actor
 * system runs the association; after every step the gateway's durable effects are checked: the
 * association record in the store and the Status/Mode leaves of its inventory record in the tree.
 */
import { createTestModel } from 'xstate/graph';
import { describe, expect, it } from 'vitest';
import { associationMachine, type AssociationEvent, type AssociationInput } from '../../machines/association.ts';
import { gatewayConfigSchema } from '../../src/gateway/config.ts';
import { Gateway, RECORDS_ROOT } from '../../src/gateway/gateway.ts';
import { silentLogger } from '../../src/log.ts';
import { memoryStore } from '../../src/store/store.ts';
import { LOCAL } from '../../src/tree/tree.ts';

const DEV = 'IMEI:990000000000001';
const STATUS_LEAF: Record<string, string> = { pending: '3', attached: '1', detached: '0' };
const MODE_LEAF: Record<string, string> = { transparent: '0', proxy: '1', adaptation: '2' };

const input: AssociationInput = { deviceId: DEV, mode: 'proxy', status: 'pending', gateway: false, maxFailures: 2 };
const events: AssociationEvent[] = [{ type: 'session.ok' }, { type: 'session.failed' }, { type: 'detach' }, { type: 'mode.set', mode: 'transparent' }];

async function gatewayUnderTest(): Promise<Gateway> {
  const gw = await Gateway.create({
    config: gatewayConfigSchema.parse({
      id: 'gw-model',
      // No parent is listening: alerts stay in the durable outbox, which is fine here.
      parent: { url: 'http://127.0.0.1:9/dm', serverId: 'dms', username: 'u', secret: 's', serverSecret: 'x' },
      serverId: 'gw-model-south',
      serverSecret: 'y',
    }),
    store: memoryStore(),
    logger: silentLogger,
  });
  await gw.associate({ deviceId: DEV, mode: 'proxy', gateway: false, username: 'd', secret: 'p', authType: 'syncml:auth-md5' });
  return gw;
}

async function eventually(check: () => Promise<void>): Promise<void> {
  let last: unknown;
  for (let i = 0; i < 100; i++) {
    try {
      return await check();
    } catch (err) {
      last = err;
      await new Promise((r) => setTimeout(r, 5));
    }
  }
  throw last;
}

describe('association actors (model-based)', () => {
  const model = createTestModel(associationMachine, { input, events });
  const shortest = model.getShortestPaths();
  const simple = model.getSimplePaths({ limit: 2000 });
  // Every shortest path, plus an even sample of the (many) simple paths, longest ones included.
  const step = Math.max(1, Math.floor(simple.length / 20));
  const paths = [...shortest, ...simple.filter((_, i) => i % step === 0)];

  it('generates paths that visit every state', () => {
    const visited = new Set(paths.flatMap((p) => [String(p.state.value), ...p.steps.map((s) => String(s.state.value))]));
    expect([...visited].sort()).toEqual(['attached', 'detached', 'pending']);
    expect(simple.length).toBeGreaterThan(20);
  });

  for (const path of paths) {
    it(`gateway follows: ${path.description}`, async () => {
      const gw = await gatewayUnderTest();
      try {
        let mode = 'proxy';
        await path.test({
          events: {
            'session.ok': () => void gw.actor.send({ type: 'association.event', deviceId: DEV, event: { type: 'session.ok' } }),
            'session.failed': () => void gw.actor.send({ type: 'association.event', deviceId: DEV, event: { type: 'session.failed' } }),
            detach: () => void gw.actor.send({ type: 'association.event', deviceId: DEV, event: { type: 'detach' } }),
            'mode.set': () => {
              mode = 'transparent';
              gw.actor.send({ type: 'association.event', deviceId: DEV, event: { type: 'mode.set', mode: 'transparent' } });
            },
          },
          states: Object.fromEntries(
            Object.keys(STATUS_LEAF).map((state) => [
              state,
              async () => {
                await eventually(async () => {
                  const rec = gw.associations.get(DEV)!;
                  expect(rec.status).toBe(state);
                  expect(rec.mode).toBe(mode);
                  const leaf = await gw.tree.get(`${RECORDS_ROOT}/${rec.key}/Status`, LOCAL);
                  expect(leaf.data).toBe(STATUS_LEAF[state]);
                  expect((await gw.tree.get(`${RECORDS_ROOT}/${rec.key}/Mode`, LOCAL)).data).toBe(MODE_LEAF[mode]);
                });
              },
            ]),
          ),
        });
      } finally {
        await gw.stop();
      }
    });
  }
});
