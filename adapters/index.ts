/**
 * The adapter registry: a gateway's `adapters:` entries are validated by these schemas and turned
 * into adapters by `createAdapter`. Each protocol adds its schema and constructor here.
 */
import { z } from 'zod';
import { BleAdapter, bleAdapterConfigSchema } from './ble/adapter.ts';
import type { Adapter } from './contract.ts';
import { KnxAdapter, knxAdapterConfigSchema } from './knx/adapter.ts';
import { OwnAdapter, ownAdapterConfigSchema } from './own/adapter.ts';
import { SimAdapter, simAdapterConfigSchema } from './sim.ts';
import { ZigbeeAdapter, zigbeeAdapterConfigSchema } from './zigbee/adapter.ts';

export type { Adapter, AdapterDevice, AdapterEvents, AdapterOperation, AdapterParam, LinkState, MulticastRequest, MulticastResult } from './contract.ts';

/** One entry of a gateway's `adapters:` list. */
export const adapterConfigSchema = z.discriminatedUnion('type', [
  simAdapterConfigSchema,
  knxAdapterConfigSchema,
  zigbeeAdapterConfigSchema,
  ownAdapterConfigSchema,
  bleAdapterConfigSchema,
]);
/** A validated adapter configuration. */
export type AdapterConfig = z.output<typeof adapterConfigSchema>;

/** Creates the adapter an entry describes. */
export function createAdapter(config: AdapterConfig): Adapter {
  switch (config.type) {
    case 'sim':
      return new SimAdapter(config);
    case 'knx':
      return new KnxAdapter(config);
    case 'zigbee':
      return new ZigbeeAdapter(config);
    case 'own':
      return new OwnAdapter(config);
    case 'ble':
      return new BleAdapter(config);
  }
}
