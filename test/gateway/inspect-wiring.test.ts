/**
 * The runtime hands its xstate inspection observer to every actor it creates (gateway, association
 * and fanout job actors, the southbound server's session actors), so the live visualizer sees the
 * whole runtime, not just the root actors.
 */
import type { InspectionEvent } from 'xstate';
import { afterEach, describe, expect, it } from 'vitest';
import { completion, startJob } from '../support/fanout.ts';
import { addDevice, addGateway, proxyAssociation, startDeployment, type Deployment } from '../support/gateways.ts';

let d: Deployment | undefined;
afterEach(async () => {
  await d?.close();
  d = undefined;
});

describe('inspection wiring', () => {
  it('reports the gateway, association, session and fanout job actors to the observer', async () => {
    const machines = new Set<string>();
    const events: string[] = [];
    const inspect = (ev: InspectionEvent): void => {
      if (ev.type === '@xstate.actor') {
        const id = (ev.actorRef as { logic?: { id?: string } }).logic?.id;
        if (id) machines.add(id);
      }
      if (ev.type === '@xstate.event') events.push(ev.event.type);
    };
    d = await startDeployment([{ deviceId: 'gw-i', username: 'gw-i-user', secret: 'gw-i-secret' }]);
    const gw = await addGateway(d, 'gw-i', { kind: 'server', server: d.server }, [proxyAssociation('IMEI:351000000000088')], { adapters: [{ type: 'sim', generate: { count: 3, prefix: 'i' } }] }, { inspect });
    await (await addDevice(d, 'IMEI:351000000000088', { kind: 'gateway', gateway: gw })).connect();
    await gw.settled();
    expect((await startJob(d.server, 'gw-i', 'j', { groupId: '*', commands: [{ cmd: 'Get', uri: './DevInfo/Mod' }] }, 'c-i')).status).toBe(200);
    await completion(d.server, 'gw-i', 'c-i');
    const ids = [...machines];
    expect(ids).toEqual(expect.arrayContaining(['gateway', 'association', 'fanout', 'dmServer', 'dmSession']));
    expect(events).toEqual(expect.arrayContaining(['association.add', 'leg.done']));
  });
});
